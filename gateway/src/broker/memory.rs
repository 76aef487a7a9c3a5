//! The single-node memory engine, with history in memory or on disk.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::durable::{DiskOptions, Durable, Job};
use super::{Delivery, EngineError};
use crate::history::{HistoryError, Recovery, StoreError, Stream, StreamOptions};
use crate::protocol::{ClientInfo, Publication, StreamPosition};

/// Per-channel state: the optional history stream, behind the lock that
/// orders publishes and subscribes of that channel.
#[derive(Default)]
pub(super) struct Cell {
    pub(super) stream: Option<Stream>,
    /// Disk history: appends with an offset reserved and queued for the
    /// writer, not yet committed and applied to `stream`.
    pub(super) pending: u64,
    /// Disk history: bumped when a queued append fails, which voids every
    /// offset reserved after it (the writer refuses those), so the next
    /// reservation starts again right after the stored top.
    pub(super) generation: u64,
    /// Disk history: the stream's epoch is stored.
    pub(super) persisted: bool,
}

/// The channels and the node's delivery, shared with the disk writer.
pub(super) struct Inner {
    cells: DashMap<Box<str>, Arc<Mutex<Cell>>>,
    pub(super) delivery: Arc<dyn Delivery>,
}

impl Inner {
    pub(super) fn cell(&self, channel: &str) -> Arc<Mutex<Cell>> {
        if let Some(cell) = self.cells.get(channel) {
            return cell.clone();
        }
        self.cells.entry(channel.into()).or_default().clone()
    }
}

/// The memory engine. With memory history a new process starts every stream
/// with a new epoch, so clients from before a restart are told their position
/// is gone. With disk history (see [`super::durable`]) streams, epochs and
/// offsets survive restarts, and a publish is acknowledged (and delivered)
/// only after it is committed under the fsync policy.
pub struct MemoryBroker {
    inner: Arc<Inner>,
    pub(super) durable: Option<Durable>,
}

/// An idempotency key recovered from disk: `(channel, key)`, the position its
/// publish got, and how long it remains valid.
pub type RecoveredKey = ((String, String), StreamPosition, Duration);

/// The view of a channel that a subscribe hands the caller while the channel
/// is locked: the memory engine's live stream, or what the Redis engine read
/// for this subscriber.
pub struct SubscribeView<'a> {
    inner: View<'a>,
}

enum View<'a> {
    Live { stream: Option<&'a mut Stream>, now: Instant },
    Prefetched { position: Option<StreamPosition>, recovery: Option<Recovery> },
}

impl SubscribeView<'_> {
    /// A view of positions read beforehand (the Redis engine).
    pub(super) fn prefetched(position: Option<StreamPosition>, recovery: Option<Recovery>) -> Self {
        Self { inner: View::Prefetched { position, recovery } }
    }

    /// The stream top, when the channel keeps history.
    pub fn position(&self) -> Option<StreamPosition> {
        match &self.inner {
            View::Live { stream, .. } => stream.as_ref().map(|s| s.position()),
            View::Prefetched { position, .. } => position.clone(),
        }
    }

    /// Recovery from `since`; `NotRecovered` when the channel keeps no history.
    /// A prefetched view answers for the position given to the engine's
    /// subscribe, whatever `since` is.
    pub fn recover(&mut self, since: &StreamPosition, max: usize) -> Recovery {
        match &mut self.inner {
            View::Live { stream, now } => match stream.as_deref_mut() {
                Some(stream) => stream.recover(since, max, *now),
                None => Recovery::NotRecovered,
            },
            View::Prefetched { recovery, .. } => recovery.take().unwrap_or(Recovery::NotRecovered),
        }
    }
}

impl MemoryBroker {
    pub fn new(delivery: Arc<dyn Delivery>) -> Self {
        Self { inner: Arc::new(Inner { cells: DashMap::new(), delivery }), durable: None }
    }

    /// A memory engine whose disk-history channels live in the store under
    /// `options.dir`: opens and verifies it, restores its streams and starts
    /// the writer thread. Returns the idempotency keys still valid.
    pub fn with_disk(
        delivery: Arc<dyn Delivery>,
        options: DiskOptions,
    ) -> Result<(Self, Vec<RecoveredKey>), StoreError> {
        let inner = Arc::new(Inner { cells: DashMap::new(), delivery });
        let (durable, restored, keys) = Durable::start(inner.clone(), options)?;
        for (channel, stream) in restored {
            let cell = Cell { stream: Some(stream), persisted: true, ..Cell::default() };
            inner.cells.insert(channel.into(), Arc::new(Mutex::new(cell)));
        }
        Ok((Self { inner, durable: Some(durable) }, keys))
    }

    fn cell(&self, channel: &str) -> Arc<Mutex<Cell>> {
        self.inner.cell(channel)
    }

    /// The disk writer, when `channel` keeps its history on disk.
    fn durable_for(&self, channel: &str, history: Option<&StreamOptions>) -> Option<&Durable> {
        self.durable.as_ref().filter(|d| history.is_some() && d.is_disk(channel))
    }

    /// False while the disk store fails to write (disk full, read-only).
    pub fn ready(&self) -> bool {
        self.durable.as_ref().is_none_or(|d| d.healthy())
    }

    /// Publishes like [`publish`](Self::publish); for disk-history channels
    /// the publication is committed under the fsync policy first and only
    /// then appended, delivered and acknowledged. `idempotency` (key, TTL)
    /// is stored with it.
    pub async fn publish_async(
        &self,
        channel: &str,
        mut publication: Publication,
        history: Option<&StreamOptions>,
        idempotency: Option<(String, Duration)>,
        exclude: Option<&str>,
    ) -> Result<StreamPosition, EngineError> {
        let (Some(durable), Some(opts)) = (self.durable_for(channel, history), history) else {
            return Ok(self.publish(channel, publication, history, exclude));
        };
        let now = Instant::now();
        // Reserve the offset and queue the append under the channel lock, so
        // appends reach the writer in offset order; wait for the fsync
        // outside it, so the lock is never held across disk I/O.
        let (ack, position) = {
            let cell = self.cell(channel);
            let mut cell = cell.lock();
            prepare(&mut cell, Some(opts), now);
            let stream = cell.stream.as_ref().expect("history options create the stream");
            let offset = stream.top_offset() + cell.pending + 1;
            let epoch = stream.epoch().to_owned();
            publication.offset = offset;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let job = Job::Append {
                channel: channel.to_owned(),
                epoch: epoch.clone(),
                publication,
                options: *opts,
                generation: cell.generation,
                idempotency: idempotency.map(|(key, ttl)| (key, super::durable::unix_ms() + ttl.as_millis() as u64)),
                exclude: exclude.map(str::to_owned),
                ack: tx,
            };
            durable.send(job)?;
            cell.pending += 1;
            (rx, StreamPosition { offset, epoch })
        };
        durable.wait(ack).await?;
        Ok(position)
    }

    /// For a disk-history channel, makes sure its stream's epoch is stored
    /// before anyone is told it (subscribe, history), so that a restart
    /// cannot hand out a different epoch for the same stream.
    pub async fn ensure_stored(&self, channel: &str, history: &StreamOptions) -> Result<(), EngineError> {
        let Some(durable) = self.durable_for(channel, Some(history)) else { return Ok(()) };
        let (ack, epoch) = {
            let cell = self.cell(channel);
            let mut cell = cell.lock();
            prepare(&mut cell, Some(history), Instant::now());
            if cell.persisted {
                return Ok(());
            }
            let epoch = cell.stream.as_ref().expect("history options create the stream").epoch().to_owned();
            let (tx, rx) = tokio::sync::oneshot::channel();
            durable.send(Job::Create {
                channel: channel.to_owned(),
                epoch: epoch.clone(),
                options: *history,
                ack: tx,
            })?;
            (rx, epoch)
        };
        durable.wait(ack).await?;
        let cell = self.cell(channel);
        let mut cell = cell.lock();
        if cell.stream.as_ref().is_some_and(|s| s.epoch() == epoch) {
            cell.persisted = true;
        }
        Ok(())
    }

    /// [`remove_history`](Self::remove_history), also on disk for a
    /// disk-history channel.
    pub async fn remove_history_async(&self, channel: &str, history: &StreamOptions) -> Result<(), EngineError> {
        let Some(durable) = self.durable_for(channel, Some(history)) else {
            self.remove_history(channel);
            return Ok(());
        };
        let ack = {
            let cell = self.cell(channel);
            let mut cell = cell.lock();
            if let Some(stream) = cell.stream.as_mut() {
                stream.clear();
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            durable.send(Job::Clear { channel: channel.to_owned(), ack: tx })?;
            rx
        };
        durable.wait(ack).await
    }

    /// Locks `channel`'s stream (creating it when `history` is set), dropping a
    /// stream whose metadata expired: continuity is lost and a new epoch
    /// starts.
    fn with_stream<R>(
        &self,
        channel: &str,
        history: Option<&StreamOptions>,
        now: Instant,
        f: impl FnOnce(Option<&mut Stream>) -> R,
    ) -> R {
        let cell = self.cell(channel);
        let mut cell = cell.lock();
        prepare(&mut cell, history, now);
        f(cell.stream.as_mut())
    }

    /// Publishes: appends to history when `history` is set (assigning the
    /// offset), then delivers, all under the channel lock. Returns the new
    /// stream position (empty without history).
    pub fn publish(
        &self,
        channel: &str,
        mut publication: Publication,
        history: Option<&StreamOptions>,
        exclude: Option<&str>,
    ) -> StreamPosition {
        let now = Instant::now();
        self.with_stream(channel, history, now, |stream| match (stream, history) {
            (Some(stream), Some(opts)) => {
                let offset = stream.append(publication.clone(), opts, now);
                publication.offset = offset;
                self.inner.delivery.publication(channel, &publication, exclude);
                StreamPosition { offset, epoch: stream.epoch().to_owned() }
            }
            _ => {
                self.inner.delivery.publication(channel, &publication, exclude);
                StreamPosition::default()
            }
        })
    }

    pub fn join(&self, channel: &str, info: &ClientInfo) {
        let _guard = self.cell(channel);
        let _lock = _guard.lock();
        self.inner.delivery.join(channel, info);
    }

    pub fn leave(&self, channel: &str, info: &ClientInfo) {
        let _guard = self.cell(channel);
        let _lock = _guard.lock();
        self.inner.delivery.leave(channel, info);
    }

    /// Runs `f` with the channel locked, so that whatever `f` registers sees
    /// exactly the publications after the position it read.
    pub fn subscribe<R>(
        &self,
        channel: &str,
        history: Option<&StreamOptions>,
        f: impl FnOnce(SubscribeView<'_>) -> R,
    ) -> R {
        let now = Instant::now();
        self.with_stream(channel, history, now, |stream| f(SubscribeView { inner: View::Live { stream, now } }))
    }

    /// Reads history. Returns the publications and the current top.
    pub fn history(
        &self,
        channel: &str,
        history: &StreamOptions,
        since: Option<&StreamPosition>,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Publication>, StreamPosition), HistoryError> {
        let now = Instant::now();
        self.with_stream(channel, Some(history), now, |stream| {
            let stream = stream.expect("history options create the stream");
            let pubs = stream.read(since, limit, reverse, now)?;
            Ok((pubs, stream.position()))
        })
    }

    /// Drops a channel's publications, keeping its epoch and top offset.
    pub fn remove_history(&self, channel: &str) {
        let Some(cell) = self.inner.cells.get(channel).map(|c| c.clone()) else { return };
        if let Some(stream) = cell.lock().stream.as_mut() {
            stream.clear();
        }
    }

    /// Forgets channels that keep no history and streams whose metadata
    /// expired. `is_active` says whether a channel still has subscribers.
    pub fn sweep(&self, is_active: impl Fn(&str) -> bool) {
        let now = Instant::now();
        self.inner.cells.retain(|name, cell| {
            if is_active(name) {
                return true;
            }
            // try_lock: a busy channel is in use; look again next sweep.
            match cell.try_lock() {
                // Queued disk appends still need their cell.
                Some(c) if c.pending > 0 => true,
                Some(mut c) => match c.stream.as_mut() {
                    Some(stream) => {
                        stream.remove_expired(now);
                        !stream.is_meta_expired(now)
                    }
                    None => false,
                },
                None => true,
            }
        });
    }

    pub fn num_channels(&self) -> usize {
        self.inner.cells.len()
    }
}

/// Drops a stream whose metadata expired (continuity is lost: a new epoch
/// starts) and creates the stream when `history` is set.
fn prepare(cell: &mut Cell, history: Option<&StreamOptions>, now: Instant) {
    // A stream with queued disk appends was written just now: it cannot be
    // meta-expired, and replacing it would orphan those appends.
    if cell.pending == 0 && cell.stream.as_ref().is_some_and(|s| s.is_meta_expired(now)) {
        cell.stream = None;
        cell.persisted = false;
    }
    if let Some(opts) = history {
        // A stream created by a subscribe or read must still meta-expire.
        cell.stream.get_or_insert_with(|| Stream::new(now)).touch(opts, now);
    }
}
