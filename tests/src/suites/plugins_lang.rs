//! End to end through the gateway with the plugins written in other
//! languages, built from source by `scripts/build-lang-plugins.sh` (which
//! `scripts/test.sh` runs before `cargo test`):
//! - `plugins/js/moderation` (JavaScript, componentize-qjs): masks or blocks
//!   words; imports no host interface.
//! - `plugins/python/enrich` (Python, componentize-py): drops, renames and
//!   adds fields, stamps the host clock and the publisher's user; imports
//!   the host `clock` (in the default grants).
//!
//! The config is written as an operator would, in TOML, and parsed with
//! `Config::from_toml_str`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use switchboard::config::{Config, MapEnv};

use crate::*;

/// How long a start may take: with a cold compile cache, Cranelift
/// compiles the ~1 MB JS and ~18 MB Python components (the dev profile
/// optimises the compiler crates; see the workspace Cargo.toml), which takes
/// tens of seconds on a loaded 2-core box. Later starts load the artifacts
/// from the on-disk compile cache in well under a second.
const FIRST_START: Duration = Duration::from_secs(180);

/// Held while a gateway of this suite starts: the tests run in parallel and
/// would otherwise each compile the same components at once on a cold
/// cache; one at a time, the first compiles and the others load its
/// artifacts from the compile cache.
static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The built component at `rel` under the repository root, absolute.
fn component(rel: &str) -> Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    path.canonicalize().with_context(|| {
        format!("{} is missing: build it with ./scripts/build-lang-plugins.sh (./scripts/test.sh does)", path.display())
    })
}

/// A TOML basic string holding `path`.
fn toml_str(path: &Path) -> String {
    serde_json::to_string(&path.to_string_lossy()).expect("a string")
}

/// The gateway config: test secret and key, a `chat` namespace, and the
/// publish pipeline `moderation-js → enrich-py`. `moderation` is the inline
/// table of the JS plugin's `config`.
fn config_toml(moderation: &str) -> Result<String> {
    let js = toml_str(&component("plugins/js/moderation/dist/moderation.wasm")?);
    let py = toml_str(&component("plugins/python/enrich/dist/enrich.wasm")?);
    Ok(format!(
        r#"
[server]
shutdown_grace_secs = 2

[auth]
token_hmac_secret = "{SECRET}"

[api]
key = "{API_KEY}"

[[channels.namespaces]]
name = "chat"
history_size = 100
history_ttl_secs = 300
join_leave = true
allow_publish_for_subscriber = true
allow_history_for_subscriber = true

[[plugins]]
name = "moderation-js"
path = {js}
timeout_ms = 50
memory_max_bytes = 268435456
pool_size = 2
on_error = "deny"
grants = []
config = {moderation}

[[plugins]]
name = "enrich-py"
path = {py}
timeout_ms = 50
memory_max_bytes = 268435456
pool_size = 2
on_error = "deny"
grants = ["clock"]
config = {{ drop = ["secret"], rename = {{ msg = "text" }}, add_fields = {{ source = "switchboard" }}, received_at = "received_at", user_field = "user" }}

[pipelines]
publish = ["moderation-js", "enrich-py"]
"#
    ))
}

/// Starts a gateway with `text` and waits until it answers a connect (the
/// plugins are compiled and initialized before it serves).
async fn start(text: &str) -> Result<TestGateway> {
    let config = Config::from_toml_str(text, &MapEnv::new()).map_err(|e| anyhow::anyhow!("config: {e}"))?;
    let _one_at_a_time = STARTING.lock().await;
    let gw = TestGateway::start_with(config).await?;
    let started = tokio::time::Instant::now();
    let deadline = started + FIRST_START;
    loop {
        match tokio::time::timeout(WAIT, gw.connect("probe")).await {
            Ok(Ok(_)) => {
                // For BENCHMARKS-style notes on compile vs cache (shown with --nocapture).
                eprintln!("plugins_lang: gateway served after {:?}", started.elapsed());
                return Ok(gw);
            }
            Ok(Err(e)) if tokio::time::Instant::now() >= deadline => return Err(e.context("gateway never served")),
            Err(_) if tokio::time::Instant::now() >= deadline => bail!("gateway never served within {FIRST_START:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Subscribes `ws` to a `chat` channel and consumes its own join push.
async fn join(ws: &mut WsClient, channel: &str) -> Result<()> {
    let reply = ws.call(json!({"subscribe": {"channel": channel}})).await?;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    assert!(ws.next_push().await?.get("join").is_some());
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The publication data of the next push on `ws`, for `channel`.
async fn next_data(ws: &mut WsClient, channel: &str) -> Result<Value> {
    let push = ws.next_push().await?;
    assert_eq!(push["channel"], json!(channel), "{push}");
    Ok(push["pub"]["data"].clone())
}

#[tokio::test]
async fn js_masks_then_python_enriches() -> Result<()> {
    let gw = start(&config_toml(r#"{ words = ["darn", "drat it"], mode = "mask" }"#)?).await?;
    let (mut watcher, _) = gw.connect("watcher").await?;
    join(&mut watcher, "chat:lang").await?;
    let (mut alice, _) = gw.connect("Alice").await?;
    join(&mut alice, "chat:lang").await?;
    assert!(watcher.next_push().await?.get("join").is_some());

    let before = now_ms();
    let reply = alice
        .call(json!({"publish": {"channel": "chat:lang", "data": {
            "msg": "Oh DARN, Ｄａｒｎ! darning. Drat-it", "secret": "darn", "user": "mallory"
        }}}))
        .await?;
    assert_eq!(reply["publish"], json!({}), "{reply}");
    let after = now_ms();

    let data = next_data(&mut watcher, "chat:lang").await?;
    // JS masked the words (only whole words, Unicode-aware); Python dropped
    // `secret`, renamed `msg`, added `source`, and stamped the server fields
    // over the client's `user`.
    let received_at = data["received_at"].as_u64().with_context(|| format!("no received_at in {data}"))?;
    assert!((before..=after).contains(&received_at), "{received_at} not in {before}..={after}");
    assert_eq!(
        data,
        json!({"text": "Oh ****, ****! darning. ****-**", "source": "switchboard", "received_at": received_at, "user": "alice"}),
    );

    // A clean message from the server API: no publisher, so no `user`.
    gw.api().result("publish", json!({"channel": "chat:lang", "data": {"msg": "hello"}})).await?;
    let data = next_data(&mut watcher, "chat:lang").await?;
    assert_eq!(data["text"], json!("hello"), "{data}");
    assert_eq!(data["source"], json!("switchboard"), "{data}");
    assert!(data.get("user").is_none(), "{data}");

    // History holds what subscribers saw.
    let h = gw.api().result("history", json!({"channel": "chat:lang", "limit": -1})).await?;
    let pubs = publications(&h);
    assert_eq!(pubs.len(), 2, "{h}");
    assert_eq!(pubs[0]["data"]["text"], json!("Oh ****, ****! darning. ****-**"), "{h}");
    Ok(())
}

#[tokio::test]
async fn js_block_mode_refuses_with_configured_code_and_reason() -> Result<()> {
    let gw = start(&config_toml(r#"{ words = ["darn"], mode = "block", code = 451, reason = "mind your language" }"#)?)
        .await?;
    let (mut watcher, _) = gw.connect("watcher").await?;
    join(&mut watcher, "chat:block").await?;
    let (mut bob, _) = gw.connect("bob").await?;
    join(&mut bob, "chat:block").await?;
    assert!(watcher.next_push().await?.get("join").is_some());

    let reply = bob.call(json!({"publish": {"channel": "chat:block", "data": {"msg": "well DARN"}}})).await?;
    assert_eq!(reply["error"]["code"], json!(451), "{reply}");
    assert_eq!(reply["error"]["message"], json!("mind your language"), "{reply}");

    // The server API gets the same refusal.
    let body = gw.api().call("publish", json!({"channel": "chat:block", "data": {"msg": "darn"}})).await?;
    assert_eq!(body["error"]["code"], json!(451), "{body}");

    // Clean text goes through both plugins; the refused ones never arrive.
    let reply = bob.call(json!({"publish": {"channel": "chat:block", "data": {"msg": "darning is fine"}}})).await?;
    assert_eq!(reply["publish"], json!({}), "{reply}");
    let data = next_data(&mut watcher, "chat:block").await?;
    assert_eq!(data["text"], json!("darning is fine"), "{data}");
    assert_eq!(data["user"], json!("bob"), "{data}");
    let h = gw.api().result("history", json!({"channel": "chat:block", "limit": -1})).await?;
    assert_eq!(publications(&h).len(), 1, "{h}");
    Ok(())
}

#[tokio::test]
async fn invalid_plugin_config_refuses_to_start() -> Result<()> {
    // `init` returns the JS plugin's error; the gateway must not serve.
    let config = Config::from_toml_str(&config_toml(r#"{ words = "darn" }"#)?, &MapEnv::new())
        .map_err(|e| anyhow::anyhow!("config: {e}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let _one_at_a_time = STARTING.lock().await;
    let run = switchboard::run(config, listener, std::future::pending::<()>());
    match tokio::time::timeout(FIRST_START, run).await {
        Ok(Err(e)) => {
            let message = format!("{e:#}");
            assert!(message.contains("moderation-js"), "{message}");
            assert!(message.contains("`words` must be a list of strings"), "{message}");
        }
        Ok(Ok(())) => bail!("gateway ran with an invalid plugin config"),
        Err(_) => bail!("gateway did not refuse an invalid plugin config within {FIRST_START:?}"),
    }
    Ok(())
}
