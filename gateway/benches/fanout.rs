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

mod common;

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use switchboard::channel::{Outbox, Registry};
use switchboard::config::Config;
use switchboard::hub::PublishRequest;
use switchboard::protocol::{Encoding, Payload, Publication};

use common::drain;

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
    let (hub, outboxes) = common::subscribed_hub(&rt, Config::default(), None, SUBSCRIBERS, CHANNEL);
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
