//! One loaded plugin version: its `InstancePre`, the hooks it exports, and
//! its bounded pool of warm, initialized instances.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, Func, HasSelf, InstancePre, Lift, Linker, Lower, TypedFunc,
};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::bindings::{
    borrowed, connect_ext_hook, connect_hook, events_hook, lifecycle, lifted, publish_ext_hook, publish_hook,
    refresh_hook, rpc_hook, sub_refresh_hook, subscribe_ext_hook, subscribe_hook, types,
};
use super::host::{HostState, PluginShared};
use super::{Hook, PluginError};
use crate::config::PluginConfig;

/// The WIT package prefix of host interfaces in import names.
const PACKAGE: &str = "switchboard:plugin/";
/// The version of that package (`plugin-sdk/wit`), as export names carry it.
const PACKAGE_VERSION: &str = "0.1.0";

/// The host interface named by an import like `switchboard:plugin/kv@0.1.0`.
pub fn host_interface(import: &str) -> Option<&str> {
    let rest = import.strip_prefix(PACKAGE)?;
    Some(rest.split_once('@').map_or(rest, |(name, _)| name))
}

/// Refuses a component that imports a host interface it was not granted,
/// naming the first such interface.
pub fn check_grants(plugin: &str, imports: &[String], grants: &[String]) -> Result<(), PluginError> {
    for import in imports {
        let Some(interface) = host_interface(import) else { continue };
        if interface == "types" || grants.iter().any(|g| g == interface) {
            continue;
        }
        return Err(PluginError::Ungranted {
            plugin: plugin.to_owned(),
            interface: interface.to_owned(),
            granted: grants.join(", "),
        });
    }
    Ok(())
}

/// Epoch callbacks a call may survive. The first tick lands anywhere within
/// the first tick period, so a call is interrupted at the
/// `ceil(budget / tick) + 1`-th tick: after at least `budget` and at most
/// `budget` plus one tick of running.
fn budget_ticks(budget: Duration, tick: Duration) -> u64 {
    let tick = tick.as_micros().max(1);
    u64::try_from(budget.as_micros().div_ceil(tick)).unwrap_or(u64::MAX)
}

/// The index of function `func` in the exported hook interface `interface`.
fn export_func(pre: &InstancePre<HostState>, interface: &str, func: &str) -> Option<ComponentExportIndex> {
    let component = pre.component();
    let interface = component.get_export_index(None, format!("{PACKAGE}{interface}@{PACKAGE_VERSION}").as_str())?;
    component.get_export_index(Some(&interface), func)
}

/// Export indices of the hooks a component implements.
#[derive(Clone)]
pub struct Hooks {
    lifecycle: lifecycle::GuestIndices,
    pub connect: Option<connect_hook::GuestIndices>,
    pub subscribe: Option<subscribe_hook::GuestIndices>,
    pub publish: Option<publish_hook::GuestIndices>,
    pub rpc: Option<rpc_hook::GuestIndices>,
    pub events: Option<events_hook::GuestIndices>,
    pub connect_ext: Option<connect_ext_hook::GuestIndices>,
    pub refresh: Option<refresh_hook::GuestIndices>,
    pub subscribe_ext: Option<subscribe_ext_hook::GuestIndices>,
    pub sub_refresh: Option<sub_refresh_hook::GuestIndices>,
    pub publish_ext: Option<publish_ext_hook::GuestIndices>,
    /// The publish functions themselves, called with borrowed records (see
    /// [`borrowed`]): the generated bindings would want owned copies.
    on_publish: Option<ComponentExportIndex>,
    on_publish_ext: Option<ComponentExportIndex>,
}

impl Hooks {
    /// Whether the component can serve `hook`, through the plain or the
    /// ext interface.
    pub fn exports(&self, hook: Hook) -> bool {
        match hook {
            Hook::Init => true,
            Hook::Connect => self.connect.is_some() || self.connect_ext.is_some(),
            Hook::Subscribe => self.subscribe.is_some() || self.subscribe_ext.is_some(),
            Hook::Publish => self.publish.is_some() || self.publish_ext.is_some(),
            Hook::Rpc => self.rpc.is_some(),
            Hook::Events => self.events.is_some(),
            Hook::Refresh => self.refresh.is_some(),
            Hook::SubRefresh => self.sub_refresh.is_some(),
        }
    }
}

/// A live instance with its store and typed hook handles.
pub struct Warm {
    store: Store<HostState>,
    connect: Option<connect_hook::Guest>,
    subscribe: Option<subscribe_hook::Guest>,
    rpc: Option<rpc_hook::Guest>,
    events: Option<events_hook::Guest>,
    connect_ext: Option<connect_ext_hook::Guest>,
    refresh: Option<refresh_hook::Guest>,
    subscribe_ext: Option<subscribe_ext_hook::Guest>,
    sub_refresh: Option<sub_refresh_hook::Guest>,
    publish: Option<PublishExport>,
    publish_ext: Option<PublishExtExport>,
}

/// The signature of a hook export called with a borrowed record.
trait Signature {
    type Params<'a>: ComponentNamedList + Lower;
    type Results: ComponentNamedList + Lift;
}

/// `on-publish(message) -> publish-result`.
enum PublishSig {}

impl Signature for PublishSig {
    type Params<'a> = (&'a borrowed::Message<'a>,);
    type Results = (lifted::PublishResult,);
}

/// `on-publish-ext(publish-attempt) -> publish-decision`.
enum PublishExtSig {}

impl Signature for PublishExtSig {
    type Params<'a> = (&'a borrowed::PublishAttempt<'a>,);
    type Results = (lifted::PublishDecision,);
}

/// An instance's export, type-checked against `S` when the instance was
/// made: calls skip wasmtime's per-call check.
struct Checked<S> {
    func: Func,
    _signature: PhantomData<S>,
}

impl<S> Clone for Checked<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Checked<S> {}

impl<S: Signature> Checked<S> {
    fn check(func: Func, store: &Store<HostState>) -> wasmtime::Result<Self> {
        func.typed::<S::Params<'static>, S::Results>(store)?;
        Ok(Self { func, _signature: PhantomData })
    }

    #[allow(unsafe_code)] // reason: the type check ran once in `check`; see SAFETY
    fn typed<'a>(self) -> TypedFunc<S::Params<'a>, S::Results> {
        // SAFETY: `check` is the only constructor and verified these
        // parameter and result types; a lifetime does not change them.
        unsafe { TypedFunc::new_unchecked(self.func) }
    }
}

type PublishExport = Checked<PublishSig>;
type PublishExtExport = Checked<PublishExtSig>;

/// A hook invocation with its guest-side arguments, borrowed from the
/// caller: lowering copies them into the guest and nowhere else. Only
/// references, so the call futures that carry a `Call` across their awaits
/// stay small (a by-value record made each layer copy ~300 bytes).
pub enum Call<'a> {
    Connect(&'a types::ConnectRequest),
    Subscribe(&'a types::SubscribeRequest),
    /// The message and, for `on-publish-ext`, the publisher's connection:
    /// the instance's version picks the hook, so a reload that changes
    /// which publish hook a plugin exports never meets a stale choice.
    Publish(&'a borrowed::Message<'a>, Option<&'a borrowed::Connection<'a>>),
    Rpc(&'a str, &'a [u8]),
    Events(&'a [types::Event]),
    ConnectExt(&'a types::ConnectAttempt),
    Refresh(&'a types::RefreshRequest),
    SubscribeExt(&'a types::SubscribeAttempt),
    SubRefresh(&'a types::SubRefreshRequest),
}

impl Call<'_> {
    pub fn hook(&self) -> Hook {
        match self {
            Self::Connect(_) | Self::ConnectExt(_) => Hook::Connect,
            Self::Subscribe(_) | Self::SubscribeExt(_) => Hook::Subscribe,
            Self::Publish(..) => Hook::Publish,
            Self::Rpc(..) => Hook::Rpc,
            Self::Events(_) => Hook::Events,
            Self::Refresh(_) => Hook::Refresh,
            Self::SubRefresh(_) => Hook::SubRefresh,
        }
    }
}

/// What a hook returned. Kept under ~100 bytes (the rare, large connect
/// decision is boxed; a publish result keeps only what the pipeline reads):
/// it is moved up through every layer of a call, and a larger value is
/// copied with a `memcpy` call at each.
pub enum Returned {
    /// Either connect hook, as the extended decision.
    Connect(Box<types::ConnectDecision>),
    Subscribe(types::Verdict),
    /// Either publish hook.
    Publish(Published),
    Rpc(Result<Vec<u8>, types::RpcError>),
    Events,
    Refresh(types::RefreshDecision),
    SubscribeExt(types::SubscribeDecision),
}

/// A publish hook's decision: `on-publish`'s result or `on-publish-ext`'s
/// decision, with a replacement reduced to the content the pipeline keeps.
pub enum Published {
    Pass,
    Replace(Replacement),
    Drop,
    Deny(types::Reject),
}

/// What a `replace` may change: a plugin may rewrite content, not the
/// channel or the publisher.
pub struct Replacement {
    pub data: Vec<u8>,
    pub tags: Vec<(String, String)>,
    pub content_type: String,
    /// Only `on-publish-ext` can set it.
    pub skip_history: bool,
}

impl Replacement {
    fn of(msg: lifted::Message, skip_history: bool) -> Self {
        Self { data: msg.data, tags: msg.tags, content_type: msg.content_type, skip_history }
    }
}

impl From<lifted::PublishResult> for Published {
    fn from(result: lifted::PublishResult) -> Self {
        match result {
            lifted::PublishResult::Pass => Self::Pass,
            lifted::PublishResult::Replace(m) => Self::Replace(Replacement::of(m, false)),
            lifted::PublishResult::Drop => Self::Drop,
            lifted::PublishResult::Deny(r) => Self::Deny(r),
        }
    }
}

impl From<lifted::PublishDecision> for Published {
    fn from(decision: lifted::PublishDecision) -> Self {
        match decision {
            lifted::PublishDecision::Pass => Self::Pass,
            lifted::PublishDecision::Replace(r) => Self::Replace(Replacement::of(r.msg, r.skip_history)),
            lifted::PublishDecision::Drop => Self::Drop,
            lifted::PublishDecision::Deny(r) => Self::Deny(r),
        }
    }
}

/// `connect-result` as the `connect-decision` it stands for: a plain
/// principal is a session without reply data or meta. The SDK maps the
/// guest's generated types the same way (`From<ConnectResult>`); the two
/// sides' types come from different bindings and cannot share it.
fn connect_decision(result: types::ConnectResult) -> types::ConnectDecision {
    match result {
        types::ConnectResult::Pass => types::ConnectDecision::Pass,
        types::ConnectResult::Allow(p) => types::ConnectDecision::Allow(types::Session {
            user: p.user,
            info: p.info,
            data: None,
            channels: p.channels,
            expires_at: p.expires_at,
            meta: None,
        }),
        types::ConnectResult::Deny(r) => types::ConnectDecision::Deny(r),
    }
}

/// One compiled, linked and initialized version of a plugin.
pub struct Version {
    pub config: PluginConfig,
    pub shared: Arc<PluginShared>,
    pub sha256: String,
    pub hooks: Hooks,
    pre: InstancePre<HostState>,
    init_config: String,
    tick: Duration,
    /// `[plugin_runtime] init_timeout_ms`: instantiation plus `init`.
    init_budget: Duration,
    /// Boxed: an instance is ~250 bytes, and a checkout moves it out of
    /// here into the lease and back; a box moves as one pointer.
    #[allow(clippy::vec_box, reason = "instances move in and out of the pool; see above")]
    idle: parking_lot::Mutex<Vec<Box<Warm>>>,
    permits: Arc<Semaphore>,
}

/// A checked-out instance. Dropping it without [`Version::finish`] discards
/// the instance (its pool slot comes back, the instance does not).
pub struct Lease {
    warm: Option<Box<Warm>>,
    _permit: OwnedSemaphorePermit,
}

impl Version {
    /// Links `component` with the granted host interfaces, detects its hooks
    /// and fills the pool with `pool_size` initialized instances.
    pub async fn load(
        engine: &Engine,
        component: &Component,
        config: &PluginConfig,
        shared: Arc<PluginShared>,
        sha256: String,
        tick: Duration,
        init_budget: Duration,
    ) -> Result<Self, PluginError> {
        let name = config.name.as_str();
        let imports: Vec<String> =
            component.component_type().imports(engine).map(|(import, _)| import.to_owned()).collect();
        check_grants(name, &imports, &config.grants)?;

        let link_err = |e: wasmtime::Error| PluginError::Link { plugin: name.to_owned(), reason: format!("{e:#}") };
        let mut linker: Linker<HostState> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_err)?;
        use super::bindings::switchboard::plugin as host;
        for grant in &config.grants {
            let added = match grant.as_str() {
                "log" => host::log::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s),
                "kv" => host::kv::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s),
                "metrics" => host::metrics::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s),
                "http" => host::http::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s),
                "clock" => host::clock::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s),
                "random" => host::random::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s),
                _ => Ok(()),
            };
            added.map_err(link_err)?;
        }
        host::types::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s).map_err(link_err)?;
        let pre = linker.instantiate_pre(component).map_err(link_err)?;

        let missing = |e: wasmtime::Error| PluginError::MissingExport {
            plugin: name.to_owned(),
            interface: "lifecycle".into(),
            reason: format!("{e:#}"),
        };
        let publish = publish_hook::GuestIndices::new(&pre).ok();
        let publish_ext = publish_ext_hook::GuestIndices::new(&pre).ok();
        // Looked up only where the generated bindings found (and checked)
        // the interface, so both agree on what a plugin exports.
        let on_publish = publish.as_ref().and_then(|_| export_func(&pre, "publish-hook", "on-publish"));
        let on_publish_ext = publish_ext.as_ref().and_then(|_| export_func(&pre, "publish-ext-hook", "on-publish-ext"));
        if publish.is_some() != on_publish.is_some() || publish_ext.is_some() != on_publish_ext.is_some() {
            return Err(PluginError::Link {
                plugin: name.to_owned(),
                reason: format!("publish hook exports not found under version {PACKAGE_VERSION}"),
            });
        }
        let hooks = Hooks {
            lifecycle: lifecycle::GuestIndices::new(&pre).map_err(missing)?,
            connect: connect_hook::GuestIndices::new(&pre).ok(),
            subscribe: subscribe_hook::GuestIndices::new(&pre).ok(),
            publish,
            rpc: rpc_hook::GuestIndices::new(&pre).ok(),
            events: events_hook::GuestIndices::new(&pre).ok(),
            connect_ext: connect_ext_hook::GuestIndices::new(&pre).ok(),
            refresh: refresh_hook::GuestIndices::new(&pre).ok(),
            subscribe_ext: subscribe_ext_hook::GuestIndices::new(&pre).ok(),
            sub_refresh: sub_refresh_hook::GuestIndices::new(&pre).ok(),
            publish_ext,
            on_publish,
            on_publish_ext,
        };
        let init_config = serde_json::to_string(&config.config).map_err(|e| PluginError::Init {
            plugin: name.to_owned(),
            reason: format!("config is not representable as json: {e}"),
        })?;
        let version = Self {
            config: config.clone(),
            shared,
            sha256,
            hooks,
            pre,
            init_config,
            tick,
            init_budget,
            idle: parking_lot::Mutex::new(Vec::with_capacity(config.pool_size)),
            permits: Arc::new(Semaphore::new(config.pool_size)),
        };
        for _ in 0..config.pool_size {
            let warm = version.instantiate().await?;
            version.idle.lock().push(warm);
        }
        Ok(version)
    }

    /// A fresh instance with `init` already run.
    async fn instantiate(&self) -> Result<Box<Warm>, PluginError> {
        let name = &self.config.name;
        let mut store =
            Store::new(self.pre.engine(), HostState::new(self.shared.clone(), self.config.memory_max_bytes));
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if state.ticks_left == 0 {
                state.timed_out = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            state.ticks_left -= 1;
            // Give the executor a turn each tick: a long call never starves
            // the sessions sharing its worker thread.
            Ok(UpdateDeadline::Yield(1))
        });
        store.data_mut().ticks_left = self.budget_ticks(self.init_budget);
        store.set_epoch_deadline(1);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| PluginError::Init { plugin: name.clone(), reason: format!("instantiate: {e:#}") })?;
        let fail = |e: wasmtime::Error| PluginError::Init { plugin: name.clone(), reason: format!("{e:#}") };
        let lifecycle = self.hooks.lifecycle.load(&mut store, &instance).map_err(fail)?;
        let connect = self.hooks.connect.as_ref().map(|h| h.load(&mut store, &instance)).transpose().map_err(fail)?;
        let subscribe =
            self.hooks.subscribe.as_ref().map(|h| h.load(&mut store, &instance)).transpose().map_err(fail)?;
        let func = |store: &mut Store<HostState>, index: &Option<ComponentExportIndex>, name: &str| {
            let Some(index) = index else { return Ok(None) };
            instance
                .get_func(&mut *store, index)
                .map(Some)
                .ok_or_else(|| PluginError::Init { plugin: name.to_owned(), reason: "publish export vanished".into() })
        };
        let publish = func(&mut store, &self.hooks.on_publish, name)?
            .map(|f| PublishExport::check(f, &store))
            .transpose()
            .map_err(fail)?;
        let publish_ext = func(&mut store, &self.hooks.on_publish_ext, name)?
            .map(|f| PublishExtExport::check(f, &store))
            .transpose()
            .map_err(fail)?;
        let rpc = self.hooks.rpc.as_ref().map(|h| h.load(&mut store, &instance)).transpose().map_err(fail)?;
        let events = self.hooks.events.as_ref().map(|h| h.load(&mut store, &instance)).transpose().map_err(fail)?;
        let connect_ext =
            self.hooks.connect_ext.as_ref().map(|h| h.load(&mut store, &instance)).transpose().map_err(fail)?;
        let refresh = self.hooks.refresh.as_ref().map(|h| h.load(&mut store, &instance)).transpose().map_err(fail)?;
        let subscribe_ext =
            self.hooks.subscribe_ext.as_ref().map(|h| h.load(&mut store, &instance)).transpose().map_err(fail)?;
        let sub_refresh =
            self.hooks.sub_refresh.as_ref().map(|h| h.load(&mut store, &instance)).transpose().map_err(fail)?;
        match lifecycle.call_init(&mut store, &self.init_config).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return Err(PluginError::Init { plugin: name.clone(), reason }),
            Err(e) => return Err(fail(e)),
        }
        Ok(Box::new(Warm {
            store,
            connect,
            subscribe,
            publish,
            rpc,
            events,
            connect_ext,
            refresh,
            subscribe_ext,
            sub_refresh,
            publish_ext,
        }))
    }

    fn budget_ticks(&self, budget: Duration) -> u64 {
        budget_ticks(budget, self.tick)
    }

    /// Checks out an instance, waiting up to `timeout_ms` for a free one;
    /// an empty slot (a discarded instance) is refilled with a fresh one.
    pub async fn acquire(&self, hook: Hook) -> Result<Lease, PluginError> {
        let wait = Duration::from_millis(self.config.timeout_ms);
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(wait, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| PluginError::Busy {
                    plugin: self.config.name.clone(),
                    hook,
                    pool_size: self.config.pool_size,
                    waited_ms: self.config.timeout_ms,
                })?
                .map_err(|_| PluginError::Runtime("plugin pool closed".into()))?,
        };
        let idle = self.idle.lock().pop();
        let warm = match idle {
            Some(warm) => warm,
            // Boxed: instantiation is a large future, and every call would
            // otherwise carry (and move) its space.
            None => Box::pin(self.instantiate()).await?,
        };
        Ok(Lease { warm: Some(warm), _permit: permit })
    }

    /// Returns a healthy instance to the pool.
    pub fn finish(&self, mut lease: Lease) {
        if let Some(warm) = lease.warm.take() {
            self.idle.lock().push(warm);
        }
    }

    /// Runs `call` on the leased instance within `timeout_ms` (time spent in
    /// host calls excluded). On error the caller drops the lease, which
    /// discards the instance.
    pub async fn invoke(&self, lease: &mut Lease, call: Call<'_>) -> Result<Returned, PluginError> {
        let hook = call.hook();
        let warm = lease.warm.as_mut().expect("a lease holds its instance until finished");
        let store = &mut warm.store;
        store.data_mut().ticks_left = self.budget_ticks(Duration::from_millis(self.config.timeout_ms));
        store.data_mut().timed_out = false;
        store.set_epoch_deadline(1);
        let not_exported = || PluginError::MissingExport {
            plugin: self.config.name.clone(),
            interface: hook.interface().into(),
            reason: "not exported".into(),
        };
        // Each wasmtime call future is boxed: inline, it would make every
        // caller's future as large, and each async layer above moves it.
        let result = match call {
            Call::Connect(req) => match &warm.connect {
                Some(g) => Box::pin(g.call_on_connect(&mut *store, req))
                    .await
                    .map(|r| Returned::Connect(Box::new(connect_decision(r)))),
                None => return Err(not_exported()),
            },
            Call::Subscribe(req) => match &warm.subscribe {
                Some(g) => Box::pin(g.call_on_subscribe(&mut *store, req)).await.map(Returned::Subscribe),
                None => return Err(not_exported()),
            },
            // `on-publish-ext` when exported (it sees the connection), else `on-publish`.
            Call::Publish(msg, conn) => match (warm.publish_ext, warm.publish) {
                (Some(f), _) => {
                    let attempt = borrowed::PublishAttempt { msg: *msg, conn: conn.copied() };
                    Box::pin(f.typed().call_async(&mut *store, (&attempt,)))
                        .await
                        .map(|(r,)| Returned::Publish(r.into()))
                }
                (None, Some(f)) => {
                    Box::pin(f.typed().call_async(&mut *store, (msg,))).await.map(|(r,)| Returned::Publish(r.into()))
                }
                (None, None) => return Err(not_exported()),
            },
            Call::Rpc(method, data) => match &warm.rpc {
                Some(g) => Box::pin(g.call_on_rpc(&mut *store, method, data)).await.map(Returned::Rpc),
                None => return Err(not_exported()),
            },
            Call::Events(events) => match &warm.events {
                Some(g) => Box::pin(g.call_on_events(&mut *store, events)).await.map(|()| Returned::Events),
                None => return Err(not_exported()),
            },
            Call::ConnectExt(req) => match &warm.connect_ext {
                Some(g) => {
                    Box::pin(g.call_on_connect_ext(&mut *store, req)).await.map(|d| Returned::Connect(Box::new(d)))
                }
                None => return Err(not_exported()),
            },
            Call::Refresh(req) => match &warm.refresh {
                Some(g) => Box::pin(g.call_on_refresh(&mut *store, req)).await.map(Returned::Refresh),
                None => return Err(not_exported()),
            },
            Call::SubscribeExt(req) => match &warm.subscribe_ext {
                Some(g) => Box::pin(g.call_on_subscribe_ext(&mut *store, req)).await.map(Returned::SubscribeExt),
                None => return Err(not_exported()),
            },
            Call::SubRefresh(req) => match &warm.sub_refresh {
                Some(g) => Box::pin(g.call_on_sub_refresh(&mut *store, req)).await.map(Returned::Refresh),
                None => return Err(not_exported()),
            },
        };
        result.map_err(|e| self.fault(hook, store.data().timed_out, e))
    }

    fn fault(&self, hook: Hook, timed_out: bool, error: wasmtime::Error) -> PluginError {
        let plugin = self.config.name.clone();
        // `{:?}` carries the wasm backtrace.
        tracing::warn!(%plugin, %hook, sha256 = %self.sha256, error = ?error, "plugin call failed");
        if timed_out || error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return PluginError::Timeout { plugin, hook, timeout_ms: self.config.timeout_ms };
        }
        let trap = match error.downcast_ref::<Trap>() {
            Some(trap) => format!("{trap}"),
            None => format!("{}", error.root_cause()),
        };
        PluginError::Trap { plugin, hook, trap }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_become_whole_ticks_rounded_up() {
        let ms = Duration::from_millis;
        assert_eq!(budget_ticks(ms(5), ms(1)), 5);
        assert_eq!(budget_ticks(ms(5), ms(2)), 3);
        assert_eq!(budget_ticks(ms(1), ms(5)), 1);
        assert_eq!(budget_ticks(Duration::from_secs(2), ms(1)), 2000);
    }

    #[test]
    fn host_interface_names_strip_package_and_version() {
        assert_eq!(host_interface("switchboard:plugin/kv@0.1.0"), Some("kv"));
        assert_eq!(host_interface("switchboard:plugin/http"), Some("http"));
        assert_eq!(host_interface("wasi:cli/environment@0.2.6"), None);
    }

    #[test]
    fn ungranted_imports_are_refused_by_name() {
        let grants = vec!["log".to_owned(), "kv".to_owned()];
        let imports = vec![
            "wasi:io/streams@0.2.6".to_owned(),
            "switchboard:plugin/types@0.1.0".to_owned(),
            "switchboard:plugin/log@0.1.0".to_owned(),
            "switchboard:plugin/http@0.1.0".to_owned(),
        ];
        let err = check_grants("hook", &imports, &grants).unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugin hook imports switchboard:plugin/http, which is not granted (grants: log, kv)"
        );
        assert!(check_grants("hook", &imports[..3], &grants).is_ok());
    }
}
