//! The bidirectional WebSocket transport (`/connection/websocket`).
//!
//! One connection runs two halves in one task, each with its own waker: the
//! session loop reading frames, and the writer draining the session's outbox
//! in batches. The
//! `centrifuge-protobuf` subprotocol selects Protobuf: batches go out as one
//! binary frame of concatenated length-prefixed messages. Otherwise JSON:
//! one text frame of messages joined with `\n`. A frame of the other kind
//! ends the connection with 3506 either way (Centrifugo ignores the frame
//! type and would fail to decode it instead, with 3501; a wrong frame type
//! is the clearer signal of a client speaking the wrong protocol).
//! Disconnects travel in the close frame, as the SDKs expect.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Sink, SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::http::json;
use super::join::join_woken;
use super::stream::Refused;
use super::{origin_allowed, spawn_named};
use crate::channel::Outbox;
use crate::hub::{Hub, Inbound, Session, SessionOptions};
use crate::protocol::{DisconnectCode, Encoding};

pub(super) type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// After our close frame, how long we keep reading so the peer receives it
/// before the socket closes (closing with unread input sends a TCP reset,
/// which can destroy the close frame in flight).
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes read and discarded while lingering.
const LINGER_MAX_BYTES: usize = 1 << 20;

fn header_has_token(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// An upgrade request that passed [`check_upgrade`].
pub(super) struct Handshake {
    /// The client's `Sec-WebSocket-Key`, for the accept header.
    key: HeaderValue,
}

/// The checks every WebSocket endpoint makes before answering 101: the
/// `Origin` against `server.allowed_origins` (403), a version-13 upgrade
/// with a key (400), and a node that is not shutting down (503).
pub(super) fn check_upgrade(req: &Request<Incoming>, hub: &Hub) -> Result<Handshake, Refused> {
    if let Some(origin) = req.headers().get(header::ORIGIN)
        && !origin.to_str().is_ok_and(|o| origin_allowed(o, &hub.config().server.allowed_origins))
    {
        debug!(origin = ?origin, "websocket origin rejected");
        return Err(Refused(StatusCode::FORBIDDEN, r#"{"error":"origin not allowed"}"#));
    }
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let version_ok = req.headers().get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let Some(key) = key.filter(|_| {
        version_ok
            && header_has_token(req, header::CONNECTION, "upgrade")
            && header_has_token(req, header::UPGRADE, "websocket")
    }) else {
        return Err(Refused(StatusCode::BAD_REQUEST, r#"{"error":"websocket upgrade required"}"#));
    };
    if hub.shutdown_token().is_cancelled() {
        return Err(Refused(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"shutting down"}"#));
    }
    Ok(Handshake { key })
}

impl Handshake {
    /// The socket limits from `client.*`.
    pub fn config(hub: &Hub) -> WebSocketConfig {
        let client = &hub.config().client;
        WebSocketConfig::default()
            .read_buffer_size(client.ws_read_buffer_bytes)
            .write_buffer_size(client.ws_write_buffer_bytes)
            .max_write_buffer_size(client.ws_write_buffer_bytes.max(client.write_batch_max_bytes) * 4)
            .max_message_size(Some(client.max_frame_bytes))
            .max_frame_size(Some(client.max_frame_bytes))
    }

    /// Spawns `serve` on the upgraded socket and answers 101, selecting
    /// `subprotocol` when given.
    pub fn accept<F, Fut>(
        self,
        req: Request<Incoming>,
        hub: &Hub,
        tracker: &TaskTracker,
        name: &'static str,
        subprotocol: Option<&'static str>,
        serve: F,
    ) -> Response<Full<Bytes>>
    where
        F: FnOnce(Ws) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let ws_config = Self::config(hub);
        spawn_named(tracker, name, async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    let ws =
                        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config)).await;
                    serve(ws).await;
                }
                Err(e) => debug!(error = %e, task = name, "websocket upgrade failed"),
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = resp.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(self.key.as_bytes())) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        if let Some(protocol) = subprotocol {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
        }
        resp
    }
}

/// The subprotocol a Protobuf client asks for in `Sec-WebSocket-Protocol`.
pub const PROTOBUF_SUBPROTOCOL: &str = "centrifuge-protobuf";
/// The JSON subprotocol, echoed when offered (clients that offer one fail
/// the handshake when the server selects none).
const JSON_SUBPROTOCOL: &str = "centrifuge-json";

/// What runs on an accepted WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A client protocol session.
    Session,
    /// `server.debug_echo_path`: every message is sent back, through the
    /// same limits, UTF-8 validation and close handling (for conformance
    /// suites such as Autobahn).
    Echo,
}

/// Validates the upgrade request and answers 101, spawning the session (or
/// the echo loop).
pub(super) fn upgrade(
    req: Request<Incoming>,
    hub: Arc<Hub>,
    tracker: &TaskTracker,
    mode: Mode,
) -> Response<Full<Bytes>> {
    let handshake = match check_upgrade(&req, &hub) {
        Ok(handshake) => handshake,
        Err(Refused(status, body)) => return json(status, body),
    };
    let (encoding, subprotocol) = if header_has_token(&req, header::SEC_WEBSOCKET_PROTOCOL, PROTOBUF_SUBPROTOCOL) {
        (Encoding::Protobuf, Some(PROTOBUF_SUBPROTOCOL))
    } else if header_has_token(&req, header::SEC_WEBSOCKET_PROTOCOL, JSON_SUBPROTOCOL) {
        (Encoding::Json, Some(JSON_SUBPROTOCOL))
    } else {
        (Encoding::Json, None)
    };
    let hub_for_task = hub.clone();
    let forwarded = super::origin::forwarded_headers(req.headers(), hub.config());
    handshake.accept(req, &hub, tracker, "ws-session", subprotocol, move |ws| async move {
        match mode {
            Mode::Session => serve(ws, hub_for_task, encoding, forwarded).await,
            Mode::Echo => echo(ws).await,
        }
    })
}

async fn serve(ws: Ws, hub: Arc<Hub>, encoding: Encoding, forwarded: Vec<(String, String)>) {
    let (mut sink, mut stream) = ws.split();
    let Some(slot) = hub.try_acquire_connection() else {
        let _ = sink.send(close_message(DisconnectCode::CONNECTION_LIMIT)).await;
        linger(sink.reunite(stream).ok()).await;
        return;
    };
    let options = SessionOptions { encoding, transport: "websocket", forwarded, ..SessionOptions::default() };
    let session = Session::with_options(hub.clone(), slot, options);
    let outbox = session.outbox();
    let max_batch = hub.config().client.write_batch_max_bytes;
    let inbound = stream.by_ref().filter_map(|msg| {
        std::future::ready(match msg {
            Ok(Message::Text(text)) => Some(Inbound::Text(Bytes::from(text))),
            Ok(Message::Binary(bytes)) => Some(Inbound::Binary(bytes)),
            Ok(Message::Close(_)) => Some(Inbound::Closed),
            // tungstenite answers pings itself on the next flush.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => None,
            Err(WsError::Capacity(CapacityError::MessageTooLong { .. })) => Some(Inbound::TooLarge),
            Err(e) => match violation(&e) {
                Some(code) => {
                    debug!(error = %e, code = code.code, "websocket protocol violation");
                    Some(Inbound::Violation(code))
                }
                None => {
                    debug!(error = %e, "websocket read failed");
                    Some(Inbound::Closed)
                }
            },
        })
    });
    let (code, sent_close) = {
        // Separate wakers: a publication wakes only the writer (see `join`).
        // The block ends the halves' borrows of the split socket.
        let reader = std::pin::pin!(session.run(inbound));
        let writer = std::pin::pin!(write_loop(&mut sink, &outbox, max_batch, encoding));
        join_woken(reader, writer).await
    };
    debug!(code = code.code, reason = code.reason, "session ended");
    if sent_close {
        linger(sink.reunite(stream).ok()).await;
    }
}

/// The close code for a read error that is the client's fault: 1007 for a
/// text message that is not UTF-8, 1002 for broken framing, 1009 for an
/// oversized message. `None` when the connection merely failed or ended.
fn violation(error: &WsError) -> Option<DisconnectCode> {
    match error {
        WsError::Utf8(_) => Some(DisconnectCode::INVALID_PAYLOAD),
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => Some(DisconnectCode::MESSAGE_TOO_BIG),
        WsError::Protocol(
            ProtocolError::NonZeroReservedBits
            | ProtocolError::UnmaskedFrameFromClient
            | ProtocolError::FragmentedControlFrame
            | ProtocolError::ControlFrameTooBig
            | ProtocolError::UnknownControlFrameType(_)
            | ProtocolError::UnknownDataFrameType(_)
            | ProtocolError::UnexpectedContinueFrame
            | ProtocolError::ExpectedFragment(_)
            | ProtocolError::InvalidOpcode(_)
            | ProtocolError::InvalidCloseSequence,
        ) => Some(DisconnectCode::PROTOCOL_ERROR),
        _ => None,
    }
}

/// The echo loop of [`Mode::Echo`]: text and binary messages go back as
/// they came; tungstenite answers pings and the peer's close itself. A
/// violation closes with its code (see [`violation`]).
async fn echo(mut ws: Ws) {
    let code = loop {
        let reply = match ws.next().await {
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => message,
            Some(Ok(_)) => continue,
            Some(Err(e)) => break violation(&e),
            None => return,
        };
        if ws.send(reply).await.is_err() {
            return;
        }
    };
    if let Some(code) = code {
        debug!(code = code.code, "echo: closing on a protocol violation");
        let _ = ws.send(close_message(code)).await;
        // Wait for the peer's close reply, then drop the TCP connection
        // first, as RFC 6455 has the server do (Autobahn checks it).
        let _ = tokio::time::timeout(LINGER, async {
            while let Some(Ok(message)) = ws.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// Drains the outbox into the socket: whatever is queued when the writer
/// runs goes out as one frame (up to `max_batch` bytes; a longer message
/// alone), so a connection that falls behind catches up with fewer, larger
/// writes. Returns whether a close frame was sent.
async fn write_loop<S>(sink: &mut S, outbox: &Outbox, max_batch: usize, encoding: Encoding) -> bool
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let mut batch = Vec::new();
    // Reused for every joined frame: tungstenite copies a message into its
    // own write buffer, so by the next batch this buffer is ours again.
    let mut joined = BytesMut::new();
    loop {
        if let Some(code) = outbox.next_batch(&mut batch, max_batch).await {
            if code == DisconnectCode::CONNECTION_CLOSED {
                // The client closed first: complete its close handshake.
                let _ = sink.send(Message::Close(None)).await;
                return false;
            }
            let _ = sink.send(close_message(code)).await;
            return true;
        }
        let sent = if encoding.is_binary() {
            // Length prefixes delimit the messages: plain concatenation.
            sink.send(Message::Binary(join_batch(&mut batch, b"", &mut joined))).await
        } else {
            match Utf8Bytes::try_from(join_batch(&mut batch, b"\n", &mut joined)) {
                Ok(text) => sink.send(Message::Text(text)).await,
                Err(_) => Ok(()),
            }
        };
        if sent.is_err() {
            outbox.close(DisconnectCode::WRITE_ERROR);
            return false;
        }
    }
}

/// One frame for the batch: shared bytes as-is for a single message, else
/// the messages joined with `separator` in `out`'s storage.
fn join_batch(batch: &mut Vec<Bytes>, separator: &[u8], out: &mut BytesMut) -> Bytes {
    if batch.len() == 1 {
        return batch.pop().expect("one element");
    }
    let len = batch.iter().map(|b| b.len() + separator.len()).sum::<usize>();
    // Reclaims the previous frame's allocation once that frame is dropped.
    out.reserve(len);
    for (i, part) in batch.drain(..).enumerate() {
        if i > 0 {
            out.extend_from_slice(separator);
        }
        out.extend_from_slice(&part);
    }
    out.split().freeze()
}

fn close_message(code: DisconnectCode) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code.code), reason: Utf8Bytes::from_static(code.reason) }))
}

/// Reads and discards what the peer still sends, so our close frame is not
/// lost to a reset, for at most [`LINGER`] and [`LINGER_MAX_BYTES`].
async fn linger(ws: Option<Ws>) {
    let Some(mut ws) = ws else { return };
    let _ = ws.flush().await;
    let io = ws.get_mut();
    let mut buf = [0u8; 4096];
    let mut total = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while total < LINGER_MAX_BYTES {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use tokio::io::DuplexStream;

    use super::*;

    /// A server-side sink and the client end of an in-memory WebSocket.
    async fn pair() -> (WebSocketStream<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (server, client) = tokio::io::duplex(1 << 20);
        let server = WebSocketStream::from_raw_socket(server, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (server, client)
    }

    /// Runs the writer over `pushes` queued up front, then a 3001 close, and
    /// returns every message the client receives.
    async fn written(pushes: &[&'static str], max_batch: usize, encoding: Encoding) -> Vec<Message> {
        let (mut server, mut client) = pair().await;
        let outbox = Outbox::new(1 << 20);
        for push in pushes {
            outbox.push(Bytes::from_static(push.as_bytes())).expect("queue has room");
        }
        outbox.close(DisconnectCode::SHUTDOWN);
        assert!(write_loop(&mut server, &outbox, max_batch, encoding).await, "a close frame went out");
        let mut received = Vec::new();
        while let Some(Ok(message)) = client.next().await {
            let closed = matches!(message, Message::Close(_));
            received.push(message);
            if closed {
                break;
            }
        }
        received
    }

    fn text(s: &str) -> Message {
        Message::Text(Utf8Bytes::from(s))
    }

    #[tokio::test]
    async fn queued_pushes_go_out_joined_in_order_and_split_at_the_batch_limit() {
        // 7 bytes each: two fit in 16 bytes, a third does not.
        let pushes = [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#, r#"{"n":4}"#];
        let received = written(&pushes, 16, Encoding::Json).await;
        assert_eq!(
            received,
            [
                text("{\"n\":0}\n{\"n\":1}"),
                text("{\"n\":2}\n{\"n\":3}"),
                text(r#"{"n":4}"#),
                close_message(DisconnectCode::SHUTDOWN),
            ]
        );
    }

    #[tokio::test]
    async fn a_push_over_the_limit_goes_alone_and_order_holds_around_it() {
        let long = r#"{"long":"0123456789012345678901234567890123456789"}"#;
        let received = written(&["{}", long, "[1]", "[2]"], 16, Encoding::Json).await;
        assert_eq!(received, [text("{}"), text(long), text("[1]\n[2]"), close_message(DisconnectCode::SHUTDOWN)]);
    }

    #[tokio::test]
    async fn protobuf_batches_are_concatenated_binary_frames() {
        let received = written(&["\u{3}abc", "\u{2}de", "\u{1}f"], 7, Encoding::Protobuf).await;
        assert_eq!(
            received,
            [
                Message::Binary(Bytes::from_static(b"\x03abc\x02de")),
                Message::Binary(Bytes::from_static(b"\x01f")),
                close_message(DisconnectCode::SHUTDOWN),
            ]
        );
    }

    #[test]
    fn the_join_buffer_is_reused_once_the_frame_is_gone() {
        let mut out = BytesMut::new();
        let mut batch = vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")];
        let first = join_batch(&mut batch, b"\n", &mut out);
        assert_eq!(first, Bytes::from_static(b"ab\ncd"));
        let first_ptr = first.as_ptr();
        drop(first);
        let mut batch = vec![Bytes::from_static(b"ef"), Bytes::from_static(b"gh")];
        let second = join_batch(&mut batch, b"\n", &mut out);
        assert_eq!(second, Bytes::from_static(b"ef\ngh"));
        assert_eq!(second.as_ptr(), first_ptr, "the second frame reuses the first one's allocation");
        assert!(batch.is_empty());
    }
}
