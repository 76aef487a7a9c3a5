//! `[telemetry]`: OpenTelemetry export, the Prometheus endpoint and log format.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OtlpProtocol {
    /// OTLP/gRPC (collector port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (collector port 4318), the OTel default.
    #[default]
    HttpProtobuf,
}

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[telemetry]`: traces and metrics over OTLP, `GET /metrics`, and logs.
/// The standard `OTEL_*` environment variables override these keys (see
/// `config/gateway.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP collector URL, e.g. `http://127.0.0.1:4318` (http-protobuf: `/v1/traces` and `/v1/metrics` are appended)
    /// or `http://127.0.0.1:4317` (grpc). Empty: no OTLP export and no spans. Default "".
    pub endpoint: String,
    /// `grpc` or `http-protobuf`. Default `http-protobuf`.
    pub protocol: OtlpProtocol,
    /// Extra headers sent with every export (API keys of hosted collectors). Default {}.
    pub headers: BTreeMap<String, String>,
    /// Share of new traces recorded, 0.0..=1.0. A sampled incoming `traceparent` is always followed. Default 1.0.
    pub sampling_ratio: f64,
    /// `service.name` resource attribute. Default "switchboard".
    pub service_name: String,
    /// Further resource attributes (`deployment.environment`, ...). Default {}.
    pub resource_attributes: BTreeMap<String, String>,
    /// Milliseconds between span batch exports. Default 5000.
    pub trace_export_interval_ms: u64,
    /// Most finished spans waiting for export; more are dropped. Default 2048.
    pub max_queued_spans: usize,
    /// Milliseconds between OTLP metric exports. Default 60000.
    pub metrics_export_interval_ms: u64,
    /// Longest wait for one export, in milliseconds. Default 10000.
    pub export_timeout_ms: u64,
    /// Serve the Prometheus text exposition at `GET /metrics`. Default true.
    pub prometheus_enabled: bool,
    /// `pretty` or `json`. Default `pretty`.
    pub log_format: LogFormat,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            protocol: OtlpProtocol::HttpProtobuf,
            headers: BTreeMap::new(),
            sampling_ratio: 1.0,
            service_name: "switchboard".to_owned(),
            resource_attributes: BTreeMap::new(),
            trace_export_interval_ms: 5000,
            max_queued_spans: 2048,
            metrics_export_interval_ms: 60_000,
            export_timeout_ms: 10_000,
            prometheus_enabled: true,
            log_format: LogFormat::Pretty,
        }
    }
}

/// Adds every `[telemetry]` problem to `push(path, message)`.
pub(super) fn validate(telemetry: &TelemetryConfig, mut push: impl FnMut(&str, String)) {
    let endpoint = &telemetry.endpoint;
    if !(endpoint.is_empty() || endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        push("telemetry.endpoint", format!("must start with http:// or https:// (got {endpoint:?})"));
    }
    if !(0.0..=1.0).contains(&telemetry.sampling_ratio) {
        push("telemetry.sampling_ratio", format!("must be in 0.0..=1.0 (got {})", telemetry.sampling_ratio));
    }
    if telemetry.service_name.is_empty() {
        push("telemetry.service_name", "must not be empty".to_owned());
    }
    for name in telemetry.headers.keys() {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            push(&format!("telemetry.headers.{name}"), "is not a valid HTTP header name".to_owned());
        }
    }
    for (name, value) in &telemetry.headers {
        if http::HeaderValue::from_str(value).is_err() {
            push(&format!("telemetry.headers.{name}"), "value is not a valid HTTP header value".to_owned());
        }
    }
    for key in telemetry.resource_attributes.keys() {
        if key.is_empty() {
            push("telemetry.resource_attributes", "keys must not be empty".to_owned());
        }
    }
    for (path, value) in [
        ("telemetry.trace_export_interval_ms", telemetry.trace_export_interval_ms),
        ("telemetry.max_queued_spans", telemetry.max_queued_spans as u64),
        ("telemetry.metrics_export_interval_ms", telemetry.metrics_export_interval_ms),
        ("telemetry.export_timeout_ms", telemetry.export_timeout_ms),
    ] {
        if value == 0 {
            push(path, "must be greater than 0".to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let mut config = TelemetryConfig {
            endpoint: "collector:4317".into(),
            sampling_ratio: 1.5,
            service_name: String::new(),
            trace_export_interval_ms: 0,
            max_queued_spans: 0,
            ..TelemetryConfig::default()
        };
        config.headers.insert("bad header".into(), "v".into());
        config.headers.insert("x-ok".into(), "bad\nvalue".into());
        let mut errors = Vec::new();
        validate(&config, |path, message| errors.push(format!("{path}: {message}")));
        assert_eq!(
            errors,
            [
                "telemetry.endpoint: must start with http:// or https:// (got \"collector:4317\")",
                "telemetry.sampling_ratio: must be in 0.0..=1.0 (got 1.5)",
                "telemetry.service_name: must not be empty",
                "telemetry.headers.bad header: is not a valid HTTP header name",
                "telemetry.headers.x-ok: value is not a valid HTTP header value",
                "telemetry.trace_export_interval_ms: must be greater than 0",
                "telemetry.max_queued_spans: must be greater than 0",
            ]
        );
        let mut none = 0;
        validate(&TelemetryConfig::default(), |_, _| none += 1);
        assert_eq!(none, 0);
    }

    #[test]
    fn parses_protocols_and_formats() {
        let config: TelemetryConfig = toml::from_str(
            "endpoint = \"http://c:4317\"\nprotocol = \"grpc\"\nlog_format = \"json\"\nsampling_ratio = 0.01\n\
             headers = { authorization = \"Bearer x\" }\nresource_attributes = { \"deployment.environment\" = \"prod\" }",
        )
        .unwrap();
        assert_eq!(config.protocol, OtlpProtocol::Grpc);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.sampling_ratio, 0.01);
        assert_eq!(config.headers["authorization"], "Bearer x");
        assert_eq!(config.resource_attributes["deployment.environment"], "prod");
        assert!(toml::from_str::<TelemetryConfig>("protocol = \"http/json\"").is_err());
    }
}
