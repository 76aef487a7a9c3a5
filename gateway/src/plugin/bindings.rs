//! The host's one binding of `switchboard:plugin@0.1.0` (`plugin-sdk/wit`).
//!
//! Hook exports are called asynchronously so that `http.fetch` can await on
//! the host while the guest blocks; every other import is a plain host call.

wasmtime::component::bindgen!({
    // `extended-plugin` is `plugin` plus the session-aware hooks; a component
    // built against `plugin` alone links against it unchanged.
    world: "extended-plugin",
    path: "../plugin-sdk/wit",
    imports: {
        "switchboard:plugin/http.fetch": async,
    },
    exports: { default: async },
});

pub use self::switchboard::plugin::types;
pub use exports::switchboard::plugin::{
    connect_ext_hook, connect_hook, events_hook, lifecycle, publish_ext_hook, publish_hook, refresh_hook, rpc_hook,
    sub_refresh_hook, subscribe_ext_hook, subscribe_hook,
};
