//! One trait per hook. A plugin type implements [`Plugin`] and the hook
//! traits it needs; [`crate::export_plugin!`] wires them to the exports.

use crate::{
    ConnectAttempt, ConnectDecision, ConnectRequest, ConnectResult, Event, Message, PublishAttempt, PublishDecision,
    PublishResult, RefreshDecision, RefreshRequest, RpcError, SubRefreshRequest, SubscribeAttempt, SubscribeDecision,
    SubscribeRequest, Verdict,
};

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

    /// The session-aware connect (transport, protocol, forwarded headers,
    /// requested channels in; reply data, meta, disconnect out). The host
    /// calls this one. Default: [`ConnectHook::on_connect`] on the common
    /// fields.
    fn on_connect_ext(&mut self, req: ConnectAttempt) -> ConnectDecision {
        self.on_connect(req.to_request()).into()
    }
}

/// `on-refresh`: a connection reached the expiry a connect hook gave it.
pub trait RefreshHook {
    /// Default: [`RefreshDecision::Expire`] (closed with 3005).
    fn on_refresh(&mut self, req: RefreshRequest) -> RefreshDecision {
        let _ = req;
        RefreshDecision::Expire
    }
}

/// `on-sub-refresh`: a subscription reached the expiry a subscribe hook
/// gave it.
pub trait SubRefreshHook {
    /// Default: [`RefreshDecision::Expire`] (unsubscribed with 2501).
    fn on_sub_refresh(&mut self, req: SubRefreshRequest) -> RefreshDecision {
        let _ = req;
        RefreshDecision::Expire
    }
}

/// `on-subscribe`: allows or denies a subscription.
pub trait SubscribeHook {
    /// Default: [`Verdict::Allow`].
    fn on_subscribe(&mut self, req: SubscribeRequest) -> Verdict {
        let _ = req;
        defaults::subscribe()
    }

    /// The session-aware subscribe (connection meta in; info, reply data,
    /// expiry and option overrides out). The host calls this one. Default:
    /// [`SubscribeHook::on_subscribe`].
    fn on_subscribe_ext(&mut self, req: SubscribeAttempt) -> SubscribeDecision {
        let plain = SubscribeRequest {
            client: req.conn.client,
            user: req.conn.user,
            channel: req.channel,
            data: req.data,
            trace: req.trace,
        };
        self.on_subscribe(plain).into()
    }
}

/// `on-publish`: inspects, rewrites, drops or refuses a publication.
pub trait PublishHook {
    /// Default: [`PublishResult::Pass`].
    fn on_publish(&mut self, msg: Message) -> PublishResult {
        let _ = msg;
        defaults::publish()
    }

    /// The session-aware publish (publisher connection in; `skip_history`
    /// out). The host calls this one. Default: [`PublishHook::on_publish`].
    fn on_publish_ext(&mut self, req: PublishAttempt) -> PublishDecision {
        self.on_publish(req.msg).into()
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
