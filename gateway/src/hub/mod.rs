//! The hub: the node's shared state and the session state machine.
//!
//! This is the one module that combines channels, history, presence, the
//! engine and token verification. Transports hand it decoded frames through
//! [`Session`]; the server API calls the `Hub` methods directly. It owns no
//! sockets and encodes through `protocol` only.

pub mod auth;
mod chat;
mod error;
mod session;

pub use chat::{Actor, ChatCall, METHODS as CHAT_METHODS};
pub use error::HubError;
pub use session::{Control, Inbound, Session, SessionOptions, TransportKind};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::{Delivery, DiskOptions, Engine, EngineError, MemoryBroker, RedisBroker, RedisOptions};
use crate::channel::{self, Form, Outbox, Registry, SubscriberId};
use crate::config::{ChannelOptions, Config, EngineKind, HistoryStorage, NamespaceTable};
use crate::history::StreamOptions;
use crate::plugin::{self, PluginHost, PublishOutcome};
use crate::presence::{Presence, PresenceStats};
use crate::protocol::{
    ClientInfo, DisconnectCode, ErrorCode, JoinLeave, Payload, Publication, Push, Reply, ReplyError, StreamPosition,
};
use crate::telemetry::Metrics;
use tracing::Instrument as _;

use auth::TokenVerifier;

/// The crate version, reported in connect replies and `/api/info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A publish as the server API or a client asks for it.
#[derive(Debug, Default, Clone)]
pub struct PublishRequest {
    pub channel: String,
    pub data: Payload,
    pub info: Option<ClientInfo>,
    pub tags: HashMap<String, String>,
    pub skip_history: bool,
    pub idempotency_key: Option<String>,
    /// The publishing connection's client id (a client publish, or `client`
    /// in an API publish).
    pub client: Option<String>,
    /// Skip `client` in the fan-out even when the namespace does not ask to
    /// (`exclude_publisher` in an API publish).
    pub exclude_publisher: bool,
    /// The publishing client's connection, for publish plugins.
    pub connection: Option<Arc<plugin::Connection>>,
}

/// A live connection as the server API sees it.
struct ClientEntry {
    user: String,
    outbox: Arc<Outbox>,
    control: mpsc::Sender<Control>,
}

/// Fan-out target of the engine: encodes each message once per encoding
/// present and shares the bytes with every local subscriber.
struct Fanout {
    registry: Arc<Registry>,
    metrics: Metrics,
}

impl Delivery for Fanout {
    fn publication(&self, channel: &str, publication: &Publication, exclude: Option<&str>) {
        let subscribers = self.registry.num_subscribers(channel);
        if subscribers == 0 {
            return;
        }
        let span = crate::child_span!(
            "delivery",
            messaging.destination.name = channel,
            subscribers = crate::telemetry::trace::int(subscribers),
            delivered = tracing::field::Empty,
            bytes = tracing::field::Empty,
        );
        let _entered = span.enter();
        let stats = self.registry.fanout_publication(channel, publication, exclude, |encoding, form| match form {
            Form::Plain => encoding.encode_publication_push(channel, publication),
            Form::Full => encoding.encode_delta_publication_push(channel, publication, None),
            Form::Delta(delta) => encoding.encode_delta_publication_push(channel, publication, Some(delta)),
        });
        span.record("delivered", crate::telemetry::trace::int(stats.delivered))
            .record("bytes", crate::telemetry::trace::int(stats.bytes));
        self.metrics.fanout(stats.delivered as u64, stats.bytes as u64, stats.dropped as u64);
    }

    fn join(&self, channel: &str, info: &ClientInfo) {
        let push =
            Push { channel: channel.to_owned(), join: Some(JoinLeave { info: info.clone() }), ..Push::default() };
        let reply = Reply::push(push);
        self.registry.fanout(channel, |encoding| encoding.encode_reply(&reply));
    }

    fn leave(&self, channel: &str, info: &ClientInfo) {
        let push =
            Push { channel: channel.to_owned(), leave: Some(JoinLeave { info: info.clone() }), ..Push::default() };
        let reply = Reply::push(push);
        self.registry.fanout(channel, |encoding| encoding.encode_reply(&reply));
    }

    fn gap(&self, channel: &str) {
        // Their clients reconnect and recover from history (or learn they cannot).
        self.registry.close_all(channel, DisconnectCode::INSUFFICIENT_STATE);
    }
}

/// Shared node state. One per process (or per test gateway).
pub struct Hub {
    config: Arc<Config>,
    namespaces: NamespaceTable,
    verifier: TokenVerifier,
    registry: Arc<Registry>,
    broker: Engine,
    presence: Presence,
    clients: DashMap<String, ClientEntry>,
    users: DashMap<String, Vec<String>>,
    /// `(channel, key)` → the first publish's position. The cell is filled
    /// once its publish succeeded; concurrent repeats wait for it, and a
    /// failed publish leaves it empty so a retry publishes.
    idempotency: moka::sync::Cache<(String, String), Arc<tokio::sync::OnceCell<StreamPosition>>>,
    next_subscriber: AtomicU64,
    connections: AtomicUsize,
    node_id: String,
    started: Instant,
    shutdown: CancellationToken,
    plugins: Option<PluginHost>,
    chat: chat::ChatState,
    metrics: Metrics,
}

/// The error reply for a plugin's refusal. Code 100 (a failing plugin under
/// `on_error = "deny"`) is temporary, like any internal error.
pub(crate) fn rejection_error(rejection: plugin::Rejection) -> ReplyError {
    ReplyError {
        temporary: rejection.code == ErrorCode::Internal.code(),
        code: rejection.code,
        message: rejection.reason,
    }
}

impl Hub {
    /// Builds the hub without plugins. Fails only on unusable auth keys.
    pub fn new(config: Arc<Config>, shutdown: CancellationToken) -> Result<Arc<Self>, HubError> {
        Self::with_plugins(config, shutdown, None)
    }

    /// Builds the hub with a loaded plugin runtime.
    pub fn with_plugins(
        config: Arc<Config>,
        shutdown: CancellationToken,
        plugins: Option<PluginHost>,
    ) -> Result<Arc<Self>, HubError> {
        Self::with_telemetry(config, shutdown, plugins, Metrics::detached())
    }

    /// Builds the hub recording into `metrics`.
    pub fn with_telemetry(
        config: Arc<Config>,
        shutdown: CancellationToken,
        plugins: Option<PluginHost>,
        metrics: Metrics,
    ) -> Result<Arc<Self>, HubError> {
        let verifier = TokenVerifier::from_config(&config.auth)?;
        let registry = Arc::new(Registry::new());
        let node_id = uuid::Uuid::new_v4().to_string();
        let fanout = Arc::new(Fanout { registry: registry.clone(), metrics: metrics.clone() });
        let channels = registry.clone();
        metrics.observe_channels(move || channels.num_channels() as u64);
        let mut recovered_keys = Vec::new();
        let broker = match config.engine.kind {
            EngineKind::Memory if config.engine.uses_disk(&config.channels) => {
                let e = &config.engine;
                let table = config.channels.namespace_table();
                let default = e.history_storage;
                let options = DiskOptions {
                    dir: e.data_dir.clone().into(),
                    recover: e.history_storage_recover,
                    fsync: e.history_fsync,
                    max_pending: e.history_storage_max_pending,
                    compact_interval: Duration::from_secs(e.history_compact_interval_secs),
                    is_disk: Box::new(move |channel| {
                        let storage = table.resolve(channel).and_then(|o| o.history_storage);
                        storage.unwrap_or(default) == HistoryStorage::Disk
                    }),
                };
                let (memory, keys) =
                    MemoryBroker::with_disk(fanout, options).map_err(|e| HubError::Engine(e.to_string()))?;
                recovered_keys = keys;
                Engine::Memory(memory)
            }
            EngineKind::Memory => Engine::Memory(MemoryBroker::new(fanout)),
            EngineKind::Redis => {
                let e = &config.engine;
                let options = RedisOptions {
                    urls: if e.redis_urls.is_empty() { vec![e.redis_url.clone()] } else { e.redis_urls.clone() },
                    prefix: e.redis_prefix.clone(),
                    timeout: Duration::from_millis(e.redis_timeout_ms),
                    presence_ttl: Duration::from_secs(e.presence_ttl_secs),
                    gap_check_period: Duration::from_secs(e.gap_check_interval_secs),
                    node: node_id.clone(),
                    max_queued_writes: e.max_queued_membership_writes,
                };
                Engine::Redis(RedisBroker::new(options, fanout).map_err(|e| HubError::Engine(e.to_string()))?)
            }
        };
        let idempotency = moka::sync::Cache::builder()
            .time_to_live(Duration::from_secs(config.api.idempotency_ttl_secs))
            .max_capacity(1_000_000)
            .build();
        // Keys stored with disk history; each lives at most its remaining TTL
        // plus this process's (the cache's TTL counts from insertion).
        for (key, position, _remaining) in recovered_keys {
            idempotency.insert(key, Arc::new(tokio::sync::OnceCell::new_with(Some(position))));
        }
        Ok(Arc::new(Self {
            chat: chat::ChatState::new(&config),
            namespaces: config.channels.namespace_table(),
            config,
            verifier,
            registry,
            broker,
            presence: Presence::new(),
            clients: DashMap::new(),
            users: DashMap::new(),
            idempotency,
            next_subscriber: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            node_id,
            started: Instant::now(),
            shutdown,
            plugins,
            metrics,
        }))
    }

    /// This gateway's instruments.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Awaits an engine call, recording its latency as a Redis operation
    /// when the engine is Redis.
    async fn engine_op<T>(&self, operation: &'static str, call: impl std::future::Future<Output = T>) -> T {
        if self.broker.redis().is_none() {
            return call.await;
        }
        let started = std::time::Instant::now();
        let result = call.await;
        self.metrics.redis_op(operation, started.elapsed());
        result
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The plugin runtime, when plugins are configured.
    pub fn plugins(&self) -> Option<&PluginHost> {
        self.plugins.as_ref()
    }

    /// Queues a lifecycle event for `events` plugins; free when none listen.
    pub(crate) fn emit(&self, event: impl FnOnce() -> plugin::Event) {
        if let Some(plugins) = self.plugins.as_ref().filter(|p| p.wants_events()) {
            plugins.emit(event());
        }
    }

    /// Cancelled when the node starts shutting down.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Claims a connection slot; `None` at `server.max_connections`. The slot
    /// is released when the returned guard drops.
    pub fn try_acquire_connection(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let max = self.config.server.max_connections;
        let mut current = self.connections.load(Ordering::Relaxed);
        loop {
            if current >= max {
                return None;
            }
            match self.connections.compare_exchange_weak(current, current + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(ConnectionSlot { hub: self.clone() }),
                Err(now) => current = now,
            }
        }
    }

    /// This node's id (`node` in emulation connect results, `uid` in info).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn num_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    fn next_subscriber_id(&self) -> SubscriberId {
        self.next_subscriber.fetch_add(1, Ordering::Relaxed)
    }

    /// Options of `channel`: validates the name and resolves its namespace.
    pub fn channel_options(&self, channel: &str) -> Result<ChannelOptions, ErrorCode> {
        channel::validate_name(channel, self.config.channels.max_name_bytes).map_err(|_| ErrorCode::BadRequest)?;
        self.namespaces.resolve(channel).cloned().ok_or(ErrorCode::UnknownChannel)
    }

    /// Publishes to a channel: runs the channel's publish pipeline, then
    /// assigns the stream position and delivers to every subscriber in one
    /// ordered step. An `idempotency_key` seen within
    /// `api.idempotency_ttl_secs` returns the first result and publishes
    /// nothing. A plugin's `drop` answers with an empty position; its `deny`
    /// is the error. A publish is acknowledged only once the engine stored
    /// it: with Redis unreachable it fails with error 100 and nothing is
    /// delivered.
    pub async fn publish(&self, mut req: PublishRequest) -> Result<StreamPosition, ReplyError> {
        let options = self.channel_options(&req.channel)?;
        let key = req.idempotency_key.clone().filter(|k| !k.is_empty());
        let cached = key.as_ref().and_then(|k| self.idempotency.get(&(req.channel.clone(), k.clone())));
        if let Some(position) = cached.and_then(|cell| cell.get().cloned()) {
            return Ok(position);
        }
        // The pipeline runs before the engine's ordered publish and under no
        // hub lock.
        if let Some(plugins) = self.plugins.as_ref().filter(|p| p.has_publish_pipeline(&req.channel)) {
            match plugins.on_publish(plugin_message(&req, crate::telemetry::current_headers())).await {
                PublishOutcome::Pass(message) => {
                    if message.data != *req.data.as_bytes() {
                        req.data = Payload::from_binary(message.data);
                    }
                    req.tags = message.tags.into_iter().collect();
                    req.skip_history |= message.skip_history;
                }
                PublishOutcome::Drop => return Ok(StreamPosition::default()),
                PublishOutcome::Deny(rejection) => return Err(rejection_error(rejection)),
            }
        }
        let Some(key) = key else {
            return self.publish_now(req, &options).await.map_err(engine_error);
        };
        let memory = match &self.broker {
            Engine::Redis(redis) => return Ok(self.publish_idempotent_redis(redis, key, req, &options).await?),
            Engine::Memory(memory) => memory,
        };
        // moka runs the init closure once per key even under concurrent calls;
        // the cell then runs one publish at a time until one succeeds.
        let cache_key = (req.channel.clone(), key.clone());
        let cell = self.idempotency.get_with(cache_key, || Arc::new(tokio::sync::OnceCell::new()));
        let history = if req.skip_history { None } else { StreamOptions::from_channel_options(&options) };
        let exclude = excluded_client(&req, &options);
        let ttl = Duration::from_secs(self.config.api.idempotency_ttl_secs);
        let position = cell
            .get_or_try_init(|| async {
                let publication = Publication { data: req.data, info: req.info, offset: 0, tags: req.tags };
                memory
                    .publish_async(&req.channel, publication, history.as_ref(), Some((key, ttl)), exclude.as_deref())
                    .await
            })
            .await
            .map_err(engine_error)?;
        Ok(position.clone())
    }

    /// Across nodes: the first publisher claims the key (SET NX) and stores
    /// its result; the others wait briefly for that result.
    async fn publish_idempotent_redis(
        &self,
        redis: &RedisBroker,
        key: String,
        req: PublishRequest,
        options: &ChannelOptions,
    ) -> Result<StreamPosition, ErrorCode> {
        let ttl = Duration::from_secs(self.config.api.idempotency_ttl_secs);
        let channel = req.channel.clone();
        if redis.idempotent_claim(&channel, &key, ttl).await? {
            let pos = match self.publish_now(req, options).await {
                Ok(pos) => pos,
                Err(e) => {
                    // Not published: let a retry claim the key again.
                    let _ = redis.idempotent_release(&channel, &key).await;
                    return Err(e.into());
                }
            };
            redis.idempotent_store(&channel, &key, &pos, ttl).await?;
            return Ok(pos);
        }
        for _ in 0..50 {
            if let Some(pos) = redis.idempotent_get(&channel, &key).await? {
                return Ok(pos);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(ErrorCode::Internal)
    }

    async fn publish_now(&self, req: PublishRequest, options: &ChannelOptions) -> Result<StreamPosition, EngineError> {
        let history = if req.skip_history { None } else { StreamOptions::from_channel_options(options) };
        self.emit(|| {
            let (client, user) = req.info.as_ref().map_or(("", ""), |i| (i.client.as_str(), i.user.as_str()));
            let mut event = plugin::Event::new(plugin::EventKind::Publish, client, user, &req.channel);
            event.data = req.data.as_bytes().clone();
            let trace = crate::telemetry::current_headers();
            event.trace = plugin::TraceContext { traceparent: trace.traceparent, tracestate: trace.tracestate };
            event
        });
        let span = crate::child_span!(
            // The literal is the exported name: an `otel.name` field would
            // cost an attribute and a string per recorded publish.
            "broker publish",
            messaging.destination.name = req.channel.as_str(),
            engine = self.engine_name(),
            offset = tracing::field::Empty,
        );
        let exclude = excluded_client(&req, options);
        let channel = req.channel.clone();
        let publication = Publication { data: req.data, info: req.info, offset: 0, tags: req.tags };
        let publish = self.broker.publish(&channel, publication, history.as_ref(), exclude.as_deref());
        let position = self.engine_op("publish", publish).instrument(span.clone()).await?;
        span.record("offset", crate::telemetry::trace::int(position.offset));
        self.metrics.published();
        Ok(position)
    }

    fn engine_name(&self) -> &'static str {
        if self.broker.redis().is_some() { "redis" } else { "memory" }
    }

    /// Whether the node can serve: the engine answers (Redis PING).
    pub async fn ready(&self) -> bool {
        !self.shutdown.is_cancelled() && self.broker.ready().await
    }

    /// Runs the engine's background work (Redis pub/sub and presence
    /// refresh) until shutdown; returns at once for the memory engine.
    pub async fn run_engine(self: Arc<Self>) {
        let Some(redis) = self.broker.redis().cloned() else { return };
        let presence = self.clone().refresh_presence(redis.clone());
        let heartbeat = self.clone().heartbeat(redis.clone());
        tokio::join!(redis.run(self.shutdown.clone()), presence, heartbeat);
    }

    /// The shared engine, when there is one (multi-node).
    pub fn redis(&self) -> Option<&Arc<RedisBroker>> {
        self.broker.redis()
    }

    /// Keeps this node listed in the Redis node registry.
    async fn heartbeat(self: Arc<Self>, redis: Arc<RedisBroker>) {
        let mut tick = tokio::time::interval(crate::broker::redis::HEARTBEAT_PERIOD);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Ok(info) = serde_json::to_string(&self.info()) {
                        let _ = redis.heartbeat(&info, &self.registry.channels()).await;
                    }
                }
            }
        }
    }

    /// Every live node's statistics: this node's alone with the memory
    /// engine; all nodes in the Redis registry (this one always included).
    pub async fn nodes(&self) -> Vec<serde_json::Value> {
        let own = serde_json::to_value(self.info()).unwrap_or_default();
        let Some(redis) = self.broker.redis() else { return vec![own] };
        let mut nodes: Vec<serde_json::Value> = redis
            .nodes()
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|n| serde_json::from_str::<serde_json::Value>(n).ok())
            .filter(|n| n["uid"] != own["uid"])
            .collect();
        nodes.insert(0, own);
        nodes
    }

    /// Re-adds this node's presence entries every third of their TTL, so a
    /// dead node's entries expire within `presence_ttl_secs`.
    async fn refresh_presence(self: Arc<Self>, redis: Arc<RedisBroker>) {
        let period = Duration::from_secs(self.config.engine.presence_ttl_secs / 3).max(Duration::from_secs(1));
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    redis.presence_refresh(self.presence.entries());
                }
            }
        }
    }

    /// Reads history (server API; the client path checks permissions first).
    pub async fn history(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Publication>, StreamPosition), ErrorCode> {
        let options = self.channel_options(channel)?;
        let history = StreamOptions::from_channel_options(&options).ok_or(ErrorCode::NotAvailable)?;
        let span = crate::child_span!(
            "broker history",
            messaging.destination.name = channel,
            engine = self.engine_name(),
            limit = crate::telemetry::trace::int(limit),
        );
        let read = self.broker.history(channel, &history, since, limit, reverse);
        Ok(self.engine_op("history", read).instrument(span).await?)
    }

    pub async fn remove_history(&self, channel: &str) -> Result<(), ErrorCode> {
        let options = self.channel_options(channel)?;
        let history = StreamOptions::from_channel_options(&options).ok_or(ErrorCode::NotAvailable)?;
        Ok(self.broker.remove_history(channel, &history).await?)
    }

    pub async fn presence(&self, channel: &str) -> Result<HashMap<String, ClientInfo>, ErrorCode> {
        let options = self.channel_options(channel)?;
        if !options.presence {
            return Err(ErrorCode::NotAvailable);
        }
        let read = self.broker.presence(channel);
        let entries = self.engine_op("presence", read).await?.unwrap_or_else(|| self.presence.get(channel));
        Ok(if options.chat { self.with_status(entries) } else { entries })
    }

    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, ErrorCode> {
        if !self.channel_options(channel)?.presence {
            return Err(ErrorCode::NotAvailable);
        }
        let read = self.broker.presence_stats(channel);
        Ok(self.engine_op("presence_stats", read).await?.unwrap_or_else(|| self.presence.stats(channel)))
    }

    /// Records a presence entry: locally, and in the shared store. A write
    /// Redis did not take in time stays queued and is sent when it is back
    /// (the periodic refresh re-adds every local entry as well).
    async fn presence_add(&self, channel: &str, info: ClientInfo) {
        self.presence.add(channel, info.clone());
        if let Some(redis) = self.broker.redis()
            && let Err(e) = redis.presence_add(channel, &info).await
        {
            tracing::debug!(error = %e, %channel, "presence write failed; the refresh retries it");
        }
    }

    /// Drops a presence entry; the shared store is updated in the
    /// background, in order with the other presence writes, and again once
    /// Redis is back when it is down.
    fn presence_remove(&self, channel: &str, client: &str) {
        self.presence.remove(channel, client);
        if let Some(redis) = self.broker.redis() {
            redis.presence_remove(channel, client);
        }
    }

    /// Channels with local subscribers and their subscriber counts.
    pub fn channels(&self) -> Vec<(String, usize)> {
        self.registry.channels()
    }

    /// Channels with subscribers on any node and their subscriber counts
    /// (this node alone with the memory engine; as of the last heartbeats
    /// with Redis).
    pub async fn all_channels(&self) -> Vec<(String, usize)> {
        let local = self.registry.channels();
        let Some(redis) = self.broker.redis() else { return local };
        let Ok(remote) = redis.remote_channels().await else { return local };
        let mut all: HashMap<String, usize> = remote;
        for (name, n) in local {
            *all.entry(name).or_default() += n;
        }
        all.into_iter().filter(|(_, n)| *n > 0).collect()
    }

    /// Node statistics for `/api/info`.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            uid: self.node_id.clone(),
            name: "switchboard".to_owned(),
            version: VERSION.to_owned(),
            num_clients: self.clients.len(),
            num_users: self.users.len(),
            num_channels: self.registry.num_channels(),
            uptime_secs: self.started.elapsed().as_secs(),
        }
    }

    fn connections_of(&self, user: &str, client: Option<&str>) -> Vec<(String, Arc<Outbox>, mpsc::Sender<Control>)> {
        let Some(ids) = self.users.get(user).map(|ids| ids.clone()) else { return Vec::new() };
        ids.into_iter()
            .filter(|id| client.is_none_or(|c| c == id))
            .filter_map(|id| self.clients.get(&id).map(|e| (id.clone(), e.outbox.clone(), e.control.clone())))
            .collect()
    }

    /// Subscribes every connection of `user` (or just `client`) to `channel`
    /// server-side; each gets a `subscribe` push.
    pub fn server_subscribe(&self, user: &str, client: Option<&str>, channel: &str) -> Result<(), ErrorCode> {
        self.channel_options(channel)?;
        for (_, outbox, control) in self.connections_of(user, client) {
            if control.try_send(Control::Subscribe { channel: channel.to_owned() }).is_err() {
                outbox.close(DisconnectCode::SLOW);
            }
        }
        Ok(())
    }

    /// Unsubscribes every connection of `user` (or just `client`) from `channel`.
    pub fn server_unsubscribe(&self, user: &str, client: Option<&str>, channel: &str) -> Result<(), ErrorCode> {
        channel::validate_name(channel, self.config.channels.max_name_bytes).map_err(|_| ErrorCode::BadRequest)?;
        for (_, outbox, control) in self.connections_of(user, client) {
            if control.try_send(Control::Unsubscribe { channel: channel.to_owned() }).is_err() {
                outbox.close(DisconnectCode::SLOW);
            }
        }
        Ok(())
    }

    /// Disconnects every connection of `user` (or just `client`) except those
    /// in `whitelist`.
    pub fn disconnect(&self, user: &str, client: Option<&str>, whitelist: &[String], code: DisconnectCode) -> usize {
        let targets = self.connections_of(user, client);
        let mut n = 0;
        for (id, outbox, _) in targets {
            if whitelist.contains(&id) {
                continue;
            }
            outbox.close(code);
            n += 1;
        }
        n
    }

    /// Starts the background upkeep: forgetting idle channels and expired
    /// streams. Returns when the node shuts down.
    pub async fn run_maintenance(self: Arc<Self>, period: Duration) {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let registry = &self.registry;
                    self.broker.sweep(|ch| registry.num_subscribers(ch) > 0).await;
                }
            }
        }
    }

    fn register_client(&self, client: &str, user: &str, outbox: Arc<Outbox>, control: mpsc::Sender<Control>) {
        self.clients.insert(client.to_owned(), ClientEntry { user: user.to_owned(), outbox, control });
        self.users.entry(user.to_owned()).or_default().push(client.to_owned());
        self.status_connection(user, true);
    }

    fn unregister_client(&self, client: &str) {
        if let Some((_, entry)) = self.clients.remove(client) {
            if let Some(mut ids) = self.users.get_mut(&entry.user) {
                ids.retain(|id| id != client);
            }
            self.users.remove_if(&entry.user, |_, ids| ids.is_empty());
            self.status_connection(&entry.user, false);
        }
    }
}

/// The client a publish must not be delivered back to: the publisher, when
/// the namespace or the request asks for it.
fn excluded_client(req: &PublishRequest, options: &ChannelOptions) -> Option<String> {
    req.client.clone().filter(|c| !c.is_empty() && (options.exclude_publisher || req.exclude_publisher))
}

/// The reply for a failed engine publish: storage failures keep their
/// message (disk full, read-only) so the publisher learns why.
fn engine_error(e: EngineError) -> ReplyError {
    match e {
        EngineError::Storage(message) => ReplyError { code: ErrorCode::Internal.code(), message, temporary: true },
        other => ErrorCode::from(other).into(),
    }
}

/// The publish request as the publish pipeline sees it.
fn plugin_message(req: &PublishRequest, trace: crate::telemetry::TraceHeaders) -> plugin::Message {
    let mut tags: Vec<(String, String)> = req.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    tags.sort();
    plugin::Message {
        channel: req.channel.clone(),
        publisher: req.info.as_ref().map(|i| plugin::Publisher { user: i.user.clone(), client: i.client.clone() }),
        data: req.data.as_bytes().clone(),
        tags,
        content_type: if req.data.is_json() { "application/json" } else { "application/octet-stream" }.into(),
        trace: plugin::TraceContext { traceparent: trace.traceparent, tracestate: trace.tracestate },
        skip_history: req.skip_history,
        connection: req.connection.clone(),
    }
}

/// A disconnect a plugin asked for. Its code must be a disconnect code
/// (3000..=4999; Centrifugo reserves 4000..=4999 for applications) or it
/// becomes 3503 force disconnect. The close frame needs a `'static` reason:
/// reasons are interned, at most [`MAX_INTERNED_REASONS`] distinct ones
/// (≤ 32 bytes each, as the protocol advises) over the process's life,
/// after which the code's generic reason is used.
pub(crate) fn plugin_disconnect(rejection: &plugin::Rejection) -> DisconnectCode {
    let Some(code) = u16::try_from(rejection.code).ok().filter(|c| (3000..5000).contains(c)) else {
        return DisconnectCode::FORCE_DISCONNECT;
    };
    DisconnectCode { code, reason: intern_reason(&rejection.reason) }
}

/// Most distinct plugin disconnect reasons kept for the process's life.
const MAX_INTERNED_REASONS: usize = 256;

fn intern_reason(reason: &str) -> &'static str {
    static REASONS: parking_lot::Mutex<Vec<&'static str>> = parking_lot::Mutex::new(Vec::new());
    let mut end = reason.len().min(32);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason[..end];
    let mut reasons = REASONS.lock();
    if let Some(known) = reasons.iter().find(|r| **r == reason) {
        return known;
    }
    if reasons.len() >= MAX_INTERNED_REASONS {
        return "disconnect";
    }
    // Bounded above: at most MAX_INTERNED_REASONS * 32 bytes ever leak.
    let leaked: &'static str = Box::leak(reason.to_owned().into_boxed_str());
    reasons.push(leaked);
    leaked
}

/// Holds one of `server.max_connections` slots.
pub struct ConnectionSlot {
    hub: Arc<Hub>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.hub.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What `/api/info` reports about this node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeInfo {
    pub uid: String,
    pub name: String,
    pub version: String,
    pub num_clients: usize,
    pub num_users: usize,
    pub num_channels: usize,
    #[serde(rename = "uptime")]
    pub uptime_secs: u64,
}
