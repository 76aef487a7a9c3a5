//! End-to-end harness: a real gateway on `127.0.0.1:0`, and clients for it.
//!
//! [`TestGateway`] starts `switchboard::run` in-process with a config the
//! test shapes, and shuts it down on drop. [`WsClient`] speaks the JSON
//! protocol over a real WebSocket; [`Api`] calls the server HTTP API. Waits
//! are on frames and replies with a timeout, never sleeps.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::config::{Config, NamespaceConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// The HMAC secret test configs use.
pub const SECRET: &str = "test-secret";
/// The API key test configs use.
pub const API_KEY: &str = "test-api-key";
/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// A config for tests: known secret and key, and a `chat` namespace with
/// history, recovery, presence and join/leave all on.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.auth.token_hmac_secret = SECRET.into();
    config.api.key = API_KEY.into();
    config.server.shutdown_grace_secs = 2;
    config.channels.namespaces.push(NamespaceConfig {
        name: "chat".into(),
        history_size: 100,
        history_ttl_secs: 300,
        force_recovery: true,
        presence: true,
        join_leave: true,
        allow_publish_for_subscriber: true,
        allow_history_for_subscriber: true,
        allow_presence_for_subscriber: true,
        ..NamespaceConfig::default()
    });
    config
}

/// Mints an HS256 token with `claims` (add `sub`, `exp`, `channel`, ...).
pub fn token(secret: &str, claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("sign token")
}

/// Unix time in seconds.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A connection token for `user` valid for an hour.
pub fn user_token(user: &str) -> String {
    token(SECRET, json!({ "sub": user, "exp": now_secs() + 3600 }))
}

/// An unsigned token (`alg: none`) carrying `claims`.
pub fn unsigned_token(claims: Value) -> String {
    let header = base64url(json!({ "alg": "none", "typ": "JWT" }).to_string().as_bytes());
    let payload = base64url(claims.to_string().as_bytes());
    format!("{header}.{payload}.")
}

/// Unpadded base64url, as JWTs use.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// The `publications` of a subscribe or history result (empty when absent).
pub fn publications(result: &Value) -> Vec<Value> {
    result.get("publications").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// The offsets of `publications`, in order.
pub fn offsets(publications: &[Value]) -> Vec<u64> {
    publications.iter().map(|p| p["offset"].as_u64().unwrap_or(0)).collect()
}

/// A gateway running in this process.
pub struct TestGateway {
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), switchboard::Error>>>,
    /// A gateway of [`start_killable`](Self::start_killable): the thread
    /// owning its runtime, and the switch that drops that runtime.
    own_runtime: Option<(tokio::sync::oneshot::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl TestGateway {
    /// Starts a gateway with [`test_config`].
    pub async fn start() -> Result<Self> {
        Self::start_with(test_config()).await
    }

    /// Starts a gateway with `config` on `127.0.0.1:0`.
    pub async fn start_with(config: Config) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        let task = tokio::spawn(switchboard::run(config, listener, async move { signal.cancelled().await }));
        Ok(Self { addr, shutdown, task: Some(task), own_runtime: None })
    }

    /// Starts a gateway on a runtime and thread of its own, so that
    /// [`kill`](Self::kill) can stop it like SIGKILL stops a process: every
    /// task is dropped mid-flight, no cleanup runs, nothing is said to Redis
    /// or to clients beyond their sockets closing.
    pub fn start_killable(config: Config) -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let thread = std::thread::Builder::new().name(format!("gateway-{}", addr.port())).spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(listener) else { return };
                tokio::select! {
                    _ = switchboard::run(config, listener, async move { signal.cancelled().await }) => {}
                    _ = killed => {}
                }
            });
            // No waiting for anything: the node's tasks are simply gone.
            runtime.shutdown_background();
        })?;
        Ok(Self { addr, shutdown, task: None, own_runtime: Some((kill, thread)) })
    }

    /// Stops a [`start_killable`](Self::start_killable) gateway abruptly
    /// and waits until its runtime is gone.
    pub async fn kill(mut self) -> Result<()> {
        let (kill, thread) = self.own_runtime.take().context("not started with start_killable")?;
        let _ = kill.send(());
        tokio::task::spawn_blocking(move || thread.join()).await?.map_err(|_| anyhow::anyhow!("gateway panicked"))?;
        Ok(())
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn api(&self) -> Api {
        Api { addr: self.addr, key: API_KEY.into() }
    }

    /// Opens a WebSocket (not yet connected at the protocol level).
    pub async fn ws(&self) -> Result<WsClient> {
        WsClient::open(&self.ws_url(), None).await
    }

    /// Opens a WebSocket and completes `connect` as `user`.
    pub async fn connect(&self, user: &str) -> Result<(WsClient, Value)> {
        let mut ws = self.ws().await?;
        let reply = ws.call(json!({ "connect": { "token": user_token(user) } })).await?;
        if reply.get("error").is_some() {
            bail!("connect failed: {reply}");
        }
        Ok((ws, reply["connect"].clone()))
    }

    /// Starts graceful shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) -> Result<()> {
        self.shutdown.cancel();
        if let Some((_, thread)) = self.own_runtime.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join());
            tokio::time::timeout(Duration::from_secs(15), joined)
                .await
                .context("shutdown timed out")??
                .map_err(|_| anyhow::anyhow!("gateway panicked"))?;
            return Ok(());
        }
        let task = self.task.take().expect("running");
        tokio::time::timeout(Duration::from_secs(15), task).await.context("shutdown timed out")???;
        Ok(())
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What a test reads from the socket.
#[derive(Debug)]
pub enum Frame {
    /// One JSON message (frames are split on newlines).
    Json(Value),
    /// The server closed with this code and reason.
    Close(u16, String),
}

/// A JSON-protocol WebSocket client with its own command ids.
pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u32,
    pending: std::collections::VecDeque<Value>,
    /// Answer server pings with `{}` automatically (true by default).
    pub auto_pong: bool,
}

impl WsClient {
    /// Opens a socket to `url`, optionally with an `Origin` header.
    pub async fn open(url: &str, origin: Option<&str>) -> Result<Self> {
        let mut request = url.into_client_request()?;
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse()?);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self::from_stream(ws))
    }

    /// Opens a socket to `url` with extra request headers (`Origin`,
    /// `Cookie`, ...).
    pub async fn open_with_headers(url: &str, headers: &[(&str, &str)]) -> Result<Self> {
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            request
                .headers_mut()
                .append(tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())?, value.parse()?);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self::from_stream(ws))
    }

    /// Opens a socket to `url` whose kernel receive buffer is asked to be
    /// `recv_buffer` bytes, so that a client that stops reading backs the
    /// server up quickly.
    pub async fn open_with_recv_buffer(url: &str, addr: SocketAddr, recv_buffer: u32) -> Result<Self> {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_recv_buffer_size(recv_buffer)?;
        let stream = socket.connect(addr).await?;
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)).await?;
        Ok(Self::from_stream(ws))
    }

    fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self { ws, next_id: 1, pending: Default::default(), auto_pong: true }
    }

    /// Sends `{"connect":{"token":…}}` and returns the whole reply (which
    /// may be an error); fails if the connection closes instead.
    pub async fn connect_token(&mut self, token: &str) -> Result<Value> {
        self.call(json!({ "connect": { "token": token } })).await
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<()> {
        self.ws.send(Message::text(text.into())).await?;
        Ok(())
    }

    /// Sends a raw binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.ws.send(Message::binary(bytes)).await?;
        Ok(())
    }

    /// Sends `command` with the next id; returns the id.
    pub async fn send(&mut self, mut command: Value) -> Result<u32> {
        let id = self.next_id;
        self.next_id += 1;
        command["id"] = json!(id);
        self.send_text(command.to_string()).await?;
        Ok(id)
    }

    /// Sends `command` and waits for the reply with its id. Pushes that
    /// arrive meanwhile are kept for [`WsClient::next_push`].
    pub async fn call(&mut self, command: Value) -> Result<Value> {
        let id = self.send(command).await?;
        let mut skipped = Vec::new();
        let reply = loop {
            match self.next_frame().await? {
                Frame::Json(v) if v["id"] == json!(id) => break v,
                Frame::Json(v) => skipped.push(v),
                Frame::Close(code, reason) => bail!("closed {code} {reason:?} while waiting for reply {id}"),
            }
        };
        for v in skipped.into_iter().rev() {
            self.pending.push_front(v);
        }
        Ok(reply)
    }

    /// The next message or close, within [`WAIT`]. Pings are answered (when
    /// `auto_pong`) and skipped.
    pub async fn next_frame(&mut self) -> Result<Frame> {
        loop {
            if let Some(v) = self.pending.pop_front() {
                return Ok(Frame::Json(v));
            }
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.context("timed out waiting for a frame")?;
            match msg {
                Some(Ok(Message::Text(text))) => {
                    for line in text.as_str().split('\n').filter(|l| !l.trim().is_empty()) {
                        let v: Value = serde_json::from_str(line).with_context(|| format!("bad json {line:?}"))?;
                        if v == json!({}) && self.auto_pong {
                            self.send_text("{}").await?;
                            continue;
                        }
                        self.pending.push_back(v);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|CloseFrame { code, reason }| (u16::from(code), reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Ok(Frame::Close(code, reason));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("websocket error: {e}"),
                None => bail!("connection ended without a close frame"),
            }
        }
    }

    /// The next push (a message without an id).
    pub async fn next_push(&mut self) -> Result<Value> {
        match self.next_frame().await? {
            Frame::Json(v) if v.get("push").is_some() => Ok(v["push"].clone()),
            Frame::Json(v) => bail!("expected a push, got {v}"),
            Frame::Close(code, reason) => bail!("closed {code} {reason:?} while waiting for a push"),
        }
    }

    /// Waits for the close frame, skipping any messages; returns its code.
    pub async fn expect_close(&mut self) -> Result<(u16, String)> {
        loop {
            if let Frame::Close(code, reason) = self.next_frame().await? {
                return Ok((code, reason));
            }
        }
    }
}

/// A client for the server HTTP API.
pub struct Api {
    addr: SocketAddr,
    key: String,
}

/// An HTTP response: status and parsed JSON body (Null when not JSON).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Value,
}

impl Api {
    /// Calls `method` with `params` using the configured key; returns the body.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value> {
        let resp = self.raw(method, &params.to_string(), &[("x-api-key", &self.key)]).await?;
        if resp.status != 200 {
            bail!("api {method} answered {}: {}", resp.status, resp.body);
        }
        Ok(resp.body)
    }

    /// Calls `method` and returns the `result`, failing on an `error`.
    pub async fn result(&self, method: &str, params: Value) -> Result<Value> {
        let body = self.call(method, params).await?;
        match body.get("result") {
            Some(r) => Ok(r.clone()),
            None => bail!("api {method} failed: {body}"),
        }
    }

    /// A raw POST with chosen headers.
    pub async fn raw(&self, method: &str, body: &str, headers: &[(&str, &str)]) -> Result<HttpResponse> {
        http_request(self.addr, "POST", &format!("/api/{method}"), headers, body).await
    }
}

/// Posts `commands` (one JSON value per line) to `/emulation` for an SSE,
/// HTTP-stream or long-poll session; the status (204 when taken).
pub async fn emulate(addr: SocketAddr, session: &str, node: &str, commands: &[Value]) -> Result<u16> {
    let data: Vec<String> = commands.iter().map(Value::to_string).collect();
    let body = json!({ "session": session, "node": node, "data": data.join("\n") }).to_string();
    let resp = http_request(addr, "POST", "/emulation", &[("content-type", "application/json")], &body).await?;
    Ok(resp.status)
}

/// A minimal HTTP/1.1 client over a fresh connection (`Connection: close`).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<HttpResponse> {
    http_request_bytes(addr, method, path, headers, body.as_bytes()).await
}

/// [`http_request`] with a binary body (Protobuf posts).
pub async fn http_request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    let text = http_request_text(addr, method, path, headers, body).await?;
    Ok(HttpResponse { status: text.status, body: serde_json::from_str(&text.body).unwrap_or(Value::Null) })
}

/// An HTTP response with its body as text and its head (lowercased).
#[derive(Debug)]
pub struct TextResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// [`http_request_bytes`] returning the body as text (`/metrics`).
pub async fn http_request_text(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<TextResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut req = req.into_bytes();
    req.extend_from_slice(body);
    stream.write_all(&req).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw)).await.context("http response timed out")??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    let status: u16 = head.split(' ').nth(1).context("no status")?.parse()?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Ok(TextResponse { status, head: head.to_ascii_lowercase(), body })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Builds the example plugin `plugins/<name>` (the shipped plugins'
/// workspace) for `wasm32-wasip2` (release) once per test process and
/// returns its `.wasm`; artifacts go to `$CARGO_TARGET_DIR/example-plugins`.
pub fn example_plugin(name: &str) -> Result<std::path::PathBuf> {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let wasm_stem = name.replace('-', "_");
    build_component(&BUILT, name, "example-plugins", &wasm_stem, |root| root.join("plugins/Cargo.toml"), &["-p", name])
}

/// Builds the test guest `plugins/testing/<name>` for `wasm32-wasip2`
/// (release) once per test process and returns its `.wasm`. Cargo's own
/// fingerprinting makes repeat builds cheap; artifacts go to
/// `$CARGO_TARGET_DIR/test-guests` (or `target/test-guests`).
pub fn test_guest(name: &str) -> Result<std::path::PathBuf> {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let wasm_stem = format!("switchboard_test_{}", name.replace('-', "_"));
    let manifest = |root: &std::path::Path| root.join("plugins/testing").join(name).join("Cargo.toml");
    build_component(&BUILT, name, "test-guests", &wasm_stem, manifest, &[])
}

/// The one way the tests build a guest crate into a component: `cargo build
/// --release --target wasm32-wasip2` with the manifest `manifest(root)` into
/// `$CARGO_TARGET_DIR/<target_subdir>`, once per `name` per process (`built`
/// remembers which).
fn build_component(
    built: &std::sync::Mutex<Vec<String>>,
    name: &str,
    target_subdir: &str,
    wasm_stem: &str,
    manifest: impl FnOnce(&std::path::Path) -> std::path::PathBuf,
    extra_args: &[&str],
) -> Result<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?.to_owned();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join(target_subdir);
    let wasm = target.join("wasm32-wasip2/release").join(format!("{wasm_stem}.wasm"));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if built.iter().any(|b| b == name) {
        return Ok(wasm);
    }
    let manifest = manifest(&root);
    let output = std::process::Command::new("cargo")
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
        .args(extra_args)
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(manifest.parent().context("manifest folder")?)
        .output()
        .context("run cargo for a plugin component")?;
    if !output.status.success() {
        bail!("building {name} ({}) failed:\n{}", manifest.display(), String::from_utf8_lossy(&output.stderr));
    }
    built.push(name.to_owned());
    Ok(wasm)
}

#[cfg(test)]
mod suites;

/// The real `switchboard` binary, built once per test process with the
/// workspace's target directory (cargo's fingerprint makes it cheap when it
/// is fresh). For tests that need a separate process: kill -9, SIGTERM,
/// restarts on the same data.
pub fn gateway_binary() -> Result<std::path::PathBuf> {
    static BUILT: std::sync::OnceLock<std::result::Result<std::path::PathBuf, String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned();
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| root.join("target"));
        let output = std::process::Command::new("cargo")
            // Selecting the e2e package too gives the same feature resolution as the
            // test build, so no dependency is built a second time.
            .args(["build", "--quiet", "-p", "switchboard-e2e", "-p", "switchboard", "--bin", "switchboard"])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&root)
            .output()
            .map_err(|e| format!("run cargo: {e}"))?;
        if !output.status.success() {
            return Err(format!("building switchboard failed:\n{}", String::from_utf8_lossy(&output.stderr)));
        }
        Ok(target.join("debug/switchboard"))
    });
    built.clone().map_err(anyhow::Error::msg)
}

/// A gateway in its own process (the real binary), on a port chosen once and
/// kept across restarts so clients reconnect to the same address.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    config_path: std::path::PathBuf,
    child: Option<tokio::process::Child>,
    /// Everything the process wrote to stderr (its log), across restarts.
    log: std::sync::Arc<parking_lot::Mutex<String>>,
    /// The task copying the current process's stderr into `log`; it ends
    /// at the pipe's end of file, after the process exits.
    log_reader: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// Writes `config` (its `server.listen` replaced by a free loopback port)
    /// and starts the binary on it; returns once the port accepts.
    pub async fn start(mut config: Config) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        config.server.listen = addr.to_string();
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, toml::to_string(&config)?)?;
        let log = std::sync::Arc::new(parking_lot::Mutex::new(String::new()));
        let mut gw = Self { addr, config_path, child: None, log, log_reader: None, _dir: dir };
        gw.restart().await?;
        Ok(gw)
    }

    /// Starts the process again (after [`kill`](Self::kill) or
    /// [`terminate`](Self::terminate)) with the same config and port.
    pub async fn restart(&mut self) -> Result<()> {
        let mut child = self.spawn()?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(self.addr).await.is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                bail!("switchboard exited with {status} before listening:\n{}", self.log());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("switchboard did not listen on {} within 30 s:\n{}", self.addr, self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Replaces the config for the next start (keeping the port).
    pub fn set_config(&mut self, config: &Config) -> Result<()> {
        let mut config = config.clone();
        config.server.listen = self.addr.to_string();
        std::fs::write(&self.config_path, toml::to_string(&config)?)?;
        Ok(())
    }

    /// Runs the binary to its exit (for starts expected to fail): returns
    /// its exit code and everything it logged.
    pub async fn run_to_exit(&mut self) -> Result<(Option<i32>, String)> {
        let mut child = self.spawn()?;
        let status =
            tokio::time::timeout(Duration::from_secs(30), child.wait()).await.context("switchboard did not exit")??;
        // The exit does not mean the reader has copied the last lines (the
        // ones that say why): wait for it to reach the end of the pipe.
        if let Some(reader) = self.log_reader.take() {
            tokio::time::timeout(Duration::from_secs(10), reader)
                .await
                .context("the stderr reader did not finish after the exit")??;
        }
        Ok((status.code(), self.log()))
    }

    fn spawn(&mut self) -> Result<tokio::process::Child> {
        let mut child = tokio::process::Command::new(gateway_binary()?)
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawn switchboard")?;
        if let Some(stderr) = child.stderr.take() {
            let log = self.log.clone();
            self.log_reader = Some(tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut log = log.lock();
                    log.push_str(&line);
                    log.push('\n');
                }
            }));
        }
        Ok(child)
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        self.log.lock().clone()
    }

    /// SIGKILL: no shutdown code runs. Waits for the process to be gone.
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// SIGTERM: graceful shutdown. Waits (up to 30 s) for the exit.
    pub async fn terminate(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().context("no pid")?;
            let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
            if !status.success() {
                bail!("kill -TERM {pid} failed");
            }
            tokio::time::timeout(Duration::from_secs(30), child.wait()).await.context("no exit after SIGTERM")??;
        }
        Ok(())
    }

    pub fn api(&self) -> Api {
        Api { addr: self.addr, key: API_KEY.into() }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.addr)
    }

    /// Opens a WebSocket and completes `connect` as `user`.
    pub async fn connect(&self, user: &str) -> Result<(WsClient, Value)> {
        let mut ws = WsClient::open(&self.ws_url(), None).await?;
        let reply = ws.call(json!({ "connect": { "token": user_token(user) } })).await?;
        if reply.get("error").is_some() {
            bail!("connect failed: {reply}");
        }
        Ok((ws, reply["connect"].clone()))
    }
}

/// A streaming HTTP/1.1 response read as it arrives: the status and headers,
/// then the (de-chunked) body as lines or server-sent events.
pub struct HttpStream {
    pub status: u16,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    stream: TcpStream,
    /// Raw bytes read and not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked body bytes not yet consumed.
    body: Vec<u8>,
    chunked: bool,
    ended: bool,
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub data: Value,
}

impl HttpStream {
    /// Sends a request on a fresh connection and reads the response head.
    pub async fn open(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Self> {
        Self::open_bytes(addr, method, path, headers, body.as_bytes()).await
    }

    /// [`HttpStream::open`] with a binary body (Protobuf requests).
    pub async fn open_bytes(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Self> {
        use tokio::io::AsyncWriteExt;
        let mut stream = TcpStream::connect(addr).await?;
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut req = req.into_bytes();
        req.extend_from_slice(body);
        stream.write_all(&req).await?;
        let mut this = Self {
            status: 0,
            headers: Vec::new(),
            stream,
            raw: Vec::new(),
            body: Vec::new(),
            chunked: false,
            ended: false,
        };
        let end = loop {
            if let Some(end) = this.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if !this.read_more().await? {
                bail!("connection closed before the response head");
            }
        };
        let head = String::from_utf8_lossy(&this.raw[..end]).to_string();
        this.raw.drain(..end + 4);
        let mut lines = head.split("\r\n");
        this.status = lines.next().and_then(|l| l.split(' ').nth(1)).context("no status")?.parse()?;
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                this.headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        this.chunked = this.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        Ok(this)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    async fn read_more(&mut self) -> Result<bool> {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 8192];
        let n =
            tokio::time::timeout(WAIT, self.stream.read(&mut buf)).await.context("timed out reading the stream")??;
        self.raw.extend_from_slice(&buf[..n]);
        Ok(n > 0)
    }

    /// Moves complete chunks from `raw` to `body`.
    fn dechunk(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return;
        }
        while let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let Ok(size) = usize::from_str_radix(String::from_utf8_lossy(&self.raw[..eol]).trim(), 16) else {
                self.ended = true;
                return;
            };
            if size == 0 {
                self.ended = true;
                return;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..eol + 2 + size + 2);
        }
    }

    /// The body up to the next `separator` (excluded); `None` when the body
    /// ended first.
    async fn next_until(&mut self, separator: &[u8]) -> Result<Option<String>> {
        loop {
            self.dechunk();
            if let Some(at) = self.body.windows(separator.len()).position(|w| w == separator) {
                let part = String::from_utf8(self.body[..at].to_vec())?;
                self.body.drain(..at + separator.len());
                return Ok(Some(part));
            }
            if self.ended || !self.read_more().await? {
                return Ok(None);
            }
        }
    }

    /// The next varint-length-delimited message (its bytes, without the
    /// prefix); `None` at the end of the body. Fails on a bad prefix or a
    /// body that ends inside a message.
    pub async fn next_delimited(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            self.dechunk();
            if !self.body.is_empty() {
                let mut buf = &self.body[..];
                // A prefix split across reads fails to decode: read more.
                if let Ok(len) = prost::decode_length_delimiter(&mut buf) {
                    let prefix = self.body.len() - buf.len();
                    if buf.len() >= len {
                        let message = self.body[prefix..prefix + len].to_vec();
                        self.body.drain(..prefix + len);
                        return Ok(Some(message));
                    }
                }
            }
            if self.ended || !self.read_more().await? {
                if self.body.is_empty() {
                    return Ok(None);
                }
                bail!("body ended inside a message ({} bytes left)", self.body.len());
            }
        }
    }

    /// The next newline-delimited JSON message; `None` at the end of the body.
    pub async fn next_json(&mut self) -> Result<Option<Value>> {
        loop {
            match self.next_until(b"\n").await? {
                Some(line) if line.trim().is_empty() => continue,
                Some(line) => {
                    return Ok(Some(serde_json::from_str(&line).with_context(|| format!("bad json {line:?}"))?));
                }
                None => return Ok(None),
            }
        }
    }

    /// The next server-sent event; `None` at the end of the body.
    pub async fn next_event(&mut self) -> Result<Option<SseEvent>> {
        loop {
            let Some(block) = self.next_until(b"\n\n").await? else { return Ok(None) };
            let mut id = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim_start().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if data.is_empty() {
                continue;
            }
            let data = serde_json::from_str(&data).with_context(|| format!("bad event data {data:?}"))?;
            return Ok(Some(SseEvent { id, data }));
        }
    }

    /// The next event that is not a `{}` ping.
    pub async fn next_non_ping_event(&mut self) -> Result<Option<SseEvent>> {
        loop {
            match self.next_event().await? {
                Some(e) if e.data == json!({}) => continue,
                other => return Ok(other),
            }
        }
    }
}

/// Percent-encodes `text` for a query parameter value.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `node SCRIPT` in `tests/sdk/js` with `env`, and fails unless it exits
/// 0 within `limit` and prints `ok_line`. `packages` must be installed
/// (`npm ci`, which `./scripts/test.sh` runs); a missing one fails, never
/// skips. Returns the script's stdout.
pub async fn run_sdk_script(
    script: &str,
    packages: &[&str],
    env: &[(&str, String)],
    limit: Duration,
    ok_line: &str,
) -> Result<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk").join("js");
    for package in packages {
        if !dir.join("node_modules").join(package).is_dir() {
            bail!(
                "node_modules/{package} missing in {}: run npm ci in tests/sdk/js (./scripts/test.sh does it)",
                dir.display()
            );
        }
    }
    let mut command = tokio::process::Command::new("node");
    command.arg(script).current_dir(&dir).envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn node (is Node.js installed?)")?;
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .with_context(|| format!("node {script} did not finish in {limit:?}"))??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("node {script} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}", out.status);
    }
    print!("{stdout}");
    if !stdout.contains(ok_line) {
        bail!("node {script}: no {ok_line:?} line:\n{stdout}\n{stderr}");
    }
    Ok(stdout)
}
