//! The subscriber registry: channel name → the outboxes subscribed to it.

use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;

use super::Outbox;

/// Identifies one connection in the registry (unique for the process).
pub type SubscriberId = u64;

/// Sharded map of channel subscribers. Fan-out takes one shard read lock and
/// pushes the same `Bytes` (a refcount bump, no copy) into every outbox.
#[derive(Default)]
pub struct Registry {
    channels: DashMap<Box<str>, Vec<(SubscriberId, Arc<Outbox>)>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscriber; returns false if it was already subscribed.
    pub fn add(&self, channel: &str, id: SubscriberId, outbox: Arc<Outbox>) -> bool {
        let mut subs = self.channels.entry(channel.into()).or_default();
        if subs.iter().any(|(sid, _)| *sid == id) {
            return false;
        }
        subs.push((id, outbox));
        true
    }

    /// Removes a subscriber; drops the channel entry once it is empty.
    pub fn remove(&self, channel: &str, id: SubscriberId) -> bool {
        let mut removed = false;
        if let Some(mut subs) = self.channels.get_mut(channel) {
            let before = subs.len();
            subs.retain(|(sid, _)| *sid != id);
            removed = subs.len() != before;
        }
        self.channels.remove_if(channel, |_, subs| subs.is_empty());
        removed
    }

    /// Pushes `frame` to every subscriber of `channel`. A subscriber whose
    /// queue overflows is closed by its outbox (3008); the rest still get the
    /// frame. Returns how many subscribers got it.
    pub fn fanout(&self, channel: &str, frame: &Bytes) -> usize {
        let Some(subs) = self.channels.get(channel) else { return 0 };
        subs.iter().filter(|(_, outbox)| outbox.push(frame.clone()).is_ok()).count()
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
        assert!(reg.add("c", 1, fast.clone()));
        assert!(!reg.add("c", 1, fast.clone()));
        assert!(reg.add("c", 2, slow.clone()));
        let frame = Bytes::from_static(b"0123456789");
        assert_eq!(reg.fanout("c", &frame), 2);
        assert_eq!(reg.fanout("c", &frame), 1);
        assert_eq!(slow.close_code(), Some(crate::protocol::DisconnectCode::SLOW));
        assert_eq!(fast.queued_bytes(), 20);
        let mut batch = Vec::new();
        fast.next_batch(&mut batch, 1000).await;
        // Same allocation, not a copy.
        assert_eq!(batch[0].as_ptr(), frame.as_ptr());
    }

    #[test]
    fn empty_channels_are_dropped() {
        let reg = Registry::new();
        reg.add("c", 1, Arc::new(Outbox::new(10)));
        assert_eq!(reg.num_channels(), 1);
        assert!(reg.remove("c", 1));
        assert!(!reg.remove("c", 1));
        assert_eq!(reg.num_channels(), 0);
    }
}
