//! The one-way WebSocket (`GET /connection/uni_websocket`).
//!
//! The connect request is the `cf_connect` query parameter or else the first
//! text message. Then the client only listens: each one-way push is one text
//! message; later client messages are ignored. The session ends with a
//! `{"disconnect":…}` message followed by a close frame with the same code.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::stream::{INBOUND_QUEUE, query_param};
use super::uni::{UniMessage, connect_command, to_uni, uni_disconnect};
use super::{origin_allowed, spawn_named};
use crate::hub::{Hub, Inbound, Session, SessionOptions, TransportKind};
use crate::protocol::DisconnectCode;

type Ws = WebSocketStream<TokioIo<Upgraded>>;

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn has_token(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Validates the upgrade (origin, headers, `cf_connect` size) and answers 101.
pub(super) fn upgrade(req: Request<Incoming>, hub: Arc<Hub>, tracker: &TaskTracker) -> Response<Full<Bytes>> {
    let config = hub.config();
    if let Some(origin) = req.headers().get(header::ORIGIN)
        && !origin.to_str().is_ok_and(|o| origin_allowed(o, &config.server.allowed_origins))
    {
        return plain(StatusCode::FORBIDDEN, r#"{"error":"origin not allowed"}"#);
    }
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let version_ok = req.headers().get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let Some(key) = key.filter(|_| {
        version_ok && has_token(&req, header::CONNECTION, "upgrade") && has_token(&req, header::UPGRADE, "websocket")
    }) else {
        return plain(StatusCode::BAD_REQUEST, r#"{"error":"websocket upgrade required"}"#);
    };
    if hub.shutdown_token().is_cancelled() {
        return plain(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"shutting down"}"#);
    }
    let cf_connect = query_param(req.uri().query(), "cf_connect");
    if cf_connect.as_ref().is_some_and(|c| c.len() > config.client.max_frame_bytes) {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, r#"{"error":"cf_connect too large"}"#);
    }
    let client = &config.client;
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(client.ws_read_buffer_bytes)
        .write_buffer_size(client.ws_write_buffer_bytes)
        .max_write_buffer_size(client.ws_write_buffer_bytes.max(client.write_batch_max_bytes) * 4)
        .max_message_size(Some(client.max_frame_bytes))
        .max_frame_size(Some(client.max_frame_bytes));
    let hub_for_task = hub.clone();
    spawn_named(tracker, "uni-ws-session", async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config)).await;
                serve(ws, hub_for_task, cf_connect).await;
            }
            Err(e) => debug!(error = %e, "uni websocket upgrade failed"),
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    resp
}

fn close(code: DisconnectCode) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code.code), reason: Utf8Bytes::from_static(code.reason) }))
}

async fn serve(ws: Ws, hub: Arc<Hub>, cf_connect: Option<String>) {
    let (mut sink, mut stream) = ws.split();
    let request = match cf_connect {
        Some(text) => Some(Bytes::from(text)),
        None => {
            let wait = Duration::from_secs(hub.config().client.connect_timeout_secs);
            match tokio::time::timeout(wait, stream.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => Some(Bytes::from(text)),
                Ok(_) => None,
                Err(_) => {
                    let _ = sink.send(close(DisconnectCode::STALE)).await;
                    return;
                }
            }
        }
    };
    let Some(first) = request.and_then(|r| connect_command(&r, None)) else {
        let _ = sink.send(close(DisconnectCode::BAD_REQUEST)).await;
        return;
    };
    let Some(slot) = hub.try_acquire_connection() else {
        let _ = sink.send(close(DisconnectCode::CONNECTION_LIMIT)).await;
        return;
    };
    let options = SessionOptions {
        kind: TransportKind::Unidirectional,
        session_id: uuid::Uuid::new_v4().to_string(),
        ..SessionOptions::default()
    };
    let session = Session::with_options(hub.clone(), slot, options);
    let outbox = session.outbox();
    let (inbound, mut inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    inbound.try_send(Inbound::Text(first)).expect("a new queue has room");
    // Client messages after the connect are ignored; only its leaving counts.
    let closed = outbox.clone();
    let reader = async move {
        tokio::select! {
            () = async {
                while let Some(msg) = stream.next().await {
                    if matches!(msg, Ok(Message::Close(_)) | Err(_)) {
                        break;
                    }
                }
            } => {
                let _ = inbound.send(Inbound::Closed).await;
            }
            // The session ended first; stop reading.
            _ = closed.closed() => {}
        }
    };
    let writer = async {
        let max_batch = hub.config().client.write_batch_max_bytes;
        let mut batch = Vec::new();
        loop {
            if let Some(code) = outbox.next_batch(&mut batch, max_batch).await {
                if code != DisconnectCode::CONNECTION_CLOSED {
                    let _ = sink.send(Message::text(uni_disconnect(code))).await;
                    let _ = sink.send(close(code)).await;
                }
                return;
            }
            for message in batch.drain(..) {
                let sent = match to_uni(&message) {
                    UniMessage::Send(bytes) => match Utf8Bytes::try_from(bytes) {
                        Ok(text) => sink.send(Message::Text(text)).await,
                        Err(_) => Ok(()),
                    },
                    UniMessage::Skip => Ok(()),
                    UniMessage::Close(code) => {
                        outbox.close(code);
                        break;
                    }
                };
                if sent.is_err() {
                    outbox.close(DisconnectCode::WRITE_ERROR);
                    break;
                }
            }
            batch.clear();
        }
    };
    let run = session.run(futures_util::stream::poll_fn(move |cx| inbound_rx.poll_recv(cx)));
    let (code, (), ()) = tokio::join!(run, reader, writer);
    debug!(code = code.code, reason = code.reason, "uni websocket session ended");
}
