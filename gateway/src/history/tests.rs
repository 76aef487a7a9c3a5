use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::*;
use crate::config::ChannelOptions;
use crate::protocol::{ErrorCode, Payload, Publication, StreamPosition};

const HOUR: Duration = Duration::from_secs(3600);

fn opts(size: usize, ttl: Duration) -> StreamOptions {
    StreamOptions { size, ttl, meta_ttl: HOUR }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A publication whose data records `n`, so tests can check that the right
/// publication (not just the right offset) came back.
pub(crate) fn publication(n: u64) -> Publication {
    Publication { data: Payload::from_json(&format!("{{\"n\":{n}}}")).unwrap(), ..Publication::default() }
}

fn offsets(pubs: &[Publication]) -> Vec<u64> {
    pubs.iter().map(|p| p.offset).collect()
}

/// A stream with `n` publications appended at `now`.
fn stream_with(n: u64, o: &StreamOptions, now: Instant) -> Stream {
    let mut s = Stream::new(now);
    for i in 1..=n {
        s.append(publication(i), o, now);
    }
    s
}

fn pos(offset: u64, epoch: &str) -> StreamPosition {
    StreamPosition { offset, epoch: epoch.to_owned() }
}

// ------------------------------------------------------------------ recovery

/// The epoch a recovery case resumes from, relative to the stream's.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Epoch {
    Same,
    Other,
    Empty,
}

/// One row of the recovery table; shared by every engine's tests.
pub(crate) struct Case {
    pub name: &'static str,
    pub size: usize,
    pub ttl_secs: u64,
    /// `(at_secs, count)`: publish `count` publications at `t0 + at_secs`.
    pub batches: &'static [(u64, u64)],
    pub recover_at_secs: u64,
    pub since: u64,
    pub epoch: Epoch,
    pub max: usize,
    /// `Some(offsets)` for `Recovered`, `None` for `NotRecovered`.
    pub want: Option<&'static [u64]>,
}

impl Case {
    /// True when the case needs no time to pass (an engine on a real clock
    /// can run it without waiting).
    pub fn is_instant(&self) -> bool {
        self.recover_at_secs == 0 && self.batches.iter().all(|&(at, _)| at == 0)
    }

    /// The epoch to resume from, given the stream's.
    pub fn epoch_for(&self, stream_epoch: &str) -> String {
        match self.epoch {
            Epoch::Same => stream_epoch.to_owned(),
            Epoch::Other => format!("{stream_epoch}x"),
            Epoch::Empty => String::new(),
        }
    }

    /// Checks an engine's answer against the row.
    pub fn check(&self, got: Recovery) {
        match (self.want, got) {
            (Some(want), Recovery::Recovered(pubs)) => {
                assert_eq!(offsets(&pubs), want, "case {:?}", self.name);
                for p in &pubs {
                    assert_eq!(p, &with_offset(publication(p.offset)), "case {:?}", self.name);
                }
            }
            (None, Recovery::NotRecovered) => {}
            (want, got) => panic!("case {:?}: want {want:?}, got {got:?}", self.name),
        }
    }
}

/// Centrifugo's recovery table, plus the boundaries around each row.
#[test]
fn recovery_table() {
    let t0 = Instant::now();
    for c in &recovery_cases() {
        let o = opts(c.size, secs(c.ttl_secs));
        let mut s = Stream::new(t0);
        for &(at, count) in c.batches {
            for _ in 0..count {
                let n = s.top_offset() + 1;
                s.append(publication(n), &o, t0 + secs(at));
            }
        }
        let epoch = c.epoch_for(s.epoch());
        c.check(s.recover(&pos(c.since, &epoch), c.max, t0 + secs(c.recover_at_secs)));
    }
}

/// The rows of the recovery table.
pub(crate) fn recovery_cases() -> Vec<Case> {
    vec![
        Case {
            name: "empty stream",
            size: 10,
            ttl_secs: 60,
            batches: &[],
            recover_at_secs: 0,
            since: 0,
            epoch: Epoch::Same,
            max: 100,
            want: Some(&[]),
        },
        Case {
            name: "from position",
            size: 10,
            ttl_secs: 60,
            batches: &[(0, 10)],
            recover_at_secs: 0,
            since: 8,
            epoch: Epoch::Same,
            max: 100,
            want: Some(&[9, 10]),
        },
        Case {
            name: "from zero position, all retained",
            size: 10,
            ttl_secs: 60,
            batches: &[(0, 4)],
            recover_at_secs: 0,
            since: 0,
            epoch: Epoch::Same,
            max: 100,
            want: Some(&[1, 2, 3, 4]),
        },
        Case {
            name: "from zero position, first trimmed",
            size: 3,
            ttl_secs: 60,
            batches: &[(0, 4)],
            recover_at_secs: 0,
            since: 0,
            epoch: Epoch::Same,
            max: 100,
            want: None,
        },
        Case {
            name: "position already gone",
            size: 5,
            ttl_secs: 60,
            batches: &[(0, 10)],
            recover_at_secs: 0,
            since: 2,
            epoch: Epoch::Same,
            max: 100,
            want: None,
        },
        Case {
            name: "next needed offset is the first trimmed one",
            size: 5,
            ttl_secs: 60,
            batches: &[(0, 10)],
            recover_at_secs: 0,
            since: 4,
            epoch: Epoch::Same,
            max: 100,
            want: None,
        },
        Case {
            name: "next needed offset is the oldest retained one",
            size: 5,
            ttl_secs: 60,
            batches: &[(0, 10)],
            recover_at_secs: 0,
            since: 5,
            epoch: Epoch::Same,
            max: 100,
            want: Some(&[6, 7, 8, 9, 10]),
        },
        Case {
            name: "position not yet existing",
            size: 10,
            ttl_secs: 60,
            batches: &[(0, 10)],
            recover_at_secs: 0,
            since: 20,
            epoch: Epoch::Same,
            max: 100,
            want: None,
        },
        Case {
            name: "one past the top",
            size: 10,
            ttl_secs: 60,
            batches: &[(0, 10)],
            recover_at_secs: 0,
            since: 11,
            epoch: Epoch::Same,
            max: 100,
            want: None,
        },
        Case {
            name: "same position",
            size: 10,
            ttl_secs: 60,
            batches: &[(0, 10)],
            recover_at_secs: 0,
            since: 10,
            epoch: Epoch::Same,
            max: 100,
            want: Some(&[]),
        },
        Case {
            name: "same position, max 0",
            size: 10,
            ttl_secs: 60,
            batches: &[(0, 10)],
            recover_at_secs: 0,
            since: 10,
            epoch: Epoch::Same,
            max: 0,
            want: Some(&[]),
        },
        Case {
            name: "limit exceeded",
            size: 10,
            ttl_secs: 60,
            batches: &[(0, 10)],
            recover_at_secs: 0,
            since: 8,
            epoch: Epoch::Same,
            max: 1,
            want: None,
        },
        Case {
            name: "limit exactly met",
            size: 10,
            ttl_secs: 60,
            batches: &[(0, 10)],
            recover_at_secs: 0,
            since: 8,
            epoch: Epoch::Same,
            max: 2,
            want: Some(&[9, 10]),
        },
        Case {
            name: "expired stream",
            size: 10,
            ttl_secs: 10,
            batches: &[(0, 3)],
            recover_at_secs: 10,
            since: 1,
            epoch: Epoch::Same,
            max: 100,
            want: None,
        },
        Case {
            name: "expired stream, same position",
            size: 10,
            ttl_secs: 10,
            batches: &[(0, 3)],
            recover_at_secs: 10,
            since: 3,
            epoch: Epoch::Same,
            max: 100,
            want: Some(&[]),
        },
        Case {
            name: "not yet expired",
            size: 10,
            ttl_secs: 10,
            batches: &[(0, 3)],
            recover_at_secs: 9,
            since: 1,
            epoch: Epoch::Same,
            max: 100,
            want: Some(&[2, 3]),
        },
        Case {
            name: "ttl-expired entry in the gap",
            size: 10,
            ttl_secs: 10,
            batches: &[(0, 3), (6, 2)],
            recover_at_secs: 11,
            since: 2,
            epoch: Epoch::Same,
            max: 100,
            want: None,
        },
        Case {
            name: "ttl-expired entries before the gap only",
            size: 10,
            ttl_secs: 10,
            batches: &[(0, 3), (6, 2)],
            recover_at_secs: 11,
            since: 3,
            epoch: Epoch::Same,
            max: 100,
            want: Some(&[4, 5]),
        },
        Case {
            name: "epoch mismatch",
            size: 10,
            ttl_secs: 60,
            batches: &[(0, 10)],
            recover_at_secs: 0,
            since: 8,
            epoch: Epoch::Other,
            max: 100,
            want: None,
        },
        Case {
            name: "epoch mismatch, same position",
            size: 10,
            ttl_secs: 60,
            batches: &[(0, 10)],
            recover_at_secs: 0,
            since: 10,
            epoch: Epoch::Other,
            max: 100,
            want: None,
        },
        Case {
            name: "empty epoch does not match",
            size: 10,
            ttl_secs: 60,
            batches: &[(0, 10)],
            recover_at_secs: 0,
            since: 8,
            epoch: Epoch::Empty,
            max: 100,
            want: None,
        },
    ]
}

fn with_offset(mut p: Publication) -> Publication {
    let n: serde_json::Value = serde_json::from_slice(p.data.as_bytes()).unwrap();
    p.offset = n["n"].as_u64().unwrap();
    p
}

#[test]
fn recover_after_clear_needs_no_gap() {
    let t0 = Instant::now();
    let o = opts(10, HOUR);
    let mut s = stream_with(5, &o, t0);
    let epoch = s.epoch().to_owned();
    s.clear();
    assert_eq!(s.recover(&pos(3, &epoch), 100, t0), Recovery::NotRecovered);
    assert_eq!(s.recover(&pos(5, &epoch), 100, t0), Recovery::Recovered(vec![]));
    s.append(publication(6), &o, t0);
    assert_eq!(s.recover(&pos(5, &epoch), 100, t0).pubs(), vec![6]);
}

impl Recovery {
    fn pubs(self) -> Vec<u64> {
        match self {
            Recovery::Recovered(p) => offsets(&p),
            Recovery::NotRecovered => panic!("not recovered"),
        }
    }
}

// ---------------------------------------------------------------------- read

#[test]
fn read_without_since_respects_limit_and_direction() {
    let t0 = Instant::now();
    let mut s = stream_with(10, &opts(10, HOUR), t0);
    assert_eq!(offsets(&s.read(None, 3, false, t0).unwrap()), [1, 2, 3]);
    assert_eq!(offsets(&s.read(None, 3, true, t0).unwrap()), [10, 9, 8]);
    assert_eq!(offsets(&s.read(None, 100, false, t0).unwrap()), (1..=10).collect::<Vec<_>>());
    assert_eq!(offsets(&s.read(None, usize::MAX, true, t0).unwrap()), (1..=10).rev().collect::<Vec<_>>());
}

#[test]
fn read_without_since_starts_at_oldest_retained() {
    let t0 = Instant::now();
    let mut s = stream_with(10, &opts(4, HOUR), t0);
    assert_eq!(offsets(&s.read(None, 2, false, t0).unwrap()), [7, 8]);
    assert_eq!(offsets(&s.read(None, 2, true, t0).unwrap()), [10, 9]);
}

#[test]
fn read_limit_zero_returns_nothing_but_validates_since() {
    let t0 = Instant::now();
    let mut s = stream_with(10, &opts(5, HOUR), t0);
    let epoch = s.epoch().to_owned();
    assert!(s.read(None, 0, false, t0).unwrap().is_empty());
    assert!(s.read(None, 0, true, t0).unwrap().is_empty());
    assert!(s.read(Some(&pos(7, &epoch)), 0, false, t0).unwrap().is_empty());
    assert_eq!(s.read(Some(&pos(2, &epoch)), 0, false, t0), Err(HistoryError::UnrecoverablePosition));
    assert_eq!(s.read(Some(&pos(7, "other")), 0, false, t0), Err(HistoryError::UnrecoverablePosition));
}

#[test]
fn read_forward_since() {
    let t0 = Instant::now();
    let mut s = stream_with(10, &opts(10, HOUR), t0);
    let epoch = s.epoch().to_owned();
    assert_eq!(offsets(&s.read(Some(&pos(5, &epoch)), 3, false, t0).unwrap()), [6, 7, 8]);
    assert_eq!(offsets(&s.read(Some(&pos(5, &epoch)), 100, false, t0).unwrap()), [6, 7, 8, 9, 10]);
    assert_eq!(offsets(&s.read(Some(&pos(0, &epoch)), 2, false, t0).unwrap()), [1, 2]);
    assert!(s.read(Some(&pos(10, &epoch)), 100, false, t0).unwrap().is_empty());
    // An empty epoch skips the epoch check.
    assert_eq!(offsets(&s.read(Some(&pos(8, "")), 100, false, t0).unwrap()), [9, 10]);
}

#[test]
fn read_reverse_since() {
    let t0 = Instant::now();
    let mut s = stream_with(10, &opts(10, HOUR), t0);
    let epoch = s.epoch().to_owned();
    assert_eq!(offsets(&s.read(Some(&pos(5, &epoch)), 100, true, t0).unwrap()), [4, 3, 2, 1]);
    assert_eq!(offsets(&s.read(Some(&pos(5, &epoch)), 2, true, t0).unwrap()), [4, 3]);
    assert!(s.read(Some(&pos(1, &epoch)), 100, true, t0).unwrap().is_empty());
    // top + 1 and 0 both mean "from the top".
    assert_eq!(offsets(&s.read(Some(&pos(11, &epoch)), 3, true, t0).unwrap()), [10, 9, 8]);
    assert_eq!(offsets(&s.read(Some(&pos(0, &epoch)), 3, true, t0).unwrap()), [10, 9, 8]);
    assert_eq!(s.read(Some(&pos(12, &epoch)), 3, true, t0), Err(HistoryError::UnrecoverablePosition));
}

#[test]
fn read_reverse_since_into_trimmed_range() {
    let t0 = Instant::now();
    let mut s = stream_with(10, &opts(5, HOUR), t0);
    let epoch = s.epoch().to_owned();
    // Retained 6..=10. Reading below 8 stops at 6: end of history, not a gap.
    assert_eq!(offsets(&s.read(Some(&pos(8, &epoch)), 100, true, t0).unwrap()), [7, 6]);
    // Below 6 everything is gone, although offsets 1..=5 existed.
    assert_eq!(s.read(Some(&pos(6, &epoch)), 100, true, t0), Err(HistoryError::UnrecoverablePosition));
    assert_eq!(s.read(Some(&pos(3, &epoch)), 100, true, t0), Err(HistoryError::UnrecoverablePosition));
}

#[test]
fn read_rejects_epoch_mismatch_with_112() {
    let t0 = Instant::now();
    let mut s = stream_with(3, &opts(10, HOUR), t0);
    let err = s.read(Some(&pos(1, "nope")), 10, false, t0).unwrap_err();
    assert_eq!(err, HistoryError::UnrecoverablePosition);
    assert_eq!(ErrorCode::from(err).code(), 112);
    assert_eq!(err.to_string(), "unrecoverable position");
    assert_eq!(s.read(Some(&pos(1, "nope")), 10, true, t0), Err(HistoryError::UnrecoverablePosition));
}

#[test]
fn read_rejects_trimmed_or_future_since() {
    let t0 = Instant::now();
    let mut s = stream_with(10, &opts(5, HOUR), t0);
    let epoch = s.epoch().to_owned();
    // Retained 6..=10: since 5 is the oldest position that is still whole.
    assert_eq!(offsets(&s.read(Some(&pos(5, &epoch)), 2, false, t0).unwrap()), [6, 7]);
    for since in [0, 2, 4] {
        assert_eq!(
            s.read(Some(&pos(since, &epoch)), 100, false, t0),
            Err(HistoryError::UnrecoverablePosition),
            "since {since}"
        );
    }
    assert_eq!(s.read(Some(&pos(11, &epoch)), 100, false, t0), Err(HistoryError::UnrecoverablePosition));
}

#[test]
fn read_on_new_stream() {
    let t0 = Instant::now();
    let mut s = Stream::new(t0);
    let epoch = s.epoch().to_owned();
    assert!(s.read(None, 10, false, t0).unwrap().is_empty());
    assert!(s.read(Some(&pos(0, &epoch)), 10, false, t0).unwrap().is_empty());
    assert!(s.read(Some(&pos(0, &epoch)), 10, true, t0).unwrap().is_empty());
    assert!(s.read(Some(&pos(1, &epoch)), 10, true, t0).unwrap().is_empty());
    assert_eq!(s.read(Some(&pos(1, &epoch)), 10, false, t0), Err(HistoryError::UnrecoverablePosition));
}

// ----------------------------------------------------------------- retention

#[test]
fn offsets_grow_by_exactly_one() {
    let t0 = Instant::now();
    let o = opts(3, HOUR);
    let mut s = Stream::new(t0);
    assert_eq!(s.top_offset(), 0);
    assert_eq!(s.position(), pos(0, s.epoch()));
    for n in 1..=20 {
        assert_eq!(s.append(publication(n), &o, t0), n);
        assert_eq!(s.top_offset(), n);
        assert_eq!(s.position(), pos(n, s.epoch()));
    }
    let last = s.read(None, 1, true, t0).unwrap();
    assert_eq!(last, vec![with_offset(publication(20))]);
}

#[test]
fn size_trims_oldest_and_follows_option_changes() {
    let t0 = Instant::now();
    let mut s = stream_with(5, &opts(3, HOUR), t0);
    assert_eq!(s.len(), 3);
    assert_eq!(offsets(&s.read(None, 10, false, t0).unwrap()), [3, 4, 5]);

    s.append(publication(6), &opts(2, HOUR), t0);
    assert_eq!(offsets(&s.read(None, 10, false, t0).unwrap()), [5, 6]);

    s.append(publication(7), &opts(5, HOUR), t0);
    s.append(publication(8), &opts(5, HOUR), t0);
    assert_eq!(offsets(&s.read(None, 10, false, t0).unwrap()), [5, 6, 7, 8]);

    // Size 0 keeps nothing but still advances the top.
    assert_eq!(s.append(publication(9), &opts(0, HOUR), t0), 9);
    assert!(s.is_empty());
    assert_eq!(s.top_offset(), 9);
}

#[tokio::test(start_paused = true)]
async fn ttl_expires_entries_as_time_advances() {
    let o = opts(100, secs(10));
    let mut s = Stream::new(Instant::now());
    s.append(publication(1), &o, Instant::now());
    s.append(publication(2), &o, Instant::now());
    tokio::time::advance(secs(5)).await;
    s.append(publication(3), &o, Instant::now());

    tokio::time::advance(secs(4)).await; // t = 9
    assert_eq!(offsets(&s.read(None, 10, false, Instant::now()).unwrap()), [1, 2, 3]);

    tokio::time::advance(secs(1)).await; // t = 10: 1 and 2 reach their TTL
    assert_eq!(offsets(&s.read(None, 10, false, Instant::now()).unwrap()), [3]);
    assert_eq!(s.len(), 1);
    assert_eq!(s.read(Some(&pos(1, "")), 10, false, Instant::now()), Err(HistoryError::UnrecoverablePosition));

    tokio::time::advance(secs(5)).await; // t = 15: everything gone, top kept
    assert!(s.read(None, 10, true, Instant::now()).unwrap().is_empty());
    assert!(s.is_empty());
    assert_eq!(s.top_offset(), 3);
    assert_eq!(s.append(publication(4), &o, Instant::now()), 4);
}

#[test]
fn remove_expired_reports_and_releases() {
    let t0 = Instant::now();
    let mut s = stream_with(4, &opts(10, secs(10)), t0);
    assert_eq!(s.remove_expired(t0 + secs(9)), 0);
    assert_eq!(s.len(), 4);
    assert_eq!(s.remove_expired(t0 + secs(10)), 4);
    assert!(s.is_empty());
    assert_eq!(s.top_offset(), 4);
}

#[test]
fn time_going_backwards_keeps_window_contiguous() {
    let t0 = Instant::now();
    let o = opts(10, secs(10));
    let mut s = Stream::new(t0);
    s.append(publication(1), &o, t0 + secs(5));
    // Instant taken before the lock by a task that lost the race.
    s.append(publication(2), &o, t0 + secs(1));
    s.append(publication(3), &o, t0 + secs(6));
    // At 12s entry 2 would be expired by its own timestamp while entry 1 is
    // not, a hole; it was clamped to 5s instead, so 1 and 2 expire together.
    assert_eq!(offsets(&s.read(None, 10, false, t0 + secs(12)).unwrap()), [1, 2, 3]);
    assert_eq!(offsets(&s.read(None, 10, false, t0 + secs(15)).unwrap()), [3]);
}

#[test]
fn meta_expiry_counts_from_last_append() {
    let t0 = Instant::now();
    let o = StreamOptions { size: 10, ttl: secs(10), meta_ttl: secs(60) };
    let mut s = Stream::new(t0);
    // Never written: meta_ttl unknown, never expires on its own.
    assert!(!s.is_meta_expired(t0 + HOUR * 1000));

    s.append(publication(1), &o, t0);
    assert!(!s.is_meta_expired(t0 + secs(59)));
    assert!(s.is_meta_expired(t0 + secs(60)));

    s.append(publication(2), &o, t0 + secs(30));
    assert!(!s.is_meta_expired(t0 + secs(89)));
    assert!(s.is_meta_expired(t0 + secs(90)));

    // Reads do not extend the meta.
    let _ = s.read(None, 10, false, t0 + secs(80));
    let _ = s.recover(&s.position(), 10, t0 + secs(80));
    assert!(s.is_meta_expired(t0 + secs(90)));
}

#[test]
fn touch_starts_meta_expiry_without_appending() {
    let t0 = Instant::now();
    let o = StreamOptions { size: 10, ttl: secs(10), meta_ttl: secs(60) };
    let mut s = Stream::new(t0);
    s.touch(&o, t0 + secs(5));
    assert!(!s.is_meta_expired(t0 + secs(64)));
    assert!(s.is_meta_expired(t0 + secs(65)));
    assert_eq!(s.top_offset(), 0);
    assert!(s.is_empty());
}

#[test]
fn clear_keeps_epoch_and_top() {
    let t0 = Instant::now();
    let o = opts(10, HOUR);
    let mut s = stream_with(7, &o, t0);
    let before = s.position();
    s.clear();
    assert!(s.is_empty());
    assert_eq!(s.len(), 0);
    assert_eq!(s.position(), before);
    assert!(s.read(None, 10, false, t0).unwrap().is_empty());
    assert_eq!(s.append(publication(8), &o, t0), 8);
    assert_eq!(offsets(&s.read(None, 10, false, t0).unwrap()), [8]);
}

#[test]
fn epochs_are_random_alphanumeric() {
    let t0 = Instant::now();
    let a = Stream::new(t0);
    let b = Stream::new(t0);
    for e in [a.epoch(), b.epoch()] {
        assert_eq!(e.len(), 8);
        assert!(e.bytes().all(|c| c.is_ascii_alphanumeric()), "{e}");
    }
    assert_ne!(a.epoch(), b.epoch());
}

#[test]
fn append_moves_publication_and_shares_payload() {
    let t0 = Instant::now();
    let mut s = Stream::new(t0);
    let p = publication(1);
    let ptr = p.data.as_bytes().as_ptr();
    let mut fanout = p.clone();
    fanout.offset = s.append(p, &opts(10, HOUR), t0);
    let stored = s.read(None, 1, false, t0).unwrap().remove(0);
    assert_eq!(stored, fanout);
    assert_eq!(stored.offset, 1);
    assert_eq!(stored.data.as_bytes().as_ptr(), ptr);
    assert_eq!(fanout.data.as_bytes().as_ptr(), ptr);
}

#[test]
fn options_from_channel_options() {
    let base = ChannelOptions {
        history_size: 100,
        history_ttl_secs: 300,
        history_meta_ttl_secs: 3600,
        ..ChannelOptions::default()
    };
    assert_eq!(
        StreamOptions::from_channel_options(&base),
        Some(StreamOptions { size: 100, ttl: secs(300), meta_ttl: secs(3600) })
    );
    assert_eq!(StreamOptions::from_channel_options(&ChannelOptions { history_size: 0, ..base.clone() }), None);
    assert_eq!(StreamOptions::from_channel_options(&ChannelOptions { history_ttl_secs: 0, ..base.clone() }), None);
    // Meta never expires before the data it describes.
    assert_eq!(
        StreamOptions::from_channel_options(&ChannelOptions { history_meta_ttl_secs: 10, ..base.clone() })
            .map(|o| o.meta_ttl),
        Some(secs(300))
    );
}

// ----------------------------------------------------------------- proptest

#[derive(Clone, Debug)]
enum Op {
    Append { size: usize },
    Advance { secs: u64 },
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0usize..8).prop_map(|size| Op::Append { size }),
        3 => (0u64..6).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Clear),
    ]
}

proptest! {
    /// Against a naive model (a Vec of every retained offset and its time),
    /// `recover` returns exactly the contiguous suffix after `since` when the
    /// model says the whole gap is retained and within the limit, and
    /// `NotRecovered` otherwise; forward reads are either an error or a
    /// contiguous run starting right after `since`.
    #[test]
    fn recover_is_all_or_nothing(
        ops in prop::collection::vec(op(), 0..60),
        ttl_secs in 1u64..20,
        since_back in 0u64..12,
        max in 0usize..12,
        limit in 0usize..12,
        same_epoch in prop::bool::weighted(0.9),
    ) {
        let t0 = Instant::now();
        let ttl = secs(ttl_secs);
        let mut now = t0;
        let mut s = Stream::new(t0);
        let mut model: Vec<(u64, Instant)> = Vec::new();
        let mut top = 0u64;
        for op in &ops {
            match *op {
                Op::Append { size } => {
                    top += 1;
                    let o = StreamOptions { size, ttl, meta_ttl: HOUR };
                    prop_assert_eq!(s.append(publication(top), &o, now), top);
                    model.push((top, now));
                    while model.len() > size {
                        model.remove(0);
                    }
                }
                Op::Advance { secs: n } => now += secs(n),
                Op::Clear => {
                    s.clear();
                    model.clear();
                }
            }
            model.retain(|&(_, at)| now.duration_since(at) < ttl);
        }
        prop_assert_eq!(s.top_offset(), top);

        // Positions from a little ahead of the top back to well before it.
        let since = (top + 2).saturating_sub(since_back);
        let epoch = if same_epoch { s.epoch().to_owned() } else { "other".to_owned() };
        let retained = |o: u64| model.iter().any(|&(m, _)| m == o);

        let whole_gap = since <= top && (since + 1..=top).all(retained);
        let want = (same_epoch && whole_gap && top - since <= max as u64)
            .then(|| (since + 1..=top).collect::<Vec<_>>());
        match s.recover(&pos(since, &epoch), max, now) {
            Recovery::Recovered(pubs) => {
                prop_assert_eq!(Some(offsets(&pubs)), want);
                for p in &pubs {
                    prop_assert_eq!(p, &with_offset(publication(p.offset)));
                }
            }
            Recovery::NotRecovered => prop_assert_eq!(None, want),
        }

        let epoch_ok = same_epoch;
        match s.read(Some(&pos(since, &epoch)), limit, false, now) {
            Ok(pubs) => {
                prop_assert!(epoch_ok && whole_gap);
                let want: Vec<u64> = (since + 1..=top).take(limit).collect();
                prop_assert_eq!(offsets(&pubs), want);
            }
            Err(HistoryError::UnrecoverablePosition) => prop_assert!(!(epoch_ok && whole_gap)),
        }

        // Without `since`: exactly the model's window, both directions.
        let all: Vec<u64> = model.iter().map(|&(o, _)| o).collect();
        let fwd = s.read(None, limit, false, now).unwrap();
        prop_assert_eq!(offsets(&fwd), all.iter().copied().take(limit).collect::<Vec<_>>());
        let rev = s.read(None, limit, true, now).unwrap();
        prop_assert_eq!(offsets(&rev), all.iter().rev().copied().take(limit).collect::<Vec<_>>());
    }
}
