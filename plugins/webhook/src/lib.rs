//! `webhook`: sends lifecycle events to a backend as signed JSON batches,
//! with retries and a dead-letter log.
//!
//! Each `on-events` call turns its events (filtered by `kinds`) into batches
//! of at most `max_batch_events` and appends them to a queue in `kv`, then
//! sends due batches from the head of the queue, oldest first. A batch is
//! `POST`ed as `{"id": "…", "events": [ … ]}` with
//! - `X-Switchboard-Timestamp`: Unix seconds of this attempt;
//! - `X-Switchboard-Signature`: lowercase hex HMAC-SHA256 with `secret` over
//!   `"{timestamp}.{body}"`.
//!
//! - `traceparent` (and `tracestate`): the W3C trace context of the first
//!   event in the batch that has one (a publish carries the publication's),
//!   so the request joins that trace; every event also names its own
//!   `traceparent` in the body.
//!
//! The body (and its `id`) is the same on every attempt, so the backend can
//! drop duplicates after a timeout it did answer.
//!
//! Retries: a 2xx is delivered; a transport error, 408, 429 or 5xx is
//! retried; any other status is final. The first `immediate_retries`
//! retries go out at once; after those a retry waits
//! `min(backoff_max_ms, backoff_base_ms * 2^(attempt-1))`, half of it
//! fixed and half random (host `random`). The guest never sleeps: that
//! would burn the hook's time budget while holding an instance. The retry
//! time is stored with the batch and the batch goes out on the first
//! `on-events` call after it; the host should deliver events, or an empty
//! batch as a tick, often enough. Until then later batches wait behind it,
//! so the backend sees batches in order. After `max_attempts` (or a final
//! status) the batch goes to the dead-letter log: a host log line at error
//! level with the whole batch, and `kv` key `dead:{seq}` for
//! `dead_letter_ttl_secs`. Beyond `max_pending_batches` the oldest waiting
//! batch is dead-lettered. One call sends at most `max_sends_per_call`
//! requests.
//!
//! The queue assumes one `on-events` call at a time (the host's event
//! batcher is serial; use `pool_size = 1`). Imports: `http`, `kv`, `log`,
//! `clock`, `random`.
//!
//! ```toml
//! allowed_hosts = ["hooks.example.com"]
//! config = { url = "https://hooks.example.com/switchboard", secret = "change-me",
//!            kinds = ["publish", "join", "leave"], max_batch_events = 100,
//!            max_attempts = 5, backoff_base_ms = 500, backoff_max_ms = 60000,
//!            timeout_ms = 2000, max_pending_batches = 1000, max_sends_per_call = 10,
//!            immediate_retries = 0, dead_letter_ttl_secs = 604800 }
//! ```

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use switchboard_plugin_sdk::{Event, EventKind, EventsHook, Plugin, clock, http, kv, log, random};

/// The plugin config (the TOML `config` table).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Backend URL (http or https). Required.
    pub url: String,
    /// HMAC key. Required.
    pub secret: String,
    /// Event kinds sent (`connect`, `channel-occupied`, ...); empty means
    /// all. Default empty.
    pub kinds: Vec<String>,
    /// Default 100.
    pub max_batch_events: usize,
    /// Attempts per batch, the first included (1 = no retry). Default 5.
    pub max_attempts: u32,
    /// Default 500.
    pub backoff_base_ms: u64,
    /// Default 60000.
    pub backoff_max_ms: u64,
    /// Per request. Default 2000.
    pub timeout_ms: u32,
    /// Queue bound, in batches. Default 1000.
    pub max_pending_batches: u64,
    /// Requests one call may make. Default 10.
    pub max_sends_per_call: u32,
    /// Retries sent at once, before the first backoff, for brief blips;
    /// they count toward `max_attempts` and `max_sends_per_call`. Default 0.
    pub immediate_retries: u32,
    /// How long dead letters stay in kv, in seconds. Default 604800.
    pub dead_letter_ttl_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: String::new(),
            secret: String::new(),
            kinds: Vec::new(),
            max_batch_events: 100,
            max_attempts: 5,
            backoff_base_ms: 500,
            backoff_max_ms: 60_000,
            timeout_ms: 2_000,
            max_pending_batches: 1_000,
            max_sends_per_call: 10,
            immediate_retries: 0,
            dead_letter_ttl_secs: 604_800,
        }
    }
}

const KINDS: [EventKind; 9] = [
    EventKind::Connect,
    EventKind::Disconnect,
    EventKind::Subscribe,
    EventKind::Unsubscribe,
    EventKind::Publish,
    EventKind::Join,
    EventKind::Leave,
    EventKind::ChannelOccupied,
    EventKind::ChannelVacated,
];

/// A batch waiting in kv.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    id: String,
    body: String,
    attempts: u32,
    next_at_ms: u64,
    /// Defaulted: batches queued by an older version have none.
    #[serde(default)]
    traceparent: String,
    #[serde(default)]
    tracestate: String,
}

const HEAD: &str = "q:head";
const TAIL: &str = "q:tail";

fn batch_key(seq: i64) -> String {
    format!("q:{seq}")
}

#[derive(Debug)]
pub struct Webhook {
    config: Config,
    kinds: Vec<EventKind>,
}

/// Lowercase hex HMAC-SHA256 of `"{timestamp}.{body}"`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The wait before retry number `attempt` (1 = first retry): exponential,
/// capped, half of it random.
pub fn backoff_ms(base_ms: u64, max_ms: u64, attempt: u32, random: u64) -> u64 {
    let full = base_ms.saturating_mul(1u64 << attempt.saturating_sub(1).min(32)).min(max_ms);
    let half = full / 2;
    half + if full - half == 0 { 0 } else { random % (full - half + 1) }
}

/// One event as JSON: `data` inline when it is JSON, else `data_base64`.
pub fn event_json(event: &Event) -> Value {
    let mut out = json!({
        "kind": event.kind.as_str(),
        "at_ms": event.at_ms,
        "client": event.client,
        "user": event.user,
        "channel": event.channel,
    });
    if event.kind == EventKind::Disconnect {
        out["code"] = json!(event.code);
    }
    if !event.data.is_empty() {
        match serde_json::from_slice::<Value>(&event.data) {
            Ok(data) => out["data"] = data,
            Err(_) => out["data_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&event.data)),
        }
    }
    if let Some(trace) = event.trace.as_ref().filter(|t| !t.traceparent.is_empty()) {
        out["traceparent"] = json!(trace.traceparent);
    }
    out
}

/// How one attempt went.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Delivered,
    Retry(String),
    Final(String),
}

impl Webhook {
    pub fn from_config(json: &str) -> Result<Self, String> {
        let config: Config = serde_json::from_str(json).map_err(|e| format!("webhook config: {e}"))?;
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(format!("webhook config: url {:?} must be an http or https URL", config.url));
        }
        if config.secret.is_empty() {
            return Err("webhook config: secret is required".to_owned());
        }
        for (key, zero) in [
            ("max_batch_events", config.max_batch_events == 0),
            ("max_attempts", config.max_attempts == 0),
            ("max_pending_batches", config.max_pending_batches == 0),
            ("max_sends_per_call", config.max_sends_per_call == 0),
        ] {
            if zero {
                return Err(format!("webhook config: {key} must be at least 1"));
            }
        }
        let mut kinds = Vec::new();
        for (i, name) in config.kinds.iter().enumerate() {
            let kind = KINDS
                .into_iter()
                .find(|k| k.as_str() == name)
                .ok_or_else(|| format!("webhook config: kinds[{i}]: unknown event kind {name:?}"))?;
            kinds.push(kind);
        }
        if kinds.is_empty() {
            kinds = KINDS.to_vec();
        }
        Ok(Webhook { config, kinds })
    }

    /// Queues the events as batches.
    fn enqueue(&self, events: &[Event], now_ms: u64) {
        let wanted: Vec<&Event> = events.iter().filter(|e| self.kinds.contains(&e.kind)).collect();
        for chunk in wanted.chunks(self.config.max_batch_events) {
            let seq = kv::incr(TAIL, 1, None);
            let id = format!("{:016x}{:08x}", random::next_u64(), seq);
            let json: Vec<Value> = chunk.iter().map(|e| event_json(e)).collect();
            let body = json!({ "id": id, "events": json }).to_string();
            let trace = chunk.iter().filter_map(|e| e.trace.as_ref()).find(|t| !t.traceparent.is_empty());
            let pending = Pending {
                id,
                body,
                attempts: 0,
                next_at_ms: now_ms,
                traceparent: trace.map(|t| t.traceparent.clone()).unwrap_or_default(),
                tracestate: trace.map(|t| t.tracestate.clone()).unwrap_or_default(),
            };
            self.store(seq, &pending);
        }
        let mut head = kv::incr(HEAD, 0, None);
        while kv::incr(TAIL, 0, None) - head > self.config.max_pending_batches as i64 {
            if let Some(pending) = self.load(head + 1) {
                self.dead_letter(head + 1, &pending, "queue full");
            }
            head = self.advance();
        }
    }

    fn store(&self, seq: i64, pending: &Pending) {
        let ttl_ms = self.config.dead_letter_ttl_secs.saturating_mul(1000);
        let value = serde_json::to_vec(pending).expect("a pending batch serializes");
        kv::set(&batch_key(seq), &value, Some(ttl_ms));
    }

    fn load(&self, seq: i64) -> Option<Pending> {
        kv::get(&batch_key(seq)).and_then(|bytes| serde_json::from_slice(&bytes).ok())
    }

    /// Drops the head batch; returns the new head.
    fn advance(&self) -> i64 {
        let head = kv::incr(HEAD, 1, None);
        kv::set(&batch_key(head), b"", Some(1));
        head
    }

    fn dead_letter(&self, seq: i64, pending: &Pending, why: &str) {
        log::error!(
            "webhook: dead letter: batch {} after {} attempts ({why}); body: {}",
            pending.id,
            pending.attempts,
            pending.body
        );
        let ttl_ms = self.config.dead_letter_ttl_secs.saturating_mul(1000);
        kv::set(&format!("dead:{seq}"), pending.body.as_bytes(), Some(ttl_ms));
    }

    fn send(&self, pending: &Pending, now_ms: u64) -> Sent {
        let body = &pending.body;
        let timestamp = now_ms / 1000;
        let signature = sign(self.config.secret.as_bytes(), timestamp, body.as_bytes());
        let mut req = http::Request::new("POST", &self.config.url)
            .header("content-type", "application/json")
            .header("x-switchboard-timestamp", &timestamp.to_string())
            .header("x-switchboard-signature", &signature);
        if !pending.traceparent.is_empty() {
            req = req.header("traceparent", &pending.traceparent);
            if !pending.tracestate.is_empty() {
                req = req.header("tracestate", &pending.tracestate);
            }
        }
        let req = req.body(body.as_bytes().to_vec()).timeout_ms(self.config.timeout_ms);
        match http::fetch(&req) {
            Ok(resp) if resp.is_success() => Sent::Delivered,
            Ok(resp) if resp.status == 408 || resp.status == 429 || resp.status >= 500 => {
                Sent::Retry(format!("status {}", resp.status))
            }
            Ok(resp) => Sent::Final(format!("status {}", resp.status)),
            Err(error) => Sent::Retry(error),
        }
    }

    /// Sends due batches from the head until one must wait, the queue is
    /// empty or the per-call budget is spent.
    fn drain(&self) {
        let mut sends = 0;
        loop {
            let head = kv::incr(HEAD, 0, None);
            if head >= kv::incr(TAIL, 0, None) || sends >= self.config.max_sends_per_call {
                return;
            }
            let seq = head + 1;
            let Some(mut pending) = self.load(seq) else {
                // Expired while waiting (longer than its TTL).
                self.advance();
                continue;
            };
            let now = clock::now_ms();
            if pending.next_at_ms > now {
                return;
            }
            sends += 1;
            pending.attempts += 1;
            match self.send(&pending, now) {
                Sent::Delivered => {
                    self.advance();
                }
                Sent::Final(why) => {
                    self.dead_letter(seq, &pending, &why);
                    self.advance();
                }
                Sent::Retry(why) if pending.attempts >= self.config.max_attempts => {
                    self.dead_letter(seq, &pending, &why);
                    self.advance();
                }
                Sent::Retry(why) if pending.attempts <= self.config.immediate_retries => {
                    log::warn!(
                        "webhook: batch {} attempt {} failed ({why}); retrying now",
                        pending.id,
                        pending.attempts
                    );
                    self.store(seq, &pending);
                }
                Sent::Retry(why) => {
                    let wait = backoff_ms(
                        self.config.backoff_base_ms,
                        self.config.backoff_max_ms,
                        pending.attempts,
                        random::next_u64(),
                    );
                    log::warn!(
                        "webhook: batch {} attempt {} failed ({why}); retry in {wait} ms",
                        pending.id,
                        pending.attempts
                    );
                    pending.next_at_ms = now + wait;
                    self.store(seq, &pending);
                    return;
                }
            }
        }
    }
}

impl Plugin for Webhook {
    fn init(config: &str) -> Result<Self, String> {
        Webhook::from_config(config)
    }
}

impl EventsHook for Webhook {
    fn on_events(&mut self, events: Vec<Event>) {
        self.enqueue(&events, clock::now_ms());
        self.drain();
    }
}

switchboard_plugin_sdk::export_plugin!(Webhook, hooks: [events]);

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use switchboard_plugin_sdk::{TraceContext, testing};

    use super::*;

    const SECRET: &str = "s3cret";

    fn webhook(extra: &str) -> Webhook {
        let config = format!(
            r#"{{ "url": "http://127.0.0.1:9/hook", "secret": "{SECRET}", "backoff_base_ms": 100,
                 "backoff_max_ms": 1000, "max_attempts": 4 {extra} }}"#
        );
        Webhook::from_config(&config).unwrap()
    }

    fn publish(n: u64) -> Event {
        let mut e = Event::new(EventKind::Publish, n);
        e.channel = "chat".into();
        e.data = format!(r#"{{"n":{n}}}"#).into_bytes();
        e
    }

    /// The backend: answers with the scripted statuses (then 200), and keeps
    /// the bodies it accepted after checking their signatures.
    fn backend(script: Vec<u16>) -> Rc<RefCell<Vec<Value>>> {
        let accepted = Rc::new(RefCell::new(Vec::new()));
        let seen = accepted.clone();
        let mut script = script.into_iter();
        testing::set_http_handler(move |req| {
            let header = |name: &str| req.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
            let ts: u64 = header("x-switchboard-timestamp").parse().unwrap();
            assert_eq!(header("x-switchboard-signature"), sign(SECRET.as_bytes(), ts, &req.body));
            assert_eq!(ts, clock::now_ms() / 1000);
            assert_eq!(req.method, "POST");
            assert_eq!(req.url, "http://127.0.0.1:9/hook");
            let status = script.next().unwrap_or(200);
            if status == 200 {
                seen.borrow_mut().push(serde_json::from_slice(&req.body).unwrap());
            }
            Ok(testing::response(status))
        });
        accepted
    }

    fn delivered(accepted: &Rc<RefCell<Vec<Value>>>) -> Vec<u64> {
        accepted
            .borrow()
            .iter()
            .flat_map(|b| b["events"].as_array().unwrap().clone())
            .map(|e| e["data"]["n"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn signature_matches_rfc_4231_vector() {
        // RFC 4231 test case 2 with the data split as "{timestamp}.{body}".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(want, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        mac.update(b"12.{}");
        let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sign(b"k", 12, b"{}"), want);
    }

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        assert_eq!(backoff_ms(100, 1000, 1, 0), 50);
        assert_eq!(backoff_ms(100, 1000, 1, 50), 100);
        assert_eq!(backoff_ms(100, 1000, 2, 0), 100);
        assert_eq!(backoff_ms(100, 1000, 3, 7), 207);
        assert_eq!(backoff_ms(100, 1000, 10, 0), 500);
        assert_eq!(backoff_ms(100, 1000, 60, u64::MAX), 500 + u64::MAX % 501);
        for r in 0..1000 {
            assert!((200..=400).contains(&backoff_ms(100, 1000, 3, r)));
        }
    }

    #[test]
    fn retries_with_backoff_then_delivers_everything_once_in_order() {
        testing::reset();
        let mut hook = webhook("");
        let accepted = backend(vec![503, 500]);
        hook.on_events(vec![publish(1), publish(2)]);
        assert_eq!(testing::requests().len(), 1, "one attempt, then wait");
        // Not due yet: the new batch queues behind the failed one.
        hook.on_events(vec![publish(3)]);
        assert_eq!(testing::requests().len(), 1);
        testing::advance_ms(100);
        hook.on_events(vec![]);
        assert_eq!(testing::requests().len(), 2, "second attempt after the first backoff");
        testing::advance_ms(200);
        hook.on_events(vec![publish(4)]);
        assert_eq!(delivered(&accepted), vec![1, 2, 3, 4]);
        let ids: Vec<String> = accepted.borrow().iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(ids.len(), 3);
        let bodies: Vec<Vec<u8>> = testing::requests().into_iter().map(|r| r.body).collect();
        assert_eq!(bodies[0], bodies[2], "a retry resends the same body");
        let warnings = testing::logs().into_iter().filter(|(l, _)| *l == log::Level::Warn).count();
        assert_eq!(warnings, 2);
        hook.on_events(vec![]);
        assert_eq!(testing::requests().len(), 5, "nothing left to send");
    }

    #[test]
    fn immediate_retries_go_out_in_the_same_call() {
        testing::reset();
        let mut hook = webhook(r#", "immediate_retries": 2"#);
        let accepted = backend(vec![503, 503, 503]);
        hook.on_events(vec![publish(1)]);
        assert_eq!(testing::requests().len(), 3, "first attempt and two immediate retries");
        assert!(delivered(&accepted).is_empty());
        hook.on_events(vec![publish(2)]);
        assert_eq!(testing::requests().len(), 3, "then the backoff applies");
        testing::advance_ms(1000);
        hook.on_events(vec![]);
        assert_eq!(delivered(&accepted), vec![1, 2]);
    }

    #[test]
    fn dead_letters_after_max_attempts_and_on_final_status() {
        testing::reset();
        let mut hook = webhook("");
        let accepted = backend(vec![500, 500, 500, 500, 400]);
        hook.on_events(vec![publish(1)]);
        for _ in 0..3 {
            testing::advance_ms(1000);
            hook.on_events(vec![]);
        }
        assert_eq!(testing::requests().len(), 4);
        let errors: Vec<String> =
            testing::logs().into_iter().filter(|(l, _)| *l == log::Level::Error).map(|(_, m)| m).collect();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("after 4 attempts (status 500)"), "{}", errors[0]);
        assert!(errors[0].contains(r#""data":{"n":1}"#), "the log line carries the batch: {}", errors[0]);
        let dead: Value = serde_json::from_slice(&testing::kv_get("dead:1").unwrap()).unwrap();
        assert_eq!(dead["events"][0]["data"]["n"], 1);
        // 400 is final at once; the next batch still goes out.
        hook.on_events(vec![publish(2)]);
        hook.on_events(vec![publish(3)]);
        assert_eq!(delivered(&accepted), vec![3]);
        assert!(testing::kv_get("dead:2").is_some());
    }

    #[test]
    fn transport_errors_retry_and_queue_is_bounded() {
        testing::reset();
        let mut hook = webhook(r#", "max_pending_batches": 2, "max_batch_events": 2"#);
        hook.on_events(vec![publish(1)]);
        assert_eq!(testing::requests().len(), 1, "no handler: transport error");
        // Three more batches (5 events in chunks of 2): the queue keeps two.
        hook.on_events((2..=6).map(publish).collect());
        let accepted = backend(vec![]);
        testing::advance_ms(1000);
        hook.on_events(vec![]);
        assert_eq!(delivered(&accepted), vec![4, 5, 6], "batch 3 (4, 5) waited for its retry");
        assert!(testing::kv_get("dead:1").is_some());
        assert!(testing::kv_get("dead:2").is_some());
    }

    #[test]
    fn kinds_filter_and_event_json() {
        testing::reset();
        let mut hook = webhook(r#", "kinds": ["disconnect", "channel-occupied"]"#);
        let accepted = backend(vec![]);
        let mut bye = Event::new(EventKind::Disconnect, 5);
        bye.user = "alice".into();
        bye.code = 3000;
        bye.data = vec![0xff];
        bye.trace = Some(TraceContext { traceparent: "00-abc-def-01".into(), tracestate: String::new() });
        hook.on_events(vec![publish(1), bye, Event::new(EventKind::ChannelOccupied, 6)]);
        hook.on_events(vec![publish(2)]);
        let bodies = accepted.borrow();
        assert_eq!(bodies.len(), 1, "a call with no wanted events sends nothing");
        assert_eq!(
            bodies[0]["events"],
            json!([
                { "kind": "disconnect", "at_ms": 5, "client": "", "user": "alice", "channel": "", "code": 3000,
                  "data_base64": "/w==", "traceparent": "00-abc-def-01" },
                { "kind": "channel-occupied", "at_ms": 6, "client": "", "user": "", "channel": "" }
            ])
        );
    }

    #[test]
    fn batches_carry_the_first_traced_events_traceparent() {
        testing::reset();
        let mut hook = webhook("");
        let _accepted = backend(vec![]);
        let mut traced = publish(2);
        traced.trace = Some(TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: "k=v".into(),
        });
        hook.on_events(vec![publish(1), traced]);
        hook.on_events(vec![publish(3)]);
        let requests = testing::requests();
        let header = |i: usize, name: &str| requests[i].headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(
            header(0, "traceparent").as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert_eq!(header(0, "tracestate").as_deref(), Some("k=v"));
        assert_eq!(header(1, "traceparent"), None, "an untraced batch sends no traceparent");
    }

    #[test]
    fn sends_per_call_are_bounded() {
        testing::reset();
        let mut hook = webhook(r#", "max_batch_events": 1, "max_sends_per_call": 3"#);
        let accepted = backend(vec![]);
        hook.on_events((1..=5).map(publish).collect());
        assert_eq!(delivered(&accepted), vec![1, 2, 3]);
        hook.on_events(vec![]);
        assert_eq!(delivered(&accepted), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn config_is_validated() {
        for (json, want) in [
            (r#"{ "secret": "s" }"#, "url \"\" must be an http or https URL"),
            (r#"{ "url": "http://h" }"#, "secret is required"),
            (r#"{ "url": "http://h", "secret": "s", "max_attempts": 0 }"#, "max_attempts must be at least 1"),
            (r#"{ "url": "http://h", "secret": "s", "kinds": ["publish", "nope"] }"#, "kinds[1]: unknown event kind"),
            (r#"{ "url": "http://h", "secret": "s", "retries": 1 }"#, "unknown field `retries`"),
        ] {
            let error = Webhook::from_config(json).unwrap_err();
            assert!(error.contains(want), "{error}");
        }
    }
}
