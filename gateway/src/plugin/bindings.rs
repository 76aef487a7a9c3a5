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

/// Borrowed twins of the records the publish hooks take. The generated
/// `types::Message` owns its strings and bytes, so lowering one costs a copy
/// of the payload on the host before the copy into the guest; these lower
/// the same canonical-ABI layout straight from the caller's message.
/// `instance.rs` type-checks the export against them once per instance.
pub mod borrowed {
    use wasmtime::component::{ComponentType, Lower};

    #[derive(ComponentType, Lower, Clone, Copy)]
    #[component(record)]
    pub struct Publisher<'a> {
        pub user: &'a str,
        pub client: &'a str,
    }

    #[derive(ComponentType, Lower, Clone, Copy)]
    #[component(record)]
    pub struct TraceContext<'a> {
        pub traceparent: &'a str,
        pub tracestate: &'a str,
    }

    #[derive(ComponentType, Lower, Clone, Copy)]
    #[component(record)]
    pub struct Message<'a> {
        pub channel: &'a str,
        pub publisher: Option<Publisher<'a>>,
        pub data: &'a [u8],
        pub tags: &'a [(String, String)],
        #[component(name = "content-type")]
        pub content_type: &'a str,
        pub trace: TraceContext<'a>,
    }

    #[derive(ComponentType, Lower, Clone, Copy)]
    #[component(record)]
    pub struct Connection<'a> {
        pub client: &'a str,
        pub user: &'a str,
        pub transport: &'a str,
        pub protocol: &'a str,
        pub meta: &'a [u8],
    }

    #[derive(ComponentType, Lower, Clone, Copy)]
    #[component(record)]
    pub struct PublishAttempt<'a> {
        pub msg: Message<'a>,
        pub conn: Option<Connection<'a>>,
    }
}
