//! Every metric the gateway records: names in one place ([`names`]), the
//! instruments, and their two exports.
//!
//! Both exports read the same OpenTelemetry instruments: an OTLP periodic
//! reader (when an endpoint is configured) and `opentelemetry-prometheus`,
//! the OpenTelemetry project's own Prometheus bridge, registered as a second
//! reader over a `prometheus::Registry` that `GET /metrics` encodes. That
//! crate was un-deprecated and is released in lockstep with the SDK (0.33),
//! so there is no second set of counters to keep in step, and no name
//! translation of ours: it applies the OTel→Prometheus rules (dots to
//! underscores, unit and `_total` suffixes).
//!
//! Recording is allocation-free for static attribute values; per-subscriber
//! work is never recorded per subscriber (one add per fan-out).

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, UpDownCounter};
use opentelemetry_sdk::metrics::SdkMeterProvider;

use super::TelemetryError;
use super::settings::{Protocol, Settings};

/// Metric names. OpenTelemetry semantic conventions where one exists
/// (`http.server.request.duration`, `db.client.operation.duration`), else
/// `switchboard.*` following their naming rules.
pub mod names {
    /// UpDownCounter {connection}, by `transport`.
    pub const CONNECTIONS: &str = "switchboard.connections";
    /// UpDownCounter {subscription}: client subscriptions on this node.
    pub const SUBSCRIPTIONS: &str = "switchboard.subscriptions";
    /// Gauge {channel}: channels with local subscribers.
    pub const CHANNELS: &str = "switchboard.channels";
    /// Counter {message}: publications accepted by the engine from this node.
    pub const MESSAGES_PUBLISHED: &str = "switchboard.messages.published";
    /// Counter {message}: publications queued to subscribers (one per subscriber).
    pub const MESSAGES_DELIVERED: &str = "switchboard.messages.delivered";
    /// Counter By, by `network.io.direction` (receive: client frames; transmit: frames queued to clients).
    pub const NETWORK_IO: &str = "switchboard.network.io";
    /// Histogram s, by `method` and `result`: client command latency.
    pub const COMMAND_DURATION: &str = "switchboard.command.duration";
    /// Histogram s, by `plugin`, `hook`, `outcome`.
    pub const PLUGIN_CALL_DURATION: &str = "switchboard.plugin.call.duration";
    /// Counter {error}, by `plugin`, `hook`, `error.type` (trap, timeout, busy, quarantined, ...).
    pub const PLUGIN_CALL_ERRORS: &str = "switchboard.plugin.call.errors";
    /// Counter {frame}, by `queue` (outbox: a subscriber's full queue; events: the plugin event queue).
    pub const QUEUE_DROPS: &str = "switchboard.queue.drops";
    /// Counter {connection}: connections closed because their outbox was full (3008).
    pub const SLOW_DISCONNECTS: &str = "switchboard.slow_disconnects";
    /// Counter {connection}, by `code`: connections closed, by disconnect code.
    pub const DISCONNECTS: &str = "switchboard.disconnects";
    /// Histogram s (semantic convention), by `db.system.name` = redis and `db.operation.name`.
    pub const DB_OPERATION_DURATION: &str = "db.client.operation.duration";
    /// Counter {subscription}, by `outcome` (recovered, not_recovered).
    pub const RECOVERIES: &str = "switchboard.recoveries";
    /// Histogram s (semantic convention), by `http.request.method`, `http.route`, `http.response.status_code`.
    pub const HTTP_SERVER_DURATION: &str = "http.server.request.duration";
}

/// Histogram buckets in seconds: 50 µs to 10 s, for in-process work.
const LATENCY_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

struct Instruments {
    connections: UpDownCounter<i64>,
    subscriptions: UpDownCounter<i64>,
    published: Counter<u64>,
    delivered: Counter<u64>,
    network_io: Counter<u64>,
    command_duration: Histogram<f64>,
    plugin_duration: Histogram<f64>,
    plugin_errors: Counter<u64>,
    queue_drops: Counter<u64>,
    slow_disconnects: Counter<u64>,
    disconnects: Counter<u64>,
    db_duration: Histogram<f64>,
    recoveries: Counter<u64>,
    http_duration: Histogram<f64>,
}

struct Inner {
    provider: SdkMeterProvider,
    meter: Meter,
    registry: Option<prometheus::Registry>,
    instruments: Instruments,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Flushes the last OTLP export; errors only mean nothing was
        // configured or the collector is gone. Shutdown blocks until the
        // export task (a Tokio task) answers, so on a runtime thread it
        // must run on the blocking pool: blocking the worker that task
        // needs would hang the gateway's exit.
        let provider = self.provider.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || provider.shutdown());
            }
            Err(_) => {
                let _ = provider.shutdown();
            }
        }
    }
}

/// The gateway's instruments. One per gateway instance; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

fn resource(settings: &Settings) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(settings.service_name.clone())
        .with_attributes(settings.resource_attributes.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())))
        .build()
}

pub(super) fn resource_of(settings: &Settings) -> opentelemetry_sdk::Resource {
    resource(settings)
}

fn otlp_metric_exporter(settings: &Settings) -> Result<opentelemetry_otlp::MetricExporter, TelemetryError> {
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
    let builder = opentelemetry_otlp::MetricExporter::builder();
    let exporter = match settings.protocol {
        Protocol::Grpc => builder
            .with_tonic()
            .with_endpoint(settings.signal_url("metrics"))
            .with_timeout(settings.export_timeout)
            .with_metadata(super::grpc_metadata(&settings.headers)?)
            .build(),
        Protocol::HttpProtobuf => builder
            .with_http()
            .with_endpoint(settings.signal_url("metrics"))
            .with_timeout(settings.export_timeout)
            .with_headers(settings.headers.clone().into_iter().collect())
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
    };
    exporter.map_err(|e| TelemetryError::Exporter(e.to_string()))
}

impl Metrics {
    /// Builds the instruments with a Prometheus reader (when enabled) and an
    /// OTLP reader (when an endpoint is set). Must run inside a Tokio
    /// runtime when OTLP is on: the periodic export is a Tokio task.
    pub fn new(settings: &Settings) -> Result<Self, TelemetryError> {
        let mut builder = SdkMeterProvider::builder().with_resource(resource(settings));
        let registry = if settings.prometheus_enabled {
            let registry = prometheus::Registry::new();
            let exporter = opentelemetry_prometheus::exporter()
                .with_registry(registry.clone())
                // Scope labels on every series would only repeat "switchboard".
                .scope_info_enabled(false)
                .build()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
            builder = builder.with_reader(exporter);
            Some(registry)
        } else {
            None
        };
        if settings.traces_enabled() {
            let exporter = otlp_metric_exporter(settings)?;
            let reader = opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .with_interval(settings.metrics_export_interval)
            .build();
            builder = builder.with_reader(reader);
        }
        Ok(Self::from_provider(builder.build(), registry))
    }

    /// Instruments that record into nothing exported (embedders and unit
    /// tests that build a hub by hand).
    pub fn detached() -> Self {
        Self::from_provider(SdkMeterProvider::builder().build(), None)
    }

    fn from_provider(provider: SdkMeterProvider, registry: Option<prometheus::Registry>) -> Self {
        let meter = provider.meter("switchboard");
        let latency = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build()
        };
        let counter = |name: &'static str, unit: &'static str, description: &'static str| {
            meter.u64_counter(name).with_unit(unit).with_description(description).build()
        };
        let instruments = Instruments {
            connections: meter
                .i64_up_down_counter(names::CONNECTIONS)
                .with_unit("{connection}")
                .with_description("Open client connections")
                .build(),
            subscriptions: meter
                .i64_up_down_counter(names::SUBSCRIPTIONS)
                .with_unit("{subscription}")
                .with_description("Active client subscriptions")
                .build(),
            published: counter(names::MESSAGES_PUBLISHED, "{message}", "Publications accepted from this node"),
            delivered: counter(names::MESSAGES_DELIVERED, "{message}", "Publications queued to subscribers"),
            network_io: counter(names::NETWORK_IO, "By", "Client protocol bytes received and queued for sending"),
            command_duration: latency(names::COMMAND_DURATION, "Client command latency"),
            plugin_duration: latency(names::PLUGIN_CALL_DURATION, "Plugin hook call latency"),
            plugin_errors: counter(names::PLUGIN_CALL_ERRORS, "{error}", "Failed plugin hook calls"),
            queue_drops: counter(names::QUEUE_DROPS, "{frame}", "Frames or events dropped at a full queue"),
            slow_disconnects: counter(names::SLOW_DISCONNECTS, "{connection}", "Connections closed as too slow"),
            disconnects: counter(names::DISCONNECTS, "{connection}", "Closed connections by disconnect code"),
            db_duration: latency(names::DB_OPERATION_DURATION, "Redis operation latency"),
            recoveries: counter(names::RECOVERIES, "{subscription}", "Subscription recovery outcomes"),
            http_duration: latency(names::HTTP_SERVER_DURATION, "Server API request latency"),
        };
        Self { inner: Arc::new(Inner { provider, meter, registry, instruments }) }
    }

    /// Registers the channel-count gauge, read at each collection.
    pub fn observe_channels(&self, count: impl Fn() -> u64 + Send + Sync + 'static) {
        // The SDK keeps the callback for the provider's lifetime.
        let _gauge = self
            .inner
            .meter
            .u64_observable_gauge(names::CHANNELS)
            .with_unit("{channel}")
            .with_description("Channels with subscribers on this node")
            .with_callback(move |observer| observer.observe(count(), &[]))
            .build();
    }

    fn i(&self) -> &Instruments {
        &self.inner.instruments
    }

    pub fn connection_opened(&self, transport: &'static str) {
        self.i().connections.add(1, &[KeyValue::new("transport", transport)]);
    }

    /// A connected session ended.
    pub fn connection_closed(&self, transport: &'static str) {
        self.i().connections.add(-1, &[KeyValue::new("transport", transport)]);
    }

    /// A session was closed with `code`; 3008 also counts as a slow disconnect.
    pub fn disconnect(&self, code: u16) {
        self.i().disconnects.add(1, &[KeyValue::new("code", i64::from(code))]);
        if code == 3008 {
            self.i().slow_disconnects.add(1, &[]);
        }
    }

    pub fn subscriptions_changed(&self, delta: i64) {
        self.i().subscriptions.add(delta, &[]);
    }

    pub fn published(&self) {
        self.i().published.add(1, &[]);
    }

    /// One fan-out: `delivered` subscribers got `bytes` in total, `dropped`
    /// had a full queue.
    pub fn fanout(&self, delivered: u64, bytes: u64, dropped: u64) {
        if delivered > 0 {
            self.i().delivered.add(delivered, &[]);
            self.i().network_io.add(bytes, &[KeyValue::new("network.io.direction", "transmit")]);
        }
        if dropped > 0 {
            self.i().queue_drops.add(dropped, &[KeyValue::new("queue", "outbox")]);
        }
    }

    pub fn bytes_in(&self, bytes: u64) {
        self.i().network_io.add(bytes, &[KeyValue::new("network.io.direction", "receive")]);
    }

    pub fn bytes_out(&self, bytes: u64) {
        self.i().network_io.add(bytes, &[KeyValue::new("network.io.direction", "transmit")]);
    }

    /// A client command finished; `result` is `ok` or the error/disconnect code.
    pub fn command(&self, method: &'static str, elapsed: Duration, result: &'static str) {
        self.i()
            .command_duration
            .record(elapsed.as_secs_f64(), &[KeyValue::new("method", method), KeyValue::new("result", result)]);
    }

    /// A plugin hook call; `error` names the failure kind.
    /// `plugin` is shared so that a call records without allocating.
    pub fn plugin_call(&self, plugin: &Arc<str>, hook: &'static str, elapsed: Duration, error: Option<&'static str>) {
        let attributes = [
            KeyValue::new("plugin", opentelemetry::StringValue::from(Arc::clone(plugin))),
            KeyValue::new("hook", hook),
            KeyValue::new("outcome", if error.is_some() { "error" } else { "ok" }),
        ];
        self.i().plugin_duration.record(elapsed.as_secs_f64(), &attributes);
        if let Some(error) = error {
            let [plugin, hook, _] = attributes;
            self.i().plugin_errors.add(1, &[plugin, hook, KeyValue::new("error.type", error)]);
        }
    }

    pub fn queue_drop(&self, queue: &'static str, n: u64) {
        self.i().queue_drops.add(n, &[KeyValue::new("queue", queue)]);
    }

    pub fn redis_op(&self, operation: &'static str, elapsed: Duration) {
        self.i().db_duration.record(
            elapsed.as_secs_f64(),
            &[KeyValue::new("db.system.name", "redis"), KeyValue::new("db.operation.name", operation)],
        );
    }

    pub fn recovery(&self, recovered: bool) {
        self.i().recoveries.add(1, &[KeyValue::new("outcome", if recovered { "recovered" } else { "not_recovered" })]);
    }

    /// One server API request (`route` is the API method, or `/metrics`).
    pub fn http_request(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        self.i().http_duration.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("http.request.method", method),
                KeyValue::new("http.route", route.to_owned()),
                KeyValue::new("http.response.status_code", i64::from(status)),
            ],
        );
    }

    /// The Prometheus text exposition of every instrument; `None` when
    /// `prometheus_enabled` is off.
    pub fn render_prometheus(&self) -> Option<Result<String, TelemetryError>> {
        let registry = self.inner.registry.as_ref()?;
        let encoder = prometheus::TextEncoder::new();
        Some(encoder.encode_to_string(&registry.gather()).map_err(|e| TelemetryError::Exporter(e.to_string())))
    }
}

/// Content type of [`Metrics::render_prometheus`].
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_exposition_carries_the_recorded_values() {
        let metrics = Metrics::new(&Settings::default()).unwrap();
        metrics.connection_opened("websocket");
        metrics.connection_opened("websocket");
        metrics.connection_closed("websocket");
        metrics.disconnect(3008);
        metrics.fanout(3, 300, 1);
        metrics.plugin_call(&Arc::from("p"), "on-publish", Duration::from_millis(2), Some("trap"));
        metrics.observe_channels(|| 7);
        let text = metrics.render_prometheus().unwrap().unwrap();
        for line in [
            "switchboard_connections{transport=\"websocket\"} 1",
            "switchboard_messages_delivered_total 3",
            "switchboard_network_io_bytes_total{network_io_direction=\"transmit\"} 300",
            "switchboard_queue_drops_total{queue=\"outbox\"} 1",
            "switchboard_slow_disconnects_total 1",
            "switchboard_disconnects_total{code=\"3008\"} 1",
            "switchboard_channels 7",
            "switchboard_plugin_call_errors_total{error_type=\"trap\",hook=\"on-publish\",plugin=\"p\"} 1",
        ] {
            assert!(text.lines().any(|l| l.starts_with(line)), "missing {line:?} in\n{text}");
        }
        assert!(text.contains("switchboard_plugin_call_duration_seconds_bucket{"), "{text}");
        assert!(Metrics::detached().render_prometheus().is_none());
    }
}
