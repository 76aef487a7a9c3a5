//! What telemetry is asked to do: the `[telemetry]` values as this module
//! sees them (it imports no config types), with the standard `OTEL_*`
//! environment variables applied on top.

use std::collections::BTreeMap;
use std::time::Duration;

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    Grpc,
    #[default]
    HttpProtobuf,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// Telemetry settings. `Default` is "no export, Prometheus on, pretty logs".
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// OTLP endpoint; empty disables OTLP export and span creation.
    pub endpoint: String,
    pub protocol: Protocol,
    pub headers: BTreeMap<String, String>,
    /// Share of new traces recorded (0.0..=1.0).
    pub sampling_ratio: f64,
    pub service_name: String,
    pub resource_attributes: BTreeMap<String, String>,
    pub trace_export_interval: Duration,
    pub max_queued_spans: usize,
    pub metrics_export_interval: Duration,
    pub export_timeout: Duration,
    pub prometheus_enabled: bool,
    pub log_format: LogFormat,
    /// Log filter directives; `None` reads `RUST_LOG` (default `info`).
    pub log_filter: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            protocol: Protocol::HttpProtobuf,
            headers: BTreeMap::new(),
            sampling_ratio: 1.0,
            service_name: "switchboard".to_owned(),
            resource_attributes: BTreeMap::new(),
            trace_export_interval: Duration::from_secs(5),
            max_queued_spans: 2048,
            metrics_export_interval: Duration::from_secs(60),
            export_timeout: Duration::from_secs(10),
            prometheus_enabled: true,
            log_format: LogFormat::Pretty,
            log_filter: None,
        }
    }
}

/// `k1=v1,k2=v2` as the OTel spec writes headers and resource attributes
/// (values percent-decoded is not required by the spec for headers; blank
/// and malformed members are skipped).
fn key_values(list: &str) -> impl Iterator<Item = (String, String)> + '_ {
    list.split(',').filter_map(|member| {
        let (key, value) = member.split_once('=')?;
        let key = key.trim();
        (!key.is_empty()).then(|| (key.to_owned(), value.trim().to_owned()))
    })
}

impl Settings {
    /// Applies the standard `OTEL_*` variables, read through `var`. Each one
    /// that is set (and not empty) wins over the value it overrides, like
    /// the `SWITCHBOARD_*` overrides do over the file. Returns a note for
    /// every value it could not use.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Vec<String> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let mut ignored = Vec::new();
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            self.endpoint.clear();
        } else if let Some(endpoint) =
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        {
            self.endpoint = endpoint.trim().trim_end_matches('/').to_owned();
        }
        if let Some(protocol) = var("OTEL_EXPORTER_OTLP_PROTOCOL") {
            match protocol.trim() {
                "grpc" => self.protocol = Protocol::Grpc,
                "http/protobuf" => self.protocol = Protocol::HttpProtobuf,
                other => ignored.push(format!("OTEL_EXPORTER_OTLP_PROTOCOL={other} (supported: grpc, http/protobuf)")),
            }
        }
        if let Some(headers) = var("OTEL_EXPORTER_OTLP_HEADERS") {
            self.headers.extend(key_values(&headers));
        }
        if let Some(name) = var("OTEL_SERVICE_NAME") {
            self.service_name = name.trim().to_owned();
        }
        if let Some(attributes) = var("OTEL_RESOURCE_ATTRIBUTES") {
            for (key, value) in key_values(&attributes) {
                // OTEL_SERVICE_NAME wins over service.name here (spec).
                if key == "service.name" {
                    if var("OTEL_SERVICE_NAME").is_none() {
                        self.service_name = value;
                    }
                } else {
                    self.resource_attributes.insert(key, value);
                }
            }
        }
        let ratio_arg = || var("OTEL_TRACES_SAMPLER_ARG").and_then(|a| a.trim().parse::<f64>().ok());
        if let Some(sampler) = var("OTEL_TRACES_SAMPLER") {
            match sampler.trim() {
                "always_on" | "parentbased_always_on" => self.sampling_ratio = 1.0,
                "always_off" | "parentbased_always_off" => self.sampling_ratio = 0.0,
                "traceidratio" | "parentbased_traceidratio" => match ratio_arg() {
                    Some(ratio) if (0.0..=1.0).contains(&ratio) => self.sampling_ratio = ratio,
                    _ => ignored.push("OTEL_TRACES_SAMPLER_ARG (not a ratio in 0.0..=1.0)".to_owned()),
                },
                other => ignored.push(format!("OTEL_TRACES_SAMPLER={other} (unsupported)")),
            }
        }
        let millis = |name: &str| var(name).and_then(|v| v.trim().parse::<u64>().ok()).filter(|ms| *ms > 0);
        if let Some(ms) = millis("OTEL_BSP_SCHEDULE_DELAY") {
            self.trace_export_interval = Duration::from_millis(ms);
        }
        if let Some(n) = millis("OTEL_BSP_MAX_QUEUE_SIZE") {
            self.max_queued_spans = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(ms) = millis("OTEL_METRIC_EXPORT_INTERVAL") {
            self.metrics_export_interval = Duration::from_millis(ms);
        }
        ignored
    }

    /// Whether spans are recorded and exported at all.
    pub fn traces_enabled(&self) -> bool {
        !self.endpoint.is_empty()
    }

    /// The URL of one signal: gRPC takes the endpoint as is; OTLP/HTTP
    /// appends `/v1/traces` or `/v1/metrics` to the base URL (as the spec
    /// does for `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn signal_url(&self, signal: &str) -> String {
        match self.protocol {
            Protocol::Grpc => self.endpoint.clone(),
            Protocol::HttpProtobuf => format!("{}/v1/{signal}", self.endpoint.trim_end_matches('/')),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn with_env(pairs: &[(&str, &str)]) -> (Settings, Vec<String>) {
        let env: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut settings = Settings::default();
        let ignored = settings.apply_env(|name| env.get(name).cloned());
        (settings, ignored)
    }

    #[test]
    fn standard_variables_override_settings() {
        let (s, ignored) = with_env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=secret, x-team = core ,broken"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.name=ignored"),
            ("OTEL_SERVICE_NAME", "edge"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
        ]);
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(s.endpoint, "http://collector:4317");
        assert_eq!(s.protocol, Protocol::Grpc);
        assert_eq!(s.headers.get("api-key").map(String::as_str), Some("secret"));
        assert_eq!(s.headers.get("x-team").map(String::as_str), Some("core"));
        assert_eq!(s.headers.len(), 2);
        assert_eq!(s.service_name, "edge");
        assert_eq!(s.resource_attributes.get("deployment.environment").map(String::as_str), Some("prod"));
        assert!(!s.resource_attributes.contains_key("service.name"));
        assert_eq!(s.sampling_ratio, 0.01);
        assert_eq!(s.trace_export_interval, Duration::from_millis(250));
        assert_eq!(s.signal_url("traces"), "http://collector:4317");
    }

    #[test]
    fn traces_endpoint_wins_and_sdk_disabled_turns_export_off() {
        let (s, _) = with_env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4318"),
        ]);
        assert_eq!(s.endpoint, "http://b:4318");
        assert_eq!(s.signal_url("metrics"), "http://b:4318/v1/metrics");
        let (s, _) = with_env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"), ("OTEL_SDK_DISABLED", "true")]);
        assert!(!s.traces_enabled());
    }

    #[test]
    fn unusable_values_are_reported_and_ignored() {
        let (s, ignored) = with_env(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ]);
        assert_eq!(s, Settings::default());
        assert_eq!(ignored.len(), 2, "{ignored:?}");
        let (s, _) = with_env(&[("OTEL_TRACES_SAMPLER", "always_off")]);
        assert_eq!(s.sampling_ratio, 0.0);
    }
}
