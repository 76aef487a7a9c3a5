//! `loadgen`: opens many WebSocket subscribers against a realtime server on
//! this machine, publishes timestamped messages at a target rate, and reports
//! completeness, throughput, latency, connect time and the server's memory
//! and CPU (issue 4).
//!
//! It speaks Switchboard's own protocol (JWT connect, then subscribe) or a
//! raw mode whose first frame is a template, which is how it drives nchan and
//! NATS with the same measuring code. Publishing goes through Switchboard's
//! HTTP API, a plain HTTP POST (nchan's publisher location) or the NATS TCP
//! protocol. Every payload is `{"lg":[SEQ,SENT_NS],"p":"xx…"}`, so a
//! subscriber finds its deliveries by scanning frames for `"lg":[`, whatever
//! framing the server uses (newline-joined pushes, several `MSG`s per frame).
//!
//! Safety rails: targets must resolve to loopback addresses, every phase has
//! a deadline, counts and rates are capped, and the tool stops by itself.
//! The human report goes to stderr and one JSON line to stdout.

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures_util::stream::{FuturesUnordered, SelectAll, SplitSink};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use memchr::memmem;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Most connections one run may open: the machine caps a process at 20,000
/// descriptors, and the tool needs a few of its own.
const MAX_CONNECTIONS: usize = 19_500;
const MAX_DURATION_SECS: u64 = 300;
const MAX_RATE: u64 = 200_000;
const MAX_PAYLOAD_BYTES: usize = 65_536;
/// Linux reports /proc times in USER_HZ, which is 100 on every architecture
/// the kernel's userspace ABI supports.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
/// The marker that starts the sequence number and send time in a payload.
const MARKER: &[u8] = b"\"lg\":[";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Preset {
    /// 10,000 idle subscribers, each on its own channel; memory per
    /// connection and idle CPU.
    Idle,
    /// 1,000 subscribers on one channel, 1,000 msg/s of 100 bytes for 20 s.
    #[value(name = "fanout-1k")]
    Fanout1k,
    /// 1,000 subscribers on one channel, 5,000 msg/s for 20 s.
    #[value(name = "fanout-5k")]
    Fanout5k,
    /// 1,000 subscribers each on their own channel, 5,000 msg/s round-robin.
    Channels,
    /// 10,000 connections (each with a JWT) as fast as they are accepted.
    ConnectRate,
    /// `fanout-1k` through the server's publish plugin pipeline: the load
    /// is the same, `--channel-prefix` must name channels whose namespace
    /// runs the pipeline (tests/bench/compare.sh sets up three plugins).
    Plugins,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Protocol {
    /// Switchboard / Centrifugo JSON protocol: connect with a JWT, subscribe.
    Switchboard,
    /// A configurable first frame (`--first-frame`), for nchan and NATS.
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Publisher {
    /// Switchboard's `POST /api/publish` with `X-API-Key`.
    Api,
    /// A plain HTTP POST of the payload to `--pub-url` (nchan).
    Http,
    /// NATS `PUB` over plain TCP to `--pub-url nats://host:port`.
    Nats,
    /// Publish nothing (idle and connect scenarios).
    None,
}

/// Command line. Every value left out comes from `--preset`, then from the
/// defaults shown.
#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "Load generator for Switchboard and its peers (loopback only)")]
struct Args {
    /// Named scenario supplying the defaults.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Label of the server under test, copied into the report.
    #[arg(long, default_value = "switchboard")]
    target: String,
    #[arg(long, value_enum, default_value = "switchboard")]
    protocol: Protocol,
    /// WebSocket URL; `{ch}` is replaced by the channel name and `{i}` by
    /// the connection index. Repeat it to spread the subscribers over
    /// several nodes: subscriber i uses URL i % count.
    #[arg(long, default_value = "ws://127.0.0.1:8000/connection/websocket")]
    ws_url: Vec<String>,
    /// Subscribers to open [preset; else 1000].
    #[arg(long)]
    connections: Option<usize>,
    /// Distinct channels; subscriber i joins channel i % channels [preset; else 1].
    #[arg(long)]
    channels: Option<usize>,
    /// Channel names are this prefix plus the channel number.
    #[arg(long, default_value = "c")]
    channel_prefix: String,
    /// New connections per second; 0 opens them as fast as they are accepted
    /// [preset; else 2000].
    #[arg(long)]
    connect_rate: Option<u64>,
    /// Most handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Seconds the whole connect phase may take.
    #[arg(long, default_value_t = 60)]
    connect_timeout_secs: u64,
    /// Connect only, without subscribing (switchboard protocol).
    #[arg(long)]
    no_subscribe: bool,
    /// HMAC secret the connection JWTs are signed with (switchboard protocol).
    #[arg(long, default_value = "switchboard-dev-secret-change-me")]
    hmac_secret: String,
    /// Raw mode: the first frame, with `{ch}` and `{i}` replaced and `\r`,
    /// `\n` escapes decoded. None sends nothing.
    #[arg(long)]
    first_frame: Option<String>,
    /// Raw mode: a connection counts as subscribed once a frame contains
    /// this text; without it, as soon as the handshake completes.
    #[arg(long)]
    ready_match: Option<String>,
    #[arg(long, value_enum)]
    publisher: Option<Publisher>,
    /// Publish URL: `http://…/api/publish`, `http://…/pub?id={ch}` or
    /// `nats://127.0.0.1:PORT`.
    #[arg(long, default_value = "http://127.0.0.1:8000/api/publish")]
    pub_url: String,
    #[arg(long, default_value = "switchboard-dev-api-key-change-me")]
    api_key: String,
    /// Messages per second, over all channels [preset; else 1000].
    #[arg(long)]
    rate: Option<u64>,
    /// Seconds of publishing (or of idling, with publisher none) [preset; else 10].
    #[arg(long)]
    duration_secs: Option<u64>,
    /// Size of each payload in bytes.
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// Concurrent HTTP publisher connections (each keeps one request in
    /// flight, so a server whose publish answers only after the fan-out
    /// needs several to reach the rate).
    #[arg(long, default_value_t = 16)]
    publishers: usize,
    /// Seconds to wait for outstanding deliveries after publishing stops.
    #[arg(long, default_value_t = 5)]
    drain_secs: u64,
    /// Milliseconds to wait after connecting before reading memory.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Server process(es) whose memory and CPU to read; repeat for
    /// multi-process servers (nginx master and workers).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Worker threads of the tool's runtime (it shares the cores with the
    /// server, so keep it small).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Connections driven by one task.
    #[arg(long, default_value_t = 500)]
    conns_per_task: usize,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// A fully resolved run.
#[derive(Debug, Clone)]
struct Plan {
    preset: Option<Preset>,
    target: String,
    protocol: Protocol,
    ws_urls: Vec<String>,
    connections: usize,
    channels: usize,
    channel_prefix: String,
    connect_rate: u64,
    connect_concurrency: usize,
    connect_timeout: Duration,
    subscribe: bool,
    hmac_secret: String,
    first_frame: Option<String>,
    ready_match: Option<Vec<u8>>,
    publisher: Publisher,
    pub_url: String,
    api_key: String,
    rate: u64,
    duration: Duration,
    payload_bytes: usize,
    publishers: usize,
    drain: Duration,
    settle: Duration,
    server_pids: Vec<u32>,
    conns_per_task: usize,
    quiet: bool,
}

impl Plan {
    fn from_args(a: Args) -> Result<Self> {
        // (connections, channels, connect rate, rate, duration, publisher, subscribe)
        let (n, k, cr, rate, dur, publ, sub) = match a.preset {
            Some(Preset::Idle) => (10_000, 10_000, 2_000, 0, 10, Publisher::None, true),
            Some(Preset::Fanout1k | Preset::Plugins) => (1_000, 1, 2_000, 1_000, 20, Publisher::Api, true),
            Some(Preset::Fanout5k) => (1_000, 1, 2_000, 5_000, 20, Publisher::Api, true),
            Some(Preset::Channels) => (1_000, 1_000, 2_000, 5_000, 20, Publisher::Api, true),
            Some(Preset::ConnectRate) => (10_000, 1, 0, 0, 0, Publisher::None, false),
            None => (1_000, 1, 2_000, 1_000, 10, Publisher::Api, true),
        };
        let connections = a.connections.unwrap_or(n);
        // Presets that give every subscriber its own channel keep doing so
        // when --connections changes.
        let own_channel = k == n;
        let plan = Self {
            preset: a.preset,
            target: a.target,
            protocol: a.protocol,
            ws_urls: a.ws_url,
            connections,
            channels: a.channels.unwrap_or(if own_channel { connections } else { k.min(connections) }),
            channel_prefix: a.channel_prefix,
            connect_rate: a.connect_rate.unwrap_or(cr),
            connect_concurrency: a.connect_concurrency.max(1),
            connect_timeout: Duration::from_secs(a.connect_timeout_secs),
            subscribe: sub && !a.no_subscribe,
            hmac_secret: a.hmac_secret,
            first_frame: a.first_frame.map(|f| unescape(&f)),
            ready_match: a.ready_match.map(|m| unescape(&m).into_bytes()),
            publisher: a.publisher.unwrap_or(publ),
            pub_url: a.pub_url,
            api_key: a.api_key,
            rate: a.rate.unwrap_or(rate),
            duration: Duration::from_secs(a.duration_secs.unwrap_or(dur)),
            payload_bytes: a.payload_bytes,
            publishers: a.publishers.max(1),
            drain: Duration::from_secs(a.drain_secs),
            settle: Duration::from_millis(a.settle_ms),
            server_pids: a.server_pid,
            conns_per_task: a.conns_per_task.max(1),
            quiet: a.quiet,
        };
        ensure!(
            plan.connections > 0 && plan.connections <= MAX_CONNECTIONS,
            "connections must be 1..={MAX_CONNECTIONS}"
        );
        ensure!(plan.channels > 0 && plan.channels <= plan.connections.max(1), "channels must be 1..=connections");
        ensure!(plan.duration.as_secs() <= MAX_DURATION_SECS, "duration too long (max {MAX_DURATION_SECS} s)");
        ensure!(
            plan.connect_timeout.as_secs() <= MAX_DURATION_SECS,
            "connect timeout too long (max {MAX_DURATION_SECS} s)"
        );
        ensure!(plan.drain.as_secs() <= 60, "drain too long (max 60 s)");
        ensure!(plan.rate <= MAX_RATE, "rate too high (max {MAX_RATE} msg/s)");
        ensure!(plan.connect_rate <= MAX_RATE, "connect rate too high (max {MAX_RATE}/s)");
        ensure!(
            (32..=MAX_PAYLOAD_BYTES).contains(&plan.payload_bytes),
            "payload must be 32..={MAX_PAYLOAD_BYTES} bytes"
        );
        ensure!(plan.protocol == Protocol::Raw || plan.first_frame.is_none(), "--first-frame needs --protocol raw");
        for url in &plan.ws_urls {
            ensure_loopback(url)?;
        }
        if plan.publisher != Publisher::None && plan.rate > 0 {
            ensure_loopback(&plan.pub_url)?;
        }
        Ok(plan)
    }

    fn channel_of(&self, i: usize) -> usize {
        i % self.channels
    }

    fn channel_name(&self, ch: usize) -> String {
        format!("{}{ch}", self.channel_prefix)
    }

    fn fill(&self, template: &str, i: usize) -> String {
        template.replace("{ch}", &self.channel_name(self.channel_of(i))).replace("{i}", &i.to_string())
    }

    /// The `id` of the reply that makes a switchboard connection ready.
    fn ready_id(&self) -> &'static [u8] {
        if self.subscribe { b"{\"id\":2," } else { b"{\"id\":1," }
    }
}

/// Decodes `\r`, `\n`, `\t` and `\\` in a command-line template.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The parts of a `scheme://host:port/path` URL the tool needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    path: String,
}

fn parse_url(url: &str) -> Result<Url> {
    let (scheme, rest) = url.split_once("://").with_context(|| format!("{url}: no scheme"))?;
    let default_port = match scheme {
        "ws" | "http" => 80,
        "nats" => 4222,
        other => bail!("{url}: unsupported scheme {other:?} (ws, http or nats; no TLS)"),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h.trim_start_matches('[').trim_end_matches(']'), p.parse().with_context(|| format!("{url}: bad port"))?)
        }
        _ => (authority, default_port),
    };
    ensure!(!host.is_empty(), "{url}: no host");
    Ok(Url { host: host.to_owned(), port, path: path.to_owned() })
}

/// Refuses any URL whose host resolves to something other than loopback.
fn ensure_loopback(url: &str) -> Result<()> {
    let u = parse_url(url)?;
    let addrs: Vec<_> =
        (u.host.as_str(), u.port).to_socket_addrs().with_context(|| format!("resolve {url}"))?.collect();
    ensure!(!addrs.is_empty(), "{url}: host resolves to nothing");
    ensure!(
        addrs.iter().all(|a| a.ip().is_loopback()),
        "{url}: refusing a non-loopback target (this tool only loads servers on 127.0.0.0/8 or ::1)"
    );
    Ok(())
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A payload of exactly `size` bytes carrying `seq` and the send time.
fn payload(seq: u64, size: usize) -> Vec<u8> {
    let mut p = format!("{{\"lg\":[{seq},{}],\"p\":\"", now_ns()).into_bytes();
    let pad = size.saturating_sub(p.len() + 2);
    p.resize(p.len() + pad, b'x');
    p.extend_from_slice(b"\"}");
    p
}

/// Finds every `"lg":[SEQ,SENT]` in `frame`; calls `f(sent_ns)` for each.
fn scan_deliveries(finder: &memmem::Finder<'_>, frame: &[u8], mut f: impl FnMut(u64)) -> u64 {
    let mut n = 0;
    for at in finder.find_iter(frame) {
        let rest = &frame[at + MARKER.len()..];
        let Some(comma) = memchr::memchr(b',', rest) else { continue };
        let sent = rest[comma + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .fold(0u64, |acc, b| acc.wrapping_mul(10).wrapping_add(u64::from(b - b'0')));
        f(sent);
        n += 1;
    }
    n
}

// ------------------------------------------------------------------ server

/// Memory of the server processes, summed, in KiB.
#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Mem {
    rss_kib: u64,
    rss_anon_kib: u64,
}

fn read_mem(pids: &[u32]) -> Option<Mem> {
    if pids.is_empty() {
        return None;
    }
    let mut mem = Mem::default();
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        for line in status.lines() {
            let value = |l: &str| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            if line.starts_with("VmRSS:") {
                mem.rss_kib += value(line);
            } else if line.starts_with("RssAnon:") {
                mem.rss_anon_kib += value(line);
            }
        }
    }
    Some(mem)
}

/// User plus system CPU seconds of `pids` (or of this process when empty).
fn read_cpu_secs(pids: &[u32]) -> Option<f64> {
    let self_pid = [std::process::id()];
    let pids = if pids.is_empty() { &self_pid[..] } else { pids };
    let mut ticks = 0u64;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces; the fields after it do not.
        let after = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        ticks += fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    }
    Some(ticks as f64 / CLOCK_TICKS_PER_SEC)
}

// ------------------------------------------------------------- subscribers

/// Counters the subscriber tasks share with the driver.
struct Shared {
    t0: Instant,
    ready: AtomicU64,
    failed: AtomicU64,
    /// Subscribers that closed or errored after becoming ready.
    dropped: AtomicU64,
    delivered: AtomicU64,
    /// Nanoseconds after `t0` when the last connection became ready.
    last_ready_ns: AtomicU64,
    /// Ready subscribers per channel.
    subscribers: Vec<AtomicU32>,
    stop: CancellationToken,
    errors: parking_lot::Mutex<HashMap<String, u64>>,
}

impl Shared {
    fn error(&self, what: String) {
        *self.errors.lock().entry(what).or_default() += 1;
    }
}

/// What one subscriber task measured.
struct GroupStats {
    latency_us: Histogram<u64>,
    connect_us: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ConnState {
    Waiting,
    Ready,
    Gone,
}

struct Conn {
    index: usize,
    started: Instant,
    state: ConnState,
    sink: Option<SplitSink<Ws, Message>>,
}

async fn open(plan: &Plan, i: usize, first_frame: Option<String>) -> Result<Ws> {
    let url = plan.fill(&plan.ws_urls[i % plan.ws_urls.len()], i);
    // A small read buffer: the default 128 KiB per connection would make the
    // tool itself the memory hog at 10k connections.
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024).write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    if let Some(frame) = first_frame {
        ws.send(Message::text(frame)).await?;
    }
    Ok(ws)
}

/// Drives the subscribers `ids`: opens them at the planned pace, waits for
/// each to become ready, then counts deliveries until told to stop.
async fn run_group(
    ids: Range<usize>,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    first_frames: Arc<Vec<String>>,
) -> GroupStats {
    let finder = memmem::Finder::new(MARKER);
    let mut stats = GroupStats { latency_us: histogram(), connect_us: histogram() };
    let groups = plan.connections.div_ceil(plan.conns_per_task);
    let max_in_flight = plan.connect_concurrency.div_ceil(groups).max(1);
    let mut conns: Vec<Conn> = Vec::with_capacity(ids.len());
    let mut pending = FuturesUnordered::new();
    let mut streams = SelectAll::new();
    let mut next = ids.start;
    let ready_id = plan.ready_id();
    let raw = plan.protocol == Protocol::Raw;

    loop {
        while next < ids.end && pending.len() < max_in_flight {
            let i = next;
            next += 1;
            let local = conns.len();
            conns.push(Conn { index: i, started: shared.t0, state: ConnState::Waiting, sink: None });
            let due = if plan.connect_rate == 0 {
                shared.t0
            } else {
                shared.t0 + Duration::from_secs_f64(i as f64 / plan.connect_rate as f64)
            };
            let plan = plan.clone();
            let frame = first_frames.get(i).cloned().or_else(|| plan.first_frame.as_ref().map(|t| plan.fill(t, i)));
            pending.push(async move {
                tokio::time::sleep_until(due).await;
                let started = Instant::now();
                (local, started, open(&plan, i, frame).await)
            });
        }
        tokio::select! {
            _ = shared.stop.cancelled() => break,
            Some((local, started, result)) = pending.next(), if !pending.is_empty() => {
                let conn = &mut conns[local];
                conn.started = started;
                match result {
                    Ok(ws) => {
                        let (sink, stream) = ws.split();
                        conn.sink = Some(sink);
                        streams.push(stream.map(move |m| (local, m)));
                        if raw && plan.ready_match.is_none() {
                            mark_ready(conn, &plan, &shared, &mut stats);
                        }
                    }
                    Err(e) => {
                        conn.state = ConnState::Gone;
                        shared.failed.fetch_add(1, Ordering::Relaxed);
                        shared.error(format!("connect: {e:#}"));
                    }
                }
            }
            Some((local, msg)) = streams.next(), if !streams.is_empty() => {
                let conn = &mut conns[local];
                let data = match msg {
                    Ok(Message::Text(t)) => Bytes::from(t),
                    Ok(Message::Binary(b)) => b,
                    Ok(Message::Close(frame)) => {
                        let why = frame.map_or_else(|| "close".to_owned(), |f| format!("close {} {}", u16::from(f.code), f.reason));
                        gone(conn, &shared, why);
                        continue;
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        gone(conn, &shared, format!("read: {e}"));
                        continue;
                    }
                };
                let now = now_ns();
                let mut delivered = 0;
                let mut reply: Option<&'static str> = None;
                if raw {
                    if conn.state == ConnState::Waiting
                        && plan.ready_match.as_ref().is_some_and(|m| memmem::find(&data, m).is_some())
                    {
                        mark_ready(conn, &plan, &shared, &mut stats);
                    }
                    if data.starts_with(b"PING\r\n") || memmem::find(&data, b"\nPING\r\n").is_some() {
                        reply = Some("PONG\r\n");
                    }
                    delivered = scan_deliveries(&finder, &data, |sent| record(&mut stats.latency_us, now, sent));
                } else {
                    for line in data.split(|b| *b == b'\n') {
                        if line == b"{}" {
                            reply = Some("{}");
                        } else if line.starts_with(b"{\"id\":") {
                            if memmem::find(line, b"\"error\"").is_some() {
                                gone(conn, &shared, format!("error reply: {}", String::from_utf8_lossy(line)));
                                break;
                            }
                            if conn.state == ConnState::Waiting && line.starts_with(ready_id) {
                                mark_ready(conn, &plan, &shared, &mut stats);
                            }
                        } else {
                            delivered += scan_deliveries(&finder, line, |sent| record(&mut stats.latency_us, now, sent));
                        }
                    }
                }
                if delivered > 0 {
                    shared.delivered.fetch_add(delivered, Ordering::Relaxed);
                }
                if let (Some(text), Some(sink)) = (reply, conn.sink.as_mut())
                    && sink.send(Message::text(text)).await.is_err()
                {
                    gone(conn, &shared, "write failed".to_owned());
                }
            }
        }
    }
    // Close politely but do not wait long: the run is over.
    let closing = conns.iter_mut().filter_map(|c| c.sink.take()).map(|mut sink| async move {
        let _ = tokio::time::timeout(Duration::from_millis(200), sink.close()).await;
    });
    futures_util::future::join_all(closing).await;
    stats
}

fn record(hist: &mut Histogram<u64>, now_ns: u64, sent_ns: u64) {
    hist.saturating_record((now_ns.saturating_sub(sent_ns) / 1_000).max(1));
}

fn mark_ready(conn: &mut Conn, plan: &Plan, shared: &Shared, stats: &mut GroupStats) {
    conn.state = ConnState::Ready;
    stats.connect_us.saturating_record((conn.started.elapsed().as_micros() as u64).max(1));
    if plan.subscribe || plan.protocol == Protocol::Raw {
        shared.subscribers[plan.channel_of(conn.index)].fetch_add(1, Ordering::Relaxed);
    }
    shared.ready.fetch_add(1, Ordering::Relaxed);
    shared.last_ready_ns.fetch_max(shared.t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

fn gone(conn: &mut Conn, shared: &Shared, why: String) {
    match conn.state {
        ConnState::Waiting => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        ConnState::Ready => {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        ConnState::Gone => return,
    }
    conn.state = ConnState::Gone;
    conn.sink = None;
    shared.error(why);
}

// -------------------------------------------------------------- publishers

/// What the publishers did: successful publishes per channel, and failures.
#[derive(Debug, Default)]
struct Published {
    per_channel: Vec<u64>,
    failed: u64,
}

impl Published {
    fn merge(&mut self, other: Published) {
        if self.per_channel.len() < other.per_channel.len() {
            self.per_channel.resize(other.per_channel.len(), 0);
        }
        for (a, b) in self.per_channel.iter_mut().zip(other.per_channel) {
            *a += b;
        }
        self.failed += other.failed;
    }
}

/// A minimal HTTP/1.1 keep-alive client: one request in flight.
struct Http {
    url: Url,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Http {
    fn new(url: Url) -> Self {
        Self { url, stream: None, buf: Vec::with_capacity(4096) }
    }

    async fn post(&mut self, path: &str, extra_headers: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        if self.stream.is_none() {
            let stream = TcpStream::connect((self.url.host.as_str(), self.url.port)).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
            self.buf.clear();
        }
        let result = self.exchange(path, extra_headers, body).await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, path: &str, extra_headers: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let stream = self.stream.as_mut().context("not connected")?;
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra_headers}\r\n",
            self.url.host,
            self.url.port,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        stream.write_all(&req).await?;
        let head_end = loop {
            if let Some(at) = memmem::find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            ensure!(self.buf.len() < 64 * 1024, "response head too large");
            if stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed");
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("bad status line")?;
        let header = |name: &str| {
            head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim_start_matches(':').trim().to_owned()))
        };
        let mut body_out = Vec::new();
        let mut rest = self.buf.split_off(head_end);
        self.buf.clear();
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let line_end = loop {
                    if let Some(at) = memmem::find(&rest, b"\r\n") {
                        break at;
                    }
                    if stream.read_buf(&mut rest).await? == 0 {
                        bail!("connection closed in chunk");
                    }
                };
                let size_text = String::from_utf8_lossy(&rest[..line_end]).to_string();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                    .context("bad chunk size")?;
                let need = line_end + 2 + size + 2;
                while rest.len() < need {
                    if stream.read_buf(&mut rest).await? == 0 {
                        bail!("connection closed in chunk");
                    }
                }
                body_out.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
                rest.drain(..need);
                if size == 0 {
                    break;
                }
            }
        } else {
            let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            while rest.len() < len {
                if stream.read_buf(&mut rest).await? == 0 {
                    bail!("connection closed in body");
                }
            }
            body_out.extend_from_slice(&rest[..len]);
            rest.drain(..len);
        }
        self.buf = rest;
        if header("connection").is_some_and(|v| v == "close") {
            self.stream = None;
        }
        Ok((status, body_out))
    }
}

/// One HTTP publisher: sends sequence numbers `p, p+P, p+2P, …` at
/// `rate / P` per second until `end`.
async fn http_publisher(plan: Arc<Plan>, shared: Arc<Shared>, p: usize, t0: Instant, end: Instant) -> Published {
    let url = parse_url(&plan.pub_url).expect("checked at startup");
    let mut http = Http::new(url.clone());
    let mut out = Published { per_channel: vec![0; plan.channels], failed: 0 };
    let step = plan.publishers as u64;
    let interval = step as f64 / plan.rate as f64;
    let headers = match plan.publisher {
        Publisher::Api => format!("X-API-Key: {}\r\n", plan.api_key),
        _ => String::new(),
    };
    for k in 0u64.. {
        let due = t0 + Duration::from_secs_f64(k as f64 * interval);
        // Behind schedule (a server slower than the rate) the publisher sends
        // back to back, but never past the end of the phase.
        if due >= end || Instant::now() >= end || shared.stop.is_cancelled() {
            break;
        }
        tokio::time::sleep_until(due).await;
        let seq = k * step + p as u64;
        let ch = (seq % plan.channels as u64) as usize;
        let data = payload(seq, plan.payload_bytes);
        let (path, body) = match plan.publisher {
            Publisher::Api => {
                let mut body = format!("{{\"channel\":\"{}\",\"data\":", plan.channel_name(ch)).into_bytes();
                body.extend_from_slice(&data);
                body.push(b'}');
                (url.path.clone(), body)
            }
            _ => (url.path.replace("{ch}", &plan.channel_name(ch)), data),
        };
        match http.post(&path, &headers, &body).await {
            Ok((status, resp)) if (200..300).contains(&status) && memmem::find(&resp, b"\"error\"").is_none() => {
                out.per_channel[ch] += 1;
            }
            Ok((status, resp)) => {
                out.failed += 1;
                shared.error(format!("publish: HTTP {status} {}", String::from_utf8_lossy(&resp).trim()));
            }
            Err(e) => {
                out.failed += 1;
                shared.error(format!("publish: {e:#}"));
            }
        }
    }
    out
}

/// The NATS publisher: one TCP connection, `PUB`s paced per millisecond,
/// then a `PING` whose `PONG` proves the server has read everything.
async fn nats_publisher(plan: Arc<Plan>, shared: Arc<Shared>, t0: Instant, end: Instant) -> Published {
    let mut out = Published { per_channel: vec![0; plan.channels], failed: 0 };
    match nats_publish(&plan, &mut out, t0, end).await {
        Ok(()) => {}
        Err(e) => shared.error(format!("nats publisher: {e:#}")),
    }
    out
}

async fn nats_publish(plan: &Plan, out: &mut Published, t0: Instant, end: Instant) -> Result<()> {
    let url = parse_url(&plan.pub_url)?;
    let stream = TcpStream::connect((url.host.as_str(), url.port)).await?;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<()>(4);
    let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<()>(4);
    // The reader answers server PINGs (through the writer) and reports PONGs.
    let reader = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(4096);
        loop {
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            while let Some(at) = memmem::find(&buf, b"\r\n") {
                let line: Vec<u8> = buf.drain(..at + 2).collect();
                if line.starts_with(b"PING") {
                    let _ = ping_tx.try_send(());
                } else if line.starts_with(b"PONG") {
                    let _ = pong_tx.try_send(());
                }
            }
        }
    });
    wr.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"loadgen\"}\r\n").await?;
    let mut sent = 0u64;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while Instant::now() < end {
        tick.tick().await;
        let due = ((Instant::now().min(end) - t0).as_secs_f64() * plan.rate as f64) as u64;
        while sent < due {
            let ch = (sent % plan.channels as u64) as usize;
            let data = payload(sent, plan.payload_bytes);
            buf.extend_from_slice(format!("PUB {} {}\r\n", plan.channel_name(ch), data.len()).as_bytes());
            buf.extend_from_slice(&data);
            buf.extend_from_slice(b"\r\n");
            out.per_channel[ch] += 1;
            sent += 1;
        }
        while ping_rx.try_recv().is_ok() {
            buf.extend_from_slice(b"PONG\r\n");
        }
        if !buf.is_empty() {
            wr.write_all(&buf).await?;
            buf.clear();
        }
    }
    wr.write_all(b"PING\r\n").await?;
    let got_pong = tokio::time::timeout(Duration::from_secs(10), pong_rx.recv()).await;
    reader.abort();
    ensure!(matches!(got_pong, Ok(Some(()))), "no PONG after publishing");
    Ok(())
}

// ------------------------------------------------------------------ report

#[derive(Debug, Serialize)]
struct Latency {
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |v: u64| (v as f64 / 1000.0 * 1000.0).round() / 1000.0;
        Self {
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    target: String,
    scenario: String,
    protocol: Protocol,
    publisher: Publisher,
    connections: usize,
    channels: usize,
    connected: u64,
    failed_connections: u64,
    dropped_connections: u64,
    connect_secs: f64,
    connections_per_sec: f64,
    connect_latency: Latency,
    rate_target: u64,
    duration_secs: f64,
    published: u64,
    publish_failed: u64,
    publish_rate: f64,
    expected: u64,
    delivered: u64,
    completeness: f64,
    deliveries_per_sec: f64,
    latency: Latency,
    mem_before: Option<Mem>,
    mem_after: Option<Mem>,
    rss_per_conn_kib: Option<f64>,
    rss_anon_per_conn_kib: Option<f64>,
    server_cpu_secs: Option<f64>,
    server_cpu_pct: Option<f64>,
    loadgen_cpu_secs: Option<f64>,
    errors: HashMap<String, u64>,
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn print_human(r: &Report) {
    let mut s = String::new();
    let mut line = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    line(format!("== {} / {} ({:?} subscribers, {:?} publisher)", r.target, r.scenario, r.protocol, r.publisher));
    line(format!(
        "connections: {} ok, {} failed, {} dropped, in {:.2} s ({:.0}/s); connect p50 {} ms p99 {} ms",
        r.connected,
        r.failed_connections,
        r.dropped_connections,
        r.connect_secs,
        r.connections_per_sec,
        r.connect_latency.p50_ms,
        r.connect_latency.p99_ms
    ));
    if let (Some(b), Some(a)) = (r.mem_before, r.mem_after) {
        line(format!(
            "server memory: RSS {} -> {} KiB, RssAnon {} -> {} KiB; per connection {:.2} KiB RSS, {:.2} KiB anon",
            b.rss_kib,
            a.rss_kib,
            b.rss_anon_kib,
            a.rss_anon_kib,
            r.rss_per_conn_kib.unwrap_or(0.0),
            r.rss_anon_per_conn_kib.unwrap_or(0.0)
        ));
    }
    if r.published > 0 || r.rate_target > 0 {
        line(format!(
            "published {} ({} failed, {:.0} msg/s of {} target) over {:.1} s",
            r.published, r.publish_failed, r.publish_rate, r.rate_target, r.duration_secs
        ));
        line(format!(
            "delivered {} of {} expected: completeness {:.4}%, {:.0} deliveries/s",
            r.delivered,
            r.expected,
            r.completeness * 100.0,
            r.deliveries_per_sec
        ));
        let l = &r.latency;
        line(format!(
            "latency ms: p50 {} p90 {} p99 {} p99.9 {} max {}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        ));
    }
    if let Some(cpu) = r.server_cpu_secs {
        line(format!(
            "server CPU: {cpu:.2} s over {:.1} s ({:.1}% of one core); loadgen CPU total {:.2} s",
            r.duration_secs,
            r.server_cpu_pct.unwrap_or(0.0),
            r.loadgen_cpu_secs.unwrap_or(0.0)
        ));
    }
    for (what, n) in &r.errors {
        line(format!("error x{n}: {what}"));
    }
    eprint!("{s}");
}

fn bar(plan: &Plan, len: u64, template: &str) -> ProgressBar {
    if plan.quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    pb
}

// -------------------------------------------------------------------- main

fn main() -> Result<()> {
    let args = Args::parse();
    let threads = args.threads.clamp(1, 8);
    let plan = Plan::from_args(args)?;
    let limit = rlimit::increase_nofile_limit(20_000).context("raise the open-files limit")?;
    ensure!(
        limit as usize >= plan.connections + 64,
        "open-files limit is {limit}, too low for {} connections",
        plan.connections
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    let report = runtime.block_on(run(Arc::new(plan)))?;
    print_human(&report);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn first_frames(plan: &Plan) -> Result<Vec<String>> {
    if plan.protocol != Protocol::Switchboard {
        return Ok(Vec::new());
    }
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
    let key = jsonwebtoken::EncodingKey::from_secret(plan.hmac_secret.as_bytes());
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    (0..plan.connections)
        .map(|i| {
            let claims = serde_json::json!({ "sub": format!("lg{i}"), "exp": exp });
            let token = jsonwebtoken::encode(&header, &claims, &key)?;
            let mut frame = format!("{{\"id\":1,\"connect\":{{\"token\":\"{token}\",\"name\":\"loadgen\"}}}}");
            if plan.subscribe {
                let ch = plan.channel_name(plan.channel_of(i));
                frame.push_str(&format!("\n{{\"id\":2,\"subscribe\":{{\"channel\":\"{ch}\"}}}}"));
            }
            Ok(frame)
        })
        .collect()
}

async fn run(plan: Arc<Plan>) -> Result<Report> {
    // Tokens are minted before the clock starts, so connect time measures
    // the server, not the tool's signing.
    let frames = Arc::new(first_frames(&plan)?);
    let mem_before = read_mem(&plan.server_pids);
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        ready: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        last_ready_ns: AtomicU64::new(0),
        subscribers: (0..plan.channels).map(|_| AtomicU32::new(0)).collect(),
        stop: CancellationToken::new(),
        errors: parking_lot::Mutex::new(HashMap::new()),
    });
    let mut groups = Vec::new();
    let mut start = 0;
    while start < plan.connections {
        let end = (start + plan.conns_per_task).min(plan.connections);
        groups.push(tokio::spawn(run_group(start..end, plan.clone(), shared.clone(), frames.clone())));
        start = end;
    }

    // Connect phase.
    let pb = bar(&plan, plan.connections as u64, "connect {bar:40} {pos}/{len} {per_sec} {msg}");
    let connect_deadline = shared.t0 + plan.connect_timeout;
    loop {
        let done = shared.ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed);
        pb.set_position(done);
        if done >= plan.connections as u64 || Instant::now() >= connect_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pb.finish_and_clear();
    let connected = shared.ready.load(Ordering::Relaxed);
    let connect_secs = Duration::from_nanos(shared.last_ready_ns.load(Ordering::Relaxed)).as_secs_f64();
    if connected < plan.connections as u64 {
        shared.error(format!(
            "{} connections not ready after the connect phase",
            plan.connections as u64 - connected - shared.failed.load(Ordering::Relaxed)
        ));
    }
    tokio::time::sleep(plan.settle).await;
    let mem_after = read_mem(&plan.server_pids);

    // Publish (or idle) phase.
    let cpu_before = read_cpu_secs(&plan.server_pids);
    let self_cpu_before = read_cpu_secs(&[]);
    let t_pub = Instant::now();
    let end = t_pub + plan.duration;
    let mut publishers = Vec::new();
    if plan.rate > 0 {
        match plan.publisher {
            Publisher::Api | Publisher::Http => {
                for p in 0..plan.publishers {
                    publishers.push(tokio::spawn(http_publisher(plan.clone(), shared.clone(), p, t_pub, end)));
                }
            }
            Publisher::Nats => publishers.push(tokio::spawn(nats_publisher(plan.clone(), shared.clone(), t_pub, end))),
            Publisher::None => {}
        }
    }
    let pb = bar(&plan, plan.duration.as_secs().max(1), "run     {bar:40} {pos}/{len} s {msg}");
    while Instant::now() < end {
        pb.set_position(t_pub.elapsed().as_secs());
        pb.set_message(format!("{} delivered", shared.delivered.load(Ordering::Relaxed)));
        tokio::time::sleep(Duration::from_millis(200).min(end.saturating_duration_since(Instant::now()))).await;
    }
    pb.finish_and_clear();
    let mut published = Published { per_channel: vec![0; plan.channels], failed: 0 };
    for p in publishers {
        published.merge(p.await?);
    }
    let publish_secs = t_pub.elapsed().as_secs_f64().max(plan.duration.as_secs_f64());
    let expected: u64 = published
        .per_channel
        .iter()
        .zip(&shared.subscribers)
        .map(|(n, subs)| n * u64::from(subs.load(Ordering::Relaxed)))
        .sum();
    // Drain: wait for what is still in flight.
    let drain_deadline = Instant::now() + plan.drain;
    while shared.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let run_secs = t_pub.elapsed().as_secs_f64();
    let cpu_after = read_cpu_secs(&plan.server_pids);
    let self_cpu_after = read_cpu_secs(&[]);

    shared.stop.cancel();
    let mut latency = histogram();
    let mut connect = histogram();
    for g in groups {
        let stats = g.await?;
        latency.add(&stats.latency_us).context("merge histograms")?;
        connect.add(&stats.connect_us).context("merge histograms")?;
    }

    let delivered = shared.delivered.load(Ordering::Relaxed);
    let published_total: u64 = published.per_channel.iter().sum();
    let per_conn = |f: fn(&Mem) -> u64| match (mem_before, mem_after) {
        (Some(b), Some(a)) if connected > 0 => Some(round3(f(&a).saturating_sub(f(&b)) as f64 / connected as f64)),
        _ => None,
    };
    let server_cpu = cpu_before.zip(cpu_after).map(|(b, a)| round3(a - b));
    Ok(Report {
        target: plan.target.clone(),
        scenario: plan
            .preset
            .and_then(|p| p.to_possible_value())
            .map_or_else(|| "custom".to_owned(), |v| v.get_name().to_owned()),
        protocol: plan.protocol,
        publisher: if plan.rate > 0 { plan.publisher } else { Publisher::None },
        connections: plan.connections,
        channels: plan.channels,
        connected,
        failed_connections: shared.failed.load(Ordering::Relaxed),
        dropped_connections: shared.dropped.load(Ordering::Relaxed),
        connect_secs: round3(connect_secs),
        connections_per_sec: if connect_secs > 0.0 { round3(connected as f64 / connect_secs) } else { 0.0 },
        connect_latency: Latency::of(&connect),
        rate_target: plan.rate,
        duration_secs: round3(publish_secs),
        published: published_total,
        publish_failed: published.failed,
        publish_rate: round3(published_total as f64 / publish_secs.max(1e-9)),
        expected,
        delivered,
        completeness: if expected > 0 {
            (delivered.min(expected) as f64 / expected as f64 * 1e6).round() / 1e6
        } else {
            0.0
        },
        deliveries_per_sec: round3(delivered as f64 / publish_secs.max(1e-9)),
        latency: Latency::of(&latency),
        mem_before,
        mem_after,
        rss_per_conn_kib: per_conn(|m| m.rss_kib),
        rss_anon_per_conn_kib: per_conn(|m| m.rss_anon_kib),
        server_cpu_secs: server_cpu,
        server_cpu_pct: server_cpu.map(|c| round3(c / run_secs * 100.0)),
        loadgen_cpu_secs: self_cpu_before.zip(self_cpu_after).map(|(b, a)| round3(a - b)),
        errors: shared.errors.lock().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_exact_size_and_scans_back() {
        let p = payload(42, 100);
        assert_eq!(p.len(), 100);
        let finder = memmem::Finder::new(MARKER);
        let mut seen = Vec::new();
        let frame = [&p[..], b"\n", &p[..]].concat();
        assert_eq!(scan_deliveries(&finder, &frame, |sent| seen.push(sent)), 2);
        assert!(seen[0] > 1_600_000_000_000_000_000);
    }

    #[test]
    fn urls_parse_and_only_loopback_passes() {
        let u = parse_url("ws://127.0.0.1:8000/connection/websocket").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("127.0.0.1", 8000, "/connection/websocket"));
        assert_eq!(parse_url("nats://localhost:4333").unwrap().path, "/");
        assert!(ensure_loopback("http://127.0.0.1:9/api").is_ok());
        assert!(ensure_loopback("http://[::1]:9/api").is_ok());
        assert!(ensure_loopback("http://10.1.2.3:9/api").is_err());
        assert!(ensure_loopback("http://192.168.0.1/").is_err());
        assert!(ensure_loopback("https://127.0.0.1/").is_err());
    }

    #[test]
    fn templates_unescape() {
        assert_eq!(unescape(r"SUB {ch} {i}\r\nPING\r\n"), "SUB {ch} {i}\r\nPING\r\n");
    }
}
