//! Log lines: pretty or JSON, each with the trace and span id of the
//! traced span it was logged in, and a redactor for URLs that carry tokens.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Trace and span id (hex) of the innermost recorded span around the event
/// (stamped at creation by `trace::stamp`).
fn trace_ids<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<(String, String)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    ctx.event_scope()?.find_map(|span| {
        let extensions = span.extensions();
        let ids = extensions.get::<super::trace::SpanIds>()?;
        Some((ids.trace_id.to_string(), ids.span_id.to_string()))
    })
}

/// Collects an event's fields as JSON values.
struct JsonFields(Map<String, Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}

/// One JSON object per line: `timestamp`, `level`, `target`, `fields`
/// (with `message`), and `trace_id`/`span_id` inside a traced span.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut fields = JsonFields(Map::new());
        event.record(&mut fields);
        let mut line = Map::new();
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert("target".into(), event.metadata().target().into());
        line.insert("fields".into(), Value::Object(fields.0));
        if let Some(span) = ctx.lookup_current() {
            line.insert("span".into(), span.name().into());
        }
        if let Some((trace_id, span_id)) = trace_ids(ctx) {
            line.insert("trace_id".into(), trace_id.into());
            line.insert("span_id".into(), span_id.into());
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// The default human-readable format, prefixed with `trace_id=… span_id=…`
/// inside a traced span.
pub struct PrettyWithIds<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for PrettyWithIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        if let Some((trace_id, span_id)) = trace_ids(ctx) {
            write!(writer, "trace_id={trace_id} span_id={span_id} ")?;
        }
        self.0.format_event(ctx, writer, event)
    }
}

/// `uri` (a path with query, or a full URL) with the value of every
/// `token` query parameter replaced by `REDACTED`, for logs and spans.
pub fn redact_token(uri: &str) -> Cow<'_, str> {
    let Some((path, query)) = uri.split_once('?') else { return Cow::Borrowed(uri) };
    if !query.split('&').any(|pair| pair.split('=').next() == Some("token")) {
        return Cow::Borrowed(uri);
    }
    let query: Vec<&str> = query
        .split('&')
        .map(|pair| if pair.split('=').next() == Some("token") { "token=REDACTED" } else { pair })
        .collect();
    Cow::Owned(format!("{path}?{}", query.join("&")))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_carry_the_trace_and_span_id_of_the_traced_span() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().event_format(JsonLines).with_writer(move || writer.clone()))
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let expected = tracing::subscriber::with_default(subscriber, || {
            tracing::info!(user = "alice", "outside");
            let span = tracing::info_span!(target: "switchboard::otel", "api.request");
            crate::telemetry::trace::stamp(&span);
            let _entered = span.enter();
            tracing::info!(n = 3, "inside");
            let cx = span.context();
            let otel = cx.span();
            (otel.span_context().trace_id().to_string(), otel.span_context().span_id().to_string())
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["fields"], serde_json::json!({"message": "outside", "user": "alice"}));
        assert_eq!(lines[0]["level"], "INFO");
        assert!(lines[0].get("trace_id").is_none());
        assert_eq!(lines[1]["fields"]["n"], 3);
        assert_eq!(lines[1]["span"], "api.request");
        assert_eq!(lines[1]["trace_id"], expected.0.as_str());
        assert_eq!(lines[1]["span_id"], expected.1.as_str());
    }

    #[test]
    fn token_query_parameters_are_redacted() {
        assert_eq!(redact_token("/connection/uni_sse?token=abc.def&x=1"), "/connection/uni_sse?token=REDACTED&x=1");
        assert_eq!(redact_token("/a?x=1&token=t&token=u"), "/a?x=1&token=REDACTED&token=REDACTED");
        assert_eq!(redact_token("/a?tokens=1&x=token"), "/a?tokens=1&x=token");
        assert!(matches!(redact_token("/a"), Cow::Borrowed("/a")));
    }
}
