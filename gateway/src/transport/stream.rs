//! What the HTTP streaming transports share: the response body type, bounded
//! request bodies, query parsing, and the driver that runs one session and
//! streams its outbox as a chunked response.
//!
//! A transport only chooses the framing ([`Framer`]); the session, its timers
//! and its command handling are `hub::Session`'s, as for WebSocket.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::spawn_named;
use crate::hub::{Hub, Inbound, Session, SessionOptions};
use crate::protocol::{DisconnectCode, Encoding};

/// The body of every response this server sends.
pub(super) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Commands a session may have queued from `/emulation` posts (or polls)
/// before it reads them; a post finding the queue full gets 429.
pub(super) const INBOUND_QUEUE: usize = 64;

/// A fixed JSON response.
pub(super) fn json_response(status: StatusCode, body: &'static str) -> Response<Body> {
    bytes_response(status, "application/json", Bytes::from_static(body.as_bytes()))
}

pub(super) fn bytes_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body).boxed_unsync());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub(super) fn empty_response(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *resp.status_mut() = status;
    resp
}

/// A request refused before any session exists: status and JSON body.
#[derive(Debug, Clone, Copy)]
pub(super) struct Refused(pub StatusCode, pub &'static str);

impl Refused {
    pub fn response(self) -> Response<Body> {
        json_response(self.0, self.1)
    }
}

/// Applies `server.allowed_origins` to a browser request: 403 for an origin
/// not allowed; else the CORS headers that let the page read the response
/// (none without an `Origin` header).
pub(super) fn check_origin(headers: &http::HeaderMap, hub: &Hub) -> Result<Option<HeaderValue>, Refused> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(None) };
    let allowed = origin.to_str().is_ok_and(|o| super::origin_allowed(o, &hub.config().server.allowed_origins));
    if allowed {
        Ok(Some(origin.clone()))
    } else {
        Err(Refused(StatusCode::FORBIDDEN, r#"{"error":"origin not allowed"}"#))
    }
}

/// Adds the CORS headers for an allowed `origin` to `resp`.
pub(super) fn with_cors(mut resp: Response<Body>, origin: Option<HeaderValue>) -> Response<Body> {
    if let Some(origin) = origin {
        let headers = resp.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

/// The answer to a CORS preflight (`OPTIONS`) for the HTTP transports.
pub(super) fn preflight(headers: &http::HeaderMap, hub: &Hub) -> Response<Body> {
    match check_origin(headers, hub) {
        Ok(origin) => {
            let mut resp = with_cors(empty_response(StatusCode::NO_CONTENT), origin);
            let h = resp.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type, last-event-id"));
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            resp
        }
        Err(refused) => refused.response(),
    }
}

/// Reads a request body of at most `max` bytes: 413 past it, 400 when the
/// body cannot be read.
pub(super) async fn read_body(body: Incoming, max: usize) -> Result<Bytes, Refused> {
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Refused(StatusCode::PAYLOAD_TOO_LARGE, r#"{"error":"request body too large"}"#))
        }
        Err(e) => {
            debug!(error = %e, "request body read failed");
            Err(Refused(StatusCode::BAD_REQUEST, r#"{"error":"bad request body"}"#))
        }
    }
}

/// The value of query parameter `name`, percent-decoded (`+` is a space).
/// `None` when absent or not valid UTF-8 after decoding.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key)? == name).then(|| percent_decode(value)).flatten()
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Turns outbox messages into response bytes for one transport.
pub(super) trait Framer: Send + 'static {
    /// Appends `message` (one encoded reply or push) to `out`. Returning a
    /// code ends the session with it (a one-way client whose connect failed).
    fn message(&mut self, message: &Bytes, out: &mut BytesMut) -> Option<DisconnectCode>;
    /// Appends the final `disconnect` for `code`.
    fn disconnect(&mut self, code: DisconnectCode, out: &mut BytesMut);
}

/// Encodes the disconnect object `{"code":…,"reason":"…","reconnect":…}`.
pub(super) fn disconnect_object(code: DisconnectCode) -> String {
    serde_json::json!({ "code": code.code, "reason": code.reason, "reconnect": code.reconnect() }).to_string()
}

/// One client frame as the session expects it for `encoding`: HTTP bodies
/// carry no frame type, so the session's encoding decides (a Protobuf
/// session reads `Binary`, a JSON one `Text`).
pub(super) fn inbound_frame(encoding: Encoding, data: Bytes) -> Inbound {
    if encoding.is_binary() { Inbound::Binary(data) } else { Inbound::Text(data) }
}

/// A streaming response being set up: the session and the channel that
/// feeds it commands.
pub(super) struct Stream {
    pub session: Session,
    /// Feeds the session; the first frame (connect) is already queued.
    pub inbound: mpsc::Sender<Inbound>,
    inbound_rx: mpsc::Receiver<Inbound>,
}

impl Stream {
    /// Claims a connection slot and creates the session with `first` queued.
    /// 503 when the node is full or shutting down.
    pub fn open(hub: &Arc<Hub>, options: SessionOptions, first: Bytes) -> Result<Self, Refused> {
        if hub.shutdown_token().is_cancelled() {
            return Err(Refused(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"shutting down"}"#));
        }
        let Some(slot) = hub.try_acquire_connection() else {
            return Err(Refused(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"connection limit"}"#));
        };
        let first = inbound_frame(options.encoding, first);
        let session = Session::with_options(hub.clone(), slot, options);
        let (inbound, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        inbound.try_send(first).expect("a new queue has room");
        Ok(Self { session, inbound, inbound_rx })
    }

    /// Runs the session and answers with its outbox framed by `framer`.
    /// `keep` lives as long as the session (e.g. an `/emulation` route
    /// registration, or the inbound sender of a one-way session, whose drop
    /// would read as the client leaving).
    pub fn respond<K: Send + 'static>(
        self,
        hub: &Hub,
        tracker: &TaskTracker,
        framer: impl Framer,
        content_type: &'static str,
        keep: K,
    ) -> Response<Body> {
        let Self { session, inbound, inbound_rx } = self;
        let outbox = session.outbox();
        spawn_named(tracker, "stream-session", async move {
            let _keep = keep;
            let _inbound = inbound;
            let mut rx = inbound_rx;
            let code = session.run(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))).await;
            debug!(code = code.code, reason = code.reason, "stream session ended");
        });

        // One chunk in flight: a client that stops reading backs the outbox
        // up, and the outbox closes it with 3008 like a slow WebSocket.
        let (body_tx, mut body_rx) = mpsc::channel::<Bytes>(1);
        let max_batch = hub.config().client.write_batch_max_bytes;
        spawn_named(tracker, "stream-writer", async move {
            let mut framer = framer;
            let mut batch = Vec::new();
            loop {
                let next = tokio::select! {
                    next = outbox.next_batch(&mut batch, max_batch) => next,
                    // The client went away: end the session.
                    () = body_tx.closed() => {
                        outbox.close(DisconnectCode::CONNECTION_CLOSED);
                        return;
                    }
                };
                let mut out = BytesMut::new();
                match next {
                    None => {
                        for message in batch.drain(..) {
                            if let Some(code) = framer.message(&message, &mut out) {
                                outbox.close(code);
                                break;
                            }
                        }
                        batch.clear();
                    }
                    Some(code) => {
                        if code != DisconnectCode::CONNECTION_CLOSED {
                            framer.disconnect(code, &mut out);
                            let _ = body_tx.send(out.freeze()).await;
                        }
                        return;
                    }
                }
                if !out.is_empty() && body_tx.send(out.freeze()).await.is_err() {
                    outbox.close(DisconnectCode::CONNECTION_CLOSED);
                    return;
                }
            }
        });

        let chunks = futures_util::stream::poll_fn(move |cx| {
            body_rx.poll_recv(cx).map(|chunk| chunk.map(|b| Ok::<_, Infallible>(Frame::data(b))))
        });
        let mut resp = Response::new(StreamBody::new(chunks).boxed_unsync());
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
        // Tells nginx-style proxies not to buffer the stream.
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        let q = Some("a=1&cf_connect=%7B%22id%22%3A1%7D&b=x+y");
        assert_eq!(query_param(q, "cf_connect").as_deref(), Some(r#"{"id":1}"#));
        assert_eq!(query_param(q, "b").as_deref(), Some("x y"));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param(Some("a=%zz"), "a"), None);
        assert_eq!(query_param(Some("a=%e2"), "a"), None, "invalid utf-8");
    }
}
