//! HTTP long-polling: `POST /connection/long_poll`, with commands sent to
//! `POST /emulation` as for the other emulation transports.
//!
//! The opening poll's body is the connect command (or commands); its answer
//! carries `session` and `node`. Every later poll sends
//! `{"session","node","seq"}` where `seq` is the last batch it received, and
//! is held until messages are queued or `long_poll.hold_secs` pass. Batches
//! are numbered: the server keeps the last batch until a poll acknowledges
//! its `seq`, and answers a poll that acknowledges the batch before it (its
//! answer was lost) with the same batch again. So nothing is lost between
//! polls and nothing is delivered twice. A poll also proves the client alive
//! (it answers the ping, and so does a poll held when a ping is queued), so
//! pings are not part of the batches.
//!
//! A session with no poll in flight for `long_poll.session_ttl_secs` is
//! closed; its next poll gets 404, and the client connects again (with
//! `subs` positions for recovery).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use dashmap::DashMap;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::sync::{Mutex as AsyncMutex, Notify, mpsc};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::emulation::Emulation;
use super::spawn_named;
use super::stream::{Body, INBOUND_QUEUE, bytes_response, disconnect_object, json_response, read_body};
use crate::channel::Outbox;
use crate::hub::{Hub, Inbound, Session, SessionOptions, TransportKind};
use crate::protocol::{DisconnectCode, Encoding};

/// The live long-polling sessions of this node.
#[derive(Default)]
pub(crate) struct Polls {
    sessions: DashMap<String, Arc<PollSession>>,
}

struct PollSession {
    outbox: Arc<Outbox>,
    inbound: mpsc::Sender<Inbound>,
    batches: AsyncMutex<Batches>,
    /// Wakes a held poll when a newer poll of the same session arrives.
    superseded: Notify,
    polling: AtomicBool,
    last_seen: Mutex<Instant>,
}

#[derive(Default)]
struct Batches {
    /// Number of the last batch handed out.
    seq: u64,
    /// That batch's messages, kept until a poll acknowledges `seq`.
    last: Vec<Bytes>,
    /// Set once the session ended and its disconnect was batched.
    ended: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PollRequest {
    session: String,
    #[serde(default)]
    node: String,
    seq: u64,
}

/// `POST /connection/long_poll`.
pub(super) async fn handle(
    req: Request<Incoming>,
    hub: &Arc<Hub>,
    tracker: &TaskTracker,
    emulation: &Arc<Emulation>,
) -> Response<Body> {
    let body = match read_body(req.into_body(), hub.config().client.max_frame_bytes).await {
        Ok(body) => body,
        Err(refused) => return refused.response(),
    };
    match serde_json::from_slice::<PollRequest>(&body) {
        Ok(poll) => {
            if !poll.node.is_empty() && poll.node != hub.node_id() {
                return json_response(StatusCode::NOT_FOUND, r#"{"error":"unknown session"}"#);
            }
            let Some(session) = emulation.polls.sessions.get(&poll.session).map(|s| s.clone()) else {
                return json_response(StatusCode::NOT_FOUND, r#"{"error":"unknown session"}"#);
            };
            // The poll is the client's answer to any ping.
            let _ = session.inbound.try_send(Inbound::Text(Bytes::from_static(b"{}")));
            session.poll(hub, emulation, &poll.session, Some(poll.seq)).await
        }
        Err(_) => open(body, hub, tracker, emulation).await,
    }
}

/// The opening poll: starts the session with `first` as its commands.
async fn open(first: Bytes, hub: &Arc<Hub>, tracker: &TaskTracker, emulation: &Arc<Emulation>) -> Response<Body> {
    if hub.shutdown_token().is_cancelled() {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"shutting down"}"#);
    }
    let Some(slot) = hub.try_acquire_connection() else {
        return json_response(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"connection limit"}"#);
    };
    let id = uuid::Uuid::new_v4().to_string();
    let options = SessionOptions {
        kind: TransportKind::Emulation,
        session_id: id.clone(),
        transport: "long_poll",
        ..SessionOptions::default()
    };
    let session = Session::with_options(hub.clone(), slot, options);
    let (inbound, mut inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    inbound.try_send(Inbound::Text(first)).expect("a new queue has room");
    let poll = Arc::new(PollSession {
        outbox: session.outbox(),
        inbound: inbound.clone(),
        batches: AsyncMutex::new(Batches::default()),
        superseded: Notify::new(),
        polling: AtomicBool::new(false),
        last_seen: Mutex::new(Instant::now()),
    });
    emulation.polls.sessions.insert(id.clone(), poll.clone());
    let registration = emulation.local.register(&id, inbound, Encoding::Json);
    // Once the session ends, its last batch (with the disconnect) stays
    // readable until a poll takes it or the expiry below forgets the entry.
    spawn_named(tracker, "long-poll-session", async move {
        let _registration = registration;
        let code = session.run(futures_util::stream::poll_fn(move |cx| inbound_rx.poll_recv(cx))).await;
        debug!(code = code.code, reason = code.reason, "long-poll session ended");
    });
    spawn_named(tracker, "long-poll-expiry", expire(hub.clone(), emulation.clone(), id.clone(), poll.clone()));
    poll.poll(hub, emulation, &id, None).await
}

/// Closes the session once no poll was in flight for `session_ttl_secs`,
/// and forgets it.
async fn expire(hub: Arc<Hub>, emulation: Arc<Emulation>, id: String, poll: Arc<PollSession>) {
    let ttl = Duration::from_secs(hub.config().long_poll.session_ttl_secs);
    let shutdown = hub.shutdown_token().clone();
    loop {
        let due = *poll.last_seen.lock() + ttl;
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            () = shutdown.cancelled() => break,
        }
        if !poll.polling.load(Ordering::Acquire) && poll.last_seen.lock().elapsed() >= ttl {
            break;
        }
    }
    poll.outbox.close(DisconnectCode::CONNECTION_CLOSED);
    emulation.polls.sessions.remove(&id);
}

impl PollSession {
    /// Answers one poll: `ack` is the `seq` the client last received (`None`
    /// for the opening poll).
    async fn poll(&self, hub: &Hub, emulation: &Emulation, id: &str, ack: Option<u64>) -> Response<Body> {
        self.superseded.notify_waiters();
        let mut batches = self.batches.lock().await;
        self.polling.store(true, Ordering::Release);
        *self.last_seen.lock() = Instant::now();
        let response = self.answer(&mut batches, hub, emulation, id, ack).await;
        *self.last_seen.lock() = Instant::now();
        self.polling.store(false, Ordering::Release);
        response
    }

    async fn answer(
        &self,
        batches: &mut Batches,
        hub: &Hub,
        emulation: &Emulation,
        id: &str,
        ack: Option<u64>,
    ) -> Response<Body> {
        match ack {
            Some(seq) if seq + 1 == batches.seq && !batches.last.is_empty() => {
                // The answer carrying the last batch was lost: send it again.
                return self.respond(hub, id, batches.seq, &batches.last);
            }
            Some(seq) if seq != batches.seq => {
                return json_response(StatusCode::CONFLICT, r#"{"error":"unknown seq"}"#);
            }
            _ => {}
        }
        batches.last.clear();
        if batches.ended {
            emulation.polls.sessions.remove(id);
            return json_response(StatusCode::NOT_FOUND, r#"{"error":"unknown session"}"#);
        }
        let hold = Duration::from_secs(hub.config().long_poll.hold_secs);
        let max = hub.config().client.write_batch_max_bytes;
        let mut taken = Vec::new();
        let deadline = Instant::now() + hold;
        loop {
            let next = tokio::select! {
                next = self.outbox.next_batch(&mut taken, max) => next,
                () = tokio::time::sleep_until(deadline) => break,
                () = self.superseded.notified() => break,
            };
            match next {
                None => {
                    // Pings are answered by polling; they are not delivered.
                    // A ping that finds this poll held is answered by it: the
                    // client cannot pong before the poll returns, and with
                    // `hold_secs` above `pong_timeout_secs` an idle session
                    // would otherwise end in 3012 while its poll waits. A
                    // client that is gone stops polling and is closed by the
                    // session expiry instead.
                    let before = taken.len();
                    taken.retain(|m| m.as_ref() != b"{}");
                    if taken.len() < before {
                        let _ = self.inbound.try_send(Inbound::Text(Bytes::from_static(b"{}")));
                    }
                    if !taken.is_empty() {
                        break;
                    }
                }
                Some(code) => {
                    batches.ended = true;
                    if code != DisconnectCode::CONNECTION_CLOSED {
                        let push = format!(r#"{{"push":{{"disconnect":{}}}}}"#, disconnect_object(code));
                        taken.push(Bytes::from(push));
                    }
                    break;
                }
            }
        }
        if !taken.is_empty() {
            batches.seq += 1;
            batches.last = taken;
        }
        self.respond(hub, id, batches.seq, &batches.last)
    }

    fn respond(&self, hub: &Hub, id: &str, seq: u64, messages: &[Bytes]) -> Response<Body> {
        // Keys in the documented order: session, node, seq, messages.
        let quote = |s: &str| serde_json::to_string(s).expect("a string encodes");
        let head = format!(r#"{{"session":{},"node":{},"seq":{seq},"messages":["#, quote(id), quote(hub.node_id()));
        let mut out = BytesMut::with_capacity(head.len() + 2 + messages.iter().map(|m| m.len() + 1).sum::<usize>());
        out.put_slice(head.as_bytes());
        for (i, message) in messages.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            out.put_slice(message);
        }
        out.put_slice(b"]}");
        bytes_response(StatusCode::OK, "application/json", out.freeze())
    }
}
