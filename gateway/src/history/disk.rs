//! [`DiskStore`]: channel streams kept in an embedded database file, so that
//! epochs, offsets, history and idempotency keys survive a restart.
//!
//! # Why redb
//!
//! The store is [redb](https://www.redb.org) rather than fjall (the other
//! maintained pure-Rust candidate) because what this store must promise maps
//! directly onto redb's design:
//! - one file with ACID write transactions, and a durable commit is a single
//!   fsync: a group commit of many publishes is one transaction;
//! - every page is covered by a Merkle tree of XXH3-128 checksums, which
//!   [`redb::Database::check_integrity`] verifies, so a flipped byte or a
//!   truncated file is found at start instead of being served;
//! - after a crash (kill -9) redb rolls back to the last complete commit,
//!   and every acknowledged publish was part of one.
//!
//! fjall (an LSM tree) writes faster, but it spreads a keyspace over journals
//! and segments and trims torn journal tails on recovery, which makes "detect
//! corruption and refuse" harder to state. The workload here is small
//! per-channel windows trimmed from the front, which a B-tree deletes from
//! cheaply and whose freed pages redb reuses.
//!
//! # Layout (three tables)
//! - `pubs`: `(channel, offset)` → `(appended unix ms, Protobuf publication)`
//! - `meta`: `channel` → `(epoch, top offset, last write unix ms, ttl ms, meta ttl ms)`
//! - `idempotency`: `(channel, key)` → `(offset, expires unix ms)`, valid for the
//!   channel's epoch in `meta` (a new epoch deletes the channel's keys)
//!
//! Everything is synchronous; the broker's writer thread owns the store.
//! Times are passed in as unix milliseconds: this module reads no clock.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::config::StorageRecover;
use crate::protocol::{ClientInfo, Payload, Publication, proto};

const PUBS: TableDefinition<(&str, u64), (u64, &[u8])> = TableDefinition::new("pubs");
const META: TableDefinition<&str, (&str, u64, u64, u64, u64)> = TableDefinition::new("meta");
const IDEMPOTENCY: TableDefinition<(&str, &str), (u64, u64)> = TableDefinition::new("idempotency");

/// The store file inside `engine.data_dir`.
pub const STORE_FILE: &str = "history.redb";

/// How long a failed store waits before it tries to reopen its file.
const REOPEN_BACKOFF: Duration = Duration::from_millis(500);

/// Why the store cannot start or write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The file fails its integrity check or holds inconsistent data.
    #[error(
        "history store {path} is corrupted or truncated: {reason}; refusing to serve it (set \
         engine.history_storage_recover = \"reset\" to move it aside and start with new epochs)"
    )]
    Corrupt { path: String, reason: String },
    /// The file or directory cannot be opened (permissions, another process).
    #[error("history store {path}: {reason}")]
    Open { path: String, reason: String },
    /// A commit failed (disk full, read-only, I/O error); nothing of it was stored.
    #[error("history storage write failed: {0}")]
    Write(String),
}

/// One stream as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStream {
    pub channel: String,
    pub epoch: String,
    pub top: u64,
    /// The retained window ending at `top`, oldest first, with the unix ms of
    /// each append.
    pub entries: Vec<(Publication, u64)>,
    pub ttl_ms: u64,
    pub meta_ttl_ms: u64,
    pub last_write_ms: u64,
}

/// One idempotency key as stored, with the position its publish got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub channel: String,
    pub key: String,
    pub offset: u64,
    pub epoch: String,
    pub expires_ms: u64,
}

/// What a store held at start.
#[derive(Debug, Default)]
pub struct Loaded {
    pub streams: Vec<StoredStream>,
    pub keys: Vec<StoredKey>,
    /// Where a corrupted file was moved under `reset`.
    pub reset_from: Option<PathBuf>,
}

/// Retention settings an append carries (those of its namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub size: usize,
    pub ttl_ms: u64,
    pub meta_ttl_ms: u64,
}

/// One change, applied inside a commit in order.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // appends are nearly every op: boxing them costs an allocation each
pub enum StoreOp {
    /// Stores `publication` (its offset set) in `epoch`. A different epoch
    /// than stored replaces the channel's stream. Trims to `retention.size`.
    Append {
        channel: String,
        epoch: String,
        publication: Publication,
        appended_ms: u64,
        retention: Retention,
        /// An idempotency key and when it expires (unix ms).
        idempotency: Option<(String, u64)>,
    },
    /// Records a new empty stream (its epoch), replacing any other epoch.
    Create { channel: String, epoch: String, retention: Retention, now_ms: u64 },
    /// Drops the channel's publications, keeping epoch and top.
    Clear { channel: String },
}

/// The open store. After a failed commit it drops its handle and reopens the
/// file on a later commit (redb refuses writes after an I/O error).
pub struct DiskStore {
    path: PathBuf,
    db: Option<Database>,
    failed: Option<(Instant, String)>,
}

impl DiskStore {
    /// Opens (or creates) `dir/history.redb`, verifies it and reads it whole.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] for a file that fails its checks (only under
    /// `refuse`), [`StoreError::Open`] when it cannot be opened at all.
    pub fn open(dir: &Path, recover: StorageRecover) -> Result<(Self, Loaded), StoreError> {
        let path = dir.join(STORE_FILE);
        let shown = path.display().to_string();
        let open_err = |reason: String| StoreError::Open { path: shown.clone(), reason };
        std::fs::create_dir_all(dir).map_err(|e| open_err(format!("cannot create directory: {e}")))?;
        if !path.exists() {
            return Ok((Self::create(&path)?, Loaded::default()));
        }
        // redb may panic on some impossible states of a damaged file; a
        // damaged file is reported, never a crash.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| open_and_load(&path)))
            .unwrap_or_else(|_| Err(Failure::Corrupt("the database library panicked while reading it".into())));
        match result {
            Ok((db, loaded)) => Ok((Self { path, db: Some(db), failed: None }, loaded)),
            Err(Failure::Other(reason)) => Err(open_err(reason)),
            Err(Failure::Corrupt(reason)) => match recover {
                StorageRecover::Refuse => Err(StoreError::Corrupt { path: shown, reason }),
                StorageRecover::Reset => {
                    let secs =
                        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    let aside = path.with_extension(format!("redb.corrupt-{secs}"));
                    std::fs::rename(&path, &aside).map_err(|e| open_err(format!("cannot move it aside: {e}")))?;
                    tracing::error!(
                        file = %shown, moved_to = %aside.display(), %reason,
                        "history store corrupted: starting empty, every stream gets a new epoch"
                    );
                    let loaded = Loaded { reset_from: Some(aside), ..Loaded::default() };
                    Ok((Self::create(&path)?, loaded))
                }
            },
        }
    }

    fn create(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })?;
        // Create the tables up front so readers never meet a missing one.
        let write = || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            txn.open_table(PUBS)?;
            txn.open_table(META)?;
            txn.open_table(IDEMPOTENCY)?;
            txn.commit()?;
            Ok(())
        };
        write().map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })?;
        Ok(Self { path: path.to_owned(), db: Some(db), failed: None })
    }

    /// The last write error while the store is failed.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_ref().map(|(_, e)| e.as_str())
    }

    /// Applies `ops` in one durable transaction: when this returns `Ok` they
    /// are fsynced; on `Err` none of them is stored.
    pub fn commit(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let db = self.db()?;
        let result = (|| -> Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut pubs = txn.open_table(PUBS)?;
                let mut meta = txn.open_table(META)?;
                let mut keys = txn.open_table(IDEMPOTENCY)?;
                for op in ops {
                    match op {
                        StoreOp::Append { channel, epoch, publication, appended_ms, retention, idempotency } => {
                            let ch = channel.as_str();
                            let stored_epoch = meta.get(ch)?.map(|m| m.value().0.to_owned());
                            if stored_epoch.as_deref() != Some(epoch.as_str()) {
                                drop_stream(&mut pubs, &mut keys, ch)?;
                            }
                            let offset = publication.offset;
                            pubs.insert((ch, offset), (*appended_ms, encode_publication(publication).as_slice()))?;
                            let size = retention.size as u64;
                            if offset > size {
                                pubs.retain_in((ch, 0)..=(ch, offset - size), |_, _| false)?;
                            }
                            let row = (epoch.as_str(), offset, *appended_ms, retention.ttl_ms, retention.meta_ttl_ms);
                            meta.insert(ch, row)?;
                            if let Some((key, expires_ms)) = idempotency {
                                keys.insert((ch, key.as_str()), (offset, *expires_ms))?;
                            }
                        }
                        StoreOp::Create { channel, epoch, retention, now_ms } => {
                            let ch = channel.as_str();
                            let stored_epoch = meta.get(ch)?.map(|m| m.value().0.to_owned());
                            if stored_epoch.as_deref() != Some(epoch.as_str()) {
                                drop_stream(&mut pubs, &mut keys, ch)?;
                                let row = (epoch.as_str(), 0, *now_ms, retention.ttl_ms, retention.meta_ttl_ms);
                                meta.insert(ch, row)?;
                            }
                        }
                        StoreOp::Clear { channel } => {
                            let ch = channel.as_str();
                            pubs.retain_in((ch, 0)..=(ch, u64::MAX), |_, _| false)?;
                        }
                    }
                }
            }
            txn.commit()?;
            Ok(())
        })();
        result.map_err(|e| self.fail(e.to_string()))
    }

    /// Deletes publications past their TTL, streams past their meta TTL (with
    /// their keys) and expired idempotency keys. Returns how many rows went.
    pub fn compact(&mut self, now_ms: u64) -> Result<usize, StoreError> {
        let db = self.db()?;
        let result = (|| -> Result<usize, redb::Error> {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            let mut removed = 0;
            {
                let mut pubs = txn.open_table(PUBS)?;
                let mut meta = txn.open_table(META)?;
                let mut keys = txn.open_table(IDEMPOTENCY)?;
                let rows: Vec<(String, u64, u64, u64, u64)> = meta
                    .iter()?
                    .map(|r| r.map(|(k, v)| (k.value().to_owned(), v.value().1, v.value().2, v.value().3, v.value().4)))
                    .collect::<Result<_, _>>()?;
                for (channel, top, last_write, ttl, meta_ttl) in rows {
                    let ch = channel.as_str();
                    if last_write.saturating_add(meta_ttl) <= now_ms {
                        removed += drop_stream(&mut pubs, &mut keys, ch)?;
                        meta.remove(ch)?;
                        removed += 1;
                        continue;
                    }
                    // Entries are appended in time order: expiry removes a prefix.
                    pubs.retain_in((ch, 0)..=(ch, top), |_, (appended, _)| {
                        let keep = appended.saturating_add(ttl) > now_ms;
                        removed += usize::from(!keep);
                        keep
                    })?;
                }
                keys.retain(|_, (_, expires)| {
                    let keep = expires > now_ms;
                    removed += usize::from(!keep);
                    keep
                })?;
            }
            txn.commit()?;
            Ok(removed)
        })();
        result.map_err(|e| self.fail(e.to_string()))
    }

    /// The open database, reopening it after a failure (at most once per
    /// [`REOPEN_BACKOFF`]).
    fn db(&mut self) -> Result<&Database, StoreError> {
        if self.db.is_none() {
            if let Some((at, error)) = &self.failed
                && at.elapsed() < REOPEN_BACKOFF
            {
                return Err(StoreError::Write(error.clone()));
            }
            match Database::open(&self.path) {
                Ok(db) => self.db = Some(db),
                Err(e) => return Err(self.fail(format!("cannot reopen {}: {e}", self.path.display()))),
            }
        }
        self.failed = None;
        Ok(self.db.as_ref().expect("opened above"))
    }

    fn fail(&mut self, error: String) -> StoreError {
        // redb refuses every write after an I/O error until reopened.
        self.db = None;
        self.failed = Some((Instant::now(), error.clone()));
        StoreError::Write(error)
    }
}

/// Deletes a channel's publications and idempotency keys.
fn drop_stream(
    pubs: &mut redb::Table<(&str, u64), (u64, &[u8])>,
    keys: &mut redb::Table<(&str, &str), (u64, u64)>,
    ch: &str,
) -> Result<usize, redb::Error> {
    let mut removed = 0;
    pubs.retain_in((ch, 0)..=(ch, u64::MAX), |_, _| {
        removed += 1;
        false
    })?;
    keys.retain(|(c, _), _| {
        let keep = c != ch;
        removed += usize::from(!keep);
        keep
    })?;
    Ok(removed)
}

enum Failure {
    Corrupt(String),
    Other(String),
}

fn classify(e: redb::DatabaseError) -> Failure {
    use redb::{DatabaseError, StorageError};
    match e {
        DatabaseError::Storage(StorageError::Corrupted(m)) => Failure::Corrupt(m),
        DatabaseError::Storage(StorageError::Io(io))
            if matches!(io.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof) =>
        {
            Failure::Corrupt(io.to_string())
        }
        DatabaseError::RepairAborted => Failure::Corrupt("repair aborted".into()),
        DatabaseError::DatabaseAlreadyOpen => Failure::Other("already open by another process".into()),
        other => Failure::Other(other.to_string()),
    }
}

fn open_and_load(path: &Path) -> Result<(Database, Loaded), Failure> {
    let mut db = Database::open(path).map_err(classify)?;
    match db.check_integrity() {
        Ok(true) => {}
        Ok(false) => return Err(Failure::Corrupt("integrity check failed (checksum mismatch)".into())),
        Err(e) => return Err(classify(e)),
    }
    let loaded = load(&db).map_err(Failure::Corrupt)?;
    Ok((db, loaded))
}

/// Reads the whole store and checks that it is consistent: every stream's
/// publications are a contiguous run ending at its top, every row decodes,
/// nothing belongs to an unknown stream.
fn load(db: &Database) -> Result<Loaded, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let e = |e: redb::Error| e.to_string();
    let meta = txn.open_table(META).map_err(|x| e(x.into()))?;
    let pubs = txn.open_table(PUBS).map_err(|x| e(x.into()))?;
    let keys = txn.open_table(IDEMPOTENCY).map_err(|x| e(x.into()))?;
    let mut streams: HashMap<String, StoredStream> = HashMap::new();
    for row in meta.iter().map_err(|x| e(x.into()))? {
        let (k, v) = row.map_err(|x| e(x.into()))?;
        let (epoch, top, last_write_ms, ttl_ms, meta_ttl_ms) = v.value();
        let channel = k.value().to_owned();
        if epoch.is_empty() {
            return Err(format!("channel {channel:?} has an empty epoch"));
        }
        let stream = StoredStream {
            channel: channel.clone(),
            epoch: epoch.to_owned(),
            top,
            entries: Vec::new(),
            ttl_ms,
            meta_ttl_ms,
            last_write_ms,
        };
        streams.insert(channel, stream);
    }
    for row in pubs.iter().map_err(|x| e(x.into()))? {
        let (k, v) = row.map_err(|x| e(x.into()))?;
        let (channel, offset) = k.value();
        let (appended_ms, bytes) = v.value();
        let Some(stream) = streams.get_mut(channel) else {
            return Err(format!("publication {offset} of channel {channel:?} has no stream"));
        };
        let expected = stream.entries.last().map(|(p, _)| p.offset + 1);
        if expected.is_some_and(|x| x != offset) || offset == 0 || offset > stream.top {
            return Err(format!("channel {channel:?}: offset {offset} breaks the run ending at {}", stream.top));
        }
        let publication = decode_publication(bytes, offset)
            .ok_or_else(|| format!("channel {channel:?}: publication {offset} does not decode"))?;
        stream.entries.push((publication, appended_ms));
    }
    for stream in streams.values() {
        if let Some((last, _)) = stream.entries.last()
            && last.offset != stream.top
        {
            return Err(format!(
                "channel {:?}: newest publication {} but top {}",
                stream.channel, last.offset, stream.top
            ));
        }
    }
    let mut stored_keys = Vec::new();
    for row in keys.iter().map_err(|x| e(x.into()))? {
        let (k, v) = row.map_err(|x| e(x.into()))?;
        let (channel, key) = k.value();
        let (offset, expires_ms) = v.value();
        let Some(stream) = streams.get(channel) else {
            return Err(format!("idempotency key of channel {channel:?} has no stream"));
        };
        if offset > stream.top {
            return Err(format!("idempotency key of channel {channel:?} points past the top"));
        }
        stored_keys.push(StoredKey {
            channel: channel.to_owned(),
            key: key.to_owned(),
            offset,
            epoch: stream.epoch.clone(),
            expires_ms,
        });
    }
    let mut streams: Vec<StoredStream> = streams.into_values().collect();
    streams.sort_by(|a, b| a.channel.cmp(&b.channel));
    Ok(Loaded { streams, keys: stored_keys, reset_from: None })
}

fn encode_publication(p: &Publication) -> Vec<u8> {
    let info = p.info.as_ref().map(|i| proto::ClientInfo {
        user: i.user.clone(),
        client: i.client.clone(),
        conn_info: i.conn_info.as_ref().map(|p| p.as_bytes().clone()).unwrap_or_default(),
        chan_info: i.chan_info.as_ref().map(|p| p.as_bytes().clone()).unwrap_or_default(),
    });
    proto::Publication { data: p.data.as_bytes().clone(), info, tags: p.tags.clone(), ..proto::Publication::default() }
        .encode_to_vec()
}

fn decode_publication(bytes: &[u8], offset: u64) -> Option<Publication> {
    let p = proto::Publication::decode(bytes).ok()?;
    let payload = |b: Bytes| (!b.is_empty()).then(|| Payload::from_binary(b));
    let info = p.info.map(|i| ClientInfo {
        user: i.user,
        client: i.client,
        conn_info: payload(i.conn_info),
        chan_info: payload(i.chan_info),
    });
    Some(Publication { data: Payload::from_binary(p.data), info, offset, tags: p.tags })
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Retention = Retention { size: 3, ttl_ms: 1_000, meta_ttl_ms: 10_000 };

    fn publication(offset: u64, text: &str) -> Publication {
        Publication { data: Payload::from_json(text).unwrap(), offset, ..Publication::default() }
    }

    fn append(channel: &str, epoch: &str, offset: u64, at: u64) -> StoreOp {
        StoreOp::Append {
            channel: channel.into(),
            epoch: epoch.into(),
            publication: publication(offset, &format!("{{\"n\":{offset}}}")),
            appended_ms: at,
            retention: R,
            idempotency: None,
        }
    }

    #[test]
    fn appends_survive_reopen_trimmed_to_size() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, loaded) = DiskStore::open(dir.path(), StorageRecover::Refuse).unwrap();
        assert!(loaded.streams.is_empty());
        let ops: Vec<StoreOp> = (1..=5).map(|o| append("a", "EPOCH001", o, 100 + o)).collect();
        store.commit(&ops).unwrap();
        let mut keyed = append("a", "EPOCH001", 6, 200);
        if let StoreOp::Append { idempotency, .. } = &mut keyed {
            *idempotency = Some(("k1".into(), 9_999));
        }
        store.commit(&[keyed]).unwrap();
        drop(store);
        let (_, loaded) = DiskStore::open(dir.path(), StorageRecover::Refuse).unwrap();
        let s = &loaded.streams[0];
        assert_eq!((s.channel.as_str(), s.epoch.as_str(), s.top), ("a", "EPOCH001", 6));
        let offsets: Vec<u64> = s.entries.iter().map(|(p, _)| p.offset).collect();
        assert_eq!(offsets, [4, 5, 6], "size 3 keeps the newest three");
        assert_eq!(s.entries[2].0.data.as_bytes().as_ref(), b"{\"n\":6}");
        assert!(s.entries[2].0.data.is_json());
        assert_eq!(
            loaded.keys,
            [StoredKey {
                channel: "a".into(),
                key: "k1".into(),
                offset: 6,
                epoch: "EPOCH001".into(),
                expires_ms: 9_999
            }]
        );
    }

    #[test]
    fn a_new_epoch_replaces_the_stream_and_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = DiskStore::open(dir.path(), StorageRecover::Refuse).unwrap();
        let mut keyed = append("a", "OLDEPOCH", 1, 1);
        if let StoreOp::Append { idempotency, .. } = &mut keyed {
            *idempotency = Some(("k".into(), 9_999));
        }
        store.commit(&[keyed, append("a", "OLDEPOCH", 2, 2)]).unwrap();
        store
            .commit(&[StoreOp::Create { channel: "a".into(), epoch: "NEWEPOCH".into(), retention: R, now_ms: 3 }])
            .unwrap();
        drop(store);
        let (_, loaded) = DiskStore::open(dir.path(), StorageRecover::Refuse).unwrap();
        assert_eq!((loaded.streams[0].epoch.as_str(), loaded.streams[0].top), ("NEWEPOCH", 0));
        assert!(loaded.streams[0].entries.is_empty());
        assert!(loaded.keys.is_empty());
    }

    #[test]
    fn compaction_enforces_ttl_meta_ttl_and_key_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = DiskStore::open(dir.path(), StorageRecover::Refuse).unwrap();
        // ttl 1000 ms: entries at 100 and 600 expire at 1100 and 1600.
        let mut keyed = append("a", "EPOCH001", 2, 600);
        if let StoreOp::Append { idempotency, .. } = &mut keyed {
            *idempotency = Some(("k".into(), 1_200));
        }
        store.commit(&[append("a", "EPOCH001", 1, 100), keyed, append("b", "EPOCHBBB", 1, 100)]).unwrap();
        assert_eq!(store.compact(1_000).unwrap(), 0);
        // At 1300: a#1, b#1 and the key expired; a#2 is still live.
        assert_eq!(store.compact(1_300).unwrap(), 3);
        // b's meta TTL (10 s from its last write at 100) ends at 10100.
        assert_eq!(store.compact(10_100).unwrap(), 2, "b's meta and a#2");
        drop(store);
        let (_, loaded) = DiskStore::open(dir.path(), StorageRecover::Refuse).unwrap();
        let channels: Vec<(&str, u64, usize)> =
            loaded.streams.iter().map(|s| (s.channel.as_str(), s.top, s.entries.len())).collect();
        assert_eq!(channels, [("a", 2, 0)], "a keeps epoch and top until its own meta TTL");
    }

    #[test]
    fn clear_keeps_epoch_and_top() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = DiskStore::open(dir.path(), StorageRecover::Refuse).unwrap();
        store.commit(&[append("a", "EPOCH001", 1, 1), StoreOp::Clear { channel: "a".into() }]).unwrap();
        drop(store);
        let (_, loaded) = DiskStore::open(dir.path(), StorageRecover::Refuse).unwrap();
        assert_eq!((loaded.streams[0].top, loaded.streams[0].entries.len()), (1, 0));
    }

    fn corrupt_store(dir: &Path, damage: impl FnOnce(&mut Vec<u8>)) {
        let (mut store, _) = DiskStore::open(dir, StorageRecover::Refuse).unwrap();
        let ops: Vec<StoreOp> = (1..=3).map(|o| append("a", "EPOCH001", o, o)).collect();
        store.commit(&ops).unwrap();
        drop(store);
        let path = dir.join(STORE_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes);
        std::fs::write(&path, bytes).unwrap();
    }

    #[test]
    fn a_truncated_file_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        corrupt_store(dir.path(), |b| b.truncate(b.len() / 3));
        let Err(error) = DiskStore::open(dir.path(), StorageRecover::Refuse) else { panic!("opened a truncated file") };
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains("is corrupted or truncated"), "{error}");
    }

    #[test]
    fn flipped_bytes_in_a_publication_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        corrupt_store(dir.path(), |b| {
            let hits: Vec<usize> =
                b.windows(7).enumerate().filter(|(_, w)| w == b"{\"n\":2}").map(|(i, _)| i).collect();
            assert!(!hits.is_empty(), "payload in file");
            for at in hits {
                b[at + 5] = b'9';
            }
        });
        let Err(error) = DiskStore::open(dir.path(), StorageRecover::Refuse) else { panic!("served flipped data") };
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    }

    #[test]
    fn reset_moves_a_corrupted_file_aside_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        corrupt_store(dir.path(), |b| b.truncate(b.len() / 3));
        let (mut store, loaded) = DiskStore::open(dir.path(), StorageRecover::Reset).unwrap();
        assert!(loaded.streams.is_empty());
        let aside = loaded.reset_from.expect("moved aside");
        assert!(aside.exists() && aside.to_string_lossy().contains("history.redb.corrupt-"));
        store.commit(&[append("a", "EPOCH002", 1, 1)]).unwrap();
    }
}
