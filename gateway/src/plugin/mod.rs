//! WASM plugins: the sandboxed hooks operators chain in `[pipelines]`.
//!
//! Owns the one wasmtime `Engine` (epoch ticker, pooling allocator, compile
//! cache), every plugin's warm instance pool, circuit breakers, hot reload
//! and the batched event queue. Its public API speaks gateway types only:
//! wasmtime types never leave this module. It holds no hub state and takes
//! no hub lock; callers must not hold one across a call into it.

mod bindings;
mod host;
mod instance;
mod runtime;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use wasmtime::Engine;

use crate::config::{Config, OnError, PluginConfig};
use bindings::{borrowed, types};
use instance::{Call, Published, Returned, Version};

pub use host::MetricsRegistry;
pub use runtime::{WASMTIME_VERSION, cache_key as compile_cache_key};

/// Error code of a refusal caused by a failing plugin under `on_error = "deny"`.
const PLUGIN_FAILED_CODE: u32 = 100;

/// A hook (or `init`), as named in errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Init,
    Connect,
    Subscribe,
    Publish,
    Rpc,
    Events,
    Refresh,
    SubRefresh,
}

impl Hook {
    /// The WIT interface that exports the hook.
    pub fn interface(self) -> &'static str {
        match self {
            Self::Init => "lifecycle",
            Self::Connect => "connect-hook",
            Self::Subscribe => "subscribe-hook",
            Self::Publish => "publish-hook",
            Self::Rpc => "rpc-hook",
            Self::Events => "events-hook",
            Self::Refresh => "refresh-hook",
            Self::SubRefresh => "sub-refresh-hook",
        }
    }
}

impl Hook {
    /// The hook as a static metric attribute (same text as `Display`).
    pub fn metric_name(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Connect => "on-connect",
            Self::Subscribe => "on-subscribe",
            Self::Publish => "on-publish",
            Self::Rpc => "on-rpc",
            Self::Events => "on-events",
            Self::Refresh => "on-refresh",
            Self::SubRefresh => "on-sub-refresh",
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.metric_name())
    }
}

/// Everything that can go wrong loading or calling a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {plugin}: cannot read {path}: {reason}")]
    Read { plugin: String, path: String, reason: String },
    #[error("plugin {plugin}: sha256 mismatch (expected {expected}, file has {actual})")]
    Integrity { plugin: String, expected: String, actual: String },
    #[error("plugin {plugin}: compile failed: {reason}")]
    Compile { plugin: String, reason: String },
    #[error("plugin {plugin} imports switchboard:plugin/{interface}, which is not granted (grants: {granted})")]
    Ungranted { plugin: String, interface: String, granted: String },
    #[error("plugin {plugin}: link failed: {reason}")]
    Link { plugin: String, reason: String },
    #[error("plugin {plugin}: does not export {interface}: {reason}")]
    MissingExport { plugin: String, interface: String, reason: String },
    #[error("plugin {plugin}: init failed: {reason}")]
    Init { plugin: String, reason: String },
    #[error("plugin {plugin}: {hook} trapped: {trap}")]
    Trap { plugin: String, hook: Hook, trap: String },
    #[error("plugin {plugin}: {hook} timed out (budget {timeout_ms} ms)")]
    Timeout { plugin: String, hook: Hook, timeout_ms: u64 },
    #[error("plugin {plugin}: {hook}: pool busy ({pool_size} instances, waited {waited_ms} ms)")]
    Busy { plugin: String, hook: Hook, pool_size: usize, waited_ms: u64 },
    #[error("plugin {plugin}: {hook}: quarantined after {faults} consecutive faults")]
    Quarantined { plugin: String, hook: Hook, faults: u32 },
    #[error("plugin runtime: {0}")]
    Runtime(String),
}

impl PluginError {
    /// The failure kind, as metrics and spans name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read",
            Self::Integrity { .. } => "integrity",
            Self::Compile { .. } => "compile",
            Self::Ungranted { .. } => "ungranted",
            Self::Link { .. } => "link",
            Self::MissingExport { .. } => "missing_export",
            Self::Init { .. } => "init",
            Self::Trap { .. } => "trap",
            Self::Timeout { .. } => "timeout",
            Self::Busy { .. } => "busy",
            Self::Quarantined { .. } => "quarantined",
            Self::Runtime(_) => "runtime",
        }
    }

    /// Faults count towards the circuit breaker; back-pressure does not.
    fn is_fault(&self) -> bool {
        matches!(self, Self::Trap { .. } | Self::Timeout { .. } | Self::Init { .. })
    }
}

/// A refusal sent to the client as an error reply (or to the API caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: u32,
    pub reason: String,
}

impl Rejection {
    fn plugin_failed(plugin: &str) -> Self {
        Self { code: PLUGIN_FAILED_CODE, reason: format!("plugin {plugin} unavailable") }
    }
}

/// W3C trace context; empty strings when not traced (the guest then gets
/// `none`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: String,
}

impl TraceContext {
    /// The context of a traced operation; none otherwise (what the guest
    /// gets in every `option<trace-context>`).
    fn traced(&self) -> Option<&Self> {
        (!self.traceparent.is_empty()).then_some(self)
    }
}

/// Who published a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Publisher {
    pub user: String,
    pub client: String,
}

/// A publication on its way through the publish pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub channel: String,
    /// None for server API publishes.
    pub publisher: Option<Publisher>,
    pub data: Bytes,
    pub tags: Vec<(String, String)>,
    pub content_type: String,
    pub trace: TraceContext,
    /// Keep this publication out of history (a plugin may set it).
    pub skip_history: bool,
    /// The publishing connection; None for server API publishes. Shared:
    /// the message is cloned along the pipeline.
    pub connection: Option<Arc<Connection>>,
}

/// A connection as hooks after connect see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    pub client: String,
    pub user: String,
    pub transport: String,
    /// `json` or `protobuf`.
    pub protocol: String,
    /// What a connect plugin set as `meta` (JSON bytes), empty when none.
    pub meta: Bytes,
}

/// The publish pipeline's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Publish this message (the input, or a plugin's replacement).
    Pass(Message),
    /// Accept without delivering anything.
    Drop,
    /// Refuse with a code and reason.
    Deny(Rejection),
}

/// What the gateway knows about a connecting client.
#[derive(Debug, Clone, Default)]
pub struct ConnectInfo {
    pub client: String,
    pub transport: String,
    /// `json` or `protobuf`.
    pub protocol: String,
    /// Channels the connect command asks for (`subs`).
    pub channels: Vec<String>,
    /// Allow-listed request headers (lowercase names), cookies filtered.
    pub headers: Vec<(String, String)>,
    pub user: String,
    /// Token claims as JSON (`{}` when none).
    pub claims: String,
    pub data: Bytes,
    pub name: String,
    pub version: String,
    pub trace: TraceContext,
}

/// Who a connection is, as a connect plugin decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub info: Option<Bytes>,
    pub channels: Vec<String>,
    /// Unix seconds.
    pub expires_at: Option<u64>,
    /// The connect reply's `data` (JSON bytes).
    pub data: Option<Bytes>,
    /// Server-side connection meta (JSON bytes), handed to later hooks.
    pub meta: Option<Bytes>,
}

/// The connect pipeline's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// Keep the gateway's own decision.
    Keep,
    /// Use this principal instead.
    Allow(Principal),
    Deny(Rejection),
    /// Close the connection with this disconnect code.
    Disconnect(Rejection),
}

/// A subscribe attempt.
#[derive(Debug, Clone, Default)]
pub struct SubscribeInfo {
    pub connection: Connection,
    pub channel: String,
    pub data: Bytes,
    pub trace: TraceContext,
}

/// What the subscribe pipeline granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeGrant {
    /// Channel info (JSON bytes).
    pub info: Option<Bytes>,
    /// The subscribe reply's `data` (JSON bytes).
    pub data: Option<Bytes>,
    /// Unix seconds; the sub-refresh pipeline runs then.
    pub expires_at: Option<u64>,
    pub presence: Option<bool>,
    pub join_leave: Option<bool>,
    pub force_recovery: Option<bool>,
}

/// The subscribe pipeline's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeOutcome {
    Allow(SubscribeGrant),
    Deny(Rejection),
    Disconnect(Rejection),
}

/// The refresh (or sub-refresh) pipeline's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Extend until this Unix second (None: no expiry); new info when set.
    Extend {
        expires_at: Option<u64>,
        info: Option<Bytes>,
    },
    /// The connection or subscription has expired.
    Expire,
    Disconnect(Rejection),
}

/// Lifecycle event kinds delivered to `events` plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Connect,
    Disconnect,
    Subscribe,
    Unsubscribe,
    Publish,
    Join,
    Leave,
    ChannelOccupied,
    ChannelVacated,
}

/// One lifecycle event.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub kind: Option<EventKind>,
    pub at_ms: u64,
    pub client: String,
    pub user: String,
    pub channel: String,
    pub data: Bytes,
    pub code: u32,
    /// Trace context of the operation that caused the event (a publish).
    pub trace: TraceContext,
}

impl Event {
    pub fn new(kind: EventKind, client: &str, user: &str, channel: &str) -> Self {
        let at_ms = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            kind: Some(kind),
            at_ms,
            client: client.to_owned(),
            user: user.to_owned(),
            channel: channel.to_owned(),
            ..Self::default()
        }
    }
}

/// Consecutive-fault counter with quarantine.
#[derive(Debug, Default)]
struct Breaker {
    faults: u32,
    quarantined_until: Option<Instant>,
    backoff: Duration,
}

impl Breaker {
    /// Records a fault; true when it trips the breaker (quarantine starts).
    /// The quarantine starts at `base` and doubles per trip up to `max`.
    fn fault(&mut self, threshold: u32, base: Duration, max: Duration, now: Instant) -> bool {
        self.faults += 1;
        if self.faults < threshold || self.quarantined_until.is_some() {
            return false;
        }
        self.backoff = if self.backoff.is_zero() { base } else { (self.backoff * 2).min(max) };
        self.quarantined_until = Some(now + self.backoff);
        true
    }

    fn success(&mut self) {
        self.faults = 0;
    }

    fn quarantined(&self, now: Instant) -> bool {
        self.quarantined_until.is_some_and(|until| now < until)
    }

    /// A reload succeeded: serve again, keep the backoff for the next trip.
    fn reset(&mut self) {
        self.faults = 0;
        self.quarantined_until = None;
    }
}

/// One configured plugin: its current version, swapped atomically on reload.
struct Plugin {
    config: PluginConfig,
    /// `config.name`, shared with every metric point of this plugin.
    label: Arc<str>,
    shared: Arc<host::PluginShared>,
    current: ArcSwap<Version>,
    breaker: parking_lot::Mutex<Breaker>,
    /// Modification time of the file the current version came from.
    mtime: parking_lot::Mutex<Option<SystemTime>>,
}

struct Inner {
    engine: Engine,
    cache_dir: PathBuf,
    plugins: HashMap<String, Arc<Plugin>>,
    connect: Vec<Arc<Plugin>>,
    refresh: Vec<Arc<Plugin>>,
    subscribe: Vec<Arc<Plugin>>,
    subscribe_by_namespace: HashMap<String, Vec<Arc<Plugin>>>,
    sub_refresh: Vec<Arc<Plugin>>,
    sub_refresh_by_namespace: HashMap<String, Vec<Arc<Plugin>>>,
    publish: Vec<Arc<Plugin>>,
    publish_by_namespace: HashMap<String, Vec<Arc<Plugin>>>,
    rpc: Vec<Arc<Plugin>>,
    events: Vec<Arc<Plugin>>,
    events_tx: Option<mpsc::Sender<Event>>,
    metrics: Arc<MetricsRegistry>,
    /// The gateway's instruments, attached after construction by the
    /// transport (it builds them per instance).
    telemetry: std::sync::OnceLock<crate::telemetry::Metrics>,
    breaker_faults: u32,
    breaker_backoff: Duration,
    breaker_backoff_max: Duration,
    tick: Duration,
    init_budget: Duration,
    shutdown: CancellationToken,
    /// The root tracker: every background task of the host runs on it, so
    /// shutdown waits for them.
    tracker: TaskTracker,
    /// Stops the epoch ticker: on shutdown (a child of `shutdown`) or when
    /// the host is dropped without one (benches, embedders).
    ticker_stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.cancel();
    }
}

/// Spawns `future` on `tracker` inside a span naming the task. The same
/// shape as `transport::spawn_named`, kept here so the plugin module does
/// not depend on transport.
fn spawn_named<F>(tracker: &TaskTracker, name: &'static str, future: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tracker.spawn(future.instrument(tracing::debug_span!("task", name)));
}

/// The plugin runtime. Cheap to clone.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

/// How a load went, for logs and benches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    Cache,
    Compiled,
}

async fn read_and_compile(
    engine: &Engine,
    cache_dir: &std::path::Path,
    config: &PluginConfig,
) -> Result<(wasmtime::component::Component, String, Option<SystemTime>, LoadSource), PluginError> {
    let name = config.name.clone();
    let path = config.path.clone();
    let (engine, dir, expected) = (engine.clone(), cache_dir.to_owned(), config.sha256.clone());
    // Hashing and compiling are CPU-bound: never on a runtime worker.
    tokio::task::spawn_blocking(move || {
        let read_err =
            |e: std::io::Error| PluginError::Read { plugin: name.clone(), path: path.clone(), reason: e.to_string() };
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let wasm = std::fs::read(&path).map_err(read_err)?;
        let sha256 = runtime::sha256_hex(&wasm);
        if let Some(expected) = expected.filter(|e| *e != sha256) {
            return Err(PluginError::Integrity { plugin: name, expected, actual: sha256 });
        }
        let (component, origin) = runtime::load_component(&engine, &dir, &name, &wasm, &sha256)?;
        let source = match origin {
            runtime::Origin::Cache => LoadSource::Cache,
            runtime::Origin::Compiled => LoadSource::Compiled,
        };
        Ok((component, sha256, mtime, source))
    })
    .await
    .map_err(|e| PluginError::Runtime(format!("compile task: {e}")))?
}

impl PluginHost {
    /// Compiles (or loads from cache), links and initializes every
    /// configured plugin, checks each pipeline's plugins export its hook,
    /// and starts the epoch ticker, file watcher, event delivery and event
    /// ticks on `tracker`. Tasks stop when `shutdown` is cancelled.
    pub async fn from_config(
        config: &Config,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Self, PluginError> {
        let engine = runtime::build_engine(&config.plugins, &config.plugin_runtime)?;
        let runtime_config = &config.plugin_runtime;
        let tick = Duration::from_millis(runtime_config.epoch_tick_ms);
        let init_budget = Duration::from_millis(runtime_config.init_timeout_ms);
        // The ticker runs before the first plugin loads: `init` has a budget too.
        let ticker_stop = shutdown.child_token();
        runtime::spawn_epoch_ticker(tracker, engine.clone(), tick, ticker_stop.clone());
        // A failed start stops the ticker again.
        let stop_on_error = ticker_stop.clone().drop_guard();
        let cache_dir = runtime::cache_dir(runtime_config);
        let metrics = Arc::new(MetricsRegistry::default());
        let mut plugins = HashMap::new();
        for plugin_config in &config.plugins {
            let shared = Arc::new(host::PluginShared::new(
                &plugin_config.name,
                &plugin_config.allowed_hosts,
                metrics.clone(),
                runtime_config,
            ));
            let (component, sha256, mtime, source) = read_and_compile(&engine, &cache_dir, plugin_config).await?;
            let version =
                Version::load(&engine, &component, plugin_config, shared.clone(), sha256, tick, init_budget).await?;
            tracing::info!(plugin = %plugin_config.name, ?source, sha256 = %version.sha256, "plugin loaded");
            plugins.insert(
                plugin_config.name.clone(),
                Arc::new(Plugin {
                    config: plugin_config.clone(),
                    label: Arc::from(plugin_config.name.as_str()),
                    shared,
                    current: ArcSwap::from_pointee(version),
                    breaker: parking_lot::Mutex::new(Breaker::default()),
                    mtime: parking_lot::Mutex::new(mtime),
                }),
            );
        }

        let resolve = |names: &[String], hook: Hook| -> Result<Vec<Arc<Plugin>>, PluginError> {
            names
                .iter()
                .map(|name| {
                    let plugin = plugins
                        .get(name)
                        .ok_or_else(|| PluginError::Runtime(format!("pipeline names unknown plugin {name:?}")))?;
                    if !plugin.current.load().hooks.exports(hook) {
                        return Err(PluginError::MissingExport {
                            plugin: name.clone(),
                            interface: hook.interface().into(),
                            reason: format!("required by its place in the {hook} pipeline"),
                        });
                    }
                    Ok(plugin.clone())
                })
                .collect()
        };
        let pipelines = &config.pipelines;
        let mut publish_by_namespace = HashMap::new();
        let mut subscribe_by_namespace = HashMap::new();
        let mut sub_refresh_by_namespace = HashMap::new();
        for namespace in &config.channels.namespaces {
            if let Some(names) = &namespace.publish_pipeline {
                publish_by_namespace.insert(namespace.name.clone(), resolve(names, Hook::Publish)?);
            }
            if let Some(names) = &namespace.subscribe_pipeline {
                subscribe_by_namespace.insert(namespace.name.clone(), resolve(names, Hook::Subscribe)?);
            }
            if let Some(names) = &namespace.sub_refresh_pipeline {
                sub_refresh_by_namespace.insert(namespace.name.clone(), resolve(names, Hook::SubRefresh)?);
            }
        }
        let events = resolve(&pipelines.events, Hook::Events)?;
        let (events_tx, events_rx) = if events.is_empty() {
            (None, None)
        } else {
            let (tx, rx) = mpsc::channel(runtime_config.events_queue_max);
            (Some(tx), Some(rx))
        };
        let host = Self {
            inner: Arc::new(Inner {
                connect: resolve(&pipelines.connect, Hook::Connect)?,
                refresh: resolve(&pipelines.refresh, Hook::Refresh)?,
                subscribe: resolve(&pipelines.subscribe, Hook::Subscribe)?,
                subscribe_by_namespace,
                sub_refresh: resolve(&pipelines.sub_refresh, Hook::SubRefresh)?,
                sub_refresh_by_namespace,
                publish: resolve(&pipelines.publish, Hook::Publish)?,
                rpc: resolve(&pipelines.rpc, Hook::Rpc)?,
                publish_by_namespace,
                events,
                events_tx,
                engine,
                cache_dir,
                plugins,
                metrics,
                telemetry: std::sync::OnceLock::new(),
                breaker_faults: runtime_config.breaker_faults,
                breaker_backoff: Duration::from_millis(runtime_config.breaker_backoff_ms),
                breaker_backoff_max: Duration::from_millis(runtime_config.breaker_backoff_max_ms),
                tick,
                init_budget,
                shutdown,
                tracker: tracker.clone(),
                ticker_stop: stop_on_error.disarm(),
            }),
        };
        if let Some(rx) = events_rx {
            let tick =
                (runtime_config.events_tick_ms > 0).then(|| Duration::from_millis(runtime_config.events_tick_ms));
            let deliver = host.clone().deliver_events(rx, runtime_config.events_batch_max, tick);
            spawn_named(tracker, "plugin-events", deliver);
        }
        if runtime_config.watch_interval_ms > 0 {
            let watch = host.clone().watch_files(Duration::from_millis(runtime_config.watch_interval_ms));
            spawn_named(tracker, "plugin-watch-files", watch);
        }
        Ok(host)
    }

    /// Records plugin call latency and errors into the gateway's
    /// instruments from now on (the first attachment wins).
    pub fn attach_metrics(&self, metrics: crate::telemetry::Metrics) {
        let _ = self.inner.telemetry.set(metrics);
    }

    /// Counters and histograms recorded by and about plugins.
    pub fn metrics(&self) -> &MetricsRegistry {
        &self.inner.metrics
    }

    /// The SHA-256 of the wasm `plugin` currently runs.
    pub fn version_of(&self, plugin: &str) -> Option<String> {
        self.inner.plugins.get(plugin).map(|p| p.current.load().sha256.clone())
    }

    fn publish_pipeline(&self, channel: &str) -> &[Arc<Plugin>] {
        crate::config::channel_namespace(channel)
            .and_then(|ns| self.inner.publish_by_namespace.get(ns))
            .unwrap_or(&self.inner.publish)
    }

    /// Whether publishes to `channel` go through any plugin.
    pub fn has_publish_pipeline(&self, channel: &str) -> bool {
        !self.publish_pipeline(channel).is_empty()
    }

    pub fn has_connect_pipeline(&self) -> bool {
        !self.inner.connect.is_empty()
    }

    fn by_namespace<'a>(
        &'a self,
        channel: &str,
        by_namespace: &'a HashMap<String, Vec<Arc<Plugin>>>,
        default: &'a [Arc<Plugin>],
    ) -> &'a [Arc<Plugin>] {
        crate::config::channel_namespace(channel).and_then(|ns| by_namespace.get(ns)).map_or(default, Vec::as_slice)
    }

    fn subscribe_pipeline(&self, channel: &str) -> &[Arc<Plugin>] {
        self.by_namespace(channel, &self.inner.subscribe_by_namespace, &self.inner.subscribe)
    }

    fn sub_refresh_pipeline(&self, channel: &str) -> &[Arc<Plugin>] {
        self.by_namespace(channel, &self.inner.sub_refresh_by_namespace, &self.inner.sub_refresh)
    }

    /// Whether subscribes to `channel` go through any plugin.
    pub fn has_subscribe_pipeline(&self, channel: &str) -> bool {
        !self.subscribe_pipeline(channel).is_empty()
    }

    /// Whether expiring connections are refreshed through plugins.
    pub fn has_refresh_pipeline(&self) -> bool {
        !self.inner.refresh.is_empty()
    }

    /// Whether expiring subscriptions to `channel` are refreshed through plugins.
    pub fn has_sub_refresh_pipeline(&self, channel: &str) -> bool {
        !self.sub_refresh_pipeline(channel).is_empty()
    }

    pub fn has_rpc_pipeline(&self) -> bool {
        !self.inner.rpc.is_empty()
    }

    /// Calls one hook with breaker, pool and fault handling.
    async fn call(&self, plugin: &Arc<Plugin>, call: Call<'_>) -> Result<Returned, PluginError> {
        let hook = call.hook();
        let name = &plugin.config.name;
        let span = crate::child_span!(
            "plugin.call",
            otel.name = %format_args!("plugin {name} {hook}"),
            plugin.name = %name,
            plugin.hook = %hook,
            plugin.outcome = tracing::field::Empty,
            plugin.duration_ms = tracing::field::Empty,
            plugin.trap = tracing::field::Empty,
        );
        let started = Instant::now();
        // Untraced calls (most) skip the instrumentation's enter and exit.
        let result = if span.is_disabled() {
            self.call_guarded(plugin, call).await
        } else {
            self.call_guarded(plugin, call).instrument(span.clone()).await
        };
        let elapsed = started.elapsed();
        let failure = result.as_ref().err().map(PluginError::kind);
        span.record("plugin.outcome", failure.unwrap_or("ok"));
        span.record("plugin.duration_ms", elapsed.as_secs_f64() * 1000.0);
        if let Err(PluginError::Trap { trap, .. }) = &result {
            span.record("plugin.trap", trap.as_str());
        }
        if let Some(metrics) = self.inner.telemetry.get() {
            metrics.plugin_call(&plugin.label, hook.metric_name(), elapsed, failure);
        }
        result
    }

    /// [`PluginHost::call`] without the span and metrics.
    async fn call_guarded(&self, plugin: &Arc<Plugin>, call: Call<'_>) -> Result<Returned, PluginError> {
        let hook = call.hook();
        let name = &plugin.config.name;
        {
            let breaker = plugin.breaker.lock();
            // Most calls find no quarantine: skip reading the clock then.
            if breaker.quarantined_until.is_some() && breaker.quarantined(Instant::now()) {
                return Err(PluginError::Quarantined { plugin: name.clone(), hook, faults: breaker.faults });
            }
        }
        // In-flight calls keep the version they started on across a swap.
        let version = plugin.current.load_full();
        let result = match version.acquire(hook).await {
            Ok(mut lease) => {
                let result = version.invoke(&mut lease, call).await;
                if result.is_ok() {
                    version.finish(lease);
                }
                // On error the lease drops here: the instance is discarded.
                result
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => plugin.breaker.lock().success(),
            Err(e) => {
                self.inner.metrics.counter_add(name, "plugin_errors", &[("hook".into(), hook.to_string())], 1);
                if e.is_fault() {
                    let tripped = plugin.breaker.lock().fault(
                        self.inner.breaker_faults,
                        self.inner.breaker_backoff,
                        self.inner.breaker_backoff_max,
                        Instant::now(),
                    );
                    if tripped {
                        tracing::error!(plugin = %name, faults = self.inner.breaker_faults, "plugin quarantined");
                        spawn_named(&self.inner.tracker, "plugin-recover", self.clone().recover(plugin.clone()));
                    }
                }
            }
        }
        result
    }

    /// Waits out the quarantine, then reloads the plugin; retries with a
    /// doubling backoff while the reload fails.
    async fn recover(self, plugin: Arc<Plugin>) {
        loop {
            let until = plugin.breaker.lock().quarantined_until;
            let Some(until) = until else { return };
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(until.into()) => {}
            }
            match self.reload_plugin(&plugin).await {
                Ok(()) => {
                    plugin.breaker.lock().reset();
                    tracing::info!(plugin = %plugin.config.name, "plugin reloaded after quarantine");
                    return;
                }
                Err(e) => {
                    tracing::error!(plugin = %plugin.config.name, error = %e, "plugin reload failed; staying quarantined");
                    let mut breaker = plugin.breaker.lock();
                    breaker.backoff = (breaker.backoff * 2).min(self.inner.breaker_backoff_max);
                    breaker.quarantined_until = Some(Instant::now() + breaker.backoff);
                }
            }
        }
    }

    /// Compiles, links and initializes the plugin's file again, then swaps
    /// it in; calls already running finish on the old version.
    async fn reload_plugin(&self, plugin: &Plugin) -> Result<(), PluginError> {
        let (component, sha256, mtime, source) =
            read_and_compile(&self.inner.engine, &self.inner.cache_dir, &plugin.config).await?;
        let version = Version::load(
            &self.inner.engine,
            &component,
            &plugin.config,
            plugin.shared.clone(),
            sha256,
            self.inner.tick,
            self.inner.init_budget,
        )
        .await?;
        for hook in
            [Hook::Connect, Hook::Subscribe, Hook::Publish, Hook::Rpc, Hook::Events, Hook::Refresh, Hook::SubRefresh]
        {
            if plugin.current.load().hooks.exports(hook) && !version.hooks.exports(hook) {
                return Err(PluginError::MissingExport {
                    plugin: plugin.config.name.clone(),
                    interface: hook.interface().into(),
                    reason: "the running version exports it and pipelines may rely on it".into(),
                });
            }
        }
        tracing::info!(plugin = %plugin.config.name, ?source, sha256 = %version.sha256, "plugin version swapped in");
        plugin.current.store(Arc::new(version));
        *plugin.mtime.lock() = mtime;
        Ok(())
    }

    /// Reloads every plugin (SIGHUP). A plugin whose new version fails to
    /// load keeps running the old one; the errors are returned.
    pub async fn reload_all(&self) -> Vec<PluginError> {
        let mut errors = Vec::new();
        for plugin in self.inner.plugins.values() {
            if let Err(e) = self.reload_plugin(plugin).await {
                tracing::error!(plugin = %plugin.config.name, error = %e, "plugin reload failed; keeping the running version");
                errors.push(e);
            }
        }
        errors
    }

    async fn watch_files(self, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            for plugin in self.inner.plugins.values() {
                let now = std::fs::metadata(&plugin.config.path).and_then(|m| m.modified()).ok();
                let known = *plugin.mtime.lock();
                if now.is_some() && now != known {
                    tracing::info!(plugin = %plugin.config.name, "plugin file changed; reloading");
                    if let Err(e) = self.reload_plugin(plugin).await {
                        tracing::error!(plugin = %plugin.config.name, error = %e, "hot reload failed; keeping the running version");
                        // Do not retry the same broken file every tick.
                        *plugin.mtime.lock() = now;
                    }
                }
            }
        }
    }

    /// Runs the connect pipeline. A principal from one plugin is what the
    /// next one sees as the user. A component exporting `connect-ext-hook`
    /// is called through it (and sees transport, headers, channels).
    pub async fn on_connect(&self, mut info: ConnectInfo) -> ConnectOutcome {
        let mut outcome = ConnectOutcome::Keep;
        for plugin in &self.inner.connect {
            let (attempt, request);
            let call = if plugin.current.load().hooks.connect_ext.is_some() {
                attempt = types::ConnectAttempt {
                    client: info.client.clone(),
                    transport: info.transport.clone(),
                    protocol: info.protocol.clone(),
                    user: info.user.clone(),
                    claims: info.claims.clone(),
                    data: info.data.to_vec(),
                    name: info.name.clone(),
                    version: info.version.clone(),
                    channels: info.channels.clone(),
                    headers: info.headers.clone(),
                    trace: to_trace(&info.trace),
                };
                Call::ConnectExt(&attempt)
            } else {
                request = types::ConnectRequest {
                    client: info.client.clone(),
                    transport: info.transport.clone(),
                    user: info.user.clone(),
                    claims: info.claims.clone(),
                    data: info.data.to_vec(),
                    name: info.name.clone(),
                    version: info.version.clone(),
                    trace: to_trace(&info.trace),
                };
                Call::Connect(&request)
            };
            let decision = match self.call(plugin, call).await {
                Ok(Returned::Connect(decision)) => *decision,
                Ok(_) => unreachable!("connect returns a connect decision"),
                Err(_) => match plugin.config.on_error {
                    OnError::Deny => return ConnectOutcome::Deny(Rejection::plugin_failed(&plugin.config.name)),
                    OnError::Pass => return outcome,
                    OnError::Skip => continue,
                },
            };
            let principal = match decision {
                types::ConnectDecision::Pass => continue,
                types::ConnectDecision::Allow(s) => Principal {
                    user: s.user,
                    info: s.info.map(Bytes::from),
                    channels: s.channels,
                    expires_at: s.expires_at,
                    data: s.data.map(Bytes::from),
                    meta: s.meta.map(Bytes::from),
                },
                types::ConnectDecision::Deny(r) => return ConnectOutcome::Deny(from_reject(r)),
                types::ConnectDecision::Disconnect(r) => return ConnectOutcome::Disconnect(from_reject(r)),
            };
            info.user = principal.user.clone();
            outcome = ConnectOutcome::Allow(principal);
        }
        outcome
    }

    /// Runs the refresh pipeline for a connection at its expiry: the first
    /// plugin that expires or disconnects decides; otherwise the last
    /// extension stands. A failing plugin closes the connection with 3004
    /// (the client reconnects and connects afresh) whatever `on_error`
    /// says: there is no earlier decision to fall back on.
    pub async fn on_refresh(&self, connection: &Connection) -> RefreshOutcome {
        let mut outcome = RefreshOutcome::Expire;
        for plugin in &self.inner.refresh {
            let req =
                types::RefreshRequest { conn: to_connection(connection), trace: to_trace(&TraceContext::default()) };
            match self.call(plugin, Call::Refresh(&req)).await {
                Ok(Returned::Refresh(decision)) => match from_refresh(decision) {
                    extend @ RefreshOutcome::Extend { .. } => outcome = extend,
                    stop => return stop,
                },
                Ok(_) => unreachable!("refresh returns a refresh decision"),
                Err(_) => return RefreshOutcome::Disconnect(Rejection { code: 3004, reason: "refresh failed".into() }),
            }
        }
        outcome
    }

    /// Runs the sub-refresh pipeline of `channel` at a subscription's
    /// expiry; decided like [`PluginHost::on_refresh`], a failing plugin
    /// expires the subscription (the client resubscribes).
    pub async fn on_sub_refresh(&self, connection: &Connection, channel: &str) -> RefreshOutcome {
        let mut outcome = RefreshOutcome::Expire;
        for plugin in self.sub_refresh_pipeline(channel) {
            let req = types::SubRefreshRequest {
                conn: to_connection(connection),
                channel: channel.to_owned(),
                trace: to_trace(&TraceContext::default()),
            };
            match self.call(plugin, Call::SubRefresh(&req)).await {
                Ok(Returned::Refresh(decision)) => match from_refresh(decision) {
                    extend @ RefreshOutcome::Extend { .. } => outcome = extend,
                    stop => return stop,
                },
                Ok(_) => unreachable!("sub-refresh returns a refresh decision"),
                Err(_) => return RefreshOutcome::Expire,
            }
        }
        outcome
    }

    /// Runs the subscribe pipeline of `info.channel`: every plugin must
    /// allow; grants merge, a later plugin's set fields winning.
    pub async fn on_subscribe(&self, info: SubscribeInfo) -> SubscribeOutcome {
        let mut grant = SubscribeGrant::default();
        for plugin in self.subscribe_pipeline(&info.channel) {
            let (attempt, request);
            let call = if plugin.current.load().hooks.subscribe_ext.is_some() {
                attempt = types::SubscribeAttempt {
                    conn: to_connection(&info.connection),
                    channel: info.channel.clone(),
                    data: info.data.to_vec(),
                    trace: to_trace(&info.trace),
                };
                Call::SubscribeExt(&attempt)
            } else {
                request = types::SubscribeRequest {
                    client: info.connection.client.clone(),
                    user: info.connection.user.clone(),
                    channel: info.channel.clone(),
                    data: info.data.to_vec(),
                    trace: to_trace(&info.trace),
                };
                Call::Subscribe(&request)
            };
            match self.call(plugin, call).await {
                Ok(Returned::Subscribe(types::Verdict::Allow)) => {}
                Ok(Returned::SubscribeExt(types::SubscribeDecision::Allow(s))) => {
                    let s = SubscribeGrant {
                        info: s.info.map(Bytes::from),
                        data: s.data.map(Bytes::from),
                        expires_at: s.expires_at,
                        presence: s.presence,
                        join_leave: s.join_leave,
                        force_recovery: s.force_recovery,
                    };
                    grant = SubscribeGrant {
                        info: s.info.or(grant.info),
                        data: s.data.or(grant.data),
                        expires_at: s.expires_at.or(grant.expires_at),
                        presence: s.presence.or(grant.presence),
                        join_leave: s.join_leave.or(grant.join_leave),
                        force_recovery: s.force_recovery.or(grant.force_recovery),
                    };
                }
                Ok(Returned::Subscribe(types::Verdict::Deny(r)))
                | Ok(Returned::SubscribeExt(types::SubscribeDecision::Deny(r))) => {
                    return SubscribeOutcome::Deny(from_reject(r));
                }
                Ok(Returned::SubscribeExt(types::SubscribeDecision::Disconnect(r))) => {
                    return SubscribeOutcome::Disconnect(from_reject(r));
                }
                Ok(_) => unreachable!("subscribe returns a verdict"),
                Err(_) => match plugin.config.on_error {
                    OnError::Deny => return SubscribeOutcome::Deny(Rejection::plugin_failed(&plugin.config.name)),
                    OnError::Pass => return SubscribeOutcome::Allow(grant),
                    OnError::Skip => {}
                },
            }
        }
        SubscribeOutcome::Allow(grant)
    }

    /// Runs the publish pipeline of `message.channel` in order: a
    /// replacement feeds the next plugin; drop and deny stop the chain.
    pub async fn on_publish(&self, mut message: Message) -> PublishOutcome {
        let pipeline = self.publish_pipeline(&message.channel);
        if pipeline.is_empty() {
            return PublishOutcome::Pass(message);
        }
        // Each plugin reads the message where it lies (borrowed records,
        // lowered straight into the guest); a `replace` overwrites its
        // content before the next plugin.
        for plugin in pipeline {
            let msg = borrowed_message(&message);
            let conn = message.connection.as_deref().map(|c| borrowed::Connection {
                client: &c.client,
                user: &c.user,
                transport: &c.transport,
                protocol: &c.protocol,
                meta: &c.meta,
            });
            let call = Call::Publish(&msg, conn.as_ref());
            let result = self.call(plugin, call).await;
            let replacement = match result {
                Ok(Returned::Publish(Published::Pass)) => continue,
                Ok(Returned::Publish(Published::Replace(r))) => r,
                Ok(Returned::Publish(Published::Drop)) => return PublishOutcome::Drop,
                Ok(Returned::Publish(Published::Deny(r))) => return PublishOutcome::Deny(from_reject(r)),
                Ok(_) => unreachable!("publish returns a publish result"),
                Err(_) => match plugin.config.on_error {
                    OnError::Deny => return PublishOutcome::Deny(Rejection::plugin_failed(&plugin.config.name)),
                    OnError::Pass => break,
                    OnError::Skip => continue,
                },
            };
            // The channel is fixed by the caller's permission check: a
            // plugin may rewrite content, not redirect it.
            message.data = Bytes::from(replacement.data);
            message.tags = replacement.tags;
            message.content_type = replacement.content_type;
            message.skip_history |= replacement.skip_history;
        }
        PublishOutcome::Pass(message)
    }

    /// Runs the rpc pipeline: the first plugin that does not answer 104
    /// (method not found) answers. None when no rpc plugin is configured.
    pub async fn on_rpc(&self, method: &str, data: Bytes) -> Option<Result<Bytes, Rejection>> {
        if self.inner.rpc.is_empty() {
            return None;
        }
        for plugin in &self.inner.rpc {
            match self.call(plugin, Call::Rpc(method, &data)).await {
                Ok(Returned::Rpc(Ok(bytes))) => return Some(Ok(Bytes::from(bytes))),
                Ok(Returned::Rpc(Err(e))) if e.code == 104 => {}
                Ok(Returned::Rpc(Err(e))) => return Some(Err(Rejection { code: e.code, reason: e.message })),
                Ok(_) => unreachable!("rpc returns an rpc result"),
                Err(_) => match plugin.config.on_error {
                    OnError::Deny | OnError::Pass => {
                        return Some(Err(Rejection::plugin_failed(&plugin.config.name)));
                    }
                    OnError::Skip => {}
                },
            }
        }
        Some(Err(Rejection { code: 104, reason: "method not found".into() }))
    }

    /// Queues a lifecycle event for the `events` plugins without waiting.
    /// When the queue is full the event is dropped and counted.
    pub fn emit(&self, event: Event) {
        let Some(tx) = &self.inner.events_tx else { return };
        if tx.try_send(event).is_err() {
            self.inner.metrics.counter_add("host", "events_dropped", &[], 1);
            if let Some(metrics) = self.inner.telemetry.get() {
                metrics.queue_drop("events", 1);
            }
        }
    }

    /// Whether anyone listens to [`PluginHost::emit`].
    pub fn wants_events(&self) -> bool {
        self.inner.events_tx.is_some()
    }

    /// Hands queued events to the `events` plugins in batches, one call at a
    /// time. With `tick`, a plugin that got nothing for that long gets an
    /// empty batch, so deferred work (retries) runs without new traffic.
    async fn deliver_events(self, mut rx: mpsc::Receiver<Event>, batch_max: usize, tick: Option<Duration>) {
        let mut batch = Vec::with_capacity(batch_max);
        // Without ticks, a timer that never fires.
        let period = tick.unwrap_or(Duration::from_secs(86_400 * 365));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let received = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                n = rx.recv_many(&mut batch, batch_max) => n,
                _ = ticker.tick(), if tick.is_some() => {
                    for plugin in &self.inner.events {
                        if let Err(e) = self.call(plugin, Call::Events(&[])).await {
                            tracing::warn!(plugin = %plugin.config.name, error = %e, "event tick failed");
                        }
                    }
                    continue;
                }
            };
            if received == 0 {
                return;
            }
            // A delivery is as good as a tick: the next tick comes a full
            // period after it.
            ticker.reset();
            let events: Vec<types::Event> = batch.drain(..).map(to_event).collect();
            // The batch continues the trace of its first traced event (the
            // others are named by their own traceparent in the events).
            let parent = events.iter().find_map(|e| e.trace.as_ref());
            let (traceparent, tracestate) =
                parent.map_or(("", ""), |t| (t.traceparent.as_str(), t.tracestate.as_str()));
            let span = crate::follow_span!(
                traceparent,
                tracestate,
                "events.batch",
                events = crate::telemetry::trace::int(events.len())
            );
            for plugin in &self.inner.events {
                let delivered = self.call(plugin, Call::Events(&events)).instrument(span.clone()).await;
                if let Err(e) = delivered {
                    tracing::warn!(plugin = %plugin.config.name, error = %e, lost = events.len(), "event batch not delivered");
                }
            }
        }
    }
}

/// The guest's view of `message`, borrowed.
fn borrowed_message(message: &Message) -> borrowed::Message<'_> {
    borrowed::Message {
        channel: &message.channel,
        publisher: message.publisher.as_ref().map(|p| borrowed::Publisher { user: &p.user, client: &p.client }),
        data: &message.data,
        tags: &message.tags,
        content_type: &message.content_type,
        trace: message
            .trace
            .traced()
            .map(|t| borrowed::TraceContext { traceparent: &t.traceparent, tracestate: &t.tracestate }),
    }
}

/// The guest's trace context: none when the operation is not traced.
fn to_trace(trace: &TraceContext) -> Option<types::TraceContext> {
    trace.traced().map(|t| types::TraceContext { traceparent: t.traceparent.clone(), tracestate: t.tracestate.clone() })
}

fn to_connection(c: &Connection) -> types::Connection {
    types::Connection {
        client: c.client.clone(),
        user: c.user.clone(),
        transport: c.transport.clone(),
        protocol: c.protocol.clone(),
        meta: c.meta.to_vec(),
    }
}

fn from_refresh(decision: types::RefreshDecision) -> RefreshOutcome {
    match decision {
        types::RefreshDecision::Extend(g) => {
            RefreshOutcome::Extend { expires_at: g.expires_at, info: g.info.map(Bytes::from) }
        }
        types::RefreshDecision::Expire => RefreshOutcome::Expire,
        types::RefreshDecision::Disconnect(r) => RefreshOutcome::Disconnect(from_reject(r)),
    }
}

fn from_reject(r: types::Reject) -> Rejection {
    Rejection { code: r.code, reason: r.reason }
}

fn to_event(event: Event) -> types::Event {
    use types::EventKind as K;
    let kind = match event.kind.unwrap_or(EventKind::Publish) {
        EventKind::Connect => K::Connect,
        EventKind::Disconnect => K::Disconnect,
        EventKind::Subscribe => K::Subscribe,
        EventKind::Unsubscribe => K::Unsubscribe,
        EventKind::Publish => K::Publish,
        EventKind::Join => K::Join,
        EventKind::Leave => K::Leave,
        EventKind::ChannelOccupied => K::ChannelOccupied,
        EventKind::ChannelVacated => K::ChannelVacated,
    };
    types::Event {
        kind,
        at_ms: event.at_ms,
        client: event.client,
        user: event.user,
        channel: event.channel,
        data: event.data.to_vec(),
        code: event.code,
        trace: to_trace(&event.trace),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_get_a_trace_context_only_for_traced_operations() {
        let untraced = Message { channel: "c".into(), ..Message::default() };
        assert!(borrowed_message(&untraced).trace.is_none());
        assert!(to_trace(&untraced.trace).is_none());

        let trace = TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: "k=v".into(),
        };
        let traced = Message { trace: trace.clone(), ..untraced };
        let lowered = borrowed_message(&traced).trace.expect("a traced message carries its trace");
        assert_eq!((lowered.traceparent, lowered.tracestate), (trace.traceparent.as_str(), "k=v"));
        let owned = to_trace(&trace).expect("a traced operation carries its trace");
        assert_eq!((owned.traceparent, owned.tracestate), (trace.traceparent.clone(), trace.tracestate.clone()));
    }

    #[test]
    fn breaker_trips_after_n_faults_and_backs_off() {
        let mut b = Breaker::default();
        let now = Instant::now();
        let base = Duration::from_millis(100);
        let max = base * 3;
        assert!(!b.fault(3, base, max, now));
        b.success();
        assert!(!b.fault(3, base, max, now));
        assert!(!b.fault(3, base, max, now));
        assert!(!b.quarantined(now), "2 consecutive faults after a success do not trip at 3");
        assert!(b.fault(3, base, max, now));
        assert!(b.quarantined(now));
        assert!(!b.quarantined(now + base), "quarantine lasts the backoff");
        assert!(!b.fault(3, base, max, now), "no second trip while quarantined");
        b.reset();
        assert!(!b.quarantined(now));
        for _ in 0..2 {
            b.fault(3, base, max, now);
        }
        assert!(b.fault(3, base, max, now));
        assert_eq!(b.backoff, base * 2, "the backoff doubles per trip");
        b.reset();
        for _ in 0..3 {
            b.fault(3, base, max, now);
        }
        assert_eq!(b.backoff, max, "and stops at breaker_backoff_max_ms");
    }

    #[test]
    fn hooks_are_named_by_interface_and_function() {
        assert_eq!(Hook::Publish.to_string(), "on-publish");
        assert_eq!(Hook::Publish.interface(), "publish-hook");
        let err = PluginError::Timeout { plugin: "p".into(), hook: Hook::Publish, timeout_ms: 5 };
        assert_eq!(err.to_string(), "plugin p: on-publish timed out (budget 5 ms)");
    }
}
