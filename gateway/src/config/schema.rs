//! The configuration schema. Field docs state meaning, unit and default.

use serde::{Deserialize, Serialize};

/// The development HMAC secret shipped in the defaults. Validation refuses it
/// when the gateway listens on a non-loopback address.
pub const DEV_TOKEN_HMAC_SECRET: &str = "switchboard-dev-secret-change-me";
/// The development API key shipped in the defaults, refused like
/// [`DEV_TOKEN_HMAC_SECRET`] off loopback.
pub const DEV_API_KEY: &str = "switchboard-dev-api-key-change-me";

/// The whole gateway configuration (`config/gateway.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Schema version of this file. Only `1` exists.
    pub version: u32,
    /// `[server]`: listener and process-wide limits.
    pub server: ServerConfig,
    /// `[client]`: per-connection behaviour and budgets.
    pub client: ClientConfig,
    /// `[auth]`: token verification.
    pub auth: AuthConfig,
    /// `[api]`: the server HTTP API.
    pub api: ApiConfig,
    /// `[channels]`: channel options and namespaces.
    pub channels: ChannelsConfig,
    /// `[engine]`: where history, presence and fan-out live.
    pub engine: EngineConfig,
    /// `[[plugins]]`: WASM plugins, each loaded once at start. Default none.
    pub plugins: Vec<PluginConfig>,
    /// `[pipelines]`: which plugins run at each hook, in order.
    pub pipelines: PipelinesConfig,
    /// `[plugin_runtime]`: the shared WASM engine.
    pub plugin_runtime: PluginRuntimeConfig,
    /// `[long_poll]`: the HTTP long-polling transport.
    pub long_poll: LongPollConfig,
    /// `[chat]`: message interactions in namespaces with `chat = true`.
    pub chat: ChatConfig,
    /// `[status]`: user status (online, away, busy) and last seen.
    pub status: StatusConfig,
    /// `[[routes]]`: HTTP pass-through to upstream services for every
    /// request that is not a Switchboard endpoint. Default none.
    pub routes: Vec<RouteConfig>,
    /// `[telemetry]`: OpenTelemetry traces and metrics, `/metrics`, log format.
    pub telemetry: super::TelemetryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: 1,
            server: ServerConfig::default(),
            client: ClientConfig::default(),
            auth: AuthConfig::default(),
            api: ApiConfig::default(),
            channels: ChannelsConfig::default(),
            engine: EngineConfig::default(),
            plugins: Vec::new(),
            pipelines: PipelinesConfig::default(),
            plugin_runtime: PluginRuntimeConfig::default(),
            long_poll: LongPollConfig::default(),
            chat: ChatConfig::default(),
            status: StatusConfig::default(),
            routes: Vec::new(),
            telemetry: super::TelemetryConfig::default(),
        }
    }
}

/// `[server]`: the listener and process-wide limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP/WebSocket listener binds. Default `127.0.0.1:8000`.
    pub listen: String,
    /// Origins allowed to open a WebSocket: exact (`https://app.example.com`)
    /// or one leading wildcard label (`https://*.example.com`). An absent
    /// `Origin` header is always allowed. Empty list: any origin. Default `[]`.
    pub allowed_origins: Vec<String>,
    /// Most concurrent client connections; past it a WebSocket is closed with
    /// 3504 and plain HTTP gets 503. Default 100000.
    pub max_connections: usize,
    /// How long shutdown waits for sessions to drain after sending 3001. Default 10.
    pub shutdown_grace_secs: u64,
    /// A request whose headers are not complete within this time is dropped
    /// (slowloris). Default 10.
    pub header_read_timeout_secs: u64,
    /// Most bytes of request line plus headers buffered per request. Default 16384.
    pub max_header_bytes: usize,
    /// Path of a WebSocket echo endpoint for conformance suites (Autobahn):
    /// the same WebSocket stack (limits, UTF-8 validation, close handling),
    /// but every message comes back unchanged and no session runs. Must
    /// start with `/`. Default `""` (off).
    pub debug_echo_path: String,
    /// `[server.tls]`: certificate and key; plain TCP when both are empty.
    pub tls: TlsConfig,
    /// Idle pooled connections kept per upstream host of `[[routes]]`. Default 32.
    pub upstream_max_idle_per_host: usize,
    /// Seconds an idle pooled upstream connection is kept. Default 90.
    pub upstream_idle_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8000".to_owned(),
            allowed_origins: Vec::new(),
            max_connections: 100_000,
            shutdown_grace_secs: 10,
            header_read_timeout_secs: 10,
            max_header_bytes: 16 * 1024,
            debug_echo_path: String::new(),
            tls: TlsConfig::default(),
            upstream_max_idle_per_host: 32,
            upstream_idle_timeout_secs: 90,
        }
    }
}

/// `[server.tls]`: TLS is on when both paths are set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain. Default empty (plain TCP).
    pub cert_path: String,
    /// PEM private key. Default empty (plain TCP).
    pub key_path: String,
}

/// `[client]`: per-connection protocol behaviour and budgets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Accept `connect` without a token (user ""). Default false.
    pub allow_anonymous: bool,
    /// A connection that sends no valid `connect` in this time is closed with
    /// 3502 stale. Default 10.
    pub connect_timeout_secs: u64,
    /// Server ping (`{}`) period. Default 25.
    pub ping_interval_secs: u64,
    /// How long after a ping the client may take to pong before 3012. Default 8.
    pub pong_timeout_secs: u64,
    /// Largest inbound WebSocket message; larger closes with 1009. Default 65536.
    pub max_frame_bytes: usize,
    /// Outbound queue budget per connection; past it the client is closed with
    /// 3008 slow. Default 1048576.
    pub queue_max_bytes: usize,
    /// Largest outbound WebSocket message the writer builds when it joins
    /// queued pushes with `\n`. Default 65536.
    pub write_batch_max_bytes: usize,
    /// tungstenite read buffer per connection, allocated up front and grown
    /// only while a larger message arrives. Commands are small, so 1 KiB
    /// keeps idle connections cheap (−3 KiB each against 4096). Default 1024.
    pub ws_read_buffer_bytes: usize,
    /// tungstenite write buffer per connection. Default 4096.
    pub ws_write_buffer_bytes: usize,
    /// Subscriptions one connection may hold (106 on subscribe). Default 128.
    pub max_channels_per_connection: usize,
    /// Commands one connection may send per second; past it 111, and 3013 when
    /// it persists. 0 disables the limit. Default 1000.
    pub max_commands_per_sec: u32,
    /// Largest gap a subscribe may recover. Default 300.
    pub recovery_max_publication_limit: usize,
    /// Largest `limit` a history call may ask for. Default 300.
    pub history_max_publication_limit: usize,
    /// Time after token expiry before a connection that has not refreshed is
    /// closed with 3005. Default 25.
    pub expired_close_delay_secs: u64,
    /// Request headers (case-insensitive names) handed to connect plugins,
    /// e.g. `authorization`; `cookie` is not accepted here (see
    /// `forward_cookies`). Default `[]`.
    pub forward_headers: Vec<String>,
    /// Cookies handed to connect plugins (as one `cookie` header holding
    /// only these), and only when the request carried an `Origin` that
    /// matched `server.allowed_origins`, which must then be set. Default `[]`.
    pub forward_cookies: Vec<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            allow_anonymous: false,
            connect_timeout_secs: 10,
            ping_interval_secs: 25,
            pong_timeout_secs: 8,
            max_frame_bytes: 65_536,
            queue_max_bytes: 1024 * 1024,
            write_batch_max_bytes: 65_536,
            ws_read_buffer_bytes: 1024,
            ws_write_buffer_bytes: 4096,
            max_channels_per_connection: 128,
            max_commands_per_sec: 1000,
            recovery_max_publication_limit: 300,
            history_max_publication_limit: 300,
            expired_close_delay_secs: 25,
            forward_headers: Vec::new(),
            forward_cookies: Vec::new(),
        }
    }
}

/// `[long_poll]`: the HTTP long-polling transport (`/connection/long_poll`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LongPollConfig {
    /// Most seconds a poll waits for messages before it answers with an empty
    /// batch. Default 25.
    pub hold_secs: u64,
    /// Seconds a long-polling session survives without a poll in flight;
    /// then it is closed and its subscriptions dropped. Default 60.
    pub session_ttl_secs: u64,
}

impl Default for LongPollConfig {
    fn default() -> Self {
        Self { hold_secs: 25, session_ttl_secs: 60 }
    }
}

/// `[chat]`: message interactions (edits, deletes, reactions, replies, read
/// marks, typing) in namespaces with `chat = true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Distinct reactions one message may carry; a new one past it gets 106. Default 20.
    pub max_reactions_per_message: usize,
    /// Longest reaction in bytes. Default 64.
    pub max_reaction_bytes: usize,
    /// Minimum milliseconds between two typing events of one user in one
    /// channel; calls in between are accepted and not published. Default 1000.
    pub typing_throttle_ms: u64,
    /// Most publications one aggregate, unread count or thread read scans
    /// from history. Default 1000.
    pub max_scan_publications: usize,
    /// Most channels one `unread.counts` call may ask about. Default 100.
    pub max_unread_channels: usize,
    /// Read marks kept by the memory engine (least recently used go first). Default 100000.
    pub max_read_marks: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            max_reactions_per_message: 20,
            max_reaction_bytes: 64,
            typing_throttle_ms: 1000,
            max_scan_publications: 1000,
            max_unread_channels: 100,
            max_read_marks: 100_000,
        }
    }
}

/// `[[routes]]`: one HTTP pass-through route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Path prefix the route matches (`/` matches everything); the longest
    /// matching prefix wins. Must start with `/`. Required.
    pub path_prefix: String,
    /// `Host` (without port, case-insensitive) the route matches; empty
    /// matches any host. Default empty.
    pub host: String,
    /// Upstream base URL, `http://host:port[/base]`; the request path is
    /// appended to the base path. Required.
    pub upstream: String,
    /// Most milliseconds to connect to the upstream (502 past it). Default 1000.
    pub connect_timeout_ms: u64,
    /// Most milliseconds from sending the request until the upstream's
    /// response headers arrive (504 past it). Default 30000.
    pub response_timeout_ms: u64,
}

impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            path_prefix: String::new(),
            host: String::new(),
            upstream: String::new(),
            connect_timeout_ms: 1000,
            response_timeout_ms: 30_000,
        }
    }
}

/// `[status]`: user status set with `status.set`, shown in presence
/// `conn_info` and `/api/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// Seconds without a command from any of a user's connections after which
    /// an `online` user shows as `away`. Default 300.
    pub away_after_secs: u64,
    /// Users whose status and last-seen time are kept (least recently used
    /// go first). Default 100000.
    pub max_users: u64,
    /// Seconds a disconnected user's last-seen time is kept. Default 2592000 (30 days).
    pub last_seen_ttl_secs: u64,
    /// Longest status text in bytes. Default 256.
    pub max_text_bytes: usize,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self { away_after_secs: 300, max_users: 100_000, last_seen_ttl_secs: 30 * 24 * 3600, max_text_bytes: 256 }
    }
}

/// `[auth]`: JWT verification for connection and subscription tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HMAC secret for HS256 tokens; empty disables HS256. Default: a
    /// development secret that validation refuses off loopback.
    pub token_hmac_secret: String,
    /// RSA public key (PEM) for RS256 tokens; empty disables RS256.
    pub token_rsa_public_key_pem: String,
    /// ECDSA P-256 public key (PEM) for ES256 tokens; empty disables ES256.
    pub token_ecdsa_public_key_pem: String,
    /// Algorithms accepted, whatever a token's header says. Default
    /// `["HS256", "RS256", "ES256"]` (each still needs its key).
    pub algorithms: Vec<String>,
    /// Required `aud` claim; empty: not checked. Default empty.
    pub audience: String,
    /// Required `iss` claim; empty: not checked. Default empty.
    pub issuer: String,
    /// Clock skew tolerated on `exp` and `nbf`. Default 5.
    pub leeway_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_hmac_secret: DEV_TOKEN_HMAC_SECRET.to_owned(),
            token_rsa_public_key_pem: String::new(),
            token_ecdsa_public_key_pem: String::new(),
            algorithms: vec!["HS256".to_owned(), "RS256".to_owned(), "ES256".to_owned()],
            audience: String::new(),
            issuer: String::new(),
            leeway_secs: 5,
        }
    }
}

/// `[api]`: the server HTTP API under `/api`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Key required as `X-API-Key` or `Authorization: apikey KEY`. Default: a
    /// development key that validation refuses off loopback.
    pub key: String,
    /// Largest request body. Default 1048576.
    pub max_body_bytes: usize,
    /// How long an `idempotency_key` suppresses a repeated publish. Default 300.
    pub idempotency_ttl_secs: u64,
    /// Most channels one `broadcast` with a `pattern` may publish to; a
    /// pattern matching more is refused with 106 and publishes nothing. Default 1000.
    pub max_pattern_channels: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            key: DEV_API_KEY.to_owned(),
            max_body_bytes: 1024 * 1024,
            idempotency_ttl_secs: 300,
            max_pattern_channels: 1000,
        }
    }
}

/// `[engine]`: where history, presence and fan-out live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// `memory` (single node) or `redis` (several nodes sharing one Redis). Default `memory`.
    #[serde(rename = "type")]
    pub kind: EngineKind,
    /// Redis URL for the `redis` engine. Default `redis://127.0.0.1:6379`.
    pub redis_url: String,
    /// Several Redis URLs to shard channels over (consistent hashing by channel name); replaces `redis_url` when not empty. The first also holds the node registry. Default empty.
    pub redis_urls: Vec<String>,
    /// Prefix of every Redis key and pub/sub channel; nodes of one cluster share it. Keys are `PREFIX.KIND.{CHANNEL}` (a Redis Cluster hash tag), so it must not contain braces. Default `switchboard`.
    pub redis_prefix: String,
    /// Longest wait in milliseconds for a Redis reply or connection before the call fails (error 100). Default 1000.
    pub redis_timeout_ms: u64,
    /// Seconds after which presence entries of a node that stopped refreshing them expire; refreshed every third. Default 60.
    pub presence_ttl_secs: u64,
    /// Seconds between checks of delivered positions against the Redis stream tops (finds lost live messages). Default 1.
    pub gap_check_interval_secs: u64,
    /// Most presence and join/leave writes queued per Redis instance while it is unreachable; they are sent in order when it is back, and new ones are dropped past this (a dropped presence removal then expires after `presence_ttl_secs`). Default 10000.
    pub max_queued_membership_writes: usize,
    /// Where the memory engine keeps channel history: `memory` (lost on
    /// restart) or `disk` (an embedded store under `data_dir`). A namespace's
    /// `history_storage` overrides it. Default `memory`.
    pub history_storage: HistoryStorage,
    /// Directory of the disk history store (one file, `history.redb`).
    /// Required when any channel uses disk history. Default `""`.
    pub data_dir: String,
    /// When a publish to disk history is acknowledged: `"always"` (each commit
    /// is fsynced before its publishes are acked) or `{ batch_ms = N }` (group
    /// commit: publishes arriving within N milliseconds share one fsync, and
    /// are acked after it). Default `"always"`.
    pub history_fsync: FsyncPolicy,
    /// A corrupted or truncated store at start: `refuse` (exit with an error)
    /// or `reset` (set the file aside, start empty: every stream gets a new
    /// epoch). Default `refuse`.
    pub history_storage_recover: StorageRecover,
    /// Most publishes waiting for the disk writer; past it a publish fails
    /// with error 100. Default 10000.
    pub history_storage_max_pending: usize,
    /// Seconds between compaction passes that delete expired publications,
    /// streams and idempotency keys from the disk store. Default 30.
    pub history_compact_interval_secs: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            kind: EngineKind::Memory,
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            redis_urls: Vec::new(),
            redis_prefix: "switchboard".to_owned(),
            redis_timeout_ms: 1000,
            presence_ttl_secs: 60,
            gap_check_interval_secs: 1,
            max_queued_membership_writes: 10_000,
            history_storage: HistoryStorage::Memory,
            data_dir: String::new(),
            history_fsync: FsyncPolicy::Always,
            history_storage_recover: StorageRecover::Refuse,
            history_storage_max_pending: 10_000,
            history_compact_interval_secs: 30,
        }
    }
}

impl EngineConfig {
    /// True when any channel (by default or in a namespace) keeps history on disk.
    pub fn uses_disk(&self, channels: &ChannelsConfig) -> bool {
        let disk = |o: Option<HistoryStorage>| o.unwrap_or(self.history_storage) == HistoryStorage::Disk;
        disk(channels.history_storage) || channels.namespaces.iter().any(|ns| disk(ns.history_storage))
    }
}

/// Where a channel's history lives (memory engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HistoryStorage {
    /// In process memory; a restart starts every stream with a new epoch.
    #[default]
    Memory,
    /// In the embedded store under `engine.data_dir`; survives restarts.
    Disk,
}

/// What to do with a store that fails its integrity check at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageRecover {
    /// Refuse to start, naming the file and the problem.
    #[default]
    Refuse,
    /// Move the file aside and start with an empty store (new epochs).
    Reset,
}

/// `engine.history_fsync`: `"always"` or `{ batch_ms = N }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Commit (and fsync) as soon as the writer is free; publishes queued
    /// meanwhile share the next commit.
    #[default]
    Always,
    /// Wait up to this many milliseconds after the first queued publish to
    /// gather more into one commit (group commit).
    BatchMs(u64),
}

impl Serialize for FsyncPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Self::Always => s.serialize_str("always"),
            Self::BatchMs(ms) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("batch_ms", ms)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FsyncPolicy;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"always\" or { batch_ms = N }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FsyncPolicy, E> {
                match v {
                    "always" => Ok(FsyncPolicy::Always),
                    other => Err(E::custom(format!(
                        "unknown fsync policy {other:?}, expected \"always\" or {{ batch_ms = N }}"
                    ))),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<FsyncPolicy, A::Error> {
                let mut batch_ms = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "batch_ms" => batch_ms = Some(map.next_value::<u64>()?),
                        other => return Err(serde::de::Error::unknown_field(other, &["batch_ms"])),
                    }
                }
                batch_ms.map(FsyncPolicy::BatchMs).ok_or_else(|| serde::de::Error::missing_field("batch_ms"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The engine variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Everything in this process; a single node.
    #[default]
    Memory,
    /// History, presence and fan-out in Redis; any number of nodes.
    Redis,
}

/// What a hook does when a plugin fails (trap, timeout, busy pool, quarantine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Fail closed: refuse the operation with code 100 (internal, temporary).
    #[default]
    Deny,
    /// Fail open: accept the operation as it stands and stop the pipeline.
    Pass,
    /// Ignore this plugin and continue with the next one in the pipeline.
    Skip,
}

/// Host interfaces a plugin may be granted (`grants`).
pub const PLUGIN_GRANTS: &[&str] = &["log", "kv", "metrics", "http", "clock", "random"];

/// `[[plugins]]`: one WASM component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// Unique name that pipelines refer to. Required.
    pub name: String,
    /// Path of the component (`.wasm`). Required.
    pub path: String,
    /// Expected lowercase hex SHA-256 of the file; unchecked when absent. Default none.
    pub sha256: Option<String>,
    /// Largest linear memory one instance may grow to; growing past it traps. Default 33554432.
    pub memory_max_bytes: usize,
    /// Budget of one hook call, counted in epoch ticks while the guest runs
    /// (host calls and time yielded to other tasks excluded); a call is
    /// stopped within this plus one tick. Default 5.
    pub timeout_ms: u64,
    /// Warm instances kept; also the most concurrent calls into this plugin.
    /// A call waits up to `timeout_ms` for a free instance, then `on_error`
    /// applies. Default 4.
    pub pool_size: usize,
    /// `deny`, `pass` or `skip` when the plugin fails. Default `deny`.
    pub on_error: OnError,
    /// Hosts (`host` or `host:port`) `http.fetch` may reach. Default `[]`.
    pub allowed_hosts: Vec<String>,
    /// Host interfaces the plugin may import: `log`, `kv`, `metrics`, `http`,
    /// `clock`, `random`. A component importing another one is refused at
    /// load. Default all but `http`.
    pub grants: Vec<String>,
    /// Passed to the plugin's `init` as JSON. Default `{}`.
    pub config: toml::Table,
}

impl Default for PluginConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            path: String::new(),
            sha256: None,
            memory_max_bytes: 32 * 1024 * 1024,
            timeout_ms: 5,
            pool_size: 4,
            on_error: OnError::Deny,
            allowed_hosts: Vec::new(),
            grants: ["log", "kv", "metrics", "clock", "random"].map(str::to_owned).to_vec(),
            config: toml::Table::new(),
        }
    }
}

/// `[pipelines]`: plugin names per hook, run in order. Empty: no plugin runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PipelinesConfig {
    /// After token verification, before the connect reply. Default `[]`.
    pub connect: Vec<String>,
    /// When a connection whose expiry a connect plugin set reaches it;
    /// without plugins such a connection is closed with 3005. Default `[]`.
    pub refresh: Vec<String>,
    /// Before a client subscription is attached; a namespace's
    /// `subscribe_pipeline` replaces it. Default `[]`.
    pub subscribe: Vec<String>,
    /// When a subscription whose expiry a subscribe plugin set reaches it;
    /// a namespace's `sub_refresh_pipeline` replaces it. Default `[]`.
    pub sub_refresh: Vec<String>,
    /// Before every publish (client and API), ahead of the ordered engine
    /// publish; a namespace's `publish_pipeline` replaces it. Default `[]`.
    pub publish: Vec<String>,
    /// Client `rpc` calls; without plugins `rpc` answers 104. Default `[]`.
    pub rpc: Vec<String>,
    /// Receive batched lifecycle events off the hot path. Default `[]`.
    pub events: Vec<String>,
}

/// `[plugin_runtime]`: the one WASM engine all plugins share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginRuntimeConfig {
    /// Directory of compiled artifacts, keyed by wasm SHA-256, engine
    /// settings and wasmtime version. Empty: `switchboard-plugin-cache` under
    /// the system temp dir. Default empty.
    pub cache_dir: String,
    /// Epoch ticker period; timeouts fire within one tick. 1..=5. Default 1.
    pub epoch_tick_ms: u64,
    /// Consecutive faults (trap, timeout) that quarantine a plugin. Default 5.
    pub breaker_faults: u32,
    /// Quarantine before the first reload; doubles per failed reload up to
    /// `breaker_backoff_max_ms`. Default 1000.
    pub breaker_backoff_ms: u64,
    /// Longest quarantine between reload attempts of a tripped plugin, in ms. Default 60000.
    pub breaker_backoff_max_ms: u64,
    /// How often plugin files are checked for changes (hot reload); 0 disables. Default 1000.
    pub watch_interval_ms: u64,
    /// Events queued for `events` plugins; when full new events are dropped. Default 10000.
    pub events_queue_max: usize,
    /// Most events handed to `on-events` in one call. Default 256.
    pub events_batch_max: usize,
    /// After this many ms without events, `events` plugins get an empty
    /// `on-events` batch as a tick, so work they deferred (the webhook's
    /// retries) runs without new traffic; 0 turns ticks off. Default 1000.
    pub events_tick_ms: u64,
    /// Budget of one instance's `init` (and its instantiation), in ms. Default 2000.
    pub init_timeout_ms: u64,
    /// Most `kv` entries per plugin; beyond it entries are evicted (rarely used first). Default 100000.
    pub kv_max_entries: u64,
    /// Largest `http.fetch` response body handed to a plugin, in bytes; a
    /// larger one fails the fetch. Default 1048576.
    pub fetch_max_body_bytes: usize,
    /// Longest `http.fetch`, in ms, whatever timeout the plugin asks for
    /// (0 from the plugin means this). Default 30000.
    pub fetch_max_timeout_ms: u64,
    /// Most bytes one `random.fill` call returns. Default 65536.
    pub random_max_bytes: u32,
    /// Address space reserved for each plugin linear memory, in bytes; 0
    /// keeps wasmtime's default (4 GiB plus guard regions per memory, which
    /// lets compiled code skip bounds checks, so the instance pool reserves
    /// hundreds of GiB of virtual memory). Non-zero (at least the largest
    /// `memory_max_bytes`): reserve only that, with a 64 KiB guard, for
    /// hosts that cap virtual memory (`ulimit -v`, strict overcommit,
    /// valgrind); every memory access then pays a bounds check. Default 0.
    pub memory_reservation_bytes: u64,
}

impl Default for PluginRuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: String::new(),
            epoch_tick_ms: 1,
            breaker_faults: 5,
            breaker_backoff_ms: 1000,
            breaker_backoff_max_ms: 60_000,
            watch_interval_ms: 1000,
            events_queue_max: 10_000,
            events_batch_max: 256,
            events_tick_ms: 1000,
            init_timeout_ms: 2000,
            kv_max_entries: 100_000,
            fetch_max_body_bytes: 1 << 20,
            fetch_max_timeout_ms: 30_000,
            random_max_bytes: 1 << 16,
            memory_reservation_bytes: 0,
        }
    }
}

/// Declares the per-channel option fields once and expands them into both the
/// `[channels]` table (options of channels without a namespace) and each
/// `[[channels.namespaces]]` table. serde cannot combine `flatten` with
/// `deny_unknown_fields`, hence a macro rather than a shared nested struct.
macro_rules! channel_options {
    ($(#[$smeta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $extra:ident : $ety:ty = $edef:expr,)* }) => {
        $(#[$smeta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $($(#[$fmeta])* pub $extra: $ety,)*
            /// Publications kept per channel; 0 (with `history_ttl_secs` 0) disables history. Default 0.
            pub history_size: usize,
            /// `memory` or `disk`; overrides `engine.history_storage` for these channels. Default: the engine's.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub history_storage: Option<HistoryStorage>,
            /// How long a publication stays in history. Default 0.
            pub history_ttl_secs: u64,
            /// How long a stream's epoch and top offset outlive its data. Default 2592000 (30 days).
            pub history_meta_ttl_secs: u64,
            /// Make every subscription recoverable. Default false.
            pub force_recovery: bool,
            /// Let a client ask for recovery (`recoverable`). Default false.
            pub allow_recovery: bool,
            /// Track presence. Default false.
            pub presence: bool,
            /// Send join/leave pushes to subscribers. Default false.
            pub join_leave: bool,
            /// Clients may subscribe without a subscription token. Default true.
            pub allow_subscribe_for_client: bool,
            /// Anonymous clients may subscribe. Default false.
            pub allow_subscribe_for_anonymous: bool,
            /// Subscribers may publish. Default false.
            pub allow_publish_for_subscriber: bool,
            /// Any connected client may publish. Default false.
            pub allow_publish_for_client: bool,
            /// Subscribers may read history. Default false.
            pub allow_history_for_subscriber: bool,
            /// Subscribers may read presence. Default false.
            pub allow_presence_for_subscriber: bool,
            /// Channels like `ns:name#42,43` are limited to the listed users. Default false.
            pub allow_user_limited_channels: bool,
            /// A publication is not delivered back to the connection that
            /// published it (an API publish names it with `client`). Default false.
            pub exclude_publisher: bool,
            /// Subscribers may send a tags filter (`tf`) to receive only
            /// publications whose tags match. Default false.
            pub allow_tags_filter: bool,
            /// Delta compressions a subscription may negotiate (`delta` in
            /// subscribe); only `"fossil"` exists. Default `[]`.
            pub allowed_delta_types: Vec<String>,
            /// Message interactions (`message.edit`, `reaction.add`, … over rpc
            /// and the API). Requires history. Default false.
            pub chat: bool,
            /// A connection token claim that, when `true`, lets its user edit and
            /// delete anyone's messages here. Empty: nobody. Default "".
            pub chat_admin_claim: String,
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    $($extra: $edef,)*
                    history_size: 0,
                    history_storage: None,
                    history_ttl_secs: 0,
                    history_meta_ttl_secs: 30 * 24 * 3600,
                    force_recovery: false,
                    allow_recovery: false,
                    presence: false,
                    join_leave: false,
                    allow_subscribe_for_client: true,
                    allow_subscribe_for_anonymous: false,
                    allow_publish_for_subscriber: false,
                    allow_publish_for_client: false,
                    allow_history_for_subscriber: false,
                    allow_presence_for_subscriber: false,
                    allow_user_limited_channels: false,
                    exclude_publisher: false,
                    allow_tags_filter: false,
                    allowed_delta_types: Vec::new(),
                    chat: false,
                    chat_admin_claim: String::new(),
                }
            }
        }

        impl $name {
            /// The runtime options this table describes.
            pub fn options(&self) -> ChannelOptions {
                ChannelOptions {
                    history_size: self.history_size,
                    history_storage: self.history_storage,
                    history_ttl_secs: self.history_ttl_secs,
                    history_meta_ttl_secs: self.history_meta_ttl_secs,
                    force_recovery: self.force_recovery,
                    allow_recovery: self.allow_recovery,
                    presence: self.presence,
                    join_leave: self.join_leave,
                    allow_subscribe_for_client: self.allow_subscribe_for_client,
                    allow_subscribe_for_anonymous: self.allow_subscribe_for_anonymous,
                    allow_publish_for_subscriber: self.allow_publish_for_subscriber,
                    allow_publish_for_client: self.allow_publish_for_client,
                    allow_history_for_subscriber: self.allow_history_for_subscriber,
                    allow_presence_for_subscriber: self.allow_presence_for_subscriber,
                    allow_user_limited_channels: self.allow_user_limited_channels,
                    exclude_publisher: self.exclude_publisher,
                    allow_tags_filter: self.allow_tags_filter,
                    allow_delta_fossil: self.allowed_delta_types.iter().any(|t| t == DELTA_FOSSIL),
                    chat: self.chat,
                    chat_admin_claim: self.chat_admin_claim.clone(),
                }
            }
        }
    };
}

channel_options! {
    /// `[channels]`: name limits, the options of channels without a namespace,
    /// and the `[[channels.namespaces]]` list.
    pub struct ChannelsConfig {
        /// Longest channel name in bytes. Default 255.
        pub max_name_bytes: usize = 255,
        /// One table per namespace (`ns:` prefix). Default none.
        pub namespaces: Vec<NamespaceConfig> = Vec::new(),
    }
}

channel_options! {
    /// `[[channels.namespaces]]`: options for channels named `name:…`.
    pub struct NamespaceConfig {
        /// The namespace, matching `^[-a-zA-Z0-9_]{2,}$`. Required.
        pub name: String = String::new(),
        /// Replaces `pipelines.publish` for this namespace when set (`[]`: no
        /// plugins). Default none.
        pub publish_pipeline: Option<Vec<String>> = None,
        /// Replaces `pipelines.subscribe` for this namespace when set. Default none.
        pub subscribe_pipeline: Option<Vec<String>> = None,
        /// Replaces `pipelines.sub_refresh` for this namespace when set. Default none.
        pub sub_refresh_pipeline: Option<Vec<String>> = None,
    }
}

/// Channel options resolved for one namespace, as runtime code sees them.
/// Each field means what the key of the same name in [`ChannelsConfig`] does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelOptions {
    pub history_size: usize,
    /// `None`: the engine's `history_storage`.
    pub history_storage: Option<HistoryStorage>,
    pub history_ttl_secs: u64,
    pub history_meta_ttl_secs: u64,
    pub force_recovery: bool,
    pub allow_recovery: bool,
    pub presence: bool,
    pub join_leave: bool,
    pub allow_subscribe_for_client: bool,
    pub allow_subscribe_for_anonymous: bool,
    pub allow_publish_for_subscriber: bool,
    pub allow_publish_for_client: bool,
    pub allow_history_for_subscriber: bool,
    pub allow_presence_for_subscriber: bool,
    pub allow_user_limited_channels: bool,
    pub exclude_publisher: bool,
    pub allow_tags_filter: bool,
    /// `"fossil"` is in `allowed_delta_types`.
    pub allow_delta_fossil: bool,
    pub chat: bool,
    pub chat_admin_claim: String,
}

/// The one delta compression type (`allowed_delta_types`, subscribe `delta`).
pub const DELTA_FOSSIL: &str = "fossil";

impl ChannelOptions {
    /// History is on only when both size and TTL are set.
    pub fn history_enabled(&self) -> bool {
        self.history_size > 0 && self.history_ttl_secs > 0
    }
}
