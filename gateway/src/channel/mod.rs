//! Channels: names, the subscriber registry, and fan-out into per-connection
//! outboxes.
//!
//! Owns who is subscribed where and the bounded outbound queue each
//! connection drains. It does not store history, track presence, encode wire
//! frames or decide permissions; the hub does those and hands this module
//! ready-encoded bytes to share with every subscriber.

mod name;
mod outbox;
mod registry;

pub use name::{NameError, namespace_of, user_limited_users, validate_name};
pub use outbox::{Outbox, PushError};
pub use registry::{Registry, SubscriberId};
