//! The subscriber registry: channel name → the outboxes subscribed to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::Mutex;

use super::{Outbox, TagFilter};
use crate::protocol::{DisconnectCode, EncodeError, Encoding, Payload, Publication};

/// Identifies one connection in the registry (unique for the process).
pub type SubscriberId = u64;

/// What one subscription asked for beyond the channel itself.
#[derive(Debug, Clone, Default)]
pub struct SubscriberOptions {
    /// The connection's client id: a publication excluding this client (its
    /// own, with `exclude_publisher`) skips this subscriber.
    pub client: Arc<str>,
    /// Only publications whose tags match are delivered.
    pub filter: Option<Arc<TagFilter>>,
    /// Fossil delta compression was negotiated.
    pub delta: bool,
}

/// How a publication is encoded for one subscriber; fan-out encodes each
/// form at most once per encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form<'a> {
    /// The ordinary `pub` push.
    Plain,
    /// For a delta subscription: the full data, in the delta wire form.
    Full,
    /// For a delta subscription that holds the previous publication: this
    /// fossil delta against it.
    Delta(&'a [u8]),
}

impl Form<'_> {
    fn index(self) -> usize {
        match self {
            Self::Plain => 0,
            Self::Full => 1,
            Self::Delta(_) => 2,
        }
    }
}

struct Subscriber {
    id: SubscriberId,
    outbox: Arc<Outbox>,
    encoding: Encoding,
    options: SubscriberOptions,
    /// The subscriber holds the channel's previous publication, so the next
    /// one may be a delta against it. False until its first publication
    /// (after a subscribe or a recovery the first live one goes in full),
    /// and again after it was skipped.
    has_base: AtomicBool,
}

/// The subscribers of one channel.
#[derive(Default)]
struct Channel {
    subs: Vec<Subscriber>,
    /// How many subscribers negotiated delta.
    delta_subs: AtomicUsize,
    /// The data of the last publication fanned out, the base of the next
    /// delta. Kept only while a subscriber negotiated delta. Fan-out of a
    /// channel runs under the engine's per-channel lock, so this lock is
    /// never contended; it exists because fan-out holds the shard for reading.
    prev: Mutex<Option<Payload>>,
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
    channels: DashMap<Box<str>, Channel>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscriber whose connection speaks `encoding`; returns false
    /// if it was already subscribed.
    pub fn add(&self, channel: &str, id: SubscriberId, outbox: Arc<Outbox>, encoding: Encoding) -> bool {
        self.add_with(channel, id, outbox, encoding, SubscriberOptions::default())
    }

    /// [`Registry::add`] with a filter, delta compression or a client id
    /// for publisher exclusion.
    pub fn add_with(
        &self,
        channel: &str,
        id: SubscriberId,
        outbox: Arc<Outbox>,
        encoding: Encoding,
        options: SubscriberOptions,
    ) -> bool {
        let mut entry = self.channels.entry(channel.into()).or_default();
        if entry.subs.iter().any(|s| s.id == id) {
            return false;
        }
        if options.delta {
            entry.delta_subs.fetch_add(1, Ordering::Relaxed);
        }
        entry.subs.push(Subscriber { id, outbox, encoding, options, has_base: AtomicBool::new(false) });
        true
    }

    /// Removes a subscriber; drops the channel entry once it is empty.
    pub fn remove(&self, channel: &str, id: SubscriberId) -> bool {
        let mut removed = false;
        if let Some(mut entry) = self.channels.get_mut(channel) {
            let entry = &mut *entry;
            if let Some(at) = entry.subs.iter().position(|s| s.id == id) {
                let sub = entry.subs.remove(at);
                if sub.options.delta && entry.delta_subs.fetch_sub(1, Ordering::Relaxed) == 1 {
                    *entry.prev.lock() = None;
                }
                removed = true;
            }
        }
        self.channels.remove_if(channel, |_, entry| entry.subs.is_empty());
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
        let Some(entry) = self.channels.get(channel) else { return FanoutStats::default() };
        let mut frames: [Option<Result<Bytes, EncodeError>>; Encoding::ALL.len()] = Default::default();
        let mut stats = FanoutStats::default();
        for sub in entry.subs.iter() {
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

    /// Fans out a publication: like [`Registry::fanout`], and also skips the
    /// subscriber of client `exclude` and those whose tags filter does not
    /// match, and sends delta subscriptions that hold the previous
    /// publication a fossil delta. The delta is computed at most once per
    /// publication, and each [`Form`] encoded at most once per encoding.
    pub fn fanout_publication(
        &self,
        channel: &str,
        publication: &Publication,
        exclude: Option<&str>,
        mut encode: impl FnMut(Encoding, Form<'_>) -> Result<Bytes, EncodeError>,
    ) -> FanoutStats {
        let Some(entry) = self.channels.get(channel) else { return FanoutStats::default() };
        let mut prev = (entry.delta_subs.load(Ordering::Relaxed) > 0).then(|| entry.prev.lock());
        let base = prev.as_ref().and_then(|p| Option::as_ref(p)).map(Payload::as_bytes);
        // `None`: not computed yet; `Some(None)`: not worth it (no smaller
        // than the data), so delta subscribers get the full form.
        let mut delta: Option<Option<Vec<u8>>> = None;
        let mut frames: [[Option<Result<Bytes, EncodeError>>; 3]; Encoding::ALL.len()] = Default::default();
        let mut stats = FanoutStats::default();
        for sub in entry.subs.iter() {
            if exclude.is_some_and(|client| *sub.options.client == *client) {
                // It misses this publication: its next one cannot be a delta.
                sub.has_base.store(false, Ordering::Relaxed);
                continue;
            }
            if sub.options.filter.as_ref().is_some_and(|f| !f.matches(&publication.tags)) {
                continue;
            }
            let mut form = Form::Plain;
            if sub.options.delta {
                form = Form::Full;
                if let Some(base) = base.filter(|_| sub.has_base.load(Ordering::Relaxed)) {
                    let delta = delta.get_or_insert_with(|| {
                        let d = fossil_delta::delta(publication.data.as_bytes(), base);
                        (d.len() < publication.data.len()).then_some(d)
                    });
                    if let Some(d) = delta {
                        form = Form::Delta(d);
                    }
                }
                if form == Form::Full && !sub.encoding.delta_changes_full_form() {
                    form = Form::Plain;
                }
            }
            let slots = &mut frames[sub.encoding.index()];
            let mut frame = slots[form.index()].get_or_insert_with(|| encode(sub.encoding, form));
            if matches!(form, Form::Delta(_)) && frame.is_err() {
                // A delta the encoding cannot carry (JSON needs UTF-8 text):
                // the full form instead, which also resets the base.
                let full = if sub.encoding.delta_changes_full_form() { Form::Full } else { Form::Plain };
                frame = slots[full.index()].get_or_insert_with(|| encode(sub.encoding, full));
            }
            match frame {
                Ok(frame) => {
                    let ok = sub.outbox.push(frame.clone()).is_ok();
                    if ok {
                        stats.delivered += 1;
                        stats.bytes += frame.len();
                    } else {
                        stats.dropped += 1;
                    }
                    if sub.options.delta {
                        sub.has_base.store(ok, Ordering::Relaxed);
                    }
                }
                Err(EncodeError::BinaryPayload) => sub.outbox.close(DisconnectCode::INAPPROPRIATE_PROTOCOL),
            }
        }
        if let Some(prev) = prev.as_mut() {
            **prev = Some(publication.data.clone());
        }
        stats
    }

    /// Closes every subscriber of `channel` with `code` (they leave the
    /// registry when their sessions end).
    pub fn close_all(&self, channel: &str, code: DisconnectCode) {
        if let Some(entry) = self.channels.get(channel) {
            for sub in entry.subs.iter() {
                sub.outbox.close(code);
            }
        }
    }

    pub fn num_subscribers(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, |s| s.subs.len())
    }

    /// Every channel with at least one local subscriber, with its count.
    pub fn channels(&self) -> Vec<(String, usize)> {
        self.channels.iter().map(|e| (e.key().to_string(), e.value().subs.len())).collect()
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

    fn delta_sub(client: &str) -> SubscriberOptions {
        SubscriberOptions { client: client.into(), delta: true, ..SubscriberOptions::default() }
    }

    fn scoreboard(home: u32) -> Publication {
        let text = format!(
            r#"{{"match":"Arsenal v Chelsea","minute":{home},"home":{home},"away":1,"events":"{}"}}"#,
            "x".repeat(200)
        );
        Publication { data: Payload::from_json(&text).unwrap(), ..Publication::default() }
    }

    /// Records each encode call as (encoding, form index, delta bytes).
    type Calls = Vec<(Encoding, usize, Vec<u8>)>;

    fn recording(calls: &mut Calls) -> impl FnMut(Encoding, Form<'_>) -> Result<Bytes, EncodeError> + '_ {
        move |encoding, form| {
            let delta = if let Form::Delta(d) = form { d.to_vec() } else { Vec::new() };
            calls.push((encoding, form.index(), delta));
            Ok(Bytes::from(format!("{encoding:?}/{}", form.index())))
        }
    }

    async fn drain(outbox: &Outbox) -> Vec<Bytes> {
        let mut batch = Vec::new();
        if outbox.queued_bytes() > 0 {
            outbox.next_batch(&mut batch, 1 << 20).await;
        }
        batch
    }

    #[tokio::test]
    async fn delta_is_computed_once_per_publication_and_the_first_goes_in_full() {
        let reg = Registry::new();
        let json: Vec<_> = (0..3).map(|_| Arc::new(Outbox::new(1 << 20))).collect();
        for (i, outbox) in json.iter().enumerate() {
            reg.add_with("c", i as SubscriberId, outbox.clone(), Encoding::Json, delta_sub(&format!("j{i}")));
        }
        let proto = Arc::new(Outbox::new(1 << 20));
        reg.add_with("c", 10, proto.clone(), Encoding::Protobuf, delta_sub("p"));
        let plain = Arc::new(Outbox::new(1 << 20));
        reg.add("c", 11, plain.clone(), Encoding::Json);

        let mut calls = Calls::new();
        assert_eq!(reg.fanout_publication("c", &scoreboard(1), None, recording(&mut calls)).delivered, 5);
        // First publication: full for delta subscribers (Protobuf's full form
        // is the plain push), once per encoding and form.
        assert_eq!(calls, [(Encoding::Json, 1, vec![]), (Encoding::Protobuf, 0, vec![]), (Encoding::Json, 0, vec![])]);

        calls.clear();
        let second = scoreboard(2);
        assert_eq!(reg.fanout_publication("c", &second, None, recording(&mut calls)).delivered, 5);
        assert_eq!(calls.len(), 3, "{calls:?}");
        let (json_delta, proto_delta) = (&calls[0], &calls[1]);
        assert_eq!(
            (json_delta.0, json_delta.1, proto_delta.0, proto_delta.1),
            (Encoding::Json, 2, Encoding::Protobuf, 2)
        );
        assert_eq!(json_delta.2, proto_delta.2, "one delta shared by both encodings");
        assert_eq!(calls[2].1, 0, "the plain subscriber gets the plain push");
        let applied = fossil_delta::apply(scoreboard(1).data.as_bytes(), &json_delta.2).unwrap();
        assert_eq!(applied, second.data.as_bytes().as_ref());
        assert!(json_delta.2.len() * 4 < second.data.len(), "{} vs {}", json_delta.2.len(), second.data.len());

        // Every JSON delta subscriber got the same bytes: full, then delta.
        let frames: Vec<Vec<Bytes>> = futures_util::future::join_all(json.iter().map(|o| drain(o))).await;
        for f in &frames {
            assert_eq!(f, &[Bytes::from_static(b"Json/1"), Bytes::from_static(b"Json/2")]);
            assert_eq!(f[1].as_ptr(), frames[0][1].as_ptr(), "shared, not re-encoded");
        }
        assert_eq!(drain(&plain).await, [Bytes::from_static(b"Json/0"), Bytes::from_static(b"Json/0")]);
        assert_eq!(drain(&proto).await, [Bytes::from_static(b"Protobuf/0"), Bytes::from_static(b"Protobuf/2")]);

        // A subscriber that joins now starts with a full publication.
        let late = Arc::new(Outbox::new(1 << 20));
        reg.add_with("c", 12, late.clone(), Encoding::Json, delta_sub("late"));
        calls.clear();
        reg.fanout_publication("c", &scoreboard(3), None, recording(&mut calls));
        assert_eq!(drain(&late).await, [Bytes::from_static(b"Json/1")]);
        assert_eq!(drain(&json[0]).await, [Bytes::from_static(b"Json/2")]);
    }

    #[tokio::test]
    async fn exclusion_skips_one_subscriber_and_resets_its_delta_base() {
        let reg = Registry::new();
        let (me, other) = (Arc::new(Outbox::new(1 << 20)), Arc::new(Outbox::new(1 << 20)));
        reg.add_with("c", 1, me.clone(), Encoding::Json, delta_sub("me"));
        reg.add_with("c", 2, other.clone(), Encoding::Json, delta_sub("other"));
        let mut calls = Calls::new();
        assert_eq!(reg.fanout_publication("c", &scoreboard(1), None, recording(&mut calls)).delivered, 2);
        assert_eq!(reg.fanout_publication("c", &scoreboard(2), Some("me"), recording(&mut calls)).delivered, 1);
        assert_eq!(reg.fanout_publication("c", &scoreboard(3), None, recording(&mut calls)).delivered, 2);
        assert_eq!(drain(&me).await, [Bytes::from_static(b"Json/1"), Bytes::from_static(b"Json/1")]);
        assert_eq!(
            drain(&other).await,
            [Bytes::from_static(b"Json/1"), Bytes::from_static(b"Json/2"), Bytes::from_static(b"Json/2")]
        );
        // The last delta is against publication 2, which `me` never got.
        let last = &calls.last().unwrap().2;
        assert_eq!(
            fossil_delta::apply(scoreboard(2).data.as_bytes(), last).unwrap(),
            scoreboard(3).data.as_bytes().as_ref()
        );
    }

    #[tokio::test]
    async fn tags_filters_skip_non_matching_subscribers_without_encoding_for_them() {
        let reg = Registry::new();
        let btc = crate::protocol::FilterNode {
            key: "ticker".into(),
            cmp: "eq".into(),
            val: "BTC".into(),
            ..Default::default()
        };
        let filter = Some(Arc::new(TagFilter::compile(&btc).unwrap()));
        let filtered = Arc::new(Outbox::new(1 << 20));
        reg.add_with("c", 1, filtered.clone(), Encoding::Protobuf, SubscriberOptions { filter, ..Default::default() });
        let all = Arc::new(Outbox::new(1 << 20));
        reg.add("c", 2, all.clone(), Encoding::Json);
        let mut publication = scoreboard(1);
        publication.tags.insert("ticker".into(), "ETH".into());
        let mut calls = Calls::new();
        assert_eq!(reg.fanout_publication("c", &publication, None, recording(&mut calls)).delivered, 1);
        assert_eq!(calls, [(Encoding::Json, 0, vec![])], "nothing encoded for the filtered-out Protobuf subscriber");
        publication.tags.insert("ticker".into(), "BTC".into());
        assert_eq!(reg.fanout_publication("c", &publication, None, recording(&mut calls)).delivered, 2);
        assert_eq!(drain(&filtered).await, [Bytes::from_static(b"Protobuf/0")]);
        assert_eq!(drain(&all).await.len(), 2);
    }

    #[tokio::test]
    async fn a_delta_json_cannot_carry_falls_back_to_the_full_form() {
        let reg = Registry::new();
        let outbox = Arc::new(Outbox::new(1 << 20));
        reg.add_with("c", 1, outbox.clone(), Encoding::Json, delta_sub("j"));
        let encode = |_: Encoding, form: Form<'_>| match form {
            Form::Delta(_) => Err(EncodeError::BinaryPayload),
            other => Ok(Bytes::from(format!("{}", other.index()))),
        };
        reg.fanout_publication("c", &scoreboard(1), None, encode);
        reg.fanout_publication("c", &scoreboard(2), None, encode);
        assert_eq!(drain(&outbox).await, [Bytes::from_static(b"1"), Bytes::from_static(b"1")]);
        assert_eq!(outbox.close_code(), None);
    }

    proptest::proptest! {
        /// The crate's deltas rebuild the target from the base, for any bytes
        /// and for the near-identical documents live data produces.
        #[test]
        fn fossil_deltas_rebuild_the_publication(
            base in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()), 0..8),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            let mut target = base.clone();
            for (at, byte) in &edits {
                if !target.is_empty() {
                    let i = at.index(target.len());
                    target[i] = *byte;
                }
            }
            target.extend_from_slice(&tail);
            let delta = fossil_delta::delta(&target, &base);
            proptest::prop_assert_eq!(fossil_delta::apply(&base, &delta).unwrap(), target);
        }
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
