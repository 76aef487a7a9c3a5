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
