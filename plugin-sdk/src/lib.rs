//! Guest-side SDK for Switchboard plugins: the one place that runs
//! `wit_bindgen::generate!` over the `switchboard:plugin@0.1.0` contract in
//! `plugin-sdk/wit/`, and the idiomatic layer on top of it.
//!
//! It owns the plugin-facing types (re-exported from the generated bindings
//! with a few constructors), one trait per hook, safe wrappers around the
//! host imports, and [`export_plugin!`]. It must not depend on tokio,
//! wasmtime or anything host-side: it is compiled into every plugin.
//!
//! It also builds for the host target so plugin logic can be unit-tested
//! natively: there the host imports are served by in-memory doubles that
//! tests drive through [`testing`].
//!
//! ```ignore
//! use switchboard_plugin_sdk::{export_plugin, Message, Plugin, PublishHook, PublishResult};
//!
//! struct Shout;
//!
//! impl Plugin for Shout {
//!     fn init(_config: &str) -> Result<Self, String> {
//!         Ok(Shout)
//!     }
//! }
//!
//! impl PublishHook for Shout {
//!     fn on_publish(&mut self, mut msg: Message) -> PublishResult {
//!         msg.data.make_ascii_uppercase();
//!         PublishResult::Replace(msg)
//!     }
//! }
//!
//! export_plugin!(Shout, hooks: [publish]);
//! ```

// Lets the generated code and the exported macros name this crate by the
// same path inside it and in plugin crates.
extern crate self as switchboard_plugin_sdk;

mod hooks;
mod host;
mod types;

#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use hooks::{
    ConnectHook, EventsHook, Plugin, PublishHook, RefreshHook, RpcHook, SubRefreshHook, SubscribeHook, defaults,
};
pub use host::{clock, http, kv, log, metrics, random};
pub use types::{
    ConnectAttempt, ConnectDecision, ConnectRequest, ConnectResult, Connection, Event, EventKind, Message, Principal,
    PublishAttempt, PublishDecision, PublishResult, PublishRewrite, Publisher, RefreshDecision, RefreshGrant,
    RefreshRequest, Reject, RpcError, Session, SubRefreshRequest, SubscribeAttempt, SubscribeDecision,
    SubscribeRequest, Subscription, TraceContext, Verdict,
};

/// The raw `wit-bindgen` output. Plugin code should not need it; it is public
/// because [`export_plugin!`] expands in the plugin crate and names it.
#[doc(hidden)]
pub mod bindings {
    // Nothing hand-written lives here: the generated canonical-ABI glue is
    // the SDK's only unsafe code (the workspace forbids it elsewhere).
    wit_bindgen::generate!({
        world: "extended-plugin",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "switchboard_plugin_sdk::bindings",
        runtime_path: "switchboard_plugin_sdk::__wit_bindgen::rt",
        additional_derives: [PartialEq, Eq],
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Exports a plugin type as the component's implementation of the
/// `switchboard:plugin` world.
///
/// `export_plugin!(MyPlugin, hooks: [connect, subscribe, publish, rpc, events, refresh, sub_refresh])`
/// lists the hooks the type implements; it must implement [`Plugin`] and the
/// matching hook trait for each listed hook ([`ConnectHook`],
/// [`SubscribeHook`], [`PublishHook`], [`RpcHook`], [`EventsHook`],
/// [`RefreshHook`], [`SubRefreshHook`]). A listed connect, subscribe or
/// publish hook is exported through both its plain and its ext interface
/// (the host calls the ext one; its default method bridges to the plain one).
///
/// The component still exports every hook interface of the world (that is
/// how `wit-bindgen` builds it): hooks that are not listed answer with the
/// pass-through defaults of [`defaults`]. The host calls a hook only when the
/// plugin appears in that hook's pipeline, so an unlisted hook costs nothing
/// unless an operator puts the plugin in the wrong pipeline, where it then
/// behaves as if absent (except `rpc`, which answers "not implemented").
///
/// One instance of the type lives per WebAssembly instance: [`Plugin::init`]
/// builds it from the config and every hook gets `&mut` access to it. A hook
/// called before `init` traps, which the host handles as a plugin fault.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty $(, hooks: [$($hook:ident),* $(,)?])? $(,)?) => {
        const _: () = {
            $($($crate::__check_hook!($hook);)*)?

            struct __SwitchboardExports;

            ::std::thread_local! {
                static __SWITCHBOARD_PLUGIN: ::std::cell::RefCell<::std::option::Option<$ty>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            #[allow(dead_code, reason = "unused when the plugin lists no hooks")]
            fn __switchboard_with<R>(f: impl FnOnce(&mut $ty) -> R) -> R {
                __SWITCHBOARD_PLUGIN.with_borrow_mut(|plugin| {
                    f(plugin.as_mut().expect("switchboard plugin hook called before init"))
                })
            }

            impl $crate::bindings::exports::switchboard::plugin::lifecycle::Guest for __SwitchboardExports {
                fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    let plugin = <$ty as $crate::Plugin>::init(&config)?;
                    __SWITCHBOARD_PLUGIN.with_borrow_mut(|slot| *slot = ::std::option::Option::Some(plugin));
                    ::std::result::Result::Ok(())
                }
            }

            $crate::__export_hook!(connect; $ty; $($($hook)*)?);
            $crate::__export_hook!(subscribe; $ty; $($($hook)*)?);
            $crate::__export_hook!(publish; $ty; $($($hook)*)?);
            $crate::__export_hook!(rpc; $ty; $($($hook)*)?);
            $crate::__export_hook!(events; $ty; $($($hook)*)?);
            $crate::__export_hook!(refresh; $ty; $($($hook)*)?);
            $crate::__export_hook!(sub_refresh; $ty; $($($hook)*)?);

            #[cfg(target_arch = "wasm32")]
            $crate::bindings::__export_plugin_world!(__SwitchboardExports with_types_in $crate::bindings);
        };
    };
}

/// Refuses a hook name `export_plugin!` does not know.
#[doc(hidden)]
#[macro_export]
macro_rules! __check_hook {
    (connect) => {};
    (subscribe) => {};
    (publish) => {};
    (rpc) => {};
    (events) => {};
    (refresh) => {};
    (sub_refresh) => {};
    ($other:ident) => {
        ::std::compile_error!(::std::concat!(
            "unknown hook `",
            ::std::stringify!($other),
            "`: expected connect, subscribe, publish, rpc, events, refresh or sub_refresh"
        ));
    };
}

/// Implements one hook interface: through the plugin's trait when the hook is
/// listed, with the pass-through default otherwise.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_hook {
    // Listed: call the plugin.
    (connect; $ty:ty; connect $($rest:ident)*) => {
        impl $crate::bindings::exports::switchboard::plugin::connect_hook::Guest for __SwitchboardExports {
            fn on_connect(req: $crate::ConnectRequest) -> $crate::ConnectResult {
                __switchboard_with(|p| <$ty as $crate::ConnectHook>::on_connect(p, req))
            }
        }
        impl $crate::bindings::exports::switchboard::plugin::connect_ext_hook::Guest for __SwitchboardExports {
            fn on_connect_ext(req: $crate::ConnectAttempt) -> $crate::ConnectDecision {
                __switchboard_with(|p| <$ty as $crate::ConnectHook>::on_connect_ext(p, req))
            }
        }
    };
    (subscribe; $ty:ty; subscribe $($rest:ident)*) => {
        impl $crate::bindings::exports::switchboard::plugin::subscribe_hook::Guest for __SwitchboardExports {
            fn on_subscribe(req: $crate::SubscribeRequest) -> $crate::Verdict {
                __switchboard_with(|p| <$ty as $crate::SubscribeHook>::on_subscribe(p, req))
            }
        }
        impl $crate::bindings::exports::switchboard::plugin::subscribe_ext_hook::Guest for __SwitchboardExports {
            fn on_subscribe_ext(req: $crate::SubscribeAttempt) -> $crate::SubscribeDecision {
                __switchboard_with(|p| <$ty as $crate::SubscribeHook>::on_subscribe_ext(p, req))
            }
        }
    };
    (publish; $ty:ty; publish $($rest:ident)*) => {
        impl $crate::bindings::exports::switchboard::plugin::publish_hook::Guest for __SwitchboardExports {
            fn on_publish(msg: $crate::Message) -> $crate::PublishResult {
                __switchboard_with(|p| <$ty as $crate::PublishHook>::on_publish(p, msg))
            }
        }
        impl $crate::bindings::exports::switchboard::plugin::publish_ext_hook::Guest for __SwitchboardExports {
            fn on_publish_ext(req: $crate::PublishAttempt) -> $crate::PublishDecision {
                __switchboard_with(|p| <$ty as $crate::PublishHook>::on_publish_ext(p, req))
            }
        }
    };
    (refresh; $ty:ty; refresh $($rest:ident)*) => {
        impl $crate::bindings::exports::switchboard::plugin::refresh_hook::Guest for __SwitchboardExports {
            fn on_refresh(req: $crate::RefreshRequest) -> $crate::RefreshDecision {
                __switchboard_with(|p| <$ty as $crate::RefreshHook>::on_refresh(p, req))
            }
        }
    };
    (sub_refresh; $ty:ty; sub_refresh $($rest:ident)*) => {
        impl $crate::bindings::exports::switchboard::plugin::sub_refresh_hook::Guest for __SwitchboardExports {
            fn on_sub_refresh(req: $crate::SubRefreshRequest) -> $crate::RefreshDecision {
                __switchboard_with(|p| <$ty as $crate::SubRefreshHook>::on_sub_refresh(p, req))
            }
        }
    };
    (rpc; $ty:ty; rpc $($rest:ident)*) => {
        impl $crate::bindings::exports::switchboard::plugin::rpc_hook::Guest for __SwitchboardExports {
            fn on_rpc(
                method: ::std::string::String,
                data: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, $crate::RpcError> {
                __switchboard_with(|p| <$ty as $crate::RpcHook>::on_rpc(p, &method, data))
            }
        }
    };
    (events; $ty:ty; events $($rest:ident)*) => {
        impl $crate::bindings::exports::switchboard::plugin::events_hook::Guest for __SwitchboardExports {
            fn on_events(events: ::std::vec::Vec<$crate::Event>) {
                __switchboard_with(|p| <$ty as $crate::EventsHook>::on_events(p, events))
            }
        }
    };
    // Not this one: look further down the list.
    ($want:ident; $ty:ty; $other:ident $($rest:ident)*) => {
        $crate::__export_hook!($want; $ty; $($rest)*);
    };
    // Not listed: pass-through defaults.
    (connect; $ty:ty;) => {
        impl $crate::bindings::exports::switchboard::plugin::connect_hook::Guest for __SwitchboardExports {
            fn on_connect(_req: $crate::ConnectRequest) -> $crate::ConnectResult {
                $crate::defaults::connect()
            }
        }
        impl $crate::bindings::exports::switchboard::plugin::connect_ext_hook::Guest for __SwitchboardExports {
            fn on_connect_ext(_req: $crate::ConnectAttempt) -> $crate::ConnectDecision {
                $crate::defaults::connect().into()
            }
        }
    };
    (subscribe; $ty:ty;) => {
        impl $crate::bindings::exports::switchboard::plugin::subscribe_hook::Guest for __SwitchboardExports {
            fn on_subscribe(_req: $crate::SubscribeRequest) -> $crate::Verdict {
                $crate::defaults::subscribe()
            }
        }
        impl $crate::bindings::exports::switchboard::plugin::subscribe_ext_hook::Guest for __SwitchboardExports {
            fn on_subscribe_ext(_req: $crate::SubscribeAttempt) -> $crate::SubscribeDecision {
                $crate::defaults::subscribe().into()
            }
        }
    };
    (publish; $ty:ty;) => {
        impl $crate::bindings::exports::switchboard::plugin::publish_hook::Guest for __SwitchboardExports {
            fn on_publish(_msg: $crate::Message) -> $crate::PublishResult {
                $crate::defaults::publish()
            }
        }
        impl $crate::bindings::exports::switchboard::plugin::publish_ext_hook::Guest for __SwitchboardExports {
            fn on_publish_ext(_req: $crate::PublishAttempt) -> $crate::PublishDecision {
                $crate::defaults::publish().into()
            }
        }
    };
    (refresh; $ty:ty;) => {
        impl $crate::bindings::exports::switchboard::plugin::refresh_hook::Guest for __SwitchboardExports {
            fn on_refresh(_req: $crate::RefreshRequest) -> $crate::RefreshDecision {
                $crate::RefreshDecision::Expire
            }
        }
    };
    (sub_refresh; $ty:ty;) => {
        impl $crate::bindings::exports::switchboard::plugin::sub_refresh_hook::Guest for __SwitchboardExports {
            fn on_sub_refresh(_req: $crate::SubRefreshRequest) -> $crate::RefreshDecision {
                $crate::RefreshDecision::Expire
            }
        }
    };
    (rpc; $ty:ty;) => {
        impl $crate::bindings::exports::switchboard::plugin::rpc_hook::Guest for __SwitchboardExports {
            fn on_rpc(
                method: ::std::string::String,
                _data: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, $crate::RpcError> {
                $crate::defaults::rpc(&method)
            }
        }
    };
    (events; $ty:ty;) => {
        impl $crate::bindings::exports::switchboard::plugin::events_hook::Guest for __SwitchboardExports {
            fn on_events(_events: ::std::vec::Vec<$crate::Event>) {}
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::{Message, Plugin, PublishHook, PublishResult};

    struct Upper;

    impl Plugin for Upper {
        fn init(config: &str) -> Result<Self, String> {
            if config.is_empty() { Err("config must be JSON".into()) } else { Ok(Upper) }
        }
    }

    impl PublishHook for Upper {
        fn on_publish(&mut self, mut msg: Message) -> PublishResult {
            msg.data.make_ascii_uppercase();
            PublishResult::Replace(msg)
        }
    }

    // The glue must type-check on the host too (only the final export is
    // wasm-only); one listed hook, four defaulted.
    crate::export_plugin!(Upper, hooks: [publish]);

    struct Nothing;

    impl Plugin for Nothing {
        fn init(_config: &str) -> Result<Self, String> {
            Ok(Nothing)
        }
    }

    mod all_defaults {
        crate::export_plugin!(super::Nothing);
    }

    #[test]
    fn upper_replaces() {
        let mut plugin = Upper::init("{}").unwrap();
        assert!(Upper::init("").is_err());
        let out = plugin.on_publish(Message::new("c", b"hi".to_vec()));
        assert_eq!(out, PublishResult::Replace(Message::new("c", b"HI".to_vec())));
    }
}
