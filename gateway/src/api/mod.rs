//! The server HTTP API (`POST /api/<method>`), in Centrifugo v6 shapes.
//!
//! Backends publish and manage connections here. Every method answers HTTP
//! 200 with `{"result":{…}}` or `{"error":{"code":N,"message":"…"}}`;
//! transport-level problems get HTTP statuses (401 bad key, 400 unreadable
//! body, 404 unknown method, 413 body over `api.max_body_bytes`). The API
//! calls the hub exactly as a session would; it never reaches into channel or
//! history internals.
//!
//! It also serves `GET /metrics`, the Prometheus text exposition of the
//! gateway's instruments (see `telemetry::metrics`). Each API request is a
//! span (parented by a W3C `traceparent` header) and a sample of
//! `http.server.request.duration`.

mod chat;
mod methods;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::hub::Hub;
use crate::protocol::ErrorCode;

/// A method-level error, sent as `{"error":{…}}` with HTTP 200.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message} ({code})")]
pub struct ApiError {
    pub code: u32,
    pub message: String,
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        Self { code: code.code(), message: code.message().to_owned() }
    }
}

impl From<crate::protocol::ReplyError> for ApiError {
    fn from(error: crate::protocol::ReplyError) -> Self {
        Self { code: error.code, message: error.message }
    }
}

impl ApiError {
    fn bad_request(message: impl std::fmt::Display) -> Self {
        Self { code: ErrorCode::BadRequest.code(), message: format!("bad request: {message}") }
    }
}

fn response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(status: StatusCode, error: ApiError) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&serde_json::json!({ "error": error })).unwrap_or_default();
    response(status, Bytes::from(body))
}

/// The API key from `X-API-Key` or `Authorization: apikey KEY`.
fn presented_key(req: &Request<Incoming>) -> Option<&[u8]> {
    if let Some(v) = req.headers().get("x-api-key") {
        return Some(v.as_bytes());
    }
    let auth = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("apikey").then(|| key.trim().as_bytes())
}

/// `GET /metrics`: every instrument in the Prometheus text format; 404
/// when `telemetry.prometheus_enabled` is off.
pub fn metrics(hub: &Hub) -> Response<Full<Bytes>> {
    let started = std::time::Instant::now();
    let (status, body, content_type) = match hub.metrics().render_prometheus() {
        Some(Ok(text)) => (StatusCode::OK, Bytes::from(text), crate::telemetry::PROMETHEUS_CONTENT_TYPE),
        Some(Err(error)) => {
            tracing::warn!(%error, "cannot encode metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, Bytes::from_static(b"metrics encoding failed\n"), "text/plain")
        }
        None => (StatusCode::NOT_FOUND, Bytes::from_static(br#"{"error":"not found"}"#), "application/json"),
    };
    let mut resp = response(status, body);
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    hub.metrics().http_request("GET", "/metrics", status.as_u16(), started.elapsed());
    resp
}

/// A request header as text (empty when absent or not ASCII).
fn header_text<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Handles one `POST /api/...` request inside its span.
pub async fn handle(req: Request<Incoming>, hub: &Arc<Hub>) -> Response<Full<Bytes>> {
    let started = std::time::Instant::now();
    let method = api_method(&req).to_owned();
    let span = crate::root_span!(
        header_text(&req, "traceparent"),
        header_text(&req, "tracestate"),
        "api.request",
        otel.name = %format_args!("POST /api/{method}"),
        otel.kind = "server",
        http.request.method = "POST",
        http.route = "/api/{method}",
        url.path = req.uri().path(),
        api.method = %method,
        http.response.status_code = tracing::field::Empty,
        api.error_code = tracing::field::Empty,
    );
    // Boxed: the request future nests inside the connection's, and unboxed
    // the whole stack is too deep for the compiler's layout computation.
    let resp = tracing::Instrument::instrument(Box::pin(handle_traced(req, hub)), span.clone()).await;
    let status = resp.status().as_u16();
    span.record("http.response.status_code", i64::from(status));
    let route = if methods::exists(&method) { method.as_str() } else { "unknown" };
    hub.metrics().http_request("POST", route, status, started.elapsed());
    resp
}

/// The API method named by the path (`/api/publish` → `publish`).
fn api_method(req: &Request<Incoming>) -> &str {
    req.uri().path().trim_start_matches("/api").trim_start_matches('/')
}

async fn handle_traced(req: Request<Incoming>, hub: &Arc<Hub>) -> Response<Full<Bytes>> {
    let config = &hub.config().api;
    let key_ok =
        presented_key(&req).is_some_and(|k| !config.key.is_empty() && bool::from(k.ct_eq(config.key.as_bytes())));
    if !key_ok {
        return error_response(StatusCode::UNAUTHORIZED, ApiError { code: 401, message: "unauthorized".into() });
    }
    let method = req.uri().path().trim_start_matches("/api").trim_start_matches('/').to_owned();
    // `POST /api/history?aggregate=true` is the body's `"aggregate": true`.
    let aggregate_query =
        method == "history" && req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv == "aggregate=true"));
    if !methods::exists(&method) {
        return error_response(
            StatusCode::NOT_FOUND,
            ApiError { code: 404, message: format!("unknown method {method:?}") },
        );
    }
    let max = config.max_body_bytes;
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                ApiError { code: 413, message: format!("request body too large (max {max} bytes)") },
            );
        }
        Err(e) => return error_response(StatusCode::BAD_REQUEST, ApiError::bad_request(e)),
    };
    let params: &serde_json::value::RawValue = match serde_json::from_slice(if body.is_empty() { b"{}" } else { &body })
    {
        Ok(p) => p,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, ApiError::bad_request(e)),
    };
    let with_aggregate;
    let params = if aggregate_query {
        let mut value: serde_json::Value = serde_json::from_str(params.get()).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("aggregate".into(), true.into());
        }
        with_aggregate = serde_json::value::to_raw_value(&value).unwrap_or_else(|_| params.to_owned());
        &*with_aggregate
    } else {
        params
    };
    let outcome = methods::call(hub, &method, params).await;
    let envelope = match outcome {
        Ok(result) => serde_json::json!({ "result": result }),
        Err(error) => {
            tracing::Span::current().record("api.error_code", i64::from(error.code));
            serde_json::json!({ "error": error })
        }
    };
    response(StatusCode::OK, Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default()))
}
