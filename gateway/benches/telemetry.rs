//! The cost of tracing on the publish path: `Hub::publish` to 100 local
//! subscribers inside an API-request root span, as the server API runs it,
//! with span export off, then on at 0%, 1% and 100% sampling (OTLP/HTTP to a
//! sink in this process that answers every export with 200).
//!
//! Prints heap allocations per publication for each mode: "off" and "0%"
//! must be equal (no span is allocated for a sampled-out request).
//! Run: `cargo bench -p switchboard --bench telemetry`.

mod common;

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use http_body_util::{BodyExt as _, Full};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use switchboard::channel::Outbox;
use switchboard::config::Config;
use switchboard::hub::{Hub, PublishRequest};
use switchboard::protocol::Payload;
use tracing::Instrument as _;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SUBSCRIBERS: usize = 100;
const CHANNEL: &str = "bench";

/// An OTLP/HTTP endpoint that accepts and discards everything.
fn start_sink() -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("sink runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
            tx.send(listener.local_addr().expect("addr")).expect("send addr");
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
    });
    rx.recv().expect("sink started")
}

/// A hub with [`SUBSCRIBERS`] local sessions on one channel, and the
/// publish that the API runs.
struct Fixture {
    rt: tokio::runtime::Runtime,
    hub: Arc<Hub>,
    outboxes: Vec<Arc<Outbox>>,
    request: PublishRequest,
}

impl Fixture {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let (hub, outboxes) = common::subscribed_hub(&rt, Config::default(), None, SUBSCRIBERS, CHANNEL);
        let data = Payload::from_json(&format!("{{\"lg\":[1,2],\"p\":\"{}\"}}", "x".repeat(78))).expect("json");
        let request = PublishRequest { channel: CHANNEL.into(), data, ..PublishRequest::default() };
        Fixture { rt, hub, outboxes, request }
    }

    /// What api::handle does around a publish: a root span, then the call.
    fn publish(&self) {
        self.rt.block_on(async {
            let span = switchboard::root_span!("", "", "api.request", otel.name = "POST /api/publish");
            self.hub.publish(black_box(self.request.clone())).instrument(span).await.expect("published");
        })
    }

    /// The time of `n` publishes, each followed by an untimed drain.
    fn timed_publishes(&self, n: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..n {
            let start = Instant::now();
            self.publish();
            total += start.elapsed();
            self.drain();
        }
        total
    }

    fn drain(&self) {
        common::drain(&self.rt, &self.outboxes);
    }

    /// Installs span export to an in-process sink at `ratio`.
    fn export(&self, ratio: f64) -> switchboard::telemetry::Telemetry {
        let sink = start_sink();
        let settings = switchboard::telemetry::Settings {
            endpoint: format!("http://{sink}"),
            trace_export_interval: Duration::from_millis(200),
            log_filter: Some("off".into()),
            ..switchboard::telemetry::Settings::default()
        };
        let installed = self.rt.block_on(async { switchboard::telemetry::init(&settings) }).expect("telemetry");
        switchboard::telemetry::trace::set_sampling_ratio(ratio);
        installed
    }

    /// Flushes and stops the exporter, so its work is done before return.
    fn shutdown(&self, installed: switchboard::telemetry::Telemetry) {
        self.rt.block_on(async { tokio::task::spawn_blocking(move || installed.shutdown()).await }).expect("shutdown");
    }
}

const MODES: [(&str, f64); 3] = [("0%", 0.0), ("1%", 0.01), ("100%", 1.0)];

fn tracing_cost(c: &mut Criterion) {
    let fixture = Fixture::new();
    let mut measure = |mode: &str| {
        fixture.publish();
        let region = Region::new(GLOBAL);
        fixture.publish();
        let allocations = region.change().allocations;
        fixture.drain();
        println!("telemetry/{mode}: allocations per publication: {allocations}");
        c.bench_function(&format!("telemetry/publish to {SUBSCRIBERS} subscribers, tracing {mode}"), |b| {
            b.iter_custom(|iters| fixture.timed_publishes(iters))
        });
    };
    measure("off");
    let installed = fixture.export(0.0);
    for (mode, ratio) in MODES {
        switchboard::telemetry::trace::set_sampling_ratio(ratio);
        measure(mode);
    }
    fixture.shutdown(installed);
}

/// `TELEMETRY_COUNT_MODE=off|0%|1%|100% TELEMETRY_COUNT_PUBLISHES=N`: no
/// criterion, just N publishes in one mode, with the exporter flushed
/// before exit. Run under `valgrind --tool=callgrind` twice (N and 2N) the
/// difference is the instructions of N publishes, exporter work included:
/// a count the machine's load does not move (`BENCHMARKS.md`).
fn count_mode(mode: &str, publishes: u64) {
    let fixture = Fixture::new();
    let installed = match mode {
        "off" => None,
        _ => {
            let (_, ratio) = MODES.iter().find(|(m, _)| *m == mode).expect("mode is off, 0%, 1% or 100%");
            Some(fixture.export(*ratio))
        }
    };
    for _ in 0..publishes {
        fixture.publish();
        fixture.drain();
    }
    if let Some(installed) = installed {
        fixture.shutdown(installed);
    }
}

/// 0%, 1% and 100% interleaved in one process: `rounds` rounds of
/// `per_round` publishes per mode, the mode order rotating each round.
/// Each mode's run ends with a flush of the exporter inside the timed
/// section, so the round pays for exporting every span it made (serially,
/// a pessimistic charge: the exporter normally runs beside the sessions)
/// and no mode's export spills into the next. Sequential criterion runs of
/// the modes drift with the machine's load (the same mode moved 30%
/// between runs here); a ratio taken within one round does not. Prints the
/// median ns per publish of each mode and the median over rounds of the
/// per-round ratio to 0%.
fn interleaved(rounds: usize, per_round: u32) {
    let fixture = Fixture::new();
    let installed = fixture.export(0.0);
    let run = |ratio: f64| {
        switchboard::telemetry::trace::set_sampling_ratio(ratio);
        let mut total = fixture.timed_publishes(u64::from(per_round));
        // From this thread, outside the runtime: the export runs on its
        // worker.
        let start = Instant::now();
        installed.flush();
        total += start.elapsed();
        total.as_nanos() as f64 / f64::from(per_round)
    };
    for (_, ratio) in MODES {
        run(ratio);
    }
    let mut ns: [Vec<f64>; 3] = Default::default();
    let mut ratios: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        let mut this = [0.0; 3];
        for k in 0..MODES.len() {
            let m = (round + k) % MODES.len();
            this[m] = run(MODES[m].1);
        }
        for m in 0..MODES.len() {
            ns[m].push(this[m]);
            ratios[m].push(this[m] / this[0]);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (m, (mode, _)) in MODES.iter().enumerate() {
        let (ns, ratio) = (median(&mut ns[m]), median(&mut ratios[m]));
        println!(
            "telemetry/interleaved {mode}: median {ns:.0} ns/publish, median per-round cost vs 0%: {:+.1}% ({rounds} rounds x {per_round})",
            (ratio - 1.0) * 100.0
        );
    }
    fixture.shutdown(installed);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = tracing_cost
}
fn main() {
    if let Ok(mode) = std::env::var("TELEMETRY_COUNT_MODE") {
        let publishes = std::env::var("TELEMETRY_COUNT_PUBLISHES").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000);
        count_mode(&mode, publishes);
        return;
    }
    // The interleaved comparison installs the process's one exporter, so
    // it runs instead of the criterion group: `TELEMETRY_INTERLEAVED=ROUNDS`.
    if let Ok(rounds) = std::env::var("TELEMETRY_INTERLEAVED") {
        let rounds = rounds.parse().expect("TELEMETRY_INTERLEAVED is a number of rounds");
        // At 1% and three spans per recorded publish, 20,000 publishes
        // fill about one export batch (the SDK's 512 spans): shorter rounds
        // would charge a whole export round trip to a partial batch, which
        // steady load never sends.
        let per_round = std::env::var("TELEMETRY_PER_ROUND").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
        interleaved(rounds, per_round);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
