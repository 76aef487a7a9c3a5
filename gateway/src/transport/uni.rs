//! One-way transports: `GET /connection/uni_sse`, `POST
//! /connection/uni_http_stream` (and `GET /connection/uni_websocket`, in
//! `uni_websocket.rs`). The client sends one `ConnectRequest` and then only
//! listens; it gets the push objects without the reply envelope:
//! `{"connect":…}`, `{"channel":…,"pub":…}`, `{}` pings, `{"disconnect":…}`.
//!
//! Beyond Centrifugo, every uni_sse event that moves a channel position
//! carries an `id:` with all positions ([`Positions`]), so a browser's
//! automatic reconnect (`Last-Event-ID`, or `?last_event_id=`) resumes the
//! token's channels with recovery: all or nothing, as recovery always is.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{BufMut, Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_util::task::TaskTracker;

use super::stream::{Body, Framer, Stream, disconnect_object, json_response, query_param, read_body};
use crate::hub::{Hub, SessionOptions, TransportKind};
use crate::protocol::{DisconnectCode, ErrorCode};

/// The session-side command id of the one connect a one-way client sends.
const CONNECT_ID: u32 = 1;

/// Wraps a client's `ConnectRequest` object into the connect command,
/// merging `resume` positions into its `subs` for recovery. `None` when the
/// request is not a JSON object.
pub fn connect_command(request: &[u8], resume: Option<&BTreeMap<String, (u64, String)>>) -> Option<Bytes> {
    let text = std::str::from_utf8(request).ok()?.trim();
    let mut connect: Map<String, Value> = if text.is_empty() { Map::new() } else { serde_json::from_str(text).ok()? };
    if let Some(resume) = resume.filter(|r| !r.is_empty()) {
        let subs = connect.entry("subs").or_insert_with(|| json!({}));
        let subs = subs.as_object_mut()?;
        for (channel, (offset, epoch)) in resume {
            subs.insert(channel.clone(), json!({ "recover": true, "offset": offset, "epoch": epoch }));
        }
    }
    Some(Bytes::from(json!({ "id": CONNECT_ID, "connect": connect }).to_string()))
}

/// The one-way form of an outbox message, or why the session must end.
pub(super) enum UniMessage {
    Send(Bytes),
    Skip,
    Close(DisconnectCode),
}

/// Strips the reply envelope: `{"push":{X}}` → `{X}` (a zero-copy slice of
/// the shared frame), the connect reply `{"id":1,"connect":R}` →
/// `{"connect":R}`, pings as they are. A connect error ends the session:
/// an expired token with 3005, anything else with 3501.
pub(super) fn to_uni(message: &Bytes) -> UniMessage {
    const PUSH: &[u8] = br#"{"push":"#;
    if message.starts_with(PUSH) && message.ends_with(b"}") {
        return UniMessage::Send(message.slice(PUSH.len()..message.len() - 1));
    }
    if message.as_ref() == b"{}" {
        return UniMessage::Send(message.clone());
    }
    let prefix = format!(r#"{{"id":{CONNECT_ID},"#);
    if let Some(rest) = message.strip_prefix(prefix.as_bytes()) {
        if rest.starts_with(br#""connect":"#) {
            let mut out = BytesMut::with_capacity(rest.len() + 1);
            out.put_u8(b'{');
            out.put_slice(rest);
            return UniMessage::Send(out.freeze());
        }
        #[derive(Deserialize)]
        struct ErrorReply {
            error: Option<CodeOnly>,
        }
        #[derive(Deserialize)]
        struct CodeOnly {
            code: u32,
        }
        if let Ok(ErrorReply { error: Some(e) }) = serde_json::from_slice::<ErrorReply>(message) {
            return UniMessage::Close(if e.code == ErrorCode::TokenExpired.code() {
                DisconnectCode::EXPIRED
            } else {
                DisconnectCode::BAD_REQUEST
            });
        }
    }
    UniMessage::Skip
}

/// The one-way disconnect object.
pub(super) fn uni_disconnect(code: DisconnectCode) -> String {
    format!(r#"{{"disconnect":{}}}"#, disconnect_object(code))
}

/// The stream position of each recoverable channel, as a client that read
/// every event so far has it; the uni_sse event id.
///
/// Format: unpadded base64url of the JSON object `{"channel":[offset,"epoch"]}`.
/// Reading it is strict: anything else is garbage and resumes nothing.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Positions(BTreeMap<String, (u64, String)>);

#[derive(Deserialize)]
struct UniShape {
    channel: Option<String>,
    connect: Option<ConnectShape>,
    #[serde(rename = "pub")]
    publication: Option<PubShape>,
    subscribe: Option<SubShape>,
    unsubscribe: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ConnectShape {
    #[serde(default)]
    subs: BTreeMap<String, SubShape>,
}

#[derive(Deserialize)]
struct SubShape {
    #[serde(default)]
    recoverable: bool,
    #[serde(default)]
    epoch: String,
    #[serde(default)]
    offset: u64,
}

#[derive(Deserialize)]
struct PubShape {
    #[serde(default)]
    offset: u64,
}

impl Positions {
    /// Reads a resume id; `None` for garbage (or more than `max_channels`).
    pub fn decode(id: &str, max_channels: usize) -> Option<Self> {
        let json = URL_SAFE_NO_PAD.decode(id.trim()).ok()?;
        let map: BTreeMap<String, (u64, String)> = serde_json::from_slice(&json).ok()?;
        let valid = map.len() <= max_channels && map.keys().all(|c| !c.is_empty());
        valid.then_some(Self(map))
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&self.0).expect("a map of strings and numbers encodes"))
    }

    pub fn into_map(self) -> BTreeMap<String, (u64, String)> {
        self.0
    }

    pub fn from_map(map: BTreeMap<String, (u64, String)>) -> Self {
        Self(map)
    }

    /// Follows one one-way message; returns whether a position moved. Only
    /// connect, pub, subscribe and unsubscribe pushes are read, and a pub's
    /// data is skipped, not decoded.
    pub fn observe(&mut self, message: &[u8]) -> bool {
        if message.len() <= 2 {
            return false;
        }
        let Ok(shape) = serde_json::from_slice::<UniShape>(message) else { return false };
        if let Some(connect) = shape.connect {
            for (channel, sub) in connect.subs.into_iter().filter(|(_, s)| s.recoverable) {
                self.0.insert(channel, (sub.offset, sub.epoch));
            }
            return true;
        }
        let Some(channel) = shape.channel else { return false };
        if let Some(publication) = shape.publication {
            if let Some(position) = self.0.get_mut(&channel).filter(|p| publication.offset > p.0) {
                position.0 = publication.offset;
                return true;
            }
        } else if let Some(sub) = shape.subscribe.filter(|s| s.recoverable) {
            self.0.insert(channel, (sub.offset, sub.epoch));
            return true;
        } else if shape.unsubscribe.is_some() {
            return self.0.remove(&channel).is_some();
        }
        false
    }
}

/// Newline-delimited one-way pushes.
struct UniHttpStreamFramer;

impl Framer for UniHttpStreamFramer {
    fn message(&mut self, message: &Bytes, out: &mut BytesMut) -> Option<DisconnectCode> {
        match to_uni(message) {
            UniMessage::Send(bytes) => {
                out.put_slice(&bytes);
                out.put_u8(b'\n');
                None
            }
            UniMessage::Skip => None,
            UniMessage::Close(code) => Some(code),
        }
    }

    fn disconnect(&mut self, code: DisconnectCode, out: &mut BytesMut) {
        out.put_slice(uni_disconnect(code).as_bytes());
        out.put_u8(b'\n');
    }
}

/// `data:` events, with an `id:` of the positions whenever one moved.
struct UniSseFramer {
    positions: Positions,
}

impl Framer for UniSseFramer {
    fn message(&mut self, message: &Bytes, out: &mut BytesMut) -> Option<DisconnectCode> {
        let bytes = match to_uni(message) {
            UniMessage::Send(bytes) => bytes,
            UniMessage::Skip => return None,
            UniMessage::Close(code) => return Some(code),
        };
        if self.positions.observe(&bytes) {
            out.put_slice(b"id: ");
            out.put_slice(self.positions.encode().as_bytes());
            out.put_u8(b'\n');
        }
        out.put_slice(b"data: ");
        out.put_slice(&bytes);
        out.put_slice(b"\n\n");
        None
    }

    fn disconnect(&mut self, code: DisconnectCode, out: &mut BytesMut) {
        out.put_slice(b"data: ");
        out.put_slice(uni_disconnect(code).as_bytes());
        out.put_slice(b"\n\n");
    }
}

/// `GET /connection/uni_sse?cf_connect=…` (or POST with the request as the
/// body) and `POST /connection/uni_http_stream`.
pub(super) async fn handle(req: Request<Incoming>, hub: &Arc<Hub>, tracker: &TaskTracker, sse: bool) -> Response<Body> {
    let client = &hub.config().client;
    let max = client.max_frame_bytes;
    let forwarded = super::origin::forwarded_headers(req.headers(), hub.config());
    let resume_id = sse
        .then(|| {
            let header = req.headers().get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
            header.or_else(|| query_param(req.uri().query(), "last_event_id"))
        })
        .flatten()
        .filter(|id| !id.trim().is_empty());
    let request = if req.method() == Method::GET {
        match query_param(req.uri().query(), "cf_connect") {
            Some(text) if text.len() <= max => Bytes::from(text),
            Some(_) => return json_response(StatusCode::PAYLOAD_TOO_LARGE, r#"{"error":"cf_connect too large"}"#),
            None => Bytes::new(),
        }
    } else {
        match read_body(req.into_body(), max).await {
            Ok(body) => body,
            Err(refused) => return refused.response(),
        }
    };
    let resume = resume_id.as_deref().map(|id| Positions::decode(id, client.max_channels_per_connection));
    // An id that does not read resumes nothing: every channel reports that
    // recovery was asked for and failed, rather than replaying a guess.
    let recover_unlisted = matches!(resume, Some(None));
    let resume = resume.flatten().map(Positions::into_map);
    let Some(first) = connect_command(&request, resume.as_ref()) else {
        return json_response(StatusCode::BAD_REQUEST, r#"{"error":"connect request must be a json object"}"#);
    };
    let options = SessionOptions {
        kind: TransportKind::Unidirectional,
        session_id: uuid::Uuid::new_v4().to_string(),
        recover_unlisted,
        transport: if sse { "uni_sse" } else { "uni_http_stream" },
        forwarded,
        ..SessionOptions::default()
    };
    let stream = match Stream::open(hub, options, first) {
        Ok(stream) => stream,
        Err(refused) => return refused.response(),
    };
    // The client never sends again: hold the sender so the session does not
    // read its end as the client leaving.
    let keep = stream.inbound.clone();
    if sse {
        let framer = UniSseFramer { positions: Positions::default() };
        stream.respond(hub, tracker, framer, "text/event-stream", keep)
    } else {
        stream.respond(hub, tracker, UniHttpStreamFramer, "application/json", keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::hub::{Inbound, Session};

    #[tokio::test(start_paused = true)]
    async fn one_way_sessions_are_pinged_but_never_closed_for_a_missing_pong() {
        let mut config = Config::default();
        config.client.allow_anonymous = true;
        let hub = Hub::new(Arc::new(config), tokio_util::sync::CancellationToken::new()).expect("hub");
        let options = SessionOptions {
            kind: TransportKind::Unidirectional,
            session_id: "s1".to_owned(),
            ..SessionOptions::default()
        };
        let session = Session::with_options(hub.clone(), hub.try_acquire_connection().expect("slot"), options);
        let outbox = session.outbox();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        tx.send(Inbound::Text(connect_command(b"{}", None).expect("object"))).await.expect("queued");
        let task = tokio::spawn(session.run(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))));
        let mut batch = Vec::new();
        assert_eq!(outbox.next_batch(&mut batch, 1 << 16).await, None);
        let connect: Value = serde_json::from_slice(&batch[0]).expect("json");
        assert_eq!(connect["connect"]["session"], json!("s1"));
        assert_eq!(connect["connect"].get("pong"), None, "{connect}");
        assert_eq!(connect["connect"].get("node"), None, "only emulation names the node");
        for _ in 0..3 {
            batch.clear();
            assert_eq!(outbox.next_batch(&mut batch, 1 << 16).await, None);
            assert_eq!(batch, [Bytes::from_static(b"{}")]);
        }
        assert!(!task.is_finished(), "75 s of unanswered pings must not close a one-way session");
        drop(tx);
    }

    #[test]
    fn pushes_lose_the_envelope_without_copying() {
        let frame = Bytes::from_static(br#"{"push":{"channel":"a","pub":{"data":1,"offset":3}}}"#);
        let UniMessage::Send(inner) = to_uni(&frame) else { panic!("not sent") };
        assert_eq!(inner, Bytes::from_static(br#"{"channel":"a","pub":{"data":1,"offset":3}}"#));
        assert_eq!(inner.as_ptr(), frame[8..].as_ptr(), "a slice of the shared frame");
        let reply = Bytes::from_static(br#"{"id":1,"connect":{"client":"c"}}"#);
        let UniMessage::Send(inner) = to_uni(&reply) else { panic!("not sent") };
        assert_eq!(inner, Bytes::from_static(br#"{"connect":{"client":"c"}}"#));
        let error = Bytes::from_static(br#"{"id":1,"error":{"code":109,"message":"token expired"}}"#);
        assert!(matches!(to_uni(&error), UniMessage::Close(DisconnectCode::EXPIRED)));
    }

    #[test]
    fn positions_follow_connect_pub_and_unsubscribe_and_round_trip() {
        let mut p = Positions::default();
        assert!(p.observe(br#"{"connect":{"subs":{"a":{"recoverable":true,"epoch":"e","offset":2},"b":{}}}}"#));
        assert!(p.observe(br#"{"channel":"a","pub":{"data":{"offset":99},"offset":3}}"#));
        assert!(!p.observe(br#"{"channel":"b","pub":{"data":1}}"#), "b is not recoverable");
        assert!(!p.observe(b"{}"));
        assert_eq!(p.0, BTreeMap::from([("a".to_owned(), (3, "e".to_owned()))]));
        let id = p.encode();
        assert_eq!(Positions::decode(&id, 128), Some(p.clone()));
        assert_eq!(Positions::decode("e30", 128), Some(Positions::default()), "no positions is not garbage");
        assert!(p.observe(br#"{"channel":"a","unsubscribe":{"code":2000}}"#));
        assert!(p.0.is_empty());
    }

    #[test]
    fn garbage_ids_do_not_decode() {
        for id in ["", "!!!", "W10", "eyJhIjpbMSwyXX0", "eyIiOlsxLCJlIl19"] {
            assert_eq!(Positions::decode(id, 128), None, "{id}");
        }
        let many = Positions((0..3).map(|i| (format!("c{i}"), (1, "e".to_owned()))).collect());
        assert_eq!(Positions::decode(&many.encode(), 2), None);
    }

    #[test]
    fn connect_command_merges_resume_positions() {
        let resume = BTreeMap::from([("a".to_owned(), (5, "e".to_owned()))]);
        let cmd = connect_command(br#"{"token":"t"}"#, Some(&resume)).unwrap();
        let v: Value = serde_json::from_slice(&cmd).unwrap();
        assert_eq!(v, json!({"id":1,"connect":{"token":"t","subs":{"a":{"recover":true,"offset":5,"epoch":"e"}}}}));
        assert!(connect_command(b"[1]", None).is_none());
        assert!(connect_command(br#"{"token":"t"},"x":{"#, None).is_none());
    }
}
