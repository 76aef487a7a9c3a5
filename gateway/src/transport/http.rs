//! One accepted TCP connection: optional TLS, then HTTP/1.1 with upgrades.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::emulation::{self, Emulation};
use super::pass_through::{AnyBody, PassThrough};
use super::stream::{Body, check_origin, json_response, preflight, with_cors};
use super::{long_poll, uni, uni_websocket, websocket};
use crate::api;
use crate::hub::Hub;

/// Most time a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Connection {
    pub hub: Arc<Hub>,
    pub tracker: TaskTracker,
    pub tls: Option<TlsAcceptor>,
    pub emulation: Arc<Emulation>,
    pub pass_through: Arc<PassThrough>,
}

impl Connection {
    pub async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        match self.tls.clone() {
            None => self.serve_io(stream, peer).await,
            Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => self.serve_io(tls, peer).await,
                Ok(Err(e)) => debug!(%peer, error = %e, "tls handshake failed"),
                Err(_) => debug!(%peer, "tls handshake timed out"),
            },
        }
    }

    async fn serve_io<I>(self, io: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let cfg = &self.hub.config().server;
        let shutdown = self.hub.shutdown_token().clone();
        let (hub, tracker, emulation) = (self.hub.clone(), self.tracker.clone(), self.emulation.clone());
        let (pass_through, tls) = (self.pass_through.clone(), self.tls.is_some());
        let service = service_fn(move |req: Request<Incoming>| {
            let (hub, tracker, emulation) = (hub.clone(), tracker.clone(), emulation.clone());
            let pass_through = pass_through.clone();
            async move {
                let req = if pass_through.is_empty() || is_switchboard_endpoint(req.uri().path(), &hub) {
                    req
                } else {
                    match pass_through.handle(req, peer, tls).await {
                        Ok(resp) => return Ok(resp),
                        Err(req) => req,
                    }
                };
                Ok::<_, std::convert::Infallible>(widen(route(req, hub, tracker, emulation).await))
            }
        });
        // The header timeout and buffer cap make slowloris peers cheap; plain
        // `serve` defaults set neither.
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(cfg.header_read_timeout_secs))
            .max_buf_size(cfg.max_header_bytes.max(8192));
        let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            res = conn.as_mut() => if let Err(e) = res { debug!(%peer, error = %e, "http connection ended") },
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

/// The HTTP transports browsers may call cross-origin (CORS applies).
const BROWSER_HTTP_PATHS: [&str; 6] = [
    "/connection/http_stream",
    "/connection/sse",
    "/emulation",
    "/connection/uni_sse",
    "/connection/uni_http_stream",
    "/connection/long_poll",
];

async fn route(
    req: Request<Incoming>,
    hub: Arc<Hub>,
    tracker: TaskTracker,
    emulation: Arc<Emulation>,
) -> Response<Body> {
    let path = req.uri().path();
    if BROWSER_HTTP_PATHS.contains(&path) {
        if req.method() == Method::OPTIONS {
            return preflight(req.headers(), &hub);
        }
        let origin = match check_origin(req.headers(), &hub) {
            Ok(origin) => origin,
            Err(refused) => return refused.response(),
        };
        return with_cors(route_http_transport(req, hub, tracker, emulation).await, origin);
    }
    let echo_path = &hub.config().server.debug_echo_path;
    if !echo_path.is_empty() && path == echo_path.as_str() {
        return match *req.method() {
            Method::GET => boxed(websocket::upgrade(req, hub.clone(), &tracker, websocket::Mode::Echo)),
            _ => json_response(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":"method not allowed"}"#),
        };
    }
    match (req.method(), path) {
        (&Method::GET, "/connection/websocket") => {
            boxed(websocket::upgrade(req, hub, &tracker, websocket::Mode::Session))
        }
        (&Method::GET, "/connection/uni_websocket") => boxed(uni_websocket::upgrade(req, hub, &tracker)),
        (&Method::POST, p) if p == "/api" || p.starts_with("/api/") => boxed(api::handle(req, &hub).await),
        (&Method::GET, "/health") => json_response(StatusCode::OK, r#"{"status":"ok"}"#),
        (&Method::GET, "/metrics") => boxed(api::metrics(&hub)),
        (&Method::GET, "/ready") => {
            if hub.shutdown_token().is_cancelled() {
                json_response(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"shutting down"}"#)
            } else if !hub.ready().await {
                json_response(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"engine unavailable"}"#)
            } else {
                json_response(StatusCode::OK, r#"{"status":"ready"}"#)
            }
        }
        (_, "/connection/websocket" | "/connection/uni_websocket" | "/health" | "/ready" | "/metrics") => {
            json_response(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":"method not allowed"}"#)
        }
        _ => json_response(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
    }
}

/// Whether `path` is answered by Switchboard itself (never passed through).
fn is_switchboard_endpoint(path: &str, hub: &Hub) -> bool {
    let echo = &hub.config().server.debug_echo_path;
    BROWSER_HTTP_PATHS.contains(&path)
        || matches!(path, "/connection/websocket" | "/connection/uni_websocket" | "/health" | "/ready" | "/api")
        || path.starts_with("/api/")
        || (!echo.is_empty() && path == echo.as_str())
}

/// A Switchboard response as the listener's body type (which also carries
/// pass-through bodies, whose upstream may fail mid-stream).
fn widen(resp: Response<Body>) -> Response<AnyBody> {
    resp.map(|body| {
        http_body_util::BodyExt::boxed_unsync(http_body_util::BodyExt::map_err(body, |never| match never {}))
    })
}

/// The HTTP-streaming, SSE, one-way HTTP and long-polling endpoints.
async fn route_http_transport(
    req: Request<Incoming>,
    hub: Arc<Hub>,
    tracker: TaskTracker,
    emulation: Arc<Emulation>,
) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/connection/http_stream") => {
            emulation::handle_stream(req, &hub, &tracker, &emulation, false).await
        }
        (&Method::GET | &Method::POST, "/connection/sse") => {
            emulation::handle_stream(req, &hub, &tracker, &emulation, true).await
        }
        (&Method::POST, "/emulation") => emulation::handle_post(req, &hub, &emulation).await,
        (&Method::GET | &Method::POST, "/connection/uni_sse") => uni::handle(req, &hub, &tracker, true).await,
        (&Method::POST, "/connection/uni_http_stream") => uni::handle(req, &hub, &tracker, false).await,
        (&Method::POST, "/connection/long_poll") => long_poll::handle(req, &hub, &tracker, &emulation).await,
        _ => json_response(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":"method not allowed"}"#),
    }
}

fn boxed(resp: Response<Full<Bytes>>) -> Response<Body> {
    resp.map(http_body_util::BodyExt::boxed_unsync)
}

pub(super) fn json(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    resp
}
