//! Test guest: a publish hook whose behaviour is picked by its config
//! (`{"mode": "..."}`), with no host imports at all.
//!
//! - `upper`: replace the data with its ASCII-uppercased bytes.
//! - `drop` / `deny`: drop, or deny with 4003 "denied by transform".
//! - `count`: replace the data with `{"calls":N}`, N counting calls on this
//!   instance (so a test can tell a fresh instance from a reused one); data
//!   containing `panic` panics (a trap) first.
//! - `echo`: replace the data with what the guest received, as JSON
//!   (`channel`, `user`, `client`, `tags`, `content_type`, `traceparent`,
//!   `tracestate`, `data`), so a test can check each lowered field.
//! - `pass` (default): publish unchanged.
//!
//! The other hooks behave the same in every mode:
//! - connect: user `mallory` is denied (4030); user `alias` becomes
//!   `renamed` with info `{"via":"plugin"}`; anyone else passes.
//! - subscribe: channels containing `secret` are denied (4031).
//! - rpc: `echo` returns its data; `events` returns the event counts the
//!   events hook stored in kv; other methods are 104.
//! - events: counts each event kind in kv (`events:<kind>`).

wit_bindgen::generate!({
    path: "../../../plugin-sdk/wit",
    world: "plugin",
});

use exports::switchboard::plugin::{connect_hook, events_hook, lifecycle, publish_hook, rpc_hook, subscribe_hook};
use switchboard::plugin::kv;
use switchboard::plugin::types::{
    ConnectRequest, ConnectResult, Event, EventKind, Message, Principal, PublishResult, Reject, RpcError,
    SubscribeRequest, Verdict,
};

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static MODE: OnceLock<String> = OnceLock::new();
static CALLS: AtomicU64 = AtomicU64::new(0);

struct Transform;

impl lifecycle::Guest for Transform {
    fn init(config: String) -> Result<(), String> {
        let mode = ["upper", "drop", "deny", "count", "echo"]
            .into_iter()
            .find(|m| config.contains(&format!("\"mode\":\"{m}\"")))
            .unwrap_or("pass");
        MODE.set(mode.to_owned()).map_err(|_| "init called twice".to_owned())
    }
}

impl publish_hook::Guest for Transform {
    fn on_publish(msg: Message) -> PublishResult {
        match MODE.get().map(String::as_str) {
            Some("upper") => PublishResult::Replace(Message { data: msg.data.to_ascii_uppercase(), ..msg }),
            Some("drop") => PublishResult::Drop,
            Some("deny") => PublishResult::Deny(Reject { code: 4003, reason: "denied by transform".into() }),
            Some("count") => {
                if msg.data.windows(5).any(|w| w == b"panic") {
                    panic!("asked to panic");
                }
                let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
                PublishResult::Replace(Message { data: format!("{{\"calls\":{n}}}").into_bytes(), ..msg })
            }
            Some("echo") => PublishResult::Replace(Message { data: echo(&msg).into_bytes(), ..msg }),
            _ => PublishResult::Pass,
        }
    }
}

/// A JSON string (the guest has no JSON library; `{:?}` escapes `"` and
/// `\\` as JSON does, which is all the echo test sends).
fn json_str(s: &str) -> String {
    format!("{s:?}")
}

fn echo(msg: &Message) -> String {
    let (user, client) = msg
        .publisher
        .as_ref()
        .map_or(("null".to_owned(), "null".to_owned()), |p| (json_str(&p.user), json_str(&p.client)));
    let (traceparent, tracestate) = msg
        .trace
        .as_ref()
        .map_or(("null".to_owned(), "null".to_owned()), |t| (json_str(&t.traceparent), json_str(&t.tracestate)));
    let tags: Vec<String> = msg.tags.iter().map(|(k, v)| format!("[{},{}]", json_str(k), json_str(v))).collect();
    format!(
        r#"{{"channel":{},"user":{user},"client":{client},"tags":[{}],"content_type":{},"traceparent":{traceparent},"tracestate":{tracestate},"data":{}}}"#,
        json_str(&msg.channel),
        tags.join(","),
        json_str(&msg.content_type),
        json_str(&String::from_utf8_lossy(&msg.data)),
    )
}

impl connect_hook::Guest for Transform {
    fn on_connect(req: ConnectRequest) -> ConnectResult {
        match req.user.as_str() {
            "mallory" => ConnectResult::Deny(Reject { code: 4030, reason: "mallory is banned".into() }),
            "alias" => ConnectResult::Allow(Principal {
                user: "renamed".into(),
                info: Some(b"{\"via\":\"plugin\"}".to_vec()),
                channels: Vec::new(),
                expires_at: None,
            }),
            _ => ConnectResult::Pass,
        }
    }
}

impl subscribe_hook::Guest for Transform {
    fn on_subscribe(req: SubscribeRequest) -> Verdict {
        if req.channel.contains("secret") {
            Verdict::Deny(Reject { code: 4031, reason: "secret channel".into() })
        } else {
            Verdict::Allow
        }
    }
}

const KINDS: [&str; 9] =
    ["connect", "disconnect", "subscribe", "unsubscribe", "publish", "join", "leave", "occupied", "vacated"];

fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Connect => KINDS[0],
        EventKind::Disconnect => KINDS[1],
        EventKind::Subscribe => KINDS[2],
        EventKind::Unsubscribe => KINDS[3],
        EventKind::Publish => KINDS[4],
        EventKind::Join => KINDS[5],
        EventKind::Leave => KINDS[6],
        EventKind::ChannelOccupied => KINDS[7],
        EventKind::ChannelVacated => KINDS[8],
    }
}

impl rpc_hook::Guest for Transform {
    fn on_rpc(method: String, data: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        match method.as_str() {
            "echo" => Ok(data),
            "events" => {
                let counts: Vec<String> = KINDS
                    .iter()
                    .map(|k| format!("\"{k}\":{}", kv::incr(&format!("events:{k}"), 0, None)))
                    .collect();
                Ok(format!("{{{}}}", counts.join(",")).into_bytes())
            }
            _ => Err(RpcError { code: 104, message: "method not found".into() }),
        }
    }
}

impl events_hook::Guest for Transform {
    fn on_events(events: Vec<Event>) {
        for event in events {
            kv::incr(&format!("events:{}", kind_name(event.kind)), 1, None);
        }
    }
}

export!(Transform);
