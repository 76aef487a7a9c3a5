//! Telemetry: traces, metrics and logs. A leaf: imports no other gateway
//! module; callers hand it [`Settings`] built from `[telemetry]`.
//!
//! - [`init`] installs the process-wide `tracing` subscriber once: log lines
//!   (pretty or JSON, with trace and span ids) and, when an OTLP endpoint is
//!   set, the OpenTelemetry layer exporting spans of target
//!   [`trace::SPAN_TARGET`] in batches.
//! - [`trace`] decides sampling before a span exists (see its docs) and
//!   moves W3C trace context in and out.
//! - [`Metrics`] holds every instrument of one gateway instance, exported
//!   over OTLP and as Prometheus text; [`metrics::names`] is the one place
//!   metric names are written.
//!
//! It never records tokens or payloads: spans and metrics carry channel,
//! user, method and codes only.

mod logs;
pub mod metrics;
mod settings;
pub mod trace;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use logs::redact_token;
pub use metrics::{Metrics, PROMETHEUS_CONTENT_TYPE};
pub use settings::{LogFormat, Protocol, Settings};
pub use trace::{SPAN_TARGET, TraceHeaders, current_headers};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry exporter: {0}")]
    Exporter(String),
    #[error("telemetry header {0:?} is not a valid gRPC metadata entry")]
    Header(String),
    #[error("a tracing subscriber is already installed in this process")]
    AlreadyInstalled,
    #[error("span export needs a Tokio runtime: call telemetry::init inside one")]
    NoRuntime,
}

pub(crate) fn grpc_metadata(
    headers: &BTreeMap<String, String>,
) -> Result<opentelemetry_otlp::tonic_types::metadata::MetadataMap, TelemetryError> {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| TelemetryError::Header(name.clone()))?;
        let value = http::HeaderValue::from_str(value).map_err(|_| TelemetryError::Header(name.to_string()))?;
        map.insert(name, value);
    }
    Ok(opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(map))
}

fn span_exporter(settings: &Settings) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match settings.protocol {
        Protocol::Grpc => builder
            .with_tonic()
            .with_endpoint(settings.signal_url("traces"))
            .with_timeout(settings.export_timeout)
            .with_metadata(grpc_metadata(&settings.headers)?)
            .build(),
        Protocol::HttpProtobuf => builder
            .with_http()
            .with_endpoint(settings.signal_url("traces"))
            .with_timeout(settings.export_timeout)
            .with_headers(settings.headers.clone().into_iter().collect())
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
    };
    exporter.map_err(|e| TelemetryError::Exporter(e.to_string()))
}

/// The OTLP span exporter run on the gateway's Tokio runtime, for the SDK's
/// thread-based batch processor. That processor queues an ended span on a
/// channel nobody waits on and wakes its thread only per full batch or
/// export interval; the async-runtime processor woke a Tokio worker for
/// every span, which made a sampled publish among unsampled ones several
/// times dearer than one among sampled ones (`BENCHMARKS.md`, tracing).
/// The exporter's gRPC and HTTP clients need Tokio, so each export runs as
/// a task while the processor thread blocks on its result.
#[derive(Debug)]
struct OnRuntime {
    exporter: std::sync::Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl OnRuntime {
    fn new(
        mut exporter: opentelemetry_otlp::SpanExporter,
        resource: &opentelemetry_sdk::Resource,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        use opentelemetry_sdk::trace::SpanExporter as _;
        exporter.set_resource(resource);
        Self { exporter: std::sync::Arc::new(exporter), runtime }
    }
}

impl opentelemetry_sdk::trace::SpanExporter for OnRuntime {
    fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        let exporter = self.exporter.clone();
        let task = self.runtime.spawn(async move { exporter.export(batch).await });
        async move {
            task.await.unwrap_or_else(|e| {
                Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(format!("span export task failed: {e}")))
            })
        }
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        // Set at construction already; the provider sets it again before
        // any export holds a clone of the exporter.
        if let Some(exporter) = std::sync::Arc::get_mut(&mut self.exporter) {
            exporter.set_resource(resource);
        }
    }
}

/// Handle of the installed tracer; [`Telemetry::shutdown`] flushes the
/// spans still queued.
pub struct Telemetry {
    tracer: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Exports every span ended so far before returning. Blocks, like
    /// [`Telemetry::shutdown`].
    pub fn flush(&self) {
        if let Some(tracer) = &self.tracer {
            let _ = tracer.force_flush();
        }
    }

    /// Exports what is queued and stops the exporter. Blocks: call it from
    /// a blocking context (it waits on the Tokio export task).
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer {
            let _ = tracer.shutdown();
        }
    }
}

static INSTALLED: OnceLock<()> = OnceLock::new();

type Layer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// The level of every span and span event of ours (`trace::SPAN_TARGET`).
const SPAN_LEVEL: LevelFilter = LevelFilter::INFO;

/// The log-line layer, filtered by `settings.log_filter` or `RUST_LOG`
/// (default `info`); also the filter error when `RUST_LOG` was rejected.
///
/// Each filter states its most verbose level: the subscriber's hint is
/// the most verbose of its layers' and a filter without one counts as
/// `TRACE`. The hint is what `tracing` macros and the `log` bridge check
/// first; left at `TRACE`, every `log::trace!` of a dependency (one per
/// WebSocket frame) was formatted into a record and dispatched only to be
/// dropped by the filter.
fn log_layer(settings: &Settings) -> (Layer, Option<String>) {
    let from_env = match &settings.log_filter {
        Some(directives) => EnvFilter::try_new(directives).map_err(|e| e.to_string()),
        None => EnvFilter::try_from_default_env().map_err(|e| e.to_string()),
    };
    let (filter, rejected) = match from_env {
        Ok(filter) => (filter, None),
        Err(error) => (EnvFilter::new("info"), std::env::var_os("RUST_LOG").map(|_| error)),
    };
    let level = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    // Spans of ours are for export; they do not make log lines by themselves.
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match settings.log_format {
        LogFormat::Json => logs.event_format(logs::JsonLines).boxed(),
        LogFormat::Pretty => logs.event_format(logs::PrettyWithIds(tracing_subscriber::fmt::format())).boxed(),
    };
    // Span events (connection lifetime) go to the trace, not the log.
    let no_span_events =
        tracing_subscriber::filter::filter_fn(|meta| !(meta.is_event() && meta.target() == SPAN_TARGET))
            .with_max_level_hint(level);
    (logs.with_filter(tracing_subscriber::filter::FilterExt::and(filter, no_span_events)).boxed(), rejected)
}

/// Installs the process-wide subscriber: logs per `settings.log_format`
/// filtered by `RUST_LOG` (default `info`), plus span export when an
/// endpoint is set. Once per process; needs a Tokio runtime when exporting
/// (each span export runs as a Tokio task).
pub fn init(settings: &Settings) -> Result<Telemetry, TelemetryError> {
    // Checked before anything is installed, so the caller can retry.
    let runtime = match settings.traces_enabled() {
        true => Some(tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?),
        false => None,
    };
    if INSTALLED.set(()).is_err() {
        return Err(TelemetryError::AlreadyInstalled);
    }
    let (logs, rejected) = log_layer(settings);
    // Boxed layers in a Vec: the nested generic stack is too deep for rustc.
    let mut layers: Vec<Layer> = vec![logs];

    let provider = if let Some(runtime) = runtime {
        use opentelemetry::trace::TracerProvider as _;
        let exporter = span_exporter(settings)?;
        let batch = opentelemetry_sdk::trace::BatchConfigBuilder::default()
            .with_max_queue_size(settings.max_queued_spans)
            .with_scheduled_delay(settings.trace_export_interval)
            // The export timeout is the exporter's own (`span_exporter`).
            .build();
        let exporter = OnRuntime::new(exporter, &metrics::resource_of(settings), runtime);
        let processor =
            opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(metrics::resource_of(settings))
            // Sampling is decided before spans exist (trace::sample_root);
            // whatever reaches the SDK is recorded.
            .with_sampler(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
                opentelemetry_sdk::trace::Sampler::AlwaysOn,
            )))
            .build();
        let tracer = provider.tracer("switchboard");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            // Busy/idle timings cost two clock reads per poll of every
            // instrumented future and two attributes per span; nobody
            // reads them. Context activation would push the OpenTelemetry
            // context on every enter: propagation here goes through the
            // tracing span (`trace::current_headers`), never
            // `opentelemetry::Context::current()`.
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(
                tracing_subscriber::filter::filter_fn(|meta| meta.target() == SPAN_TARGET)
                    .with_max_level_hint(SPAN_LEVEL),
            );
        layers.push(layer.boxed());
        Some(provider)
    } else {
        None
    };
    tracing_subscriber::registry().with(layers).try_init().map_err(|_| TelemetryError::AlreadyInstalled)?;
    if provider.is_some() {
        trace::activate(settings.sampling_ratio);
    }
    if let Some(error) = rejected {
        tracing::warn!(%error, "ignoring RUST_LOG, logging at info");
    }
    Ok(Telemetry { tracer: provider })
}

/// Installs plain logging only (pretty, `RUST_LOG`); for tools and tests.
/// Safe to call more than once.
pub fn init_logging() {
    let _ = init(&Settings { endpoint: String::new(), ..Settings::default() });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_export_outside_a_runtime_is_an_error_not_a_panic() {
        let settings = Settings { endpoint: "http://127.0.0.1:4318".into(), ..Settings::default() };
        assert!(matches!(init(&settings), Err(TelemetryError::NoRuntime)));
    }

    /// The subscriber's level hint follows the log filter: at `warn`, the
    /// `log` bridge and `tracing` macros drop `info` and below before
    /// building a record.
    #[test]
    fn the_level_hint_is_the_log_filters() {
        use tracing::Subscriber as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        for (directives, level) in [("warn", LevelFilter::WARN), ("debug", LevelFilter::DEBUG)] {
            let settings = Settings { log_filter: Some(directives.into()), ..Settings::default() };
            let (logs, rejected) = log_layer(&settings);
            assert_eq!(rejected, None);
            let subscriber = tracing_subscriber::registry().with(vec![logs]);
            assert_eq!(subscriber.max_level_hint(), Some(level), "{directives}");
        }
    }
}
