//! One trait per hook. A plugin type implements [`Plugin`] and the hook
//! traits it needs; [`crate::export_plugin!`] wires them to the exports.

use crate::{ConnectRequest, ConnectResult, Event, Message, PublishResult, RpcError, SubscribeRequest, Verdict};

/// The lifecycle: builds the plugin's state from its config.
///
/// `init` runs once per WebAssembly instance, before any hook, with the
/// plugin's TOML `config` table encoded as JSON (`{}` when absent). An `Err`
/// makes the host refuse the plugin, so validate everything here and name
/// the offending key in the message.
pub trait Plugin: Sized + 'static {
    fn init(config: &str) -> Result<Self, String>;
}

/// `on-connect`: decides who a connecting client is.
pub trait ConnectHook {
    /// Default: [`ConnectResult::Pass`], the gateway's own decision stands.
    fn on_connect(&mut self, req: ConnectRequest) -> ConnectResult {
        let _ = req;
        defaults::connect()
    }
}

/// `on-subscribe`: allows or denies a subscription.
pub trait SubscribeHook {
    /// Default: [`Verdict::Allow`].
    fn on_subscribe(&mut self, req: SubscribeRequest) -> Verdict {
        let _ = req;
        defaults::subscribe()
    }
}

/// `on-publish`: inspects, rewrites, drops or refuses a publication.
pub trait PublishHook {
    /// Default: [`PublishResult::Pass`].
    fn on_publish(&mut self, msg: Message) -> PublishResult {
        let _ = msg;
        defaults::publish()
    }
}

/// `on-rpc`: answers an RPC call from a client.
pub trait RpcHook {
    /// Default: an error, code 404 "rpc method not implemented".
    fn on_rpc(&mut self, method: &str, data: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        let _ = data;
        defaults::rpc(method)
    }
}

/// `on-events`: a batch of lifecycle events, delivered off the hot path.
pub trait EventsHook {
    /// Default: ignores the batch.
    fn on_events(&mut self, events: Vec<Event>) {
        let _ = events;
    }
}

/// What a hook answers when the plugin does not implement it: pass-through
/// everywhere, except `rpc`, which has nothing to pass to.
pub mod defaults {
    use crate::{ConnectResult, PublishResult, RpcError, Verdict};

    /// The code of the default `on-rpc` error.
    pub const RPC_NOT_IMPLEMENTED: u32 = 404;

    pub fn connect() -> ConnectResult {
        ConnectResult::Pass
    }

    pub fn subscribe() -> Verdict {
        Verdict::Allow
    }

    pub fn publish() -> PublishResult {
        PublishResult::Pass
    }

    pub fn rpc(method: &str) -> Result<Vec<u8>, RpcError> {
        Err(RpcError { code: RPC_NOT_IMPLEMENTED, message: format!("rpc method {method:?} not implemented") })
    }
}
