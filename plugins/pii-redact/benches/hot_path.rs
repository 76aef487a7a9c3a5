//! The plugin's own cost of `on-publish` on the gateway bench's clean 1 KiB
//! chat message, natively (the wasm call adds the host's overhead on top).
//! Run: `cargo bench --target <host triple> -p pii-redact --bench hot_path`.

use switchboard_plugin_sdk::{Message, Plugin, PublishHook, PublishResult, testing};

fn main() {
    let mut plugin =
        pii_redact::Redactor::init(r#"{"patterns":["email","phone","iban","card","ip"]}"#).expect("bench config");
    let msg = Message::new("chat", testing::chat_message_1kib());
    assert_eq!(testing::chat_message_1kib().len(), 1024);
    let result = plugin.on_publish(msg.clone());
    assert!(result == PublishResult::Pass, "unexpected result {result:?}");
    let ns = testing::median_ns(51, 2000, || msg.clone(), |m| plugin.on_publish(m));
    // The floor: taking the message and dropping it, as a pass-through does.
    let floor = testing::median_ns(51, 2000, || msg.clone(), drop);
    println!("pii-redact on_publish 1 KiB chat message: {ns:.0} ns median (drop only: {floor:.0} ns)");
}
