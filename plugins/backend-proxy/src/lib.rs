//! `backend-proxy`: hands connect, refresh, subscribe, sub_refresh, publish
//! and rpc to an application backend over HTTP, with the request and
//! response shapes of Centrifugo's proxy, so a backend written for
//! Centrifugo works unchanged.
//!
//! Each hook POSTs JSON to its configured URL (a hook without a URL passes
//! through):
//! - connect `{client, transport, protocol, encoding, name, version, data,
//!   channels}` → `{result: {user, expire_at, info, data, channels, meta}}`.
//!   The allow-listed request headers (and cookies, see the gateway's
//!   `client.forward_headers` / `forward_cookies`) go along as HTTP headers:
//!   this is how a backend session cookie authenticates a WebSocket.
//! - refresh `{client, transport, protocol, encoding, user, meta}` →
//!   `{result: {expired, expire_at, info}}`;
//! - subscribe `{client, transport, protocol, encoding, user, channel, meta,
//!   data}` → `{result: {info, data, override, expire_at}}`;
//! - sub_refresh `{…, user, channel, meta}` → `{result: {expired, expire_at, info}}`;
//! - publish `{…, user, channel, meta, data}` → `{result: {data, skip_history,
//!   tags}}` (a client publish only; API publishes pass);
//! - rpc `{method, data}` → `{result: {data}}`.
//!
//! Any hook may answer `{error: {code, message}}` (an error reply; codes
//! 400..=1999 and the protocol's 100..=113 pass through, others become 100)
//! or `{disconnect: {code, reason}}` (closes the connection; 3000..=4999 pass
//! through, others become 3503). Payloads that are not JSON travel as
//! `b64data` with `encoding: "binary"`.
//!
//! Each request has its hook's `timeout_ms` (default 1000). Idempotent hooks
//! (connect, refresh, subscribe, sub_refresh) are retried `retries` times on
//! a transport error, timeout or 5xx; publish and rpc never are. When the
//! backend still fails, `on_backend_error` decides: `deny` (error 100, the
//! client may retry) or `pass` (the gateway's own decision stands). A failed
//! refresh closes the connection with 3004 (the client reconnects) and a
//! failed sub_refresh ends the subscription (2501, it resubscribes). Every
//! attempt records `backend_response_ms{hook, outcome}`.
//!
//! Per-namespace selection: configure one `[[plugins]]` entry per backend and
//! name it in a namespace's `subscribe_pipeline` / `publish_pipeline` /
//! `sub_refresh_pipeline`. The host's `timeout_ms` bounds only the guest's own
//! CPU time (waiting on the backend is excluded) and `pool_size` bounds the
//! concurrent backend calls. Imports: `http`, `metrics`, `clock`, `log`.
//!
//! ```toml
//! allowed_hosts = ["127.0.0.1:3000"]
//! grants = ["http", "metrics", "clock", "log"]
//! pool_size = 64
//! config = { connect = { url = "http://127.0.0.1:3000/centrifugo/connect" },
//!            subscribe = { url = "http://127.0.0.1:3000/centrifugo/subscribe", timeout_ms = 500 },
//!            retries = 1, on_backend_error = "deny", headers = { "x-proxy-secret" = "s" } }
//! ```

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchboard_plugin_sdk::{
    ConnectAttempt, ConnectDecision, ConnectHook, Connection, Plugin, PublishAttempt, PublishDecision, PublishHook,
    PublishRewrite, RefreshDecision, RefreshGrant, RefreshHook, RefreshRequest, Reject, RpcError, RpcHook, Session,
    SubRefreshHook, SubRefreshRequest, SubscribeAttempt, SubscribeDecision, SubscribeHook, Subscription, clock, http,
    log, metrics,
};

/// One hook's backend endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HookConfig {
    /// The http URL to POST to. Required.
    pub url: String,
    /// Per request, in milliseconds. Default 1000.
    pub timeout_ms: u32,
}

impl Default for HookConfig {
    fn default() -> Self {
        HookConfig { url: String::new(), timeout_ms: 1000 }
    }
}

/// What a failing backend means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnBackendError {
    /// Refuse with error 100 (temporary).
    #[default]
    Deny,
    /// Let the gateway's own decision stand.
    Pass,
}

/// The plugin config (the TOML `config` table).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub connect: Option<HookConfig>,
    pub refresh: Option<HookConfig>,
    pub subscribe: Option<HookConfig>,
    pub sub_refresh: Option<HookConfig>,
    pub publish: Option<HookConfig>,
    pub rpc: Option<HookConfig>,
    /// Extra attempts of idempotent hooks after a transport error, timeout
    /// or 5xx. Default 0.
    pub retries: u32,
    /// Default deny.
    pub on_backend_error: OnBackendError,
    /// Static headers sent with every request (e.g. a shared secret).
    /// Default none.
    pub headers: BTreeMap<String, String>,
}

/// The hooks, as named in metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Connect,
    Refresh,
    Subscribe,
    SubRefresh,
    Publish,
    Rpc,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::Connect => "connect",
            Hook::Refresh => "refresh",
            Hook::Subscribe => "subscribe",
            Hook::SubRefresh => "sub_refresh",
            Hook::Publish => "publish",
            Hook::Rpc => "rpc",
        }
    }

    /// Whether calling the backend twice is harmless: only decisions that
    /// change nothing on the backend are retried.
    pub fn idempotent(self) -> bool {
        matches!(self, Hook::Connect | Hook::Refresh | Hook::Subscribe | Hook::SubRefresh)
    }
}

/// A backend's answer, as Centrifugo's proxy defines it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Result(Value),
    Error(Reject),
    Disconnect(Reject),
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawAnswer {
    result: Option<Value>,
    error: Option<RawError>,
    disconnect: Option<RawDisconnect>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawError {
    code: u32,
    message: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawDisconnect {
    code: u32,
    reason: String,
}

/// Error codes a backend may send: the application range 400..=1999 and
/// the protocol's own codes; anything else is an internal error.
pub fn map_error_code(code: u32) -> u32 {
    if (400..=1999).contains(&code) || (100..=113).contains(&code) { code } else { 100 }
}

/// Disconnect codes a backend may send: 4000..=4999 (4000..=4499 ask the
/// client to reconnect) and the protocol's 3000..=3999; anything else is
/// 3503 force disconnect.
pub fn map_disconnect_code(code: u32) -> u32 {
    if (3000..=4999).contains(&code) { code } else { 3503 }
}

/// Reads a backend response body.
pub fn parse_answer(body: &[u8]) -> Result<Answer, String> {
    let raw: RawAnswer = serde_json::from_slice(body).map_err(|e| format!("response is not json: {e}"))?;
    if let Some(e) = raw.disconnect {
        return Ok(Answer::Disconnect(Reject::new(map_disconnect_code(e.code), e.reason)));
    }
    if let Some(e) = raw.error {
        let message = if map_error_code(e.code) == e.code { e.message } else { "backend error".to_owned() };
        return Ok(Answer::Error(Reject::new(map_error_code(e.code), message)));
    }
    Ok(Answer::Result(raw.result.unwrap_or_else(|| Value::Object(Map::new()))))
}

/// Puts `bytes` into `body` as `data` (JSON) or `b64data`, and sets
/// `encoding` to match.
fn put_data(body: &mut Map<String, Value>, bytes: &[u8]) {
    if bytes.is_empty() {
        body.insert("encoding".into(), json!("json"));
        return;
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => {
            body.insert("encoding".into(), json!("json"));
            body.insert("data".into(), value);
        }
        Err(_) => {
            body.insert("encoding".into(), json!("binary"));
            body.insert("b64data".into(), json!(STANDARD.encode(bytes)));
        }
    }
}

/// `result[key]` (JSON) or `result["b64" + key]` (base64) as bytes.
fn take_bytes(result: &Value, key: &str) -> Result<Option<Vec<u8>>, String> {
    if let Some(encoded) = result.get(format!("b64{key}")).and_then(Value::as_str).filter(|s| !s.is_empty()) {
        return STANDARD.decode(encoded).map(Some).map_err(|_| format!("b64{key} is not base64"));
    }
    Ok(result.get(key).filter(|v| !v.is_null()).map(|v| v.to_string().into_bytes()))
}

fn expire_at(result: &Value) -> Option<u64> {
    result.get("expire_at").and_then(Value::as_u64).filter(|t| *t > 0)
}

fn connection_fields(conn: &Connection) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("client".into(), json!(conn.client));
    body.insert("transport".into(), json!(conn.transport));
    body.insert("protocol".into(), json!(conn.protocol));
    body.insert("encoding".into(), json!("json"));
    body.insert("user".into(), json!(conn.user));
    if let Ok(meta) = serde_json::from_slice::<Value>(&conn.meta) {
        body.insert("meta".into(), meta);
    }
    body
}

pub struct BackendProxy {
    config: Config,
}

impl BackendProxy {
    pub fn from_config(config: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(config).map_err(|e| format!("backend-proxy config: {e}"))?;
        for (name, hook) in [
            ("connect", &config.connect),
            ("refresh", &config.refresh),
            ("subscribe", &config.subscribe),
            ("sub_refresh", &config.sub_refresh),
            ("publish", &config.publish),
            ("rpc", &config.rpc),
        ] {
            let Some(hook) = hook else { continue };
            if !hook.url.starts_with("http://") {
                return Err(format!("{name}.url {:?} must be an http:// URL", hook.url));
            }
            if hook.timeout_ms == 0 {
                return Err(format!("{name}.timeout_ms must be greater than 0"));
            }
        }
        Ok(BackendProxy { config })
    }

    fn endpoint(&self, hook: Hook) -> Option<&HookConfig> {
        match hook {
            Hook::Connect => self.config.connect.as_ref(),
            Hook::Refresh => self.config.refresh.as_ref(),
            Hook::Subscribe => self.config.subscribe.as_ref(),
            Hook::SubRefresh => self.config.sub_refresh.as_ref(),
            Hook::Publish => self.config.publish.as_ref(),
            Hook::Rpc => self.config.rpc.as_ref(),
        }
    }

    /// POSTs `body` to the hook's URL, retrying idempotent hooks; `Err`
    /// when the backend could not give an answer.
    fn call(
        &self,
        hook: Hook,
        endpoint: &HookConfig,
        body: &Value,
        headers: &[(String, String)],
    ) -> Result<Answer, String> {
        let mut req = http::Request::new("POST", &endpoint.url)
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
            .timeout_ms(endpoint.timeout_ms);
        for (name, value) in self.config.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())) {
            req = req.header(name, value);
        }
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let attempts = if hook.idempotent() { 1 + self.config.retries } else { 1 };
        let mut last = String::new();
        for attempt in 1..=attempts {
            let started = clock::monotonic_ns();
            let result = http::fetch(&req);
            let elapsed_ms = clock::monotonic_ns().saturating_sub(started) as f64 / 1e6;
            let (outcome, answer) = match result {
                Ok(resp) if resp.is_success() => match parse_answer(&resp.body) {
                    Ok(answer) => ("ok", Ok(answer)),
                    // A malformed answer would be malformed again.
                    Err(e) => ("invalid", Err((e, false))),
                },
                Ok(resp) => ("status", Err((format!("status {}", resp.status), resp.status >= 500))),
                Err(e) => ("transport", Err((e, true))),
            };
            metrics::histogram("backend_response_ms", elapsed_ms, &[("hook", hook.name()), ("outcome", outcome)]);
            match answer {
                Ok(answer) => return Ok(answer),
                Err((error, retryable)) => {
                    log::warn!("backend-proxy: {} attempt {attempt}/{attempts} failed: {error}", hook.name());
                    last = error;
                    if !retryable {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    fn backend_unavailable() -> Reject {
        Reject::new(100, "backend unavailable")
    }
}

impl Plugin for BackendProxy {
    fn init(config: &str) -> Result<Self, String> {
        BackendProxy::from_config(config)
    }
}

impl ConnectHook for BackendProxy {
    fn on_connect_ext(&mut self, req: ConnectAttempt) -> ConnectDecision {
        let Some(endpoint) = self.endpoint(Hook::Connect).cloned() else { return ConnectDecision::Pass };
        let mut body = Map::new();
        body.insert("client".into(), json!(req.client));
        body.insert("transport".into(), json!(req.transport));
        body.insert("protocol".into(), json!(req.protocol));
        body.insert("name".into(), json!(req.name));
        body.insert("version".into(), json!(req.version));
        put_data(&mut body, &req.data);
        if !req.channels.is_empty() {
            body.insert("channels".into(), json!(req.channels));
        }
        let result = match self.call(Hook::Connect, &endpoint, &Value::Object(body), &req.headers) {
            Ok(Answer::Result(result)) => result,
            Ok(Answer::Error(r)) => return ConnectDecision::Deny(r),
            Ok(Answer::Disconnect(r)) => return ConnectDecision::Disconnect(r),
            Err(_) if self.config.on_backend_error == OnBackendError::Pass => return ConnectDecision::Pass,
            Err(_) => return ConnectDecision::Deny(Self::backend_unavailable()),
        };
        let session = (|| -> Result<Session, String> {
            let mut session = Session::new(result.get("user").and_then(Value::as_str).unwrap_or_default());
            session.info = take_bytes(&result, "info")?;
            session.data = take_bytes(&result, "data")?;
            session.meta = result.get("meta").filter(|m| !m.is_null()).map(|m| m.to_string().into_bytes());
            session.expires_at = expire_at(&result);
            session.channels = result
                .get("channels")
                .and_then(Value::as_array)
                .map(|list| list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            Ok(session)
        })();
        match session {
            Ok(session) => ConnectDecision::Allow(session),
            Err(e) => {
                log::warn!("backend-proxy: connect result: {e}");
                ConnectDecision::Deny(Self::backend_unavailable())
            }
        }
    }
}

/// A refresh answer: `expired`, or a new `expire_at` and `info`.
fn refresh_decision(answer: Result<Answer, String>) -> Option<RefreshDecision> {
    match answer {
        Ok(Answer::Result(result)) => {
            if result.get("expired").and_then(Value::as_bool) == Some(true) {
                return Some(RefreshDecision::Expire);
            }
            let info = take_bytes(&result, "info").ok()?;
            Some(RefreshDecision::Extend(RefreshGrant { expires_at: expire_at(&result), info }))
        }
        Ok(Answer::Error(_)) => Some(RefreshDecision::Expire),
        Ok(Answer::Disconnect(r)) => Some(RefreshDecision::Disconnect(r)),
        Err(_) => None,
    }
}

impl RefreshHook for BackendProxy {
    fn on_refresh(&mut self, req: RefreshRequest) -> RefreshDecision {
        let Some(endpoint) = self.endpoint(Hook::Refresh).cloned() else { return RefreshDecision::Expire };
        let body = Value::Object(connection_fields(&req.conn));
        refresh_decision(self.call(Hook::Refresh, &endpoint, &body, &[]))
            .unwrap_or_else(|| RefreshDecision::Disconnect(Reject::new(3004, "refresh failed")))
    }
}

impl SubRefreshHook for BackendProxy {
    fn on_sub_refresh(&mut self, req: SubRefreshRequest) -> RefreshDecision {
        let Some(endpoint) = self.endpoint(Hook::SubRefresh).cloned() else { return RefreshDecision::Expire };
        let mut body = connection_fields(&req.conn);
        body.insert("channel".into(), json!(req.channel));
        refresh_decision(self.call(Hook::SubRefresh, &endpoint, &Value::Object(body), &[]))
            .unwrap_or(RefreshDecision::Expire)
    }
}

/// `override: {presence: {value: true}}` → `Some(true)`.
fn override_flag(result: &Value, key: &str) -> Option<bool> {
    result.get("override")?.get(key)?.get("value")?.as_bool()
}

impl SubscribeHook for BackendProxy {
    fn on_subscribe_ext(&mut self, req: SubscribeAttempt) -> SubscribeDecision {
        let Some(endpoint) = self.endpoint(Hook::Subscribe).cloned() else {
            return SubscribeDecision::Allow(Subscription::default());
        };
        let mut body = connection_fields(&req.conn);
        body.insert("channel".into(), json!(req.channel));
        put_data(&mut body, &req.data);
        let result = match self.call(Hook::Subscribe, &endpoint, &Value::Object(body), &[]) {
            Ok(Answer::Result(result)) => result,
            Ok(Answer::Error(r)) => return SubscribeDecision::Deny(r),
            Ok(Answer::Disconnect(r)) => return SubscribeDecision::Disconnect(r),
            Err(_) if self.config.on_backend_error == OnBackendError::Pass => {
                return SubscribeDecision::Allow(Subscription::default());
            }
            Err(_) => return SubscribeDecision::Deny(Self::backend_unavailable()),
        };
        let (Ok(info), Ok(data)) = (take_bytes(&result, "info"), take_bytes(&result, "data")) else {
            return SubscribeDecision::Deny(Self::backend_unavailable());
        };
        SubscribeDecision::Allow(Subscription {
            info,
            data,
            expires_at: expire_at(&result),
            presence: override_flag(&result, "presence"),
            join_leave: override_flag(&result, "join_leave"),
            force_recovery: override_flag(&result, "force_recovery"),
        })
    }
}

impl PublishHook for BackendProxy {
    fn on_publish_ext(&mut self, req: PublishAttempt) -> PublishDecision {
        let (Some(endpoint), Some(conn)) = (self.endpoint(Hook::Publish).cloned(), req.conn.as_ref()) else {
            return PublishDecision::Pass;
        };
        let mut body = connection_fields(conn);
        body.insert("channel".into(), json!(req.msg.channel));
        put_data(&mut body, &req.msg.data);
        let result = match self.call(Hook::Publish, &endpoint, &Value::Object(body), &[]) {
            Ok(Answer::Result(result)) => result,
            Ok(Answer::Error(r) | Answer::Disconnect(r)) => return PublishDecision::Deny(r),
            Err(_) if self.config.on_backend_error == OnBackendError::Pass => return PublishDecision::Pass,
            Err(_) => return PublishDecision::Deny(Self::backend_unavailable()),
        };
        let mut msg = req.msg;
        match take_bytes(&result, "data") {
            Ok(Some(data)) => msg.data = data,
            Ok(None) => {}
            Err(_) => return PublishDecision::Deny(Self::backend_unavailable()),
        }
        if let Some(tags) = result.get("tags").and_then(Value::as_object) {
            msg.tags = tags.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect();
        }
        let skip_history = result.get("skip_history").and_then(Value::as_bool).unwrap_or(false);
        PublishDecision::Replace(PublishRewrite { msg, skip_history })
    }
}

impl RpcHook for BackendProxy {
    fn on_rpc(&mut self, method: &str, data: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        let Some(endpoint) = self.endpoint(Hook::Rpc).cloned() else {
            return Err(RpcError { code: 104, message: "method not found".into() });
        };
        let mut body = Map::new();
        body.insert("method".into(), json!(method));
        put_data(&mut body, &data);
        match self.call(Hook::Rpc, &endpoint, &Value::Object(body), &[]) {
            Ok(Answer::Result(result)) => match take_bytes(&result, "data") {
                Ok(data) => Ok(data.unwrap_or_default()),
                Err(message) => Err(RpcError { code: 100, message }),
            },
            Ok(Answer::Error(r) | Answer::Disconnect(r)) => Err(RpcError { code: r.code, message: r.reason }),
            Err(_) => Err(RpcError { code: 100, message: "backend unavailable".into() }),
        }
    }
}

switchboard_plugin_sdk::export_plugin!(
    BackendProxy,
    hooks: [connect, refresh, subscribe, sub_refresh, publish, rpc]
);

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use switchboard_plugin_sdk::{Message, testing};

    use super::*;

    fn proxy(extra: &str) -> BackendProxy {
        let config = format!(
            r#"{{ "connect": {{ "url": "http://b/connect" }}, "subscribe": {{ "url": "http://b/subscribe" }},
                 "publish": {{ "url": "http://b/publish" }}, "rpc": {{ "url": "http://b/rpc", "timeout_ms": 50 }},
                 "refresh": {{ "url": "http://b/refresh" }} {extra} }}"#
        );
        BackendProxy::from_config(&config).unwrap()
    }

    /// Answers each request with the next scripted (status, body) and keeps
    /// the requests' JSON bodies.
    fn backend(script: Vec<(u16, &'static str)>) -> Rc<RefCell<Vec<(String, Value)>>> {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        let mut script = script.into_iter();
        testing::set_http_handler(move |req| {
            log.borrow_mut().push((req.url.clone(), serde_json::from_slice(&req.body).unwrap()));
            let (status, body) = script.next().expect("an unscripted backend call");
            let mut resp = testing::response(status);
            resp.body = body.as_bytes().to_vec();
            Ok(resp)
        });
        seen
    }

    fn conn() -> Connection {
        Connection {
            client: "c1".into(),
            user: "42".into(),
            transport: "websocket".into(),
            protocol: "json".into(),
            meta: br#"{"tier":"gold"}"#.to_vec(),
        }
    }

    fn attempt() -> ConnectAttempt {
        ConnectAttempt {
            client: "c1".into(),
            transport: "websocket".into(),
            protocol: "json".into(),
            user: String::new(),
            claims: "{}".into(),
            data: br#"{"hello":1}"#.to_vec(),
            name: "js".into(),
            version: "5".into(),
            channels: vec!["news".into()],
            headers: vec![("cookie".into(), "session=abc".into())],
            trace: Default::default(),
        }
    }

    #[test]
    fn connect_sends_centrifugo_shape_and_reads_the_session() {
        testing::reset();
        let seen = backend(vec![(
            200,
            r#"{"result":{"user":"42","expire_at":1900000000,"info":{"name":"Ann"},"data":{"welcome":true},
                "channels":["user:42"],"meta":{"tier":"gold"}}}"#,
        )]);
        let decision = proxy("").on_connect_ext(attempt());
        let ConnectDecision::Allow(session) = decision else { panic!("{decision:?}") };
        assert_eq!(session.user, "42");
        assert_eq!(session.expires_at, Some(1_900_000_000));
        assert_eq!(session.info.as_deref(), Some(&br#"{"name":"Ann"}"#[..]));
        assert_eq!(session.data.as_deref(), Some(&br#"{"welcome":true}"#[..]));
        assert_eq!(session.meta.as_deref(), Some(&br#"{"tier":"gold"}"#[..]));
        assert_eq!(session.channels, vec!["user:42".to_owned()]);
        let (url, body) = seen.borrow()[0].clone();
        assert_eq!(url, "http://b/connect");
        assert_eq!(
            body,
            json!({"client": "c1", "transport": "websocket", "protocol": "json", "name": "js", "version": "5",
                   "encoding": "json", "data": {"hello": 1}, "channels": ["news"]})
        );
        let sent = &testing::requests()[0];
        assert!(sent.headers.contains(&("cookie".into(), "session=abc".into())));
        assert_eq!(sent.timeout_ms, 1000);
    }

    #[test]
    fn errors_and_disconnects_map_to_protocol_codes() {
        testing::reset();
        backend(vec![
            (200, r#"{"error":{"code":1001,"message":"banned"}}"#),
            (200, r#"{"error":{"code":7,"message":"odd"}}"#),
            (200, r#"{"disconnect":{"code":4501,"reason":"go away"}}"#),
            (200, r#"{"disconnect":{"code":99,"reason":"bad"}}"#),
        ]);
        let mut p = proxy("");
        assert_eq!(p.on_connect_ext(attempt()), ConnectDecision::Deny(Reject::new(1001, "banned")));
        assert_eq!(p.on_connect_ext(attempt()), ConnectDecision::Deny(Reject::new(100, "backend error")));
        assert_eq!(p.on_connect_ext(attempt()), ConnectDecision::Disconnect(Reject::new(4501, "go away")));
        assert_eq!(p.on_connect_ext(attempt()), ConnectDecision::Disconnect(Reject::new(3503, "bad")));
    }

    #[test]
    fn idempotent_hooks_retry_and_publish_does_not() {
        testing::reset();
        let seen = backend(vec![(503, ""), (200, r#"{"result":{"user":"42"}}"#), (503, "")]);
        let mut p = proxy(r#", "retries": 2"#);
        assert!(matches!(p.on_connect_ext(attempt()), ConnectDecision::Allow(_)));
        assert_eq!(seen.borrow().len(), 2, "one retry after the 503");
        let msg = Message::new("chat:1", br#"{"text":"hi"}"#.to_vec());
        let decision = p.on_publish_ext(PublishAttempt { msg, conn: Some(conn()) });
        assert_eq!(decision, PublishDecision::Deny(Reject::new(100, "backend unavailable")));
        assert_eq!(seen.borrow().len(), 3, "publish is not retried");
    }

    #[test]
    fn on_backend_error_pass_keeps_the_gateway_decision() {
        testing::reset();
        let mut p = proxy(r#", "on_backend_error": "pass""#);
        // No handler: every fetch is a transport error.
        assert_eq!(p.on_connect_ext(attempt()), ConnectDecision::Pass);
        let sub = SubscribeAttempt { conn: conn(), channel: "c".into(), data: Vec::new(), trace: Default::default() };
        assert_eq!(p.on_subscribe_ext(sub), SubscribeDecision::Allow(Subscription::default()));
    }

    #[test]
    fn subscribe_reads_info_data_override_and_publish_rewrites() {
        testing::reset();
        let seen = backend(vec![
            (
                200,
                r#"{"result":{"info":{"role":"mod"},"b64data":"eyJ4IjoxfQ==","override":{"presence":{"value":false}}}}"#,
            ),
            (200, r#"{"result":{"data":{"text":"HI"},"skip_history":true,"tags":{"lang":"en"}}}"#),
        ]);
        let mut p = proxy("");
        let sub =
            SubscribeAttempt { conn: conn(), channel: "chat:1".into(), data: vec![0xff], trace: Default::default() };
        let SubscribeDecision::Allow(grant) = p.on_subscribe_ext(sub) else { panic!() };
        assert_eq!(grant.info.as_deref(), Some(&br#"{"role":"mod"}"#[..]));
        assert_eq!(grant.data.as_deref(), Some(&br#"{"x":1}"#[..]));
        assert_eq!(grant.presence, Some(false));
        assert_eq!(grant.join_leave, None);
        let body = seen.borrow()[0].1.clone();
        assert_eq!(body["b64data"], json!("/w=="));
        assert_eq!(body["encoding"], json!("binary"));
        assert_eq!(body["meta"], json!({"tier": "gold"}));
        assert_eq!(body["user"], json!("42"));

        let msg = Message::new("chat:1", br#"{"text":"hi"}"#.to_vec());
        let PublishDecision::Replace(rewrite) = p.on_publish_ext(PublishAttempt { msg, conn: Some(conn()) }) else {
            panic!()
        };
        assert_eq!(rewrite.msg.data, br#"{"text":"HI"}"#.to_vec());
        assert!(rewrite.skip_history);
        assert_eq!(rewrite.msg.tags, vec![("lang".to_owned(), "en".to_owned())]);
        let api = p.on_publish_ext(PublishAttempt { msg: Message::new("chat:1", b"{}".to_vec()), conn: None });
        assert_eq!(api, PublishDecision::Pass, "api publishes are not proxied");
    }

    #[test]
    fn rpc_and_refresh() {
        testing::reset();
        backend(vec![
            (200, r#"{"result":{"data":{"sum":3}}}"#),
            (200, r#"{"result":{"expire_at":1900000000}}"#),
            (200, r#"{"result":{"expired":true}}"#),
        ]);
        let mut p = proxy("");
        assert_eq!(p.on_rpc("add", br#"[1,2]"#.to_vec()), Ok(br#"{"sum":3}"#.to_vec()));
        assert_eq!(testing::requests()[0].timeout_ms, 50, "per-hook timeout");
        let req = || RefreshRequest { conn: conn(), trace: Default::default() };
        assert_eq!(
            p.on_refresh(req()),
            RefreshDecision::Extend(RefreshGrant { expires_at: Some(1_900_000_000), info: None })
        );
        assert_eq!(p.on_refresh(req()), RefreshDecision::Expire);
        assert_eq!(testing::histogram("backend_response_ms").len(), 3, "one sample per backend call");
    }

    #[test]
    fn config_is_validated() {
        for (json, want) in [
            (r#"{ "connect": { "url": "ftp://x" } }"#, "connect.url \"ftp://x\" must be an http:// URL"),
            (r#"{ "rpc": { "url": "http://x", "timeout_ms": 0 } }"#, "rpc.timeout_ms must be greater than 0"),
            (r#"{ "nope": 1 }"#, "unknown field `nope`"),
        ] {
            let error = BackendProxy::from_config(json).err().unwrap();
            assert!(error.contains(want), "{error}");
        }
    }
}
