//! Telemetry: process-wide logging setup. A leaf: imports no other module.
//! (OTLP traces and metrics arrive with the observability work.)

use tracing_subscriber::EnvFilter;

/// Installs the global `tracing` subscriber: human-readable lines on stderr,
/// filtered by `RUST_LOG` (default `info`; an unparsable value is reported
/// and ignored). Safe to call more than once: later calls do nothing.
pub fn init_logging() {
    let (filter, rejected) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, None),
        Err(error) => (EnvFilter::new("info"), std::env::var_os("RUST_LOG").map(|_| error)),
    };
    let installed = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    if let (Ok(()), Some(error)) = (installed, rejected) {
        tracing::warn!(%error, "ignoring RUST_LOG, logging at info");
    }
}
