//! Test guest: misbehaves in on-publish as its config (`{"mode": "..."}`)
//! says, for the host's hostile-plugin tests. It imports `log` and `http`,
//! so loading it without the `http` grant must fail.
//!
//! - `loop`: spin forever.
//! - `grow`: allocate 1 MiB chunks until memory runs out.
//! - `fetch`: `http.fetch` the URL in the message data; deny with 4002 and
//!   the host's error text when it fails, else replace the data with the
//!   response body.
//! - anything else: pass. Data `"ok"` always passes, so one instance can
//!   prove it is still healthy.

wit_bindgen::generate!({
    path: "../../../plugin-sdk/wit",
    world: "publish-plugin",
});

use exports::switchboard::plugin::{lifecycle, publish_hook};
use switchboard::plugin::http;
use switchboard::plugin::log;
use switchboard::plugin::types::{Message, PublishResult, Reject};

use std::sync::OnceLock;

static MODE: OnceLock<String> = OnceLock::new();

struct Hostile;

impl lifecycle::Guest for Hostile {
    fn init(config: String) -> Result<(), String> {
        let mode = ["loop", "grow", "fetch"]
            .into_iter()
            .find(|m| config.contains(&format!("\"mode\":\"{m}\"")))
            .unwrap_or("pass");
        log::log(log::Level::Info, &format!("hostile guest mode {mode}"));
        MODE.set(mode.to_owned()).map_err(|_| "init called twice".to_owned())
    }
}

impl publish_hook::Guest for Hostile {
    fn on_publish(msg: Message) -> PublishResult {
        if msg.data == b"\"ok\"" {
            return PublishResult::Pass;
        }
        match MODE.get().map(String::as_str) {
            Some("loop") => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            Some("grow") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            Some("fetch") => {
                let url = String::from_utf8_lossy(&msg.data).trim_matches('"').to_owned();
                let req = http::Request { method: "GET".into(), url, headers: Vec::new(), body: Vec::new(), timeout_ms: 1000 };
                match http::fetch(&req) {
                    Ok(resp) => PublishResult::Replace(Message { data: resp.body, ..msg }),
                    Err(e) => PublishResult::Deny(Reject { code: 4002, reason: e }),
                }
            }
            _ => PublishResult::Pass,
        }
    }
}

export!(Hostile);
