//! WASM plugins end to end: pipelines, hooks, events and hostile guests.
//!
//! Guests come from `plugins/testing/*`, built by [`test_guest`].

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::config::{Config, NamespaceConfig, OnError, PluginConfig};

use crate::*;

/// A plugin entry for the guest `guest` named `name` with `{"mode": mode}`.
fn plugin(name: &str, guest: &str, mode: &str) -> PluginConfig {
    let mut config = toml::Table::new();
    config.insert("mode".into(), toml::Value::String(mode.into()));
    PluginConfig {
        name: name.into(),
        path: test_guest(guest).expect("build test guest").display().to_string(),
        config,
        // Generous: debug builds on a loaded 2-core box; the hostile tests
        // set their own budgets.
        timeout_ms: 1000,
        ..PluginConfig::default()
    }
}

/// A namespace clients may publish to, with its own publish pipeline.
fn namespace(name: &str, pipeline: &[&str]) -> NamespaceConfig {
    NamespaceConfig {
        name: name.into(),
        allow_publish_for_client: true,
        publish_pipeline: Some(pipeline.iter().map(|p| (*p).to_owned()).collect()),
        ..NamespaceConfig::default()
    }
}

/// A test config with its own compile cache (so tests do not race on one).
fn plugin_config(plugins: Vec<PluginConfig>, namespaces: Vec<NamespaceConfig>) -> Config {
    let mut config = test_config();
    config.plugins = plugins;
    config.channels.namespaces.extend(namespaces);
    config.plugin_runtime.cache_dir = std::env::temp_dir().join("switchboard-test-plugin-cache").display().to_string();
    config
}

async fn subscribe(ws: &mut WsClient, channel: &str) -> anyhow::Result<()> {
    let reply = ws.call(json!({"subscribe": {"channel": channel}})).await?;
    anyhow::ensure!(reply.get("subscribe").is_some(), "subscribe {channel}: {reply}");
    Ok(())
}

async fn publish(ws: &mut WsClient, channel: &str, data: Value) -> anyhow::Result<Value> {
    ws.call(json!({"publish": {"channel": channel, "data": data}})).await
}

/// The data of the next publication push, asserting its channel.
async fn next_data(ws: &mut WsClient, channel: &str) -> anyhow::Result<Value> {
    let push = ws.next_push().await?;
    anyhow::ensure!(push["channel"] == json!(channel), "expected a publication in {channel}, got {push}");
    Ok(push["pub"]["data"].clone())
}

#[tokio::test]
async fn publish_pipeline_replace_drop_and_deny_reach_subscribers_and_api() -> anyhow::Result<()> {
    let config = plugin_config(
        vec![
            plugin("upper", "transform", "upper"),
            plugin("dropper", "transform", "drop"),
            plugin("denier", "transform", "deny"),
        ],
        vec![
            namespace("up", &["upper"]),
            namespace("gone", &["dropper"]),
            namespace("no", &["denier"]),
            namespace("chain", &["upper", "denier"]),
        ],
    );
    let gw = TestGateway::start_with(config).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    for channel in ["up:x", "gone:x", "no:x"] {
        subscribe(&mut ws, channel).await?;
    }

    let reply = publish(&mut ws, "up:x", json!({"msg": "hello"})).await?;
    assert_eq!(reply.get("error"), None, "{reply}");
    assert_eq!(next_data(&mut ws, "up:x").await?, json!({"MSG": "HELLO"}));

    let reply = publish(&mut ws, "gone:x", json!({"msg": "dropped"})).await?;
    assert_eq!(reply["publish"], json!({}), "a drop is acknowledged: {reply}");
    gw.api().result("publish", json!({"channel": "up:x", "data": "marker"})).await?;
    assert_eq!(next_data(&mut ws, "up:x").await?, json!("MARKER"), "the dropped publication was not delivered");

    let reply = publish(&mut ws, "no:x", json!({"msg": "refused"})).await?;
    assert_eq!(reply["error"], json!({"code": 4003, "message": "denied by transform"}));
    let body = gw.api().call("publish", json!({"channel": "no:x", "data": {}})).await?;
    assert_eq!(body["error"], json!({"code": 4003, "message": "denied by transform"}));
    // Deny stops the chain even after a replace.
    let body = gw.api().call("publish", json!({"channel": "chain:x", "data": {}})).await?;
    assert_eq!(body["error"]["code"], json!(4003));
    // Nothing of the refused publishes was stored or delivered.
    subscribe(&mut ws, "plain").await?;
    gw.api().result("publish", json!({"channel": "plain", "data": {"k": "v"}})).await?;
    assert_eq!(next_data(&mut ws, "plain").await?, json!({"k": "v"}), "channels outside the pipeline are untouched");
    gw.shutdown().await
}

#[tokio::test]
async fn a_publish_plugin_receives_every_field_of_the_message() -> anyhow::Result<()> {
    // `echo` answers with what it was given: each field the host lowered.
    // Untraced publishes carry no trace context (`none`, not empty strings).
    let config = plugin_config(vec![plugin("echo", "transform", "echo")], vec![namespace("echo", &["echo"])]);
    let gw = TestGateway::start_with(config).await?;
    let (mut ws, connected) = gw.connect("alice").await?;
    let client = connected["client"].clone();
    assert!(client.is_string(), "{connected}");
    subscribe(&mut ws, "echo:x").await?;

    let reply = publish(&mut ws, "echo:x", json!({"msg": "hi"})).await?;
    assert_eq!(reply.get("error"), None, "{reply}");
    assert_eq!(
        next_data(&mut ws, "echo:x").await?,
        json!({"channel": "echo:x", "user": "alice", "client": client, "tags": [],
               "content_type": "application/json", "traceparent": null, "tracestate": null,
               "data": r#"{"msg":"hi"}"#})
    );

    // A server publish: no publisher, tags in name order, and a payload
    // larger than any of the strings around it.
    let text = "x".repeat(3000);
    gw.api().result("publish", json!({"channel": "echo:x", "data": {"t": text}, "tags": {"b": "2", "a": "1"}})).await?;
    assert_eq!(
        next_data(&mut ws, "echo:x").await?,
        json!({"channel": "echo:x", "user": null, "client": null, "tags": [["a", "1"], ["b", "2"]],
               "content_type": "application/json", "traceparent": null, "tracestate": null,
               "data": format!(r#"{{"t":"{text}"}}"#)})
    );
    gw.shutdown().await
}

#[tokio::test]
async fn connect_subscribe_rpc_and_events_hooks_run() -> anyhow::Result<()> {
    let mut config = plugin_config(vec![plugin("policy", "transform", "pass")], vec![]);
    config.pipelines.connect = vec!["policy".into()];
    config.pipelines.subscribe = vec!["policy".into()];
    config.pipelines.rpc = vec!["policy".into()];
    config.pipelines.events = vec!["policy".into()];
    let gw = TestGateway::start_with(config).await?;

    let mut banned = gw.ws().await?;
    let reply = banned.connect_token(&user_token("mallory")).await?;
    assert_eq!(reply["error"], json!({"code": 4030, "message": "mallory is banned"}));

    let (mut aliased, connect) = gw.connect("alias").await?;
    subscribe(&mut aliased, "chat:room").await?;
    let presence = aliased.call(json!({"presence": {"channel": "chat:room"}})).await?;
    let client = connect["client"].as_str().unwrap();
    let me = &presence["presence"]["presence"][client];
    assert_eq!(
        (me["user"].clone(), me["conn_info"].clone()),
        (json!("renamed"), json!({"via": "plugin"})),
        "{presence}"
    );

    let reply = aliased.call(json!({"subscribe": {"channel": "secret"}})).await?;
    assert_eq!(reply["error"], json!({"code": 4031, "message": "secret channel"}));

    let reply = aliased.call(json!({"rpc": {"method": "echo", "data": {"ping": 1}}})).await?;
    assert_eq!(reply["rpc"]["data"], json!({"ping": 1}), "{reply}");
    let reply = aliased.call(json!({"rpc": {"method": "nope"}})).await?;
    assert_eq!(reply["error"]["code"], json!(104));

    publish(&mut aliased, "chat:room", json!({"n": 1})).await?;
    // Events arrive in batches off the hot path: poll the plugin's counts.
    let deadline = Instant::now() + WAIT;
    let counts = loop {
        let reply = aliased.call(json!({"rpc": {"method": "events"}})).await?;
        let counts = reply["rpc"]["data"].clone();
        if counts["publish"] == json!(1) || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(counts["connect"], json!(1), "{counts}");
    assert_eq!(counts["subscribe"], json!(1), "{counts}");
    assert_eq!(counts["join"], json!(1), "{counts}");
    assert_eq!(counts["occupied"], json!(1), "{counts}");
    assert_eq!(counts["publish"], json!(1), "{counts}");
    gw.shutdown().await
}

#[tokio::test]
async fn infinite_loop_is_stopped_within_the_timeout_and_on_error_applies() -> anyhow::Result<()> {
    let timeout_ms = 50;
    let looper = |name: &str, on_error| PluginConfig {
        timeout_ms,
        on_error,
        pool_size: 1,
        grants: vec!["log".into(), "http".into()],
        ..plugin(name, "hostile", "loop")
    };
    let config = plugin_config(
        vec![looper("loop-deny", OnError::Deny), looper("loop-pass", OnError::Pass)],
        vec![namespace("closed", &["loop-deny"]), namespace("open", &["loop-pass"]), namespace("free", &[])],
    );
    let gw = TestGateway::start_with(config).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    subscribe(&mut ws, "open:x").await?;
    subscribe(&mut ws, "free:x").await?;

    let started = Instant::now();
    let reply = publish(&mut ws, "closed:x", json!({"spin": true})).await?;
    let elapsed = started.elapsed();
    assert_eq!(reply["error"], json!({"code": 100, "message": "plugin loop-deny unavailable", "temporary": true}));
    assert!(elapsed >= Duration::from_millis(timeout_ms), "stopped early: {elapsed:?}");
    // timeout + one 1 ms tick, plus a round trip on a loaded CI box.
    assert!(elapsed < Duration::from_millis(timeout_ms + 1 + 250), "stopped late: {elapsed:?}");

    let reply = publish(&mut ws, "open:x", json!({"spin": "pass"})).await?;
    assert_eq!(reply.get("error"), None, "on_error pass publishes: {reply}");
    assert_eq!(next_data(&mut ws, "open:x").await?, json!({"spin": "pass"}));

    // The gateway keeps serving others, and the plugin serves healthy calls.
    let started = Instant::now();
    publish(&mut ws, "free:x", json!(1)).await?;
    assert_eq!(next_data(&mut ws, "free:x").await?, json!(1));
    assert!(started.elapsed() < Duration::from_millis(250), "other traffic slowed: {:?}", started.elapsed());
    let reply = publish(&mut ws, "closed:x", json!("ok")).await?;
    assert_eq!(reply["publish"], json!({}), "a fresh instance serves the next call: {reply}");
    gw.shutdown().await
}

/// A gateway whose namespace `mem` runs the `grow` guest capped at 4 MiB,
/// with `memory_reservation_bytes` (0: wasmtime's default).
async fn grow_gateway(memory_reservation_bytes: u64) -> anyhow::Result<TestGateway> {
    let grow = PluginConfig {
        memory_max_bytes: 4 << 20,
        timeout_ms: 2000,
        pool_size: 1,
        grants: vec!["log".into(), "http".into()],
        ..plugin("grow", "hostile", "grow")
    };
    let mut config = plugin_config(vec![grow], vec![namespace("mem", &["grow"])]);
    config.plugin_runtime.memory_reservation_bytes = memory_reservation_bytes;
    TestGateway::start_with(config).await
}

/// A call that grows memory past the cap fails; the next one succeeds.
async fn assert_growth_is_refused(ws: &mut WsClient) -> anyhow::Result<()> {
    let reply = publish(ws, "mem:x", json!({"hoard": true})).await?;
    assert_eq!(reply["error"], json!({"code": 100, "message": "plugin grow unavailable", "temporary": true}));
    let reply = publish(ws, "mem:x", json!("ok")).await?;
    assert_eq!(reply["publish"], json!({}), "the next call runs on a fresh instance: {reply}");
    Ok(())
}

#[tokio::test]
async fn memory_growth_past_the_cap_is_refused() -> anyhow::Result<()> {
    let gw = grow_gateway(0).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    assert_growth_is_refused(&mut ws).await?;
    gw.shutdown().await
}

/// `[plugin_runtime] memory_reservation_bytes`, for hosts that cap virtual
/// memory: with 8 MiB reserved per memory (not 4 GiB and guards) plugins
/// load and run, and the memory cap still holds. (That the setting reaches
/// the engine and its compile cache key is a unit test of `runtime`.)
#[tokio::test]
async fn plugins_run_and_keep_their_memory_cap_with_a_small_reservation() -> anyhow::Result<()> {
    let gw = grow_gateway(8 << 20).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let reply = publish(&mut ws, "mem:x", json!("ok")).await?;
    assert_eq!(reply["publish"], json!({}), "the plugin runs: {reply}");
    assert_growth_is_refused(&mut ws).await?;
    gw.shutdown().await
}

#[tokio::test]
async fn a_trapped_instance_is_discarded_and_the_next_call_gets_a_fresh_one() -> anyhow::Result<()> {
    let counter = PluginConfig { pool_size: 1, on_error: OnError::Skip, ..plugin("counter", "transform", "count") };
    let gw = TestGateway::start_with(plugin_config(vec![counter], vec![namespace("count", &["counter"])])).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    subscribe(&mut ws, "count:x").await?;
    for n in 1..=2 {
        publish(&mut ws, "count:x", json!({})).await?;
        assert_eq!(next_data(&mut ws, "count:x").await?, json!({"calls": n}), "the warm instance is reused");
    }
    let reply = publish(&mut ws, "count:x", json!("panic")).await?;
    assert_eq!(reply["publish"], json!({}), "on_error skip publishes unchanged: {reply}");
    assert_eq!(next_data(&mut ws, "count:x").await?, json!("panic"));
    publish(&mut ws, "count:x", json!({})).await?;
    assert_eq!(next_data(&mut ws, "count:x").await?, json!({"calls": 1}), "the trapped instance was not reused");
    gw.shutdown().await
}

/// A one-shot HTTP server answering every request with `body`.
async fn http_server(body: &'static str) -> anyhow::Result<std::net::SocketAddr> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let response =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    Ok(addr)
}

#[tokio::test]
async fn http_fetch_reaches_allowed_hosts_only() -> anyhow::Result<()> {
    let addr = http_server(r#"{"fetched":true}"#).await?;
    let fetcher = PluginConfig {
        timeout_ms: 100,
        grants: vec!["log".into(), "http".into()],
        allowed_hosts: vec![addr.to_string()],
        ..plugin("fetcher", "hostile", "fetch")
    };
    let gw = TestGateway::start_with(plugin_config(vec![fetcher], vec![namespace("web", &["fetcher"])])).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    subscribe(&mut ws, "web:x").await?;

    let reply = publish(&mut ws, "web:x", json!("http://example.invalid/steal")).await?;
    assert_eq!(reply["error"], json!({"code": 4002, "message": "host not allowed: example.invalid"}));
    let other_port = format!("http://127.0.0.1:{}/", addr.port().wrapping_add(1));
    let reply = publish(&mut ws, "web:x", json!(other_port)).await?;
    assert_eq!(
        reply["error"]["message"],
        json!(format!("host not allowed: 127.0.0.1:{}", addr.port().wrapping_add(1)))
    );

    let reply = publish(&mut ws, "web:x", json!(format!("http://{addr}/data"))).await?;
    assert_eq!(reply.get("error"), None, "{reply}");
    assert_eq!(next_data(&mut ws, "web:x").await?, json!({"fetched": true}));
    gw.shutdown().await
}

#[tokio::test]
async fn a_plugin_importing_an_ungranted_interface_fails_the_start() -> anyhow::Result<()> {
    // Default grants leave out http, which the hostile guest imports.
    let config = plugin_config(vec![plugin("sneaky", "hostile", "pass")], vec![]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let result = tokio::time::timeout(WAIT * 6, switchboard::run(config, listener, std::future::pending())).await?;
    let error = result.expect_err("start must fail").to_string();
    assert_eq!(
        error,
        "plugin sneaky imports switchboard:plugin/http, which is not granted (grants: log, kv, metrics, clock, random)"
    );
    Ok(())
}

#[tokio::test]
async fn a_pipeline_plugin_must_export_its_hook() -> anyhow::Result<()> {
    let mut config = plugin_config(
        vec![PluginConfig { grants: vec!["log".into(), "http".into()], ..plugin("pub-only", "hostile", "pass") }],
        vec![],
    );
    config.pipelines.connect = vec!["pub-only".into()];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let result = tokio::time::timeout(WAIT * 6, switchboard::run(config, listener, std::future::pending())).await?;
    let error = result.expect_err("start must fail").to_string();
    assert_eq!(
        error,
        "plugin pub-only: does not export connect-hook: required by its place in the on-connect pipeline"
    );
    Ok(())
}

/// The `data` of what the publish pipeline of channel `x` makes of `data`.
async fn run_publish(host: &switchboard::plugin::PluginHost, data: &str) -> String {
    let message = switchboard::plugin::Message {
        channel: "x".into(),
        data: data.as_bytes().to_vec().into(),
        ..Default::default()
    };
    match host.on_publish(message).await {
        switchboard::plugin::PublishOutcome::Pass(m) => String::from_utf8_lossy(&m.data).into_owned(),
        other => format!("{other:?}"),
    }
}

/// Polls the pipeline until it answers `want` for `data`, within [`WAIT`].
async fn until_publish_gives(host: &switchboard::plugin::PluginHost, data: &str, want: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = run_publish(host, data).await;
        if got == want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_changed_file_or_reload_swaps_in_a_fresh_version_and_a_broken_one_is_refused() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("switchboard-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("counter.wasm");
    let wasm = std::fs::read(test_guest("transform")?)?;
    std::fs::write(&path, &wasm)?;
    let mut config = plugin_config(
        vec![PluginConfig {
            pool_size: 1,
            path: path.display().to_string(),
            ..plugin("counter", "transform", "count")
        }],
        vec![],
    );
    config.pipelines.publish = vec!["counter".into()];
    config.plugin_runtime.watch_interval_ms = 10;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let host =
        switchboard::plugin::PluginHost::from_config(&config, shutdown.clone(), &tokio_util::task::TaskTracker::new())
            .await?;
    assert_eq!(run_publish(&host, "{}").await, r#"{"calls":1}"#);
    assert_eq!(run_publish(&host, "{}").await, r#"{"calls":2}"#);

    // A broken file is refused; the running version keeps serving.
    std::fs::write(&path, b"not wasm")?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(run_publish(&host, "{}").await, r#"{"calls":3}"#, "the old version still serves");

    // Rewriting the file (new mtime) reloads: a new version with fresh instances.
    std::fs::write(&path, &wasm)?;
    assert_eq!(until_publish_gives(&host, "{}", r#"{"calls":1}"#).await, r#"{"calls":1}"#);

    // SIGHUP's path: reload everything on demand.
    assert_eq!(run_publish(&host, "{}").await, r#"{"calls":2}"#);
    assert!(host.reload_all().await.is_empty());
    assert_eq!(run_publish(&host, "{}").await, r#"{"calls":1}"#);
    shutdown.cancel();
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[tokio::test]
async fn repeated_faults_quarantine_the_plugin_until_a_reload() -> anyhow::Result<()> {
    let mut config = plugin_config(
        vec![PluginConfig { pool_size: 1, on_error: OnError::Skip, ..plugin("flaky", "transform", "count") }],
        vec![],
    );
    config.pipelines.publish = vec!["flaky".into()];
    config.plugin_runtime.breaker_faults = 2;
    config.plugin_runtime.breaker_backoff_ms = 300;
    config.plugin_runtime.watch_interval_ms = 0;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let host =
        switchboard::plugin::PluginHost::from_config(&config, shutdown.clone(), &tokio_util::task::TaskTracker::new())
            .await?;
    assert_eq!(run_publish(&host, "{}").await, r#"{"calls":1}"#);
    // Two consecutive traps trip the breaker (on_error skip passes the data on).
    assert_eq!(run_publish(&host, r#""panic""#).await, r#""panic""#);
    assert_eq!(run_publish(&host, r#""panic""#).await, r#""panic""#);
    // Quarantined: the plugin is not called, on_error applies at once.
    let started = Instant::now();
    assert_eq!(run_publish(&host, "{}").await, "{}", "a quarantined plugin is skipped");
    assert!(started.elapsed() < Duration::from_millis(100));
    // After the backoff the plugin is reloaded and serves again.
    assert_eq!(until_publish_gives(&host, "{}", r#"{"calls":1}"#).await, r#"{"calls":1}"#);
    shutdown.cancel();
    Ok(())
}

#[tokio::test]
async fn a_busy_pool_is_back_pressure_and_on_error_applies_after_timeout_ms() -> anyhow::Result<()> {
    // A server that accepts and never answers: the one instance stays busy
    // inside http.fetch (host time, not charged to the guest's budget).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let _ = accepted_tx.send(());
        tokio::time::sleep(WAIT).await;
        drop(stream);
    });
    let mut config = plugin_config(
        vec![PluginConfig {
            pool_size: 1,
            timeout_ms: 100,
            grants: vec!["log".into(), "http".into()],
            allowed_hosts: vec![addr.to_string()],
            ..plugin("fetcher", "hostile", "fetch")
        }],
        vec![],
    );
    config.pipelines.publish = vec!["fetcher".into()];
    config.plugin_runtime.watch_interval_ms = 0;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let host =
        switchboard::plugin::PluginHost::from_config(&config, shutdown.clone(), &tokio_util::task::TaskTracker::new())
            .await?;

    let busy = host.clone();
    let url = format!("\"http://{addr}/hang\"");
    let first = tokio::spawn(async move { run_publish(&busy, &url).await });
    tokio::time::timeout(WAIT, accepted_rx).await??;

    let started = Instant::now();
    let second = run_publish(&host, r#""ok""#).await;
    let waited = started.elapsed();
    assert_eq!(second, r#"Deny(Rejection { code: 100, reason: "plugin fetcher unavailable" })"#);
    assert!(waited >= Duration::from_millis(100), "gave up before timeout_ms: {waited:?}");
    assert!(waited < Duration::from_millis(600), "waited far past timeout_ms: {waited:?}");

    let first = tokio::time::timeout(WAIT, first).await??;
    assert_eq!(first, r#"Deny(Rejection { code: 4002, reason: "timed out after 1000 ms" })"#);
    assert_eq!(run_publish(&host, r#""ok""#).await, r#""ok""#, "the instance is free again");
    shutdown.cancel();
    Ok(())
}
