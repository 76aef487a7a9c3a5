//! Spans and W3C trace context.
//!
//! Spans are `tracing` spans with target [`SPAN_TARGET`]; the
//! OpenTelemetry layer (installed by [`super::init`]) exports only those.
//! The sampling decision is made here, *before* a span exists: a root span
//! ([`root_span!`](crate::root_span)) is created only when its trace is
//! sampled, and a child span ([`child_span!`](crate::child_span)) only when
//! the current span is one of ours. So with tracing off, or for a sampled-out
//! request, no span is allocated and no field is formatted: the macros
//! return `Span::none()` after one atomic load (and, for children, one
//! thread-local lookup of the current span).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Target of every exported span.
pub const SPAN_TARGET: &str = "switchboard::otel";

static ACTIVE: AtomicBool = AtomicBool::new(false);
/// `f64::to_bits` of the sampling ratio.
static RATIO: AtomicU64 = AtomicU64::new(0x3FF0_0000_0000_0000);

/// Turns span creation on with `ratio` of new traces sampled (done once by
/// [`super::init`] when an exporter is installed).
pub(super) fn activate(ratio: f64) {
    RATIO.store(ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    ACTIVE.store(true, Ordering::Release);
}

/// Changes the share of new traces recorded (0.0..=1.0) while running;
/// takes effect only once an exporter is installed.
pub fn set_sampling_ratio(ratio: f64) {
    RATIO.store(ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
}

/// Whether spans are being recorded in this process at all.
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// A span field value for a count, size, offset or code. Span numbers must
/// be `i64`: the OpenTelemetry layer has no unsigned visitor, so a `u64`
/// or `usize` field would be formatted into a string attribute (an
/// allocation per field, and the wrong type at the collector).
#[inline]
pub fn int<T: TryInto<i64>>(value: T) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// W3C trace context headers (`traceparent`, `tracestate`); empty strings
/// when there is none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceHeaders {
    pub traceparent: String,
    pub tracestate: String,
}

impl TraceHeaders {
    pub fn is_empty(&self) -> bool {
        self.traceparent.is_empty()
    }

    /// The W3C trace id (32 hex digits) of a well-formed `traceparent`.
    pub fn trace_id(&self) -> Option<&str> {
        let id = self.traceparent.split('-').nth(1)?;
        (id.len() == 32).then_some(id)
    }
}

/// Borrowed W3C headers as the propagator's carrier (no map, no copies).
struct Carrier<'a> {
    traceparent: &'a str,
    tracestate: &'a str,
}

impl opentelemetry::propagation::Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.traceparent),
            "tracestate" if !self.tracestate.is_empty() => Some(self.tracestate),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// The propagator writes straight into the two fields.
impl opentelemetry::propagation::Injector for TraceHeaders {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.traceparent = value,
            "tracestate" => self.tracestate = value,
            _ => {}
        }
    }
}

/// Parses incoming headers into a parent context, through the SDK's W3C
/// propagator. `None` when absent or malformed.
fn remote_context(traceparent: &str, tracestate: &str) -> Option<opentelemetry::Context> {
    if traceparent.is_empty() {
        return None;
    }
    let carrier = Carrier { traceparent, tracestate };
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// The sampling decision for a new root span. A valid incoming parent is
/// followed: sampled means record (under it), not sampled means do not.
/// Without one, `ratio` of new traces are recorded.
#[doc(hidden)]
pub fn sample_root(traceparent: &str, tracestate: &str) -> Option<opentelemetry::Context> {
    if !active() {
        return None;
    }
    if let Some(cx) = remote_context(traceparent, tracestate) {
        return cx.span().span_context().is_sampled().then_some(cx);
    }
    let ratio = f64::from_bits(RATIO.load(Ordering::Relaxed));
    let sampled = ratio >= 1.0 || (ratio > 0.0 && rand::random::<f64>() < ratio);
    sampled.then(opentelemetry::Context::new)
}

/// Like [`sample_root`] but never starts a new trace: work that merely
/// continues one (a delivery received from another node, a batch of
/// events) is recorded only under a sampled parent.
#[doc(hidden)]
pub fn sample_follow(traceparent: &str, tracestate: &str) -> Option<opentelemetry::Context> {
    if !active() {
        return None;
    }
    remote_context(traceparent, tracestate).filter(|cx| cx.span().span_context().is_sampled())
}

/// Attaches a root span to its remote parent (no-op for a fresh trace).
#[doc(hidden)]
pub fn set_parent(span: &tracing::Span, cx: opentelemetry::Context) {
    if cx.span().span_context().is_valid() {
        // Fails only when the layer is absent or the span already started:
        // the span then simply starts its own trace.
        let _ = span.set_parent(cx);
    }
}

/// The OpenTelemetry ids of a recorded span, kept in the span's registry
/// extensions for log lines: the log formatter runs inside event dispatch,
/// where the OpenTelemetry layer cannot be asked. Binary, not hex: most
/// spans never log, so the formatting is left to the log line that needs it.
pub(crate) struct SpanIds {
    pub trace_id: opentelemetry::trace::TraceId,
    pub span_id: opentelemetry::trace::SpanId,
}

/// Builds the span's OpenTelemetry context now (after its parent is set)
/// and stores its ids for log lines. Only recorded spans get here.
#[doc(hidden)]
pub fn stamp(span: &tracing::Span) {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    if !sc.is_valid() {
        return;
    }
    let ids = SpanIds { trace_id: sc.trace_id(), span_id: sc.span_id() };
    span.with_subscriber(|(id, dispatch)| {
        use tracing_subscriber::registry::LookupSpan as _;
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>()
            && let Some(data) = registry.span(id)
        {
            data.extensions_mut().insert(ids);
        }
    });
}

/// Whether the current span is one of ours (so a child belongs in a
/// sampled trace).
#[doc(hidden)]
#[inline]
pub fn in_trace() -> bool {
    active() && tracing::Span::current().metadata().is_some_and(|m| m.target() == SPAN_TARGET)
}

/// The trace context to hand on (to plugins, Redis, outgoing requests):
/// that of the current span when it is traced, else empty.
pub fn current_headers() -> TraceHeaders {
    if !in_trace() {
        return TraceHeaders::default();
    }
    let cx = tracing::Span::current().context();
    let mut headers = TraceHeaders::default();
    TraceContextPropagator::new().inject_context(&cx, &mut headers);
    headers
}

/// A span that starts (or continues, from `traceparent`/`tracestate`) a
/// trace: `root_span!(traceparent, tracestate, "name", field = value, ...)`.
/// `Span::none()` unless the trace is sampled; fields are evaluated only
/// then.
#[macro_export]
macro_rules! root_span {
    ($traceparent:expr, $tracestate:expr, $name:literal $(, $($fields:tt)*)?) => {
        match $crate::telemetry::trace::sample_root($traceparent, $tracestate) {
            Some(cx) => {
                let span = ::tracing::info_span!(target: "switchboard::otel", $name $(, $($fields)*)?);
                $crate::telemetry::trace::set_parent(&span, cx);
                $crate::telemetry::trace::stamp(&span);
                span
            }
            None => ::tracing::Span::none(),
        }
    };
}

/// Like [`root_span!`] but only under a sampled remote parent; never a new
/// trace.
#[macro_export]
macro_rules! follow_span {
    ($traceparent:expr, $tracestate:expr, $name:literal $(, $($fields:tt)*)?) => {
        match $crate::telemetry::trace::sample_follow($traceparent, $tracestate) {
            Some(cx) => {
                let span = ::tracing::info_span!(target: "switchboard::otel", $name $(, $($fields)*)?);
                $crate::telemetry::trace::set_parent(&span, cx);
                $crate::telemetry::trace::stamp(&span);
                span
            }
            None => ::tracing::Span::none(),
        }
    };
}

/// A child of the current span: `child_span!("name", field = value, ...)`.
/// `Span::none()` when the current span is not a recorded one of ours.
#[macro_export]
macro_rules! child_span {
    ($name:literal $(, $($fields:tt)*)?) => {
        if $crate::telemetry::trace::in_trace() {
            let span = ::tracing::info_span!(target: "switchboard::otel", $name $(, $($fields)*)?);
            $crate::telemetry::trace::stamp(&span);
            span
        } else {
            ::tracing::Span::none()
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_headers_expose_the_trace_id() {
        let headers = TraceHeaders {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: String::new(),
        };
        assert_eq!(headers.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(TraceHeaders::default().trace_id(), None);
    }

    #[test]
    fn remote_parents_are_parsed_by_the_w3c_propagator() {
        let cx = remote_context("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "k=v").unwrap();
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(sc.trace_state().get("k"), Some("v"));
        assert!(remote_context("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "").is_none());
        assert!(remote_context("garbage", "").is_none());
        assert!(remote_context("", "").is_none());
    }

    #[test]
    fn nothing_is_sampled_while_inactive() {
        // This unit-test process never installs an exporter.
        assert!(!active());
        assert!(sample_root("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "").is_none());
        assert!(crate::root_span!("", "", "x").is_none());
        assert!(crate::child_span!("x").is_none());
        assert_eq!(current_headers(), TraceHeaders::default());
    }
}
