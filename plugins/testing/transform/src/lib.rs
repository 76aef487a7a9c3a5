//! Test guest: a publish hook whose behaviour is picked by its config
//! (`{"mode": "..."}`), with no host imports at all.
//!
//! - `upper`: replace the data with its ASCII-uppercased bytes.
//! - `drop` / `deny`: drop, or deny with 4003 "denied by transform".
//! - `count`: replace the data with `{"calls":N}`, N counting calls on this
//!   instance (so a test can tell a fresh instance from a reused one); data
//!   containing `panic` panics (a trap) first.
//! - `pass` (default): publish unchanged.

wit_bindgen::generate!({
    path: "../../../plugin-sdk/wit",
    world: "publish-plugin",
});

use exports::switchboard::plugin::{lifecycle, publish_hook};
use switchboard::plugin::types::{Message, PublishResult, Reject};

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static MODE: OnceLock<String> = OnceLock::new();
static CALLS: AtomicU64 = AtomicU64::new(0);

struct Transform;

impl lifecycle::Guest for Transform {
    fn init(config: String) -> Result<(), String> {
        let mode = ["upper", "drop", "deny", "count"]
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
            _ => PublishResult::Pass,
        }
    }
}

export!(Transform);
