//! Switchboard: a self-hosted realtime gateway that speaks the Centrifugo
//! client protocol and server API.
//!
//! # Layout
//! - [`config`]: the TOML schema, defaults and validation. A leaf.
//! - [`protocol`]: wire types and the JSON codec. Pure, no I/O. A leaf.
//! - [`telemetry`]: traces, metrics and logs (OpenTelemetry, Prometheus). A leaf.
//! - [`channel`]: channel names, the subscriber registry, per-connection outboxes.
//! - [`history`]: per-channel streams with offsets and epochs.
//! - [`presence`]: who is in which channel.
//! - [`chat`]: the pure model of message interactions (edits, reactions,
//!   threads, read marks) folded from a channel stream, and user status.
//! - [`broker`]: engines that order, store and deliver publications.
//! - [`plugin`]: sandboxed WASM hooks (wasmtime); uses `config` only.
//! - [`hub`]: node state and the session state machine; the one place that
//!   combines the modules above.
//! - [`api`]: the server HTTP API and `GET /metrics`.
//! - [`transport`]: sockets, TLS, HTTP and WebSocket framing, and [`run`].
//!
//! Dependencies point down this list; only `transport` and `api` touch
//! sockets.

pub mod api;
pub mod broker;
pub mod channel;
pub mod chat;
pub mod config;
pub mod history;
pub mod hub;
pub mod plugin;
pub mod presence;
pub mod protocol;
pub mod telemetry;
pub mod transport;

pub use transport::{Error, run};
