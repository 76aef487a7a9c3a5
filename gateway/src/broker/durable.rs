//! Disk history for the memory engine: the writer thread and its queue.
//!
//! # Ordering and acknowledgement
//!
//! A publish to a disk-history channel reserves its offset and queues the
//! append under the channel lock (so appends reach the queue in offset
//! order), then releases the lock and waits. One writer thread takes queued
//! jobs in order, commits them to the [`DiskStore`] in one transaction (one
//! fsync: a group commit), and only then, job by job and under each channel
//! lock, appends them to the in-memory stream, delivers them to subscribers
//! and acknowledges the publisher. So:
//! - the per-channel lock is never held across disk I/O;
//! - nobody (subscriber, history reader, resuming client) ever sees a
//!   publication that is not on disk, so after a crash no offset can come
//!   back with different data;
//! - a failed commit fails its publishes (error 100), and voids the offsets
//!   reserved after them on the same channel ([`Cell::generation`]): the
//!   writer refuses any append that is not exactly `stored top + 1`.
//!
//! `engine.history_fsync`: `always` commits whatever is queued as soon as the
//! writer is free; `{ batch_ms = N }` waits up to N ms after the first job to
//! gather more. Either way a publish is acked only after its commit's fsync.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::EngineError;
use super::memory::{Inner, RecoveredKey};
use crate::config::{FsyncPolicy, StorageRecover};
use crate::history::{DiskStore, Retention, StoreError, StoreOp, Stream, StreamOptions};
use crate::protocol::{Publication, StreamPosition};

/// Most jobs in one commit: bounds a transaction's size and the delay of the
/// first job behind a burst.
const MAX_BATCH: usize = 1024;

/// How the memory engine's disk history is set up.
pub struct DiskOptions {
    pub dir: PathBuf,
    pub recover: StorageRecover,
    pub fsync: FsyncPolicy,
    /// Bound of the writer queue (`engine.history_storage_max_pending`).
    pub max_pending: usize,
    pub compact_interval: Duration,
    /// Whether a channel keeps its history on disk (its namespace's setting).
    pub is_disk: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

/// Work for the writer thread. Each carries its acknowledgement.
#[allow(clippy::large_enum_variant)] // appends are nearly every op: boxing them costs an allocation each
pub(super) enum Job {
    Append {
        channel: String,
        epoch: String,
        /// With its reserved offset.
        publication: Publication,
        options: StreamOptions,
        generation: u64,
        idempotency: Option<(String, u64)>,
        /// The client that must not get it live (exclude-publisher).
        exclude: Option<String>,
        ack: oneshot::Sender<Result<(), String>>,
    },
    Create {
        channel: String,
        epoch: String,
        options: StreamOptions,
        ack: oneshot::Sender<Result<(), String>>,
    },
    Clear {
        channel: String,
        ack: oneshot::Sender<Result<(), String>>,
    },
}

/// The broker's handle on the writer.
pub(super) struct Durable {
    /// `None` only while dropping.
    tx: Option<SyncSender<Job>>,
    /// Joined on drop, so the store file is closed when the broker is gone
    /// (a restart in the same process can open it again).
    thread: Option<std::thread::JoinHandle<()>>,
    healthy: Arc<AtomicBool>,
    is_disk: Box<dyn Fn(&str) -> bool + Send + Sync>,
    max_pending: usize,
    /// Successful commits (each one fsync).
    #[cfg_attr(not(test), allow(dead_code))] // read by the fsync policy tests only
    commits: Arc<AtomicU64>,
}

/// Unix time in milliseconds (what the store records).
pub(super) fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn retention(o: &StreamOptions) -> Retention {
    Retention { size: o.size, ttl_ms: o.ttl.as_millis() as u64, meta_ttl_ms: o.meta_ttl.as_millis() as u64 }
}

impl Durable {
    /// Opens the store, rebuilds its streams and starts the writer. Returns
    /// the streams (by channel) and the idempotency keys still valid.
    #[allow(clippy::type_complexity)] // (handle, streams, keys): named once, here.
    pub(super) fn start(
        inner: Arc<Inner>,
        options: DiskOptions,
    ) -> Result<(Self, Vec<(String, Stream)>, Vec<RecoveredKey>), StoreError> {
        let (store, loaded) = DiskStore::open(&options.dir, options.recover)?;
        let now = Instant::now();
        let now_ms = unix_ms();
        let mut expected = HashMap::new();
        let mut streams = Vec::new();
        let mut epochs = HashMap::new();
        for s in loaded.streams {
            expected.insert(s.channel.clone(), (s.epoch.clone(), s.top));
            if s.last_write_ms.saturating_add(s.meta_ttl_ms) <= now_ms {
                continue; // meta-expired: compaction deletes it, a new epoch starts
            }
            let ttl = Duration::from_millis(s.ttl_ms);
            let entries = s.entries.into_iter().map(|(p, at)| (p, Duration::from_millis(now_ms.saturating_sub(at))));
            let mut stream = Stream::restore(s.epoch.clone(), s.top, entries, ttl, now);
            let meta_ttl = Duration::from_millis(s.meta_ttl_ms);
            stream.touch(&StreamOptions { size: 1, ttl, meta_ttl }, now);
            epochs.insert(s.channel.clone(), s.epoch);
            streams.push((s.channel, stream));
        }
        let keys = loaded
            .keys
            .into_iter()
            .filter(|k| k.expires_ms > now_ms && epochs.get(&k.channel) == Some(&k.epoch))
            .map(|k| {
                let position = StreamPosition { offset: k.offset, epoch: k.epoch };
                ((k.channel, k.key), position, Duration::from_millis(k.expires_ms - now_ms))
            })
            .collect();
        tracing::info!(dir = %options.dir.display(), streams = streams.len(), "disk history store opened");
        let (tx, rx) = std::sync::mpsc::sync_channel(options.max_pending);
        let healthy = Arc::new(AtomicBool::new(true));
        let commits = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            commits: commits.clone(),
            store,
            rx,
            inner,
            expected,
            fsync: options.fsync,
            compact_interval: options.compact_interval,
            healthy: healthy.clone(),
        };
        // A dedicated OS thread: every commit blocks on fsync, which must not
        // occupy a runtime worker. It ends when the broker (the sender) drops,
        // after committing what is queued.
        let thread = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Open { path: options.dir.display().to_string(), reason: e.to_string() })?;
        let durable = Self {
            tx: Some(tx),
            thread: Some(thread),
            healthy,
            is_disk: options.is_disk,
            max_pending: options.max_pending,
            commits,
        };
        Ok((durable, streams, keys))
    }

    pub(super) fn is_disk(&self, channel: &str) -> bool {
        (self.is_disk)(channel)
    }

    pub(super) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// How many commits (fsyncs) succeeded.
    #[cfg(test)]
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Queues `job` without blocking (callers hold a channel lock).
    pub(super) fn send(&self, job: Job) -> Result<(), EngineError> {
        let tx = self.tx.as_ref().expect("set until drop");
        tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => EngineError::Storage(format!(
                "history storage queue is full (engine.history_storage_max_pending = {})",
                self.max_pending
            )),
            TrySendError::Disconnected(_) => EngineError::Storage("history storage writer stopped".into()),
        })
    }

    /// Waits for a job's commit.
    pub(super) async fn wait(&self, ack: oneshot::Receiver<Result<(), String>>) -> Result<(), EngineError> {
        match ack.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(EngineError::Storage(e)),
            Err(_) => Err(EngineError::Storage("history storage writer stopped".into())),
        }
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        // Closing the queue ends the writer after it committed what is queued.
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Writer {
    store: DiskStore,
    rx: Receiver<Job>,
    inner: Arc<Inner>,
    /// Per channel, the stored epoch and top offset: an append is committed
    /// only when it is exactly the next offset of the stored stream (or
    /// offset 1 of a new epoch).
    expected: HashMap<String, (String, u64)>,
    fsync: FsyncPolicy,
    compact_interval: Duration,
    healthy: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self) {
        let mut next_compaction = std::time::Instant::now() + self.compact_interval;
        loop {
            let wait = next_compaction.saturating_duration_since(std::time::Instant::now());
            let first = match self.rx.recv_timeout(wait) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if let Some(first) = first {
                let batch = self.gather(first);
                self.commit(batch);
            }
            if std::time::Instant::now() >= next_compaction {
                self.compact();
                next_compaction = std::time::Instant::now() + self.compact_interval;
            }
        }
    }

    /// The first job and whatever joins it under the fsync policy.
    fn gather(&self, first: Job) -> Vec<Job> {
        let mut batch = vec![first];
        match self.fsync {
            FsyncPolicy::Always => {
                while batch.len() < MAX_BATCH
                    && let Ok(job) = self.rx.try_recv()
                {
                    batch.push(job);
                }
            }
            FsyncPolicy::BatchMs(ms) => {
                let deadline = std::time::Instant::now() + Duration::from_millis(ms);
                while batch.len() < MAX_BATCH {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match self.rx.recv_timeout(left) {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
            }
        }
        batch
    }

    fn commit(&mut self, batch: Vec<Job>) {
        let now_ms = unix_ms();
        let mut tentative: HashMap<String, (String, u64)> = HashMap::new();
        let mut ops = Vec::with_capacity(batch.len());
        let mut accepted = Vec::with_capacity(batch.len());
        for job in batch {
            let current = |ch: &str| tentative.get(ch).or_else(|| self.expected.get(ch)).cloned();
            let op = match &job {
                Job::Append { channel, epoch, publication, options, idempotency, .. } => {
                    let next = match current(channel) {
                        Some((e, top)) if e == *epoch => top + 1,
                        _ => 1,
                    };
                    if publication.offset != next {
                        self.fail(job, "history storage write failed earlier in this channel; retry".into());
                        continue;
                    }
                    tentative.insert(channel.clone(), (epoch.clone(), next));
                    StoreOp::Append {
                        channel: channel.clone(),
                        epoch: epoch.clone(),
                        publication: publication.clone(),
                        appended_ms: now_ms,
                        retention: retention(options),
                        idempotency: idempotency.clone(),
                    }
                }
                Job::Create { channel, epoch, options, .. } => {
                    if current(channel).is_none_or(|(e, _)| e != *epoch) {
                        tentative.insert(channel.clone(), (epoch.clone(), 0));
                    }
                    StoreOp::Create {
                        channel: channel.clone(),
                        epoch: epoch.clone(),
                        retention: retention(options),
                        now_ms,
                    }
                }
                Job::Clear { channel, .. } => StoreOp::Clear { channel: channel.clone() },
            };
            ops.push(op);
            accepted.push(job);
        }
        if accepted.is_empty() {
            return;
        }
        match self.store.commit(&ops) {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("history storage writes again");
                }
                self.expected.extend(tentative);
                for job in accepted {
                    self.apply(job);
                }
            }
            Err(e) => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::error!(error = %e, "history storage write failed: publishes to disk-history channels fail until it recovers");
                }
                let message = e.to_string();
                for job in accepted {
                    self.fail(job, message.clone());
                }
            }
        }
    }

    /// After the commit: append, deliver, acknowledge, in queue order.
    fn apply(&self, job: Job) {
        match job {
            Job::Append { channel, epoch, publication, options, exclude, ack, .. } => {
                let cell = self.inner.cell(&channel);
                let mut cell = cell.lock();
                cell.pending = cell.pending.saturating_sub(1);
                match cell.stream.as_mut() {
                    Some(stream) if stream.epoch() == epoch && stream.top_offset() + 1 == publication.offset => {
                        stream.append(publication.clone(), &options, Instant::now());
                        cell.persisted = true;
                        self.inner.delivery.publication(&channel, &publication, exclude.as_deref());
                    }
                    _ => {
                        tracing::warn!(%channel, offset = publication.offset, "stored append no longer matches the stream")
                    }
                }
                drop(cell);
                let _ = ack.send(Ok(()));
            }
            Job::Create { ack, .. } | Job::Clear { ack, .. } => {
                let _ = ack.send(Ok(()));
            }
        }
    }

    fn fail(&self, job: Job, message: String) {
        let ack = match job {
            Job::Append { channel, generation, ack, .. } => {
                let cell = self.inner.cell(&channel);
                let mut cell = cell.lock();
                if cell.generation == generation {
                    cell.generation += 1;
                    cell.pending = 0;
                }
                ack
            }
            Job::Create { ack, .. } | Job::Clear { ack, .. } => ack,
        };
        let _ = ack.send(Err(message));
    }

    fn compact(&mut self) {
        match self.store.compact(unix_ms()) {
            Ok(removed) => {
                self.healthy.store(true, Ordering::Relaxed);
                if removed > 0 {
                    tracing::debug!(removed, "history store compacted");
                }
            }
            Err(e) => {
                self.healthy.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, "history store compaction failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::*;
    use crate::broker::{Delivery, MemoryBroker};
    use crate::protocol::{ClientInfo, Payload};

    /// Records deliveries as `(channel, offset)`.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, u64)>>);

    impl Delivery for Recorder {
        fn publication(&self, channel: &str, publication: &Publication, _: Option<&str>) {
            self.0.lock().push((channel.to_owned(), publication.offset));
        }
        fn join(&self, _: &str, _: &ClientInfo) {}
        fn leave(&self, _: &str, _: &ClientInfo) {}
        fn gap(&self, _: &str) {}
    }

    const OPTS: StreamOptions =
        StreamOptions { size: 100, ttl: Duration::from_secs(60), meta_ttl: Duration::from_secs(600) };

    fn broker(dir: &std::path::Path, fsync: FsyncPolicy, recorder: Arc<Recorder>) -> MemoryBroker {
        let options = DiskOptions {
            dir: dir.to_owned(),
            recover: StorageRecover::Refuse,
            fsync,
            max_pending: 1000,
            compact_interval: Duration::from_secs(3600),
            is_disk: Box::new(|channel| !channel.starts_with("mem")),
        };
        MemoryBroker::with_disk(recorder, options).expect("open store").0
    }

    fn publication(i: u64) -> Publication {
        Publication { data: Payload::from_json(&format!("{{\"i\":{i}}}")).unwrap(), ..Publication::default() }
    }

    #[tokio::test]
    async fn always_fsyncs_before_each_ack_and_delivers_after_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Arc::new(Recorder::default());
        let memory = broker(dir.path(), FsyncPolicy::Always, recorder.clone());
        for i in 1..=5 {
            let position = memory.publish_async("a", publication(i), Some(&OPTS), None, None).await.unwrap();
            assert_eq!(position.offset, i);
            // Acked: committed (one fsync each, published one at a time) and delivered.
            assert_eq!(memory.durable.as_ref().unwrap().commits(), i);
            assert_eq!(recorder.0.lock().last(), Some(&("a".to_owned(), i)));
        }
        let epoch = memory.history("a", &OPTS, None, 10, false).map(|(_, p)| p.epoch).unwrap();
        drop(memory);
        let memory = broker(dir.path(), FsyncPolicy::Always, Arc::default());
        let (pubs, position) = memory.history("a", &OPTS, None, 10, false).unwrap();
        assert_eq!((position.offset, position.epoch), (5, epoch), "epoch and top survive");
        assert_eq!(pubs.iter().map(|p| p.offset).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batch_ms_shares_one_fsync_among_concurrent_publishes() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Arc::new(Recorder::default());
        let memory = Arc::new(broker(dir.path(), FsyncPolicy::BatchMs(200), recorder.clone()));
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let memory = memory.clone();
                tokio::spawn(async move { memory.publish_async("a", publication(i), Some(&OPTS), None, None).await })
            })
            .collect();
        let mut offsets = Vec::new();
        for task in tasks {
            offsets.push(task.await.unwrap().unwrap().offset);
        }
        offsets.sort_unstable();
        assert_eq!(offsets, (1..=20).collect::<Vec<_>>());
        let commits = memory.durable.as_ref().unwrap().commits();
        assert!(commits <= 2, "20 publishes within the 200 ms window took {commits} commits");
        let delivered: Vec<u64> = recorder.0.lock().iter().map(|(_, o)| *o).collect();
        assert_eq!(delivered, (1..=20).collect::<Vec<_>>(), "delivered in offset order after the commit");
    }

    #[tokio::test]
    async fn memory_channels_skip_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let memory = broker(dir.path(), FsyncPolicy::Always, Arc::default());
        memory.publish_async("mem:x", publication(1), Some(&OPTS), None, None).await.unwrap();
        assert_eq!(memory.durable.as_ref().unwrap().commits(), 0);
        drop(memory);
        let memory = broker(dir.path(), FsyncPolicy::Always, Arc::default());
        assert_eq!(memory.history("mem:x", &OPTS, None, 10, false).unwrap().1.offset, 0);
    }
}
