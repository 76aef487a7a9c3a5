//! Transport: the listener, TLS, HTTP/1.1 serving and WebSocket framing.
//!
//! Owns sockets and nothing else: it routes requests to the WebSocket,
//! HTTP-streaming, SSE, one-way and long-polling transports (each only a
//! framing around one `hub::Session`) or to the server API, enforces the
//! header timeout and buffer limits that keep slow or hostile peers cheap,
//! and runs the two-phase shutdown (stop accepting, close sessions with 3001,
//! drain within `server.shutdown_grace_secs`).

mod emulation;
mod http;
mod join;
mod long_poll;
mod origin;
mod pass_through;
mod stream;
mod tls;
mod uni;
mod uni_websocket;
mod websocket;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, warn};

use crate::config::{Config, ConfigError, LogFormat, OtlpProtocol, TelemetryConfig};
use crate::hub::{Hub, HubError};
use crate::plugin::{PluginError, PluginHost};

pub use emulation::{DeliverError, DeliverFuture, EmulationRouter, LocalRouter};
pub use origin::{forwarded_headers, origin_allowed};

/// The pure request parsers of the HTTP transports. Public only so the fuzz
/// targets in `fuzz/` can reach them: not an API to build on.
#[doc(hidden)]
pub mod parsers {
    use std::collections::BTreeMap;

    pub use super::emulation::{EmulationPost, EmulationRequest, parse_emulation_request};
    pub use super::stream::query_param;
    pub use super::uni::connect_command;

    /// Reads a one-way `Last-Event-ID` into channel → (offset, epoch);
    /// `None` for garbage or more than `max_channels` channels.
    pub fn decode_last_event_id(id: &str, max_channels: usize) -> Option<BTreeMap<String, (u64, String)>> {
        super::uni::Positions::decode(id, max_channels).map(super::uni::Positions::into_map)
    }

    /// Encodes positions as a one-way `Last-Event-ID`.
    pub fn encode_last_event_id(positions: BTreeMap<String, (u64, String)>) -> String {
        super::uni::Positions::from_map(positions).encode()
    }
}

/// Why the server could not start or run. Always the operator's to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("server.tls: {0}")]
    Tls(String),
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
}

/// The telemetry settings of `[telemetry]`, before `OTEL_*` overrides.
pub fn telemetry_settings(config: &TelemetryConfig) -> crate::telemetry::Settings {
    use crate::telemetry::{LogFormat as Format, Protocol, Settings};
    Settings {
        endpoint: config.endpoint.trim_end_matches('/').to_owned(),
        protocol: match config.protocol {
            OtlpProtocol::Grpc => Protocol::Grpc,
            OtlpProtocol::HttpProtobuf => Protocol::HttpProtobuf,
        },
        headers: config.headers.clone(),
        sampling_ratio: config.sampling_ratio,
        service_name: config.service_name.clone(),
        resource_attributes: config.resource_attributes.clone(),
        trace_export_interval: Duration::from_millis(config.trace_export_interval_ms),
        max_queued_spans: config.max_queued_spans,
        metrics_export_interval: Duration::from_millis(config.metrics_export_interval_ms),
        export_timeout: Duration::from_millis(config.export_timeout_ms),
        prometheus_enabled: config.prometheus_enabled,
        log_format: match config.log_format {
            LogFormat::Pretty => Format::Pretty,
            LogFormat::Json => Format::Json,
        },
        log_filter: None,
    }
}

/// [`telemetry_settings`] with the process's `OTEL_*` variables applied;
/// each variable it could not use is logged.
pub fn telemetry_settings_from_env(config: &TelemetryConfig) -> crate::telemetry::Settings {
    let mut settings = telemetry_settings(config);
    for ignored in settings.apply_env(|name| std::env::var(name).ok()) {
        warn!(variable = %ignored, "ignoring an OTEL_* variable");
    }
    settings
}

/// Spawns `future` on `tracker` inside a span naming the task, so every
/// task shows up in logs by role and shutdown can wait for all of them.
pub(crate) fn spawn_named<F>(tracker: &TaskTracker, name: &'static str, future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    tracker.spawn(future.instrument(tracing::debug_span!("task", name)));
}

/// Reloads every plugin on SIGHUP; a plugin whose new file fails keeps its
/// running version.
async fn reload_on_sighup(plugins: PluginHost, shutdown: CancellationToken) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; plugin reload only on file change");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(()) = hangup.recv() => {
                info!("SIGHUP: reloading plugins");
                let failed = plugins.reload_all().await.len();
                info!(failed, "plugin reload done");
            }
        }
    }
}

/// Serves until `shutdown` resolves, then drains. Binding is the caller's
/// job, so tests pass a listener on `127.0.0.1:0`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    // Callers may build a Config in code (tests, embedders): never serve an
    // unchecked one.
    config.validate()?;
    let config = Arc::new(config);
    let root = CancellationToken::new();
    let tracker = TaskTracker::new();
    // Every plugin is compiled (or loaded from cache) and initialized before
    // the listener serves anything: a broken plugin fails the start.
    let plugins = if config.plugins.is_empty() {
        None
    } else {
        Some(PluginHost::from_config(&config, root.child_token(), &tracker).await?)
    };
    // Metrics belong to this gateway instance (several run in one test
    // process); spans go through the process-wide subscriber (main.rs).
    let metrics = crate::telemetry::Metrics::new(&telemetry_settings_from_env(&config.telemetry))?;
    if let Some(plugins) = &plugins {
        plugins.attach_metrics(metrics.clone());
    }
    let hub = Hub::with_telemetry(config.clone(), root.child_token(), plugins.clone(), metrics)?;
    if let Some(plugins) = plugins {
        spawn_named(&tracker, "plugin-reload-on-sighup", reload_on_sighup(plugins, root.child_token()));
    }
    let tls = tls::acceptor(&config.server.tls)?;
    let emulation = emulation::Emulation::for_hub(&hub);
    let pass_through = Arc::new(pass_through::PassThrough::from_config(&config));
    spawn_named(&tracker, "hub-maintenance", hub.clone().run_maintenance(Duration::from_secs(30)));
    spawn_named(&tracker, "hub-engine", hub.clone().run_engine());
    info!(addr = %listener.local_addr()?, tls = tls.is_some(), "switchboard listening");

    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = http::Connection {
                        hub: hub.clone(),
                        tracker: tracker.clone(),
                        tls: tls.clone(),
                        emulation: emulation.clone(),
                        pass_through: pass_through.clone(),
                    };
                    spawn_named(&tracker, "http-connection", conn.serve(stream, peer));
                }
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }

    info!("shutting down: closing sessions with 3001");
    drop(listener);
    root.cancel();
    tracker.close();
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(remaining = tracker.len(), grace_secs = grace.as_secs(), "shutdown grace elapsed; abandoning tasks");
    }
    Ok(())
}
