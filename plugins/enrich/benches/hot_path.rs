//! The plugin's own cost of `on-publish` on the gateway bench's clean 1 KiB
//! chat message, natively (the wasm call adds the host's overhead on top).
//! Run: `cargo bench --target <host triple> -p enrich --bench hot_path`.

use switchboard_plugin_sdk::{Plugin, PublishResult, testing};

fn main() {
    let mut plugin = enrich::Enrich::init(r#"{"rename":{"msg":"text"},"drop":["debug"],"schema":{"required":["msg"],"properties":{"msg":{"type":"string","max_length":2000}}}}"#).expect("bench config");
    testing::print_publish_hot_path("enrich", &mut plugin, |r| matches!(r, PublishResult::Replace(_)));
}
