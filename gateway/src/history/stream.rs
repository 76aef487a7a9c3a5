//! [`Stream`]: one channel's bounded publication window, top offset and epoch.

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;
use tokio::time::Instant;

use crate::config::ChannelOptions;
use crate::protocol::{ErrorCode, Publication, StreamPosition};

/// Length of a generated epoch. Eight characters of `[a-zA-Z0-9]` give 62^8
/// (about 2^47) values, so a recreated stream reusing an old epoch — which
/// would let a client "recover" across a lost stream — is not a practical risk.
const EPOCH_LEN: usize = 8;

/// Retention settings for one channel's stream, resolved from its namespace.
///
/// Passed to [`Stream::append`] (and [`Stream::touch`]) on every call rather
/// than stored once, so a configuration reload applies to existing streams
/// from their next append on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Most publications kept. 0 keeps none (offsets still advance).
    pub size: usize,
    /// How long each publication is kept after it was appended.
    pub ttl: Duration,
    /// How long the epoch and top offset outlive the last append.
    pub meta_ttl: Duration,
}

impl StreamOptions {
    /// Returns the stream options of a namespace, or `None` when history is
    /// disabled there (`history_size` or `history_ttl_secs` is zero).
    ///
    /// `meta_ttl` is raised to at least `ttl`: the broker drops a whole
    /// stream when its meta expires, and doing so while it still holds live
    /// publications would silently shorten the configured retention.
    pub fn from_channel_options(o: &ChannelOptions) -> Option<Self> {
        if o.history_size == 0 || o.history_ttl_secs == 0 {
            return None;
        }
        let ttl = Duration::from_secs(o.history_ttl_secs);
        let meta_ttl = Duration::from_secs(o.history_meta_ttl_secs).max(ttl);
        Some(Self { size: o.history_size, ttl, meta_ttl })
    }
}

/// Why a history read was refused. Maps to protocol error 112.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The requested position belongs to another epoch, lies ahead of the
    /// top, or needs publications the stream no longer holds.
    #[error("unrecoverable position")]
    UnrecoverablePosition,
}

impl From<HistoryError> for ErrorCode {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::UnrecoverablePosition => ErrorCode::UnrecoverablePosition,
        }
    }
}

/// The outcome of [`Stream::recover`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Recovery {
    /// Every missed publication, in offset order (empty when nothing was
    /// missed). The subscribe reply carries them with `recovered: true`.
    Recovered(Vec<Publication>),
    /// The gap cannot be filled completely; the client gets
    /// `recovered: false` and no publications.
    NotRecovered,
}

#[derive(Debug)]
struct Entry {
    publication: Publication,
    /// Never earlier than the previous entry's (see [`Stream::append`]), so
    /// expiry always removes a prefix and the window stays contiguous.
    appended_at: Instant,
}

/// One channel's history: a contiguous window of the newest publications,
/// the top offset and the epoch.
///
/// Invariant: `entries` holds exactly the offsets
/// `top - entries.len() + 1 ..= top`, in order. Trimming (by size or TTL) and
/// [`clear`](Self::clear) only ever remove from the front or everything, so a
/// retained window never has holes; every read and recovery relies on this to
/// turn offsets into indices.
///
/// TTL expiry is lazy: entries past their TTL are dropped by every method
/// that takes `now` (and by [`remove_expired`](Self::remove_expired), for a
/// sweeper), and are never returned.
#[derive(Debug)]
pub struct Stream {
    entries: VecDeque<Entry>,
    top: u64,
    epoch: String,
    /// Entry TTL from the latest append or touch; applies to all entries.
    ttl: Duration,
    /// `None` until the first append or touch: such a stream never
    /// meta-expires on its own (see [`is_meta_expired`](Self::is_meta_expired)).
    meta_ttl: Option<Duration>,
    /// Creation, or the latest append or touch; meta expiry counts from here.
    last_write: Instant,
}

impl Stream {
    /// Returns a new empty stream (top offset 0) with a fresh random epoch of
    /// 8 characters from `[a-zA-Z0-9]`.
    ///
    /// The stream does not meta-expire until its first
    /// [`append`](Self::append) or [`touch`](Self::touch), because it does not
    /// know `meta_ttl` before then. A broker that creates streams on read
    /// paths (subscribe, history) should `touch` them so that channels that
    /// are never published to are eventually dropped.
    pub fn new(now: Instant) -> Self {
        let epoch = rand::rng().sample_iter(Alphanumeric).take(EPOCH_LEN).map(char::from).collect();
        Self { entries: VecDeque::new(), top: 0, epoch, ttl: Duration::ZERO, meta_ttl: None, last_write: now }
    }

    /// Rebuilds a stream from stored parts (the Redis engine): `entries` are
    /// the retained suffix ending at `top`, in offset order, each with its
    /// age; their offsets are implied by `top`. Entries older than `ttl` are
    /// dropped by the next call taking `now`.
    pub fn restore(
        epoch: String,
        top: u64,
        entries: impl IntoIterator<Item = (Publication, Duration)>,
        ttl: Duration,
        now: Instant,
    ) -> Self {
        let entries: VecDeque<Entry> = entries
            .into_iter()
            .map(|(publication, age)| Entry { publication, appended_at: now.checked_sub(age).unwrap_or(now) })
            .collect();
        debug_assert!(entries.len() as u64 <= top);
        Self { entries, top, epoch, ttl, meta_ttl: None, last_write: now }
    }

    /// Returns the epoch; a different epoch means a different stream.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Returns the offset of the newest publication ever appended in this
    /// epoch (0 before the first), whether or not it is still retained.
    pub fn top_offset(&self) -> u64 {
        self.top
    }

    /// Returns the stream position `{offset: top, epoch}` for subscribe and
    /// history replies.
    pub fn position(&self) -> StreamPosition {
        StreamPosition { offset: self.top, epoch: self.epoch.clone() }
    }

    /// Returns how many publications are retained. May include entries whose
    /// TTL has passed but which no call taking `now` has pruned yet.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Returns true when no publication is retained (see [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends `publication`, assigning it offset `top + 1` (written into
    /// `publication.offset`), and returns that offset.
    ///
    /// Then trims to `opts.size`, drops entries whose age reached `opts.ttl`,
    /// and restarts the meta expiry (`now + opts.meta_ttl`). `opts` becomes the
    /// stream's current TTL for all retained entries.
    ///
    /// The publication is moved in, not copied; a caller that also fans it
    /// out clones it first (its `data` is shared, not copied) and sets the
    /// returned offset on its copy.
    ///
    /// `now` should not go backwards between calls; if it does (two tasks
    /// racing for the channel lock with instants taken before locking), the
    /// entry is timestamped as no older than its predecessor, which keeps the
    /// window contiguous at the cost of an entry living marginally longer.
    pub fn append(&mut self, mut publication: Publication, opts: &StreamOptions, now: Instant) -> u64 {
        self.top += 1;
        publication.offset = self.top;
        self.ttl = opts.ttl;
        self.meta_ttl = Some(opts.meta_ttl);
        self.last_write = self.last_write.max(now);

        if opts.size == 0 {
            self.release();
        } else {
            while self.entries.len() >= opts.size {
                self.entries.pop_front();
            }
            // Grow by doubling but never past `size`: a full stream then sits
            // at exactly its configured capacity instead of the next power
            // of two.
            let len = self.entries.len();
            if len == self.entries.capacity() {
                let want = (len * 2).max(4).min(opts.size);
                self.entries.reserve_exact(want - len);
            }
            let appended_at = self.entries.back().map_or(now, |e| e.appended_at.max(now));
            self.entries.push_back(Entry { publication, appended_at });
        }
        self.remove_expired(now);
        self.top
    }

    /// Reads history.
    ///
    /// Without `since`: `reverse == false` returns the oldest retained
    /// entries first, `reverse == true` the newest first; at most `limit`.
    ///
    /// With `since`:
    /// - `reverse == false` returns entries with offset `> since.offset`,
    ///   oldest first, at most `limit`. `since.offset` must be within
    ///   `[oldest retained - 1, top]`; otherwise the answer would start with
    ///   a gap (or lie in the future) and the read fails.
    /// - `reverse == true` returns entries with offset `< since.offset`,
    ///   newest first, at most `limit`. `since.offset` of 0 or `top + 1`
    ///   means "from the top". The newest entry asked for (`since.offset -
    ///   1`) must still be retained, and `since.offset` must not exceed
    ///   `top + 1`. Running into the oldest retained entry before `limit` is
    ///   reached is the natural end of history, not an error.
    /// - `since.epoch` is checked only when non-empty, so a client can read
    ///   by offset without knowing the epoch.
    ///
    /// `limit == 0` returns no publications (the caller replies with the
    /// position only), but `since` is still validated, so a client can check
    /// a position cheaply. The caller applies its own maximum (Centrifugo's
    /// `history_max_publication_limit`) before calling; `usize::MAX` means
    /// unlimited.
    ///
    /// # Errors
    ///
    /// [`HistoryError::UnrecoverablePosition`] as described above. A read
    /// never returns a partial answer instead of an error.
    pub fn read(
        &mut self,
        since: Option<&StreamPosition>,
        limit: usize,
        reverse: bool,
        now: Instant,
    ) -> Result<Vec<Publication>, HistoryError> {
        self.remove_expired(now);
        let front = self.front_offset();
        // Inclusive offsets [first, last]; empty when first > last.
        let (first, last) = match since {
            None => (front, self.top),
            Some(pos) => {
                if !pos.epoch.is_empty() && pos.epoch != self.epoch {
                    return Err(HistoryError::UnrecoverablePosition);
                }
                if reverse {
                    let last = match pos.offset {
                        0 => self.top,
                        o if o - 1 <= self.top => o - 1,
                        _ => return Err(HistoryError::UnrecoverablePosition),
                    };
                    if last != 0 && last < front {
                        return Err(HistoryError::UnrecoverablePosition);
                    }
                    (front, last)
                } else {
                    if pos.offset > self.top || pos.offset < front - 1 {
                        return Err(HistoryError::UnrecoverablePosition);
                    }
                    (pos.offset + 1, self.top)
                }
            }
        };
        if limit == 0 || first > last {
            return Ok(Vec::new());
        }
        let range = self.index(first)..=self.index(last);
        let n = limit.min(range.end() - range.start() + 1);
        let mut out = Vec::with_capacity(n);
        if reverse {
            out.extend(self.entries.range(range).rev().take(n).map(|e| e.publication.clone()));
        } else {
            out.extend(self.entries.range(range).take(n).map(|e| e.publication.clone()));
        }
        Ok(out)
    }

    /// Decides a resubscribe with `recover: true` from position `since`.
    ///
    /// Returns [`Recovery::Recovered`] with every publication in
    /// `(since.offset, top]`, in offset order, iff all of these hold:
    /// - `since.epoch` equals this stream's epoch. Unlike [`read`](Self::read),
    ///   an empty epoch does not match: a client that never saw an epoch
    ///   cannot claim continuity.
    /// - `since.offset <= top`;
    /// - no publication in the gap was trimmed by size, expired by TTL or
    ///   removed by [`clear`](Self::clear);
    /// - the gap holds at most `max_publications` (Centrifugo's
    ///   `recovery_max_publication_limit`; 0 allows only an empty gap).
    ///
    /// Otherwise returns [`Recovery::NotRecovered`]: never a partial replay.
    pub fn recover(&mut self, since: &StreamPosition, max_publications: usize, now: Instant) -> Recovery {
        self.remove_expired(now);
        if since.epoch != self.epoch || since.offset > self.top {
            return Recovery::NotRecovered;
        }
        let missed = self.top - since.offset;
        if missed > u64::try_from(max_publications).unwrap_or(u64::MAX) {
            return Recovery::NotRecovered;
        }
        if missed == 0 {
            return Recovery::Recovered(Vec::new());
        }
        if since.offset + 1 < self.front_offset() {
            return Recovery::NotRecovered;
        }
        let start = self.index(since.offset + 1);
        Recovery::Recovered(self.entries.range(start..).map(|e| e.publication.clone()).collect())
    }

    /// Drops all publications (`history_remove`), keeping the epoch and the
    /// top offset: the next append continues at `top + 1`, and clients
    /// behind the top can no longer recover.
    pub fn clear(&mut self) {
        self.release();
    }

    /// Restarts the meta expiry (`now + opts.meta_ttl`) and adopts `opts.ttl`
    /// without appending. For streams the broker creates or revives on a
    /// read path; see [`new`](Self::new).
    pub fn touch(&mut self, opts: &StreamOptions, now: Instant) {
        self.ttl = opts.ttl;
        self.meta_ttl = Some(opts.meta_ttl);
        self.last_write = self.last_write.max(now);
    }

    /// Returns true once `meta_ttl` has passed since the last append (or
    /// touch). The broker then drops the stream; a replacement gets a new
    /// epoch, which is how clients learn that continuity was lost.
    ///
    /// A stream that was never appended to or touched never meta-expires.
    /// Expiry is inclusive: at exactly `last write + meta_ttl` it has expired.
    pub fn is_meta_expired(&self, now: Instant) -> bool {
        self.meta_ttl.is_some_and(|ttl| now.saturating_duration_since(self.last_write) >= ttl)
    }

    /// Drops publications whose age reached the TTL and returns how many.
    ///
    /// Every method taking `now` does this first; a broker sweeper can call
    /// it so that idle channels release their payloads before their meta
    /// expires. Expiry is inclusive: an entry appended at `t` with TTL `d`
    /// is gone at `t + d`.
    pub fn remove_expired(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        while self.entries.front().is_some_and(|e| now.saturating_duration_since(e.appended_at) >= self.ttl) {
            self.entries.pop_front();
        }
        let removed = before - self.entries.len();
        if removed > 0 && self.entries.is_empty() {
            // An idle stream can live for the whole meta TTL (30 days by
            // default); do not keep its ring buffer allocated meanwhile.
            self.release();
        }
        removed
    }

    /// Offset of the oldest retained entry; `top + 1` when none is retained.
    fn front_offset(&self) -> u64 {
        self.top + 1 - self.entries.len() as u64
    }

    /// Index into `entries` of a retained `offset`.
    fn index(&self, offset: u64) -> usize {
        debug_assert!(offset >= self.front_offset() && offset <= self.top);
        // Bounded by `entries.len()`, so the cast cannot truncate.
        (offset - self.front_offset()) as usize
    }

    /// Drops all entries and their buffer.
    fn release(&mut self) {
        self.entries = VecDeque::new();
    }
}
