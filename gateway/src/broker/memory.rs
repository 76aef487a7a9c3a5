//! The single-node memory engine.

use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::Delivery;
use crate::history::{HistoryError, Recovery, Stream, StreamOptions};
use crate::protocol::{ClientInfo, Publication, StreamPosition};

/// Per-channel state: the optional history stream, behind the lock that
/// orders publishes and subscribes of that channel.
#[derive(Default)]
struct Cell {
    stream: Option<Stream>,
}

/// The memory engine. A new process starts every stream with a new epoch, so
/// clients from before a restart are told their position is gone.
pub struct MemoryBroker {
    cells: DashMap<Box<str>, Arc<Mutex<Cell>>>,
    delivery: Arc<dyn Delivery>,
}

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
        Self { cells: DashMap::new(), delivery }
    }

    fn cell(&self, channel: &str) -> Arc<Mutex<Cell>> {
        if let Some(cell) = self.cells.get(channel) {
            return cell.clone();
        }
        self.cells.entry(channel.into()).or_default().clone()
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
        if cell.stream.as_ref().is_some_and(|s| s.is_meta_expired(now)) {
            cell.stream = None;
        }
        if let Some(opts) = history {
            // A stream created by a subscribe or read must still meta-expire.
            cell.stream.get_or_insert_with(|| Stream::new(now)).touch(opts, now);
        }
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
                self.delivery.publication(channel, &publication, exclude);
                StreamPosition { offset, epoch: stream.epoch().to_owned() }
            }
            _ => {
                self.delivery.publication(channel, &publication, exclude);
                StreamPosition::default()
            }
        })
    }

    pub fn join(&self, channel: &str, info: &ClientInfo) {
        let _guard = self.cell(channel);
        let _lock = _guard.lock();
        self.delivery.join(channel, info);
    }

    pub fn leave(&self, channel: &str, info: &ClientInfo) {
        let _guard = self.cell(channel);
        let _lock = _guard.lock();
        self.delivery.leave(channel, info);
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
        let Some(cell) = self.cells.get(channel).map(|c| c.clone()) else { return };
        if let Some(stream) = cell.lock().stream.as_mut() {
            stream.clear();
        }
    }

    /// Forgets channels that keep no history and streams whose metadata
    /// expired. `is_active` says whether a channel still has subscribers.
    pub fn sweep(&self, is_active: impl Fn(&str) -> bool) {
        let now = Instant::now();
        self.cells.retain(|name, cell| {
            if is_active(name) {
                return true;
            }
            // try_lock: a busy channel is in use; look again next sweep.
            match cell.try_lock() {
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
        self.cells.len()
    }
}
