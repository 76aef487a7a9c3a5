//! The Redis engine: several nodes share channels, history and presence.
//!
//! Publishing runs one Lua script that assigns the offset, appends to the
//! channel's Redis stream, refreshes the TTLs and `PUBLISH`es the publication
//! with its offset and epoch, so the order in Redis is the order every node
//! delivers in. A publish is acknowledged only after that script returned.
//!
//! Each node holds one pub/sub connection and subscribes once per channel
//! with local subscribers. Live messages of a channel are delivered under the
//! channel's local lock, in arrival order, with a position check: an offset
//! that jumps, or a new epoch, means live messages were lost (pub/sub
//! reconnect, `CLIENT KILL`, output-buffer limit). The channel's local
//! subscribers are then closed with 3010 ("insufficient state") and recover
//! from history on reconnect: a gap is never silent. A periodic check
//! compares what was delivered with the stream top, which catches losses
//! that no later publication reveals.
//!
//! A subscribe reads its position from Redis while live messages of that
//! channel are buffered locally; under the channel lock it is registered at
//! exactly the position delivered so far and the buffer is then delivered to
//! everyone, so the new subscriber sees no gap and no duplicate.
//!
//! Keys are `PREFIX.KIND.{CHANNEL}`: the channel is a Redis Cluster hash tag,
//! so every key a script touches for one channel lives in one slot (the
//! prefix must hold no braces; config validation refuses them). The node
//! registry's keys share the tag `{registry}`. Before this
//! layout keys were `PREFIX.KIND.CHANNEL`: a node of this version does not
//! see the streams an older one wrote, so an upgrade starts every stream in
//! a new epoch (resumes answer `recovered: false` once) and old and new
//! nodes must not share a prefix. Live pub/sub channels stay
//! `PREFIX.live.CHANNEL` (they are not keys).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dashmap::DashMap;
use futures_util::StreamExt;
use parking_lot::Mutex;
use prost::Message as _;
use rand::Rng;
use rand::distr::Alphanumeric;
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

mod read_marks;

use super::{Delivery, EngineError, SubscribeView};
use crate::history::{Recovery, Stream, StreamOptions};
use crate::presence::PresenceStats;
use crate::protocol::{ClientInfo, Payload, Publication, StreamPosition, proto};

/// Most live messages buffered for one channel while subscribes read their
/// position. Past it the buffer is dropped and the channel's subscribers are
/// forced to recover.
const MAX_BUFFERED: usize = 65_536;

/// Settings of the Redis engine, resolved from `[engine]`.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// One URL per shard; channels are spread over them by consistent
    /// hashing of the channel name. The first also holds the node registry
    /// and routes emulation posts.
    pub urls: Vec<String>,
    /// Prepended to every key and pub/sub channel.
    pub prefix: String,
    /// Longest wait for a Redis reply or connection before failing.
    pub timeout: Duration,
    /// Presence entries of a node that stopped refreshing expire after this.
    pub presence_ttl: Duration,
    /// How often delivered positions are compared with the stream tops.
    pub gap_check_period: Duration,
    /// This node's id: its private pub/sub channel and registry entry.
    pub node: String,
    /// Most presence and join/leave writes queued per Redis instance while
    /// it is unreachable (see [`Outbox`]).
    pub max_queued_writes: usize,
}

/// Receives what other nodes forward to a session of this node
/// (`/emulation` posts): `(session, data)`. Must not block.
pub type NodeHandler = Box<dyn Fn(&str, Bytes) + Send + Sync>;

/// How long a node stays listed after its last heartbeat.
const NODE_TTL: Duration = Duration::from_secs(15);

/// How often a node writes its heartbeat.
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(3);

/// Offset assignment, history append, TTLs and the live publish, atomically.
const PUBLISH_SCRIPT: &str = r#"
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch)
end
local top = redis.call('HINCRBY', KEYS[2], 's', 1)
redis.call('EXPIRE', KEYS[2], ARGV[4])
local t = redis.call('TIME')
local ms = t[1] .. string.sub(string.format('%06d', tonumber(t[2])), 1, 3)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], top .. '-0', 'd', ARGV[1], 't', ms)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[6], 'p:' .. epoch .. ':' .. top .. ':' .. ARGV[7] .. ':' .. ARGV[1])
return {top, epoch}
"#;

/// The stream's epoch and top plus its entries from `ARGV[1]` on; creates the
/// meta (new epoch) when missing, like the memory engine's read paths do.
const READ_SCRIPT: &str = r#"
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch, 's', 0)
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
local top = redis.call('HGET', KEYS[2], 's') or '0'
local t = redis.call('TIME')
local ms = t[1] .. string.sub(string.format('%06d', tonumber(t[2])), 1, 3)
local entries = {}
if ARGV[1] ~= '' then
  entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+')
end
return {epoch, top, ms, entries}
"#;

/// Upserts a presence entry with its own expiry; drops expired ones.
const PRESENCE_ADD_SCRIPT: &str = r#"
local now = tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, c in ipairs(expired) do redis.call('HDEL', KEYS[2], c) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"#;

/// Every unexpired presence entry of a channel.
const PRESENCE_GET_SCRIPT: &str = r#"
local now = tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, c in ipairs(expired) do redis.call('HDEL', KEYS[2], c) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('HVALS', KEYS[2])
"#;

/// Local state of one channel, behind the lock that orders its deliveries.
#[derive(Default)]
struct Cell {
    /// The last position delivered to local subscribers; `None` until the
    /// first subscribe or publication after (re)subscribing in Redis.
    last: Option<StreamPosition>,
    /// Subscribes between "reading the position" and "registered".
    pending: usize,
    /// Live publications received while `pending > 0`, in arrival order,
    /// with the client each excludes.
    buffer: VecDeque<(StreamPosition, Publication, Option<String>)>,
    /// The buffer overflowed: live messages were dropped.
    overflowed: bool,
    /// Stream top seen by the last gap check when it was ahead of `last`.
    lagging_top: Option<StreamPosition>,
}

/// One subscribe counted in its channel's `pending` while it reads from
/// Redis. A subscribe future dropped there (its client left, its session
/// ended) must still take its count back: a count left raised would keep
/// every later live message of the channel buffered on this node, never
/// delivered and never reported as a gap.
struct PendingSubscribe<'a> {
    broker: &'a RedisBroker,
    channel: &'a str,
    cell: Option<Arc<Mutex<Cell>>>,
}

impl<'a> PendingSubscribe<'a> {
    fn enter(broker: &'a RedisBroker, channel: &'a str) -> Self {
        let cell = broker.cell(channel);
        cell.lock().pending += 1;
        Self { broker, channel, cell: Some(cell) }
    }

    /// Hands the count to the caller, who takes it back under the lock.
    fn leave(mut self) -> Arc<Mutex<Cell>> {
        self.cell.take().expect("a pending subscribe leaves once")
    }
}

impl Drop for PendingSubscribe<'_> {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            let mut guard = cell.lock();
            guard.pending -= 1;
            self.broker.flush(self.channel, &mut guard);
        }
    }
}

/// The pub/sub connection's writing half and the channels it is subscribed to.
#[derive(Default)]
struct PubSubState {
    sink: Option<PubSubSink>,
    subscribed: HashSet<String>,
}

/// A presence or join/leave write for one channel.
enum Membership {
    PresenceAdd(ClientInfo),
    PresenceRemove(String),
    Join(ClientInfo),
    Leave(ClientInfo),
}

struct QueuedWrite {
    channel: String,
    write: Membership,
    /// Told once Redis accepted the write.
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Why queued writes were not sent.
enum Unsent {
    /// Redis is down, slow or still loading: send them again later.
    Unreachable(String),
    /// Redis answered with an error: sending them again would not help.
    Refused(String),
}

/// Most queued writes sent in one pipeline.
const WRITE_BATCH: usize = 256;

/// Presence and join/leave writes of one Redis instance, in the order the
/// sessions made them. One task sends them in pipelines over the command
/// connection and keeps a batch Redis refused until Redis takes it, so a
/// leave or a presence removal made while Redis is down is sent once it is
/// back (after this node's pub/sub resubscribed, so that its own
/// subscribers see the re-sent join/leave). Writes are idempotent except
/// join/leave, which a batch cut by a broken connection may repeat: they
/// are delivered at least once. Bounded by `max_queued_writes`; past it new
/// writes are dropped with a warning, and a dropped presence removal then
/// takes `presence_ttl` to disappear.
#[derive(Default)]
struct Outbox {
    queue: Mutex<VecDeque<QueuedWrite>>,
    wake: tokio::sync::Notify,
    /// The last send failed: Redis is unreachable or too slow.
    stalled: std::sync::atomic::AtomicBool,
}

/// One Redis instance: its command connection, this node's pub/sub
/// connection to it and the queue of presence and join/leave writes.
struct Shard {
    client: redis::Client,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    pubsub: tokio::sync::Mutex<PubSubState>,
    outbox: Outbox,
}

impl Shard {
    /// The command connection; reconnects are the library's job once built.
    async fn conn(&self) -> Result<ConnectionManager, EngineError> {
        let mut guard = self.conn.lock().await;
        if let Some(conn) = guard.as_ref() {
            return Ok(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1)
            .set_max_delay(500);
        let conn = tokio::time::timeout(self.timeout * 2, self.client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| EngineError::Redis("connect timed out".to_owned()))?
            .map_err(|e| EngineError::Redis(e.to_string()))?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Runs a command with the engine's timeout.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> Result<T, EngineError> {
        let mut conn = self.conn().await?;
        tokio::time::timeout(self.timeout, cmd.query_async(&mut conn))
            .await
            .map_err(|_| EngineError::Redis("timed out".to_owned()))?
            .map_err(|e| EngineError::Redis(e.to_string()))
    }

    async fn script(&self, inv: redis::ScriptInvocation<'_>) -> Result<Value, EngineError> {
        let mut conn = self.conn().await?;
        tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| EngineError::Redis("timed out".to_owned()))?
            .map_err(|e| EngineError::Redis(e.to_string()))
    }

    /// Sends queued writes (see [`Outbox`]), telling an outage, worth a
    /// retry, from an answer that refused them.
    async fn send_writes(&self, pipe: &redis::Pipeline) -> Result<(), Unsent> {
        let mut conn = self.conn().await.map_err(|e| Unsent::Unreachable(e.to_string()))?;
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut conn)).await {
            Err(_) => Err(Unsent::Unreachable("timed out".to_owned())),
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                use redis::ErrorKind::{BusyLoadingError, ClusterDown, MasterDown, ReadOnly, TryAgain};
                let outage = e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || matches!(e.kind(), BusyLoadingError | TryAgain | ClusterDown | MasterDown | ReadOnly);
                Err(if outage { Unsent::Unreachable(e.to_string()) } else { Unsent::Refused(e.to_string()) })
            }
        }
    }

    async fn pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, EngineError> {
        let mut conn = self.conn().await?;
        tokio::time::timeout(self.timeout, pipe.query_async(&mut conn))
            .await
            .map_err(|_| EngineError::Redis("timed out".to_owned()))?
            .map_err(|e| EngineError::Redis(e.to_string()))
    }
}

/// 64-bit FNV-1a: a hash that never changes between builds, so every node
/// maps a channel to the same shard.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// What goes between the braces of a channel's keys. A channel name with a
/// brace would end the tag early (or leave it empty, which makes Redis hash
/// the whole key), so such names are replaced by their hash: still one tag
/// per channel, just not readable.
fn hash_tag(channel: &str) -> std::borrow::Cow<'_, str> {
    if channel.is_empty() || channel.contains(['{', '}']) {
        format!("#{:016x}", fnv1a(channel.as_bytes())).into()
    } else {
        channel.into()
    }
}

/// Jump consistent hash (Lamping and Veach): adding a shard moves only
/// about 1/n of the channels.
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    let n = i64::try_from(buckets).unwrap_or(i64::MAX);
    while j < n {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let step = (1u64 << 31) as f64 / ((key >> 33) + 1) as f64;
        j = ((b + 1) as f64 * step) as i64;
    }
    usize::try_from(b).unwrap_or(0)
}

/// The Redis engine. See the module docs for the ordering contract.
pub struct RedisBroker {
    shards: Vec<Shard>,
    options: RedisOptions,
    delivery: Arc<dyn Delivery>,
    cells: DashMap<Box<str>, Arc<Mutex<Cell>>>,
    publish_script: redis::Script,
    read_script: redis::Script,
    presence_get_script: redis::Script,
    node_handler: std::sync::OnceLock<NodeHandler>,
}

fn new_epoch() -> String {
    rand::rng().sample_iter(Alphanumeric).take(8).map(char::from).collect()
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn encode_info(info: &ClientInfo) -> Vec<u8> {
    proto::ClientInfo {
        user: info.user.clone(),
        client: info.client.clone(),
        conn_info: info.conn_info.as_ref().map(|p| p.as_bytes().clone()).unwrap_or_default(),
        chan_info: info.chan_info.as_ref().map(|p| p.as_bytes().clone()).unwrap_or_default(),
    }
    .encode_to_vec()
}

fn info_from_proto(i: proto::ClientInfo) -> ClientInfo {
    let payload = |b: Bytes| (!b.is_empty()).then(|| Payload::from_binary(b));
    ClientInfo { user: i.user, client: i.client, conn_info: payload(i.conn_info), chan_info: payload(i.chan_info) }
}

fn decode_info(bytes: &[u8]) -> Option<ClientInfo> {
    proto::ClientInfo::decode(bytes).ok().map(info_from_proto)
}

/// A publication without its offset (Redis assigns it).
fn encode_publication(p: &Publication) -> Vec<u8> {
    proto::Publication {
        data: p.data.as_bytes().clone(),
        info: p.info.as_ref().map(|i| proto::ClientInfo::decode(encode_info(i).as_slice()).unwrap_or_default()),
        tags: p.tags.clone(),
        ..proto::Publication::default()
    }
    .encode_to_vec()
}

fn decode_publication(bytes: &[u8], offset: u64) -> Option<Publication> {
    let p = proto::Publication::decode(bytes).ok()?;
    Some(Publication { data: Payload::from_binary(p.data), info: p.info.map(info_from_proto), offset, tags: p.tags })
}

fn bulk(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => std::str::from_utf8(bulk(other)?).ok()?.parse().ok(),
    }
}

/// What the read script returned: the stream as a [`Stream`] holding the
/// fetched suffix, so reads and recovery apply exactly the memory rules.
fn parse_read(v: Value, ttl: Duration) -> Result<Stream, EngineError> {
    let bad = || EngineError::Redis("unexpected reply to the read script".to_owned());
    let Value::Array(parts) = v else { return Err(bad()) };
    let [epoch, top, now_ms, entries] = parts.as_slice() else { return Err(bad()) };
    let epoch = String::from_utf8_lossy(bulk(epoch).ok_or_else(bad)?).into_owned();
    let top = int(top).ok_or_else(bad)?;
    let now_ms = int(now_ms).ok_or_else(bad)?;
    let Value::Array(entries) = entries else { return Err(bad()) };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(pair) = entry else { return Err(bad()) };
        let [id, Value::Array(fields)] = pair.as_slice() else { return Err(bad()) };
        let id = std::str::from_utf8(bulk(id).ok_or_else(bad)?).map_err(|_| bad())?;
        let offset: u64 = id.split('-').next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let (mut data, mut at) = (None, 0);
        for kv in fields.chunks(2) {
            match (kv.first().and_then(bulk), kv.get(1)) {
                (Some(b"d"), Some(v)) => data = bulk(v),
                (Some(b"t"), Some(v)) => at = int(v).unwrap_or(0),
                _ => {}
            }
        }
        let publication = decode_publication(data.ok_or_else(bad)?, offset).ok_or_else(bad)?;
        // The window must be contiguous and end at the top; keep the part
        // that is (anything before a hole is unreachable anyway).
        if out.last().is_some_and(|(p, _): &(Publication, Duration)| p.offset + 1 != offset) {
            out.clear();
        }
        out.push((publication, Duration::from_millis(now_ms.saturating_sub(at))));
    }
    if out.last().is_some_and(|(p, _)| p.offset != top) {
        out.clear();
    }
    Ok(Stream::restore(epoch, top, out, ttl, Instant::now()))
}

impl RedisBroker {
    /// Builds the engine; connects lazily, so a node starts while Redis is down.
    pub fn new(options: RedisOptions, delivery: Arc<dyn Delivery>) -> Result<Arc<Self>, EngineError> {
        let mut shards = Vec::with_capacity(options.urls.len());
        for url in &options.urls {
            shards.push(Shard {
                client: redis::Client::open(url.as_str()).map_err(|e| EngineError::Redis(e.to_string()))?,
                timeout: options.timeout,
                conn: tokio::sync::Mutex::new(None),
                pubsub: tokio::sync::Mutex::new(PubSubState::default()),
                outbox: Outbox::default(),
            });
        }
        if shards.is_empty() {
            return Err(EngineError::Redis("no redis url".to_owned()));
        }
        Ok(Arc::new(Self {
            shards,
            options,
            delivery,
            cells: DashMap::new(),
            publish_script: redis::Script::new(PUBLISH_SCRIPT),
            read_script: redis::Script::new(READ_SCRIPT),
            presence_get_script: redis::Script::new(PRESENCE_GET_SCRIPT),
            node_handler: std::sync::OnceLock::new(),
        }))
    }

    /// The key of one of `channel`'s structures. The channel is a Redis
    /// Cluster hash tag, so the keys one script touches (stream and meta,
    /// the two presence keys) share a slot.
    fn key(&self, kind: &str, channel: &str) -> String {
        format!("{}.{kind}.{{{}}}", self.options.prefix, hash_tag(channel))
    }

    /// A key of the node registry. One tag for all of them: the heartbeat
    /// writes two in one transaction.
    fn registry_key(&self, kind: &str, name: &str) -> String {
        format!("{}.{kind}.{name}.{{registry}}", self.options.prefix)
    }

    /// The pub/sub channel of `channel`'s live messages (not a key, so no tag).
    fn live_channel(&self, channel: &str) -> String {
        format!("{}.live.{channel}", self.options.prefix)
    }

    /// The shard holding `channel`.
    fn shard(&self, channel: &str) -> &Shard {
        &self.shards[self.shard_index(channel)]
    }

    fn shard_index(&self, channel: &str) -> usize {
        if self.shards.len() == 1 { 0 } else { jump_hash(fnv1a(channel.as_bytes()), self.shards.len()) }
    }

    /// The shard of node-wide state: the registry and emulation routing.
    fn node_shard(&self) -> &Shard {
        &self.shards[0]
    }

    /// True when every shard answers a PING within the timeout.
    pub async fn ping(&self) -> bool {
        for shard in &self.shards {
            if shard.query::<String>(&mut redis::cmd("PING")).await.is_err() {
                return false;
            }
        }
        true
    }

    fn cell(&self, channel: &str) -> Arc<Mutex<Cell>> {
        if let Some(cell) = self.cells.get(channel) {
            return cell.clone();
        }
        self.cells.entry(channel.into()).or_default().clone()
    }

    /// Publishes; returns once Redis stored (and fanned out) the publication.
    /// The live message is `p:<epoch>:<offset>:<exclude>:<body>`: `exclude`
    /// is the client that must not get it (empty for none; client ids hold
    /// no `:`), and only the body is stored in the stream.
    pub async fn publish(
        &self,
        channel: &str,
        publication: &Publication,
        history: Option<&StreamOptions>,
        exclude: Option<&str>,
    ) -> Result<StreamPosition, EngineError> {
        let mut body = encode_publication(publication);
        let trace = crate::telemetry::current_headers();
        if !trace.is_empty() {
            // Appended, not nested: see proto::TraceContext.
            proto::TraceContext { traceparent: trace.traceparent, tracestate: trace.tracestate }.encode_raw(&mut body);
        }
        let exclude = exclude.unwrap_or_default();
        let Some(opts) = history else {
            let mut message = format!("p::0:{exclude}:").into_bytes();
            message.extend_from_slice(&body);
            self.shard(channel)
                .query::<i64>(redis::cmd("PUBLISH").arg(self.live_channel(channel)).arg(message))
                .await?;
            return Ok(StreamPosition::default());
        };
        let mut inv = self.publish_script.prepare_invoke();
        inv.key(self.key("stream", channel))
            .key(self.key("meta", channel))
            .arg(body)
            .arg(opts.size)
            .arg(opts.ttl.as_secs().max(1))
            .arg(opts.meta_ttl.as_secs().max(1))
            .arg(new_epoch())
            .arg(self.live_channel(channel))
            .arg(exclude);
        let reply = self.shard(channel).script(inv).await?;
        let bad = || EngineError::Redis("unexpected reply to the publish script".to_owned());
        let Value::Array(parts) = reply else { return Err(bad()) };
        let offset = parts.first().and_then(int).ok_or_else(bad)?;
        let epoch = parts.get(1).and_then(bulk).ok_or_else(bad)?;
        Ok(StreamPosition { offset, epoch: String::from_utf8_lossy(epoch).into_owned() })
    }

    /// Reads the stream from `from` (inclusive offset; `None` reads no entries).
    async fn read_stream(&self, channel: &str, opts: &StreamOptions, from: Option<u64>) -> Result<Stream, EngineError> {
        let start = from.map_or(String::new(), |o| if o <= 1 { "-".to_owned() } else { format!("{o}-0") });
        let mut inv = self.read_script.prepare_invoke();
        inv.key(self.key("stream", channel))
            .key(self.key("meta", channel))
            .arg(start)
            .arg(opts.meta_ttl.as_secs().max(1))
            .arg(new_epoch());
        parse_read(self.shard(channel).script(inv).await?, opts.ttl)
    }

    /// Reads history with the semantics of [`Stream::read`].
    pub async fn history(
        &self,
        channel: &str,
        opts: &StreamOptions,
        since: Option<&StreamPosition>,
        limit: usize,
        reverse: bool,
    ) -> Result<(Vec<Publication>, StreamPosition), EngineError> {
        // Forward reads from a position need only the entries after it.
        let from = match since {
            Some(pos) if !reverse => pos.offset.saturating_add(1),
            _ => 1,
        };
        let mut stream = self.read_stream(channel, opts, Some(from)).await?;
        let pubs = stream.read(since, limit, reverse, Instant::now()).map_err(EngineError::History)?;
        Ok((pubs, stream.position()))
    }

    /// Drops a channel's publications, keeping its epoch and top offset.
    pub async fn remove_history(&self, channel: &str) -> Result<(), EngineError> {
        self.shard(channel).query::<i64>(redis::cmd("DEL").arg(self.key("stream", channel))).await.map(|_| ())
    }

    /// Subscribes this node to the channel's live messages in Redis.
    async fn ensure_subscribed(&self, channel: &str) -> Result<(), EngineError> {
        let live = self.live_channel(channel);
        // Right after start (or a reconnect) the pub/sub connection may be a
        // moment away: wait for it up to the timeout.
        let deadline = Instant::now() + self.options.timeout;
        let mut state = loop {
            let state = self.shard(channel).pubsub.lock().await;
            if state.subscribed.contains(&live) || state.sink.is_some() || Instant::now() >= deadline {
                break state;
            }
            drop(state);
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        if state.subscribed.contains(&live) {
            return Ok(());
        }
        let sink = state.sink.as_mut().ok_or_else(|| EngineError::Redis("pub/sub not connected".to_owned()))?;
        tokio::time::timeout(self.options.timeout, sink.subscribe(&live))
            .await
            .map_err(|_| EngineError::Redis("subscribe timed out".to_owned()))?
            .map_err(|e| EngineError::Redis(e.to_string()))?;
        state.subscribed.insert(live);
        Ok(())
    }

    /// The subscribe contract of the memory engine: `f` runs with the channel
    /// locked and registers the subscriber at the position the view reports;
    /// it then receives every later publication exactly once.
    pub async fn subscribe<R>(
        &self,
        channel: &str,
        history: Option<&StreamOptions>,
        recover: Option<(&StreamPosition, usize)>,
        f: impl FnOnce(SubscribeView<'_>) -> R,
    ) -> Result<R, EngineError> {
        let pending = PendingSubscribe::enter(self, channel);
        let prepared = self.prepare(channel, history, recover).await;
        let cell = pending.leave();
        let mut guard = cell.lock();
        guard.pending -= 1;
        let (stream, since) = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.flush(channel, &mut guard);
                return Err(e);
            }
        };
        let Some(mut stream) = stream else {
            let result = f(SubscribeView::prefetched(None, None));
            self.flush(channel, &mut guard);
            return Ok(result);
        };
        let read = stream.position();
        // Register at what was delivered locally so far: publications after
        // it are in the buffer or still on their way, and reach this
        // subscriber live. A different epoch is a reset: existing
        // subscribers recover, this one starts at what it read.
        let at = match &guard.last {
            Some(last) if last.epoch == read.epoch && last.offset <= read.offset => last.clone(),
            Some(_) => {
                self.delivery.gap(channel);
                guard.buffer.retain(|(pos, _, _)| pos.epoch == read.epoch && pos.offset > read.offset);
                read
            }
            None => {
                guard.buffer.retain(|(pos, _, _)| pos.epoch == read.epoch && pos.offset > read.offset);
                read
            }
        };
        guard.last = Some(at.clone());
        let position = StreamPosition { offset: at.offset, epoch: at.epoch.clone() };
        let recovery = since.map(|(since, max)| {
            if since.offset > at.offset && since.epoch == at.epoch {
                // The client is ahead of what this node delivered: it cannot
                // be registered without duplicates. It starts over.
                Recovery::NotRecovered
            } else {
                match stream.recover(&since, max, Instant::now()) {
                    Recovery::Recovered(mut pubs) => {
                        pubs.retain(|p| p.offset <= at.offset);
                        Recovery::Recovered(pubs)
                    }
                    Recovery::NotRecovered => Recovery::NotRecovered,
                }
            }
        });
        let result = f(SubscribeView::prefetched(Some(position), recovery));
        self.flush(channel, &mut guard);
        Ok(result)
    }

    async fn prepare(
        &self,
        channel: &str,
        history: Option<&StreamOptions>,
        recover: Option<(&StreamPosition, usize)>,
    ) -> Result<(Option<Stream>, Option<(StreamPosition, usize)>), EngineError> {
        self.ensure_subscribed(channel).await?;
        let Some(opts) = history else { return Ok((None, None)) };
        let from = recover.map(|(since, _)| since.offset.saturating_add(1));
        let stream = self.read_stream(channel, opts, from).await?;
        Ok((Some(stream), recover.map(|(s, m)| (s.clone(), m))))
    }

    /// Delivers what was buffered while subscribes were preparing.
    fn flush(&self, channel: &str, cell: &mut Cell) {
        if cell.pending > 0 {
            return;
        }
        if std::mem::take(&mut cell.overflowed) {
            cell.buffer.clear();
            cell.last = None;
            self.delivery.gap(channel);
            return;
        }
        while let Some((pos, publication, exclude)) = cell.buffer.pop_front() {
            self.deliver(channel, cell, pos, &publication, exclude.as_deref());
        }
    }

    /// Delivers one live publication with the position check.
    fn deliver(
        &self,
        channel: &str,
        cell: &mut Cell,
        pos: StreamPosition,
        publication: &Publication,
        exclude: Option<&str>,
    ) {
        if pos.offset == 0 {
            self.delivery.publication(channel, publication, exclude);
            return;
        }
        match &cell.last {
            Some(last) if last.epoch == pos.epoch && pos.offset <= last.offset => return,
            Some(last) if last.epoch == pos.epoch && pos.offset == last.offset + 1 => {
                self.delivery.publication(channel, publication, exclude);
            }
            Some(last) => {
                warn!(%channel, last = last.offset, got = pos.offset, "live gap; subscribers must recover");
                self.delivery.gap(channel);
            }
            // Nobody is positioned yet: nothing to compare with.
            None => self.delivery.publication(channel, publication, exclude),
        }
        cell.last = Some(pos);
    }

    fn node_channel(&self, node: &str) -> String {
        format!("{}.node.{node}", self.options.prefix)
    }

    /// Sets who receives forwarded posts; the first call wins.
    pub fn set_node_handler(&self, handler: NodeHandler) {
        let _ = self.node_handler.set(handler);
    }

    /// Forwards `data` for `session` to `node`. Returns false when no node
    /// of that id is listening.
    pub async fn forward(&self, node: &str, session: &str, data: &[u8]) -> Result<bool, EngineError> {
        let mut message = session.as_bytes().to_vec();
        message.push(b'\n');
        message.extend_from_slice(data);
        let receivers: i64 =
            self.node_shard().query(redis::cmd("PUBLISH").arg(self.node_channel(node)).arg(message)).await?;
        Ok(receivers > 0)
    }

    /// Records this node's `info` (a JSON object) and its channels with
    /// their local subscriber counts in the node registry.
    pub async fn heartbeat(&self, info: &str, channels: &[(String, usize)]) -> Result<(), EngineError> {
        let entry = format!("{}\n{info}", unix_secs());
        let key = self.registry_key("node_channels", &self.options.node);
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("HSET").arg(self.registry_key("nodes", "all")).arg(&self.options.node).arg(entry).ignore();
        pipe.cmd("DEL").arg(&key).ignore();
        if !channels.is_empty() {
            pipe.cmd("HSET").arg(&key).arg(channels).ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(NODE_TTL.as_secs()).ignore();
        }
        self.node_shard().pipe::<()>(&pipe).await
    }

    /// Channel → subscriber count over the other live nodes.
    pub async fn remote_channels(&self) -> Result<HashMap<String, usize>, EngineError> {
        let all: HashMap<String, String> =
            self.node_shard().query(redis::cmd("HGETALL").arg(self.registry_key("nodes", "all"))).await?;
        let now = unix_secs();
        let mut out: HashMap<String, usize> = HashMap::new();
        for (node, entry) in all {
            let fresh = entry
                .split_once('\n')
                .and_then(|(at, _)| at.parse::<u64>().ok())
                .is_some_and(|at| now.saturating_sub(at) <= NODE_TTL.as_secs());
            if node == self.options.node || !fresh {
                continue;
            }
            let counts: HashMap<String, usize> =
                self.node_shard().query(redis::cmd("HGETALL").arg(self.registry_key("node_channels", &node))).await?;
            for (channel, n) in counts {
                *out.entry(channel).or_default() += n;
            }
        }
        Ok(out)
    }

    /// The `info` of every node that sent a heartbeat within the node TTL;
    /// drops the others from the registry.
    pub async fn nodes(&self) -> Result<Vec<String>, EngineError> {
        let key = self.registry_key("nodes", "all");
        let all: HashMap<String, String> = self.node_shard().query(redis::cmd("HGETALL").arg(&key)).await?;
        let now = unix_secs();
        let mut out = Vec::new();
        for (node, entry) in all {
            let Some((at, info)) = entry.split_once('\n') else { continue };
            if at.parse::<u64>().is_ok_and(|at| now.saturating_sub(at) <= NODE_TTL.as_secs()) {
                out.push(info.to_owned());
            } else {
                let _ = self.node_shard().query::<i64>(redis::cmd("HDEL").arg(&key).arg(node)).await;
            }
        }
        Ok(out)
    }

    fn on_message(&self, redis_channel: &str, payload: &[u8]) {
        if redis_channel == self.node_channel(&self.options.node) {
            if let (Some(handler), Some(split)) = (self.node_handler.get(), payload.iter().position(|b| *b == b'\n')) {
                let session = String::from_utf8_lossy(&payload[..split]);
                handler(&session, Bytes::copy_from_slice(&payload[split + 1..]));
            }
            return;
        }
        let Some(channel) = redis_channel.strip_prefix(&format!("{}.live.", self.options.prefix)) else { return };
        let Some(cell) = self.cells.get(channel).map(|c| c.clone()) else { return };
        let mut cell = cell.lock();
        match payload.get(..2) {
            Some(b"p:") => {
                let mut parts = payload[2..].splitn(4, |b| *b == b':');
                let (Some(epoch), Some(offset), Some(exclude), Some(body)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return;
                };
                let exclude = (!exclude.is_empty()).then(|| String::from_utf8_lossy(exclude).into_owned());
                let Some(offset) = std::str::from_utf8(offset).ok().and_then(|s| s.parse::<u64>().ok()) else {
                    return;
                };
                let Some(publication) = decode_publication(body, offset) else { return };
                // The publishing node's trace continues here (only decoded
                // when this process records spans at all).
                let span = if crate::telemetry::trace::active() {
                    let trace = proto::TraceContext::decode(body).unwrap_or_default();
                    crate::follow_span!(
                        &trace.traceparent,
                        &trace.tracestate,
                        "broker.receive",
                        otel.name = "broker receive",
                        otel.kind = "consumer",
                        messaging.destination.name = channel,
                        offset = crate::telemetry::trace::int(offset),
                    )
                } else {
                    tracing::Span::none()
                };
                let _entered = span.enter();
                let pos = StreamPosition { offset, epoch: String::from_utf8_lossy(epoch).into_owned() };
                if cell.pending > 0 && offset > 0 {
                    if cell.buffer.len() >= MAX_BUFFERED {
                        cell.overflowed = true;
                    } else {
                        cell.buffer.push_back((pos, publication, exclude));
                    }
                    return;
                }
                self.deliver(channel, &mut cell, pos, &publication, exclude.as_deref());
            }
            Some(b"j:") => {
                if let Some(info) = decode_info(&payload[2..]) {
                    self.delivery.join(channel, &info);
                }
            }
            Some(b"l:") => {
                if let Some(info) = decode_info(&payload[2..]) {
                    self.delivery.leave(channel, &info);
                }
            }
            _ => {}
        }
    }

    fn announcement(tag: &[u8], info: &ClientInfo) -> Vec<u8> {
        let mut message = tag.to_vec();
        message.extend_from_slice(&encode_info(info));
        message
    }

    /// Queues a write; false when the queue is full (the write is dropped).
    fn enqueue(&self, channel: &str, write: Membership, done: Option<tokio::sync::oneshot::Sender<()>>) -> bool {
        let outbox = &self.shard(channel).outbox;
        {
            let mut queue = outbox.queue.lock();
            if queue.len() >= self.options.max_queued_writes {
                drop(queue);
                warn!(%channel, max = self.options.max_queued_writes, "presence/join/leave queue full; write dropped");
                return false;
            }
            queue.push_back(QueuedWrite { channel: channel.to_owned(), write, done });
        }
        outbox.wake.notify_one();
        true
    }

    /// Announces a join to every node's subscribers of `channel` (queued).
    pub fn join(&self, channel: &str, info: &ClientInfo) {
        self.enqueue(channel, Membership::Join(info.clone()), None);
    }

    /// Announces a leave to every node's subscribers of `channel` (queued).
    pub fn leave(&self, channel: &str, info: &ClientInfo) {
        self.enqueue(channel, Membership::Leave(info.clone()), None);
    }

    /// Adds or refreshes a presence entry; it expires after `presence_ttl`
    /// unless refreshed again. Returns once Redis stored it; on an error the
    /// write may still be queued (it is sent when Redis is back).
    pub async fn presence_add(&self, channel: &str, info: &ClientInfo) -> Result<(), EngineError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.enqueue(channel, Membership::PresenceAdd(info.clone()), Some(tx)) {
            return Err(EngineError::Redis("presence write queue full".to_owned()));
        }
        if self.shard(channel).outbox.stalled.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(EngineError::Redis("unreachable; presence write queued".to_owned()));
        }
        match tokio::time::timeout(self.options.timeout, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(EngineError::Redis("presence write dropped".to_owned())),
            Err(_) => Err(EngineError::Redis("timed out; presence write queued".to_owned())),
        }
    }

    /// Re-adds the entries of live local subscribers so they outlive
    /// `presence_ttl`. Skipped for an instance whose queue is stalled: the
    /// refresh after it recovers re-adds them.
    pub fn presence_refresh(&self, entries: impl IntoIterator<Item = (String, ClientInfo)>) {
        for (channel, info) in entries {
            if !self.shard(&channel).outbox.stalled.load(std::sync::atomic::Ordering::Relaxed) {
                self.enqueue(&channel, Membership::PresenceAdd(info), None);
            }
        }
    }

    /// Removes a presence entry (queued).
    pub fn presence_remove(&self, channel: &str, client: &str) {
        self.enqueue(channel, Membership::PresenceRemove(client.to_owned()), None);
    }

    /// The queued writes as one pipeline, in order.
    fn write_pipeline(&self, batch: &[QueuedWrite]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        let ttl = self.options.presence_ttl.as_secs().max(1);
        for QueuedWrite { channel, write, .. } in batch {
            let (exp, presence) = (self.key("presence_exp", channel), self.key("presence", channel));
            match write {
                // EVAL rather than EVALSHA: the script survives a restart
                // of Redis that emptied its script cache.
                Membership::PresenceAdd(info) => pipe
                    .cmd("EVAL")
                    .arg(PRESENCE_ADD_SCRIPT)
                    .arg(2)
                    .arg(exp)
                    .arg(presence)
                    .arg(unix_secs())
                    .arg(ttl)
                    .arg(&info.client)
                    .arg(encode_info(info))
                    .ignore(),
                Membership::PresenceRemove(client) => {
                    pipe.cmd("ZREM").arg(exp).arg(client).ignore();
                    pipe.cmd("HDEL").arg(presence).arg(client).ignore()
                }
                Membership::Join(info) => {
                    pipe.cmd("PUBLISH").arg(self.live_channel(channel)).arg(Self::announcement(b"j:", info)).ignore()
                }
                Membership::Leave(info) => {
                    pipe.cmd("PUBLISH").arg(self.live_channel(channel)).arg(Self::announcement(b"l:", info)).ignore()
                }
            };
        }
        pipe
    }

    /// Sends one instance's queued writes until shutdown; then sends what is
    /// queued (and what closing sessions add) while Redis takes it.
    async fn run_outbox(self: Arc<Self>, index: usize, shutdown: CancellationToken) {
        use std::sync::atomic::Ordering::Relaxed;
        let shard = &self.shards[index];
        let outbox = &shard.outbox;
        loop {
            let batch: Vec<QueuedWrite> = {
                let mut queue = outbox.queue.lock();
                let n = queue.len().min(WRITE_BATCH);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                if shutdown.is_cancelled() {
                    // Sessions closing after the cancel queue their leaves
                    // here; stop once they went quiet.
                    if tokio::time::timeout(Duration::from_millis(200), outbox.wake.notified()).await.is_err() {
                        return;
                    }
                    continue;
                }
                tokio::select! {
                    _ = outbox.wake.notified() => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            let pipe = self.write_pipeline(&batch);
            let mut backoff = Duration::from_millis(50);
            loop {
                match shard.send_writes(&pipe).await {
                    Ok(()) => break,
                    Err(Unsent::Refused(e)) => {
                        // Retrying cannot help a batch Redis itself refused.
                        warn!(error = %e, dropped = batch.len(), "redis refused presence/join/leave writes");
                        break;
                    }
                    Err(Unsent::Unreachable(e)) if shutdown.is_cancelled() => {
                        warn!(error = %e, dropped = batch.len(), "redis unreachable at shutdown; presence/join/leave writes dropped");
                        return;
                    }
                    Err(Unsent::Unreachable(e)) => {
                        if !outbox.stalled.swap(true, Relaxed) {
                            warn!(error = %e, shard = index, "redis unreachable; presence/join/leave writes queued");
                        }
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                // Re-send once this node listens again, so that its own
                // subscribers receive the re-sent join/leave.
                while !shutdown.is_cancelled() && shard.pubsub.lock().await.sink.is_none() {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
            }
            if outbox.stalled.swap(false, Relaxed) {
                debug!(shard = index, "redis reachable again; queued presence/join/leave writes sent");
            }
            for write in batch {
                if let Some(done) = write.done {
                    let _ = done.send(());
                }
            }
        }
    }

    pub async fn presence(&self, channel: &str) -> Result<HashMap<String, ClientInfo>, EngineError> {
        let mut inv = self.presence_get_script.prepare_invoke();
        inv.key(self.key("presence_exp", channel)).key(self.key("presence", channel)).arg(unix_secs());
        let Value::Array(values) = self.shard(channel).script(inv).await? else { return Ok(HashMap::new()) };
        Ok(values.iter().filter_map(bulk).filter_map(decode_info).map(|i| (i.client.clone(), i)).collect())
    }

    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, EngineError> {
        let clients = self.presence(channel).await?;
        let users: HashSet<&str> = clients.values().map(|i| i.user.as_str()).collect();
        let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
        Ok(PresenceStats { num_clients: n(clients.len()), num_users: n(users.len()) })
    }

    /// Stores the first result of an idempotent publish for `ttl`; returns
    /// the stored one when another node (or an earlier call) got there first.
    pub async fn idempotent_get(&self, channel: &str, key: &str) -> Result<Option<StreamPosition>, EngineError> {
        let stored: Option<String> =
            self.shard(channel).query(redis::cmd("GET").arg(self.key("idem", &format!("{channel}:{key}")))).await?;
        Ok(stored.and_then(|s| {
            let (offset, epoch) = s.split_once(':')?;
            Some(StreamPosition { offset: offset.parse().ok()?, epoch: epoch.to_owned() })
        }))
    }

    /// Claims an idempotency key; false when it was claimed already.
    pub async fn idempotent_claim(&self, channel: &str, key: &str, ttl: Duration) -> Result<bool, EngineError> {
        let k = self.key("idem", &format!("{channel}:{key}"));
        let set: Option<String> = self
            .shard(channel)
            .query(redis::cmd("SET").arg(k).arg("").arg("NX").arg("EX").arg(ttl.as_secs().max(1)))
            .await?;
        Ok(set.is_some())
    }

    /// Gives up a claimed key whose publish failed.
    pub async fn idempotent_release(&self, channel: &str, key: &str) -> Result<(), EngineError> {
        self.shard(channel)
            .query::<i64>(redis::cmd("DEL").arg(self.key("idem", &format!("{channel}:{key}"))))
            .await
            .map(|_| ())
    }

    pub async fn idempotent_store(
        &self,
        channel: &str,
        key: &str,
        pos: &StreamPosition,
        ttl: Duration,
    ) -> Result<(), EngineError> {
        let k = self.key("idem", &format!("{channel}:{key}"));
        let v = format!("{}:{}", pos.offset, pos.epoch);
        self.shard(channel).query::<()>(redis::cmd("SET").arg(k).arg(v).arg("EX").arg(ttl.as_secs().max(1))).await
    }

    /// Forgets channels without local subscribers and unsubscribes them in
    /// Redis. `is_active` says whether a channel still has subscribers.
    pub async fn sweep(&self, is_active: impl Fn(&str) -> bool) {
        // Every shard's pub/sub state is held while cells go, so that no
        // subscribe re-adds a channel between its removal and the UNSUBSCRIBE.
        let mut states = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            states.push(shard.pubsub.lock().await);
        }
        let mut drop: Vec<Vec<String>> = vec![Vec::new(); self.shards.len()];
        self.cells.retain(|name, cell| {
            let c = cell.lock();
            if c.pending > 0 || is_active(name) {
                return true;
            }
            drop[self.shard_index(name)].push(format!("{}.live.{name}", self.options.prefix));
            false
        });
        for (state, drop) in states.iter_mut().zip(drop) {
            for live in &drop {
                state.subscribed.remove(live);
            }
            if let (Some(sink), false) = (state.sink.as_mut(), drop.is_empty()) {
                let _ = tokio::time::timeout(self.options.timeout, sink.unsubscribe(&drop)).await;
            }
        }
    }

    /// Compares what was delivered with each stream top; a top that stays
    /// ahead across two checks means live messages were lost.
    async fn check_gaps(&self, shard: usize) {
        let channels: Vec<(String, StreamPosition)> = self
            .cells
            .iter()
            .filter(|e| self.shard_index(e.key()) == shard)
            .filter_map(|e| e.value().lock().last.clone().map(|l| (e.key().to_string(), l)))
            .collect();
        if channels.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        for (channel, _) in &channels {
            pipe.cmd("HMGET").arg(self.key("meta", channel)).arg("e").arg("s");
        }
        let Ok(tops) = self.shards[shard].pipe::<Vec<(Option<String>, Option<u64>)>>(&pipe).await else { return };
        for ((channel, _), (epoch, top)) in channels.iter().zip(tops) {
            let Some(cell) = self.cells.get(channel.as_str()).map(|c| c.clone()) else { continue };
            let mut cell = cell.lock();
            let Some(last) = cell.last.clone() else { continue };
            let top = StreamPosition { offset: top.unwrap_or(0), epoch: epoch.unwrap_or_default() };
            let lost = if top.epoch != last.epoch {
                true
            } else if top.offset > last.offset {
                let lost = cell.lagging_top.as_ref().is_some_and(|t| t.epoch == last.epoch && t.offset > last.offset);
                cell.lagging_top = (!lost).then_some(top.clone());
                lost
            } else {
                cell.lagging_top = None;
                false
            };
            if lost && cell.pending == 0 {
                warn!(%channel, delivered = last.offset, top = top.offset, "live gap found by the position check");
                cell.lagging_top = None;
                cell.last = None;
                self.delivery.gap(channel);
            }
        }
    }

    /// Holds the pub/sub connections: reconnects, resubscribes every channel
    /// in one batch, delivers messages and runs the periodic gap check; and
    /// sends the queued presence and join/leave writes.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let pubsub = (0..self.shards.len()).map(|i| self.clone().run_shard(i, shutdown.clone()));
        let outboxes = (0..self.shards.len()).map(|i| self.clone().run_outbox(i, shutdown.clone()));
        futures_util::future::join(futures_util::future::join_all(pubsub), futures_util::future::join_all(outboxes))
            .await;
    }

    async fn run_shard(self: Arc<Self>, index: usize, shutdown: CancellationToken) {
        let shard = &self.shards[index];
        let mut check = tokio::time::interval(self.options.gap_check_period);
        loop {
            let connected = tokio::time::timeout(self.options.timeout * 2, shard.client.get_async_pubsub()).await;
            if let Ok(Ok(pubsub)) = connected {
                let (mut sink, mut stream) = pubsub.split();
                let mut state = shard.pubsub.lock().await;
                let mut channels: Vec<String> = state.subscribed.iter().cloned().collect();
                if index == 0 {
                    channels.push(self.node_channel(&self.options.node));
                }
                let resubscribed =
                    matches!(tokio::time::timeout(self.options.timeout, sink.subscribe(&channels)).await, Ok(Ok(())));
                if resubscribed {
                    state.sink = Some(sink);
                    drop(state);
                    debug!(channels = channels.len(), "redis pub/sub connected");
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = check.tick() => self.check_gaps(index).await,
                            msg = stream.next() => match msg {
                                Some(msg) => self.on_message(msg.get_channel_name(), msg.get_payload_bytes()),
                                None => break,
                            },
                        }
                    }
                    warn!(shard = index, "redis pub/sub connection lost; reconnecting");
                    shard.pubsub.lock().await.sink = None;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The recovery table against a real Redis (`REDIS_URL`, default
    //! `redis://127.0.0.1:6379`); skipped without one unless `CI=true`.

    use super::*;
    use crate::history::tests::{Case, publication, recovery_cases};

    struct Nothing;

    impl Delivery for Nothing {
        fn publication(&self, _: &str, _: &Publication, _: Option<&str>) {}
        fn join(&self, _: &str, _: &ClientInfo) {}
        fn leave(&self, _: &str, _: &ClientInfo) {}
        fn gap(&self, _: &str) {}
    }

    async fn broker(prefix: &str) -> Option<(Arc<RedisBroker>, CancellationToken)> {
        broker_with(prefix, Duration::from_secs(60)).await
    }

    async fn broker_with(prefix: &str, presence_ttl: Duration) -> Option<(Arc<RedisBroker>, CancellationToken)> {
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let options = RedisOptions {
            urls: vec![url.clone()],
            prefix: prefix.to_owned(),
            timeout: Duration::from_secs(2),
            presence_ttl,
            gap_check_period: Duration::from_secs(1),
            node: "test".to_owned(),
            max_queued_writes: 100,
        };
        let broker = RedisBroker::new(options, Arc::new(Nothing)).expect("valid url");
        if !broker.ping().await {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but Redis at {url} is unreachable");
            eprintln!("skipped: Redis at {url} is unreachable");
            return None;
        }
        let token = CancellationToken::new();
        tokio::spawn(broker.clone().run(token.clone()));
        Some((broker, token))
    }

    /// Every row that needs no time to pass; the TTL rows run on Redis's own
    /// clock in `recovery_table_ttl_rows_on_redis`.
    #[tokio::test]
    async fn recovery_table_on_redis() {
        let prefix = format!("sbunit-{}", new_epoch());
        let Some((broker, token)) = broker(&prefix).await else { return };
        let mut ran = 0;
        for (i, c) in recovery_cases().iter().enumerate().filter(|(_, c)| c.is_instant()) {
            let channel = format!("table{i}");
            let opts = StreamOptions {
                size: c.size,
                ttl: Duration::from_secs(c.ttl_secs),
                meta_ttl: Duration::from_secs(3600),
            };
            let mut top = broker.history(&channel, &opts, None, 0, false).await.expect("read").1;
            for &(_, count) in c.batches {
                for _ in 0..count {
                    let p = publication(top.offset + 1);
                    top = broker.publish(&channel, &p, Some(&opts), None).await.expect("publish");
                }
            }
            let since = StreamPosition { offset: c.since, epoch: c.epoch_for(&top.epoch) };
            let got = broker
                .subscribe(&channel, Some(&opts), Some((&since, c.max)), |mut view| view.recover(&since, c.max))
                .await
                .expect("subscribe");
            c.check(got);
            ran += 1;
        }
        assert!(ran >= 10, "only {ran} rows ran");
        token.cancel();
    }

    /// Real time one second of a TTL row stands for: short enough to run the
    /// rows quickly, long enough that Redis's whole-second key expiry
    /// (`EXPIRE`) still sees a 2 s history TTL.
    const UNIT: Duration = Duration::from_millis(200);

    /// One TTL row on a real clock: batches are published at their scaled
    /// times and entry ages come from Redis (`TIME` at publish and at read).
    /// `Ok` when the row held; `Err` when the machine stalled so long that
    /// the row's timeline no longer applies (the caller retries it).
    async fn timed_row(broker: &RedisBroker, channel: &str, c: &Case) -> Result<(), String> {
        let opts = StreamOptions {
            size: c.size,
            ttl: UNIT * u32::try_from(c.ttl_secs).unwrap(),
            meta_ttl: Duration::from_secs(3600),
        };
        let mut top = broker.history(channel, &opts, None, 0, false).await.expect("read").1;
        let t0 = Instant::now();
        let at = |secs: u64| t0 + UNIT * u32::try_from(secs).unwrap();
        // When each offset's publish was sent: Redis stamped it later.
        let mut sent_at = HashMap::new();
        for &(batch_at, count) in c.batches {
            tokio::time::sleep_until(at(batch_at)).await;
            if Instant::now() > at(batch_at) + UNIT {
                return Err(format!("batch at {batch_at} published late"));
            }
            for _ in 0..count {
                let p = publication(top.offset + 1);
                sent_at.insert(top.offset + 1, Instant::now());
                top = broker.publish(channel, &p, Some(&opts), None).await.expect("publish");
            }
        }
        // The first moment an entry the resume needs can have expired.
        let first_expiry =
            sent_at.iter().filter(|(o, _)| **o > c.since).map(|(_, t)| *t + opts.ttl).min().unwrap_or(at(1_000_000));
        let since = StreamPosition { offset: c.since, epoch: c.epoch_for(&top.epoch) };
        let recover = || async {
            broker
                .subscribe(channel, Some(&opts), Some((&since, c.max)), |mut view| view.recover(&since, c.max))
                .await
                .expect("subscribe")
        };
        if c.want.is_some() {
            // Holds until a needed entry expires: checked at the row's time.
            tokio::time::sleep_until(at(c.recover_at_secs)).await;
            let got = recover().await;
            if Instant::now() >= first_expiry {
                return Err("recovered after a needed entry's expiry".to_owned());
            }
            c.check(got);
            return Ok(());
        }
        // Not recovered once a needed entry expired: wait for exactly that,
        // and never earlier (an engine expiring early fails here).
        let deadline = at(c.recover_at_secs) + UNIT * 20;
        loop {
            let got = recover().await;
            if matches!(got, Recovery::NotRecovered) {
                // Entry times are stored in whole milliseconds.
                let earliest = first_expiry - Duration::from_millis(2);
                assert!(Instant::now() >= earliest, "case {:?}: expired before its TTL", c.name);
                c.check(got);
                return Ok(());
            }
            assert!(Instant::now() < deadline, "case {:?}: never expired: {got:?}", c.name);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The rows of the shared table that need time to pass (history TTL),
    /// on Redis, all at once; a row whose timeline a stalled machine broke
    /// is run again on a fresh channel.
    #[tokio::test]
    async fn recovery_table_ttl_rows_on_redis() {
        let prefix = format!("sbunit-{}", new_epoch());
        let Some((broker, token)) = broker(&prefix).await else { return };
        let cases = recovery_cases();
        let rows: Vec<(usize, &Case)> = cases.iter().enumerate().filter(|(_, c)| !c.is_instant()).collect();
        assert_eq!(rows.len(), 5, "the TTL rows of the table");
        let runs = rows.iter().map(|&(i, c)| {
            let broker = broker.clone();
            async move {
                for attempt in 0..3 {
                    match timed_row(&broker, &format!("ttl{i}-{attempt}"), c).await {
                        Ok(()) => return,
                        Err(why) => eprintln!("case {:?}: {why}; again", c.name),
                    }
                }
                panic!("case {:?}: the machine stalled on every attempt", c.name);
            }
        });
        futures_util::future::join_all(runs).await;
        token.cancel();
    }

    /// The presence and join/leave queue is bounded: past
    /// `max_queued_writes` writes are refused, not buffered without end.
    #[tokio::test]
    async fn the_write_queue_is_bounded() {
        let options = RedisOptions {
            // Nothing listens on port 1 and `run` is not started: the
            // queue only fills.
            urls: vec!["redis://127.0.0.1:1".to_owned()],
            prefix: "bounded".to_owned(),
            timeout: Duration::from_millis(50),
            presence_ttl: Duration::from_secs(60),
            gap_check_period: Duration::from_secs(1),
            node: "test".to_owned(),
            max_queued_writes: 3,
        };
        let broker = RedisBroker::new(options, Arc::new(Nothing)).expect("valid url");
        let info = ClientInfo { user: "u".to_owned(), client: "c1".to_owned(), ..ClientInfo::default() };
        broker.join("ch", &info);
        broker.presence_remove("ch", "c1");
        let queued = broker.presence_add("ch", &info).await.expect_err("nobody sends it");
        assert_eq!(queued, EngineError::Redis("timed out; presence write queued".to_owned()));
        assert_eq!(broker.shards[0].outbox.queue.lock().len(), 3);
        broker.leave("ch", &info);
        let full = broker.presence_add("ch", &info).await.expect_err("full");
        assert_eq!(full, EngineError::Redis("presence write queue full".to_owned()));
        assert_eq!(broker.shards[0].outbox.queue.lock().len(), 3, "nothing past the bound");
    }

    /// Live publications reaching this node, by offset.
    #[derive(Default)]
    struct Received(Mutex<Vec<u64>>, tokio::sync::Notify);

    impl Delivery for Received {
        fn publication(&self, _: &str, p: &Publication, _: Option<&str>) {
            self.0.lock().push(p.offset);
            self.1.notify_waiters();
        }
        fn join(&self, _: &str, _: &ClientInfo) {}
        fn leave(&self, _: &str, _: &ClientInfo) {}
        fn gap(&self, _: &str) {}
    }

    /// A subscribe dropped while it reads from Redis (its client left) gives
    /// its pending count back: live messages keep flowing to the node's
    /// other subscribers instead of piling up in the buffer.
    #[tokio::test]
    async fn a_subscribe_dropped_mid_read_does_not_stall_live_delivery() {
        let prefix = format!("sbunit-{}", new_epoch());
        let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let options = RedisOptions {
            urls: vec![url.clone()],
            prefix,
            timeout: Duration::from_secs(2),
            presence_ttl: Duration::from_secs(60),
            gap_check_period: Duration::from_secs(3600),
            node: "test".to_owned(),
            max_queued_writes: 100,
        };
        let received = Arc::new(Received::default());
        let broker = RedisBroker::new(options, received.clone()).expect("valid url");
        if !broker.ping().await {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but Redis at {url} is unreachable");
            eprintln!("skipped: Redis at {url} is unreachable");
            return;
        }
        let token = CancellationToken::new();
        tokio::spawn(broker.clone().run(token.clone()));
        let opts = StreamOptions { size: 10, ttl: Duration::from_secs(60), meta_ttl: Duration::from_secs(3600) };
        let position = broker.subscribe("ch", Some(&opts), None, |view| view.position()).await.expect("subscribe");
        assert!(position.is_some());

        // Polled once, it is past `enter` and waiting on Redis; then dropped.
        let abandoned = broker.subscribe("ch", Some(&opts), None, |_| ());
        assert!(futures_util::FutureExt::now_or_never(abandoned).is_none(), "the read must wait on Redis");
        assert_eq!(broker.cell("ch").lock().pending, 0, "the dropped subscribe took its count back");

        let top = broker.publish("ch", &publication(1), Some(&opts), None).await.expect("publish");
        let wait = async {
            loop {
                let notified = received.1.notified();
                if received.0.lock().contains(&top.offset) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait).await.expect("the publication is delivered live");
        token.cancel();
    }

    /// Keys of one channel carry it as a hash tag; a name with braces gets
    /// a hashed tag instead, identical for all its keys.
    #[test]
    fn channel_keys_carry_one_hash_tag() {
        assert_eq!(hash_tag("chat:a"), "chat:a");
        assert_eq!(hash_tag("a}b"), hash_tag("a}b"));
        assert!(hash_tag("a}b").starts_with('#') && !hash_tag("{x").contains(['{', '}']));
        assert_ne!(hash_tag("a}b"), hash_tag("a{b"));
    }

    /// Entries of a node that stopped refreshing them (it died) expire after
    /// `presence_ttl`; stats follow.
    #[tokio::test]
    async fn presence_of_a_silent_node_expires_after_the_ttl() {
        let prefix = format!("sbunit-{}", new_epoch());
        let Some((broker, token)) = broker_with(&prefix, Duration::from_secs(1)).await else { return };
        let info = ClientInfo { user: "u".to_owned(), client: "c1".to_owned(), ..ClientInfo::default() };
        broker.presence_add("ch", &info).await.expect("add");
        let stats = broker.presence_stats("ch").await.expect("stats");
        assert_eq!(stats, PresenceStats { num_clients: 1, num_users: 1 });
        assert_eq!(broker.presence("ch").await.expect("get").get("c1"), Some(&info));
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(broker.presence("ch").await.expect("get").is_empty());
        assert_eq!(broker.presence_stats("ch").await.expect("stats"), PresenceStats::default());
        token.cancel();
    }
}
