//! Host imports: what a plugin may call, each granted per plugin.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dashmap::DashMap;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::RngCore;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::switchboard::plugin::{clock, http, kv, log, metrics, random};
use crate::config::PluginRuntimeConfig;

/// Counters and histograms plugins record (and the host records about
/// them). The observability work exports these; for now they are read in
/// tests and logs.
#[derive(Default)]
pub struct MetricsRegistry {
    counters: DashMap<String, AtomicU64>,
    histograms: DashMap<String, (u64, f64)>,
}

impl MetricsRegistry {
    fn key(plugin: &str, name: &str, labels: &[(String, String)]) -> String {
        let mut key = format!("{plugin}.{name}");
        for (k, v) in labels {
            key.push_str(&format!(",{k}={v}"));
        }
        key
    }

    pub fn counter_add(&self, plugin: &str, name: &str, labels: &[(String, String)], value: u64) {
        let key = Self::key(plugin, name, labels);
        if let Some(c) = self.counters.get(&key) {
            c.fetch_add(value, Ordering::Relaxed);
            return;
        }
        self.counters.entry(key).or_default().fetch_add(value, Ordering::Relaxed);
    }

    pub fn histogram_record(&self, plugin: &str, name: &str, labels: &[(String, String)], value: f64) {
        let mut entry = self.histograms.entry(Self::key(plugin, name, labels)).or_insert((0, 0.0));
        entry.0 += 1;
        entry.1 += value;
    }

    /// The counter `plugin.name[,label=value…]`, 0 when never recorded.
    pub fn counter(&self, key: &str) -> u64 {
        self.counters.get(key).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Count and sum of the histogram `plugin.name[,label=value…]`.
    pub fn histogram(&self, key: &str) -> (u64, f64) {
        self.histograms.get(key).map_or((0, 0.0), |h| *h)
    }
}

#[derive(Clone)]
struct KvEntry {
    value: Bytes,
    expires: Option<std::time::Instant>,
}

/// Per-plugin state that outlives versions (reloads keep the kv data).
pub struct PluginShared {
    pub name: String,
    kv: moka::sync::Cache<String, KvEntry>,
    pub metrics: Arc<MetricsRegistry>,
    allowed_hosts: Vec<String>,
    http: Client<HttpConnector, Full<Bytes>>,
    /// `[plugin_runtime] fetch_max_timeout_ms`.
    fetch_max_timeout: Duration,
    /// `[plugin_runtime] fetch_max_body_bytes`.
    fetch_max_body_bytes: usize,
    /// `[plugin_runtime] random_max_bytes`.
    random_max_bytes: u32,
}

impl PluginShared {
    pub fn new(
        name: &str,
        allowed_hosts: &[String],
        metrics: Arc<MetricsRegistry>,
        limits: &PluginRuntimeConfig,
    ) -> Self {
        Self {
            name: name.to_owned(),
            kv: moka::sync::Cache::builder().max_capacity(limits.kv_max_entries).build(),
            metrics,
            allowed_hosts: allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            http: Client::builder(TokioExecutor::new()).build_http(),
            fetch_max_timeout: Duration::from_millis(limits.fetch_max_timeout_ms),
            fetch_max_body_bytes: limits.fetch_max_body_bytes,
            random_max_bytes: limits.random_max_bytes,
        }
    }

    fn kv_get(&self, key: &str) -> Option<Bytes> {
        let entry = self.kv.get(key)?;
        if entry.expires.is_some_and(|at| at <= std::time::Instant::now()) {
            self.kv.invalidate(key);
            return None;
        }
        Some(entry.value)
    }

    /// Whether `url`'s host (with or without its port) is allowed.
    pub fn host_allowed(&self, url: &::http::Uri) -> Result<(), String> {
        let host = url.host().ok_or_else(|| format!("url has no host: {url}"))?.to_ascii_lowercase();
        let with_port = url.port_u16().map(|p| format!("{host}:{p}"));
        let allowed = self.allowed_hosts.iter().any(|a| *a == host || Some(a) == with_port.as_ref());
        if allowed { Ok(()) } else { Err(format!("host not allowed: {}", with_port.unwrap_or(host))) }
    }
}

fn expiry(ttl_ms: Option<u64>) -> Option<std::time::Instant> {
    ttl_ms.map(|ms| std::time::Instant::now() + Duration::from_millis(ms))
}

/// The data of one instance's store.
pub struct HostState {
    pub shared: Arc<PluginShared>,
    pub limits: StoreLimits,
    /// Epoch ticks the running call may still spend in wasm. Ticks are
    /// counted only while the guest runs, so time spent in host calls or
    /// yielded to other tasks is not charged to the plugin.
    pub ticks_left: u64,
    /// Set by the epoch callback when it interrupts a call at its deadline.
    pub timed_out: bool,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub fn new(shared: Arc<PluginShared>, memory_max_bytes: usize) -> Self {
        Self {
            shared,
            limits: StoreLimitsBuilder::new().memory_size(memory_max_bytes).trap_on_grow_failure(true).build(),
            ticks_left: 0,
            timed_out: false,
            // No preopens, env, args, stdio or sockets: std guests link, but
            // have no ambient access.
            wasi: WasiCtx::builder().allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false).build(),
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let plugin = self.shared.name.as_str();
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, "{message}"),
            log::Level::Info => tracing::info!(plugin, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, "{message}"),
            log::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.shared.kv_get(&key).map(|b| b.to_vec())
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) {
        self.shared.kv.insert(key, KvEntry { value: Bytes::from(value), expires: expiry(ttl_ms) });
    }

    fn incr(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> i64 {
        let now = std::time::Instant::now();
        let result = self.shared.kv.entry(key).and_compute_with(|current| {
            let live = current.map(|e| e.into_value()).filter(|e| e.expires.is_none_or(|at| at > now));
            let base = live.as_ref().and_then(|e| std::str::from_utf8(&e.value).ok()?.parse::<i64>().ok()).unwrap_or(0);
            let next = base.saturating_add(delta);
            // The TTL starts with the key; increments keep it.
            let expires = live.and_then(|e| e.expires).or_else(|| expiry(ttl_ms));
            moka::ops::compute::Op::Put(KvEntry { value: Bytes::from(next.to_string()), expires })
        });
        match result {
            moka::ops::compute::CompResult::Inserted(e)
            | moka::ops::compute::CompResult::ReplacedWith(e)
            | moka::ops::compute::CompResult::Unchanged(e) => {
                std::str::from_utf8(&e.into_value().value).ok().and_then(|s| s.parse().ok()).unwrap_or(0)
            }
            moka::ops::compute::CompResult::StillNone(_) | moka::ops::compute::CompResult::Removed(_) => 0,
        }
    }
}

impl metrics::Host for HostState {
    fn counter_add(&mut self, name: String, value: u64, labels: Vec<(String, String)>) {
        self.shared.metrics.counter_add(&self.shared.name, &name, &labels, value);
    }

    fn histogram_record(&mut self, name: String, value: f64, labels: Vec<(String, String)>) {
        self.shared.metrics.histogram_record(&self.shared.name, &name, &labels, value);
    }
}

impl http::Host for HostState {
    async fn fetch(&mut self, req: http::Request) -> Result<http::Response, String> {
        // Waiting on the network is not charged to the guest's budget (the
        // epoch callback only counts ticks while wasm runs); the fetch has
        // its own timeout.
        let span = crate::child_span!(
            "http.fetch",
            otel.name = %format_args!("{} {}", req.method, crate::telemetry::redact_token(&req.url)),
            otel.kind = "client",
            plugin.name = %self.shared.name,
            http.request.method = %req.method,
            url.full = %crate::telemetry::redact_token(&req.url),
            http.response.status_code = tracing::field::Empty,
        );
        let result = tracing::Instrument::instrument(fetch(&self.shared, req), span.clone()).await;
        if let Ok(response) = &result {
            span.record("http.response.status_code", i64::from(response.status));
        }
        if let Err(reason) = &result {
            tracing::warn!(plugin = %self.shared.name, %reason, "plugin http.fetch refused or failed");
        }
        result
    }
}

async fn fetch(shared: &PluginShared, req: http::Request) -> Result<http::Response, String> {
    let uri: ::http::Uri = req.url.parse().map_err(|e| format!("bad url {:?}: {e}", req.url))?;
    shared.host_allowed(&uri)?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("unsupported scheme in {} (only http)", req.url));
    }
    let method = ::http::Method::from_bytes(req.method.as_bytes()).map_err(|e| format!("bad method: {e}"))?;
    let mut builder = ::http::Request::builder().method(method).uri(uri);
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    // The host propagates the trace (this fetch span) unless the plugin
    // chose its own parent.
    if !req.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("traceparent")) {
        let trace = crate::telemetry::current_headers();
        if !trace.is_empty() {
            builder = builder.header("traceparent", trace.traceparent);
            if !trace.tracestate.is_empty() {
                builder = builder.header("tracestate", trace.tracestate);
            }
        }
    }
    let request = builder.body(Full::new(Bytes::from(req.body))).map_err(|e| format!("bad request: {e}"))?;
    let timeout = match req.timeout_ms {
        0 => shared.fetch_max_timeout,
        ms => Duration::from_millis(u64::from(ms)).min(shared.fetch_max_timeout),
    };
    let max_body = shared.fetch_max_body_bytes;
    let exchange = async {
        let response = shared.http.request(request).await.map_err(|e| format!("request failed: {e}"))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| format!("response body: {e} (max {max_body} bytes)"))?
            .to_bytes();
        Ok(http::Response { status, headers, body: body.to_vec() })
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| format!("timed out after {} ms", timeout.as_millis()))?
}

impl clock::Host for HostState {
    fn now_ms(&mut self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn monotonic_ns(&mut self) -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        u64::try_from(START.get_or_init(std::time::Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl random::Host for HostState {
    fn fill(&mut self, len: u32) -> Vec<u8> {
        // Capped so a guest cannot make the host allocate without bound.
        let mut bytes = vec![0; len.min(self.shared.random_max_bytes) as usize];
        rand::rng().fill_bytes(&mut bytes);
        bytes
    }

    fn next_u64(&mut self) -> u64 {
        rand::rng().next_u64()
    }
}

impl super::bindings::types::Host for HostState {}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(hosts: &[&str]) -> PluginShared {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        PluginShared::new("p", &hosts, Arc::default(), &PluginRuntimeConfig::default())
    }

    #[test]
    fn only_listed_hosts_are_allowed() {
        let s = shared(&["example.com", "127.0.0.1:8080"]);
        assert_eq!(s.host_allowed(&"http://example.com/x".parse().unwrap()), Ok(()));
        assert_eq!(s.host_allowed(&"http://EXAMPLE.com:81/x".parse().unwrap()), Ok(()));
        assert_eq!(s.host_allowed(&"http://127.0.0.1:8080/".parse().unwrap()), Ok(()));
        assert_eq!(
            s.host_allowed(&"http://127.0.0.1:9090/".parse().unwrap()),
            Err("host not allowed: 127.0.0.1:9090".into())
        );
        assert_eq!(s.host_allowed(&"http://evil.com/".parse().unwrap()), Err("host not allowed: evil.com".into()));
    }

    #[test]
    fn kv_is_per_plugin_with_ttl_and_incr() {
        let mut a = HostState::new(Arc::new(shared(&[])), 1 << 20);
        let mut b = HostState::new(Arc::new(shared(&[])), 1 << 20);
        kv::Host::set(&mut a, "k".into(), b"v".to_vec(), None);
        assert_eq!(kv::Host::get(&mut a, "k".into()), Some(b"v".to_vec()));
        assert_eq!(kv::Host::get(&mut b, "k".into()), None, "namespaced per plugin");
        assert_eq!(kv::Host::incr(&mut a, "n".into(), 2, None), 2);
        assert_eq!(kv::Host::incr(&mut a, "n".into(), -5, None), -3);
        kv::Host::set(&mut a, "gone".into(), b"x".to_vec(), Some(0));
        assert_eq!(kv::Host::get(&mut a, "gone".into()), None, "ttl 0 expires at once");
        assert_eq!(kv::Host::incr(&mut a, "gone".into(), 1, None), 1, "an expired key counts as 0");
    }

    #[test]
    fn random_fill_is_capped_by_random_max_bytes() {
        let limits = PluginRuntimeConfig { random_max_bytes: 8, ..PluginRuntimeConfig::default() };
        let shared = Arc::new(PluginShared::new("p", &[], Arc::default(), &limits));
        let mut state = HostState::new(shared, 1 << 20);
        assert_eq!(random::Host::fill(&mut state, 100).len(), 8);
        assert_eq!(random::Host::fill(&mut state, 3).len(), 3);
    }

    #[test]
    fn metrics_accumulate_per_plugin_name_and_labels() {
        let registry = MetricsRegistry::default();
        let labels = vec![("k".to_owned(), "v".to_owned())];
        registry.counter_add("p", "hits", &labels, 2);
        registry.counter_add("p", "hits", &labels, 3);
        registry.histogram_record("p", "lat", &[], 1.5);
        registry.histogram_record("p", "lat", &[], 2.5);
        assert_eq!(registry.counter("p.hits,k=v"), 5);
        assert_eq!(registry.counter("p.hits"), 0);
        assert_eq!(registry.histogram("p.lat"), (2, 4.0));
    }
}
