//! Engines: where publications are ordered, stored and delivered.
//!
//! An engine assigns each publication its place in the channel stream and
//! hands it to the node's [`Delivery`] in that order. The memory engine does
//! both under one per-channel lock, which is what makes every subscriber see
//! the same order and lets a subscribe read history and join the live flow
//! with no gap and no duplicate. (The Redis engine arrives with multi-node
//! support and keeps the same contract.)

mod memory;

pub use memory::MemoryBroker;

use crate::protocol::{ClientInfo, Publication};

/// What the node does with messages an engine delivers. Called while the
/// engine holds the channel's lock: implementations must not block or call
/// back into the engine for the same channel.
pub trait Delivery: Send + Sync + 'static {
    /// A publication, with its offset set when the channel keeps history.
    fn publication(&self, channel: &str, publication: &Publication);
    fn join(&self, channel: &str, info: &ClientInfo);
    fn leave(&self, channel: &str, info: &ClientInfo);
}
