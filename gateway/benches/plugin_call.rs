//! Plugin call costs:
//! - `on-publish` on a warm instance with a 1 KiB message: the test guest
//!   `plugins/testing/transform` (mode `pass`: returns `pass` without
//!   touching the data) and each Rust example plugin of the publish pipeline
//!   (`moderation`, `pii-redact`, `enrich`) on a clean 1 KiB chat message;
//! - gateway publish throughput (`Hub::publish` to 100 subscribers) with the
//!   pipeline `moderation → pii-redact → enrich` against no plugins;
//! - loading 5 plugins from the compile cache against compiling them.
//!
//! Builds the test guest and the example plugins (`plugins/`, release,
//! wasm32-wasip2) first.
//! Run: `CARGO_TARGET_DIR=... cargo bench -p switchboard --bench plugin_call`.
//! `PLUGIN_CALL_PAYLOAD=loadgen` runs the per-call cases on the load tool's
//! payload, with the plugin configs of the end-to-end `plugins` scenario.

mod common;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchboard::config::{Config, PluginConfig};
use switchboard::hub::PublishRequest;
use switchboard::plugin::{Message, PluginHost, PublishOutcome, Publisher};
use switchboard::protocol::Payload;
use tokio_util::sync::CancellationToken;

use common::drain;
use tokio_util::task::TaskTracker;

/// Subscribers of the throughput bench's channel.
const SUBSCRIBERS: usize = 100;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned()
}

/// Builds the example plugins (their own workspace and target dir, as
/// `scripts/build-plugins.sh` does) and returns the `.wasm` of `name`.
fn example(name: &str) -> PathBuf {
    let root = root();
    let status = std::process::Command::new("cargo")
        .args(["build", "--quiet", "--release", "--manifest-path"])
        .arg(root.join("plugins/Cargo.toml"))
        // Cargo reads `.cargo/config.toml` (the wasm32-wasip2 target) from
        // the working directory, not from the manifest's.
        .current_dir(root.join("plugins"))
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the example plugins failed");
    root.join("plugins/target/wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")))
}

/// The example plugin `name` with its documented config, or with the
/// end-to-end `plugins` scenario's (`tests/bench/compare.sh`) when the calls
/// are measured on the load tool's payload.
fn example_plugin(name: &str) -> PluginConfig {
    let load_tool = load_tool_payload();
    let config = match name {
        "moderation" if load_tool => {
            r#"block = ["badword"]
mask = ["darn"]"#
        }
        "enrich" if load_tool => "",
        "moderation" => {
            r#"block = ["badword", "very bad phrase"]
mask = ["darn"]"#
        }
        "pii-redact" => r#"patterns = ["email", "phone", "iban", "card", "ip"]"#,
        "enrich" => {
            r#"rename = { msg = "text" }
drop = ["debug"]
schema = { required = ["msg"], properties = { msg = { type = "string", max_length = 2000 } } }"#
        }
        other => panic!("no example plugin {other}"),
    };
    let config: toml::Table = toml::from_str(config).expect("plugin config");
    PluginConfig {
        name: name.into(),
        path: example(name).display().to_string(),
        pool_size: 1,
        timeout_ms: 1000,
        config,
        ..PluginConfig::default()
    }
}

/// A clean chat message of exactly 1 KiB: text with digits, dots and `@`
/// (so the detectors look, and find nothing), as JSON.
fn chat_message() -> Bytes {
    let mut text = String::new();
    let words = ["meet", "at", "10.30", "tomorrow", "near", "gate", "42", "bring", "the", "@team", "notes"];
    let mut i = 0;
    let frame = r#"{"msg":"","room":"lobby","n":7}"#.len();
    while text.len() + frame < 1024 {
        text.push_str(words[i % words.len()]);
        text.push(' ');
        i += 1;
    }
    text.truncate(1024 - frame);
    let data = format!(r#"{{"msg":"{text}","room":"lobby","n":7}}"#);
    assert_eq!(data.len(), 1024);
    Bytes::from(data)
}

/// The load tool's payload shape (`tests/src/bin/loadgen.rs`), 1 KiB:
/// `{"lg":[SEQ,SENT_NS],"p":"xx…"}`. Its 19-digit timestamp looks like a
/// card number to pii-redact's raw-byte shortcut, so that plugin parses it,
/// as it does in the end-to-end `plugins` scenario.
fn load_tool_message() -> Bytes {
    let mut data = br#"{"lg":[123456,1765142400123456789],"p":""#.to_vec();
    data.resize(1022, b'x');
    data.extend_from_slice(b"\"}");
    assert_eq!(data.len(), 1024);
    Bytes::from(data)
}

/// `PLUGIN_CALL_PAYLOAD=loadgen` (else `chat`, the default) measures the
/// per-call cases on [`load_tool_message`] instead of the chat message.
fn load_tool_payload() -> bool {
    match std::env::var("PLUGIN_CALL_PAYLOAD").as_deref() {
        Ok("loadgen") => true,
        Ok("chat") | Err(_) => false,
        Ok(other) => panic!("PLUGIN_CALL_PAYLOAD is chat or loadgen, not {other}"),
    }
}

fn call_message() -> Bytes {
    if load_tool_payload() { load_tool_message() } else { chat_message() }
}

fn guest() -> PathBuf {
    let root = root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from).join("test-guests");
    let status = std::process::Command::new("cargo")
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(root.join("plugins/testing/transform/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the transform test guest failed");
    target.join("wasm32-wasip2/release/switchboard_test_transform.wasm")
}

/// `count` copies of the component, each made distinct by a trailing custom
/// section so that each has its own cache entry (as 5 real plugins would).
fn variants(wasm: &Path, dir: &Path, count: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("bench dir");
    let bytes = std::fs::read(wasm).expect("read guest");
    (0..count)
        .map(|i| {
            let name = format!("bench-variant-{i}");
            let mut out = bytes.clone();
            // Custom section: id 0, size, name length, name (all sizes < 128).
            out.extend([0, u8::try_from(name.len() + 1).expect("short"), u8::try_from(name.len()).expect("short")]);
            out.extend(name.as_bytes());
            let path = dir.join(format!("{name}.wasm"));
            std::fs::write(&path, out).expect("write variant");
            path
        })
        .collect()
}

fn config(wasms: &[PathBuf], cache_dir: &Path) -> Config {
    let mut config = Config::default();
    for (i, wasm) in wasms.iter().enumerate() {
        config.plugins.push(PluginConfig {
            name: format!("p{i}"),
            path: wasm.display().to_string(),
            pool_size: 1,
            timeout_ms: 1000,
            ..PluginConfig::default()
        });
    }
    config.pipelines.publish = vec!["p0".into()];
    config.plugin_runtime.watch_interval_ms = 0;
    config.plugin_runtime.cache_dir = cache_dir.display().to_string();
    config
}

/// Times `iters` pipeline runs of `message` inside one `block_on`, as a
/// session task awaits them. The caller's copies of the message are made
/// before the clock starts and the outcomes dropped after it stops: the
/// figure is the host's work (lowering, the guest, lifting), not the
/// caller's.
fn time_calls(rt: &tokio::runtime::Runtime, host: &PluginHost, message: &Message, iters: u64) -> Duration {
    let inputs: Vec<Message> = (0..iters).map(|_| message.clone()).collect();
    let (elapsed, outcomes) = run_calls(rt, host, inputs);
    for outcome in &outcomes {
        assert!(matches!(outcome, PublishOutcome::Pass(_)), "{outcome:?}");
    }
    elapsed
}

/// The measured part of [`time_calls`], a function of its own so that
/// callgrind can count it alone (`--toggle-collect='*run_calls*'`): the
/// copies of the input and the drop of the outcomes stay outside, as they
/// stay outside criterion's clock.
#[inline(never)]
fn run_calls(rt: &tokio::runtime::Runtime, host: &PluginHost, inputs: Vec<Message>) -> (Duration, Vec<PublishOutcome>) {
    let mut outcomes = Vec::with_capacity(inputs.len());
    let elapsed = rt.block_on(async {
        let start = Instant::now();
        for input in inputs {
            outcomes.push(host.on_publish(black_box(input)).await);
        }
        start.elapsed()
    });
    (elapsed, outcomes)
}

/// Loads a host with a tracker of its own; the host's tasks stop when it is dropped.
fn load(rt: &tokio::runtime::Runtime, config: &Config) -> PluginHost {
    rt.block_on(PluginHost::from_config(config, CancellationToken::new(), &TaskTracker::new())).expect("load")
}

/// `config` for the per-call hosts: in counted mode each memory reserves
/// 32 MiB (`memory_reservation_bytes`) instead of 4 GiB and guards, so that
/// valgrind can map the instance pool; the guests then bounds-check their
/// memory accesses. Criterion runs keep wasmtime's default.
fn for_counting(mut config: Config, counted: bool) -> Config {
    if counted {
        config.plugin_runtime.memory_reservation_bytes = 32 << 20;
    }
    config
}

/// `PLUGIN_CALL_COUNT=N` (with `PLUGIN_CALL_CASE`: `pass`, the default, or
/// an example plugin's name): make exactly N calls of that case, then exit,
/// without criterion. For instruction counts, which this shared machine
/// cannot disturb: `valgrind --tool=callgrind
/// --toggle-collect='*run_calls*'` on this binary (see BENCHMARKS.md).
fn counted_case() -> Option<(String, u64)> {
    let calls = std::env::var("PLUGIN_CALL_COUNT").ok()?.parse().expect("PLUGIN_CALL_COUNT is a number of calls");
    Some((std::env::var("PLUGIN_CALL_CASE").unwrap_or_else(|_| "pass".to_owned()), calls))
}

fn benches(c: &mut Criterion) {
    let wasm = guest();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let work = std::env::temp_dir().join(format!("switchboard-bench-{}", std::process::id()));
    let cache = work.join("cache");
    let five = variants(&wasm, &work, 5);

    let counted = counted_case();
    let host = load(&rt, &for_counting(config(&five[..1], &cache), counted.is_some()));
    let message = Message {
        channel: "bench".into(),
        data: vec![b'x'; 1024].into(),
        content_type: "application/json".into(),
        ..Message::default()
    };
    match &counted {
        Some((case, calls)) if case == "pass" => {
            time_calls(&rt, &host, &message, *calls);
            std::process::exit(0);
        }
        Some(_) => {}
        None => {
            c.bench_function("on_publish_1kib_warm", |b| {
                b.iter_custom(|iters| time_calls(&rt, &host, &message, iters))
            });
        }
    }
    drop(host);

    // Each example plugin alone, on a message it passes unchanged
    // (moderation, pii-redact) or rewrites (enrich renames `msg`).
    let chat = Message {
        channel: "bench".into(),
        publisher: Some(Publisher { user: "Alice".into(), client: "c1".into() }),
        data: call_message(),
        content_type: "application/json".into(),
        ..Message::default()
    };
    for name in ["moderation", "pii-redact", "enrich"] {
        let mut config = Config::default();
        config.plugins.push(example_plugin(name));
        config.pipelines.publish = vec![name.into()];
        config.plugin_runtime.watch_interval_ms = 0;
        config.plugin_runtime.cache_dir = cache.display().to_string();
        let host = load(&rt, &for_counting(config, counted.is_some()));
        match &counted {
            Some((case, calls)) if case == name => {
                time_calls(&rt, &host, &chat, *calls);
                std::process::exit(0);
            }
            Some(_) => {}
            None => {
                c.bench_function(&format!("on_publish_1kib_warm/{name}"), |b| {
                    b.iter_custom(|iters| time_calls(&rt, &host, &chat, iters))
                });
            }
        }
    }
    if let Some((case, _)) = &counted {
        panic!("PLUGIN_CALL_CASE {case}: expected pass, moderation, pii-redact or enrich");
    }

    pipeline_throughput(c, &rt, &cache);

    let mut group = c.benchmark_group("cold_start_5_plugins");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("from_cache", |b| b.iter(|| load(&rt, &config(&five, &cache))));
    group.bench_function("compile", |b| {
        b.iter(|| {
            // A fresh, empty cache directory: every plugin compiles.
            let dir = cache.join(uuid::Uuid::new_v4().to_string());
            let host = load(&rt, &config(&five, &dir));
            std::fs::remove_dir_all(&dir).ok();
            host
        })
    });
    group.finish();
    std::fs::remove_dir_all(&work).ok();
}

/// `Hub::publish` of the 1 KiB chat message to [`SUBSCRIBERS`] subscribers,
/// without plugins and through `moderation → pii-redact → enrich`.
fn pipeline_throughput(c: &mut Criterion, rt: &tokio::runtime::Runtime, cache: &Path) {
    let request = PublishRequest {
        channel: "bench".into(),
        data: Payload::from_json(std::str::from_utf8(&chat_message()).expect("utf-8")).expect("json"),
        ..PublishRequest::default()
    };
    let mut group = c.benchmark_group("hub_publish_1kib_100_subscribers");
    group.throughput(Throughput::Elements(1));
    for pipeline in [&[][..], &["moderation", "pii-redact", "enrich"][..]] {
        let mut config = Config::default();
        config.plugin_runtime.watch_interval_ms = 0;
        config.plugin_runtime.cache_dir = cache.display().to_string();
        config.plugins = pipeline.iter().map(|name| example_plugin(name)).collect();
        config.pipelines.publish = pipeline.iter().map(|name| (*name).to_owned()).collect();
        let plugins = (!pipeline.is_empty()).then(|| load(rt, &config));
        let (hub, outboxes) = common::subscribed_hub(rt, config, plugins, SUBSCRIBERS, "bench");
        drain(rt, &outboxes);
        let label = if pipeline.is_empty() { "no_plugins".to_owned() } else { pipeline.join("+") };
        group.bench_function(&label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    rt.block_on(hub.publish(black_box(request.clone()))).expect("published");
                    total += start.elapsed();
                    drain(rt, &outboxes);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(plugin_call, benches);
criterion_main!(plugin_call);
