//! The Redis engine against a real Redis: two nodes sharing one Redis, and
//! failures driven for real on a `redis-server` this test starts itself.
//!
//! Reads `REDIS_URL` (default `redis://127.0.0.1:6379`). Without a reachable
//! Redis these tests are skipped, except under `CI=true`, where they fail.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use switchboard::config::{Config, EngineKind};

use crate::*;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Whether Redis answers; panics under `CI=true` when it does not.
async fn redis_available(url: &str) -> bool {
    let hostport = url.trim_start_matches("redis://").split('/').next().unwrap_or_default().to_owned();
    let ok = matches!(
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(hostport)).await,
        Ok(Ok(_))
    );
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but Redis at {url} is unreachable");
        eprintln!("skipped: Redis at {url} is unreachable");
    }
    ok
}

/// A unique key prefix, so tests sharing a Redis never see each other.
fn prefix() -> String {
    format!("sbtest-{}", uuid_like())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", std::process::id())
}

pub(crate) fn redis_config(url: &str, prefix: &str) -> Config {
    let mut config = test_config();
    config.engine.kind = EngineKind::Redis;
    config.engine.redis_url = url.to_owned();
    config.engine.redis_prefix = prefix.to_owned();
    config.engine.redis_timeout_ms = 500;
    config
}

async fn two_nodes() -> anyhow::Result<Option<(TestGateway, TestGateway)>> {
    let url = redis_url();
    if !redis_available(&url).await {
        return Ok(None);
    }
    let prefix = prefix();
    let a = TestGateway::start_with(redis_config(&url, &prefix)).await?;
    let b = TestGateway::start_with(redis_config(&url, &prefix)).await?;
    Ok(Some((a, b)))
}

async fn subscribe(ws: &mut WsClient, sub: Value) -> anyhow::Result<Value> {
    let reply = ws.call(json!({ "subscribe": sub })).await?;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    Ok(reply["subscribe"].clone())
}

/// The next publication push, skipping join/leave pushes.
async fn next_pub(ws: &mut WsClient) -> anyhow::Result<Value> {
    loop {
        let push = ws.next_push().await?;
        if push.get("pub").is_some() {
            return Ok(push);
        }
    }
}

#[tokio::test]
async fn redis_client_on_a_receives_publications_sent_to_b_in_order() -> anyhow::Result<()> {
    let Some((a, b)) = two_nodes().await? else { return Ok(()) };
    let (mut ws, _) = a.connect("alice").await?;
    let sub = subscribe(&mut ws, json!({"channel": "chat:order"})).await?;
    assert_eq!(sub["offset"], json!(null), "a new stream starts at 0: {sub}");
    for n in 1..=20u64 {
        let pos = b.api().result("publish", json!({"channel": "chat:order", "data": {"n": n}})).await?;
        assert_eq!(pos["offset"], json!(n), "{pos}");
        assert_eq!(pos["epoch"], sub["epoch"], "both nodes share the stream");
    }
    for n in 1..=20u64 {
        let push = next_pub(&mut ws).await?;
        assert_eq!(push["pub"]["offset"], json!(n), "{push}");
        assert_eq!(push["pub"]["data"], json!({"n": n}), "{push}");
    }
    Ok(())
}

#[tokio::test]
async fn redis_history_recovery_presence_and_join_leave_span_nodes() -> anyhow::Result<()> {
    let Some((a, b)) = two_nodes().await? else { return Ok(()) };
    let (mut alice, conn) = a.connect("alice").await?;
    let first = subscribe(&mut alice, json!({"channel": "chat:x"})).await?;
    let epoch = first["epoch"].clone();
    // Alice's own join, delivered through Redis.
    let join = alice.next_push().await?;
    assert_eq!(join["join"]["info"]["user"], json!("alice"), "{join}");

    // Presence written on A is visible on B.
    let presence = b.api().result("presence", json!({"channel": "chat:x"})).await?;
    assert_eq!(presence["presence"][conn["client"].as_str().unwrap()]["user"], json!("alice"), "{presence}");
    let stats = b.api().result("presence_stats", json!({"channel": "chat:x"})).await?;
    assert_eq!(stats, json!({"num_clients": 1, "num_users": 1}));

    // Bob joins on B: Alice on A sees it.
    let (mut bob, _) = b.connect("bob").await?;
    subscribe(&mut bob, json!({"channel": "chat:x"})).await?;
    let join = alice.next_push().await?;
    assert_eq!(join["join"]["info"]["user"], json!("bob"), "{join}");
    let stats = a.api().result("presence_stats", json!({"channel": "chat:x"})).await?;
    assert_eq!(stats, json!({"num_clients": 2, "num_users": 2}));

    // Publications through A appear in B's history.
    for n in 1..=3u64 {
        a.api().result("publish", json!({"channel": "chat:x", "data": {"n": n}})).await?;
    }
    let history = b.api().result("history", json!({"channel": "chat:x", "limit": -1})).await?;
    assert_eq!(offsets(&publications(&history)), vec![1, 2, 3], "{history}");
    assert_eq!(history["epoch"], epoch);

    // Bob leaves: Alice sees the leave.
    bob.call(json!({"unsubscribe": {"channel": "chat:x"}})).await?;
    loop {
        let push = alice.next_push().await?;
        if push.get("leave").is_some() {
            assert_eq!(push["leave"]["info"]["user"], json!("bob"), "{push}");
            break;
        }
    }

    // Alice drops, misses two publications sent to B, and recovers them on B.
    drop(alice);
    for n in 4..=5u64 {
        b.api().result("publish", json!({"channel": "chat:x", "data": {"n": n}})).await?;
    }
    let (mut alice, _) = b.connect("alice").await?;
    let sub = subscribe(&mut alice, json!({"channel": "chat:x", "recover": true, "offset": 3, "epoch": epoch})).await?;
    assert_eq!(sub["recovered"], json!(true), "{sub}");
    assert_eq!(offsets(&publications(&sub)), vec![4, 5], "{sub}");
    assert_eq!(sub["offset"], json!(5));
    // And live publications continue after the recovered ones, no duplicate.
    a.api().result("publish", json!({"channel": "chat:x", "data": {"n": 6}})).await?;
    let push = next_pub(&mut alice).await?;
    assert_eq!(push["pub"]["offset"], json!(6), "{push}");
    Ok(())
}

#[tokio::test]
async fn redis_idempotent_publish_spans_nodes() -> anyhow::Result<()> {
    let Some((a, b)) = two_nodes().await? else { return Ok(()) };
    let params = json!({"channel": "chat:i", "data": {"n": 1}, "idempotency_key": "k1"});
    let first = a.api().result("publish", params.clone()).await?;
    let second = b.api().result("publish", params).await?;
    assert_eq!(first, second);
    let history = a.api().result("history", json!({"channel": "chat:i", "limit": -1})).await?;
    assert_eq!(offsets(&publications(&history)), vec![1], "published once: {history}");
    Ok(())
}

/// A `redis-server` of this test's own, on a free port in a temp dir.
pub(crate) struct OwnRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    aof: bool,
    cluster: bool,
}

impl OwnRedis {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut redis = Self { port, dir: tempfile::tempdir()?, child: None, aof: false, cluster: false };
        redis.spawn().await?;
        Ok(redis)
    }

    /// A one-node Redis Cluster holding every slot: it refuses, like any
    /// cluster, a script or transaction whose keys are in different slots.
    async fn start_cluster() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut redis = Self { port, dir: tempfile::tempdir()?, child: None, aof: false, cluster: true };
        redis.spawn().await?;
        let out = redis.cli(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])?;
        anyhow::ensure!(out.trim() == "OK", "CLUSTER ADDSLOTSRANGE: {out}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !redis.cli(&["CLUSTER", "INFO"])?.contains("cluster_state:ok") {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "the cluster never became ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(redis)
    }

    /// Like [`start`](Self::start), with an append-only file fsynced always.
    async fn start_with_aof() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut redis = Self { port, dir: tempfile::tempdir()?, child: None, aof: true, cluster: false };
        redis.spawn().await?;
        Ok(redis)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server: no RDB, and AOF only when asked for.
    pub(crate) async fn spawn(&mut self) -> anyhow::Result<()> {
        let aof = if self.aof {
            ["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            ["--appendonly", "no", "--appendfsync", "everysec"]
        };
        let cluster: &[&str] = if self.cluster { &["--cluster-enabled", "yes"] } else { &[] };
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--save", ""])
            .args(aof)
            .args(cluster)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("redis-server did not start on {}", self.port)
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn redis_server_installed() -> bool {
    let ok = Path::new("/usr/bin/redis-server").exists()
        || Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but redis-server is not installed");
        eprintln!("skipped: redis-server is not installed");
    }
    ok
}

async fn ready_status(gw: &TestGateway) -> anyhow::Result<u16> {
    Ok(http_request(gw.addr, "GET", "/ready", &[], "").await?.status)
}

/// Polls until `/ready` answers `want`; fails after `within`.
async fn wait_ready(gw: &TestGateway, want: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if ready_status(gw).await? == want {
            return Ok(());
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "/ready never answered {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_down_fails_publishes_flips_readiness_and_a_restart_changes_the_epoch() -> anyhow::Result<()> {
    if !redis_server_installed() {
        return Ok(());
    }
    let mut redis = OwnRedis::start().await?;
    let gw = TestGateway::start_with(redis_config(&redis.url(), "down")).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let first = subscribe(&mut ws, json!({"channel": "chat:d"})).await?;
    let pos = gw.api().result("publish", json!({"channel": "chat:d", "data": {"n": 1}})).await?;
    assert_eq!(pos["offset"], json!(1));
    assert_eq!(next_pub(&mut ws).await?["pub"]["offset"], json!(1));
    wait_ready(&gw, 200, Duration::from_secs(5)).await?;

    redis.kill();
    // Never acked: the API answers error 100, and so does a client publish.
    let body = gw.api().call("publish", json!({"channel": "chat:d", "data": {"n": 2}})).await?;
    assert_eq!(body["error"]["code"], json!(100), "{body}");
    let reply = ws.call(json!({"publish": {"channel": "chat:d", "data": {"n": 2}}})).await?;
    assert_eq!(reply["error"]["code"], json!(100), "{reply}");
    wait_ready(&gw, 503, Duration::from_secs(5)).await?;

    // Back without persistence: readiness recovers, the stream restarts in a
    // new epoch, and a resume from the old position is not recovered.
    redis.spawn().await?;
    wait_ready(&gw, 200, Duration::from_secs(10)).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let pos = loop {
        let body = gw.api().call("publish", json!({"channel": "chat:d", "data": {"n": 3}})).await?;
        if let Some(result) = body.get("result") {
            break result.clone();
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "publishing never recovered: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(pos["offset"], json!(1), "{pos}");
    assert_ne!(pos["epoch"], first["epoch"], "{pos}");
    let (mut ws2, _) = gw.connect("alice").await?;
    let sub = subscribe(&mut ws2, json!({"channel": "chat:d", "recover": true, "offset": 1, "epoch": first["epoch"]}))
        .await?;
    // `recovered: false` is omitted on the wire.
    assert_eq!(sub["was_recovering"], json!(true), "{sub}");
    assert!(!sub["recovered"].as_bool().unwrap_or(false), "{sub}");
    assert_eq!(sub["epoch"], pos["epoch"], "{sub}");
    Ok(())
}

#[tokio::test]
async fn redis_pubsub_kill_forces_subscribers_to_recover_nothing_lost() -> anyhow::Result<()> {
    if !redis_server_installed() {
        return Ok(());
    }
    let redis = OwnRedis::start().await?;
    let a = TestGateway::start_with(redis_config(&redis.url(), "kill")).await?;
    let b = TestGateway::start_with(redis_config(&redis.url(), "kill")).await?;
    let (mut ws, _) = a.connect("alice").await?;
    let first = subscribe(&mut ws, json!({"channel": "chat:k"})).await?;
    b.api().result("publish", json!({"channel": "chat:k", "data": {"n": 1}})).await?;
    assert_eq!(next_pub(&mut ws).await?["pub"]["offset"], json!(1));

    // Cut every pub/sub connection and publish while A is resubscribing:
    // A either receives the publication live or its subscriber is closed
    // with 3010 — never silently skips it.
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"])?;
    for n in 2..=3u64 {
        b.api().result("publish", json!({"channel": "chat:k", "data": {"n": n}})).await?;
    }
    let mut last = 1;
    loop {
        match ws.next_frame().await {
            Ok(Frame::Close(code, _)) => {
                assert_eq!(code, 3010, "a gap closes with insufficient state");
                break;
            }
            Ok(Frame::Json(push)) => {
                if let Some(offset) = push["push"]["pub"]["offset"].as_u64() {
                    assert_eq!(offset, last + 1, "no gap and no duplicate: {push}");
                    last = offset;
                }
                if last == 3 {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    // Whatever was not delivered live is recovered.
    let (mut ws2, _) = a.connect("alice").await?;
    let sub =
        subscribe(&mut ws2, json!({"channel": "chat:k", "recover": true, "offset": last, "epoch": first["epoch"]}))
            .await?;
    assert_eq!(sub["recovered"], json!(true), "{sub}");
    let recovered = offsets(&publications(&sub));
    assert_eq!(recovered, ((last + 1)..=3).collect::<Vec<_>>(), "{sub}");
    Ok(())
}

#[tokio::test]
async fn redis_emulation_post_to_the_wrong_node_reaches_the_session() -> anyhow::Result<()> {
    let Some((a, b)) = two_nodes().await? else { return Ok(()) };
    let connect = json!({"id": 1, "connect": {"token": user_token("alice")}}).to_string();
    let mut stream =
        HttpStream::open(a.addr, "POST", "/connection/http_stream", &[("content-type", "application/json")], &connect)
            .await?;
    let reply = stream.next_json().await?.context("connect reply")?;
    let session = reply["connect"]["session"].as_str().context("session")?.to_owned();
    let node = reply["connect"]["node"].as_str().context("node")?.to_owned();

    // The load balancer sends the command post to B; B forwards it to A.
    let status =
        crate::emulate(b.addr, &session, &node, &[json!({"id": 2, "subscribe": {"channel": "chat:e"}})]).await?;
    assert_eq!(status, 204);
    loop {
        let msg = stream.next_json().await?.context("stream ended")?;
        if msg["id"] == json!(2) {
            assert!(msg.get("subscribe").is_some(), "{msg}");
            break;
        }
    }
    // A post naming a node nobody runs is 404.
    let body = json!({"session": session, "node": "no-such-node", "data": "{}"}).to_string();
    let resp = http_request(b.addr, "POST", "/emulation", &[], &body).await?;
    assert_eq!(resp.status, 404);

    // /api/info on either node lists both.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = b.api().result("info", json!({})).await?;
        let uids: Vec<&str> = info["nodes"].as_array().unwrap().iter().filter_map(|n| n["uid"].as_str()).collect();
        if uids.len() == 2 && uids.contains(&node.as_str()) {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "info never listed both nodes: {info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test]
async fn redis_restart_with_aof_keeps_offsets_and_resumes_recover() -> anyhow::Result<()> {
    if !redis_server_installed() {
        return Ok(());
    }
    let mut redis = OwnRedis::start_with_aof().await?;
    let gw = TestGateway::start_with(redis_config(&redis.url(), "aof")).await?;
    let first = gw.api().result("publish", json!({"channel": "chat:a", "data": {"n": 1}})).await?;
    redis.kill();
    redis.spawn().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let second = loop {
        let body = gw.api().call("publish", json!({"channel": "chat:a", "data": {"n": 2}})).await?;
        if let Some(result) = body.get("result") {
            break result.clone();
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "publishing never recovered: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(second["offset"], json!(2), "offsets continue: {second}");
    assert_eq!(second["epoch"], first["epoch"], "same epoch: {second}");
    let (mut ws, _) = gw.connect("alice").await?;
    let sub =
        subscribe(&mut ws, json!({"channel": "chat:a", "recover": true, "offset": 1, "epoch": first["epoch"]})).await?;
    assert_eq!(sub["recovered"], json!(true), "{sub}");
    assert_eq!(offsets(&publications(&sub)), vec![2], "{sub}");
    Ok(())
}

#[tokio::test]
async fn redis_client_pause_fails_publishes_fast_then_recovers() -> anyhow::Result<()> {
    if !redis_server_installed() {
        return Ok(());
    }
    let redis = OwnRedis::start().await?;
    let gw = TestGateway::start_with(redis_config(&redis.url(), "pause")).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    subscribe(&mut ws, json!({"channel": "chat:p"})).await?;
    gw.api().result("publish", json!({"channel": "chat:p", "data": {"n": 1}})).await?;
    assert_eq!(next_pub(&mut ws).await?["pub"]["offset"], json!(1));

    redis.cli(&["CLIENT", "PAUSE", "3000", "ALL"])?;
    let started = tokio::time::Instant::now();
    let body = gw.api().call("publish", json!({"channel": "chat:p", "data": {"n": 2}})).await?;
    assert_eq!(body["error"]["code"], json!(100), "not acked while Redis is paused: {body}");
    assert!(started.elapsed() < Duration::from_secs(2), "fails within the timeout, not after the pause");

    // After the pause: publishing works, and the subscriber either got the
    // timed-out publication (Redis ran it late) in order, or never sees it
    // — and nothing after it is skipped silently.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let pos = loop {
        let body = gw.api().call("publish", json!({"channel": "chat:p", "data": {"n": 3}})).await?;
        if let Some(result) = body.get("result") {
            break result.clone();
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "publishing never recovered: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let top = pos["offset"].as_u64().context("offset")?;
    let mut last = 1;
    while last < top {
        let push = next_pub(&mut ws).await?;
        let offset = push["pub"]["offset"].as_u64().context("offset")?;
        assert_eq!(offset, last + 1, "in order, no gap: {push}");
        last = offset;
    }
    Ok(())
}

/// A Protobuf `Publication` with data `{}` (field 4, length 2), as the engine stores it.
const LOST_PUBLICATION: &str = "\"\u{2}{}";

/// A publication that reaches the stream but not pub/sub (what a dropped
/// pub/sub message looks like): the next live one jumps, the subscriber is
/// closed with 3010, and its resume recovers both.
#[tokio::test]
async fn redis_offset_jump_closes_subscribers_with_3010_and_they_recover() -> anyhow::Result<()> {
    if !redis_server_installed() {
        return Ok(());
    }
    let redis = OwnRedis::start().await?;
    let gw = TestGateway::start_with(redis_config(&redis.url(), "jump")).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let first = subscribe(&mut ws, json!({"channel": "chat:j"})).await?;
    gw.api().result("publish", json!({"channel": "chat:j", "data": {"n": 1}})).await?;
    assert_eq!(next_pub(&mut ws).await?["pub"]["offset"], json!(1));

    // Offset 2 is stored, but its live message is "lost".
    let script = "local o = redis.call('HINCRBY', KEYS[1], 's', 1) \
                  redis.call('XADD', KEYS[2], o .. '-0', 'd', ARGV[1], 't', redis.call('TIME')[1] .. '000') return o";
    let out = redis.cli(&["EVAL", script, "2", "jump.meta.{chat:j}", "jump.stream.{chat:j}", LOST_PUBLICATION])?;
    assert_eq!(out.trim(), "2", "{out}");
    gw.api().result("publish", json!({"channel": "chat:j", "data": {"n": 3}})).await?;
    let (code, _) = ws.expect_close().await?;
    assert_eq!(code, 3010, "the jump 1 -> 3 closes with insufficient state");

    let (mut ws2, _) = gw.connect("alice").await?;
    let sub = subscribe(&mut ws2, json!({"channel": "chat:j", "recover": true, "offset": 1, "epoch": first["epoch"]}))
        .await?;
    assert_eq!(sub["recovered"], json!(true), "{sub}");
    assert_eq!(offsets(&publications(&sub)), vec![2, 3], "{sub}");
    Ok(())
}

/// A lost live message that no later publication reveals is found by the
/// periodic check against the stream top.
#[tokio::test]
async fn redis_position_check_finds_a_lost_last_message() -> anyhow::Result<()> {
    if !redis_server_installed() {
        return Ok(());
    }
    let redis = OwnRedis::start().await?;
    let gw = TestGateway::start_with(redis_config(&redis.url(), "check")).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    subscribe(&mut ws, json!({"channel": "chat:c"})).await?;
    gw.api().result("publish", json!({"channel": "chat:c", "data": {"n": 1}})).await?;
    assert_eq!(next_pub(&mut ws).await?["pub"]["offset"], json!(1));
    let script = "local o = redis.call('HINCRBY', KEYS[1], 's', 1) \
                  redis.call('XADD', KEYS[2], o .. '-0', 'd', ARGV[1], 't', redis.call('TIME')[1] .. '000') return o";
    redis.cli(&["EVAL", script, "2", "check.meta.{chat:c}", "check.stream.{chat:c}", LOST_PUBLICATION])?;
    let (code, _) = ws.expect_close().await?;
    assert_eq!(code, 3010, "closed within two checks (gap_check_interval_secs = 1)");
    Ok(())
}

#[tokio::test]
async fn redis_urls_shard_channels_across_instances() -> anyhow::Result<()> {
    if !redis_server_installed() {
        return Ok(());
    }
    let (r1, r2) = (OwnRedis::start().await?, OwnRedis::start().await?);
    let sharded = || {
        let mut config = redis_config(&r1.url(), "shard");
        config.engine.redis_urls = vec![r1.url(), r2.url()];
        config
    };
    let a = TestGateway::start_with(sharded()).await?;
    let b = TestGateway::start_with(sharded()).await?;
    let (mut ws, _) = a.connect("alice").await?;
    let channels: Vec<String> = (0..16).map(|i| format!("chat:s{i}")).collect();
    for channel in &channels {
        subscribe(&mut ws, json!({"channel": channel})).await?;
    }
    for channel in &channels {
        let pos = b.api().result("publish", json!({"channel": channel, "data": {"c": channel}})).await?;
        assert_eq!(pos["offset"], json!(1), "{pos}");
    }
    for _ in &channels {
        let push = next_pub(&mut ws).await?;
        assert_eq!(push["pub"]["data"]["c"], push["channel"], "{push}");
    }
    // Both instances hold some of the streams.
    for redis in [&r1, &r2] {
        let keys = redis.cli(&["--scan", "--pattern", "shard.stream.*"])?;
        assert!(keys.lines().count() > 0, "an instance holds no stream: {keys:?}");
    }
    let total = r1.cli(&["--scan", "--pattern", "shard.stream.*"])?.lines().count()
        + r2.cli(&["--scan", "--pattern", "shard.stream.*"])?.lines().count();
    assert_eq!(total, channels.len(), "each stream lives on exactly one instance");
    Ok(())
}

/// Publisher exclusion travels with the live message to other nodes, and
/// each node sends its delta subscribers fossil deltas of what Redis
/// delivered to it.
#[tokio::test]
async fn redis_publisher_exclusion_and_fossil_delta_span_nodes() -> anyhow::Result<()> {
    let url = redis_url();
    if !redis_available(&url).await {
        return Ok(());
    }
    let prefix = prefix();
    let config = || {
        let mut config = redis_config(&url, &prefix);
        config.channels.namespaces.push(switchboard::config::NamespaceConfig {
            name: "score".into(),
            history_size: 10,
            history_ttl_secs: 300,
            force_recovery: true,
            allowed_delta_types: vec!["fossil".into()],
            ..Default::default()
        });
        config
    };
    let a = TestGateway::start_with(config()).await?;
    let b = TestGateway::start_with(config()).await?;
    let (mut alice, connect) = a.connect("alice").await?;
    let alice_id = connect["client"].as_str().context("client id")?.to_owned();
    let (mut bob, _) = b.connect("bob").await?;
    subscribe(&mut alice, json!({"channel": "chat:x"})).await?;
    subscribe(&mut bob, json!({"channel": "chat:x"})).await?;
    let api = b.api();
    api.result(
        "publish",
        json!({"channel": "chat:x", "data": {"n": 1}, "client": alice_id, "exclude_publisher": true}),
    )
    .await?;
    api.result("publish", json!({"channel": "chat:x", "data": {"n": 2}})).await?;
    assert_eq!(next_pub(&mut alice).await?["pub"]["data"], json!({"n": 2}), "alice on node a is skipped once");
    assert_eq!(next_pub(&mut bob).await?["pub"]["data"], json!({"n": 1}));
    assert_eq!(next_pub(&mut bob).await?["pub"]["data"], json!({"n": 2}));

    let sub = subscribe(&mut alice, json!({"channel": "score:1", "delta": "fossil"})).await?;
    assert_eq!(sub["delta"], json!(true), "{sub}");
    let docs: Vec<Value> = (1..=2)
        .map(|n| json!({"minute": n, "text": "a long commentary line that stays the same ".repeat(8)}))
        .collect();
    for doc in &docs {
        api.result("publish", json!({"channel": "score:1", "data": doc})).await?;
    }
    let first = next_pub(&mut alice).await?["pub"].clone();
    assert!(first.get("delta").is_none(), "{first}");
    let base = first["data"].as_str().context("string data")?.to_owned();
    assert_eq!(serde_json::from_str::<Value>(&base)?, docs[0]);
    let second = next_pub(&mut alice).await?["pub"].clone();
    assert_eq!(second["delta"], json!(true), "{second}");
    let rebuilt = fossil_delta::apply(base.as_bytes(), second["data"].as_str().context("delta")?.as_bytes())
        .map_err(|e| anyhow::anyhow!("bad delta: {e:?}"))?;
    assert_eq!(serde_json::from_slice::<Value>(&rebuilt)?, docs[1]);
    Ok(())
}

/// A node that dies without any cleanup (its runtime dropped, as SIGKILL
/// would) leaves presence entries nobody removes: they expire within
/// `presence_ttl_secs`, while the entries of a live node outlast it.
/// Join/leave are not promised for a dead node's clients (no node is left
/// to announce them), so none is checked.
#[tokio::test]
async fn redis_presence_of_a_killed_node_expires_within_the_ttl() -> anyhow::Result<()> {
    let url = redis_url();
    if !redis_available(&url).await {
        return Ok(());
    }
    const TTL: Duration = Duration::from_secs(3);
    let mut config = redis_config(&url, &prefix());
    config.engine.presence_ttl_secs = TTL.as_secs();
    let a = TestGateway::start_with(config.clone()).await?;
    let b = TestGateway::start_killable(config)?;
    let (mut alice, alice_conn) = a.connect("alice").await?;
    subscribe(&mut alice, json!({"channel": "chat:dead"})).await?;
    let (mut bob, bob_conn) = b.connect("bob").await?;
    subscribe(&mut bob, json!({"channel": "chat:dead"})).await?;
    let (alice_id, bob_id) =
        (alice_conn["client"].as_str().context("client")?, bob_conn["client"].as_str().context("client")?);
    let clients = || async {
        let presence = a.api().result("presence", json!({"channel": "chat:dead"})).await?;
        let mut ids: Vec<String> = presence["presence"].as_object().context("presence")?.keys().cloned().collect();
        ids.sort();
        anyhow::Ok(ids)
    };
    let mut both = vec![alice_id.to_owned(), bob_id.to_owned()];
    both.sort();

    // The subscribe reply precedes the presence write: wait for both.
    eventually(WAIT, "both presence entries", || async { Ok(Some(clients().await?).filter(|ids| ids == &both)) })
        .await?;
    // While B lives it refreshes Bob's entry: it outlasts the TTL.
    let outlast = tokio::time::Instant::now() + TTL + Duration::from_secs(1);
    while tokio::time::Instant::now() < outlast {
        assert_eq!(clients().await?, both, "a live node's entries stay");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    b.kill().await?;
    let killed = tokio::time::Instant::now();
    // Bob's socket closed with the node; his entry stays until it expires.
    while let Ok(Frame::Json(_)) = bob.next_frame().await {}
    let margin = Duration::from_secs(1);
    loop {
        let ids = clients().await?;
        if ids == [alice_id] {
            break;
        }
        assert_eq!(ids, both, "only Bob's entry may go");
        assert!(killed.elapsed() < TTL + margin, "Bob's entry outlived presence_ttl_secs: {ids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = a.api().result("presence_stats", json!({"channel": "chat:dead"})).await?;
    assert_eq!(stats, json!({"num_clients": 1, "num_users": 1}));
    Ok(())
}

/// Polls `f` until it returns `Some`, for up to `within`.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{what} did not happen within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The presence entries of `channel` as seen through `gw`'s API, sorted by
/// user; `None` while the API answers an error (Redis still coming back).
async fn presence_users(gw: &TestGateway, channel: &str) -> anyhow::Result<Option<Vec<String>>> {
    let body = gw.api().call("presence", json!({"channel": channel})).await?;
    let Some(presence) = body["result"]["presence"].as_object() else { return Ok(None) };
    let mut users: Vec<String> = presence.values().filter_map(|i| i["user"].as_str().map(str::to_owned)).collect();
    users.sort();
    Ok(Some(users))
}

/// A leave and a presence removal made while Redis is down are not lost:
/// they wait in the node's queue and are sent, in order, once Redis is
/// back (the old fire-and-forget tasks failed at once and dropped them,
/// leaving the leave unseen and the entry until `presence_ttl_secs`).
#[tokio::test]
async fn redis_leave_and_presence_removal_during_an_outage_are_sent_when_redis_returns() -> anyhow::Result<()> {
    if !redis_server_installed() {
        return Ok(());
    }
    // AOF: presence survives the restart, so a lost removal would show.
    let mut redis = OwnRedis::start_with_aof().await?;
    let a = TestGateway::start_with(redis_config(&redis.url(), "outage")).await?;
    let b = TestGateway::start_with(redis_config(&redis.url(), "outage")).await?;
    let (mut alice, _) = b.connect("alice").await?;
    subscribe(&mut alice, json!({"channel": "chat:o"})).await?;
    assert_eq!(alice.next_push().await?["join"]["info"]["user"], json!("alice"));
    let (mut bob, _) = b.connect("bob").await?;
    subscribe(&mut bob, json!({"channel": "chat:o"})).await?;
    assert_eq!(alice.next_push().await?["join"]["info"]["user"], json!("bob"));
    assert_eq!(presence_users(&a, "chat:o").await?, Some(vec!["alice".to_owned(), "bob".to_owned()]));

    redis.kill();
    wait_ready(&b, 503, Duration::from_secs(5)).await?;
    let reply = bob.call(json!({"unsubscribe": {"channel": "chat:o"}})).await?;
    assert!(reply.get("unsubscribe").is_some(), "unsubscribing needs no Redis: {reply}");

    redis.spawn().await?;
    // The leave reaches Alice once Redis and B's pub/sub are back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let leave = loop {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the leave never arrived");
        match alice.next_frame().await {
            Ok(Frame::Json(v)) if v["push"].get("leave").is_some() => break v["push"].clone(),
            Ok(Frame::Json(v)) => assert!(v["push"].get("join").is_none(), "no join was made: {v}"),
            Ok(Frame::Close(code, reason)) => anyhow::bail!("alice closed {code} {reason:?}"),
            // A quiet 5 s while Redis restarts; keep waiting to the deadline.
            Err(_) => {}
        }
    };
    assert_eq!(leave["leave"]["info"]["user"], json!("bob"), "{leave}");
    // And Bob's entry is gone for every node, long before its 60 s TTL.
    let alone = eventually(Duration::from_secs(10), "the presence removal", || async {
        Ok(presence_users(&a, "chat:o").await?.filter(|users| users == &["alice"]))
    })
    .await?;
    assert_eq!(alone, ["alice"]);
    Ok(())
}

/// On a Redis Cluster (one node holding every slot) each script and
/// transaction touches keys of one slot only: publish with history,
/// recovery, presence, join/leave and the node registry all work, where
/// keys without the `{channel}` hash tag were refused with CROSSSLOT.
#[tokio::test]
async fn redis_keys_of_one_channel_share_a_cluster_slot() -> anyhow::Result<()> {
    if !redis_server_installed() {
        return Ok(());
    }
    let redis = OwnRedis::start_cluster().await?;
    let gw = TestGateway::start_with(redis_config(&redis.url(), "cl")).await?;
    let (mut alice, conn) = gw.connect("alice").await?;
    let first = subscribe(&mut alice, json!({"channel": "chat:slot"})).await?;
    assert_eq!(alice.next_push().await?["join"]["info"]["user"], json!("alice"));
    for n in 1..=3u64 {
        let pos = gw.api().result("publish", json!({"channel": "chat:slot", "data": {"n": n}})).await?;
        assert_eq!(pos["offset"], json!(n), "{pos}");
        assert_eq!(next_pub(&mut alice).await?["pub"]["offset"], json!(n));
    }
    let presence = gw.api().result("presence", json!({"channel": "chat:slot"})).await?;
    assert_eq!(presence["presence"][conn["client"].as_str().context("client")?]["user"], json!("alice"));
    let (mut ws2, _) = gw.connect("alice").await?;
    let sub =
        subscribe(&mut ws2, json!({"channel": "chat:slot", "recover": true, "offset": 1, "epoch": first["epoch"]}))
            .await?;
    assert_eq!(sub["recovered"], json!(true), "{sub}");
    assert_eq!(offsets(&publications(&sub)), vec![2, 3], "{sub}");
    // A channel name with braces gets a hashed tag, still one slot.
    let pos = gw.api().result("publish", json!({"channel": "chat:}{", "data": {}})).await?;
    assert_eq!(pos["offset"], json!(1), "{pos}");
    // The heartbeat's transaction (two registry keys) went through.
    let registered = eventually(Duration::from_secs(10), "the heartbeat", || async {
        Ok(Some(redis.cli(&["HLEN", "cl.nodes.all.{registry}"])?).filter(|n| n.trim() == "1"))
    })
    .await?;
    assert_eq!(registered.trim(), "1");
    // The keys really are tagged: the old layout would not have been found.
    assert_eq!(redis.cli(&["EXISTS", "cl.stream.{chat:slot}", "cl.meta.{chat:slot}"])?.trim(), "2");
    Ok(())
}
