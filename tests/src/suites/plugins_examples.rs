//! The five Rust example plugins of `plugins/` end to end through the
//! gateway, each configured as its module docs describe and driven by real
//! clients (WebSocket sessions and the server API). The components are
//! built by `scripts/build-plugins.sh` (which `scripts/test.sh` runs before
//! `cargo test`) into `plugins/target/wasm32-wasip2/release/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;
use switchboard::config::{Config, NamespaceConfig, PluginConfig};
use tokio::sync::mpsc;

use crate::*;

/// The example plugin `name` (crate name) as built by `scripts/build-plugins.sh`.
fn example(name: &str) -> Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    path.canonicalize().with_context(|| {
        format!("{} is missing: build it with ./scripts/build-plugins.sh (./scripts/test.sh does)", path.display())
    })
}

/// A `[[plugins]]` entry for the example `name` with its `config` table
/// written in TOML, as an operator would.
fn plugin(name: &str, config: &str, grants: &[&str]) -> Result<PluginConfig> {
    Ok(PluginConfig {
        name: name.into(),
        path: example(name)?.display().to_string(),
        config: toml::from_str(config).with_context(|| format!("config of {name}"))?,
        grants: grants.iter().map(|g| (*g).to_owned()).collect(),
        // Generous: debug builds on a loaded 2-core box.
        timeout_ms: 1000,
        pool_size: 1,
        ..PluginConfig::default()
    })
}

/// A namespace clients may subscribe and publish to.
fn namespace(name: &str) -> NamespaceConfig {
    NamespaceConfig {
        name: name.into(),
        allow_publish_for_client: true,
        history_size: 10,
        history_ttl_secs: 300,
        ..NamespaceConfig::default()
    }
}

/// The test config with `plugins` and their own compile cache.
fn config_with(plugins: Vec<PluginConfig>, namespaces: &[&str]) -> Config {
    let mut config = test_config();
    config.plugins = plugins;
    config.channels.namespaces.extend(namespaces.iter().map(|n| namespace(n)));
    config.plugin_runtime.cache_dir = std::env::temp_dir().join("switchboard-test-plugin-cache").display().to_string();
    config.plugin_runtime.watch_interval_ms = 0;
    config
}

async fn subscribe(ws: &mut WsClient, channel: &str) -> Result<Value> {
    ws.call(json!({"subscribe": {"channel": channel}})).await
}

async fn publish(ws: &mut WsClient, channel: &str, data: Value) -> Result<Value> {
    ws.call(json!({"publish": {"channel": channel, "data": data}})).await
}

/// The data of the next publication push, asserting its channel.
async fn next_data(ws: &mut WsClient, channel: &str) -> Result<Value> {
    let push = ws.next_push().await?;
    anyhow::ensure!(push["channel"] == json!(channel), "expected a publication in {channel}, got {push}");
    Ok(push["pub"]["data"].clone())
}

/// The data of every publication in `channel`'s history, oldest first.
async fn history(gw: &TestGateway, channel: &str) -> Result<Vec<Value>> {
    let result = gw.api().result("history", json!({"channel": channel, "limit": -1})).await?;
    Ok(publications(&result).into_iter().map(|p| p["data"].clone()).collect())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test]
async fn auth_policy_decides_connect_and_subscribe_from_token_claims_and_channel_rules() -> Result<()> {
    let policy = plugin(
        "auth-policy",
        r#"
        required_claims = { role = ["member", "admin"] }
        auto_subscribe = ["user:{sub}"]
        rules = [ { channel = "user:{sub}" },
                  { channel = "team:{claims.team}:*" },
                  { channel = "admin:*", effect = "deny" } ]
        default = "deny"
        deny_code = 403
        "#,
        &["kv"],
    )?;
    let mut config = config_with(vec![policy], &["user", "team", "admin"]);
    config.pipelines.connect = vec!["auth-policy".into()];
    config.pipelines.subscribe = vec!["auth-policy".into()];
    let gw = TestGateway::start_with(config).await?;
    let claims = |sub: &str, extra: Value| {
        let mut claims = json!({"sub": sub, "exp": now_secs() + 3600});
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        token(SECRET, claims)
    };

    // Connect: the required claim must be present with an allowed value.
    let mut ws = gw.ws().await?;
    let reply = ws.connect_token(&claims("mallory", json!({}))).await?;
    assert_eq!(reply["error"], json!({"code": 403, "message": "claim role is missing or not allowed"}));
    let mut ws = gw.ws().await?;
    let reply = ws.connect_token(&claims("mallory", json!({"role": "guest", "team": "red"}))).await?;
    assert_eq!(reply["error"], json!({"code": 403, "message": "claim role is missing or not allowed"}));

    // Allowed: the principal auto-subscribes the user's own channel.
    let mut alice = gw.ws().await?;
    let reply = alice.connect_token(&claims("alice", json!({"role": "member", "team": "red"}))).await?;
    let subs = reply["connect"]["subs"].as_object().with_context(|| format!("no subs in {reply}"))?;
    assert_eq!(subs.keys().collect::<Vec<_>>(), vec!["user:alice"], "{reply}");
    gw.api().result("publish", json!({"channel": "user:alice", "data": {"dm": 1}})).await?;
    assert_eq!(next_data(&mut alice, "user:alice").await?, json!({"dm": 1}));

    // Subscribe: first matching rule wins, placeholders from the claims.
    let reply = subscribe(&mut alice, "team:red:general").await?;
    assert!(reply.get("subscribe").is_some(), "team:{{claims.team}}:* allows: {reply}");
    for channel in ["team:blue:general", "user:bob", "admin:ops", "team:red"] {
        let reply = subscribe(&mut alice, channel).await?;
        assert_eq!(
            reply["error"],
            json!({"code": 403, "message": format!("not allowed to subscribe to {channel}")}),
            "{channel}"
        );
    }
    // An admin is still denied `admin:*` by the explicit deny rule, but gets their own team.
    let mut root = gw.ws().await?;
    root.connect_token(&claims("root", json!({"role": "admin", "team": "blue"}))).await?;
    assert_eq!(subscribe(&mut root, "admin:ops").await?["error"]["code"], json!(403));
    assert!(subscribe(&mut root, "team:blue:ops").await?.get("subscribe").is_some());
    assert_eq!(subscribe(&mut root, "team:red:general").await?["error"]["code"], json!(403));
    gw.shutdown().await
}

#[tokio::test]
async fn moderation_masks_blocks_and_cools_down_a_repeat_offender() -> Result<()> {
    let moderation = plugin(
        "moderation",
        r#"
        block = ["badword", "very bad phrase"]
        mask = ["darn"]
        block_code = 403
        block_reason = "message contains a blocked word"
        rate_limit = { max_blocks = 2, window_secs = 60, cooldown_secs = 300, code = 429 }
        "#,
        &["kv"],
    )?;
    let mut config = config_with(vec![moderation], &["room"]);
    config.pipelines.publish = vec!["moderation".into()];
    let gw = TestGateway::start_with(config).await?;
    let (mut watcher, _) = gw.connect("watcher").await?;
    subscribe(&mut watcher, "room:1").await?;
    let (mut mallory, _) = gw.connect("mallory").await?;
    let (mut bob, _) = gw.connect("bob").await?;

    // Masking: whole words only, Unicode-aware, other fields untouched.
    let reply = publish(&mut mallory, "room:1", json!({"text": "oh DARN, Ｄａｒｎ! darning", "n": 1})).await?;
    assert_eq!(reply["publish"], json!({}), "{reply}");
    assert_eq!(next_data(&mut watcher, "room:1").await?, json!({"text": "oh ****, ****! darning", "n": 1}));

    // Blocking: refused with the configured code and reason.
    let blocked = json!({"code": 403, "message": "message contains a blocked word"});
    let reply = publish(&mut mallory, "room:1", json!({"text": "ＢＡＤＷＯＲＤ"})).await?;
    assert_eq!(reply["error"], blocked);
    let reply = publish(&mut mallory, "room:1", json!({"nested": ["a Very  bad phrase"]})).await?;
    assert_eq!(reply["error"], json!(null), "two spaces are not the phrase: {reply}");
    assert_eq!(next_data(&mut watcher, "room:1").await?, json!({"nested": ["a Very  bad phrase"]}));
    let reply = publish(&mut mallory, "room:1", json!({"nested": ["a Very bad phrase!"]})).await?;
    assert_eq!(reply["error"], blocked);

    // Two blocks within the window: mallory cools down, even for clean text.
    let reply = publish(&mut mallory, "room:1", json!({"text": "sorry"})).await?;
    assert_eq!(reply["error"], json!({"code": 429, "message": "too many blocked messages, try again later"}));
    // Others are not affected; the server API (no user) neither.
    let reply = publish(&mut bob, "room:1", json!({"text": "hello"})).await?;
    assert_eq!(reply["publish"], json!({}), "{reply}");
    assert_eq!(next_data(&mut watcher, "room:1").await?, json!({"text": "hello"}));
    let body = gw.api().call("publish", json!({"channel": "room:1", "data": {"text": "badword"}})).await?;
    assert_eq!(body["error"], blocked, "{body}");

    // Nothing refused was stored.
    assert_eq!(
        history(&gw, "room:1").await?,
        vec![
            json!({"text": "oh ****, ****! darning", "n": 1}),
            json!({"nested": ["a Very  bad phrase"]}),
            json!({"text": "hello"})
        ]
    );
    gw.shutdown().await
}

/// The component's byte scan tests sixteen bytes at a time (simd128 in
/// wasm, a path the native unit tests cannot take): a term, an escape and a
/// non-ASCII spelling are found at every offset across chunk boundaries,
/// and a near miss at every offset passes.
#[tokio::test]
async fn moderation_finds_a_term_at_every_offset_of_a_long_payload() -> Result<()> {
    let moderation = plugin("moderation", r#"block = ["badword", "very bad phrase"]"#, &["kv"])?;
    let mut config = config_with(vec![moderation], &["room"]);
    config.pipelines.publish = vec!["moderation".into()];
    let gw = TestGateway::start_with(config).await?;
    let blocked = json!({"code": 403, "message": "message contains a blocked word"});
    for offset in 0..=40 {
        let pad = "x ".repeat(offset / 2) + &" ".repeat(offset % 2);
        // The string values as the JSON payload spells them.
        for (text, refused) in [
            (format!("{pad}BadWord and then some more words to fill the chunks"), true),
            (format!("{pad}VERY BAD PHRASE and then some more words"), true),
            (format!("{pad}\\u0062adword and then some more words"), true),
            (format!("{pad}ｂａｄｗｏｒｄ and then some more words"), true),
            (format!("{pad}badwore and very bad phrasing, then more words"), false),
        ] {
            let body = format!(r#"{{"channel":"room:1","data":{{"n":{offset},"t":"{text}"}}}}"#);
            let resp = gw.api().raw("publish", &body, &[("x-api-key", API_KEY)]).await?;
            assert_eq!(resp.status, 200, "{}", resp.body);
            let want = if refused { blocked.clone() } else { json!(null) };
            assert_eq!(resp.body["error"], want, "offset {offset}: {text} -> {}", resp.body);
        }
    }
    gw.shutdown().await
}

#[tokio::test]
async fn pii_redact_redacts_each_kind_in_string_fields_and_honours_skip_fields() -> Result<()> {
    let redact = plugin("pii-redact", r#"skip_fields = ["id", "meta.*"]"#, &[])?;
    let mut config = config_with(vec![redact], &["support"]);
    config.pipelines.publish = vec!["pii-redact".into()];
    let gw = TestGateway::start_with(config).await?;
    let (mut agent, _) = gw.connect("agent").await?;
    subscribe(&mut agent, "support:42").await?;
    let (mut customer, _) = gw.connect("customer").await?;

    // (field, sent, delivered): positive and negative cases of every kind.
    let cases = [
        ("email", "mail alice@example.com now", "mail [redacted:email] now"),
        ("not_email", "user@localhost", "user@localhost"),
        ("phone", "call +49 30 1234567 now", "call [redacted:phone] now"),
        ("not_phone", "order 12345 on 2024-01-15", "order 12345 on 2024-01-15"),
        ("iban", "IBAN DE89 3704 0044 0532 0130 00, thanks", "IBAN [redacted:iban], thanks"),
        ("not_iban", "DE88 3704 0044 0532 0130 00", "DE88 3704 0044 0532 0130 00"),
        ("card", "card 4111 1111 1111 1111 exp", "card [redacted:card] exp"),
        ("not_card", "4111 1111 1111 1112", "4111 1111 1111 1112"),
        ("ip", "from 192.168.1.20 port", "from [redacted:ip] port"),
        ("not_ip", "version 1.2.3 and v1.2.3.4", "version 1.2.3 and v1.2.3.4"),
    ];
    let mut sent = serde_json::Map::new();
    let mut want = serde_json::Map::new();
    for (field, input, output) in cases {
        sent.insert(field.into(), json!(input));
        want.insert(field.into(), json!(output));
    }
    // Skipped fields, numbers and nested arrays.
    for (field, value, redacted) in [
        ("id", json!("alice@example.com"), json!("alice@example.com")),
        ("meta", json!({"ip": "10.0.0.1"}), json!({"ip": "10.0.0.1"})),
        ("amount", json!(4111111111111111u64), json!(4111111111111111u64)),
        ("cc", json!(["bob@example.org", 8]), json!(["[redacted:email]", 8])),
    ] {
        sent.insert(field.into(), value);
        want.insert(field.into(), redacted);
    }
    let reply = publish(&mut customer, "support:42", Value::Object(sent)).await?;
    assert_eq!(reply["publish"], json!({}), "{reply}");
    let got = next_data(&mut agent, "support:42").await?;
    assert_eq!(got, Value::Object(want.clone()));
    // Key order is kept (the plugin rewrites values in place).
    let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
    assert_eq!(keys, want.keys().collect::<Vec<_>>());

    // A clean message passes unchanged; the stored copy is the redacted one.
    gw.api().result("publish", json!({"channel": "support:42", "data": {"text": "thanks!"}})).await?;
    assert_eq!(next_data(&mut agent, "support:42").await?, json!({"text": "thanks!"}));
    let stored = history(&gw, "support:42").await?;
    assert_eq!(stored, vec![Value::Object(want), json!({"text": "thanks!"})]);
    gw.shutdown().await
}

/// The component's pre-scan looks for the bytes personal data cannot do
/// without sixteen at a time (simd128 in wasm, a path the native unit
/// tests cannot take): each kind is found at every offset across block
/// boundaries.
#[tokio::test]
async fn pii_redact_finds_each_kind_at_every_offset_of_a_long_payload() -> Result<()> {
    let redact = plugin("pii-redact", "", &[])?;
    let mut config = config_with(vec![redact], &["support"]);
    config.pipelines.publish = vec!["pii-redact".into()];
    let gw = TestGateway::start_with(config).await?;
    let (mut agent, _) = gw.connect("agent").await?;
    subscribe(&mut agent, "support:1").await?;
    let kinds = [
        ("alice@example.com", "email"),
        ("+49 30 1234567", "phone"),
        ("DE89 3704 0044 0532 0130 00", "iban"),
        ("4111 1111 1111 1111", "card"),
        ("192.168.1.20", "ip"),
        ("fe80::1:2", "ip"),
    ];
    // One kind per message: a trigger the pre-scan misses (an email's one
    // `@`) would let that message pass unredacted.
    for offset in 0..=33 {
        let pad = "x".repeat(offset);
        for (value, kind) in kinds {
            let sent = json!({"t": format!("{pad} {value} and some words after it")});
            gw.api().result("publish", json!({"channel": "support:1", "data": sent})).await?;
            let want = json!({"t": format!("{pad} [redacted:{kind}] and some words after it")});
            assert_eq!(next_data(&mut agent, "support:1").await?, want, "offset {offset}");
        }
    }
    gw.shutdown().await
}

#[tokio::test]
async fn enrich_validates_renames_drops_and_stamps_server_fields() -> Result<()> {
    let enrich = plugin(
        "enrich",
        r#"
        schema = { required = ["msg"], additional_properties = false,
                   properties = { msg = { type = "string", max_length = 20 }, debug = { type = "boolean" },
                                  user = {} } }
        rename = { msg = "text" }
        drop = ["debug"]
        received_at_field = "received_at"
        user_field = "user"
        invalid_code = 422
        "#,
        &["clock"],
    )?;
    let mut config = config_with(vec![enrich], &["feed"]);
    config.pipelines.publish = vec!["enrich".into()];
    let gw = TestGateway::start_with(config).await?;
    let (mut reader, _) = gw.connect("reader").await?;
    subscribe(&mut reader, "feed:x").await?;
    // NFKC-normalized, lowercased, whitespace collapsed.
    let (mut writer, _) = gw.connect("  ＡＬＩＣＥ   Smith ").await?;

    let before = now_ms();
    let reply = publish(&mut writer, "feed:x", json!({"msg": "hi", "debug": true, "user": "mallory"})).await?;
    let after = now_ms();
    assert_eq!(reply["publish"], json!({}), "{reply}");
    let data = next_data(&mut reader, "feed:x").await?;
    let received_at = data["received_at"].as_u64().with_context(|| format!("no received_at in {data}"))?;
    assert!((before..=after).contains(&received_at), "{received_at} not in {before}..={after}");
    assert_eq!(data, json!({"text": "hi", "received_at": received_at, "user": "alice smith"}));

    // Schema violations are refused with invalid_code and a reason naming the field.
    for (payload, reason) in [
        (json!({"debug": true}), "field msg is required"),
        (json!({"msg": 5}), "field msg must be string"),
        (json!({"msg": "ok", "extra": 1}), "field extra is not allowed"),
        (json!({"msg": "x".repeat(21)}), "field msg is too long (max 20 characters)"),
        (json!([1, 2]), "payload must be a JSON object"),
    ] {
        let reply = publish(&mut writer, "feed:x", payload.clone()).await?;
        assert_eq!(reply["error"], json!({"code": 422, "message": reason}), "{payload}");
    }

    // A server API publish has no publisher: no user field.
    gw.api().result("publish", json!({"channel": "feed:x", "data": {"msg": "from the api"}})).await?;
    let data = next_data(&mut reader, "feed:x").await?;
    assert_eq!(data["text"], json!("from the api"), "{data}");
    assert!(data.get("user").is_none(), "{data}");
    assert_eq!(history(&gw, "feed:x").await?.len(), 2, "refused publishes are not stored");
    gw.shutdown().await
}

/// One request the webhook backend received.
#[derive(Debug)]
struct Delivery {
    status: u16,
    at: Instant,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

/// A webhook backend on `127.0.0.1:0`: answers the statuses of `script`
/// in order (then `fallback`), and reports every request on the channel.
async fn backend(script: Vec<u16>, fallback: u16) -> Result<(SocketAddr, mpsc::UnboundedReceiver<Delivery>)> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(script.into_iter()));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, script) = (tx.clone(), script.clone());
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (tx, script) = (tx.clone(), script.clone());
                async move {
                    let header = |name: &str| {
                        req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
                    };
                    let (timestamp, signature) = (header("x-switchboard-timestamp"), header("x-switchboard-signature"));
                    let body = req.into_body().collect().await?.to_bytes().to_vec();
                    let status = script.lock().unwrap().next().unwrap_or(fallback);
                    let _ = tx.send(Delivery { status, at: Instant::now(), timestamp, signature, body });
                    let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
                    *response.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                    Ok::<_, hyper::Error>(response)
                }
            });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    Ok((addr, rx))
}

/// The next request the backend got, within [`WAIT`].
async fn next_delivery(rx: &mut mpsc::UnboundedReceiver<Delivery>) -> Result<Delivery> {
    match tokio::time::timeout(WAIT, rx.recv()).await {
        Ok(Some(delivery)) => Ok(delivery),
        Ok(None) => bail!("backend stopped"),
        Err(_) => bail!("no webhook request within {WAIT:?}"),
    }
}

const WEBHOOK_SECRET: &str = "hook-secret";

/// Asserts the request carries `X-Switchboard-Signature` = hex
/// HMAC-SHA256(secret, "{timestamp}.{body}") and a current timestamp.
fn assert_signed(delivery: &Delivery) {
    let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).expect("any key length");
    mac.update(delivery.timestamp.as_bytes());
    mac.update(b".");
    mac.update(&delivery.body);
    let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(delivery.signature, want, "signature of {}", String::from_utf8_lossy(&delivery.body));
    let timestamp: u64 = delivery.timestamp.parse().expect("unix seconds");
    assert!(timestamp.abs_diff(now_secs()) <= 5, "timestamp {timestamp} is not now");
}

/// The `n` of each event in a batch body.
fn numbers(body: &[u8]) -> Vec<u64> {
    let batch: Value = serde_json::from_slice(body).expect("json batch");
    batch["events"].as_array().expect("events").iter().map(|e| e["data"]["n"].as_u64().expect("n")).collect()
}

/// A gateway whose `events` pipeline is the webhook plugin posting to
/// `addr`, ticking every 20 ms so retries go out without new traffic.
fn webhook_config(addr: SocketAddr, max_attempts: u32) -> Result<Config> {
    let webhook = PluginConfig {
        allowed_hosts: vec![addr.to_string()],
        ..plugin(
            "webhook",
            &format!(
                r#"
                url = "http://{addr}/hook"
                secret = "{WEBHOOK_SECRET}"
                kinds = ["publish"]
                max_attempts = {max_attempts}
                backoff_base_ms = 200
                backoff_max_ms = 2000
                timeout_ms = 2000
                "#
            ),
            &["http", "kv", "log", "clock", "random"],
        )?
    };
    let mut config = config_with(vec![webhook], &[]);
    config.pipelines.events = vec!["webhook".into()];
    config.plugin_runtime.events_tick_ms = 20;
    Ok(config)
}

#[tokio::test]
async fn webhook_retries_with_backoff_on_ticks_and_delivers_every_event_once_in_order_signed() -> Result<()> {
    let (addr, mut rx) = backend(vec![503, 503], 200).await?;
    let gw = TestGateway::start_with(webhook_config(addr, 5)?).await?;
    for n in 1..=3 {
        gw.api().result("publish", json!({"channel": "orders", "data": {"n": n}})).await?;
    }
    // No traffic from here on: the retries go out on the host's ticks.
    let first = next_delivery(&mut rx).await?;
    let second = next_delivery(&mut rx).await?;
    let third = next_delivery(&mut rx).await?;
    assert_eq!((first.status, second.status, third.status), (503, 503, 200));
    assert_eq!(first.body, second.body, "a retry resends the same batch");
    assert_eq!(first.body, third.body, "a retry resends the same batch");
    // Backoff: retry 1 is due 100..=200 ms after attempt 1 started, retry 2
    // 200..=400 ms after attempt 2 (half fixed, half jitter); the gaps seen
    // here are shorter at most by one request's latency (<20 ms locally).
    let (gap1, gap2) = (second.at - first.at, third.at - second.at);
    assert!(gap1 >= Duration::from_millis(80), "first retry after {gap1:?}");
    assert!(gap2 >= Duration::from_millis(180), "second retry after {gap2:?}");
    for delivery in [&first, &second, &third] {
        assert_signed(delivery);
    }
    let batch: Value = serde_json::from_slice(&first.body)?;
    assert_eq!(batch["events"][0]["kind"], json!("publish"), "{batch}");
    assert_eq!(batch["events"][0]["channel"], json!("orders"), "{batch}");

    // Batches queued behind the failing one follow it, in order.
    let mut delivered = numbers(&third.body);
    while delivered.len() < 3 {
        let next = next_delivery(&mut rx).await?;
        assert_eq!(next.status, 200);
        assert_signed(&next);
        delivered.extend(numbers(&next.body));
    }
    assert_eq!(delivered, vec![1, 2, 3], "every event exactly once, in order");
    // Nothing is sent again on the ticks that follow.
    let extra = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
    assert!(extra.is_err(), "unexpected request: {extra:?}");
    gw.shutdown().await
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn webhook_dead_letters_a_batch_after_max_attempts_and_moves_on() -> Result<()> {
    // The plugin's dead-letter log goes through the host `log` import into
    // tracing; capture this thread's events (the test runtime is
    // single-threaded, so the plugin calls run here).
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (addr, mut rx) = backend(vec![500, 500, 500], 200).await?;
    let gw = TestGateway::start_with(webhook_config(addr, 3)?).await?;
    gw.api().result("publish", json!({"channel": "orders", "data": {"n": 1}})).await?;
    let mut attempts = Vec::new();
    for _ in 0..3 {
        attempts.push(next_delivery(&mut rx).await?);
    }
    assert!(attempts.iter().all(|a| a.status == 500 && a.body == attempts[0].body));
    assert_eq!(numbers(&attempts[0].body), vec![1]);
    let batch: Value = serde_json::from_slice(&attempts[0].body)?;
    let id = batch["id"].as_str().context("batch id")?.to_owned();

    // After max_attempts the batch is given up: the next event goes out on
    // its own, and the dead batch is never sent again.
    gw.api().result("publish", json!({"channel": "orders", "data": {"n": 2}})).await?;
    let next = next_delivery(&mut rx).await?;
    assert_eq!((next.status, numbers(&next.body)), (200, vec![2]));
    assert_signed(&next);
    let extra = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
    assert!(extra.is_err(), "unexpected request: {extra:?}");

    // The dead-letter log line (error level, plugin named) carries the whole batch.
    let logs = captured.text();
    let line = logs
        .lines()
        .find(|l| l.contains("webhook: dead letter"))
        .with_context(|| format!("no dead-letter log line in:\n{logs}"))?;
    assert!(line.contains("ERROR"), "{line}");
    assert!(line.contains("plugin=\"webhook\"") || line.contains("plugin=webhook"), "{line}");
    let body = String::from_utf8(attempts[0].body.clone())?;
    assert!(line.contains(&format!("batch {id} after 3 attempts (status 500); body: {body}")), "{line}");
    gw.shutdown().await
}
