//! The subscriber registry: channel name → the outboxes subscribed to it.

use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;

use super::Outbox;
use crate::protocol::{DisconnectCode, EncodeError, Encoding};

/// Identifies one connection in the registry (unique for the process).
pub type SubscriberId = u64;

struct Subscriber {
    id: SubscriberId,
    outbox: Arc<Outbox>,
    encoding: Encoding,
}

/// Sharded map of channel subscribers. Fan-out takes one shard read lock,
/// encodes the message at most once per encoding present among the
/// subscribers, and pushes the same `Bytes` (a refcount bump, no copy) into
/// every outbox of that encoding.
/// What one fan-out did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanoutStats {
    /// Subscribers the frame was queued to.
    pub delivered: usize,
    /// Bytes queued, summed over those subscribers.
    pub bytes: usize,
    /// Subscribers whose outbox was full (they are being closed with 3008).
    pub dropped: usize,
}

#[derive(Default)]
pub struct Registry {
    channels: DashMap<Box<str>, Vec<Subscriber>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscriber whose connection speaks `encoding`; returns false
    /// if it was already subscribed.
    pub fn add(&self, channel: &str, id: SubscriberId, outbox: Arc<Outbox>, encoding: Encoding) -> bool {
        let mut subs = self.channels.entry(channel.into()).or_default();
        if subs.iter().any(|s| s.id == id) {
            return false;
        }
        subs.push(Subscriber { id, outbox, encoding });
        true
    }

    /// Removes a subscriber; drops the channel entry once it is empty.
    pub fn remove(&self, channel: &str, id: SubscriberId) -> bool {
        let mut removed = false;
        if let Some(mut subs) = self.channels.get_mut(channel) {
            let before = subs.len();
            subs.retain(|s| s.id != id);
            removed = subs.len() != before;
        }
        self.channels.remove_if(channel, |_, subs| subs.is_empty());
        removed
    }

    /// Pushes one message to every subscriber of `channel`. `encode` runs
    /// lazily, at most once per encoding among the subscribers, under the
    /// shard read lock (so it must not touch the registry). A subscriber
    /// whose queue overflows is closed by its outbox (3008); one whose
    /// encoding cannot carry the message (a binary payload for JSON) is
    /// closed with 3506. The rest still get it. Returns how many got it.
    pub fn fanout(&self, channel: &str, encode: impl FnMut(Encoding) -> Result<Bytes, EncodeError>) -> usize {
        self.fanout_measured(channel, encode).delivered
    }

    /// [`Registry::fanout`], also reporting bytes queued and subscribers
    /// whose full outbox refused the frame (for metrics and spans).
    pub fn fanout_measured(
        &self,
        channel: &str,
        mut encode: impl FnMut(Encoding) -> Result<Bytes, EncodeError>,
    ) -> FanoutStats {
        let Some(subs) = self.channels.get(channel) else { return FanoutStats::default() };
        let mut frames: [Option<Result<Bytes, EncodeError>>; Encoding::ALL.len()] = Default::default();
        let mut stats = FanoutStats::default();
        for sub in subs.iter() {
            let frame = frames[sub.encoding.index()].get_or_insert_with(|| encode(sub.encoding));
            match frame {
                Ok(frame) => {
                    if sub.outbox.push(frame.clone()).is_ok() {
                        stats.delivered += 1;
                        stats.bytes += frame.len();
                    } else {
                        stats.dropped += 1;
                    }
                }
                Err(EncodeError::BinaryPayload) => sub.outbox.close(DisconnectCode::INAPPROPRIATE_PROTOCOL),
            }
        }
        stats
    }

    /// Closes every subscriber of `channel` with `code` (they leave the
    /// registry when their sessions end).
    pub fn close_all(&self, channel: &str, code: DisconnectCode) {
        if let Some(subs) = self.channels.get(channel) {
            for sub in subs.iter() {
                sub.outbox.close(code);
            }
        }
    }

    pub fn num_subscribers(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |s| s.len())
    }

    /// Every channel with at least one local subscriber, with its count.
    pub fn channels(&self) -> Vec<(String, usize)> {
        self.channels.iter().map(|e| (e.key().to_string(), e.value().len())).collect()
    }

    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fanout_shares_bytes_and_isolates_slow_subscribers() {
        let reg = Registry::new();
        let fast = Arc::new(Outbox::new(1000));
        let slow = Arc::new(Outbox::new(15));
        assert!(reg.add("c", 1, fast.clone(), Encoding::Json));
        assert!(!reg.add("c", 1, fast.clone(), Encoding::Json));
        assert!(reg.add("c", 2, slow.clone(), Encoding::Json));
        let frame = Bytes::from_static(b"0123456789");
        assert_eq!(reg.fanout("c", |_| Ok(frame.clone())), 2);
        assert_eq!(reg.fanout("c", |_| Ok(frame.clone())), 1);
        assert_eq!(slow.close_code(), Some(crate::protocol::DisconnectCode::SLOW));
        assert_eq!(fast.queued_bytes(), 20);
        let mut batch = Vec::new();
        fast.next_batch(&mut batch, 1000).await;
        // Same allocation, not a copy.
        assert_eq!(batch[0].as_ptr(), frame.as_ptr());
    }

    #[tokio::test]
    async fn fanout_encodes_once_per_encoding_and_closes_json_on_binary() {
        let reg = Registry::new();
        let outboxes: Vec<_> = (0..4).map(|_| Arc::new(Outbox::new(1000))).collect();
        for (i, outbox) in outboxes.iter().enumerate() {
            let encoding = if i % 2 == 0 { Encoding::Json } else { Encoding::Protobuf };
            reg.add("c", i as SubscriberId, outbox.clone(), encoding);
        }
        let mut calls = Vec::new();
        let delivered = reg.fanout("c", |encoding| {
            calls.push(encoding);
            match encoding {
                Encoding::Json => Err(EncodeError::BinaryPayload),
                Encoding::Protobuf => Ok(Bytes::from_static(b"\x03bin")),
            }
        });
        assert_eq!(delivered, 2);
        assert_eq!(calls, [Encoding::Json, Encoding::Protobuf]);
        assert_eq!(outboxes[0].close_code(), Some(DisconnectCode::INAPPROPRIATE_PROTOCOL));
        assert_eq!(outboxes[2].close_code(), Some(DisconnectCode::INAPPROPRIATE_PROTOCOL));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        outboxes[1].next_batch(&mut a, 100).await;
        outboxes[3].next_batch(&mut b, 100).await;
        assert_eq!(a[0].as_ptr(), b[0].as_ptr());
    }

    #[test]
    fn empty_channels_are_dropped() {
        let reg = Registry::new();
        reg.add("c", 1, Arc::new(Outbox::new(10)), Encoding::Json);
        assert_eq!(reg.num_channels(), 1);
        assert!(reg.remove("c", 1));
        assert!(!reg.remove("c", 1));
        assert_eq!(reg.num_channels(), 0);
    }
}
