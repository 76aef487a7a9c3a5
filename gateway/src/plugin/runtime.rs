//! The shared engine, its epoch ticker and the on-disk compile cache.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmtime::component::Component;
use wasmtime::{Config as WasmConfig, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::PluginError;
use crate::config::{PluginConfig, PluginRuntimeConfig};

/// The wasmtime release the host is built against; part of the cache key.
pub const WASMTIME_VERSION: &str = "48.0.8";
/// Smallest per-slot memory ceiling of the pooling allocator.
const MIN_POOL_MEMORY_BYTES: usize = 1 << 20;
const WASM_PAGE: usize = 64 * 1024;

/// Builds the one engine every plugin shares: epoch interruption, the
/// pooling allocator sized from the plugin list, no MPK, no concurrency
/// support (no WASIp3 async: it only slows synchronous calls down), and
/// `[plugin_runtime] memory_reservation_bytes` when set.
pub fn build_engine(plugins: &[PluginConfig], runtime: &PluginRuntimeConfig) -> Result<Engine, PluginError> {
    let total_pool: u32 = plugins.iter().map(|p| u32::try_from(p.pool_size).unwrap_or(u32::MAX)).sum();
    // Old and new versions coexist during a reload, and a discarded
    // instance's slot is reused only after its store drops: room for three
    // generations, plus slack for benches and tests.
    let slots = total_pool.saturating_mul(3).saturating_add(16).max(32);
    let max_memory = plugins
        .iter()
        .map(|p| p.memory_max_bytes)
        .max()
        .unwrap_or(MIN_POOL_MEMORY_BYTES)
        .max(MIN_POOL_MEMORY_BYTES)
        .next_multiple_of(WASM_PAGE);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(16))
        .total_memories(slots.saturating_mul(2))
        .total_tables(slots.saturating_mul(4))
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_core_instances_per_component(64)
        // JS and Python runtimes carry large function tables.
        .table_elements(100_000)
        .max_memory_size(max_memory);
    // MPK stays off: the `memory-protection-keys` cargo feature is not
    // enabled, so the pool never stripes memories by protection key.

    let mut config = WasmConfig::new();
    config
        .epoch_interruption(true)
        .concurrency_support(false)
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(32))
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if runtime.memory_reservation_bytes > 0 {
        // Memories in the pool cannot move, so a reservation holds its
        // memory at the pool's cap: validation keeps it at least every
        // plugin's `memory_max_bytes`, and the cap's rounding (whole pages,
        // 1 MiB at least) is added here.
        let reservation = runtime.memory_reservation_bytes.max(max_memory as u64);
        config.memory_reservation(reservation).memory_guard_size(WASM_PAGE as u64);
    }
    Engine::new(&config).map_err(|e| PluginError::Runtime(format!("engine: {e:#}")))
}

/// Drives epoch deadlines: bumps the engine's epoch every `tick` on a
/// blocking thread of `tracker` until `stop` is cancelled. A thread, not a
/// timer task: a guest spinning on a runtime worker (a current-thread
/// runtime has only one) must not be able to hold its own deadline back.
pub fn spawn_epoch_ticker(tracker: &TaskTracker, engine: Engine, tick: Duration, stop: CancellationToken) {
    let span = tracing::debug_span!("task", name = "plugin-epoch-ticker");
    tracker.spawn_blocking(move || {
        let _entered = span.enter();
        while !stop.is_cancelled() {
            std::thread::sleep(tick);
            engine.increment_epoch();
        }
    });
}

/// Feeds `Hash` impls into SHA-256 so the engine's compatibility hash
/// becomes a stable file-name component.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache key of `wasm` compiled by `engine`: wasm hash, engine
/// settings and wasmtime version.
pub fn cache_key(engine: &Engine, wasm_sha256: &str) -> String {
    let mut hasher = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.write(WASMTIME_VERSION.as_bytes());
    hasher.write(wasm_sha256.as_bytes());
    hex(&hasher.0.finalize())
}

/// The compile cache directory from `[plugin_runtime] cache_dir`.
pub fn cache_dir(config: &PluginRuntimeConfig) -> PathBuf {
    if config.cache_dir.is_empty() {
        std::env::temp_dir().join("switchboard-plugin-cache")
    } else {
        PathBuf::from(&config.cache_dir)
    }
}

/// Whether a component came from the cache or was compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cache,
    Compiled,
}

/// Loads `wasm` through the cache, compiling and storing it on a miss.
/// Blocking: call from `spawn_blocking`.
pub fn load_component(
    engine: &Engine,
    dir: &Path,
    plugin: &str,
    wasm: &[u8],
    wasm_sha256: &str,
) -> Result<(Component, Origin), PluginError> {
    let key = cache_key(engine, wasm_sha256);
    let artifact = dir.join(format!("{key}.cwasm"));
    let checksum = dir.join(format!("{key}.sha256"));
    if let Some(component) = read_cached(engine, &artifact, &checksum) {
        return Ok((component, Origin::Cache));
    }
    let compiled = engine
        .precompile_component(wasm)
        .map_err(|e| PluginError::Compile { plugin: plugin.to_owned(), reason: format!("{e:#}") })?;
    if let Err(e) = write_cached(dir, &artifact, &checksum, &compiled) {
        tracing::warn!(plugin, error = %e, dir = %dir.display(), "plugin compile cache not written");
    }
    let component = deserialize(engine, &compiled)
        .map_err(|e| PluginError::Compile { plugin: plugin.to_owned(), reason: format!("{e:#}") })?;
    Ok((component, Origin::Compiled))
}

fn read_cached(engine: &Engine, artifact: &Path, checksum: &Path) -> Option<Component> {
    let bytes = std::fs::read(artifact).ok()?;
    let expected = std::fs::read_to_string(checksum).ok()?;
    if sha256_hex(&bytes) != expected.trim() {
        tracing::warn!(artifact = %artifact.display(), "plugin cache entry corrupt; recompiling");
        return None;
    }
    deserialize(engine, &bytes).ok()
}

fn write_cached(dir: &Path, artifact: &Path, checksum: &Path, compiled: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let unique = uuid::Uuid::new_v4();
    let tmp_artifact = dir.join(format!(".{unique}.cwasm.tmp"));
    let tmp_checksum = dir.join(format!(".{unique}.sha256.tmp"));
    std::fs::write(&tmp_artifact, compiled)?;
    std::fs::write(&tmp_checksum, sha256_hex(compiled))?;
    // Artifact first: a reader that finds the checksum finds its artifact.
    std::fs::rename(&tmp_artifact, artifact)?;
    std::fs::rename(&tmp_checksum, checksum)
}

/// The one unsafe call of the host.
#[allow(unsafe_code)] // reason: wasmtime's deserialize trusts its input; see SAFETY
fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `bytes` is either the output of `precompile_component` by this
    // very engine, or a cache file this host wrote whose SHA-256 matched the
    // checksum written next to it (so it is a complete artifact of ours and
    // not a truncated or foreign file); wasmtime additionally checks the
    // engine compatibility header before using it.
    unsafe { Component::deserialize(engine, bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_depends_on_wasm_hash_and_engine_config() {
        let engine = build_engine(&[], &PluginRuntimeConfig::default()).unwrap();
        let a = cache_key(&engine, &sha256_hex(b"a"));
        assert_eq!(a, cache_key(&engine, &sha256_hex(b"a")), "stable for one engine");
        assert_ne!(a, cache_key(&engine, &sha256_hex(b"b")));
        assert_eq!(a.len(), 64);
        let mut other = WasmConfig::new();
        other.epoch_interruption(false);
        let other = Engine::new(&other).unwrap();
        assert_ne!(a, cache_key(&other, &sha256_hex(b"a")), "engine settings are part of the key");
        // Code compiled for a small reservation bounds-checks its memory
        // accesses: it must never be loaded into the default engine.
        let small = PluginRuntimeConfig { memory_reservation_bytes: 32 << 20, ..PluginRuntimeConfig::default() };
        let small = build_engine(&[], &small).unwrap();
        assert_ne!(a, cache_key(&small, &sha256_hex(b"a")), "the memory reservation is part of the key");
    }

    #[tokio::test]
    async fn ticker_runs_on_the_tracker_until_stopped() {
        let engine = build_engine(&[], &PluginRuntimeConfig::default()).unwrap();
        let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
        spawn_epoch_ticker(&tracker, engine, Duration::from_millis(1), stop.clone());
        tracker.close();
        assert_eq!(tracker.len(), 1, "the ticker is a tracked task");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await.expect("the ticker stops when cancelled");
    }
}
