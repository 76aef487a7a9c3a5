//! Log lines: pretty or JSON, each with the trace and span id of the
//! traced span it was logged in, and a redactor for URLs that carry tokens.

use std::borrow::Cow;
use std::fmt;

use opentelemetry::trace::TraceContextExt as _;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Trace and span id (hex) of the innermost exported span around the event.
fn trace_ids<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<(String, String)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let scope = ctx.event_scope()?;
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    for span in scope {
        if span.metadata().target() != super::trace::SPAN_TARGET {
            continue;
        }
        let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
        let otel = cx.span();
        let sc = otel.span_context();
        if sc.is_valid() {
            return Some((sc.trace_id().to_string(), sc.span_id().to_string()));
        }
    }
    None
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
    use super::*;

    #[test]
    fn token_query_parameters_are_redacted() {
        assert_eq!(redact_token("/connection/uni_sse?token=abc.def&x=1"), "/connection/uni_sse?token=REDACTED&x=1");
        assert_eq!(redact_token("/a?x=1&token=t&token=u"), "/a?x=1&token=REDACTED&token=REDACTED");
        assert_eq!(redact_token("/a?tokens=1&x=token"), "/a?tokens=1&x=token");
        assert!(matches!(redact_token("/a"), Cow::Borrowed("/a")));
    }
}
