//! History micro-benchmarks: appending to a full stream (the steady state of
//! a busy channel) and recovering 300 missed publications on resubscribe.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use switchboard::history::{Recovery, Stream, StreamOptions};
use switchboard::protocol::{Payload, Publication, StreamPosition};
use tokio::time::Instant;

const OPTIONS: StreamOptions =
    StreamOptions { size: 1000, ttl: Duration::from_secs(300), meta_ttl: Duration::from_secs(3600) };

fn publication() -> Publication {
    Publication {
        data: Payload::from_json(&format!("{{\"p\":\"{}\"}}", "x".repeat(90))).expect("json"),
        ..Publication::default()
    }
}

fn full_stream(now: Instant) -> Stream {
    let mut stream = Stream::new(now);
    let publication = publication();
    for _ in 0..OPTIONS.size {
        stream.append(publication.clone(), &OPTIONS, now);
    }
    stream
}

fn append(c: &mut Criterion) {
    let now = Instant::now();
    let mut stream = full_stream(now);
    let publication = publication();
    c.bench_function("history/append (full stream of 1000)", |b| {
        b.iter(|| stream.append(black_box(publication.clone()), &OPTIONS, now))
    });
}

fn recover(c: &mut Criterion) {
    let now = Instant::now();
    let stream = full_stream(now);
    let since = StreamPosition { offset: stream.top_offset() - 300, epoch: stream.epoch().to_owned() };
    let mut stream = stream;
    c.bench_function("history/recover 300 of 1000", |b| {
        b.iter_batched(
            || (),
            |()| match stream.recover(black_box(&since), 300, now) {
                Recovery::Recovered(pubs) => {
                    assert_eq!(pubs.len(), 300);
                    pubs
                }
                Recovery::NotRecovered => panic!("recoverable by construction"),
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, append, recover);
criterion_main!(benches);
