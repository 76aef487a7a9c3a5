//! The per-connection state machine: connect → commands → close.
//!
//! A [`Session`] is transport-agnostic. A transport feeds it [`Inbound`]
//! frames and drains its outbox; everything the client sees (replies, pushes,
//! pings) goes through that one ordered queue. Timers (connect timeout,
//! ping/pong, token expiry) are deadlines evaluated in the same loop, so the
//! logic runs under `tokio::time::pause()` in tests without sockets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

mod chat;

use super::auth::TokenError;
use super::{ConnectionSlot, Hub, PublishRequest, VERSION, plugin_disconnect, rejection_error};
use crate::channel::{Outbox, SubscriberId, SubscriberOptions, TagFilter, user_limited_users};
use crate::config::{ChannelOptions, DELTA_FOSSIL};
use crate::history::{Recovery, StreamOptions};
use crate::plugin::{self, ConnectOutcome, EventKind, RefreshOutcome, SubscribeOutcome};
use crate::protocol::codes::UNSUBSCRIBE_SERVER;
use crate::protocol::{
    ClientInfo, Command, ConnectRequest, ConnectResult, DisconnectCode, Empty, Encoding, ErrorCode, HistoryRequest,
    HistoryResult, Payload, PresenceResult, PresenceStatsResult, Push, RefreshRequest, RefreshResult, Reply,
    ReplyError, Request, RpcRequest, RpcResult, StreamPosition, SubRefreshRequest, SubRefreshResult, SubscribePush,
    SubscribeRequest, SubscribeResult, UnsubscribePush,
};

/// What a transport hands the session.
#[derive(Debug)]
pub enum Inbound {
    /// One text frame: newline-separated JSON commands. A Protobuf session
    /// does not accept it (3506).
    Text(Bytes),
    /// One binary frame: length-delimited Protobuf commands. A JSON session
    /// does not accept it (3506).
    Binary(Bytes),
    /// A frame over `client.max_frame_bytes` (closed with 1009).
    TooLarge,
    /// The client broke the transport's framing: close with this code
    /// (WebSocket 1002 or 1007).
    Violation(DisconnectCode),
    /// The client closed the connection or it failed.
    Closed,
}

/// The kind of transport that drives a session. It decides what the connect
/// result carries and whether the client is expected to answer pings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TransportKind {
    /// WebSocket: one bidirectional connection.
    #[default]
    Bidirectional,
    /// SSE, HTTP-streaming or long-polling with commands over `/emulation`:
    /// the connect result carries `session` and `node`.
    Emulation,
    /// uni_sse, uni_http_stream, uni_websocket: the client cannot send, so
    /// it is never asked to pong (`pong: false`); the result carries `session`.
    Unidirectional,
}

/// How a transport sets up a session; `Default` is the WebSocket setup.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub kind: TransportKind,
    /// The transport's id for this session (`session` in the connect result;
    /// the `/emulation` routing key). Empty for WebSocket.
    pub session_id: String,
    /// Treat every server-side subscription that the connect request gives no
    /// position for as recovering from an unknown position: the result says
    /// `was_recovering` and never `recovered`, so nothing is replayed. For a
    /// resume token the transport could not read (uni_sse `Last-Event-ID`).
    pub recover_unlisted: bool,
    /// The wire encoding for the connection's whole life.
    pub encoding: Encoding,
    /// The transport's name for plugins (`websocket`, `sse`, ...); empty
    /// means `websocket`.
    pub transport: &'static str,
    /// Request headers handed to connect plugins (`client.forward_headers`
    /// and, after the origin check, `client.forward_cookies`).
    pub forwarded: Vec<(String, String)>,
}

/// Requests from the server API to a live session.
#[derive(Debug)]
pub enum Control {
    Subscribe { channel: String },
    Unsubscribe { channel: String },
}

/// How a command failed: an error reply, or the end of the connection.
enum Failure {
    Error(ReplyError),
    Disconnect(DisconnectCode),
}

impl From<ErrorCode> for Failure {
    fn from(code: ErrorCode) -> Self {
        Self::Error(code.into())
    }
}

impl From<ReplyError> for Failure {
    fn from(error: ReplyError) -> Self {
        Self::Error(error)
    }
}

impl From<DisconnectCode> for Failure {
    fn from(code: DisconnectCode) -> Self {
        Self::Disconnect(code)
    }
}

const TOKEN_REQUIRED: DisconnectCode = DisconnectCode { code: 3500, reason: "token required" };
/// Capacity of the server API's control queue into one session.
const CONTROL_QUEUE: usize = 64;

struct Connected {
    client: String,
    user: String,
    info: Option<Payload>,
    /// Boolean claims of the connection token that are `true` (chat admin).
    true_claims: Vec<String>,
    /// What a connect plugin set as `meta`, for later hooks.
    meta: Bytes,
}

struct Subscription {
    options: ChannelOptions,
    chan_info: Option<Payload>,
    /// When a subscribe plugin's expiry runs out (sub-refresh pipeline).
    expires: Option<Instant>,
}

/// What a client subscribe adds to a subscription (server-side ones have none).
#[derive(Default)]
struct SubscribeExtras {
    chan_info: Option<Payload>,
    filter: Option<Arc<TagFilter>>,
    delta: bool,
}

/// Commands-per-second window for `client.max_commands_per_sec`.
struct RateWindow {
    started: Instant,
    count: u32,
}

/// One client connection's protocol state.
pub struct Session {
    hub: Arc<Hub>,
    id: SubscriberId,
    outbox: Arc<Outbox>,
    encoding: Encoding,
    control_tx: mpsc::Sender<Control>,
    control_rx: mpsc::Receiver<Control>,
    conn: Option<Connected>,
    subs: HashMap<String, Subscription>,
    connect_deadline: Instant,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    expire_deadline: Option<Instant>,
    /// When the refresh pipeline must extend this connection.
    refresh_at: Option<Instant>,
    /// Whether any subscription ever had an expiry: only then are the
    /// subscriptions scanned for one (the loop computes its deadline per
    /// frame).
    timed_subs: bool,
    rate: RateWindow,
    options: SessionOptions,
    /// The `traceparent`/`tracestate` of the connect headers: the parent of
    /// every span of this connection.
    trace: crate::telemetry::TraceHeaders,
    _slot: ConnectionSlot,
}

/// The transport as metrics and spans name it.
fn transport_name(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::Bidirectional => "websocket",
        TransportKind::Emulation => "emulation",
        TransportKind::Unidirectional => "unidirectional",
    }
}

/// The current span's trace context, for plugins.
fn current_trace() -> plugin::TraceContext {
    let trace = crate::telemetry::current_headers();
    plugin::TraceContext { traceparent: trace.traceparent, tracestate: trace.tracestate }
}

/// The channel a command concerns, for its span.
fn command_channel(request: &Request) -> &str {
    match request {
        Request::Subscribe(r) => &r.channel,
        Request::Unsubscribe(r) => &r.channel,
        Request::Publish(r) => &r.channel,
        Request::Presence(r) => &r.channel,
        Request::PresenceStats(r) => &r.channel,
        Request::History(r) => &r.channel,
        Request::SubRefresh(r) => &r.channel,
        _ => "",
    }
}

/// Turns a recovery into the explicit gap signal (`recovered: false` with
/// `was_recovering` kept): for a recovery too large for the connection's
/// whole queue, which would otherwise close it with 3008 on every retry.
fn give_up_recovery(result: &mut SubscribeResult) {
    result.recovered = false;
    result.publications = Vec::new();
}

/// Encodes for a connection; a reply its encoding cannot carry (binary
/// payloads, e.g. recovered publications, for JSON) ends it with 3506.
fn encode(encoding: Encoding, reply: &Reply) -> Result<Bytes, DisconnectCode> {
    encoding.encode_reply(reply).map_err(|_| DisconnectCode::INAPPROPRIATE_PROTOCOL)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The instant of Unix second `at` (now when it is past).
fn instant_at(at: u64) -> Instant {
    Instant::now() + Duration::from_secs(at.saturating_sub(unix_now()))
}

impl Session {
    /// A new, not yet connected bidirectional session holding a connection
    /// slot, speaking `encoding` for its whole life.
    pub fn new(hub: Arc<Hub>, slot: ConnectionSlot, encoding: Encoding) -> Self {
        Self::with_options(hub, slot, SessionOptions { encoding, ..SessionOptions::default() })
    }

    /// A new session for a transport other than WebSocket.
    pub fn with_options(hub: Arc<Hub>, slot: ConnectionSlot, options: SessionOptions) -> Self {
        let encoding = options.encoding;
        let client = &hub.config().client;
        let outbox = Arc::new(Outbox::new(client.queue_max_bytes));
        let connect_deadline = Instant::now() + Duration::from_secs(client.connect_timeout_secs);
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        Self {
            id: hub.next_subscriber_id(),
            hub,
            outbox,
            encoding,
            control_tx,
            control_rx,
            conn: None,
            subs: HashMap::new(),
            connect_deadline,
            next_ping: None,
            pong_deadline: None,
            expire_deadline: None,
            refresh_at: None,
            timed_subs: false,
            rate: RateWindow { started: Instant::now(), count: 0 },
            options,
            trace: crate::telemetry::TraceHeaders::default(),
            _slot: slot,
        }
    }

    /// The queue the transport's writer drains.
    pub fn outbox(&self) -> Arc<Outbox> {
        self.outbox.clone()
    }

    /// Runs the session until it ends; returns the close code sent (or, when
    /// the client went away, [`DisconnectCode::CONNECTION_CLOSED`]). On return
    /// the outbox is closed and every subscription and presence entry is gone.
    pub async fn run<S: Stream<Item = Inbound> + Unpin>(mut self, mut inbound: S) -> DisconnectCode {
        let shutdown = self.hub.shutdown_token().clone();
        let outbox = self.outbox.clone();
        // The command handlers run boxed: inlined, their largest state (a
        // connect with token checks and plugin calls) would size the future
        // that every idle connection holds for its whole life.
        let code = loop {
            let deadline = self.next_deadline();
            let step = tokio::select! {
                code = outbox.closed() => break code,
                _ = shutdown.cancelled() => Err(DisconnectCode::SHUTDOWN),
                frame = inbound.next() => match frame {
                    // A frame of the other kind means the client speaks the
                    // other protocol: 3506 both ways.
                    Some(Inbound::Text(bytes)) if self.encoding == Encoding::Json => {
                        Box::pin(self.handle_frame(&bytes)).await
                    }
                    Some(Inbound::Binary(bytes)) if self.encoding == Encoding::Protobuf => {
                        Box::pin(self.handle_frame(&bytes)).await
                    }
                    Some(Inbound::Text(_) | Inbound::Binary(_)) => Err(DisconnectCode::INAPPROPRIATE_PROTOCOL),
                    Some(Inbound::TooLarge) => Err(DisconnectCode::MESSAGE_TOO_BIG),
                    Some(Inbound::Violation(code)) => Err(code),
                    Some(Inbound::Closed) | None => Err(DisconnectCode::CONNECTION_CLOSED),
                },
                Some(control) = self.control_rx.recv() => Box::pin(self.handle_control(control)).await,
                _ = tokio::time::sleep_until(deadline) => Box::pin(self.on_deadline(Instant::now())).await,
            };
            if let Err(code) = step {
                break code;
            }
        };
        self.outbox.close(code);
        self.cleanup();
        let metrics = self.hub.metrics();
        metrics.disconnect(code.code);
        if self.conn.is_some() {
            let transport = transport_name(self.options.kind);
            metrics.connection_closed(transport);
            // Connection lifetime is events, not one long span: this short
            // span carries the close.
            let span = crate::root_span!(
                &self.trace.traceparent,
                &self.trace.tracestate,
                "client.disconnect",
                otel.name = "client disconnect",
                transport,
                disconnect.code = i64::from(code.code),
            );
            let _entered = span.enter();
            if crate::telemetry::trace::in_trace() {
                tracing::info!(target: "switchboard::otel", code = i64::from(code.code), reason = code.reason, "connection closed");
            }
        }
        if let Some(conn) = &self.conn {
            self.hub.emit(|| {
                let mut event = plugin::Event::new(EventKind::Disconnect, &conn.client, &conn.user, "");
                event.code = u32::from(code.code);
                event
            });
        }
        code
    }

    /// The earliest timer this session waits for.
    fn next_deadline(&self) -> Instant {
        if self.conn.is_none() {
            return self.connect_deadline;
        }
        let sub_expiry = if self.timed_subs { self.subs.values().filter_map(|s| s.expires).min() } else { None };
        [self.next_ping, self.pong_deadline, self.expire_deadline, self.refresh_at, sub_expiry]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    async fn on_deadline(&mut self, now: Instant) -> Result<(), DisconnectCode> {
        if self.conn.is_none() {
            return if now >= self.connect_deadline { Err(DisconnectCode::STALE) } else { Ok(()) };
        }
        if self.pong_deadline.is_some_and(|d| now >= d) {
            return Err(DisconnectCode::NO_PONG);
        }
        if self.expire_deadline.is_some_and(|d| now >= d) {
            return Err(DisconnectCode::EXPIRED);
        }
        if self.refresh_at.is_some_and(|d| now >= d) {
            self.refresh_by_plugins().await?;
        }
        let expired: Vec<String> = if self.timed_subs {
            self.subs.iter().filter(|(_, s)| s.expires.is_some_and(|d| now >= d)).map(|(c, _)| c.clone()).collect()
        } else {
            Vec::new()
        };
        for channel in expired {
            self.sub_refresh_by_plugins(&channel).await?;
        }
        if let Some(ping_at) = self.next_ping.filter(|t| now >= *t) {
            let client = &self.hub.config().client;
            self.send(self.encoding.ping())?;
            if self.pong_deadline.is_none() && self.options.kind != TransportKind::Unidirectional {
                self.pong_deadline = Some(now + Duration::from_secs(client.pong_timeout_secs));
            }
            self.next_ping = Some(ping_at + Duration::from_secs(client.ping_interval_secs));
        }
        Ok(())
    }

    fn send(&self, frame: Bytes) -> Result<(), DisconnectCode> {
        self.hub.metrics().bytes_out(frame.len() as u64);
        self.outbox.push(frame).map_err(|_| self.outbox.close_code().unwrap_or(DisconnectCode::SLOW))
    }

    fn reply(&self, reply: &Reply) -> Result<(), DisconnectCode> {
        self.send(encode(self.encoding, reply)?)
    }

    /// Handles one inbound frame of commands.
    async fn handle_frame(&mut self, frame: &[u8]) -> Result<(), DisconnectCode> {
        self.hub.metrics().bytes_in(frame.len() as u64);
        let commands = self.encoding.decode_commands(frame).map_err(|e| {
            debug!(error = %e, "malformed frame");
            DisconnectCode::BAD_REQUEST
        })?;
        for command in commands {
            // Any command proves the client is alive (and its user active).
            self.pong_deadline = None;
            if let Some(conn) = self.conn.as_ref().filter(|c| !c.user.is_empty()) {
                self.hub.status_touch(&conn.user);
            }
            self.handle_command(command).await?;
        }
        Ok(())
    }

    fn check_rate(&mut self) -> Result<bool, DisconnectCode> {
        let limit = self.hub.config().client.max_commands_per_sec;
        if limit == 0 {
            return Ok(true);
        }
        let now = Instant::now();
        if now.duration_since(self.rate.started) >= Duration::from_secs(1) {
            self.rate = RateWindow { started: now, count: 0 };
        }
        self.rate.count += 1;
        if self.rate.count > limit.saturating_mul(2) {
            return Err(DisconnectCode::TOO_MANY_REQUESTS);
        }
        Ok(self.rate.count <= limit)
    }

    async fn handle_command(&mut self, Command { id, request }: Command) -> Result<(), DisconnectCode> {
        if matches!(request, Request::Pong) {
            return Ok(());
        }
        let is_connect = matches!(request, Request::Connect(_));
        if is_connect == self.conn.is_some() {
            // Commands before connect, or a second connect.
            debug!(method = request.method(), "command out of order");
            return Err(DisconnectCode::BAD_REQUEST);
        }
        if let Request::Send(_) = request {
            // Fire-and-forget with no handler configured yet: accepted and dropped.
            return self.check_rate().map(|_| ());
        }
        if id == 0 {
            return Err(DisconnectCode::BAD_REQUEST);
        }
        if !self.check_rate()? {
            return self.reply(&Reply::error(id, ErrorCode::TooManyRequests.into()));
        }
        let method = request.method();
        if let Request::Connect(req) = &request {
            let header = |name: &str| {
                req.headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            if !req.headers.is_empty() {
                self.trace = crate::telemetry::TraceHeaders {
                    traceparent: header("traceparent"),
                    tracestate: header("tracestate"),
                };
            }
        }
        let span = crate::root_span!(
            &self.trace.traceparent,
            &self.trace.tracestate,
            "client.command",
            otel.name = %format_args!("client {method}"),
            otel.kind = "server",
            rpc.method = method,
            messaging.destination.name = command_channel(&request),
            user.id = self.user(),
            transport = transport_name(self.options.kind),
            result.code = tracing::field::Empty,
        );
        let started = Instant::now();
        let outcome = tracing::Instrument::instrument(self.dispatch(id, request), span.clone()).await;
        let result: &'static str = match &outcome {
            Ok(_) => "ok",
            Err(Failure::Error(_)) => "error",
            Err(Failure::Disconnect(_)) => "disconnect",
        };
        match &outcome {
            Ok(_) => span.record("result.code", 0_i64),
            Err(Failure::Error(e)) => span.record("result.code", i64::from(e.code)),
            Err(Failure::Disconnect(code)) => span.record("result.code", i64::from(code.code)),
        };
        self.hub.metrics().command(method, started.elapsed(), result);
        if method == "connect" && self.conn.is_some() {
            self.hub.metrics().connection_opened(transport_name(self.options.kind));
            let _entered = span.enter();
            if crate::telemetry::trace::in_trace() {
                tracing::info!(target: "switchboard::otel", user = self.user(), "connection established");
            }
        }
        match outcome {
            // A reply with id 0 means the handler already queued its reply.
            Ok(reply) if reply.id == 0 => Ok(()),
            Ok(reply) => self.reply(&reply),
            Err(Failure::Error(error)) => self.reply(&Reply::error(id, error)),
            Err(Failure::Disconnect(code)) => Err(code),
        }
    }

    /// Runs one command (already rate-checked and in order).
    async fn dispatch(&mut self, id: u32, request: Request) -> Result<Reply, Failure> {
        match request {
            Request::Connect(req) => self.connect(id, req).await,
            Request::Subscribe(req) => self.subscribe(id, req).await,
            Request::Unsubscribe(req) => {
                self.unsubscribe(&req.channel);
                Ok(Reply { id, unsubscribe: Some(Empty {}), ..Reply::default() })
            }
            Request::Publish(req) => self.publish(id, req.channel, req.data).await,
            Request::Presence(req) => self.presence(id, &req.channel).await,
            Request::PresenceStats(req) => self.presence_stats(id, &req.channel).await,
            Request::History(req) => self.history(id, req).await,
            Request::Ping => Ok(Reply { id, ping: Some(Empty {}), ..Reply::default() }),
            Request::Rpc(req) => self.rpc(id, req).await,
            Request::Refresh(req) => self.refresh(id, req),
            Request::SubRefresh(req) => self.sub_refresh(id, req),
            Request::Pong | Request::Send(_) => unreachable!("handled above"),
        }
    }

    fn user(&self) -> &str {
        self.conn.as_ref().map_or("", |c| c.user.as_str())
    }

    fn transport_name(&self) -> &'static str {
        if self.options.transport.is_empty() { "websocket" } else { self.options.transport }
    }

    fn protocol_name(&self) -> &'static str {
        if self.encoding == Encoding::Protobuf { "protobuf" } else { "json" }
    }

    /// This connection as plugins after connect see it.
    fn plugin_connection(&self) -> plugin::Connection {
        let conn = self.conn.as_ref();
        plugin::Connection {
            client: conn.map(|c| c.client.clone()).unwrap_or_default(),
            user: conn.map(|c| c.user.clone()).unwrap_or_default(),
            transport: self.transport_name().to_owned(),
            protocol: self.protocol_name().to_owned(),
            meta: conn.map(|c| c.meta.clone()).unwrap_or_default(),
        }
    }

    /// The connection reached the expiry a connect plugin gave it.
    async fn refresh_by_plugins(&mut self) -> Result<(), DisconnectCode> {
        self.refresh_at = None;
        let Some(plugins) = self.hub.plugins().filter(|p| p.has_refresh_pipeline()) else {
            return Err(DisconnectCode::EXPIRED);
        };
        match plugins.on_refresh(&self.plugin_connection()).await {
            RefreshOutcome::Extend { expires_at, info } => {
                if let Some(info) = info {
                    let info =
                        Payload::from_json(&String::from_utf8_lossy(&info)).map_err(|_| DisconnectCode::INTERNAL)?;
                    if let Some(conn) = self.conn.as_mut() {
                        conn.info = Some(info);
                    }
                }
                self.refresh_at = expires_at.map(instant_at);
                Ok(())
            }
            RefreshOutcome::Expire => Err(DisconnectCode::EXPIRED),
            RefreshOutcome::Disconnect(rejection) => Err(plugin_disconnect(&rejection)),
        }
    }

    /// A subscription reached the expiry a subscribe plugin gave it.
    async fn sub_refresh_by_plugins(&mut self, channel: &str) -> Result<(), DisconnectCode> {
        if let Some(sub) = self.subs.get_mut(channel) {
            sub.expires = None;
        }
        let outcome = match self.hub.plugins().filter(|p| p.has_sub_refresh_pipeline(channel)) {
            Some(plugins) => plugins.on_sub_refresh(&self.plugin_connection(), channel).await,
            None => RefreshOutcome::Expire,
        };
        match outcome {
            RefreshOutcome::Extend { expires_at, info } => {
                let info = info.map(|i| Payload::from_json(&String::from_utf8_lossy(&i))).transpose();
                if let Some(sub) = self.subs.get_mut(channel) {
                    sub.expires = expires_at.map(instant_at);
                    if let Ok(Some(info)) = info {
                        sub.chan_info = Some(info);
                    }
                }
                Ok(())
            }
            RefreshOutcome::Expire => {
                if self.unsubscribe(channel) {
                    let push = UnsubscribePush {
                        code: crate::protocol::codes::UNSUBSCRIBE_SUBSCRIPTION_EXPIRED,
                        reason: "subscription expired".to_owned(),
                    };
                    let push = Push { channel: channel.to_owned(), unsubscribe: Some(push), ..Push::default() };
                    self.reply(&Reply::push(push))?;
                }
                Ok(())
            }
            RefreshOutcome::Disconnect(rejection) => Err(plugin_disconnect(&rejection)),
        }
    }

    fn client_info(&self, chan_info: Option<Payload>) -> ClientInfo {
        let conn = self.conn.as_ref();
        ClientInfo {
            user: conn.map(|c| c.user.clone()).unwrap_or_default(),
            client: conn.map(|c| c.client.clone()).unwrap_or_default(),
            conn_info: conn.and_then(|c| c.info.clone()),
            chan_info,
        }
    }

    async fn connect(&mut self, id: u32, req: ConnectRequest) -> Result<Reply, Failure> {
        let config = self.hub.config().client.clone();
        let connect_plugins = self.hub.plugins().filter(|p| p.has_connect_pipeline()).cloned();
        let claims = if req.token.is_empty() {
            // With connect plugins a backend may authenticate the client
            // (e.g. from a forwarded cookie); checked after they ran.
            if !config.allow_anonymous && connect_plugins.is_none() {
                return Err(TOKEN_REQUIRED.into());
            }
            None
        } else {
            match self.hub.verifier.verify_connect(&req.token) {
                Ok(claims) => Some(claims),
                Err(TokenError::Expired) => return Err(ErrorCode::TokenExpired.into()),
                Err(TokenError::Invalid(reason)) => {
                    debug!(%reason, "connect token rejected");
                    return Err(DisconnectCode::INVALID_TOKEN.into());
                }
            }
        };
        let (mut user, mut info, mut expires_at, mut channels, mut true_claims, other_claims) = match claims {
            Some(c) => (c.user, c.info, c.expires_at, c.channels, c.true_claims, c.other),
            None => (String::new(), None, None, Vec::new(), Vec::new(), serde_json::Map::new()),
        };
        let client = uuid::Uuid::new_v4().to_string();
        let mut reply_data = None;
        let mut meta = Bytes::new();
        let mut refresh_by_plugins = false;
        // A verified token (even one without `sub`) or anonymous access is
        // enough; otherwise a connect plugin must allow.
        let mut authenticated = !req.token.is_empty() || config.allow_anonymous;
        if let Some(plugins) = connect_plugins {
            // Every claim of the token, with the ones the gateway read in
            // their checked form.
            let mut claims = other_claims;
            claims.insert("sub".into(), user.clone().into());
            claims.insert("exp".into(), expires_at.into());
            claims.insert("channels".into(), channels.clone().into());
            let info_json = info.as_ref().and_then(|i| serde_json::from_slice::<serde_json::Value>(i.as_bytes()).ok());
            claims.insert("info".into(), info_json.into());
            let claims = serde_json::Value::Object(claims);
            let request = plugin::ConnectInfo {
                client: client.clone(),
                transport: self.transport_name().to_owned(),
                protocol: self.protocol_name().to_owned(),
                channels: {
                    let mut channels: Vec<String> = req.subs.keys().cloned().collect();
                    channels.sort();
                    channels
                },
                headers: self.options.forwarded.clone(),
                user: user.clone(),
                claims: claims.to_string(),
                data: req.data.as_ref().map(|d| d.as_bytes().clone()).unwrap_or_default(),
                name: req.name.clone(),
                version: req.version.clone(),
                trace: current_trace(),
            };
            match plugins.on_connect(request).await {
                ConnectOutcome::Keep => {}
                ConnectOutcome::Allow(principal) => {
                    let not_json = |what: &str| ReplyError {
                        code: ErrorCode::Internal.code(),
                        message: format!("connect plugin returned {what} that is not json"),
                        temporary: false,
                    };
                    user = principal.user;
                    info = principal
                        .info
                        .map(|i| Payload::from_json(&String::from_utf8_lossy(&i)))
                        .transpose()
                        .map_err(|_| not_json("info"))?;
                    reply_data = principal
                        .data
                        .map(|d| Payload::from_json(&String::from_utf8_lossy(&d)))
                        .transpose()
                        .map_err(|_| not_json("data"))?;
                    meta = principal.meta.unwrap_or_default();
                    channels = principal.channels;
                    expires_at = principal.expires_at;
                    // The plugin's principal carries no token claims.
                    true_claims.clear();
                    // The backend owns this expiry: the refresh pipeline
                    // extends it server-side; the client has no token to
                    // refresh with.
                    refresh_by_plugins = expires_at.is_some() && plugins.has_refresh_pipeline();
                    authenticated = true;
                }
                ConnectOutcome::Deny(rejection) => return Err(rejection_error(rejection).into()),
                ConnectOutcome::Disconnect(rejection) => return Err(plugin_disconnect(&rejection).into()),
            }
        }
        if !authenticated {
            return Err(TOKEN_REQUIRED.into());
        }
        let now = Instant::now();
        let mut result = ConnectResult {
            client: client.clone(),
            version: VERSION.to_owned(),
            ping: u32::try_from(config.ping_interval_secs).unwrap_or(u32::MAX),
            pong: self.options.kind != TransportKind::Unidirectional,
            ..ConnectResult::default()
        };
        if self.options.kind != TransportKind::Bidirectional {
            result.session = self.options.session_id.clone();
        }
        if self.options.kind == TransportKind::Emulation {
            result.node = self.hub.node_id().to_owned();
        }
        // A position no stream can have: recovery from it is never possible.
        let unknown_position = self.options.recover_unlisted.then(|| SubscribeRequest {
            recover: true,
            offset: u64::MAX,
            epoch: "\u{0}unknown".to_owned(),
            ..SubscribeRequest::default()
        });
        result.data = reply_data;
        if let Some(exp) = expires_at.filter(|_| refresh_by_plugins) {
            self.refresh_at = Some(instant_at(exp));
        } else if let Some(exp) = expires_at {
            let ttl = exp.saturating_sub(unix_now());
            result.expires = true;
            result.ttl = u32::try_from(ttl).unwrap_or(u32::MAX);
            self.expire_deadline = Some(now + Duration::from_secs(ttl + config.expired_close_delay_secs));
        }
        self.hub.register_client(&client, &user, self.outbox.clone(), self.control_tx.clone());
        self.hub.emit(|| plugin::Event::new(EventKind::Connect, &client, &user, ""));
        self.conn = Some(Connected { client, user, info, true_claims, meta });
        self.next_ping = Some(now + Duration::from_secs(config.ping_interval_secs));

        // Server-side subscriptions from the token. Their publications may be
        // queued before this reply is: hold the writer and put the reply first.
        self.outbox.hold();
        for channel in channels {
            let Ok(options) = self.hub.channel_options(&channel) else {
                debug!(%channel, "token lists an invalid or unknown channel; skipped");
                continue;
            };
            let recover = req.subs.get(&channel).or(unknown_position.as_ref());
            let sub = match self.attach(&channel, options, recover, true, SubscribeExtras::default(), |_, _| None).await
            {
                Ok(sub) => sub,
                Err(e) => {
                    // Redis is unreachable: a reply would leave this
                    // connection half-set-up. Close it; the client reconnects.
                    debug!(error = ?e, %channel, "server-side subscription failed");
                    self.outbox.release();
                    return Err(DisconnectCode::INTERNAL.into());
                }
            };
            result.subs.insert(channel, sub);
        }
        let mut reply = Reply { id, connect: Some(result), ..Reply::default() };
        let mut encoded = encode(self.encoding, &reply);
        // A reply larger than the whole queue (push_front does not refuse it)
        // would close the connection with 3008 at the next push, and again
        // on every reconnect with the same positions. As for a client-side
        // subscribe, recoveries are given up instead, the largest first,
        // until the reply fits: those subscriptions get the gap signal.
        while let Ok(frame) = &encoded
            && frame.len() > self.outbox.max_bytes()
        {
            let recovered = reply.connect.iter_mut().flat_map(|c| c.subs.values_mut()).filter(|s| s.recovered);
            let largest = recovered.max_by_key(|s| s.publications.iter().map(|p| p.data.len()).sum::<usize>());
            let Some(sub) = largest else { break };
            give_up_recovery(sub);
            encoded = encode(self.encoding, &reply);
        }
        for sub in reply.connect.iter().flat_map(|c| c.subs.values()).filter(|s| s.was_recovering) {
            self.hub.metrics().recovery(sub.recovered);
        }
        let pushed = encoded.map(|frame| self.outbox.push_front(frame).map_err(|_| DisconnectCode::SLOW));
        self.outbox.release();
        pushed??;
        Ok(Reply::default())
    }

    async fn subscribe(&mut self, id: u32, req: SubscribeRequest) -> Result<Reply, Failure> {
        let options = self.hub.channel_options(&req.channel)?;
        if self.subs.contains_key(&req.channel) {
            return Err(ErrorCode::AlreadySubscribed.into());
        }
        if self.subs.len() >= self.hub.config().client.max_channels_per_connection {
            return Err(ErrorCode::LimitExceeded.into());
        }
        let filter = match &req.tf {
            Some(_) if !options.allow_tags_filter => return Err(ErrorCode::PermissionDenied.into()),
            Some(tf) => Some(Arc::new(TagFilter::compile(tf).map_err(|e| ReplyError {
                code: ErrorCode::BadRequest.code(),
                message: format!("bad request: {e}"),
                temporary: false,
            })?)),
            None => None,
        };
        // Like Centrifugo: an unknown or disallowed type is simply not
        // negotiated (`delta` absent from the reply), and a tags filter rules
        // delta out, since a filtered subscriber misses the bases.
        let delta = req.delta == DELTA_FOSSIL && options.allow_delta_fossil && filter.is_none();
        let user = self.user().to_owned();
        let mut chan_info = None;
        if !req.token.is_empty() {
            match self.hub.verifier.verify_subscribe(&req.token, &req.channel, &user) {
                Ok(claims) => chan_info = claims.info,
                Err(TokenError::Expired) => return Err(ErrorCode::TokenExpired.into()),
                Err(TokenError::Invalid(reason)) => {
                    debug!(%reason, channel = %req.channel, "subscription token rejected");
                    return Err(DisconnectCode::INVALID_TOKEN.into());
                }
            }
        } else if options.allow_user_limited_channels && req.channel.contains('#') {
            let allowed = user_limited_users(&req.channel).is_some_and(|mut users| users.any(|u| u == user));
            if !allowed {
                return Err(ErrorCode::PermissionDenied.into());
            }
        } else if !options.allow_subscribe_for_client || (user.is_empty() && !options.allow_subscribe_for_anonymous) {
            return Err(ErrorCode::PermissionDenied.into());
        }
        let mut options = options;
        let mut reply_data = None;
        let mut expires = None;
        if let Some(plugins) = self.hub.plugins().filter(|p| p.has_subscribe_pipeline(&req.channel)) {
            let request = plugin::SubscribeInfo {
                connection: self.plugin_connection(),
                channel: req.channel.clone(),
                data: req.data.as_ref().map(|d| d.as_bytes().clone()).unwrap_or_default(),
                trace: current_trace(),
            };
            let grant = match plugins.on_subscribe(request).await {
                SubscribeOutcome::Allow(grant) => grant,
                SubscribeOutcome::Deny(rejection) => return Err(rejection_error(rejection).into()),
                SubscribeOutcome::Disconnect(rejection) => return Err(plugin_disconnect(&rejection).into()),
            };
            // The plugin ran without the session's state pinned: re-check
            // what it may have raced with (a server-side subscribe).
            if self.subs.contains_key(&req.channel) {
                return Err(ErrorCode::AlreadySubscribed.into());
            }
            let json = |bytes: Bytes, what: &str| {
                Payload::from_json(&String::from_utf8_lossy(&bytes)).map_err(|_| ReplyError {
                    code: ErrorCode::Internal.code(),
                    message: format!("subscribe plugin returned {what} that is not json"),
                    temporary: false,
                })
            };
            if let Some(info) = grant.info {
                chan_info = Some(json(info, "info")?);
            }
            reply_data = grant.data.map(|d| json(d, "data")).transpose()?;
            expires = grant.expires_at.map(instant_at);
            options.presence = grant.presence.unwrap_or(options.presence);
            options.join_leave = grant.join_leave.unwrap_or(options.join_leave);
            // Recovery needs history; without it the override cannot apply.
            options.force_recovery =
                grant.force_recovery.unwrap_or(options.force_recovery) && options.history_enabled();
        }
        let channel = req.channel.clone();
        let encoding = self.encoding;
        let extras = SubscribeExtras { chan_info, filter, delta };
        self.attach(&channel, options, Some(&req), false, extras, |result, _| {
            let mut result = result.clone();
            result.data = reply_data.clone();
            Some(encode(encoding, &Reply { id, subscribe: Some(result), ..Reply::default() }))
        })
        .await?;
        if let Some(sub) = self.subs.get_mut(&channel) {
            sub.expires = expires;
            self.timed_subs |= expires.is_some();
        }
        Ok(Reply::default())
    }

    /// Joins `channel`: under the channel's lock, reads the stream position and
    /// any recovery, registers for live publications, and queues whatever
    /// `announce` returns (the subscribe reply or push) so that it precedes
    /// every live publication; an announcement this connection's encoding
    /// cannot carry closes it. Then records presence and announces the join.
    /// `extras` registers the tags filter and negotiated delta with the
    /// subscriber (recovered publications then take the delta data form).
    /// Fails (error 100) only when the engine is unreachable; nothing was
    /// registered then.
    async fn attach(
        &mut self,
        channel: &str,
        options: ChannelOptions,
        req: Option<&SubscribeRequest>,
        server_side: bool,
        extras: SubscribeExtras,
        announce: impl Fn(&SubscribeResult, bool) -> Option<Result<Bytes, DisconnectCode>>,
    ) -> Result<SubscribeResult, ErrorCode> {
        let SubscribeExtras { chan_info, filter, delta } = extras;
        let client: Arc<str> = self.conn.as_ref().map_or("", |c| c.client.as_str()).into();
        let delivery = SubscriberOptions { client, filter, delta };
        let history = StreamOptions::from_channel_options(&options);
        let asked_recoverable = req.is_some_and(|r| r.recoverable);
        let recoverable =
            history.is_some() && (options.force_recovery || (options.allow_recovery && asked_recoverable));
        let recover_from =
            req.filter(|r| r.recover).map(|r| StreamPosition { offset: r.offset, epoch: r.epoch.clone() });
        let max_recover = self.hub.config().client.recovery_max_publication_limit;
        let (id, outbox, registry) = (self.id, self.outbox.clone(), self.hub.registry.clone());
        let encoding = self.encoding;

        let recover = recover_from.as_ref().filter(|_| recoverable).map(|since| (since, max_recover));
        let result = self.hub.broker.subscribe(channel, history.as_ref(), recover, |mut view| {
            let mut result = SubscribeResult::default();
            if let Some(top) = view.position().filter(|_| recoverable) {
                result.recoverable = true;
                result.positioned = true;
                result.epoch = top.epoch;
                result.offset = top.offset;
            }
            if let Some(since) = &recover_from {
                result.was_recovering = true;
                if recoverable && let Recovery::Recovered(mut publications) = view.recover(since, max_recover) {
                    result.recovered = true;
                    if delta {
                        // The SDK decodes these through the delta path too.
                        for p in &mut publications {
                            if let Some(data) = encoding.delta_full_data(&p.data) {
                                p.data = data;
                            }
                        }
                    }
                    result.publications = publications;
                }
            }
            result.delta = delta;
            registry.add_with(channel, id, outbox.clone(), encoding, delivery);
            let mut announced = announce(&result, server_side);
            // A recovery larger than the whole outbox would close the
            // connection (3008) on every retry, and the client could never
            // catch up: it is told instead that it cannot recover, its
            // explicit gap signal.
            if result.recovered && matches!(&announced, Some(Ok(frame)) if frame.len() > outbox.max_bytes()) {
                give_up_recovery(&mut result);
                announced = announce(&result, server_side);
            }
            match announced {
                // Overflow closes the outbox (3008); the run loop sees it.
                Some(Ok(frame)) => {
                    let _ = outbox.push(frame);
                }
                Some(Err(code)) => outbox.close(code),
                None => {}
            }
            result
        });
        let result = result.await?;
        // Server-side subscriptions at connect count once their reply is
        // final (`connect` may still give up a recovery).
        if result.was_recovering && !server_side {
            self.hub.metrics().recovery(result.recovered);
        }
        self.hub.metrics().subscriptions_changed(1);

        self.subs.insert(
            channel.to_owned(),
            Subscription { options: options.clone(), chan_info: chan_info.clone(), expires: None },
        );
        self.emit_membership(channel, EventKind::Subscribe, options.join_leave.then_some(EventKind::Join));
        if options.presence || options.join_leave {
            let info = self.client_info(chan_info);
            if options.presence {
                self.hub.presence_add(channel, info.clone()).await;
            }
            if options.join_leave {
                self.hub.broker.join(channel, &info);
            }
        }
        Ok(result)
    }

    /// Leaves `channel`; a no-op when not subscribed.
    fn unsubscribe(&mut self, channel: &str) -> bool {
        let Some(sub) = self.subs.remove(channel) else { return false };
        self.hub.metrics().subscriptions_changed(-1);
        self.hub.registry.remove(channel, self.id);
        if let Some(conn) = self.conn.as_ref().filter(|_| sub.options.presence) {
            self.hub.presence_remove(channel, &conn.client);
        }
        if sub.options.join_leave {
            let info = self.client_info(sub.chan_info);
            self.hub.broker.leave(channel, &info);
        }
        self.emit_membership(channel, EventKind::Unsubscribe, sub.options.join_leave.then_some(EventKind::Leave));
        true
    }

    /// Emits subscribe/unsubscribe (plus join/leave) and, when this
    /// connection was the first in or last out, channel occupied/vacated.
    fn emit_membership(&self, channel: &str, kind: EventKind, join_leave: Option<EventKind>) {
        let Some(plugins) = self.hub.plugins().filter(|p| p.wants_events()) else { return };
        let (client, user) = self.conn.as_ref().map_or(("", ""), |c| (c.client.as_str(), c.user.as_str()));
        plugins.emit(plugin::Event::new(kind, client, user, channel));
        if let Some(kind) = join_leave {
            plugins.emit(plugin::Event::new(kind, client, user, channel));
        }
        let subscribers = self.hub.registry.num_subscribers(channel);
        let edge = match kind {
            EventKind::Subscribe if subscribers == 1 => Some(EventKind::ChannelOccupied),
            EventKind::Unsubscribe if subscribers == 0 => Some(EventKind::ChannelVacated),
            _ => None,
        };
        if let Some(kind) = edge {
            plugins.emit(plugin::Event::new(kind, "", "", channel));
        }
    }

    async fn publish(&mut self, id: u32, channel: String, data: Option<Payload>) -> Result<Reply, Failure> {
        let options = self.hub.channel_options(&channel)?;
        let subscribed = self.subs.get(&channel);
        if !(options.allow_publish_for_client || (options.allow_publish_for_subscriber && subscribed.is_some())) {
            return Err(ErrorCode::PermissionDenied.into());
        }
        let data = data.ok_or(ErrorCode::BadRequest)?;
        let info = self.client_info(subscribed.and_then(|s| s.chan_info.clone()));
        let client = self.conn.as_ref().map(|c| c.client.clone());
        let connection = Some(Arc::new(self.plugin_connection()));
        self.hub
            .publish(PublishRequest {
                channel,
                data,
                info: Some(info),
                client,
                connection,
                ..PublishRequest::default()
            })
            .await?;
        Ok(Reply { id, publish: Some(Empty {}), ..Reply::default() })
    }

    /// Answers `rpc` through the rpc pipeline; 104 when none is configured.
    async fn rpc(&mut self, id: u32, req: RpcRequest) -> Result<Reply, Failure> {
        let bytes = req.data.as_ref().map(|d| d.as_bytes().clone()).unwrap_or_default();
        if let Some(call) = super::ChatCall::parse(&req.method, &bytes) {
            let data = self.chat(call?).await?;
            return Ok(Reply { id, rpc: Some(RpcResult { data: Some(data) }), ..Reply::default() });
        }
        let Some(plugins) = self.hub.plugins().filter(|p| p.has_rpc_pipeline()) else {
            return Err(ErrorCode::MethodNotFound.into());
        };
        let data = req.data.map(Payload::into_bytes).unwrap_or_default();
        match plugins.on_rpc(&req.method, data).await {
            Some(Ok(bytes)) => {
                let text = std::str::from_utf8(&bytes).map_err(|_| ErrorCode::Internal)?;
                let data = if text.is_empty() {
                    None
                } else {
                    Some(Payload::from_json(text).map_err(|_| ErrorCode::Internal)?)
                };
                Ok(Reply { id, rpc: Some(RpcResult { data }), ..Reply::default() })
            }
            Some(Err(rejection)) => Err(rejection_error(rejection).into()),
            None => Err(ErrorCode::MethodNotFound.into()),
        }
    }

    fn check_subscriber_permission(&self, channel: &str, allowed: fn(&ChannelOptions) -> bool) -> Result<(), Failure> {
        let options = self.hub.channel_options(channel)?;
        if !(allowed(&options) && self.subs.contains_key(channel)) {
            return Err(ErrorCode::PermissionDenied.into());
        }
        Ok(())
    }

    async fn presence(&self, id: u32, channel: &str) -> Result<Reply, Failure> {
        self.check_subscriber_permission(channel, |o| o.allow_presence_for_subscriber)?;
        let presence = self.hub.presence(channel).await?;
        Ok(Reply { id, presence: Some(PresenceResult { presence }), ..Reply::default() })
    }

    async fn presence_stats(&self, id: u32, channel: &str) -> Result<Reply, Failure> {
        self.check_subscriber_permission(channel, |o| o.allow_presence_for_subscriber)?;
        let stats = self.hub.presence_stats(channel).await?;
        let result = PresenceStatsResult { num_clients: stats.num_clients, num_users: stats.num_users };
        Ok(Reply { id, presence_stats: Some(result), ..Reply::default() })
    }

    async fn history(&self, id: u32, req: HistoryRequest) -> Result<Reply, Failure> {
        self.check_subscriber_permission(&req.channel, |o| o.allow_history_for_subscriber)?;
        let max = self.hub.config().client.history_max_publication_limit;
        // A negative limit asks for as much as allowed; larger asks are capped.
        let limit = usize::try_from(req.limit).map_or(max, |l| l.min(max));
        let (publications, top) = self.hub.history(&req.channel, req.since.as_ref(), limit, req.reverse).await?;
        let result = HistoryResult { publications, epoch: top.epoch, offset: top.offset };
        Ok(Reply { id, history: Some(result), ..Reply::default() })
    }

    fn refresh(&mut self, id: u32, req: RefreshRequest) -> Result<Reply, Failure> {
        let claims = match self.hub.verifier.verify_connect(&req.token) {
            Ok(claims) => claims,
            Err(TokenError::Expired) => return Err(ErrorCode::TokenExpired.into()),
            Err(TokenError::Invalid(_)) => return Err(DisconnectCode::INVALID_TOKEN.into()),
        };
        if claims.user != self.user() {
            return Err(DisconnectCode::INVALID_TOKEN.into());
        }
        let conn = self.conn.as_ref().expect("refresh only runs connected");
        let mut result =
            RefreshResult { client: conn.client.clone(), version: VERSION.to_owned(), ..RefreshResult::default() };
        self.expire_deadline = None;
        if let Some(exp) = claims.expires_at {
            let ttl = exp.saturating_sub(unix_now());
            result.expires = true;
            result.ttl = u32::try_from(ttl).unwrap_or(u32::MAX);
            let delay = self.hub.config().client.expired_close_delay_secs;
            self.expire_deadline = Some(Instant::now() + Duration::from_secs(ttl + delay));
        }
        Ok(Reply { id, refresh: Some(result), ..Reply::default() })
    }

    fn sub_refresh(&mut self, id: u32, req: SubRefreshRequest) -> Result<Reply, Failure> {
        if !self.subs.contains_key(&req.channel) {
            return Err(ErrorCode::PermissionDenied.into());
        }
        let claims = match self.hub.verifier.verify_subscribe(&req.token, &req.channel, self.user()) {
            Ok(claims) => claims,
            Err(TokenError::Expired) => return Err(ErrorCode::TokenExpired.into()),
            Err(TokenError::Invalid(_)) => return Err(DisconnectCode::INVALID_TOKEN.into()),
        };
        let mut result = SubRefreshResult::default();
        if let Some(exp) = claims.expires_at {
            result.expires = true;
            result.ttl = u32::try_from(exp.saturating_sub(unix_now())).unwrap_or(u32::MAX);
        }
        Ok(Reply { id, sub_refresh: Some(result), ..Reply::default() })
    }

    async fn handle_control(&mut self, control: Control) -> Result<(), DisconnectCode> {
        match control {
            Control::Subscribe { channel } => {
                if self.subs.contains_key(&channel) {
                    return Ok(());
                }
                let Ok(options) = self.hub.channel_options(&channel) else { return Ok(()) };
                let encoding = self.encoding;
                self.attach(&channel, options, None, true, SubscribeExtras::default(), |result, _| {
                    let push = SubscribePush {
                        recoverable: result.recoverable,
                        epoch: result.epoch.clone(),
                        offset: result.offset,
                        positioned: result.positioned,
                        data: None,
                    };
                    let push = Push { channel: channel.clone(), subscribe: Some(push), ..Push::default() };
                    Some(encode(encoding, &Reply::push(push)))
                })
                .await
                .map(|_| ())
                // The engine is unreachable: the client reconnects and gets it again.
                .map_err(|_| DisconnectCode::INTERNAL)
            }
            Control::Unsubscribe { channel } => {
                if self.unsubscribe(&channel) {
                    let push = UnsubscribePush { code: UNSUBSCRIBE_SERVER, reason: "server unsubscribe".to_owned() };
                    self.reply(&Reply::push(Push { channel, unsubscribe: Some(push), ..Push::default() }))?;
                }
                Ok(())
            }
        }
    }

    /// Drops every subscription, presence entry and index entry at once.
    fn cleanup(&mut self) {
        let channels: Vec<String> = self.subs.keys().cloned().collect();
        for channel in channels {
            self.unsubscribe(&channel);
        }
        if let Some(conn) = &self.conn {
            self.hub.unregister_client(&conn.client);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Session timers and ordering without sockets, on paused time.

    use super::*;
    use crate::config::Config;
    use tokio_util::sync::CancellationToken;

    struct Harness {
        hub: Arc<Hub>,
        tx: mpsc::UnboundedSender<Inbound>,
        outbox: Arc<Outbox>,
        task: tokio::task::JoinHandle<DisconnectCode>,
        started: Instant,
    }

    fn start(config: Config) -> Harness {
        let hub = Hub::new(Arc::new(config), CancellationToken::new()).expect("hub");
        let session = Session::new(hub.clone(), hub.try_acquire_connection().expect("slot"), Encoding::Json);
        let outbox = session.outbox();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let inbound = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let task = tokio::spawn(session.run(inbound));
        Harness { hub, tx, outbox, task, started: Instant::now() }
    }

    #[tokio::test]
    async fn the_long_lived_session_future_stays_small() {
        let hub = Hub::new(Arc::new(Config::default()), CancellationToken::new()).expect("hub");
        let session = Session::new(hub.clone(), hub.try_acquire_connection().expect("slot"), Encoding::Json);
        let run = session.run(futures_util::stream::pending::<Inbound>());
        // Every idle connection holds this future (inside its task) for its
        // whole life; the command handlers are boxed out of it. Inlined they
        // made it several KiB.
        let size = std::mem::size_of_val(&run);
        eprintln!("session.run future: {size} bytes");
        assert!(size <= 2048, "session.run future is {size} bytes");
    }

    fn anonymous() -> Config {
        let mut config = Config::default();
        config.client.allow_anonymous = true;
        config
    }

    impl Harness {
        fn send(&self, text: &'static str) {
            self.tx.send(Inbound::Text(Bytes::from_static(text.as_bytes()))).expect("session alive");
        }

        async fn next(&self) -> String {
            let mut batch = Vec::new();
            assert_eq!(self.outbox.next_batch(&mut batch, 1 << 16).await, None, "outbox closed early");
            batch.iter().map(|b| std::str::from_utf8(b).unwrap().to_owned()).collect::<Vec<_>>().join("\n")
        }

        async fn connect(&self) {
            self.send(r#"{"id":1,"connect":{}}"#);
            let reply = self.next().await;
            assert!(reply.starts_with(r#"{"id":1,"connect":{"client":"#), "{reply}");
        }
    }

    #[tokio::test]
    async fn a_recovery_larger_than_the_outbox_is_answered_as_not_recovered() {
        let mut config = anonymous();
        config.client.queue_max_bytes = 4096;
        config.channels.namespaces.push(crate::config::NamespaceConfig {
            name: "h".into(),
            history_size: 1000,
            history_ttl_secs: 60,
            force_recovery: true,
            allow_subscribe_for_anonymous: true,
            ..Default::default()
        });
        let h = start(config);
        let publish = |n: usize| {
            let hub = h.hub.clone();
            async move {
                let data = Payload::from_json(&format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(100))).unwrap();
                hub.publish(crate::hub::PublishRequest { channel: "h:c".into(), data, ..Default::default() })
                    .await
                    .expect("publish")
            }
        };
        let first = publish(0).await;
        h.connect().await;

        // A few publications fit: recovered, with them.
        for n in 1..=3 {
            publish(n).await;
        }
        let subscribe = |offset: u64| {
            let text = format!(
                r#"{{"id":2,"subscribe":{{"channel":"h:c","recover":true,"epoch":"{}","offset":{offset}}}}}"#,
                first.epoch
            );
            Inbound::Text(Bytes::from(text))
        };
        h.tx.send(subscribe(first.offset)).unwrap();
        let reply: serde_json::Value = serde_json::from_str(&h.next().await).unwrap();
        assert_eq!(reply["subscribe"]["recovered"], serde_json::json!(true), "{reply}");
        assert_eq!(reply["subscribe"]["publications"].as_array().map(Vec::len), Some(3), "{reply}");
        h.send(r#"{"id":3,"unsubscribe":{"channel":"h:c"}}"#);
        assert_eq!(h.next().await, r#"{"id":3,"unsubscribe":{}}"#);

        // 100 publications of ~120 bytes do not fit in 4 KiB: not
        // recovered (the gap signal), and the connection stays open.
        for n in 4..=100 {
            publish(n).await;
        }
        h.tx.send(subscribe(first.offset)).unwrap();
        let reply: serde_json::Value = serde_json::from_str(&h.next().await).unwrap();
        // `recovered: false` is left out, as proto3 JSON leaves out defaults.
        assert_eq!(reply["subscribe"].get("recovered"), None, "{reply}");
        assert_eq!(reply["subscribe"]["was_recovering"], serde_json::json!(true), "{reply}");
        assert_eq!(reply["subscribe"]["offset"], serde_json::json!(first.offset + 100), "{reply}");
        assert_eq!(reply["subscribe"].get("publications"), None, "{reply}");
        assert_eq!(h.outbox.close_code(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn missing_pong_closes_with_3012_after_the_pong_timeout() {
        let h = start(anonymous());
        h.connect().await;
        assert_eq!(h.next().await, "{}");
        assert_eq!(h.started.elapsed(), Duration::from_secs(25));
        let code = h.task.await.unwrap();
        assert_eq!(code, DisconnectCode::NO_PONG);
        assert_eq!(h.started.elapsed(), Duration::from_secs(25 + 8));
        assert_eq!(h.outbox.close_code(), Some(DisconnectCode::NO_PONG));
    }

    #[tokio::test(start_paused = true)]
    async fn pong_keeps_the_connection_alive() {
        let h = start(anonymous());
        h.connect().await;
        for round in 1..=3u64 {
            assert_eq!(h.next().await, "{}");
            assert_eq!(h.started.elapsed(), Duration::from_secs(25 * round));
            h.send("{}");
        }
        drop(h.tx);
        assert_eq!(h.task.await.unwrap(), DisconnectCode::CONNECTION_CLOSED);
    }

    #[tokio::test(start_paused = true)]
    async fn no_connect_within_the_timeout_is_stale() {
        let h = start(anonymous());
        assert_eq!(h.task.await.unwrap(), DisconnectCode::STALE);
        assert_eq!(h.started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn commands_before_connect_are_a_bad_request() {
        let h = start(anonymous());
        h.send(r#"{"id":1,"subscribe":{"channel":"a"}}"#);
        assert_eq!(h.task.await.unwrap(), DisconnectCode::BAD_REQUEST);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_connection_closes_with_3005_after_the_grace_delay() {
        let mut config = Config::default();
        config.client.expired_close_delay_secs = 5;
        config.client.ping_interval_secs = 3600;
        let secret = config.auth.token_hmac_secret.clone();
        let exp = unix_now() + 2;
        let token = super::super::auth::mint_hs256(&secret, &serde_json::json!({"sub": "u", "exp": exp})).unwrap();
        let h = start(config);
        let connect = format!(r#"{{"id":1,"connect":{{"token":"{token}"}}}}"#);
        h.tx.send(Inbound::Text(Bytes::from(connect))).unwrap();
        let reply = h.next().await;
        assert!(reply.contains(r#""expires":true"#), "{reply}");
        assert_eq!(h.task.await.unwrap(), DisconnectCode::EXPIRED);
        let elapsed = h.started.elapsed().as_secs();
        assert!((6..=7).contains(&elapsed), "closed after {elapsed}s, want ttl (<=2s) + 5s grace");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limit_replies_111_then_disconnects_3013() {
        let mut config = anonymous();
        config.client.max_commands_per_sec = 2;
        let h = start(config);
        h.connect().await;
        h.send(r#"{"id":2,"rpc":{"method":"x"}}"#);
        assert!(h.next().await.contains(r#""code":104"#));
        h.send(r#"{"id":3,"rpc":{"method":"x"}}"#);
        assert!(h.next().await.contains(r#""code":111"#));
        h.send("{\"id\":4,\"rpc\":{}}\n{\"id\":5,\"rpc\":{}}");
        assert_eq!(h.task.await.unwrap(), DisconnectCode::TOO_MANY_REQUESTS);
    }
}
