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

use super::websocket;
use crate::api;
use crate::hub::Hub;

/// Most time a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Connection {
    pub hub: Arc<Hub>,
    pub tracker: TaskTracker,
    pub tls: Option<TlsAcceptor>,
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
        let (hub, tracker) = (self.hub.clone(), self.tracker.clone());
        let service = service_fn(move |req| {
            let (hub, tracker) = (hub.clone(), tracker.clone());
            async move { Ok::<_, std::convert::Infallible>(route(req, hub, tracker).await) }
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

async fn route(req: Request<Incoming>, hub: Arc<Hub>, tracker: TaskTracker) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET, "/connection/websocket") => websocket::upgrade(req, hub, &tracker),
        (&Method::POST, p) if p == "/api" || p.starts_with("/api/") => api::handle(req, &hub).await,
        (&Method::GET, "/health") => json(StatusCode::OK, r#"{"status":"ok"}"#),
        (&Method::GET, "/ready") => {
            if hub.shutdown_token().is_cancelled() {
                json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"shutting down"}"#)
            } else {
                json(StatusCode::OK, r#"{"status":"ready"}"#)
            }
        }
        (_, "/connection/websocket" | "/health" | "/ready") => {
            json(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":"method not allowed"}"#)
        }
        _ => json(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
    }
}

pub(super) fn json(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    resp
}
