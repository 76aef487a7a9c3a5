//! The plugin's own cost of `on-publish` on the gateway bench's clean 1 KiB
//! chat message, and on the load tool's 1 KiB payload (a 19-digit timestamp
//! outside any string), natively (the wasm call adds the host's overhead
//! on top). Run: `cargo bench --target <host triple> -p pii-redact --bench hot_path`.

use switchboard_plugin_sdk::{Message, Plugin, PublishHook, PublishResult, testing};

fn main() {
    let mut plugin =
        pii_redact::Redactor::init(r#"{"patterns":["email","phone","iban","card","ip"]}"#).expect("bench config");
    testing::print_publish_hot_path("pii-redact", &mut plugin, |r| *r == PublishResult::Pass);

    // `loadgen`'s payload: {"lg":[SEQ,SENT_NS],"p":"xx…"}.
    let head = r#"{"lg":[48213,1732870000123456789],"p":""#;
    let data = format!("{head}{}\"}}", "x".repeat(1024 - head.len() - 2));
    let msg = Message::new("chat", data.into_bytes());
    assert_eq!(plugin.on_publish(msg.clone()), PublishResult::Pass);
    let ns = testing::median_ns(51, 2000, || msg.clone(), |m| plugin.on_publish(m));
    println!("pii-redact on_publish 1 KiB load-tool payload: {ns:.0} ns median");
}
