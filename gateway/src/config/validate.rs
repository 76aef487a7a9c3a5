//! The rules between values that serde cannot express.
//!
//! Every rule runs even after another failed, so one run reports every
//! problem, each under the dotted key path it concerns.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};

use super::error::{ConfigError, FieldError};
use super::schema::{
    ApiConfig, AuthConfig, ChannelOptions, ChannelsConfig, ClientConfig, Config, DELTA_FOSSIL, DEV_API_KEY,
    DEV_TOKEN_HMAC_SECRET, EngineConfig, EngineKind, FsyncPolicy, LongPollConfig, PLUGIN_GRANTS, ServerConfig,
};

/// The only schema version.
pub const CONFIG_VERSION: u32 = 1;
/// JWT algorithms the gateway verifies.
pub const SUPPORTED_ALGORITHMS: [&str; 3] = ["HS256", "RS256", "ES256"];
/// Smallest accepted `client.max_frame_bytes`: room for a `connect` with a token.
pub const MIN_FRAME_BYTES: usize = 1024;
/// Smallest accepted `server.max_header_bytes`: room for a WebSocket upgrade.
pub const MIN_HEADER_BYTES: usize = 1024;
/// Largest accepted `channels.max_name_bytes`.
pub const MAX_CHANNEL_NAME_BYTES: usize = 1024;
/// Pattern namespace names must match, as shown in messages.
pub const NAMESPACE_NAME_PATTERN: &str = "^[-a-zA-Z0-9_]{2,}$";

impl Config {
    /// Checks every rule and returns all violations together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Errors::default();
        if self.version != CONFIG_VERSION {
            errors.push("version", format!("unsupported version {} (only {CONFIG_VERSION} exists)", self.version));
        }
        validate_server(&self.server, &mut errors);
        validate_client(&self.client, &mut errors);
        validate_auth(&self.auth, self.client.allow_anonymous, &mut errors);
        validate_api(&self.api, &mut errors);
        validate_channels(&self.channels, &mut errors);
        validate_plugins(self, &mut errors);
        validate_long_poll(&self.long_poll, &mut errors);
        validate_chat(self, &mut errors);
        validate_routes(self, &mut errors);
        validate_forwarding(self, &mut errors);
        validate_engine(&self.engine, &mut errors);
        validate_history_storage(self, &mut errors);
        validate_dev_credentials(self, &mut errors);
        super::telemetry::validate(&self.telemetry, |path, message| errors.push(path, message));
        if errors.0.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(errors.0)) }
    }

    /// Returns the keys that still hold a shipped development credential
    /// ([`DEV_TOKEN_HMAC_SECRET`], [`DEV_API_KEY`]).
    pub fn dev_credentials_in_use(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.auth.token_hmac_secret == DEV_TOKEN_HMAC_SECRET {
            keys.push("auth.token_hmac_secret");
        }
        if self.api.key == DEV_API_KEY {
            keys.push("api.key");
        }
        keys
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    fn positive(&mut self, path: &str, value: u64) {
        if value == 0 {
            self.push(path, "must be greater than 0");
        }
    }

    fn at_least(&mut self, path: &str, value: usize, min: usize) {
        if value < min {
            self.push(path, format!("must be at least {min} (got {value})"));
        }
    }
}

fn validate_server(server: &ServerConfig, errors: &mut Errors) {
    if server.listen.parse::<SocketAddr>().is_err() {
        errors.push(
            "server.listen",
            format!("{:?} is not an ip:port socket address (e.g. 127.0.0.1:8000)", server.listen),
        );
    }
    for (i, origin) in server.allowed_origins.iter().enumerate() {
        if let Err(reason) = check_origin(origin) {
            errors.push(
                format!("server.allowed_origins[{i}]"),
                format!(
                    "{origin:?} is not a valid origin: {reason} \
                     (expected scheme://host[:port], optionally with one leading \"*.\" label)"
                ),
            );
        }
    }
    errors.positive("server.max_connections", server.max_connections as u64);
    errors.positive("server.header_read_timeout_secs", server.header_read_timeout_secs);
    errors.at_least("server.max_header_bytes", server.max_header_bytes, MIN_HEADER_BYTES);
    if !server.debug_echo_path.is_empty() && !server.debug_echo_path.starts_with('/') {
        errors.push("server.debug_echo_path", format!("{:?} must start with /", server.debug_echo_path));
    }
    match (server.tls.cert_path.is_empty(), server.tls.key_path.is_empty()) {
        (false, true) => errors.push("server.tls.key_path", "must be set when server.tls.cert_path is set"),
        (true, false) => errors.push("server.tls.cert_path", "must be set when server.tls.key_path is set"),
        _ => {}
    }
}

/// Checks an `allowed_origins` entry: `scheme://host[:port]`, lowercase as
/// browsers send it, no path, with at most one leading `*.` wildcard label.
fn check_origin(origin: &str) -> Result<(), String> {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return Err("missing \"://\"".into());
    };
    let mut scheme_chars = scheme.chars();
    let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && scheme_chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if !scheme_ok {
        return Err(format!("scheme {scheme:?} is not lowercase letters, digits, '+', '-' or '.'"));
    }
    if authority.contains(['/', '?', '#', '@']) {
        return Err("an origin has no path, query, fragment or user info".into());
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or("unclosed '[' in IPv6 host")?;
        ip.parse::<Ipv6Addr>().map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        match after {
            "" => (None, None),
            _ => (None, Some(after.strip_prefix(':').ok_or("expected ':' after ']'")?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(authority), None),
        }
    };
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(format!("port {port:?} is not in 1..=65535"));
    }
    if let Some(host) = host {
        let name = host.strip_prefix("*.").unwrap_or(host);
        check_hostname(name)?;
    }
    Ok(())
}

fn check_hostname(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host".into());
    }
    for label in host.split('.') {
        let chars_ok = label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if label.is_empty() || label.len() > 63 || !chars_ok {
            return Err(format!(
                "host label {label:?} is not 1 to 63 lowercase letters, digits or '-' \
                 (a wildcard is allowed only as the whole first label)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("host label {label:?} starts or ends with '-'"));
        }
    }
    Ok(())
}

fn validate_client(client: &ClientConfig, errors: &mut Errors) {
    errors.positive("client.connect_timeout_secs", client.connect_timeout_secs);
    errors.positive("client.pong_timeout_secs", client.pong_timeout_secs);
    if client.pong_timeout_secs >= client.ping_interval_secs {
        errors.push(
            "client.pong_timeout_secs",
            format!("must be less than client.ping_interval_secs ({})", client.ping_interval_secs),
        );
    }
    errors.at_least("client.max_frame_bytes", client.max_frame_bytes, MIN_FRAME_BYTES);
    errors.positive("client.write_batch_max_bytes", client.write_batch_max_bytes as u64);
    if client.queue_max_bytes < client.write_batch_max_bytes {
        errors.push(
            "client.queue_max_bytes",
            format!("must be at least client.write_batch_max_bytes ({})", client.write_batch_max_bytes),
        );
    }
    errors.positive("client.ws_read_buffer_bytes", client.ws_read_buffer_bytes as u64);
    errors.positive("client.ws_write_buffer_bytes", client.ws_write_buffer_bytes as u64);
    errors.positive("client.max_channels_per_connection", client.max_channels_per_connection as u64);
    errors.positive("client.recovery_max_publication_limit", client.recovery_max_publication_limit as u64);
    errors.positive("client.history_max_publication_limit", client.history_max_publication_limit as u64);
}

fn validate_auth(auth: &AuthConfig, allow_anonymous: bool, errors: &mut Errors) {
    if auth.algorithms.is_empty() {
        errors.push("auth.algorithms", "must list at least one of HS256, RS256, ES256");
    }
    let mut seen = HashMap::new();
    for (i, algorithm) in auth.algorithms.iter().enumerate() {
        let path = format!("auth.algorithms[{i}]");
        if !SUPPORTED_ALGORITHMS.contains(&algorithm.as_str()) {
            errors.push(path, format!("{algorithm:?} is not one of HS256, RS256, ES256"));
        } else if let Some(first) = seen.insert(algorithm.as_str(), i) {
            errors.push(path, format!("duplicate {algorithm:?} (first at auth.algorithms[{first}])"));
        }
    }

    if !auth.token_rsa_public_key_pem.is_empty()
        && let Err(e) = jsonwebtoken::DecodingKey::from_rsa_pem(auth.token_rsa_public_key_pem.as_bytes())
    {
        errors.push("auth.token_rsa_public_key_pem", format!("not an RSA public key in PEM: {e}"));
    }
    if !auth.token_ecdsa_public_key_pem.is_empty()
        && let Err(e) = jsonwebtoken::DecodingKey::from_ec_pem(auth.token_ecdsa_public_key_pem.as_bytes())
    {
        errors.push("auth.token_ecdsa_public_key_pem", format!("not an ECDSA public key in PEM: {e}"));
    }

    let has_key = |algorithm: &str| match algorithm {
        "HS256" => !auth.token_hmac_secret.is_empty(),
        "RS256" => !auth.token_rsa_public_key_pem.is_empty(),
        "ES256" => !auth.token_ecdsa_public_key_pem.is_empty(),
        _ => false,
    };
    if !allow_anonymous && !auth.algorithms.is_empty() && !auth.algorithms.iter().any(|a| has_key(a)) {
        errors.push(
            "auth.algorithms",
            "no listed algorithm has a key, so no client could connect: set \
             auth.token_hmac_secret, auth.token_rsa_public_key_pem or \
             auth.token_ecdsa_public_key_pem, or enable client.allow_anonymous",
        );
    }
}

fn validate_api(api: &ApiConfig, errors: &mut Errors) {
    if api.key.is_empty() {
        errors.push("api.key", "must not be empty");
    }
    errors.positive("api.max_body_bytes", api.max_body_bytes as u64);
    errors.positive("api.idempotency_ttl_secs", api.idempotency_ttl_secs);
    errors.positive("api.max_pattern_channels", api.max_pattern_channels as u64);
}

fn validate_engine(engine: &EngineConfig, errors: &mut Errors) {
    if engine.kind != EngineKind::Redis {
        return;
    }
    let is_url = |u: &str| u.starts_with("redis://") || u.starts_with("rediss://");
    if !is_url(&engine.redis_url) {
        errors.push("engine.redis_url", "must start with redis:// or rediss://");
    }
    for (i, url) in engine.redis_urls.iter().enumerate() {
        if !is_url(url) {
            errors.push(format!("engine.redis_urls[{i}]"), "must start with redis:// or rediss://");
        }
    }
    if engine.redis_prefix.is_empty() {
        errors.push("engine.redis_prefix", "must not be empty");
    }
    // Keys end in a `{channel}` Redis Cluster hash tag; a brace in the
    // prefix would become the tag and split a channel's keys over slots.
    if engine.redis_prefix.contains(['{', '}']) {
        errors.push("engine.redis_prefix", "must not contain '{' or '}'");
    }
    if engine.redis_timeout_ms == 0 {
        errors.push("engine.redis_timeout_ms", "must be greater than 0");
    }
    if engine.presence_ttl_secs < 3 {
        errors.push("engine.presence_ttl_secs", "must be at least 3");
    }
    if engine.gap_check_interval_secs == 0 {
        errors.push("engine.gap_check_interval_secs", "must be greater than 0");
    }
    if engine.max_queued_membership_writes == 0 {
        errors.push("engine.max_queued_membership_writes", "must be greater than 0");
    }
}

fn validate_chat(config: &Config, errors: &mut Errors) {
    let chat = &config.chat;
    errors.positive("chat.max_reactions_per_message", chat.max_reactions_per_message as u64);
    errors.positive("chat.max_reaction_bytes", chat.max_reaction_bytes as u64);
    errors.positive("chat.max_scan_publications", chat.max_scan_publications as u64);
    errors.positive("chat.max_unread_channels", chat.max_unread_channels as u64);
    errors.positive("chat.max_read_marks", chat.max_read_marks);
    let status = &config.status;
    errors.positive("status.away_after_secs", status.away_after_secs);
    errors.positive("status.max_users", status.max_users);
    errors.positive("status.last_seen_ttl_secs", status.last_seen_ttl_secs);
}

fn validate_history_storage(config: &Config, errors: &mut Errors) {
    let engine = &config.engine;
    if let FsyncPolicy::BatchMs(ms) = engine.history_fsync
        && !(1..=1000).contains(&ms)
    {
        errors.push("engine.history_fsync.batch_ms", "must be from 1 to 1000");
    }
    errors.positive("engine.history_storage_max_pending", engine.history_storage_max_pending as u64);
    errors.positive("engine.history_compact_interval_secs", engine.history_compact_interval_secs);
    if !engine.uses_disk(&config.channels) {
        return;
    }
    if engine.kind == EngineKind::Redis {
        errors.push("engine.history_storage", "disk history needs the memory engine (Redis keeps history itself)");
    }
    if engine.data_dir.is_empty() {
        errors.push("engine.data_dir", "must be set when any channel uses disk history");
    }
}

fn validate_long_poll(long_poll: &LongPollConfig, errors: &mut Errors) {
    errors.positive("long_poll.hold_secs", long_poll.hold_secs);
    if long_poll.session_ttl_secs <= long_poll.hold_secs {
        errors.push(
            "long_poll.session_ttl_secs",
            format!("must be greater than long_poll.hold_secs ({})", long_poll.hold_secs),
        );
    }
}

fn validate_channels(channels: &ChannelsConfig, errors: &mut Errors) {
    if !(1..=MAX_CHANNEL_NAME_BYTES).contains(&channels.max_name_bytes) {
        errors.push(
            "channels.max_name_bytes",
            format!("must be in 1..={MAX_CHANNEL_NAME_BYTES} (got {})", channels.max_name_bytes),
        );
    }
    validate_channel_options("channels", &channels.options(), errors);
    validate_delta_types("channels", &channels.allowed_delta_types, errors);

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, namespace) in channels.namespaces.iter().enumerate() {
        let prefix = format!("channels.namespaces[{i}]");
        let name = namespace.name.as_str();
        if !is_namespace_name(name) {
            errors.push(format!("{prefix}.name"), format!("{name:?} does not match {NAMESPACE_NAME_PATTERN}"));
        } else if let Some(first) = seen.insert(name, i) {
            errors.push(
                format!("{prefix}.name"),
                format!("duplicate namespace {name:?} (first at channels.namespaces[{first}])"),
            );
        }
        validate_channel_options(&prefix, &namespace.options(), errors);
        validate_delta_types(&prefix, &namespace.allowed_delta_types, errors);
    }
}

fn validate_delta_types(prefix: &str, types: &[String], errors: &mut Errors) {
    for (i, kind) in types.iter().enumerate() {
        if kind != DELTA_FOSSIL {
            errors.push(format!("{prefix}.allowed_delta_types[{i}]"), format!("{kind:?} is not \"{DELTA_FOSSIL}\""));
        }
    }
}

fn validate_plugins(config: &Config, errors: &mut Errors) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, plugin) in config.plugins.iter().enumerate() {
        let prefix = format!("plugins[{i}]");
        if plugin.name.is_empty() {
            errors.push(format!("{prefix}.name"), "must not be empty");
        } else if let Some(first) = seen.insert(plugin.name.as_str(), i) {
            errors.push(
                format!("{prefix}.name"),
                format!("duplicate plugin {:?} (first at plugins[{first}])", plugin.name),
            );
        }
        if plugin.path.is_empty() {
            errors.push(format!("{prefix}.path"), "must not be empty");
        }
        if let Some(hash) = &plugin.sha256
            && (hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        {
            errors.push(format!("{prefix}.sha256"), "must be 64 lowercase hex digits");
        }
        errors.positive(&format!("{prefix}.memory_max_bytes"), plugin.memory_max_bytes as u64);
        errors.positive(&format!("{prefix}.timeout_ms"), plugin.timeout_ms);
        errors.positive(&format!("{prefix}.pool_size"), plugin.pool_size as u64);
        for (j, grant) in plugin.grants.iter().enumerate() {
            if !PLUGIN_GRANTS.contains(&grant.as_str()) {
                errors.push(
                    format!("{prefix}.grants[{j}]"),
                    format!("{grant:?} is not one of {}", PLUGIN_GRANTS.join(", ")),
                );
            }
        }
        if !plugin.allowed_hosts.is_empty() && !plugin.grants.iter().any(|g| g == "http") {
            errors.push(format!("{prefix}.allowed_hosts"), "requires \"http\" in grants");
        }
    }
    let pipelines = &config.pipelines;
    let mut check = |path: String, names: &[String]| {
        for (j, name) in names.iter().enumerate() {
            if !seen.contains_key(name.as_str()) {
                errors.push(format!("{path}[{j}]"), format!("unknown plugin {name:?} (not in [[plugins]])"));
            }
        }
    };
    check("pipelines.connect".into(), &pipelines.connect);
    check("pipelines.refresh".into(), &pipelines.refresh);
    check("pipelines.subscribe".into(), &pipelines.subscribe);
    check("pipelines.sub_refresh".into(), &pipelines.sub_refresh);
    check("pipelines.publish".into(), &pipelines.publish);
    check("pipelines.rpc".into(), &pipelines.rpc);
    check("pipelines.events".into(), &pipelines.events);
    for (i, namespace) in config.channels.namespaces.iter().enumerate() {
        if let Some(names) = &namespace.publish_pipeline {
            check(format!("channels.namespaces[{i}].publish_pipeline"), names);
        }
        if let Some(names) = &namespace.subscribe_pipeline {
            check(format!("channels.namespaces[{i}].subscribe_pipeline"), names);
        }
        if let Some(names) = &namespace.sub_refresh_pipeline {
            check(format!("channels.namespaces[{i}].sub_refresh_pipeline"), names);
        }
    }
    let runtime = &config.plugin_runtime;
    if !(1..=5).contains(&runtime.epoch_tick_ms) {
        errors.push("plugin_runtime.epoch_tick_ms", format!("must be in 1..=5 (got {})", runtime.epoch_tick_ms));
    }
    errors.positive("plugin_runtime.breaker_faults", u64::from(runtime.breaker_faults));
    errors.positive("plugin_runtime.breaker_backoff_ms", runtime.breaker_backoff_ms);
    errors.positive("plugin_runtime.events_queue_max", runtime.events_queue_max as u64);
    errors.positive("plugin_runtime.events_batch_max", runtime.events_batch_max as u64);
    if runtime.breaker_backoff_max_ms < runtime.breaker_backoff_ms {
        errors.push(
            "plugin_runtime.breaker_backoff_max_ms",
            format!("must be at least breaker_backoff_ms ({})", runtime.breaker_backoff_ms),
        );
    }
    errors.positive("plugin_runtime.init_timeout_ms", runtime.init_timeout_ms);
    errors.positive("plugin_runtime.kv_max_entries", runtime.kv_max_entries);
    errors.positive("plugin_runtime.fetch_max_body_bytes", runtime.fetch_max_body_bytes as u64);
    errors.positive("plugin_runtime.fetch_max_timeout_ms", runtime.fetch_max_timeout_ms);
    let largest_memory = config.plugins.iter().map(|p| p.memory_max_bytes as u64).max().unwrap_or(0);
    if runtime.memory_reservation_bytes != 0 && runtime.memory_reservation_bytes < largest_memory {
        errors.push(
            "plugin_runtime.memory_reservation_bytes",
            format!("must be 0 or at least the largest plugins[].memory_max_bytes ({largest_memory})"),
        );
    }
}

fn validate_routes(config: &Config, errors: &mut Errors) {
    errors.positive("server.upstream_idle_timeout_secs", config.server.upstream_idle_timeout_secs);
    let mut seen: HashMap<(String, &str), usize> = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        let prefix = format!("routes[{i}]");
        if !route.path_prefix.starts_with('/') {
            errors.push(format!("{prefix}.path_prefix"), format!("{:?} must start with /", route.path_prefix));
        } else if let Some(first) = seen.insert((route.host.to_ascii_lowercase(), route.path_prefix.as_str()), i) {
            errors.push(
                format!("{prefix}.path_prefix"),
                format!("duplicate route for host {:?} and this prefix (first at routes[{first}])", route.host),
            );
        }
        if !route.host.is_empty() && check_hostname(&route.host.to_ascii_lowercase()).is_err() {
            errors.push(format!("{prefix}.host"), format!("{:?} is not a host name", route.host));
        }
        match route.upstream.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() && uri.query().is_none() => {}
            _ => errors.push(
                format!("{prefix}.upstream"),
                format!("{:?} is not an http://host[:port][/path] URL without a query", route.upstream),
            ),
        }
        errors.positive(&format!("{prefix}.connect_timeout_ms"), route.connect_timeout_ms);
        errors.positive(&format!("{prefix}.response_timeout_ms"), route.response_timeout_ms);
    }
}

fn validate_forwarding(config: &Config, errors: &mut Errors) {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    for (i, name) in config.client.forward_headers.iter().enumerate() {
        let path = format!("client.forward_headers[{i}]");
        if name.is_empty() || !name.bytes().all(token) {
            errors.push(path, format!("{name:?} is not an http header name"));
        } else if name.eq_ignore_ascii_case("cookie") {
            errors.push(path, "cookies are forwarded by name through client.forward_cookies");
        }
    }
    for (i, name) in config.client.forward_cookies.iter().enumerate() {
        if name.is_empty() || !name.bytes().all(token) {
            errors.push(format!("client.forward_cookies[{i}]"), format!("{name:?} is not a cookie name"));
        }
    }
    // A browser attaches cookies to a WebSocket opened by any page: without
    // an origin allow-list, a foreign page could connect as the user.
    if !config.client.forward_cookies.is_empty() && config.server.allowed_origins.is_empty() {
        errors.push(
            "client.forward_cookies",
            "requires server.allowed_origins: cookies are honoured only for allowed origins",
        );
    }
}

/// `^[-a-zA-Z0-9_]{2,}$` without a regex engine.
fn is_namespace_name(name: &str) -> bool {
    name.len() >= 2 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn validate_channel_options(prefix: &str, options: &ChannelOptions, errors: &mut Errors) {
    match (options.history_size > 0, options.history_ttl_secs > 0) {
        (true, false) => errors.push(
            format!("{prefix}.history_ttl_secs"),
            format!("must be greater than 0 when {prefix}.history_size is set (both or neither)"),
        ),
        (false, true) => errors.push(
            format!("{prefix}.history_size"),
            format!("must be greater than 0 when {prefix}.history_ttl_secs is set (both or neither)"),
        ),
        _ => {}
    }
    if options.history_meta_ttl_secs < options.history_ttl_secs {
        errors.push(
            format!("{prefix}.history_meta_ttl_secs"),
            format!("must be at least {prefix}.history_ttl_secs ({})", options.history_ttl_secs),
        );
    }
    if !options.history_enabled() {
        for (flag, set) in [
            ("force_recovery", options.force_recovery),
            ("allow_recovery", options.allow_recovery),
            ("chat", options.chat),
        ] {
            if set {
                errors.push(
                    format!("{prefix}.{flag}"),
                    format!(
                        "requires history ({prefix}.history_size and \
                         {prefix}.history_ttl_secs greater than 0)"
                    ),
                );
            }
        }
    }
}

fn validate_dev_credentials(config: &Config, errors: &mut Errors) {
    let Ok(listen) = config.server.listen.parse::<SocketAddr>() else {
        return;
    };
    if listen.ip().is_loopback() {
        return;
    }
    for key in config.dev_credentials_in_use() {
        errors.push(
            key,
            format!(
                "still the shipped development value while server.listen ({listen}) is not \
                 a loopback address; set your own value"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::NamespaceConfig;
    use super::*;

    fn errors(config: &Config) -> Vec<FieldError> {
        match config.validate() {
            Ok(()) => Vec::new(),
            Err(error) => error.errors().to_vec(),
        }
    }

    /// Asserts `config` fails with an error at exactly `path` whose message
    /// contains `fragment`.
    #[track_caller]
    fn assert_rejects(config: &Config, path: &str, fragment: &str) {
        let errors = errors(config);
        assert!(
            errors.iter().any(|e| e.path == path && e.message.contains(fragment)),
            "expected an error at {path} containing {fragment:?}, got {errors:#?}"
        );
    }

    fn with(edit: impl FnOnce(&mut Config)) -> Config {
        let mut config = Config::default();
        edit(&mut config);
        config
    }

    fn namespace(name: &str) -> NamespaceConfig {
        NamespaceConfig { name: name.into(), ..NamespaceConfig::default() }
    }

    #[test]
    fn routes_are_checked_under_their_key_paths() {
        use super::super::schema::RouteConfig;
        let route = |prefix: &str, host: &str, upstream: &str| RouteConfig {
            path_prefix: prefix.into(),
            host: host.into(),
            upstream: upstream.into(),
            ..RouteConfig::default()
        };
        let config = with(|c| {
            c.routes = vec![
                route("/", "", "http://127.0.0.1:3000"),
                route("app", "", "http://127.0.0.1:3000"),
                route("/", "", "http://127.0.0.1:3001"),
                route("/x", "bad host!", "https://up:1"),
                route("/y", "", "http://up:1/?q=1"),
            ];
            c.routes[0].response_timeout_ms = 0;
        });
        assert_rejects(&config, "routes[0].response_timeout_ms", "greater than 0");
        assert_rejects(&config, "routes[1].path_prefix", "must start with /");
        assert_rejects(
            &config,
            "routes[2].path_prefix",
            "duplicate route for host \"\" and this prefix (first at routes[0])",
        );
        assert_rejects(&config, "routes[3].host", "is not a host name");
        assert_rejects(&config, "routes[3].upstream", "is not an http://host[:port][/path] URL");
        assert_rejects(&config, "routes[4].upstream", "without a query");
        assert_eq!(errors(&config).len(), 6, "{:#?}", errors(&config));
        assert!(errors(&with(|c| c.routes = vec![route("/", "app.example.com", "http://up:1/base")])).is_empty());
    }

    #[test]
    fn forwarded_cookies_need_an_origin_allow_list() {
        let config = with(|c| {
            c.client.forward_cookies = vec!["session".into()];
            c.client.forward_headers = vec!["Cookie".into(), "x bad".into()];
        });
        assert_rejects(&config, "client.forward_cookies", "requires server.allowed_origins");
        assert_rejects(&config, "client.forward_headers[0]", "through client.forward_cookies");
        assert_rejects(&config, "client.forward_headers[1]", "is not an http header name");
        let fine = with(|c| {
            c.client.forward_cookies = vec!["session".into()];
            c.server.allowed_origins = vec!["https://app.example.com".into()];
        });
        assert!(errors(&fine).is_empty());
    }

    #[test]
    fn proxy_pipelines_name_known_plugins() {
        let config = with(|c| {
            c.pipelines.refresh = vec!["nope".into()];
            c.channels.namespaces =
                vec![NamespaceConfig { subscribe_pipeline: Some(vec!["gone".into()]), ..namespace("chat") }];
        });
        assert_rejects(&config, "pipelines.refresh[0]", "unknown plugin \"nope\"");
        assert_rejects(&config, "channels.namespaces[0].subscribe_pipeline[0]", "unknown plugin \"gone\"");
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(errors(&Config::default()), Vec::new());
    }

    #[test]
    fn version_must_be_1() {
        assert_rejects(&with(|c| c.version = 2), "version", "unsupported version 2");
    }

    #[test]
    fn listen_must_be_a_socket_address() {
        let config = with(|c| c.server.listen = "localhost:8000".into());
        assert_rejects(&config, "server.listen", "not an ip:port");
        assert!(with(|c| c.server.listen = "[::1]:8000".into()).validate().is_ok());
    }

    #[test]
    fn server_limits_must_be_positive() {
        assert_rejects(&with(|c| c.server.max_connections = 0), "server.max_connections", "greater than 0");
        assert_rejects(&with(|c| c.server.debug_echo_path = "echo".into()), "server.debug_echo_path", "start with /");
        assert!(with(|c| c.server.debug_echo_path = "/debug/echo".into()).validate().is_ok());
        assert_rejects(
            &with(|c| c.server.header_read_timeout_secs = 0),
            "server.header_read_timeout_secs",
            "greater than 0",
        );
        assert_rejects(
            &with(|c| c.server.max_header_bytes = 100),
            "server.max_header_bytes",
            "at least 1024 (got 100)",
        );
    }

    #[test]
    fn tls_paths_come_in_pairs() {
        let config = with(|c| c.server.tls.cert_path = "cert.pem".into());
        assert_rejects(&config, "server.tls.key_path", "must be set");
        let config = with(|c| c.server.tls.key_path = "key.pem".into());
        assert_rejects(&config, "server.tls.cert_path", "must be set");
        let config = with(|c| {
            c.server.tls.cert_path = "cert.pem".into();
            c.server.tls.key_path = "key.pem".into();
        });
        assert!(config.validate().is_ok());
    }

    #[test]
    fn origins_accept_exact_wildcard_port_and_ipv6() {
        for origin in [
            "https://app.example.com",
            "http://localhost:3000",
            "https://*.example.com",
            "https://*.example.com:8443",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://[::1]",
            "chrome-extension://abcdef",
        ] {
            assert_eq!(check_origin(origin), Ok(()), "{origin}");
        }
    }

    #[test]
    fn origins_reject_malformed_entries() {
        for origin in [
            "app.example.com",
            "https://",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://user@app.example.com",
            "https://*.*.example.com",
            "https://a.*.example.com",
            "https://*",
            "*://example.com",
            "https://App.Example.com",
            "HTTPS://example.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://example.com:",
            "https://-bad.example.com",
            "https://[::1",
            "https://[nope]:1",
        ] {
            assert!(check_origin(origin).is_err(), "{origin} should be rejected");
        }
        let config = with(|c| c.server.allowed_origins = vec!["https://ok.com".into(), "nope".into()]);
        assert_rejects(&config, "server.allowed_origins[1]", "\"nope\" is not a valid origin");
        assert_eq!(errors(&config).len(), 1);
    }

    #[test]
    fn pong_timeout_must_be_positive_and_below_ping_interval() {
        let config = with(|c| c.client.pong_timeout_secs = 25);
        assert_rejects(&config, "client.pong_timeout_secs", "must be less than client.ping_interval_secs (25)");
        assert_rejects(&with(|c| c.client.pong_timeout_secs = 0), "client.pong_timeout_secs", "greater than 0");
        assert_rejects(
            &with(|c| c.client.ping_interval_secs = 0),
            "client.pong_timeout_secs",
            "must be less than client.ping_interval_secs (0)",
        );
    }

    #[test]
    fn client_limits() {
        assert_rejects(&with(|c| c.client.connect_timeout_secs = 0), "client.connect_timeout_secs", "greater than 0");
        assert_rejects(
            &with(|c| c.client.max_frame_bytes = 1023),
            "client.max_frame_bytes",
            "at least 1024 (got 1023)",
        );
        assert!(with(|c| c.client.max_frame_bytes = 1024).validate().is_ok());
        assert_rejects(
            &with(|c| c.client.queue_max_bytes = 65_535),
            "client.queue_max_bytes",
            "at least client.write_batch_max_bytes (65536)",
        );
        for (path, edit) in [
            ("client.write_batch_max_bytes", (|c: &mut Config| c.client.write_batch_max_bytes = 0) as fn(&mut Config)),
            ("client.ws_read_buffer_bytes", |c| c.client.ws_read_buffer_bytes = 0),
            ("client.ws_write_buffer_bytes", |c| c.client.ws_write_buffer_bytes = 0),
            ("client.max_channels_per_connection", |c| c.client.max_channels_per_connection = 0),
            ("client.recovery_max_publication_limit", |c| c.client.recovery_max_publication_limit = 0),
            ("client.history_max_publication_limit", |c| c.client.history_max_publication_limit = 0),
            ("api.max_body_bytes", |c| c.api.max_body_bytes = 0),
            ("api.idempotency_ttl_secs", |c| c.api.idempotency_ttl_secs = 0),
        ] {
            assert_rejects(&with(edit), path, "greater than 0");
        }
    }

    #[test]
    fn zero_disables_command_rate_limit() {
        assert!(with(|c| c.client.max_commands_per_sec = 0).validate().is_ok());
    }

    #[test]
    fn algorithms_must_be_known_unique_and_non_empty() {
        assert_rejects(&with(|c| c.auth.algorithms.clear()), "auth.algorithms", "at least one");
        let config = with(|c| c.auth.algorithms = vec!["HS256".into(), "HS512".into()]);
        assert_rejects(&config, "auth.algorithms[1]", "\"HS512\" is not one of");
        let config = with(|c| c.auth.algorithms = vec!["HS256".into(), "HS256".into()]);
        assert_rejects(&config, "auth.algorithms[1]", "duplicate \"HS256\" (first at auth.algorithms[0])");
    }

    #[test]
    fn some_listed_algorithm_needs_a_key_unless_anonymous() {
        let config = with(|c| c.auth.algorithms = vec!["RS256".into(), "ES256".into()]);
        assert_rejects(&config, "auth.algorithms", "no listed algorithm has a key");
        let config = with(|c| c.auth.token_hmac_secret.clear());
        assert_rejects(&config, "auth.algorithms", "no listed algorithm has a key");
        let config = with(|c| {
            c.auth.token_hmac_secret.clear();
            c.client.allow_anonymous = true;
        });
        assert!(config.validate().is_ok());
        // A listed algorithm without a key is merely unusable.
        let config = with(|c| c.auth.algorithms = vec!["HS256".into(), "RS256".into()]);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn public_keys_must_be_pem() {
        let config = with(|c| c.auth.token_rsa_public_key_pem = "not pem".into());
        assert_rejects(&config, "auth.token_rsa_public_key_pem", "not an RSA public key");
        let config = with(|c| c.auth.token_ecdsa_public_key_pem = "not pem".into());
        assert_rejects(&config, "auth.token_ecdsa_public_key_pem", "not an ECDSA public key");
    }

    #[test]
    fn api_key_must_not_be_empty() {
        assert_rejects(&with(|c| c.api.key.clear()), "api.key", "must not be empty");
    }

    #[test]
    fn max_name_bytes_is_bounded() {
        assert_rejects(&with(|c| c.channels.max_name_bytes = 0), "channels.max_name_bytes", "1..=1024 (got 0)");
        assert_rejects(&with(|c| c.channels.max_name_bytes = 1025), "channels.max_name_bytes", "1..=1024 (got 1025)");
        assert!(with(|c| c.channels.max_name_bytes = 1024).validate().is_ok());
    }

    #[test]
    fn namespace_names_match_the_pattern_and_are_unique() {
        let config = with(|c| {
            c.channels.namespaces = vec![namespace("chat"), namespace("a"), namespace("chat"), namespace("a:b")]
        });
        assert_rejects(&config, "channels.namespaces[1].name", r#""a" does not match ^[-a-zA-Z0-9_]{2,}$"#);
        assert_rejects(
            &config,
            "channels.namespaces[2].name",
            "duplicate namespace \"chat\" (first at channels.namespaces[0])",
        );
        assert_rejects(&config, "channels.namespaces[3].name", "does not match");
        assert_rejects(
            &with(|c| c.channels.namespaces = vec![namespace("")]),
            "channels.namespaces[0].name",
            "does not match",
        );
        assert!(with(|c| c.channels.namespaces = vec![namespace("Chat-room_2")]).validate().is_ok());
    }

    #[test]
    fn plugins_need_unique_names_known_pipelines_and_budgets() {
        use super::super::schema::PluginConfig;
        let plugin = |name: &str| PluginConfig { name: name.into(), path: "p.wasm".into(), ..PluginConfig::default() };
        let config = with(|c| {
            c.plugins = vec![
                plugin("a"),
                plugin("a"),
                PluginConfig { timeout_ms: 0, pool_size: 0, memory_max_bytes: 0, ..plugin("b") },
            ];
            c.plugins[1].grants.push("fs".into());
            c.plugins[2].allowed_hosts.push("example.com".into());
            c.pipelines.publish = vec!["a".into(), "nope".into()];
            c.pipelines.events = vec!["ghost".into()];
            c.plugin_runtime.epoch_tick_ms = 10;
            c.plugin_runtime.breaker_backoff_max_ms = 10;
            c.plugin_runtime.kv_max_entries = 0;
            c.plugin_runtime.fetch_max_body_bytes = 0;
            c.plugin_runtime.memory_reservation_bytes = 1 << 20;
            let mut ns = namespace("chat");
            ns.publish_pipeline = Some(vec!["b".into(), "missing".into()]);
            c.channels.namespaces.push(ns);
        });
        assert_rejects(&config, "plugins[1].name", "duplicate plugin \"a\" (first at plugins[0])");
        assert_rejects(&config, "plugins[1].grants[5]", "\"fs\" is not one of log, kv, metrics, http, clock, random");
        assert_rejects(&config, "plugins[2].timeout_ms", "greater than 0");
        assert_rejects(&config, "plugins[2].pool_size", "greater than 0");
        assert_rejects(&config, "plugins[2].memory_max_bytes", "greater than 0");
        assert_rejects(&config, "plugins[2].allowed_hosts", "requires \"http\" in grants");
        assert_rejects(&config, "pipelines.publish[1]", "unknown plugin \"nope\"");
        assert_rejects(&config, "pipelines.events[0]", "unknown plugin \"ghost\"");
        assert_rejects(&config, "channels.namespaces[0].publish_pipeline[1]", "unknown plugin \"missing\"");
        assert_rejects(&config, "plugin_runtime.epoch_tick_ms", "must be in 1..=5 (got 10)");
        assert_rejects(&config, "plugin_runtime.breaker_backoff_max_ms", "must be at least breaker_backoff_ms (1000)");
        assert_rejects(&config, "plugin_runtime.kv_max_entries", "greater than 0");
        assert_rejects(&config, "plugin_runtime.fetch_max_body_bytes", "greater than 0");
        assert_rejects(
            &config,
            "plugin_runtime.memory_reservation_bytes",
            "must be 0 or at least the largest plugins[].memory_max_bytes (33554432)",
        );
        assert_eq!(errors(&config).len(), 14, "{:#?}", errors(&config));
    }

    #[test]
    fn history_size_and_ttl_come_together() {
        let config = with(|c| c.channels.history_size = 10);
        assert_rejects(&config, "channels.history_ttl_secs", "both or neither");
        let config = with(|c| {
            let mut ns = namespace("chat");
            ns.history_ttl_secs = 60;
            c.channels.namespaces = vec![ns];
        });
        assert_rejects(&config, "channels.namespaces[0].history_size", "both or neither");
    }

    #[test]
    fn history_meta_ttl_outlives_history_ttl() {
        let config = with(|c| {
            c.channels.history_size = 10;
            c.channels.history_ttl_secs = 600;
            c.channels.history_meta_ttl_secs = 599;
        });
        assert_rejects(&config, "channels.history_meta_ttl_secs", "at least channels.history_ttl_secs (600)");
    }

    #[test]
    fn recovery_requires_history() {
        let config = with(|c| {
            c.channels.force_recovery = true;
            let mut ns = namespace("chat");
            ns.allow_recovery = true;
            c.channels.namespaces = vec![ns];
        });
        assert_rejects(&config, "channels.force_recovery", "requires history");
        assert_rejects(&config, "channels.namespaces[0].allow_recovery", "requires history");
        let config = with(|c| {
            c.channels.force_recovery = true;
            c.channels.history_size = 10;
            c.channels.history_ttl_secs = 60;
        });
        assert!(config.validate().is_ok());
    }

    #[test]
    fn dev_credentials_are_refused_off_loopback() {
        let config = with(|c| c.server.listen = "0.0.0.0:8000".into());
        assert_rejects(&config, "auth.token_hmac_secret", "0.0.0.0:8000) is not a loopback");
        assert_rejects(&config, "api.key", "development value");
        assert_eq!(config.dev_credentials_in_use(), ["auth.token_hmac_secret", "api.key"]);

        let config = with(|c| {
            c.server.listen = "0.0.0.0:8000".into();
            c.auth.token_hmac_secret = "a real secret".into();
            c.api.key = "a real key".into();
        });
        assert!(config.validate().is_ok());
        assert!(config.dev_credentials_in_use().is_empty());
        assert!(with(|c| c.server.listen = "[::1]:80".into()).validate().is_ok());
    }

    #[test]
    fn every_violation_is_reported_together() {
        let config = with(|c| {
            c.version = 3;
            c.server.max_connections = 0;
            c.client.pong_timeout_secs = 30;
            c.channels.namespaces = vec![namespace("a")];
        });
        let paths: Vec<String> = errors(&config).into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            ["version", "server.max_connections", "client.pong_timeout_secs", "channels.namespaces[0].name"]
        );
        let text = config.validate().unwrap_err().to_string();
        assert!(text.starts_with("config is invalid (4 errors)\n"), "{text}");
    }
}
