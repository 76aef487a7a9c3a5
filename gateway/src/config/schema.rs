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
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self { key: DEV_API_KEY.to_owned(), max_body_bytes: 1024 * 1024, idempotency_ttl_secs: 300 }
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
    /// Prefix of every Redis key and pub/sub channel; nodes of one cluster share it. Default `switchboard`.
    pub redis_prefix: String,
    /// Longest wait in milliseconds for a Redis reply or connection before the call fails (error 100). Default 1000.
    pub redis_timeout_ms: u64,
    /// Seconds after which presence entries of a node that stopped refreshing them expire; refreshed every third. Default 60.
    pub presence_ttl_secs: u64,
    /// Seconds between checks of delivered positions against the Redis stream tops (finds lost live messages). Default 1.
    pub gap_check_interval_secs: u64,
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
        }
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
    /// Before a client subscription is attached. Default `[]`.
    pub subscribe: Vec<String>,
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
    /// Quarantine before the first reload; doubles per failed reload up to 60 s. Default 1000.
    pub breaker_backoff_ms: u64,
    /// How often plugin files are checked for changes (hot reload); 0 disables. Default 1000.
    pub watch_interval_ms: u64,
    /// Events queued for `events` plugins; when full new events are dropped. Default 10000.
    pub events_queue_max: usize,
    /// Most events handed to `on-events` in one call. Default 256.
    pub events_batch_max: usize,
}

impl Default for PluginRuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: String::new(),
            epoch_tick_ms: 1,
            breaker_faults: 5,
            breaker_backoff_ms: 1000,
            watch_interval_ms: 1000,
            events_queue_max: 10_000,
            events_batch_max: 256,
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
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    $($extra: $edef,)*
                    history_size: 0,
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
                }
            }
        }

        impl $name {
            /// The runtime options this table describes.
            pub fn options(&self) -> ChannelOptions {
                ChannelOptions {
                    history_size: self.history_size,
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
    }
}

/// Channel options resolved for one namespace, as runtime code sees them.
/// Each field means what the key of the same name in [`ChannelsConfig`] does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelOptions {
    pub history_size: usize,
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
}

impl ChannelOptions {
    /// History is on only when both size and TTL are set.
    pub fn history_enabled(&self) -> bool {
        self.history_size > 0 && self.history_ttl_secs > 0
    }
}
