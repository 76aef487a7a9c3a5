//! Codec micro-benchmarks: encoding a publication push (done once per
//! publication, shared by every subscriber) and decoding client commands.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard::protocol::{ClientInfo, Payload, Publication, decode_commands, encode_publication_push};

fn payload_of(len: usize) -> Payload {
    let mut text = String::from("{\"seq\":12345,\"p\":\"");
    while text.len() + 2 < len {
        text.push('x');
    }
    text.push_str("\"}");
    Payload::from_json(&text).expect("valid json")
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_publication_push");
    for len in [100usize, 1024] {
        let publication = Publication { data: payload_of(len), offset: 42, ..Publication::default() };
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("{len}B"), |b| {
            b.iter(|| encode_publication_push(black_box("chat:room-1"), black_box(&publication)).expect("json payload"))
        });
    }
    let with_info = Publication {
        data: payload_of(100),
        offset: 42,
        info: Some(ClientInfo {
            user: "user-42".into(),
            client: "7f1c2a9e-2b7d-4d3a-9b1e-0c5f5d2b8a11".into(),
            conn_info: Some(Payload::from_json("{\"name\":\"Alice\"}").expect("json")),
            chan_info: None,
        }),
        ..Publication::default()
    };
    group.bench_function("100B+info", |b| {
        b.iter(|| encode_publication_push(black_box("chat:room-1"), black_box(&with_info)).expect("json payload"))
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_commands");
    let publish = format!("{{\"id\":7,\"publish\":{{\"channel\":\"chat:room-1\",\"data\":{}}}}}", {
        let p = payload_of(100);
        String::from_utf8(p.as_bytes().to_vec()).expect("utf8")
    });
    let subscribe = r#"{"id":2,"subscribe":{"channel":"chat:room-1","recover":true,"epoch":"abcd","offset":17}}"#;
    let connect = r#"{"id":1,"connect":{"token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsImV4cCI6NDEwMjQ0NDgwMH0.x3lC7V2g8WbqfJ5o9uJ2nZ0p7b4vQy5e3mS1aK6cT0s","name":"js","version":"5.0.0"}}"#;
    let batch = [r#"{}"#, subscribe, publish.as_str()].join("\n");
    for (name, frame) in [
        ("publish", publish.as_str()),
        ("subscribe", subscribe),
        ("connect", connect),
        ("pong+subscribe+publish", &batch),
    ] {
        group.bench_function(name, |b| b.iter(|| decode_commands(black_box(frame.as_bytes())).expect("decodes")));
    }
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
