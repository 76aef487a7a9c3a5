//! In-process fan-out to 10,000 local subscribers: time per publication and
//! heap allocations per publication.
//!
//! Two paths are measured:
//! - `registry`: encode the push once and push the shared bytes into 10k
//!   outboxes, which is exactly what the hub's delivery does per publication;
//! - `hub`: `Hub::publish` with 10k real sessions subscribed through the
//!   client protocol (namespace lookup, broker lock, encode, fan-out).
//!
//! Outboxes are drained between iterations, outside the timed section, so
//! every publication meets the steady state of a reading subscriber.
//! Allocations are counted by a counting global allocator and printed once
//! per path (`allocations per publication: N`).

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::StreamExt as _;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use switchboard::channel::{Outbox, Registry};
use switchboard::config::Config;
use switchboard::hub::{Hub, Inbound, PublishRequest, Session};
use switchboard::protocol::{Encoding, Payload, Publication};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SUBSCRIBERS: usize = 10_000;
const CHANNEL: &str = "bench";

fn data() -> Payload {
    Payload::from_json(&format!("{{\"lg\":[1,2],\"p\":\"{}\"}}", "x".repeat(78))).expect("json")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Empties every outbox; returns how many frames were queued.
fn drain(rt: &tokio::runtime::Runtime, outboxes: &[Arc<Outbox>]) -> usize {
    rt.block_on(async {
        let mut batch = Vec::new();
        let mut frames = 0;
        for outbox in outboxes {
            if outbox.queued_bytes() == 0 {
                continue;
            }
            batch.clear();
            outbox.next_batch(&mut batch, usize::MAX).await;
            frames += batch.len();
        }
        frames
    })
}

/// Allocations made by one call of `f`, after a warm-up call.
fn allocations_of(mut f: impl FnMut()) -> usize {
    f();
    let region = Region::new(GLOBAL);
    f();
    region.change().allocations
}

fn registry(c: &mut Criterion) {
    let rt = runtime();
    let registry = Registry::new();
    let outboxes: Vec<Arc<Outbox>> = (0..SUBSCRIBERS).map(|_| Arc::new(Outbox::new(1 << 20))).collect();
    for (id, outbox) in outboxes.iter().enumerate() {
        registry.add(CHANNEL, id as u64, outbox.clone(), Encoding::Json);
    }
    let publication = Publication { data: data(), ..Publication::default() };
    let publish = || {
        // The encoder runs once per encoding present (here: JSON only).
        let delivered = registry.fanout(CHANNEL, |encoding| encoding.encode_publication_push(CHANNEL, &publication));
        assert_eq!(black_box(delivered), SUBSCRIBERS);
    };
    let allocations = allocations_of(publish);
    drain(&rt, &outboxes);
    println!("fanout/registry: allocations per publication to {SUBSCRIBERS} subscribers: {allocations}");
    c.bench_function("fanout/registry 10k subscribers", |b| {
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
}

fn hub(c: &mut Criterion) {
    let rt = runtime();
    let mut config = Config::default();
    config.client.allow_anonymous = true;
    config.channels.allow_subscribe_for_anonymous = true;
    config.server.max_connections = SUBSCRIBERS + 1;
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
        // Let every session handle its connect and subscribe.
        while hub.channels().first().map_or(0, |(_, n)| *n) < SUBSCRIBERS {
            tokio::task::yield_now().await;
        }
        outboxes
    });
    drain(&rt, &outboxes);
    let request = PublishRequest { channel: CHANNEL.into(), data: data(), ..PublishRequest::default() };
    let publish = || {
        rt.block_on(hub.publish(black_box(request.clone()))).expect("published");
    };
    let allocations = allocations_of(publish);
    assert_eq!(drain(&rt, &outboxes), 2 * SUBSCRIBERS);
    println!("fanout/hub: allocations per publication to {SUBSCRIBERS} subscribers: {allocations}");
    c.bench_function("fanout/hub publish 10k subscribers", |b| {
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
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = registry, hub
}
criterion_main!(benches);
