//! Telemetry: process-wide logging setup. A leaf: imports no other module.
//! (OTLP traces and metrics arrive with the observability work.)

use tracing_subscriber::EnvFilter;

/// Installs the global `tracing` subscriber: human-readable lines, filtered
/// by `RUST_LOG` (default `info`). Safe to call more than once.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
}
