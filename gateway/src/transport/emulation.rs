//! Bidirectional emulation: `POST /connection/http_stream` and
//! `/connection/sse` stream replies and pushes down; the client sends its
//! commands up with `POST /emulation` `{"session","node","data"}`.
//!
//! Which session a post reaches is the [`EmulationRouter`]'s job. This node's
//! [`LocalRouter`] knows only its own sessions; a multi-node router (Redis)
//! wraps it and forwards a post whose `node` is another node's to that node,
//! so sticky sessions stay an optimisation, not a requirement.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use dashmap::DashMap;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::stream::{
    Body, Framer, Stream, disconnect_object, empty_response, inbound_frame, json_response, query_param, read_body,
};
use crate::broker::RedisBroker;
use crate::hub::{Hub, Inbound, SessionOptions, TransportKind};
use crate::protocol::{DisconnectCode, DisconnectPush, Encoding, Push, Reply, proto};

/// Why a command post was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeliverError {
    /// No node owns this session (404): it ended, or never existed.
    #[error("unknown session")]
    UnknownSession,
    /// The session has not read its earlier commands yet (429).
    #[error("session inbound queue full (max {max} frames)")]
    Busy { max: usize },
}

/// A boxed future, so the router is usable as a trait object.
pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DeliverError>> + Send + 'a>>;

/// Delivers client commands to the session that owns them, wherever it runs.
pub trait EmulationRouter: Send + Sync {
    /// Delivers `data` (the session's commands in its encoding:
    /// newline-delimited JSON or length-delimited Protobuf) to `session`,
    /// which the client says lives on `node`.
    fn deliver<'a>(&'a self, node: &'a str, session: &'a str, data: Bytes) -> DeliverFuture<'a>;
}

/// The sessions of this node that accept commands from `/emulation`.
pub struct LocalRouter {
    node: String,
    /// Each session's queue and encoding: a post's `data` carries no frame
    /// type, so it is handed over as the session's own kind of frame.
    sessions: DashMap<String, (mpsc::Sender<Inbound>, Encoding)>,
}

/// Keeps a session reachable through `/emulation`; dropping it unregisters.
pub(super) struct Registration {
    router: Arc<LocalRouter>,
    session: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.router.sessions.remove(&self.session);
    }
}

impl LocalRouter {
    pub fn new(node: &str) -> Arc<Self> {
        Arc::new(Self { node: node.to_owned(), sessions: DashMap::new() })
    }

    pub(super) fn register(
        self: &Arc<Self>,
        session: &str,
        inbound: mpsc::Sender<Inbound>,
        encoding: Encoding,
    ) -> Registration {
        self.sessions.insert(session.to_owned(), (inbound, encoding));
        Registration { router: self.clone(), session: session.to_owned() }
    }

    /// Queues `data` for a session of this node without waiting.
    pub fn deliver_local(&self, session: &str, data: Bytes) -> Result<(), DeliverError> {
        let (inbound, encoding) = self.sessions.get(session).map(|s| s.clone()).ok_or(DeliverError::UnknownSession)?;
        inbound.try_send(inbound_frame(encoding, data)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => DeliverError::Busy { max: super::stream::INBOUND_QUEUE },
            mpsc::error::TrySendError::Closed(_) => DeliverError::UnknownSession,
        })
    }
}

impl EmulationRouter for LocalRouter {
    fn deliver<'a>(&'a self, node: &'a str, session: &'a str, data: Bytes) -> DeliverFuture<'a> {
        // One node: a session of another node cannot exist here. An empty
        // node is accepted for clients that do not echo it.
        let result = if node.is_empty() || node == self.node {
            self.deliver_local(session, data)
        } else {
            Err(DeliverError::UnknownSession)
        };
        Box::pin(std::future::ready(result))
    }
}

/// Multi-node routing through Redis: a post for a session of another node
/// is published on that node's private channel, and the owner feeds it into
/// the session. A post for a node that is not listening is 404; the owner
/// drops a post for a session it no longer has (the client's stream is gone
/// then anyway).
pub struct RedisRouter {
    local: Arc<LocalRouter>,
    redis: Arc<RedisBroker>,
}

impl RedisRouter {
    /// Routes through `redis` and receives forwarded posts into `local`.
    pub fn new(local: Arc<LocalRouter>, redis: Arc<RedisBroker>) -> Arc<Self> {
        let receiver = local.clone();
        redis.set_node_handler(Box::new(move |session, data| {
            if let Err(e) = receiver.deliver_local(session, data) {
                debug!(error = %e, %session, "forwarded emulation post dropped");
            }
        }));
        Arc::new(Self { local, redis })
    }
}

impl EmulationRouter for RedisRouter {
    fn deliver<'a>(&'a self, node: &'a str, session: &'a str, data: Bytes) -> DeliverFuture<'a> {
        Box::pin(async move {
            if node.is_empty() || node == self.local.node {
                return self.local.deliver_local(session, data);
            }
            match self.redis.forward(node, session, &data).await {
                Ok(true) => Ok(()),
                Ok(false) | Err(_) => Err(DeliverError::UnknownSession),
            }
        })
    }
}

/// The transports' shared state: the router and this node's sessions.
pub(crate) struct Emulation {
    pub local: Arc<LocalRouter>,
    pub router: Arc<dyn EmulationRouter>,
    pub polls: super::long_poll::Polls,
}

impl Emulation {
    /// Single-node setup: the router is the local one.
    pub fn local(hub: &Hub) -> Arc<Self> {
        let local = LocalRouter::new(hub.node_id());
        Arc::new(Self { router: local.clone(), local, polls: super::long_poll::Polls::default() })
    }

    /// The router the hub's engine calls for: Redis routing across nodes,
    /// local otherwise.
    pub fn for_hub(hub: &Hub) -> Arc<Self> {
        let Some(redis) = hub.redis() else { return Self::local(hub) };
        let local = LocalRouter::new(hub.node_id());
        let router = RedisRouter::new(local.clone(), redis.clone());
        Arc::new(Self { router, local, polls: super::long_poll::Polls::default() })
    }
}

/// The body of `POST /emulation`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulationRequest {
    pub session: String,
    #[serde(default)]
    pub node: String,
    pub data: String,
}

/// A `POST /emulation` body, parsed.
#[derive(Debug)]
pub struct EmulationPost {
    pub node: String,
    pub session: String,
    /// The commands, in the session's encoding.
    pub data: Bytes,
}

/// Reads a `POST /emulation` body: a JSON `EmulationRequest`, or the
/// Protobuf one when `protobuf`. 400 when it is not the expected message or
/// names no session, 413 when its commands exceed `max_data_bytes`.
pub fn parse_emulation_request(
    body: &[u8],
    protobuf: bool,
    max_data_bytes: usize,
) -> Result<EmulationPost, StatusCode> {
    let post = if protobuf {
        let request = <proto::EmulationRequest as prost::Message>::decode(body).map_err(|_| StatusCode::BAD_REQUEST)?;
        EmulationPost { node: request.node, session: request.session, data: request.data }
    } else {
        let request = serde_json::from_slice::<EmulationRequest>(body).map_err(|_| StatusCode::BAD_REQUEST)?;
        EmulationPost { node: request.node, session: request.session, data: Bytes::from(request.data) }
    };
    if post.session.is_empty() {
        return Err(StatusCode::BAD_REQUEST);
    }
    if post.data.len() > max_data_bytes {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    Ok(post)
}

/// Whether the request's `Content-Type` is `application/octet-stream`: the
/// client speaks Protobuf (centrifuge-js's Protobuf build sends it on both
/// the `http_stream` connect and its `/emulation` posts).
fn is_protobuf(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"))
}

/// `POST /emulation`: 204 delivered, 400 bad body, 404 unknown session,
/// 413 over `client.max_frame_bytes`, 429 session busy. The body is a JSON
/// `{"session","node","data"}`, or a Protobuf `EmulationRequest` when the
/// `Content-Type` is `application/octet-stream`.
pub(super) async fn handle_post(req: Request<Incoming>, hub: &Hub, emulation: &Emulation) -> Response<Body> {
    let protobuf = is_protobuf(&req);
    // A JSON body holds the commands as a JSON string: allow for its
    // escaping (and for the few bytes of a Protobuf envelope).
    let max = hub.config().client.max_frame_bytes;
    let body = match read_body(req.into_body(), max.saturating_mul(2)).await {
        Ok(body) => body,
        Err(refused) => return refused.response(),
    };
    let post = match parse_emulation_request(&body, protobuf, max) {
        Ok(post) => post,
        Err(StatusCode::PAYLOAD_TOO_LARGE) => {
            return json_response(StatusCode::PAYLOAD_TOO_LARGE, r#"{"error":"request body too large"}"#);
        }
        Err(_) => return json_response(StatusCode::BAD_REQUEST, r#"{"error":"bad emulation request"}"#),
    };
    match emulation.router.deliver(&post.node, &post.session, post.data).await {
        Ok(()) => empty_response(StatusCode::NO_CONTENT),
        Err(DeliverError::UnknownSession) => json_response(StatusCode::NOT_FOUND, r#"{"error":"unknown session"}"#),
        Err(e @ DeliverError::Busy { .. }) => {
            debug!(error = %e, "emulation post refused");
            json_response(StatusCode::TOO_MANY_REQUESTS, r#"{"error":"session busy"}"#)
        }
    }
}

/// Newline-delimited JSON replies and pushes, as on a WebSocket; or, for a
/// Protobuf session, the length-prefixed messages concatenated.
struct HttpStreamFramer(Encoding);

impl Framer for HttpStreamFramer {
    fn message(&mut self, message: &Bytes, out: &mut BytesMut) -> Option<DisconnectCode> {
        out.put_slice(message);
        if !self.0.is_binary() {
            out.put_u8(b'\n');
        }
        None
    }

    fn disconnect(&mut self, code: DisconnectCode, out: &mut BytesMut) {
        match self.0 {
            Encoding::Json => {
                out.put_slice(format!(r#"{{"push":{{"disconnect":{}}}}}"#, disconnect_object(code)).as_bytes());
                out.put_u8(b'\n');
            }
            Encoding::Protobuf => {
                let disconnect = DisconnectPush {
                    code: u32::from(code.code),
                    reason: code.reason.to_owned(),
                    reconnect: code.reconnect(),
                };
                let reply = Reply::push(Push { disconnect: Some(disconnect), ..Push::default() });
                // Protobuf encodes any reply; only JSON refuses binary payloads.
                if let Ok(frame) = Encoding::Protobuf.encode_reply(&reply) {
                    out.put_slice(&frame);
                }
            }
        }
    }
}

/// One `data:` event per reply or push.
struct SseFramer;

impl Framer for SseFramer {
    fn message(&mut self, message: &Bytes, out: &mut BytesMut) -> Option<DisconnectCode> {
        out.put_slice(b"data: ");
        out.put_slice(message);
        out.put_slice(b"\n\n");
        None
    }

    fn disconnect(&mut self, code: DisconnectCode, out: &mut BytesMut) {
        out.put_slice(format!("data: {{\"push\":{{\"disconnect\":{}}}}}\n\n", disconnect_object(code)).as_bytes());
    }
}

/// `POST /connection/http_stream` (body: the connect command or commands;
/// Protobuf when its `Content-Type` is `application/octet-stream`),
/// `GET /connection/sse?cf_connect=…` and `POST /connection/sse` (JSON only:
/// an event stream is text).
pub(super) async fn handle_stream(
    req: Request<Incoming>,
    hub: &Arc<Hub>,
    tracker: &TaskTracker,
    emulation: &Emulation,
    sse: bool,
) -> Response<Body> {
    let encoding = if !sse && is_protobuf(&req) { Encoding::Protobuf } else { Encoding::Json };
    let forwarded = super::origin::forwarded_headers(req.headers(), hub.config());
    let max = hub.config().client.max_frame_bytes;
    let first = if req.method() == Method::GET {
        match query_param(req.uri().query(), "cf_connect") {
            Some(text) if text.len() <= max => Bytes::from(text),
            Some(_) => return json_response(StatusCode::PAYLOAD_TOO_LARGE, r#"{"error":"cf_connect too large"}"#),
            None => return json_response(StatusCode::BAD_REQUEST, r#"{"error":"cf_connect required"}"#),
        }
    } else {
        match read_body(req.into_body(), max).await {
            Ok(body) => body,
            Err(refused) => return refused.response(),
        }
    };
    let session_id = uuid::Uuid::new_v4().to_string();
    let options = SessionOptions {
        kind: TransportKind::Emulation,
        session_id: session_id.clone(),
        encoding,
        transport: if sse { "sse" } else { "http_stream" },
        forwarded,
        ..SessionOptions::default()
    };
    let stream = match Stream::open(hub, options, first) {
        Ok(stream) => stream,
        Err(refused) => return refused.response(),
    };
    let registration = emulation.local.register(&session_id, stream.inbound.clone(), encoding);
    if sse {
        stream.respond(hub, tracker, SseFramer, "text/event-stream", registration)
    } else if encoding.is_binary() {
        stream.respond(hub, tracker, HttpStreamFramer(encoding), "application/octet-stream", registration)
    } else {
        stream.respond(hub, tracker, HttpStreamFramer(encoding), "application/json", registration)
    }
}
