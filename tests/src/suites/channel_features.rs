//! The channel features backends rely on: user-limited channels, publisher
//! exclusion, server-side tags filters, fossil delta compression and
//! broadcast to a channel pattern. The unchanged `centrifuge` JS SDK runs
//! `tests/sdk/js/channel_features.mjs` (JSON and Protobuf builds); the
//! WebSocket tests pin the exact wire behaviour.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use serde_json::{Value, json};
use switchboard::config::{Config, NamespaceConfig};
use switchboard::protocol::proto;
use switchboard::protocol::protobuf::{encode_delimited, split_delimited};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::*;

/// `chat` (from [`test_config`]) plus one namespace per feature.
fn config() -> Config {
    let mut config = test_config();
    let fossil = vec!["fossil".to_owned()];
    config.channels.namespaces.extend([
        NamespaceConfig { name: "dm".into(), allow_user_limited_channels: true, ..NamespaceConfig::default() },
        NamespaceConfig {
            name: "room".into(),
            allow_publish_for_subscriber: true,
            exclude_publisher: true,
            ..NamespaceConfig::default()
        },
        NamespaceConfig {
            name: "ticks".into(),
            allow_tags_filter: true,
            allowed_delta_types: fossil.clone(),
            ..NamespaceConfig::default()
        },
        NamespaceConfig {
            name: "score".into(),
            history_size: 50,
            history_ttl_secs: 300,
            force_recovery: true,
            allowed_delta_types: fossil,
            ..NamespaceConfig::default()
        },
    ]);
    config
}

/// A live-score document of about 1.6 KB; each update moves the clock, one
/// player's counters, the possession and now and then the score.
fn scoreboard(n: u64) -> Value {
    let players: Vec<Value> = (0..22u64)
        .map(|i| {
            let active = i == n % 22;
            json!({
                "id": 1000 + i,
                "name": format!("Player Number {i}"),
                "team": if i < 11 { "home" } else { "away" },
                "touches": 10 + i + if active { n } else { 0 },
                "passes": 5 + i + if active { n / 2 } else { 0 },
            })
        })
        .collect();
    json!({
        "match": "Arsenal v Chelsea",
        "minute": n,
        "score": {"home": n / 7, "away": n / 11},
        "possession": 50 + n % 9,
        "players": players,
    })
}

/// The next publication on `channel`, skipping other pushes (joins, other
/// channels).
async fn next_pub_on(ws: &mut WsClient, channel: &str) -> Result<Value> {
    loop {
        let push = ws.next_push().await?;
        if push["channel"] == json!(channel) && push.get("pub").is_some() {
            return Ok(push["pub"].clone());
        }
    }
}

#[tokio::test]
async fn centrifuge_js_sdk_uses_user_limited_channels_exclusion_tags_filters_and_fossil_delta() -> Result<()> {
    run_sdk(false).await
}

#[tokio::test]
async fn centrifuge_js_protobuf_sdk_uses_the_same_channel_features() -> Result<()> {
    run_sdk(true).await
}

async fn run_sdk(protobuf: bool) -> Result<()> {
    let gw = TestGateway::start_with(config()).await?;
    let mut env = vec![
        ("SWITCHBOARD_WS_URL", gw.ws_url()),
        ("SWITCHBOARD_API_URL", gw.http_url("/api")),
        ("SWITCHBOARD_API_KEY", API_KEY.to_owned()),
        ("SWITCHBOARD_TOKEN_ALICE", user_token("alice")),
        ("SWITCHBOARD_TOKEN_BOB", user_token("bob")),
        ("SWITCHBOARD_TOKEN_MALLORY", user_token("mallory")),
    ];
    let mut ok = "[sdk-js-features] OK";
    if protobuf {
        env.push(("SWITCHBOARD_PROTOBUF", "1".to_owned()));
        ok = "[sdk-js-features-pb] OK";
    }
    run_sdk_script("channel_features.mjs", &["centrifuge", "ws"], &env, Duration::from_secs(40), ok).await?;
    gw.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn user_limited_channels_admit_only_the_listed_users() -> Result<()> {
    let gw = TestGateway::start_with(config()).await?;
    for (user, code) in [("42", None), ("43", None), ("44", Some(103)), ("4", Some(103))] {
        let (mut ws, _) = gw.connect(user).await?;
        let reply = ws.call(json!({"subscribe": {"channel": "dm:dialog#42,43"}})).await?;
        match code {
            None => assert!(reply.get("subscribe").is_some(), "{user}: {reply}"),
            Some(code) => assert_eq!(reply["error"]["code"], json!(code), "{user}: {reply}"),
        }
    }
    // Without the namespace option `#` grants nothing: the usual rules apply
    // (here `chat` lets any client in, listed or not).
    let (mut ws, _) = gw.connect("44").await?;
    let reply = ws.call(json!({"subscribe": {"channel": "chat:dialog#42,43"}})).await?;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    Ok(())
}

#[tokio::test]
async fn delta_is_negotiated_per_subscription_and_the_first_publication_goes_in_full() -> Result<()> {
    let gw = TestGateway::start_with(config()).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let reply = ws.call(json!({"subscribe": {"channel": "score:1", "delta": "fossil"}})).await?;
    assert_eq!(reply["subscribe"]["delta"], json!(true), "{reply}");
    let epoch = reply["subscribe"]["epoch"].clone();
    // Not negotiated where the namespace does not allow it, for an unknown
    // type, or together with a tags filter.
    for sub in [
        json!({"channel": "chat:1", "delta": "fossil"}),
        json!({"channel": "score:2", "delta": "zstd"}),
        json!({"channel": "ticks:1", "delta": "fossil", "tf": {"key": "a", "cmp": "ex"}}),
    ] {
        let reply = ws.call(json!({ "subscribe": sub })).await?;
        assert!(reply["subscribe"].is_object() && reply["subscribe"].get("delta").is_none(), "{reply}");
    }

    let docs: Vec<Value> = (1..=7).map(scoreboard).collect();
    for doc in &docs[..3] {
        gw.api().result("publish", json!({"channel": "score:1", "data": doc})).await?;
    }
    let mut base = Vec::new();
    for (i, doc) in docs[..3].iter().enumerate() {
        let publication = next_pub_on(&mut ws, "score:1").await?;
        let data = publication["data"].as_str().context("a delta subscription gets data as a JSON string")?;
        let full = if i == 0 {
            assert!(publication.get("delta").is_none(), "the first publication goes in full: {publication}");
            data.as_bytes().to_vec()
        } else {
            assert_eq!(publication["delta"], json!(true), "{publication}");
            assert!(data.len() * 5 < doc.to_string().len(), "delta of {} bytes", data.len());
            fossil_delta::apply(&base, data.as_bytes()).map_err(|e| anyhow!("bad delta: {e:?}"))?
        };
        assert_eq!(serde_json::from_slice::<Value>(&full)?, *doc);
        assert_eq!(publication["offset"], json!(i + 1));
        base = full;
    }

    // A new connection recovers 4 and 5: recovered publications are full (in
    // the string form), and so is the first live one after them.
    drop(ws);
    for doc in &docs[3..5] {
        gw.api().result("publish", json!({"channel": "score:1", "data": doc})).await?;
    }
    let (mut ws, _) = gw.connect("alice").await?;
    let sub = json!({"channel": "score:1", "delta": "fossil", "recover": true, "offset": 3, "epoch": epoch});
    let reply = ws.call(json!({ "subscribe": sub })).await?;
    let result = &reply["subscribe"];
    assert_eq!((result["recovered"].clone(), result["delta"].clone()), (json!(true), json!(true)), "{reply}");
    let recovered = publications(result);
    assert_eq!(offsets(&recovered), [4, 5]);
    for (publication, doc) in recovered.iter().zip(&docs[3..5]) {
        assert!(publication.get("delta").is_none(), "{publication}");
        let text = publication["data"].as_str().context("recovered data as a JSON string")?;
        assert_eq!(serde_json::from_str::<Value>(text)?, *doc);
    }
    for doc in &docs[5..7] {
        gw.api().result("publish", json!({"channel": "score:1", "data": doc})).await?;
    }
    let first = next_pub_on(&mut ws, "score:1").await?;
    assert!(first.get("delta").is_none(), "first live publication after recovery goes in full: {first}");
    let first_text = first["data"].as_str().context("string data")?;
    assert_eq!(serde_json::from_str::<Value>(first_text)?, docs[5]);
    let second = next_pub_on(&mut ws, "score:1").await?;
    assert_eq!(second["delta"], json!(true), "{second}");
    let rebuilt = fossil_delta::apply(first_text.as_bytes(), second["data"].as_str().context("delta")?.as_bytes())
        .map_err(|e| anyhow!("bad delta: {e:?}"))?;
    assert_eq!(serde_json::from_slice::<Value>(&rebuilt)?, docs[6]);
    Ok(())
}

#[tokio::test]
async fn exclude_publisher_skips_only_the_publishing_connection() -> Result<()> {
    let gw = TestGateway::start_with(config()).await?;
    let (mut alice, alice_connect) = gw.connect("alice").await?;
    let alice_id = alice_connect["client"].as_str().context("client id")?.to_owned();
    let (mut alice2, _) = gw.connect("alice").await?;
    let (mut bob, _) = gw.connect("bob").await?;
    for ws in [&mut alice, &mut alice2, &mut bob] {
        ws.call(json!({"subscribe": {"channel": "room:1"}})).await?;
        ws.call(json!({"subscribe": {"channel": "chat:1"}})).await?;
    }

    // `room` has exclude_publisher: a client publish skips its connection
    // only, not the same user's other connection.
    let reply = alice.call(json!({"publish": {"channel": "room:1", "data": {"text": "hi"}}})).await?;
    assert_eq!(reply["publish"], json!({}), "{reply}");
    for ws in [&mut alice2, &mut bob] {
        let publication = next_pub_on(ws, "room:1").await?;
        assert_eq!(publication["data"], json!({"text": "hi"}));
        assert_eq!(publication["info"]["client"], json!(alice_id));
    }
    gw.api().result("publish", json!({"channel": "room:1", "data": {"marker": 1}})).await?;
    // Per-channel order: had alice got her own publication, it would come first.
    assert_eq!(next_pub_on(&mut alice, "room:1").await?["data"], json!({"marker": 1}));

    // `chat` has no exclude_publisher: an API publish naming alice excludes
    // her only when it asks to; a client publish is echoed.
    let api = gw.api();
    api.result(
        "publish",
        json!({"channel": "chat:1", "data": {"n": 1}, "client": alice_id, "exclude_publisher": true}),
    )
    .await?;
    api.result("publish", json!({"channel": "chat:1", "data": {"n": 2}, "client": alice_id})).await?;
    alice.call(json!({"publish": {"channel": "chat:1", "data": {"n": 3}}})).await?;
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(next_pub_on(&mut alice, "chat:1").await?["data"]["n"].clone());
    }
    assert_eq!(got, [json!(2), json!(3)]);
    for _ in 1..=3 {
        next_pub_on(&mut bob, "chat:1").await?;
    }

    for (params, message) in [
        (json!({"channel": "chat:1", "data": {}, "client": "a:b"}), "client must be a client id"),
        (json!({"channel": "chat:1", "data": {}, "exclude_publisher": true}), "exclude_publisher needs client"),
    ] {
        let body = api.call("publish", params).await?;
        assert_eq!(body["error"]["code"], json!(107), "{body}");
        assert!(body["error"]["message"].as_str().unwrap_or("").contains(message), "{body}");
    }
    Ok(())
}

#[tokio::test]
async fn tags_filters_are_validated_at_subscribe_and_applied_per_subscriber() -> Result<()> {
    let gw = TestGateway::start_with(config()).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let reply = ws.call(json!({"subscribe": {"channel": "chat:f", "tf": {"key": "k", "cmp": "ex"}}})).await?;
    assert_eq!(reply["error"]["code"], json!(103), "a namespace without allow_tags_filter: {reply}");
    let mut deep = json!({"key": "k", "cmp": "ex"});
    for _ in 0..8 {
        deep = json!({"op": "not", "nodes": [deep]});
    }
    for (tf, message) in [
        (json!({"key": "k", "cmp": "like", "val": "x"}), "unknown tags filter cmp \"like\""),
        (json!({"cmp": "eq", "val": "x"}), "tags filter comparison needs a key"),
        (json!({"op": "not", "nodes": []}), "tags filter \"not\" needs at least one node"),
        (json!({"key": "k", "cmp": "gt", "val": "ten"}), "needs a number in val"),
        (deep, "tags filter nested too deep (max 8 levels)"),
    ] {
        let reply = ws.call(json!({"subscribe": {"channel": "ticks:f", "tf": tf}})).await?;
        assert_eq!(reply["error"]["code"], json!(107), "{reply}");
        let got = reply["error"]["message"].as_str().unwrap_or("");
        assert!(got.starts_with("bad request: ") && got.contains(message), "{reply}");
    }

    // A valid filter: k = "a", or no k at all. The same raw-frame filter in
    // the Protobuf encoding is what the SDK's Protobuf build sends.
    let tf = json!({"op": "or", "nodes": [{"key": "k", "cmp": "eq", "val": "a"}, {"key": "k", "cmp": "nex"}]});
    let reply = ws.call(json!({"subscribe": {"channel": "ticks:f", "tf": tf}})).await?;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    let (mut all, _) = gw.connect("bob").await?;
    all.call(json!({"subscribe": {"channel": "ticks:f"}})).await?;
    for (n, tags) in [(0, json!({"k": "a"})), (1, json!({"k": "b"})), (2, json!({})), (3, json!({"k": "a", "x": "1"}))]
    {
        gw.api().result("publish", json!({"channel": "ticks:f", "data": {"n": n}, "tags": tags})).await?;
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_pub_on(&mut ws, "ticks:f").await?["data"]["n"].clone());
    }
    assert_eq!(got, [json!(0), json!(2), json!(3)]);
    for n in 0..4 {
        let publication = next_pub_on(&mut all, "ticks:f").await?;
        assert_eq!(publication["data"]["n"], json!(n));
    }
    Ok(())
}

#[tokio::test]
async fn broadcast_to_a_pattern_reaches_matching_channels_within_the_limit() -> Result<()> {
    let mut config = config();
    config.api.max_pattern_channels = 2;
    let gw = TestGateway::start_with(config).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    for channel in ["chat:a", "chat:b", "news"] {
        ws.call(json!({"subscribe": {"channel": channel}})).await?;
    }
    let api = gw.api();
    let result = api.result("broadcast", json!({"pattern": "chat:*", "data": {"hi": 1}})).await?;
    assert_eq!(result["channels"], json!(["chat:a", "chat:b"]), "{result}");
    assert_eq!(
        result["responses"],
        json!([{"result": {"offset": 1, "epoch": result["responses"][0]["result"]["epoch"]}},
        {"result": {"offset": 1, "epoch": result["responses"][1]["result"]["epoch"]}}])
    );
    for channel in ["chat:a", "chat:b"] {
        assert_eq!(next_pub_on(&mut ws, channel).await?["data"], json!({"hi": 1}));
    }

    // A third matching channel puts the pattern over the limit: refused, and
    // nothing is published.
    let (mut bob, _) = gw.connect("bob").await?;
    bob.call(json!({"subscribe": {"channel": "chat:c"}})).await?;
    let body = api.call("broadcast", json!({"pattern": "chat:*", "data": {"hi": 2}})).await?;
    assert_eq!(body["error"]["code"], json!(106), "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("pattern matches 3 channels (max 2)"), "{body}");
    api.result("publish", json!({"channel": "chat:a", "data": {"marker": 1}})).await?;
    assert_eq!(next_pub_on(&mut ws, "chat:a").await?["data"], json!({"marker": 1}));

    // A pattern matching nothing publishes nothing; pattern and channels together are refused.
    let none = api.result("broadcast", json!({"pattern": "nope:*", "data": {}})).await?;
    assert_eq!(none, json!({"channels": [], "responses": []}));
    let body = api.call("broadcast", json!({"pattern": "chat:*", "channels": ["news"], "data": {}})).await?;
    assert_eq!(body["error"]["code"], json!(107), "{body}");
    Ok(())
}

/// One raw subscriber that records the publications it gets and the bytes
/// each took on the wire (the gateway's encoded push; WebSocket framing
/// excluded).
struct Meter {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    protobuf: bool,
}

/// One received publication: wire bytes, its data bytes, whether a delta.
struct Received {
    wire: usize,
    data: Vec<u8>,
    delta: bool,
}

impl Meter {
    async fn subscribe(gw: &TestGateway, protobuf: bool, channel: &str, delta: bool) -> Result<Self> {
        let mut request = gw.ws_url().into_client_request()?;
        if protobuf {
            request.headers_mut().insert("sec-websocket-protocol", "centrifuge-protobuf".parse()?);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        let mut meter = Self { ws, protobuf };
        let delta = if delta { "fossil" } else { "" };
        if protobuf {
            let connect = proto::ConnectRequest { token: user_token("meter"), ..Default::default() };
            let sub = proto::SubscribeRequest { channel: channel.into(), delta: delta.into(), ..Default::default() };
            let mut frame =
                encode_delimited(&proto::Command { id: 1, connect: Some(connect), ..Default::default() }).to_vec();
            frame.extend_from_slice(&encode_delimited(&proto::Command {
                id: 2,
                subscribe: Some(sub),
                ..Default::default()
            }));
            meter.ws.send(Message::binary(frame)).await?;
        } else {
            let frame = format!(
                "{}\n{}",
                json!({"id": 1, "connect": {"token": user_token("meter")}}),
                json!({"id": 2, "subscribe": {"channel": channel, "delta": delta}})
            );
            meter.ws.send(Message::text(frame)).await?;
        }
        let mut replies = 0;
        while replies < 2 {
            replies += meter.read_messages().await?.into_iter().filter(|m| m.is_none()).count();
        }
        Ok(meter)
    }

    /// The messages of the next frame: `Some` for a publication, `None` for
    /// a reply.
    async fn read_messages(&mut self) -> Result<Vec<Option<Received>>> {
        let msg = tokio::time::timeout(WAIT, self.ws.next()).await.context("timed out")?.context("closed")??;
        let mut out = Vec::new();
        match msg {
            Message::Text(text) if !self.protobuf => {
                for line in text.as_str().split('\n') {
                    let v: Value = serde_json::from_str(line)?;
                    let Some(publication) = v["push"].get("pub") else {
                        // A reply counts; a ping does not.
                        if v.get("id").is_some() {
                            out.push(None);
                        }
                        continue;
                    };
                    let data = match &publication["data"] {
                        Value::String(s) => s.as_bytes().to_vec(),
                        other => serde_json::to_vec(other)?,
                    };
                    out.push(Some(Received { wire: line.len(), data, delta: publication["delta"] == json!(true) }));
                }
            }
            Message::Binary(bytes) if self.protobuf => {
                for message in split_delimited(&bytes).map_err(|e| anyhow!("{e}"))? {
                    let reply = proto::Reply::decode(message)?;
                    let id = reply.id;
                    match reply.push.and_then(|p| p.publication) {
                        Some(p) => out.push(Some(Received {
                            wire: message.len() + prost::length_delimiter_len(message.len()),
                            data: p.data.to_vec(),
                            delta: p.delta,
                        })),
                        None if id != 0 => out.push(None),
                        None => {}
                    }
                }
            }
            other => anyhow::bail!("unexpected frame {other:?}"),
        }
        Ok(out)
    }

    /// Reads `n` publications, rebuilds each payload (applying deltas) and
    /// returns them with the total wire bytes and the number of deltas.
    async fn collect(&mut self, n: usize) -> Result<(Vec<Value>, usize, usize)> {
        let (mut docs, mut wire, mut deltas, mut base) = (Vec::new(), 0, 0, Vec::new());
        while docs.len() < n {
            for received in self.read_messages().await?.into_iter().flatten() {
                wire += received.wire;
                let full = if received.delta {
                    deltas += 1;
                    fossil_delta::apply(&base, &received.data).map_err(|e| anyhow!("bad delta: {e:?}"))?
                } else {
                    received.data
                };
                docs.push(serde_json::from_slice(&full)?);
                base = full;
            }
        }
        Ok((docs, wire, deltas))
    }
}

/// BENCHMARKS.md "Fossil delta": the bytes a live-score stream takes with
/// and without delta compression, in both encodings. Deterministic (bytes,
/// not time): `cargo test -p switchboard-e2e fossil_delta_bandwidth -- --nocapture`.
#[tokio::test]
async fn fossil_delta_bandwidth_on_a_live_score_stream() -> Result<()> {
    const UPDATES: u64 = 200;
    let gw = TestGateway::start_with(config()).await?;
    let mut meters = Vec::new();
    for (protobuf, delta) in [(false, false), (false, true), (true, false), (true, true)] {
        meters.push((protobuf, delta, Meter::subscribe(&gw, protobuf, "score:live", delta).await?));
    }
    let docs: Vec<Value> = (1..=UPDATES).map(scoreboard).collect();
    let payload_bytes: usize = docs.iter().map(|d| d.to_string().len()).sum();
    for doc in &docs {
        gw.api().result("publish", json!({"channel": "score:live", "data": doc})).await?;
    }
    println!("live score: {UPDATES} updates, {} payload bytes on average", payload_bytes / docs.len());
    println!("| encoding | delta | pub push bytes | bytes per update | deltas | vs. without delta |");
    println!("|---|---|---|---|---|---|");
    let mut full_bytes = 0;
    for (protobuf, delta, meter) in &mut meters {
        let (got, wire, deltas) = meter.collect(docs.len()).await?;
        assert_eq!(got, docs, "every payload rebuilt exactly");
        let encoding = if *protobuf { "protobuf" } else { "json" };
        if *delta {
            assert_eq!(deltas, docs.len() - 1, "all but the first as deltas");
            assert!(wire * 5 < full_bytes, "{encoding}: {wire} bytes with delta vs {full_bytes} without");
        } else {
            assert_eq!(deltas, 0);
            full_bytes = wire;
        }
        let ratio = if *delta {
            format!("{:.1}% ({:.1}x less)", 100.0 * wire as f64 / full_bytes as f64, full_bytes as f64 / wire as f64)
        } else {
            "100%".to_owned()
        };
        println!(
            "| {encoding} | {} | {wire} | {} | {deltas} | {ratio} |",
            if *delta { "fossil" } else { "off" },
            wire / docs.len()
        );
    }
    gw.shutdown().await?;
    Ok(())
}
