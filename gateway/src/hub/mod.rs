//! The hub: the node's shared state and the session state machine.
//!
//! This is the one module that combines channels, history, presence, the
//! engine and token verification. Transports hand it decoded frames through
//! [`Session`]; the server API calls the `Hub` methods directly. It owns no
//! sockets and encodes through `protocol` only.

pub mod auth;
mod error;
mod session;

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

use crate::broker::{Delivery, MemoryBroker};
use crate::channel::{self, Outbox, Registry, SubscriberId};
use crate::config::{ChannelOptions, Config, NamespaceTable};
use crate::history::StreamOptions;
use crate::presence::{Presence, PresenceStats};
use crate::protocol::{
    ClientInfo, DisconnectCode, ErrorCode, JoinLeave, Payload, Publication, Push, Reply, StreamPosition,
};

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
}

impl Delivery for Fanout {
    fn publication(&self, channel: &str, publication: &Publication) {
        if self.registry.num_subscribers(channel) == 0 {
            return;
        }
        self.registry.fanout(channel, |encoding| encoding.encode_publication_push(channel, publication));
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
}

/// Shared node state. One per process (or per test gateway).
pub struct Hub {
    config: Arc<Config>,
    namespaces: NamespaceTable,
    verifier: TokenVerifier,
    registry: Arc<Registry>,
    broker: MemoryBroker,
    presence: Presence,
    clients: DashMap<String, ClientEntry>,
    users: DashMap<String, Vec<String>>,
    idempotency: moka::sync::Cache<(String, String), StreamPosition>,
    next_subscriber: AtomicU64,
    connections: AtomicUsize,
    node_id: String,
    started: Instant,
    shutdown: CancellationToken,
}

impl Hub {
    /// Builds the hub. Fails only on unusable auth keys.
    pub fn new(config: Arc<Config>, shutdown: CancellationToken) -> Result<Arc<Self>, HubError> {
        let verifier = TokenVerifier::from_config(&config.auth)?;
        let registry = Arc::new(Registry::new());
        let broker = MemoryBroker::new(Arc::new(Fanout { registry: registry.clone() }));
        let idempotency = moka::sync::Cache::builder()
            .time_to_live(Duration::from_secs(config.api.idempotency_ttl_secs))
            .max_capacity(1_000_000)
            .build();
        Ok(Arc::new(Self {
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
            node_id: uuid::Uuid::new_v4().to_string(),
            started: Instant::now(),
            shutdown,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
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

    /// Publishes to a channel: assigns the stream position and delivers to
    /// every subscriber in one ordered step. An `idempotency_key` seen within
    /// `api.idempotency_ttl_secs` returns the first result and publishes nothing.
    pub fn publish(&self, req: PublishRequest) -> Result<StreamPosition, ErrorCode> {
        let options = self.channel_options(&req.channel)?;
        let Some(key) = req.idempotency_key.clone().filter(|k| !k.is_empty()) else {
            return Ok(self.publish_now(req, &options));
        };
        // moka runs the init closure once per key even under concurrent calls.
        let cache_key = (req.channel.clone(), key);
        Ok(self.idempotency.get_with(cache_key, || self.publish_now(req, &options)))
    }

    fn publish_now(&self, req: PublishRequest, options: &ChannelOptions) -> StreamPosition {
        let history = if req.skip_history { None } else { StreamOptions::from_channel_options(options) };
        let publication = Publication { data: req.data, info: req.info, offset: 0, tags: req.tags };
        self.broker.publish(&req.channel, publication, history.as_ref())
    }

    /// Reads history (server API; the client path checks permissions first).
    pub fn history(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Publication>, StreamPosition), ErrorCode> {
        let options = self.channel_options(channel)?;
        let history = StreamOptions::from_channel_options(&options).ok_or(ErrorCode::NotAvailable)?;
        self.broker.history(channel, &history, since, limit, reverse).map_err(|_| ErrorCode::UnrecoverablePosition)
    }

    pub fn remove_history(&self, channel: &str) -> Result<(), ErrorCode> {
        let options = self.channel_options(channel)?;
        if !options.history_enabled() {
            return Err(ErrorCode::NotAvailable);
        }
        self.broker.remove_history(channel);
        Ok(())
    }

    pub fn presence(&self, channel: &str) -> Result<HashMap<String, ClientInfo>, ErrorCode> {
        if !self.channel_options(channel)?.presence {
            return Err(ErrorCode::NotAvailable);
        }
        Ok(self.presence.get(channel))
    }

    pub fn presence_stats(&self, channel: &str) -> Result<PresenceStats, ErrorCode> {
        if !self.channel_options(channel)?.presence {
            return Err(ErrorCode::NotAvailable);
        }
        Ok(self.presence.stats(channel))
    }

    /// Channels with local subscribers and their subscriber counts.
    pub fn channels(&self) -> Vec<(String, usize)> {
        self.registry.channels()
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
                    self.broker.sweep(|ch| registry.num_subscribers(ch) > 0);
                }
            }
        }
    }

    fn register_client(&self, client: &str, user: &str, outbox: Arc<Outbox>, control: mpsc::Sender<Control>) {
        self.clients.insert(client.to_owned(), ClientEntry { user: user.to_owned(), outbox, control });
        self.users.entry(user.to_owned()).or_default().push(client.to_owned());
    }

    fn unregister_client(&self, client: &str) {
        if let Some((_, entry)) = self.clients.remove(client) {
            if let Some(mut ids) = self.users.get_mut(&entry.user) {
                ids.retain(|id| id != client);
            }
            self.users.remove_if(&entry.user, |_, ids| ids.is_empty());
        }
    }
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
