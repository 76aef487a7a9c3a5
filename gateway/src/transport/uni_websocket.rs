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
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::http::json;
use super::stream::{INBOUND_QUEUE, Refused, query_param};
use super::uni::{UniMessage, connect_command, to_uni, uni_disconnect};
use super::websocket::{Ws, check_upgrade};
use crate::hub::{Hub, Inbound, Session, SessionOptions, TransportKind};
use crate::protocol::DisconnectCode;

/// Validates the upgrade (the WebSocket checks, then the `cf_connect` size)
/// and answers 101.
pub(super) fn upgrade(req: Request<Incoming>, hub: Arc<Hub>, tracker: &TaskTracker) -> Response<Full<Bytes>> {
    let handshake = match check_upgrade(&req, &hub) {
        Ok(handshake) => handshake,
        Err(Refused(status, body)) => return json(status, body),
    };
    let cf_connect = query_param(req.uri().query(), "cf_connect");
    if cf_connect.as_ref().is_some_and(|c| c.len() > hub.config().client.max_frame_bytes) {
        return json(StatusCode::PAYLOAD_TOO_LARGE, r#"{"error":"cf_connect too large"}"#);
    }
    let hub_for_task = hub.clone();
    let forwarded = super::origin::forwarded_headers(req.headers(), hub.config());
    handshake
        .accept(req, &hub, tracker, "uni-ws-session", None, move |ws| serve(ws, hub_for_task, cf_connect, forwarded))
}

fn close(code: DisconnectCode) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code.code), reason: Utf8Bytes::from_static(code.reason) }))
}

async fn serve(ws: Ws, hub: Arc<Hub>, cf_connect: Option<String>, forwarded: Vec<(String, String)>) {
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
        transport: "uni_websocket",
        forwarded,
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
