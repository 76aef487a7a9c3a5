//! Resume chaos: sequential publishers; subscribers spread over WebSocket,
//! SSE (bidirectional emulation) and long-polling that record every delivery
//! and every (re)subscribe result; and seeded random faults. After a quiesce
//! the [`checker`] must find no anomaly.
//!
//! Two runs, both in CI with a fixed seed (`CHAOS_SEED`, `CHAOS_SECS`
//! override it):
//! - `chaos_fixed_seed`: one gateway process on disk history (`fsync` batch
//!   2 ms). Faults: client drops, half-open clients that stop reading, slow
//!   consumers (on every transport), gateway SIGTERM and SIGKILL with
//!   restarts on the same data.
//! - `chaos_redis_fixed_seed`: two gateway processes on the Redis engine,
//!   sharing a `redis-server` this test starts itself on a free port,
//!   without persistence (`--save '' --appendonly no`). Faults: the client
//!   faults above, `CLIENT KILL TYPE pubsub`, Redis restarts (kill, start
//!   again on the same port), and a gateway SIGKILL or SIGTERM with restart.
//!   A Redis restart loses every stream on purpose: that is the case where
//!   continuity is really lost, and it must reach subscribers as a new epoch
//!   (3010, then `recovered: false`), never as silent loss.
//!
//! `chaos_soak` (`--ignored`) runs more seeds for longer on both. The seed is
//! printed, and every fault is logged with its time.

mod checker;
mod client;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use switchboard::config::{Config, FsyncPolicy};
use tokio::sync::mpsc;

use self::checker::{Event, FinalChannel, Outcome, Publish};
use self::client::{Conn, Incoming, SLOW_READ, Transport};
use super::redis::OwnRedis;
use crate::GatewayProcess;

const CHANNELS: [&str; 3] = ["chat:chaos0", "chat:chaos1", "chat:chaos2"];
/// Two per transport: subscriber `i` uses `Transport::ALL[i % 3]`.
const SUBSCRIBERS: usize = 6;

/// Where history lives, and so which faults apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    /// One gateway process, memory engine with disk history.
    Disk,
    /// Two gateway processes on the Redis engine, on the test's own Redis.
    Redis,
}

/// What the fault scheduler tells one subscriber.
#[derive(Debug, Clone, Copy)]
enum ClientFault {
    /// Close the connection at once (a long-poll client abandons its session).
    Drop,
    /// Stop reading (and polling) for this long; the connection stays open.
    HalfOpen(Duration),
    /// Take [`SLOW_READ`] per message for this long.
    Slow(Duration),
}

/// One fault the scheduler can draw.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Drop,
    HalfOpen,
    Slow,
    GatewayKill,
    GatewayTerm,
    RedisKillPubsub,
    RedisRestart,
}

/// The draws per engine (an entry twice is twice as likely).
const DISK_FAULTS: [Fault; 10] = [
    Fault::Drop,
    Fault::Drop,
    Fault::Drop,
    Fault::HalfOpen,
    Fault::HalfOpen,
    Fault::Slow,
    Fault::Slow,
    Fault::GatewayKill,
    Fault::GatewayKill,
    Fault::GatewayTerm,
];
const REDIS_FAULTS: [Fault; 10] = [
    Fault::Drop,
    Fault::Drop,
    Fault::HalfOpen,
    Fault::Slow,
    Fault::RedisKillPubsub,
    Fault::RedisKillPubsub,
    Fault::RedisRestart,
    Fault::RedisRestart,
    Fault::GatewayKill,
    Fault::GatewayTerm,
];

struct SubscriberLog {
    events: Mutex<Vec<Event>>,
    /// channel -> (epoch, offset) as the subscriber knows it.
    positions: Mutex<HashMap<String, (String, u64)>>,
    /// Why sessions ended before subscribing (the last few), for a failure.
    failures: Mutex<VecDeque<String>>,
}

fn seed_and_secs(default_secs: u64) -> (u64, Duration) {
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let secs = std::env::var("CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_secs);
    (seed, Duration::from_secs(secs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_fixed_seed() -> Result<()> {
    let (seed, length) = seed_and_secs(45);
    run(Engine::Disk, seed, length).await
}

/// Under `CI=true` a missing `redis-server` fails this test instead of
/// skipping it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_redis_fixed_seed() -> Result<()> {
    if !super::redis::redis_server_installed() {
        return Ok(());
    }
    let (seed, length) = seed_and_secs(40);
    run(Engine::Redis, seed, length).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: several seeds, minutes each; run with --ignored"]
async fn chaos_soak() -> Result<()> {
    let redis = super::redis::redis_server_installed();
    for seed in 2..=6 {
        run(Engine::Disk, seed, Duration::from_secs(180)).await?;
        if redis {
            run(Engine::Redis, seed, Duration::from_secs(180)).await?;
        }
    }
    Ok(())
}

/// Limits shared by both engines: whole-run history and recovery, a queue
/// small enough that a stalled reader is cut off (3008), pings that find a
/// half-open client within seconds (3012), and long polls held briefly.
fn tune(config: &mut Config) {
    config.channels.namespaces[0].history_size = 10_000;
    config.channels.namespaces[0].history_ttl_secs = 3600;
    config.client.history_max_publication_limit = 10_000;
    config.client.recovery_max_publication_limit = 10_000;
    config.client.queue_max_bytes = 16 * 1024;
    config.client.write_batch_max_bytes = 8 * 1024;
    config.client.ping_interval_secs = 2;
    config.client.pong_timeout_secs = 1;
    config.long_poll.hold_secs = 1;
    config.long_poll.session_ttl_secs = 3;
    config.server.shutdown_grace_secs = 1;
}

async fn run(engine: Engine, seed: u64, length: Duration) -> Result<()> {
    println!("chaos {engine:?}: seed {seed}, {} s of faults", length.as_secs());
    let data = tempfile::tempdir()?;
    let mut own_redis = None;
    let mut gateways = Vec::new();
    match engine {
        Engine::Disk => {
            let mut config = super::durable::disk_config(data.path(), FsyncPolicy::BatchMs(2));
            tune(&mut config);
            gateways.push(GatewayProcess::start(config).await?);
        }
        Engine::Redis => {
            let own = OwnRedis::start().await?;
            let mut config = super::redis::redis_config(&own.url(), "chaos");
            tune(&mut config);
            for _ in 0..2 {
                gateways.push(GatewayProcess::start(config.clone()).await?);
            }
            own_redis = Some(own);
        }
    }
    let addrs: Vec<SocketAddr> = gateways.iter().map(|g| g.addr).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let started = tokio::time::Instant::now();

    // Publishers: one per channel, sequential, spread over the gateways.
    let publishes: Arc<Mutex<Vec<Publish>>> = Arc::default();
    let mut publishers = Vec::new();
    for (c, channel) in CHANNELS.into_iter().enumerate() {
        let (api, stop, publishes) = (gateways[c % gateways.len()].api(), stop.clone(), publishes.clone());
        publishers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let payload = format!("{channel}/{n}");
                let params = json!({ "channel": channel, "data": { "p": payload } });
                let outcome = match api.call("publish", params).await {
                    Ok(body) => match body.get("result") {
                        Some(r) => Outcome::Acked {
                            epoch: r["epoch"].as_str().unwrap_or_default().to_owned(),
                            offset: r["offset"].as_u64().unwrap_or(0),
                        },
                        None => Outcome::Failed,
                    },
                    Err(_) => Outcome::Unknown,
                };
                let down = !matches!(outcome, Outcome::Acked { .. });
                publishes.lock().push(Publish { channel: channel.to_owned(), payload, outcome });
                // Pacing (not synchronisation): a steady stream, and no busy
                // loop while the gateway or Redis is down.
                tokio::time::sleep(Duration::from_millis(if down { 50 } else { 10 })).await;
            }
        }));
    }

    // Subscribers: transports round-robin, gateways round-robin.
    let mut logs = Vec::new();
    let mut controls = Vec::new();
    let mut subscribers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let log = Arc::new(SubscriberLog {
            events: Mutex::default(),
            positions: Mutex::default(),
            failures: Mutex::default(),
        });
        let (tx, rx) = mpsc::channel(8);
        let (transport, addr) = (transport_of(i), addrs[i % addrs.len()]);
        subscribers.push(tokio::spawn(subscriber(i, transport, addr, log.clone(), rx)));
        logs.push(log);
        controls.push(tx);
    }

    // Faults.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client_faults = [0usize; 3];
    while started.elapsed() < length {
        tokio::time::sleep(Duration::from_millis(rng.random_range(800..2000))).await;
        let at = started.elapsed().as_millis();
        let fault = match engine {
            Engine::Disk => DISK_FAULTS[rng.random_range(0..DISK_FAULTS.len())],
            Engine::Redis => REDIS_FAULTS[rng.random_range(0..REDIS_FAULTS.len())],
        };
        let client = match fault {
            Fault::Drop => Some(ClientFault::Drop),
            Fault::HalfOpen => Some(ClientFault::HalfOpen(Duration::from_millis(rng.random_range(1000..5000)))),
            Fault::Slow => Some(ClientFault::Slow(Duration::from_millis(rng.random_range(1000..4000)))),
            _ => None,
        };
        if let Some(fault) = client {
            let i = rng.random_range(0..SUBSCRIBERS);
            println!("chaos {at} ms: subscriber {i} ({:?}): {fault:?}", transport_of(i));
            client_faults[i % 3] += 1;
            let _ = controls[i].try_send(fault);
            continue;
        }
        let g = rng.random_range(0..gateways.len());
        match fault {
            Fault::GatewayKill => {
                println!("chaos {at} ms: gateway {g} SIGKILL + restart");
                gateways[g].kill().await?;
                gateways[g].restart().await?;
            }
            Fault::GatewayTerm => {
                println!("chaos {at} ms: gateway {g} SIGTERM + restart");
                gateways[g].terminate().await?;
                gateways[g].restart().await?;
            }
            Fault::RedisKillPubsub => {
                let own = own_redis.as_ref().context("redis")?;
                let killed = kill_pubsub_clients(&own.url()).await?;
                println!("chaos {at} ms: redis CLIENT KILL TYPE pubsub ({killed} connections)");
            }
            Fault::RedisRestart => {
                println!("chaos {at} ms: redis restart (no persistence: every stream is lost)");
                let own = own_redis.as_mut().context("redis")?;
                own.kill();
                own.spawn().await?;
            }
            Fault::Drop | Fault::HalfOpen | Fault::Slow => unreachable!("handled above"),
        }
    }

    // Quiesce: publishers stop, subscribers catch up with the tops.
    println!("chaos: quiesce");
    let publishing = publishers.len();
    stop.store(true, Ordering::Relaxed);
    for p in publishers {
        p.await?;
    }
    let mut finals = BTreeMap::new();
    for channel in CHANNELS {
        let result = gateways[0].api().result("history", json!({ "channel": channel, "limit": 10_000 })).await?;
        let history = crate::publications(&result)
            .iter()
            .map(|p| (p["offset"].as_u64().unwrap_or(0), p["data"]["p"].as_str().unwrap_or_default().to_owned()))
            .collect();
        let last = FinalChannel {
            epoch: result["epoch"].as_str().context("epoch")?.to_owned(),
            top: result["offset"].as_u64().unwrap_or(0),
            history,
        };
        finals.insert(channel.to_owned(), last);
    }
    let quiesced = tokio::time::Instant::now();
    let deadline = quiesced + Duration::from_secs(20);
    loop {
        let caught_up = logs.iter().all(|log| {
            let positions = log.positions.lock();
            finals.iter().all(|(ch, f)| positions.get(ch) == Some(&(f.epoch.clone(), f.top)))
        });
        if caught_up || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let catch_up = quiesced.elapsed();
    for s in subscribers {
        s.abort();
    }
    for gw in &mut gateways {
        gw.terminate().await?;
    }

    let publishes = publishes.lock().clone();
    let events: Vec<Vec<Event>> = logs.iter().map(|l| l.events.lock().clone()).collect();
    let count = |f: fn(&Outcome) -> bool| publishes.iter().filter(|p| f(&p.outcome)).count();
    println!(
        "chaos {engine:?}: seed {seed}: {publishing} publishers, {} acked, {} failed, {} unknown; caught up {} ms \
         after quiesce",
        count(|o| matches!(o, Outcome::Acked { .. })),
        count(|o| *o == Outcome::Failed),
        count(|o| *o == Outcome::Unknown),
        catch_up.as_millis(),
    );
    for (t, transport) in Transport::ALL.iter().enumerate() {
        let mine = || events.iter().enumerate().filter(move |(i, _)| i % 3 == t).flat_map(|(_, e)| e);
        let delivered = mine().filter(|e| matches!(e, Event::Publication { .. })).count();
        let subscribes = mine().filter(|e| matches!(e, Event::Subscribed { .. })).count();
        let recovered = mine().filter(|e| matches!(e, Event::Subscribed { recovered: true, .. })).count();
        let epoch_changes = epoch_changes(events.iter().enumerate().filter(|(i, _)| i % 3 == t).map(|(_, e)| e));
        let mut codes: BTreeMap<Option<u16>, usize> = BTreeMap::new();
        for event in mine() {
            if let Event::Disconnected { code } = event {
                *codes.entry(*code).or_default() += 1;
            }
        }
        let disconnects: usize = codes.values().sum();
        println!(
            "chaos {engine:?}: {transport:?}: {} client faults, {disconnects} disconnects (by code {codes:?}), \
             {subscribes} subscribes ({recovered} recovered, {epoch_changes} declared epoch changes), {delivered} live \
             deliveries",
            client_faults[t]
        );
        assert!(delivered > 100, "{transport:?} subscribers barely received anything");
        assert!(client_faults[t] > 0 && disconnects > 0, "no fault reached a {transport:?} subscriber");
        assert!(recovered > 0, "no {transport:?} subscriber ever resumed with recovered: true");
        if own_redis.is_some() {
            assert!(epoch_changes > 0, "no Redis restart reached a {transport:?} subscriber as a new epoch");
        }
    }
    assert!(count(|o| matches!(o, Outcome::Acked { .. })) > 100, "the workload barely ran");
    let anomalies = checker::check(&publishes, &events, &finals);
    if !anomalies.is_empty() {
        // Why sessions could not subscribe, and what the gateways
        // complained about (a panicking session task logs no level), for
        // whoever reads the failure.
        for (i, log) in logs.iter().enumerate() {
            for reason in log.failures.lock().iter() {
                eprintln!("subscriber {i}: session failed: {reason}");
            }
        }
        for (g, gateway) in gateways.iter().enumerate() {
            let notable = |l: &&str| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked");
            for line in gateway.log().lines().filter(notable) {
                eprintln!("gateway {g}: {line}");
            }
        }
    }
    assert!(
        anomalies.is_empty(),
        "{engine:?} seed {seed}: {} anomalies, first: {:#?}",
        anomalies.len(),
        &anomalies[..anomalies.len().min(10)]
    );
    Ok(())
}

/// How many subscribe replies, over these subscribers, declared a new epoch
/// for a channel the subscriber already had a position in.
fn epoch_changes<'a>(subscribers: impl Iterator<Item = &'a Vec<Event>>) -> usize {
    let mut changes = 0;
    for events in subscribers {
        let mut epochs: HashMap<&str, &str> = HashMap::new();
        for event in events {
            if let Event::Subscribed { channel, epoch, .. } = event
                && epochs.insert(channel, epoch).is_some_and(|before| before != epoch)
            {
                changes += 1;
            }
        }
    }
    changes
}

fn transport_of(i: usize) -> Transport {
    Transport::ALL[i % Transport::ALL.len()]
}

/// `CLIENT KILL TYPE pubsub` on the test's Redis: every node loses its live
/// feed at once. Returns how many connections were killed.
async fn kill_pubsub_clients(url: &str) -> Result<i64> {
    let client = ::redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    Ok(::redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut conn).await?)
}

/// One subscriber: connects, (re)subscribes to every channel with recovery
/// from its last position, records everything, and obeys faults.
async fn subscriber(
    i: usize,
    transport: Transport,
    addr: SocketAddr,
    log: Arc<SubscriberLog>,
    mut faults: mpsc::Receiver<ClientFault>,
) {
    // Like an SDK, a client whose session fails before it has subscribed
    // backs off (doubling from 50 ms to 1 s) instead of reconnecting in a
    // tight loop; the checker still demands that it catches up.
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut conn = match Conn::open(transport, addr, &format!("sub{i}")).await {
            Ok(conn) => conn,
            Err(_) => {
                // Pacing while the gateway is down.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (code, subscribed) = session(&mut conn, &log, &mut faults).await;
        log.events.lock().push(Event::Disconnected { code });
        if subscribed {
            backoff = Duration::from_millis(50);
        } else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

/// Runs one connection until it ends; returns the close code, if any, and
/// whether every channel was subscribed.
async fn session(
    conn: &mut Conn,
    log: &SubscriberLog,
    faults: &mut mpsc::Receiver<ClientFault>,
) -> (Option<u16>, bool) {
    for channel in CHANNELS {
        let known = log.positions.lock().get(channel).cloned();
        let mut subscribe = json!({ "channel": channel });
        if let Some((epoch, offset)) = &known {
            subscribe["recover"] = json!(true);
            subscribe["epoch"] = json!(epoch);
            subscribe["offset"] = json!(offset);
        }
        let reply = match conn.call(json!({ "subscribe": subscribe })).await {
            Ok(reply) => reply,
            Err(e) => return failed(log, format!("subscribe {channel}: {e:#}")),
        };
        let Some(result) = reply.get("subscribe") else {
            return failed(log, format!("subscribe {channel}: {reply}"));
        };
        let epoch = result["epoch"].as_str().unwrap_or_default().to_owned();
        let top = result["offset"].as_u64().unwrap_or(0);
        let publications: Vec<(u64, String)> = crate::publications(result)
            .iter()
            .map(|p| (p["offset"].as_u64().unwrap_or(0), p["data"]["p"].as_str().unwrap_or_default().to_owned()))
            .collect();
        let recovered = result["recovered"].as_bool().unwrap_or(false);
        log.events.lock().push(Event::Subscribed {
            channel: channel.to_owned(),
            epoch: epoch.clone(),
            top,
            recovered,
            publications,
        });
        log.positions.lock().insert(channel.to_owned(), (epoch, top));
    }
    let mut slow_until = None;
    loop {
        if let Ok(fault) = faults.try_recv() {
            match fault {
                ClientFault::Drop => return (None, true),
                ClientFault::HalfOpen(d) => tokio::time::sleep(d).await,
                ClientFault::Slow(d) => slow_until = Some(tokio::time::Instant::now() + d),
            }
        }
        if slow_until.is_some_and(|t| tokio::time::Instant::now() < t) {
            tokio::time::sleep(SLOW_READ).await;
        }
        match conn.next().await {
            Ok(Incoming::Message(message)) => record_push(log, &message),
            Ok(Incoming::Closed(code)) => return (code, true),
            // Quiet for a while (the gateway may be restarting): look at the faults again.
            Ok(Incoming::Quiet) => {}
            Err(_) => return (None, true),
        }
    }
}

/// Keeps why a session could not subscribe (the last 5 reasons).
fn failed(log: &SubscriberLog, reason: String) -> (Option<u16>, bool) {
    let mut failures = log.failures.lock();
    if failures.len() == 5 {
        failures.pop_front();
    }
    failures.push_back(reason);
    (None, false)
}

fn record_push(log: &SubscriberLog, push: &Value) {
    let push = push.get("push").unwrap_or(push);
    let (Some(channel), Some(publication)) = (push["channel"].as_str(), push.get("pub")) else { return };
    let offset = publication["offset"].as_u64().unwrap_or(0);
    let payload = publication["data"]["p"].as_str().unwrap_or_default().to_owned();
    log.events.lock().push(Event::Publication { channel: channel.to_owned(), offset, payload });
    if let Some(position) = log.positions.lock().get_mut(channel) {
        position.1 = offset;
    }
}
