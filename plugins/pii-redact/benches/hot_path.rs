//! The plugin's own cost of `on-publish` on the gateway bench's clean 1 KiB
//! chat message, natively (the wasm call adds the host's overhead on top).
//! Run: `cargo bench --target <host triple> -p pii-redact --bench hot_path`.

use switchboard_plugin_sdk::{Plugin, PublishResult, testing};

fn main() {
    let mut plugin =
        pii_redact::Redactor::init(r#"{"patterns":["email","phone","iban","card","ip"]}"#).expect("bench config");
    testing::print_publish_hot_path("pii-redact", &mut plugin, |r| *r == PublishResult::Pass);
}
