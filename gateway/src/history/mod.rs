//! Per-channel history streams: offsets, epochs, bounded retention and the
//! recovery decision.
//!
//! Owns one data structure, [`Stream`]: the ordered window of a channel's
//! recent publications, the channel's top offset and its epoch. It answers
//! history reads ([`Stream::read`]) and decides whether a resubscribing client
//! can recover what it missed ([`Stream::recover`]).
//!
//! It does not own the map of channels, locking, timers or sweeping: the
//! broker keeps one `Stream` per channel behind its own per-channel mutex,
//! calls these methods while holding it, and drops a stream once
//! [`Stream::is_meta_expired`] says so. Everything here is synchronous and
//! never awaits; time is always passed in as a [`tokio::time::Instant`], so the
//! module reads no clock of its own. It does not fan out, know sessions, or
//! apply the configured publication limits — callers pass the limit they want.
//!
//! # Semantics in one place
//!
//! - Offsets grow by exactly one per [`Stream::append`], start at 1, and are
//!   never reused within an epoch. A stream always retains a contiguous run of
//!   offsets ending at the top (possibly empty).
//! - Retention is bounded by `size` (count) and `ttl` (age of each entry).
//! - A new [`Stream`] has a fresh random epoch. The broker dropping a
//!   meta-expired stream and creating a new one is exactly "the stream was
//!   lost": clients see a new epoch and cannot recover across it.
//! - Neither reads nor recovery ever answer with a gap: the answer is either
//!   complete or an error / [`Recovery::NotRecovered`].
//!
//! [`DiskStore`] (in `disk`) is the persistent copy of streams for
//! `history_storage = "disk"`: the broker's writer thread commits appends to
//! it before they are acknowledged, and rebuilds streams from it at start
//! with [`Stream::restore`].

mod disk;
mod stream;

#[cfg(test)]
pub(crate) mod tests;

pub use disk::{DiskStore, Loaded, Retention, STORE_FILE, StoreError, StoreOp, StoredKey, StoredStream};
pub use stream::{HistoryError, Recovery, Stream, StreamOptions};
