//! The HTTP transports with raw HTTP clients: bidirectional emulation
//! (http_stream, sse + /emulation), the one-way transports (uni_http_stream,
//! uni_sse with Last-Event-ID resume, uni_websocket) and long-polling,
//! including hostile input.

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::*;

fn channel_token(user: &str, channels: &[&str]) -> String {
    token(SECRET, json!({ "sub": user, "exp": now_secs() + 3600, "channels": channels }))
}

/// The next NDJSON message that is neither a ping nor a join/leave push.
async fn next_message(stream: &mut HttpStream) -> Result<Value> {
    loop {
        let v = stream.next_json().await?.context("stream ended")?;
        let push = v.get("push").unwrap_or(&v);
        if v == json!({}) || push.get("join").is_some() || push.get("leave").is_some() {
            continue;
        }
        return Ok(v);
    }
}

async fn next_sse(stream: &mut HttpStream) -> Result<SseEvent> {
    loop {
        let e = stream.next_non_ping_event().await?.context("stream ended")?;
        let push = e.data.get("push").unwrap_or(&e.data);
        if push.get("join").is_some() || push.get("leave").is_some() {
            continue;
        }
        return Ok(e);
    }
}

#[tokio::test]
async fn http_stream_connects_takes_commands_over_emulation_and_ends_with_a_disconnect_push() -> Result<()> {
    let gw = TestGateway::start().await?;
    let connect = json!({"id": 1, "connect": {"token": user_token("alice")}}).to_string();
    let mut stream =
        HttpStream::open(gw.addr, "POST", "/connection/http_stream", &[("content-type", "application/json")], &connect)
            .await?;
    assert_eq!(stream.status, 200);
    let reply = next_message(&mut stream).await?;
    assert_eq!(reply["id"], json!(1), "{reply}");
    let session = reply["connect"]["session"].as_str().context("session")?.to_owned();
    let node = reply["connect"]["node"].as_str().context("node")?.to_owned();
    assert!(!session.is_empty() && !node.is_empty());
    assert_eq!(reply["connect"]["pong"], json!(true));

    let status = emulate(gw.addr, &session, &node, &[json!({"id": 2, "subscribe": {"channel": "chat:e"}})]).await?;
    assert_eq!(status, 204);
    let reply = next_message(&mut stream).await?;
    assert_eq!(reply["id"], json!(2), "{reply}");
    assert!(reply.get("subscribe").is_some(), "{reply}");

    for n in 1..=3 {
        gw.api().result("publish", json!({"channel": "chat:e", "data": {"n": n}})).await?;
    }
    for n in 1..=3 {
        let push = next_message(&mut stream).await?;
        assert_eq!(push["push"]["channel"], json!("chat:e"));
        assert_eq!(push["push"]["pub"]["data"], json!({"n": n}), "in order");
    }
    // Client publish over /emulation, echoed to the subscriber.
    let status =
        emulate(gw.addr, &session, &node, &[json!({"id": 3, "publish": {"channel": "chat:e", "data": {"n": 4}}})])
            .await?;
    assert_eq!(status, 204);
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(next_message(&mut stream).await?);
    }
    assert!(seen.iter().any(|v| v["id"] == json!(3) && v.get("publish").is_some()), "{seen:?}");
    assert!(seen.iter().any(|v| v["push"]["pub"]["data"] == json!({"n": 4})), "{seen:?}");

    gw.api().result("disconnect", json!({"user": "alice", "disconnect": {"code": 3011, "reason": "x"}})).await?;
    let last = next_message(&mut stream).await?;
    assert_eq!(last["push"]["disconnect"]["code"], json!(3011), "{last}");
    assert_eq!(last["push"]["disconnect"]["reconnect"], json!(true));
    assert_eq!(stream.next_json().await?, None, "the stream ends after the disconnect");
    assert_eq!(emulate(gw.addr, &session, &node, &[json!({})]).await?, 404, "the session is gone");
    Ok(())
}

#[tokio::test]
async fn sse_get_streams_data_events_and_takes_commands_over_emulation() -> Result<()> {
    let gw = TestGateway::start().await?;
    let connect = json!({"id": 1, "connect": {"token": user_token("sse")}}).to_string();
    let path = format!("/connection/sse?cf_connect={}", url_encode(&connect));
    let mut stream = HttpStream::open(gw.addr, "GET", &path, &[], "").await?;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    let event = next_sse(&mut stream).await?;
    let session = event.data["connect"]["session"].as_str().context("session")?.to_owned();
    let node = event.data["connect"]["node"].as_str().context("node")?.to_owned();
    let status = emulate(gw.addr, &session, &node, &[json!({"id": 2, "subscribe": {"channel": "chat:s"}})]).await?;
    assert_eq!(status, 204);
    assert_eq!(next_sse(&mut stream).await?.data["id"], json!(2));
    gw.api().result("publish", json!({"channel": "chat:s", "data": {"x": 1}})).await?;
    let event = next_sse(&mut stream).await?;
    assert_eq!(event.data["push"]["pub"]["data"], json!({"x": 1}));
    Ok(())
}

#[tokio::test]
async fn emulation_refuses_unknown_foreign_malformed_and_oversized_posts() -> Result<()> {
    let gw = TestGateway::start().await?;
    let connect = json!({"id": 1, "connect": {"token": user_token("bob")}}).to_string();
    let mut stream = HttpStream::open(gw.addr, "POST", "/connection/http_stream", &[], &connect).await?;
    let reply = next_message(&mut stream).await?;
    let session = reply["connect"]["session"].as_str().context("session")?.to_owned();
    let node = reply["connect"]["node"].as_str().context("node")?.to_owned();

    assert_eq!(emulate(gw.addr, "no-such-session", &node, &[json!({})]).await?, 404);
    assert_eq!(emulate(gw.addr, &session, "another-node", &[json!({})]).await?, 404, "a foreign node's session");
    for body in ["", "not json", r#"{"session":1}"#, r#"{"node":"x","data":"{}"}"#, r#"{"session":"","data":""}"#] {
        let resp = http_request(gw.addr, "POST", "/emulation", &[], body).await?;
        assert_eq!(resp.status, 400, "{body:?}");
    }
    let big = "x".repeat(200_000);
    let body = json!({"session": session, "node": node, "data": big}).to_string();
    let resp = http_request(gw.addr, "POST", "/emulation", &[], &body).await?;
    assert_eq!(resp.status, 413);
    let resp = http_request(gw.addr, "GET", "/emulation", &[], "").await?;
    assert_eq!(resp.status, 405);

    // The session survived all of that.
    assert_eq!(emulate(gw.addr, &session, &node, &[json!({"id": 2, "ping": {}})]).await?, 204);
    assert_eq!(next_message(&mut stream).await?["id"], json!(2));
    Ok(())
}

#[tokio::test]
async fn a_10_mb_cf_connect_is_refused_before_any_session() -> Result<()> {
    let gw = TestGateway::start().await?;
    let huge = "a".repeat(10 * 1024 * 1024);
    for endpoint in ["/connection/sse", "/connection/uni_sse"] {
        let request = format!("GET {endpoint}?cf_connect={huge} HTTP/1.1\r\nhost: x\r\n\r\n");
        let started = std::time::Instant::now();
        let stream = tokio::net::TcpStream::connect(gw.addr).await?;
        let (mut read, mut write) = stream.into_split();
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            // The server stops reading at its header limit: a failed write is expected.
            let _ = write.write_all(request.as_bytes()).await;
        });
        let mut head = Vec::new();
        let outcome = tokio::time::timeout(WAIT, async {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 1024];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        writer.abort();
        assert!(outcome.is_ok(), "{endpoint}: the server must refuse quickly, not read 10 MB");
        let head = String::from_utf8_lossy(&head);
        // Either the refusal arrived, or the reset of the unread request beat it.
        if let Some(status) = head.split(' ').nth(1) {
            assert!(["400", "413", "414", "431"].contains(&status), "{endpoint}: {head}");
        }
        assert!(started.elapsed() < WAIT);
    }
    let health = http_request(gw.addr, "GET", "/health", &[], "").await?;
    assert_eq!(health.status, 200);
    // A cf_connect over client.max_frame_bytes but within the header limit.
    let mut config = test_config();
    config.client.max_frame_bytes = 1024;
    config.server.max_header_bytes = 64 * 1024;
    let gw2 = TestGateway::start_with(config).await?;
    let path = format!("/connection/uni_sse?cf_connect={}", "a".repeat(4096));
    let resp = HttpStream::open(gw2.addr, "GET", &path, &[], "").await?;
    assert_eq!(resp.status, 413);
    assert_eq!(gw.api().result("info", json!({})).await?["nodes"][0]["num_clients"], json!(0));
    Ok(())
}

#[tokio::test]
async fn uni_http_stream_sends_bare_pushes_and_a_final_disconnect() -> Result<()> {
    let gw = TestGateway::start().await?;
    let body = json!({"token": channel_token("uni", &["chat:u"])}).to_string();
    let mut stream = HttpStream::open(gw.addr, "POST", "/connection/uni_http_stream", &[], &body).await?;
    assert_eq!(stream.status, 200);
    let connect = next_message(&mut stream).await?;
    assert!(connect.get("id").is_none(), "{connect}");
    assert_eq!(connect["connect"]["pong"], Value::Null, "one-way clients are not asked to pong: {connect}");
    assert!(connect["connect"]["session"].is_string(), "{connect}");
    assert!(connect["connect"]["subs"]["chat:u"].is_object(), "{connect}");
    gw.api().result("publish", json!({"channel": "chat:u", "data": {"k": 1}})).await?;
    let publication = next_message(&mut stream).await?;
    assert_eq!(publication["channel"], json!("chat:u"), "{publication}");
    assert_eq!(publication["pub"]["data"], json!({"k": 1}));
    gw.api().result("disconnect", json!({"user": "uni"})).await?;
    let last = next_message(&mut stream).await?;
    assert_eq!(last["disconnect"]["code"], json!(3503), "{last}");
    assert_eq!(stream.next_json().await?, None);

    // A connect the session refuses ends the stream with a disconnect.
    let mut stream =
        HttpStream::open(gw.addr, "POST", "/connection/uni_http_stream", &[], r#"{"token":"bad"}"#).await?;
    let last = next_message(&mut stream).await?;
    assert_eq!(last["disconnect"]["code"], json!(3500), "{last}");
    let resp = http_request(gw.addr, "POST", "/connection/uni_http_stream", &[], "[1,2]").await?;
    assert_eq!(resp.status, 400);
    Ok(())
}

async fn uni_sse(gw: &TestGateway, token: &str, last_event_id: Option<&str>) -> Result<HttpStream> {
    let connect = json!({ "token": token }).to_string();
    let path = format!("/connection/uni_sse?cf_connect={}", url_encode(&connect));
    let headers: Vec<(&str, &str)> = last_event_id.map(|id| ("last-event-id", id)).into_iter().collect();
    let stream = HttpStream::open(gw.addr, "GET", &path, &headers, "").await?;
    if stream.status != 200 {
        bail!("uni_sse answered {}", stream.status);
    }
    Ok(stream)
}

#[tokio::test]
async fn uni_sse_resumes_from_last_event_id_without_gap_or_duplicate() -> Result<()> {
    let gw = TestGateway::start().await?;
    let token = channel_token("eve", &["chat:r"]);
    let mut stream = uni_sse(&gw, &token, None).await?;
    let connect = next_sse(&mut stream).await?;
    assert!(connect.data["connect"]["subs"]["chat:r"]["recoverable"] == json!(true), "{:?}", connect);
    assert!(connect.id.is_some(), "the connect event carries the positions");
    for n in 1..=2 {
        gw.api().result("publish", json!({"channel": "chat:r", "data": {"n": n}})).await?;
    }
    let mut last_id = None;
    for n in 1..=2 {
        let event = next_sse(&mut stream).await?;
        assert_eq!(event.data["pub"]["data"], json!({"n": n}));
        last_id = event.id;
    }
    let last_id = last_id.context("publication events carry an id")?;
    drop(stream);

    for n in 3..=4 {
        gw.api().result("publish", json!({"channel": "chat:r", "data": {"n": n}})).await?;
    }
    let mut stream = uni_sse(&gw, &token, Some(&last_id)).await?;
    let connect = next_sse(&mut stream).await?;
    let sub = &connect.data["connect"]["subs"]["chat:r"];
    assert_eq!(sub["recovered"], json!(true), "{sub}");
    let data: Vec<Value> = publications(sub).iter().map(|p| p["data"]["n"].clone()).collect();
    assert_eq!(data, [json!(3), json!(4)], "exactly the missed ones");
    gw.api().result("publish", json!({"channel": "chat:r", "data": {"n": 5}})).await?;
    let event = next_sse(&mut stream).await?;
    assert_eq!(event.data["pub"]["data"], json!({"n": 5}));
    assert_eq!(event.data["pub"]["offset"], json!(5));

    // The query-parameter form works the same.
    let connect = json!({ "token": token }).to_string();
    let path =
        format!("/connection/uni_sse?cf_connect={}&last_event_id={}", url_encode(&connect), url_encode(&last_id));
    let mut stream = HttpStream::open(gw.addr, "GET", &path, &[], "").await?;
    let sub = next_sse(&mut stream).await?.data["connect"]["subs"]["chat:r"].clone();
    assert_eq!(offsets(&publications(&sub)), [3, 4, 5], "{sub}");
    Ok(())
}

#[tokio::test]
async fn uni_sse_with_a_garbage_last_event_id_recovers_nothing() -> Result<()> {
    let gw = TestGateway::start().await?;
    let token = channel_token("mallory", &["chat:g"]);
    for n in 1..=3 {
        gw.api().result("publish", json!({"channel": "chat:g", "data": {"n": n}})).await?;
    }
    // Garbage, a valid shape with the wrong epoch, and an offset past the top.
    let wrong_epoch = base64url(json!({"chat:g": [1, "not-the-epoch"]}).to_string().as_bytes());
    for id in ["garbage!!", "eyJjaGF0OmciOlsxLDJdfQ", wrong_epoch.as_str()] {
        let mut stream = uni_sse(&gw, &token, Some(id)).await?;
        let connect = next_sse(&mut stream).await?;
        let sub = &connect.data["connect"]["subs"]["chat:g"];
        assert_eq!(sub["was_recovering"], json!(true), "{id}: {sub}");
        assert_eq!(sub.get("recovered"), None, "{id}: recovered must be false: {sub}");
        assert!(publications(sub).is_empty(), "{id}: never a partial replay: {sub}");
    }
    Ok(())
}

async fn next_ws<S>(ws: &mut S) -> Result<Option<Result<Message, tokio_tungstenite::tungstenite::Error>>>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    Ok(tokio::time::timeout(WAIT, ws.next()).await?)
}

#[tokio::test]
async fn uni_websocket_takes_the_first_message_or_cf_connect_and_sends_bare_pushes() -> Result<()> {
    let gw = TestGateway::start().await?;
    let token = channel_token("wsu", &["chat:w"]);
    let url = format!("ws://{}/connection/uni_websocket", gw.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    ws.send(Message::text(json!({ "token": token }).to_string())).await?;
    let Some(Ok(Message::Text(text))) = next_ws(&mut ws).await? else { bail!("no connect push") };
    let connect: Value = serde_json::from_str(&text)?;
    assert!(connect["connect"]["subs"]["chat:w"].is_object(), "{connect}");
    gw.api().result("publish", json!({"channel": "chat:w", "data": {"w": 1}})).await?;
    loop {
        let Some(Ok(Message::Text(text))) = next_ws(&mut ws).await? else { bail!("no pub push") };
        let v: Value = serde_json::from_str(&text)?;
        if v.get("join").is_some() {
            continue;
        }
        assert_eq!(v["pub"]["data"], json!({"w": 1}), "{v}");
        break;
    }
    gw.api().result("disconnect", json!({"user": "wsu", "disconnect": {"code": 4001, "reason": "bye"}})).await?;
    let Some(Ok(Message::Text(text))) = next_ws(&mut ws).await? else { bail!("no disconnect push") };
    assert_eq!(serde_json::from_str::<Value>(&text)?["disconnect"]["code"], json!(4001));
    let Some(Ok(Message::Close(Some(frame)))) = next_ws(&mut ws).await? else { bail!("no close frame") };
    assert_eq!(u16::from(frame.code), 4001);

    let url = format!(
        "ws://{}/connection/uni_websocket?cf_connect={}",
        gw.addr,
        url_encode(&json!({"token": token}).to_string())
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    let Some(Ok(Message::Text(text))) = next_ws(&mut ws).await? else { bail!("no connect push") };
    assert!(serde_json::from_str::<Value>(&text)?.get("connect").is_some(), "{text}");
    Ok(())
}

async fn poll(gw: &TestGateway, body: &Value) -> Result<HttpResponse> {
    http_request(gw.addr, "POST", "/connection/long_poll", &[], &body.to_string()).await
}

#[tokio::test]
async fn long_poll_delivers_batches_once_and_resends_an_unacknowledged_one() -> Result<()> {
    let mut config = test_config();
    config.long_poll.hold_secs = 2;
    config.long_poll.session_ttl_secs = 3;
    let gw = TestGateway::start_with(config).await?;
    let open = poll(&gw, &json!({"id": 1, "connect": {"token": channel_token("lp", &["chat:lp"])}})).await?;
    assert_eq!(open.status, 200, "{:?}", open.body);
    let session = open.body["session"].as_str().context("session")?.to_owned();
    let node = open.body["node"].as_str().context("node")?.to_owned();
    assert_eq!(open.body["seq"], json!(1));
    assert_eq!(open.body["messages"][0]["connect"]["session"], json!(session));

    // Nothing queued: held, then an empty batch with the same seq.
    let started = std::time::Instant::now();
    let empty = poll(&gw, &json!({"session": session, "node": node, "seq": 1})).await?;
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500), "the poll is held");
    assert_eq!(empty.body["seq"], json!(1));
    assert_eq!(empty.body["messages"], json!([]));

    let waiting = tokio::spawn({
        let (addr, body) = (gw.addr, json!({"session": session, "node": node, "seq": 1}).to_string());
        async move { http_request(addr, "POST", "/connection/long_poll", &[], &body).await }
    });
    // Whether the poll is already held or not, the publication reaches it.
    gw.api().result("publish", json!({"channel": "chat:lp", "data": {"p": 1}})).await?;
    let batch = waiting.await??;
    assert_eq!(batch.body["seq"], json!(2), "{:?}", batch.body);
    let data: Vec<Value> = batch.body["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .filter(|m| m["push"].get("pub").is_some())
        .map(|m| m["push"]["pub"]["data"].clone())
        .collect();
    assert_eq!(data, [json!({"p": 1})]);

    // The answer was "lost": acknowledging seq 1 again gets the same batch.
    let again = poll(&gw, &json!({"session": session, "node": node, "seq": 1})).await?;
    assert_eq!(again.body, batch.body);
    // Commands go over /emulation; their replies come in the next batch.
    assert_eq!(emulate(gw.addr, &session, &node, &[json!({"id": 2, "ping": {}})]).await?, 204);
    let next = poll(&gw, &json!({"session": session, "node": node, "seq": 2})).await?;
    assert_eq!(next.body["seq"], json!(3));
    assert_eq!(next.body["messages"], json!([{"id": 2, "ping": {}}]));
    let stale = poll(&gw, &json!({"session": session, "node": node, "seq": 7})).await?;
    assert_eq!(stale.status, 409);

    // No poll for session_ttl_secs: the session is gone.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let gone = poll(&gw, &json!({"session": session, "node": node, "seq": 3})).await?;
    assert_eq!(gone.status, 404);
    assert_eq!(emulate(gw.addr, &session, &node, &[json!({})]).await?, 404);
    Ok(())
}

#[tokio::test]
async fn a_held_long_poll_answers_the_ping_so_an_idle_session_is_not_closed_for_a_missing_pong() -> Result<()> {
    // A ping lands while the poll is held; its pong timeout ends well before
    // the hold does. The held poll is the client's answer (it cannot pong
    // before the poll returns): the session must survive, not end in 3012.
    let mut config = test_config();
    config.client.ping_interval_secs = 2;
    config.client.pong_timeout_secs = 1;
    config.long_poll.hold_secs = 4;
    config.long_poll.session_ttl_secs = 10;
    let gw = TestGateway::start_with(config).await?;
    let open = poll(&gw, &json!({"id": 1, "connect": {"token": channel_token("idle", &["chat:idle"])}})).await?;
    assert_eq!(open.status, 200, "{:?}", open.body);
    let session = open.body["session"].as_str().context("session")?.to_owned();
    let node = open.body["node"].as_str().context("node")?.to_owned();
    let mut seq = open.body["seq"].as_u64().context("seq")?;
    for _ in 0..2 {
        let held = poll(&gw, &json!({"session": session, "node": node, "seq": seq})).await?;
        assert_eq!(held.status, 200, "{:?}", held.body);
        assert_eq!(held.body["messages"], json!([]), "held to the end, no disconnect: {:?}", held.body);
        seq = held.body["seq"].as_u64().context("seq")?;
    }
    gw.api().result("publish", json!({"channel": "chat:idle", "data": {"still": "here"}})).await?;
    let batch = poll(&gw, &json!({"session": session, "node": node, "seq": seq})).await?;
    assert_eq!(batch.body["messages"][0]["push"]["pub"]["data"], json!({"still": "here"}), "{:?}", batch.body);
    Ok(())
}

/// Waits until the node counts `n` connected clients.
async fn wait_clients(gw: &TestGateway, n: u64) -> Result<()> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let info = gw.api().result("info", json!({})).await?;
        if info["nodes"][0]["num_clients"] == json!(n) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("num_clients stayed {} (want {n})", info["nodes"][0]["num_clients"]);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_that_drops_its_stream_ends_its_session() -> Result<()> {
    let gw = TestGateway::start().await?;
    let connect = json!({"id": 1, "connect": {"token": user_token("quitter")}}).to_string();
    let mut emulated = HttpStream::open(gw.addr, "POST", "/connection/http_stream", &[], &connect).await?;
    let reply = next_message(&mut emulated).await?;
    let (session, node) = (reply["connect"]["session"].clone(), reply["connect"]["node"].clone());
    let body = json!({"token": user_token("quitter")}).to_string();
    let mut uni = HttpStream::open(gw.addr, "POST", "/connection/uni_http_stream", &[], &body).await?;
    next_message(&mut uni).await?;
    wait_clients(&gw, 2).await?;
    drop(emulated);
    drop(uni);
    wait_clients(&gw, 0).await?;
    let status =
        emulate(gw.addr, session.as_str().unwrap_or_default(), node.as_str().unwrap_or_default(), &[json!({})]).await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn http_transports_apply_allowed_origins_and_answer_cors_preflights() -> Result<()> {
    let mut config = test_config();
    config.server.allowed_origins = vec!["https://app.example.com".into()];
    let gw = TestGateway::start_with(config).await?;
    let connect = json!({"id": 1, "connect": {"token": user_token("cors")}}).to_string();
    let evil = [("origin", "https://evil.example.com")];
    for path in ["/connection/http_stream", "/emulation", "/connection/long_poll", "/connection/uni_http_stream"] {
        let resp = http_request(gw.addr, "POST", path, &evil, &connect).await?;
        assert_eq!(resp.status, 403, "{path}");
    }
    let good = [("origin", "https://app.example.com")];
    let mut stream = HttpStream::open(gw.addr, "POST", "/connection/http_stream", &good, &connect).await?;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(stream.header("access-control-allow-credentials"), Some("true"));
    assert!(next_message(&mut stream).await?["connect"].is_object());
    let preflight = HttpStream::open(
        gw.addr,
        "OPTIONS",
        "/emulation",
        &[("origin", "https://app.example.com"), ("access-control-request-method", "POST")],
        "",
    )
    .await?;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert!(preflight.header("access-control-allow-headers").is_some_and(|h| h.contains("content-type")));
    Ok(())
}

#[tokio::test]
async fn shutdown_ends_open_streams_with_a_3001_disconnect() -> Result<()> {
    let gw = TestGateway::start().await?;
    let connect = json!({"id": 1, "connect": {"token": user_token("late")}}).to_string();
    let mut emulated = HttpStream::open(gw.addr, "POST", "/connection/http_stream", &[], &connect).await?;
    next_message(&mut emulated).await?;
    let body = json!({"token": user_token("late")}).to_string();
    let mut uni = HttpStream::open(gw.addr, "POST", "/connection/uni_http_stream", &[], &body).await?;
    next_message(&mut uni).await?;
    let shutdown = tokio::spawn(gw.shutdown());
    let last = next_message(&mut emulated).await?;
    assert_eq!(last["push"]["disconnect"]["code"], json!(3001), "{last}");
    assert_eq!(emulated.next_json().await?, None);
    let last = next_message(&mut uni).await?;
    assert_eq!(last["disconnect"]["code"], json!(3001), "{last}");
    assert_eq!(uni.next_json().await?, None);
    shutdown.await??;
    Ok(())
}
