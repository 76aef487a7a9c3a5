//! The cost of tracing on the publish path: `Hub::publish` to 100 local
//! subscribers inside an API-request root span, as the server API runs it,
//! with span export off, then on at 0%, 1% and 100% sampling (OTLP/HTTP to a
//! sink in this process that answers every export with 200).
//!
//! Prints heap allocations per publication for each mode: "off" and "0%"
//! must be equal (no span is allocated for a sampled-out request).
//! Run: `cargo bench -p switchboard --bench telemetry`.

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use switchboard::channel::Outbox;
use switchboard::config::Config;
use switchboard::hub::{Hub, Inbound, PublishRequest, Session};
use switchboard::protocol::{Encoding, Payload};
use tokio_util::sync::CancellationToken;
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

fn drain(rt: &tokio::runtime::Runtime, outboxes: &[Arc<Outbox>]) {
    rt.block_on(async {
        let mut batch = Vec::new();
        for outbox in outboxes {
            if outbox.queued_bytes() > 0 {
                batch.clear();
                outbox.next_batch(&mut batch, usize::MAX).await;
            }
        }
    });
}

fn tracing_cost(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let mut config = Config::default();
    config.client.allow_anonymous = true;
    config.channels.allow_subscribe_for_anonymous = true;
    config.client.ping_interval_secs = 3000;
    let hub = Hub::new(Arc::new(config), CancellationToken::new()).expect("hub");
    let outboxes: Vec<Arc<Outbox>> = rt.block_on(async {
        let mut outboxes = Vec::with_capacity(SUBSCRIBERS);
        for _ in 0..SUBSCRIBERS {
            let session = Session::new(hub.clone(), hub.try_acquire_connection().expect("slot"), Encoding::Json);
            outboxes.push(session.outbox());
            let frame =
                format!("{{\"id\":1,\"connect\":{{}}}}\n{{\"id\":2,\"subscribe\":{{\"channel\":\"{CHANNEL}\"}}}}");
            let inbound =
                futures_util::stream::iter([Inbound::Text(Bytes::from(frame))]).chain(futures_util::stream::pending());
            tokio::spawn(session.run(inbound));
        }
        while hub.channels().first().map_or(0, |(_, n)| *n) < SUBSCRIBERS {
            tokio::task::yield_now().await;
        }
        outboxes
    });
    drain(&rt, &outboxes);
    let data = Payload::from_json(&format!("{{\"lg\":[1,2],\"p\":\"{}\"}}", "x".repeat(78))).expect("json");
    let request = PublishRequest { channel: CHANNEL.into(), data, ..PublishRequest::default() };
    // What api::handle does around a publish: a root span, then the call.
    let publish = || {
        rt.block_on(async {
            let span = switchboard::root_span!("", "", "api.request", otel.name = "POST /api/publish");
            hub.publish(black_box(request.clone())).instrument(span).await.expect("published");
        })
    };
    let mut measure = |mode: &str| {
        publish();
        let region = Region::new(GLOBAL);
        publish();
        let allocations = region.change().allocations;
        drain(&rt, &outboxes);
        println!("telemetry/{mode}: allocations per publication: {allocations}");
        c.bench_function(&format!("telemetry/publish to {SUBSCRIBERS} subscribers, tracing {mode}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    publish();
                    total += start.elapsed();
                    drain(&rt, &outboxes);
                }
                total
            })
        });
    };
    measure("off");
    let sink = start_sink();
    let settings = switchboard::telemetry::Settings {
        endpoint: format!("http://{sink}"),
        trace_export_interval: Duration::from_millis(200),
        log_filter: Some("off".into()),
        ..switchboard::telemetry::Settings::default()
    };
    let installed = rt.block_on(async { switchboard::telemetry::init(&settings) }).expect("telemetry");
    for (mode, ratio) in [("0%", 0.0), ("1%", 0.01), ("100%", 1.0)] {
        switchboard::telemetry::trace::set_sampling_ratio(ratio);
        measure(mode);
    }
    rt.block_on(async { tokio::task::spawn_blocking(move || installed.shutdown()).await }).expect("shutdown");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = tracing_cost
}
criterion_main!(benches);
