//! Channels: names, the subscriber registry, and fan-out into per-connection
//! outboxes.
//!
//! Owns who is subscribed where and the bounded outbound queue each
//! connection drains. It does not store history, track presence, encode wire
//! frames or decide permissions; the hub does those and hands this module an
//! encoder that fan-out calls at most once per encoding present among the
//! subscribers, sharing the bytes with every subscriber of that encoding.
//! Per subscription it also applies what the subscriber asked for: a tags
//! filter, publisher exclusion, and fossil delta compression (each delta
//! computed once per publication against the channel's previous one).

mod filter;
mod name;
mod outbox;
mod registry;

pub use filter::{FilterError, MAX_FILTER_DEPTH, MAX_FILTER_NODES, MAX_FILTER_VALUES, TagFilter};
pub use name::{NameError, namespace_of, user_limited_users, validate_name};
pub use outbox::{Outbox, PushError};
pub use registry::{FanoutStats, Form, Registry, SubscriberId, SubscriberOptions};
