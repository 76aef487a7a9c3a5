//! Plugin call costs: `on-publish` on a warm instance with a 1 KiB message,
//! and loading 5 plugins from the compile cache against compiling them.
//!
//! Uses the test guest `plugins/testing/transform` (mode `pass`: returns
//! `pass` without touching the data), built here for wasm32-wasip2.
//! Run: `CARGO_TARGET_DIR=... cargo bench -p switchboard --bench plugin_call`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use switchboard::config::{Config, PluginConfig};
use switchboard::plugin::{Message, PluginHost, PublishOutcome};
use tokio_util::sync::CancellationToken;

fn guest() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned();
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

fn benches(c: &mut Criterion) {
    let wasm = guest();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let work = std::env::temp_dir().join(format!("switchboard-bench-{}", std::process::id()));
    let cache = work.join("cache");
    let five = variants(&wasm, &work, 5);

    let host =
        rt.block_on(PluginHost::from_config(&config(&five[..1], &cache), CancellationToken::new())).expect("load");
    let message = Message {
        channel: "bench".into(),
        data: vec![b'x'; 1024].into(),
        content_type: "application/json".into(),
        ..Message::default()
    };
    c.bench_function("on_publish_1kib_warm", |b| {
        b.iter(|| {
            let outcome = rt.block_on(host.on_publish(black_box(message.clone())));
            assert!(matches!(outcome, PublishOutcome::Pass(_)));
        })
    });
    drop(host);

    let mut group = c.benchmark_group("cold_start_5_plugins");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("from_cache", |b| {
        b.iter(|| rt.block_on(PluginHost::from_config(&config(&five, &cache), CancellationToken::new())).expect("load"))
    });
    group.bench_function("compile", |b| {
        b.iter(|| {
            // A fresh, empty cache directory: every plugin compiles.
            let dir = cache.join(uuid::Uuid::new_v4().to_string());
            let host = rt.block_on(PluginHost::from_config(&config(&five, &dir), CancellationToken::new()));
            std::fs::remove_dir_all(&dir).ok();
            host.expect("load")
        })
    });
    group.finish();
    std::fs::remove_dir_all(&work).ok();
}

criterion_group!(plugin_call, benches);
criterion_main!(plugin_call);
