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
        pub trace: Option<TraceContext<'a>>,
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

/// Lifting twins of the publish hooks' results. The pipeline keeps only a
/// replacement's content (data, tags, content type); the fields it ignores
/// (the channel a plugin may not change, the publisher, the trace context)
/// are lifted as unchecked ranges of guest memory instead of host strings,
/// and never read. `instance.rs` type-checks the export against them once
/// per instance.
pub mod lifted {
    use wasmtime::component::{ComponentType, Lift, WasmStr};

    use super::types::Reject;

    #[allow(dead_code, reason = "the fields the pipeline ignores are lifted for their layout only")]
    #[derive(ComponentType, Lift)]
    #[component(record)]
    pub struct Publisher {
        pub user: WasmStr,
        pub client: WasmStr,
    }

    #[allow(dead_code, reason = "the fields the pipeline ignores are lifted for their layout only")]
    #[derive(ComponentType, Lift)]
    #[component(record)]
    pub struct TraceContext {
        pub traceparent: WasmStr,
        pub tracestate: WasmStr,
    }

    #[allow(dead_code, reason = "the fields the pipeline ignores are lifted for their layout only")]
    #[derive(ComponentType, Lift)]
    #[component(record)]
    pub struct Message {
        pub channel: WasmStr,
        pub publisher: Option<Publisher>,
        pub data: Vec<u8>,
        pub tags: Vec<(String, String)>,
        #[component(name = "content-type")]
        pub content_type: String,
        pub trace: Option<TraceContext>,
    }

    #[allow(clippy::large_enum_variant, reason = "lifted per call and matched at once, never stored")]
    #[derive(ComponentType, Lift)]
    #[component(variant)]
    pub enum PublishResult {
        #[component(name = "pass")]
        Pass,
        #[component(name = "replace")]
        Replace(Message),
        #[component(name = "drop")]
        Drop,
        #[component(name = "deny")]
        Deny(Reject),
    }

    #[derive(ComponentType, Lift)]
    #[component(record)]
    pub struct PublishRewrite {
        pub msg: Message,
        #[component(name = "skip-history")]
        pub skip_history: bool,
    }

    #[allow(clippy::large_enum_variant, reason = "lifted per call and matched at once, never stored")]
    #[derive(ComponentType, Lift)]
    #[component(variant)]
    pub enum PublishDecision {
        #[component(name = "pass")]
        Pass,
        #[component(name = "replace")]
        Replace(PublishRewrite),
        #[component(name = "drop")]
        Drop,
        #[component(name = "deny")]
        Deny(Reject),
    }
}
