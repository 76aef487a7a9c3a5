//! The backend proxy plugin (`plugins/backend-proxy`) against a real local
//! backend speaking Centrifugo's proxy JSON, and the HTTP pass-through.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame as BodyFrame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use switchboard::config::{Config, NamespaceConfig, PluginConfig, RouteConfig};

use crate::*;

const ORIGIN: &str = "https://app.example.com";
const GOOD_COOKIE: &str = "theme=dark; session=good-session";

/// One request the backend received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

/// A backend implementing Centrifugo's proxy shapes, recording requests.
#[derive(Default)]
struct Backend {
    seen: parking_lot::Mutex<Vec<Seen>>,
}

impl Backend {
    fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen.lock().iter().filter(|s| s.path == path).cloned().collect()
    }

    fn attempts(&self, channel: &str) -> usize {
        self.seen("/subscribe").iter().filter(|s| s.body["channel"] == channel).count()
    }

    /// The answer to one proxy request.
    fn answer(&self, path: &str, headers: &HashMap<String, String>, body: &Value) -> (u16, Value) {
        let channel = body["channel"].as_str().unwrap_or_default();
        match path {
            "/connect" => {
                let cookie = headers.get("cookie").map(String::as_str).unwrap_or_default();
                if let Some(user) = cookie.split("; ").find_map(|c| c.strip_prefix("session=short-")) {
                    // A session the backend wants refreshed in a second.
                    (200, json!({"result": {"user": user, "expire_at": now_secs() + 1, "meta": {"short": true}}}))
                } else if cookie.split("; ").any(|c| c == "session=good-session") {
                    let result = json!({"user": "42", "info": {"name": "Ann"}, "data": {"welcome": "Ann"},
                                        "meta": {"tier": "gold"}});
                    (200, json!({"result": result}))
                } else {
                    (200, json!({"error": {"code": 1401, "message": "no session"}}))
                }
            }
            "/subscribe" if channel == "chat:secret" => {
                (200, json!({"error": {"code": 1403, "message": "not a member"}}))
            }
            // The first subscribe to chat:flaky fails (requests are
            // recorded after they are answered).
            "/subscribe" if channel == "chat:flaky" && self.attempts("chat:flaky") == 0 => (503, json!({})),
            "/subscribe" if channel == "chat:timed" => (200, json!({"result": {"expire_at": now_secs() + 1}})),
            "/subscribe" => (200, json!({"result": {"info": {"role": "member"}, "data": {"motd": "hi"}}})),
            "/refresh" if body["user"] == "expire-me" => (200, json!({"result": {"expired": true}})),
            "/refresh" => (200, json!({"result": {"expire_at": now_secs() + 3600}})),
            "/sub_refresh" => (200, json!({"result": {"expired": true}})),
            "/publish" => {
                let text = body["data"]["text"].as_str().unwrap_or_default();
                let result = json!({"data": {"text": text.to_uppercase(), "by": body["user"]},
                                    "skip_history": text == "ephemeral"});
                (200, json!({"result": result}))
            }
            "/rpc" => {
                let sum = body["data"]["a"].as_i64().unwrap_or(0) + body["data"]["b"].as_i64().unwrap_or(0);
                (200, json!({"result": {"data": {"method": body["method"], "sum": sum}}}))
            }
            _ => (404, json!({})),
        }
    }
}

async fn serve_backend(backend: Arc<Backend>) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let backend = backend.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let backend = backend.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                            .collect::<HashMap<_, _>>();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        if path == "/slow" {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                        }
                        let (status, answer) = backend.answer(&path, &headers, &body);
                        backend.seen.lock().push(Seen { path, headers, body });
                        let mut resp = Response::new(Full::new(Bytes::from(answer.to_string())));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(addr)
}

fn proxy_plugin(name: &str, backend: SocketAddr, config: Value) -> PluginConfig {
    let toml::Value::Table(config) = toml::Value::try_from(config).expect("config is a table") else {
        panic!("config must be an object")
    };
    PluginConfig {
        name: name.into(),
        path: example_plugin("backend-proxy").expect("build backend-proxy").display().to_string(),
        // The guest's own CPU time only (waiting on the backend is excluded);
        // generous for debug builds on a loaded box.
        timeout_ms: 1000,
        pool_size: 8,
        grants: ["http", "metrics", "clock", "log"].map(str::to_owned).to_vec(),
        allowed_hosts: vec![backend.to_string()],
        config,
        ..PluginConfig::default()
    }
}

async fn proxied_gateway(backend: SocketAddr) -> anyhow::Result<TestGateway> {
    let url = |path: &str| format!("http://{backend}{path}");
    let main = proxy_plugin(
        "backend",
        backend,
        json!({"connect": {"url": url("/connect")}, "subscribe": {"url": url("/subscribe")},
               "publish": {"url": url("/publish")}, "rpc": {"url": url("/rpc")}, "refresh": {"url": url("/refresh")},
               "sub_refresh": {"url": url("/sub_refresh")}, "retries": 1}),
    );
    let slow = proxy_plugin("slow-backend", backend, json!({"subscribe": {"url": url("/slow"), "timeout_ms": 300}}));
    let mut config: Config = test_config();
    config.plugins = vec![main, slow];
    config.plugin_runtime.cache_dir = std::env::temp_dir().join("switchboard-test-plugin-cache").display().to_string();
    config.server.allowed_origins = vec![ORIGIN.into()];
    config.client.forward_cookies = vec!["session".into()];
    config.client.forward_headers = vec!["x-request-id".into()];
    config.pipelines.connect = vec!["backend".into()];
    config.pipelines.subscribe = vec!["backend".into()];
    config.pipelines.publish = vec!["backend".into()];
    config.pipelines.rpc = vec!["backend".into()];
    config.pipelines.refresh = vec!["backend".into()];
    config.pipelines.sub_refresh = vec!["backend".into()];
    // Per-namespace selection: `slow:` subscribes go to the other backend.
    config.channels.namespaces.push(NamespaceConfig {
        name: "slow".into(),
        subscribe_pipeline: Some(vec!["slow-backend".into()]),
        ..NamespaceConfig::default()
    });
    TestGateway::start_with(config).await
}

/// The next push carrying `kind` (`pub`, `unsubscribe`, ...), skipping
/// others (a `chat:` subscriber also sees its own join).
async fn next_push_of(ws: &mut WsClient, kind: &str) -> anyhow::Result<Value> {
    loop {
        let push = ws.next_push().await?;
        if push.get(kind).is_some() {
            return Ok(push);
        }
    }
}

async fn browser(gw: &TestGateway, headers: &[(&str, &str)]) -> anyhow::Result<(WsClient, Value)> {
    let mut ws = WsClient::open_with_headers(&gw.ws_url(), headers).await?;
    let reply = ws.call(json!({"connect": {"name": "test", "version": "1"}})).await?;
    Ok((ws, reply))
}

#[tokio::test]
async fn a_backend_session_cookie_authenticates_the_websocket_behind_the_origin_check() -> anyhow::Result<()> {
    let backend = Arc::new(Backend::default());
    let gw = proxied_gateway(serve_backend(backend.clone()).await?).await?;

    let headers = [("origin", ORIGIN), ("cookie", GOOD_COOKIE), ("x-request-id", "req-7")];
    let (_ws, reply) = browser(&gw, &headers).await?;
    assert_eq!(reply["connect"]["data"], json!({"welcome": "Ann"}), "{reply}");
    let seen = backend.seen("/connect");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["cookie"], "session=good-session", "only the allow-listed cookie");
    assert_eq!(seen[0].headers["x-request-id"], "req-7");
    let client = reply["connect"]["client"].clone();
    assert_eq!(
        seen[0].body,
        json!({"client": client, "transport": "websocket", "protocol": "json", "encoding": "json",
               "name": "test", "version": "1"})
    );

    // No cookie: the backend refuses; its code reaches the client.
    let (_ws, reply) = browser(&gw, &[("origin", ORIGIN)]).await?;
    assert_eq!(reply["error"], json!({"code": 1401, "message": "no session"}));
    // A cookie without an Origin is not honoured.
    let (_ws, reply) = browser(&gw, &[("cookie", GOOD_COOKIE)]).await?;
    assert_eq!(reply["error"], json!({"code": 1401, "message": "no session"}));
    assert!(!backend.seen("/connect")[2].headers.contains_key("cookie"));
    // A foreign page cannot even open the socket.
    let foreign =
        WsClient::open_with_headers(&gw.ws_url(), &[("origin", "https://evil.example"), ("cookie", GOOD_COOKIE)])
            .await
            .err()
            .expect("a foreign origin is refused");
    assert!(foreign.to_string().contains("403"), "{foreign}");
    assert_eq!(backend.seen("/connect").len(), 3, "the foreign request never reached the backend");
    gw.shutdown().await
}

#[tokio::test]
async fn subscribe_publish_and_rpc_are_decided_by_the_backend() -> anyhow::Result<()> {
    let backend = Arc::new(Backend::default());
    let gw = proxied_gateway(serve_backend(backend.clone()).await?).await?;
    let (mut ws, reply) = browser(&gw, &[("origin", ORIGIN), ("cookie", GOOD_COOKIE)]).await?;
    let client = reply["connect"]["client"].clone();

    let reply = ws.call(json!({"subscribe": {"channel": "chat:room"}})).await?;
    assert_eq!(reply["subscribe"]["data"], json!({"motd": "hi"}), "{reply}");
    let seen = backend.seen("/subscribe");
    assert_eq!(
        seen[0].body,
        json!({"client": client, "transport": "websocket", "protocol": "json", "encoding": "json", "user": "42",
               "meta": {"tier": "gold"}, "channel": "chat:room"})
    );
    let presence = ws.call(json!({"presence": {"channel": "chat:room"}})).await?;
    let me = &presence["presence"]["presence"][client.as_str().unwrap()];
    assert_eq!((me["conn_info"].clone(), me["chan_info"].clone()), (json!({"name": "Ann"}), json!({"role": "member"})));

    let reply = ws.call(json!({"subscribe": {"channel": "chat:secret"}})).await?;
    assert_eq!(reply["error"], json!({"code": 1403, "message": "not a member"}));

    // The backend rewrites the publication; subscribers get its version.
    let reply = ws.call(json!({"publish": {"channel": "chat:room", "data": {"text": "hello"}}})).await?;
    assert_eq!(reply.get("error"), None, "{reply}");
    let push = next_push_of(&mut ws, "pub").await?;
    assert_eq!(push["pub"]["data"], json!({"text": "HELLO", "by": "42"}));
    // skip_history from the backend keeps a publication out of history.
    ws.call(json!({"publish": {"channel": "chat:room", "data": {"text": "ephemeral"}}})).await?;
    assert_eq!(next_push_of(&mut ws, "pub").await?["pub"]["data"], json!({"text": "EPHEMERAL", "by": "42"}));
    let history = ws.call(json!({"history": {"channel": "chat:room", "limit": 10}})).await?;
    let texts: Vec<Value> = publications(&history["history"]).iter().map(|p| p["data"]["text"].clone()).collect();
    assert_eq!(texts, vec![json!("HELLO")]);

    let reply = ws.call(json!({"rpc": {"method": "sum", "data": {"a": 2, "b": 40}}})).await?;
    assert_eq!(reply["rpc"]["data"], json!({"method": "sum", "sum": 42}));
    gw.shutdown().await
}

#[tokio::test]
async fn a_failing_backend_is_retried_once_and_a_slow_one_times_out_to_error_100() -> anyhow::Result<()> {
    let backend = Arc::new(Backend::default());
    let gw = proxied_gateway(serve_backend(backend.clone()).await?).await?;
    let (mut ws, _) = browser(&gw, &[("origin", ORIGIN), ("cookie", GOOD_COOKIE)]).await?;

    // The backend answers 503 to the first subscribe of chat:flaky.
    let reply = ws.call(json!({"subscribe": {"channel": "chat:flaky"}})).await?;
    assert_eq!(reply["subscribe"]["data"], json!({"motd": "hi"}), "{reply}");
    assert_eq!(backend.attempts("chat:flaky"), 2, "one failure, one retry");

    // `slow:` uses the other plugin: 300 ms per request, no retries.
    let started = Instant::now();
    let reply = ws.call(json!({"subscribe": {"channel": "slow:x"}})).await?;
    let took = started.elapsed();
    assert_eq!(reply["error"]["code"], json!(100), "{reply}");
    assert_eq!(reply["error"]["message"], json!("backend unavailable"));
    assert_eq!(reply["error"]["temporary"], json!(true));
    assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(2500), "took {took:?}");
    gw.shutdown().await
}

#[tokio::test]
async fn expiring_connections_and_subscriptions_are_refreshed_through_the_backend() -> anyhow::Result<()> {
    let backend = Arc::new(Backend::default());
    let gw = proxied_gateway(serve_backend(backend.clone()).await?).await?;

    // Extended: the connection outlives its first expiry and still works.
    let (mut kept, reply) = browser(&gw, &[("origin", ORIGIN), ("cookie", "session=short-keep-me")]).await?;
    assert_eq!(reply["connect"].get("expires"), None, "the backend refreshes, not the client: {reply}");
    // Expired: the backend says so at the first refresh.
    let (mut gone, _) = browser(&gw, &[("origin", ORIGIN), ("cookie", "session=short-expire-me")]).await?;
    let (code, reason) = gone.expect_close().await?;
    assert_eq!((code, reason.as_str()), (3005, "connection expired"));
    let deadline = Instant::now() + WAIT;
    while !backend.seen("/refresh").iter().any(|s| s.body["user"] == "keep-me") {
        anyhow::ensure!(Instant::now() < deadline, "no refresh for keep-me");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refresh = backend.seen("/refresh").into_iter().find(|s| s.body["user"] == "keep-me").unwrap();
    assert_eq!(refresh.body["meta"], json!({"short": true}));
    let reply = kept.call(json!({"rpc": {"method": "sum", "data": {"a": 1, "b": 1}}})).await?;
    assert_eq!(reply["rpc"]["data"]["sum"], json!(2), "still connected after the refresh: {reply}");

    // A subscription the backend gave a 1 s expiry, then refused to extend.
    let reply = kept.call(json!({"subscribe": {"channel": "chat:timed"}})).await?;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    let push = next_push_of(&mut kept, "unsubscribe").await?;
    assert_eq!(push["channel"], json!("chat:timed"));
    assert_eq!(push["unsubscribe"], json!({"code": 2501, "reason": "subscription expired"}));
    assert_eq!(backend.seen("/sub_refresh")[0].body["channel"], json!("chat:timed"));
    gw.shutdown().await
}

// ------------------------------------------------------------ pass-through

/// An upstream that answers `GET` with what it saw and echoes a `POST`
/// body back as it arrives, chunk by chunk.
async fn serve_upstream() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    let seen = json!({
                        "method": req.method().as_str(),
                        "uri": req.uri().to_string(),
                        "host": header("host"),
                        "x_forwarded_for": header("x-forwarded-for"),
                        "x_forwarded_proto": header("x-forwarded-proto"),
                        "x_forwarded_host": header("x-forwarded-host"),
                        "x_custom": header("x-custom"),
                    });
                    let mut resp = if req.method() == hyper::Method::POST {
                        Response::new(req.into_body().boxed())
                    } else {
                        Response::new(Full::new(Bytes::from(seen.to_string())).map_err(|never| match never {}).boxed())
                    };
                    resp.headers_mut().insert("x-upstream", "yes".parse().unwrap());
                    resp.headers_mut().insert("x-seen", seen.to_string().parse().unwrap());
                    Ok::<_, Infallible>(resp)
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(addr)
}

/// The next non-empty data frame of a streamed body; None at its end.
async fn next_data(body: &mut Incoming) -> anyhow::Result<Option<Bytes>> {
    loop {
        match tokio::time::timeout(WAIT, body.frame()).await? {
            Some(frame) => match frame?.into_data() {
                Ok(data) if !data.is_empty() => return Ok(Some(data)),
                _ => continue,
            },
            None => return Ok(None),
        }
    }
}

#[tokio::test]
async fn requests_that_are_not_switchboard_endpoints_reach_the_upstream_unchanged() -> anyhow::Result<()> {
    let upstream = serve_upstream().await?;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?
    };
    let mut config = test_config();
    config.routes = vec![
        RouteConfig { path_prefix: "/".into(), upstream: format!("http://{upstream}"), ..RouteConfig::default() },
        RouteConfig {
            path_prefix: "/down/".into(),
            upstream: format!("http://{closed}"),
            connect_timeout_ms: 200,
            ..RouteConfig::default()
        },
    ];
    let gw = TestGateway::start_with(config).await?;

    // GET: path, query and headers arrive; the response comes back as sent.
    let resp = http_request(gw.addr, "GET", "/app/page?x=1", &[("x-custom", "kept")], "").await?;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.body,
        json!({"method": "GET", "uri": "/app/page?x=1", "host": upstream.to_string(),
               "x_forwarded_for": "127.0.0.1", "x_forwarded_proto": "http",
               "x_forwarded_host": gw.addr.to_string(), "x_custom": "kept"})
    );

    // POST with a chunked body: each chunk is echoed back before the next
    // one is sent, so both directions stream.
    let stream = tokio::net::TcpStream::connect(gw.addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<BodyFrame<Bytes>, Infallible>>(1);
    let body =
        StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) }));
    let request = Request::post("/upload").header("host", gw.addr.to_string()).body(body)?;
    tx.send(Ok(BodyFrame::data(Bytes::from_static(b"first chunk;")))).await?;
    let response = tokio::time::timeout(WAIT, sender.send_request(request)).await??;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-upstream"], "yes");
    let seen: Value = serde_json::from_str(response.headers()["x-seen"].to_str()?)?;
    assert_eq!((seen["method"].clone(), seen["uri"].clone()), (json!("POST"), json!("/upload")));
    let mut body = response.into_body();
    let first = next_data(&mut body).await?;
    assert_eq!(first.as_deref(), Some(&b"first chunk;"[..]), "echoed before the request body ended");
    tx.send(Ok(BodyFrame::data(Bytes::from_static(b"second chunk")))).await?;
    assert_eq!(next_data(&mut body).await?.as_deref(), Some(&b"second chunk"[..]));
    drop(tx);
    assert_eq!(next_data(&mut body).await?, None);

    // An unreachable upstream is a 502.
    let resp = http_request(gw.addr, "GET", "/down/x", &[], "").await?;
    assert_eq!((resp.status, resp.body), (502, json!({"error": "upstream unavailable"})));

    // Realtime endpoints on the same port are still the gateway's.
    let (mut ws, connect) = gw.connect("alice").await?;
    assert!(connect["client"].is_string());
    let reply = ws.call(json!({"subscribe": {"channel": "chat:room"}})).await?;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    let health = http_request(gw.addr, "GET", "/health", &[], "").await?;
    assert_eq!((health.status, health.body), (200, json!({"status": "ok"})));
    gw.shutdown().await
}
