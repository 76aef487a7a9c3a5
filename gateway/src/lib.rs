//! Switchboard: a self-hosted realtime gateway.
pub mod api;
pub mod broker;
pub mod channel;
pub mod config;
pub mod history;
pub mod hub;
pub mod presence;
pub mod protocol;
pub mod telemetry;
pub mod transport;

// TEMP placeholder so `main.rs` compiles on the config branch: the real
// `run` and `Error` come from the hub/transport work. Drop this commit when
// merging that.
/// Placeholder for the gateway's top-level error.
#[derive(Debug, thiserror::Error)]
pub enum Error {}

/// Placeholder for the library entry point: waits for `shutdown`, serves
/// nothing.
pub async fn run(
    config: config::Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    drop((config, listener));
    shutdown.await;
    Ok(())
}
