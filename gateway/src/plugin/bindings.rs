//! The host's one binding of `switchboard:plugin@0.1.0` (`plugin-sdk/wit`).
//!
//! Hook exports are called asynchronously so that `http.fetch` can await on
//! the host while the guest blocks; every other import is a plain host call.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../plugin-sdk/wit",
    imports: {
        "switchboard:plugin/http.fetch": async,
    },
    exports: { default: async },
});

pub use self::switchboard::plugin::types;
pub use exports::switchboard::plugin::{connect_hook, events_hook, lifecycle, publish_hook, rpc_hook, subscribe_hook};
