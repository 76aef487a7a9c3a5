//! Chat interactions as the node runs them: parse a call, read the bounded
//! part of the stream it needs, fold it with [`crate::chat`], check the
//! caller may do it, and publish the interaction through [`Hub::publish`]
//! (so the publish pipeline, moderation and redaction included, applies to
//! edits like to any message). Sessions (rpc) and the server API both call
//! [`Hub::chat_call`]; each checks its own permissions first and says who
//! acts in an [`Actor`].
//!
//! State kept here besides the stream: read marks (memory engine: a bounded
//! cache on this node; Redis: a hash per channel shared by all nodes), the
//! typing throttle and user status (this node).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Hub, PublishRequest};
use crate::chat::status::{Record, State, StatusView};
use crate::chat::{self, ChatError, Fold, Kind, Limits};
use crate::config::{ChannelOptions, Config};
use crate::protocol::{ClientInfo, ErrorCode, Payload, Publication, ReplyError, StreamPosition};

/// The rpc methods (and, with `_` for `.`, the API methods) of chat.
pub const METHODS: &[&str] = &[
    "message.send",
    "message.edit",
    "message.delete",
    "message.get",
    "reaction.add",
    "reaction.remove",
    "read.mark",
    "unread.counts",
    "thread.history",
    "typing",
    "status.set",
];

/// Who performs a chat call.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// The user (`""` for the server API acting for nobody).
    pub user: String,
    /// Attached to the interaction's publication, as a client publish does.
    pub info: Option<ClientInfo>,
    /// May edit and delete anyone's messages (admin claim, or the server API).
    pub admin: bool,
}

/// One chat call, parsed from the rpc `data` (or the API params).
#[derive(Debug)]
pub enum ChatCall {
    Send { channel: String, data: Payload, reply_to: Option<u64> },
    Edit { channel: String, offset: u64, data: Payload },
    Delete { channel: String, offset: u64 },
    Get { channel: String, offset: u64 },
    Reaction { channel: String, offset: u64, reaction: String, add: bool },
    ReadMark { channel: String, offset: u64 },
    Unread { channels: Vec<String> },
    Thread { channel: String, offset: u64, limit: Option<usize>, since: u64 },
    Typing { channel: String },
    StatusSet { state: String, text: String },
}

#[derive(Deserialize)]
struct SendParams {
    channel: String,
    data: Payload,
    #[serde(default)]
    reply_to: Option<u64>,
}

#[derive(Deserialize)]
struct EditParams {
    channel: String,
    offset: u64,
    data: Payload,
}

#[derive(Deserialize)]
struct TargetParams {
    channel: String,
    offset: u64,
}

#[derive(Deserialize)]
struct ReactionParams {
    channel: String,
    offset: u64,
    reaction: String,
}

#[derive(Deserialize)]
struct ChannelsParams {
    channels: Vec<String>,
}

#[derive(Deserialize)]
struct ThreadParams {
    channel: String,
    offset: u64,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    since: u64,
}

#[derive(Deserialize)]
struct ChannelParams {
    channel: String,
}

#[derive(Deserialize)]
struct StatusParams {
    state: String,
    #[serde(default)]
    text: String,
}

fn bad_request(message: impl std::fmt::Display) -> ReplyError {
    ReplyError { code: ErrorCode::BadRequest.code(), message: format!("bad request: {message}"), temporary: false }
}

impl ChatCall {
    /// Parses `method` with its JSON `data`; `None` when `method` is not a
    /// chat method (the rpc pipeline gets it then).
    pub fn parse(method: &str, data: &[u8]) -> Option<Result<Self, ReplyError>> {
        if !METHODS.contains(&method) {
            return None;
        }
        let data = if data.is_empty() { b"{}".as_slice() } else { data };
        fn p<'a, T: Deserialize<'a>>(data: &'a [u8]) -> Result<T, ReplyError> {
            serde_json::from_slice(data).map_err(bad_request)
        }
        Some((|| {
            Ok(match method {
                "message.send" => {
                    let s: SendParams = p(data)?;
                    Self::Send { channel: s.channel, data: s.data, reply_to: s.reply_to }
                }
                "message.edit" => {
                    let e: EditParams = p(data)?;
                    Self::Edit { channel: e.channel, offset: e.offset, data: e.data }
                }
                "message.delete" => {
                    let t: TargetParams = p(data)?;
                    Self::Delete { channel: t.channel, offset: t.offset }
                }
                "message.get" => {
                    let t: TargetParams = p(data)?;
                    Self::Get { channel: t.channel, offset: t.offset }
                }
                "reaction.add" | "reaction.remove" => {
                    let r: ReactionParams = p(data)?;
                    let add = method == "reaction.add";
                    Self::Reaction { channel: r.channel, offset: r.offset, reaction: r.reaction, add }
                }
                "read.mark" => {
                    let t: TargetParams = p(data)?;
                    Self::ReadMark { channel: t.channel, offset: t.offset }
                }
                "unread.counts" => Self::Unread { channels: p::<ChannelsParams>(data)?.channels },
                "thread.history" => {
                    let t: ThreadParams = p(data)?;
                    Self::Thread { channel: t.channel, offset: t.offset, limit: t.limit, since: t.since }
                }
                "typing" => Self::Typing { channel: p::<ChannelParams>(data)?.channel },
                "status.set" => {
                    let s: StatusParams = p(data)?;
                    Self::StatusSet { state: s.state, text: s.text }
                }
                _ => unreachable!("listed in METHODS"),
            })
        })())
    }

    /// The channels the call touches, for the caller's permission check.
    pub fn channels(&self) -> Vec<&str> {
        match self {
            Self::Send { channel, .. }
            | Self::Edit { channel, .. }
            | Self::Delete { channel, .. }
            | Self::Get { channel, .. }
            | Self::Reaction { channel, .. }
            | Self::ReadMark { channel, .. }
            | Self::Thread { channel, .. }
            | Self::Typing { channel } => vec![channel.as_str()],
            Self::Unread { channels } => channels.iter().map(String::as_str).collect(),
            Self::StatusSet { .. } => Vec::new(),
        }
    }
}

impl From<ChatError> for ReplyError {
    fn from(e: ChatError) -> Self {
        let code = match e {
            ChatError::NotAuthor => ErrorCode::PermissionDenied,
            ChatError::TooManyReactions(_) => ErrorCode::LimitExceeded,
            ChatError::NotFound(_) | ChatError::Deleted(_) | ChatError::BadReaction(_) => ErrorCode::BadRequest,
        };
        ReplyError { code: code.code(), message: e.to_string(), temporary: false }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn empty_object() -> Payload {
    Payload::from_json_unchecked(Bytes::from_static(b"{}"))
}

fn to_payload(value: &Value) -> Payload {
    Payload::from_json_unchecked(Bytes::from(value.to_string()))
}

fn position(pos: &StreamPosition) -> Value {
    json!({ "offset": pos.offset, "epoch": pos.epoch })
}

/// Node-local chat state.
pub(super) struct ChatState {
    /// (channel, user) → (epoch, offset) of the last read message; memory
    /// engine only.
    read_marks: moka::sync::Cache<(String, String), (String, u64)>,
    /// (channel, user) → when their last typing event went out.
    typing: moka::sync::Cache<(String, String), Instant>,
    /// user → status record.
    status: moka::sync::Cache<String, Arc<Mutex<Record>>>,
}

impl ChatState {
    pub(super) fn new(config: &Config) -> Self {
        Self {
            read_marks: moka::sync::Cache::builder().max_capacity(config.chat.max_read_marks).build(),
            typing: moka::sync::Cache::builder()
                .max_capacity(config.chat.max_read_marks)
                .time_to_idle(Duration::from_millis(config.chat.typing_throttle_ms.max(1)))
                .build(),
            status: moka::sync::Cache::builder()
                .max_capacity(config.status.max_users)
                .time_to_idle(Duration::from_secs(config.status.last_seen_ttl_secs))
                .build(),
        }
    }

    fn record(&self, user: &str) -> Arc<Mutex<Record>> {
        self.status.get_with(user.to_owned(), || Arc::new(Mutex::new(Record::new(Instant::now()))))
    }
}

impl Hub {
    fn limits(&self) -> Limits {
        Limits { max_reactions_per_message: self.config.chat.max_reactions_per_message }
    }

    /// The options of a channel where chat is on; 108 where it is off.
    pub fn chat_options(&self, channel: &str) -> Result<ChannelOptions, ReplyError> {
        let options = self.channel_options(channel)?;
        if !options.chat {
            return Err(ReplyError {
                code: ErrorCode::NotAvailable.code(),
                message: format!("chat is not enabled for channel {channel:?}"),
                temporary: false,
            });
        }
        Ok(options)
    }

    /// Whether the namespace's admin claim is among `true_claims`.
    pub fn chat_admin(options: &ChannelOptions, true_claims: &[String]) -> bool {
        !options.chat_admin_claim.is_empty() && true_claims.contains(&options.chat_admin_claim)
    }

    /// The stream from `offset` on (inclusive), at most
    /// `chat.max_scan_publications`. A message that history no longer holds
    /// (or never held) is "not found".
    async fn scan_from(&self, channel: &str, offset: u64) -> Result<Vec<Publication>, ReplyError> {
        if offset == 0 {
            return Err(ChatError::NotFound(0).into());
        }
        let since = StreamPosition { offset: offset - 1, epoch: String::new() };
        match self.history(channel, Some(&since), self.config.chat.max_scan_publications, false).await {
            Ok((pubs, _)) => Ok(pubs),
            Err(ErrorCode::UnrecoverablePosition) => Err(ChatError::NotFound(offset).into()),
            Err(code) => Err(code.into()),
        }
    }

    async fn fold_from(&self, channel: &str, offset: u64) -> Result<Fold, ReplyError> {
        Ok(Fold::run(self.limits(), &self.scan_from(channel, offset).await?))
    }

    async fn publish_interaction(
        &self,
        actor: &Actor,
        channel: &str,
        data: Payload,
        tags: HashMap<String, String>,
        ephemeral: bool,
    ) -> Result<StreamPosition, ReplyError> {
        self.publish(PublishRequest {
            channel: channel.to_owned(),
            data,
            info: actor.info.clone(),
            tags,
            skip_history: ephemeral,
            idempotency_key: None,
            // The namespace's `exclude_publisher` applies to interactions as
            // to any client publish.
            client: actor.info.as_ref().map(|info| info.client.clone()),
            exclude_publisher: false,
            // Publish plugins see the publisher from `info`; the extended
            // connection record (meta, transport) is not kept for chat calls.
            connection: None,
        })
        .await
    }

    /// Runs a chat call for `actor`, whose permissions on the call's
    /// channels the caller has checked. Returns the JSON result.
    pub async fn chat_call(&self, actor: &Actor, call: ChatCall) -> Result<Value, ReplyError> {
        if let ChatCall::StatusSet { state, text } = call {
            return self.status_set(&actor.user, &state, text).map(|v| json!(v));
        }
        for channel in call.channels() {
            self.chat_options(channel)?;
        }
        match call {
            ChatCall::Send { channel, data, reply_to } => {
                let tags = match reply_to {
                    None => HashMap::new(),
                    Some(to) => {
                        let fold = self.fold_from(&channel, to).await?;
                        let target = fold.get(to).ok_or(ChatError::NotFound(to))?;
                        if target.deleted {
                            return Err(ChatError::Deleted(to).into());
                        }
                        chat::reply_tags(to, target.thread.unwrap_or(to))
                    }
                };
                let pos = self.publish_interaction(actor, &channel, data, tags, false).await?;
                Ok(position(&pos))
            }
            ChatCall::Edit { channel, offset, data } => {
                self.fold_from(&channel, offset).await?.check_change(offset, &actor.user, actor.admin)?;
                let pos = self
                    .publish_interaction(actor, &channel, data, chat::tags(Kind::Edit, Some(offset)), false)
                    .await?;
                Ok(position(&pos))
            }
            ChatCall::Delete { channel, offset } => {
                self.fold_from(&channel, offset).await?.check_change(offset, &actor.user, actor.admin)?;
                let tags = chat::tags(Kind::Delete, Some(offset));
                let pos = self.publish_interaction(actor, &channel, empty_object(), tags, false).await?;
                Ok(position(&pos))
            }
            ChatCall::Get { channel, offset } => {
                let fold = self.fold_from(&channel, offset).await?;
                let aggregate = fold.aggregate(offset, &actor.user).ok_or(ChatError::NotFound(offset))?;
                serde_json::to_value(aggregate).map_err(|_| ErrorCode::Internal.into())
            }
            ChatCall::Reaction { channel, offset, reaction, add } => {
                chat::check_reaction_text(&reaction, self.config.chat.max_reaction_bytes)?;
                let fold = self.fold_from(&channel, offset).await?;
                if add {
                    fold.check_reaction(offset, &reaction)?;
                } else if fold.get(offset).is_none_or(|m| m.deleted) {
                    return Err(fold
                        .check_reaction(offset, &reaction)
                        .err()
                        .unwrap_or(ChatError::NotFound(offset))
                        .into());
                }
                let kind = if add { Kind::ReactionAdd } else { Kind::ReactionRemove };
                let mut tags = chat::tags(kind, Some(offset));
                tags.insert(chat::TAG_REACTION.to_owned(), reaction.clone());
                let data = to_payload(&json!({ "reaction": reaction }));
                let pos = self.publish_interaction(actor, &channel, data, tags, false).await?;
                Ok(position(&pos))
            }
            ChatCall::ReadMark { channel, offset } => {
                let (_, top) = self.history(&channel, None, 0, false).await?;
                if offset == 0 || offset > top.offset {
                    return Err(bad_request(format!("offset {offset} is not in the stream (top {})", top.offset)));
                }
                self.read_mark_store(&channel, &actor.user, &top.epoch, offset).await?;
                let data = to_payload(&json!({ "offset": offset }));
                self.publish_interaction(actor, &channel, data, chat::tags(Kind::Read, Some(offset)), true).await?;
                Ok(json!({ "channel": channel, "offset": offset }))
            }
            ChatCall::Unread { channels } => {
                let max = self.config.chat.max_unread_channels;
                if channels.len() > max {
                    return Err(bad_request(format!("too many channels (max {max})")));
                }
                let mut out = serde_json::Map::new();
                for channel in channels {
                    let (last_read, unread) = self.unread(&channel, &actor.user).await?;
                    out.insert(channel, json!({ "last_read": last_read, "unread": unread }));
                }
                Ok(json!({ "channels": out }))
            }
            ChatCall::Thread { channel, offset, limit, since } => {
                let max = self.config.client.history_max_publication_limit;
                let limit = limit.unwrap_or(max).min(max);
                let fold = self.fold_from(&channel, offset).await?;
                let root = fold.aggregate(offset, &actor.user).ok_or(ChatError::NotFound(offset))?;
                let replies: Vec<chat::Aggregate> =
                    fold.thread(offset, since, limit).map(|m| chat::Aggregate::of(m, &actor.user)).collect();
                Ok(json!({ "root": root, "replies": replies }))
            }
            ChatCall::Typing { channel } => {
                let throttle = Duration::from_millis(self.config.chat.typing_throttle_ms);
                let key = (channel.clone(), actor.user.clone());
                let now = Instant::now();
                if self.chat.typing.get(&key).is_some_and(|last| now.saturating_duration_since(last) < throttle) {
                    return Ok(json!({ "sent": false }));
                }
                self.chat.typing.insert(key, now);
                self.publish_interaction(actor, &channel, empty_object(), chat::tags(Kind::Typing, None), true).await?;
                Ok(json!({ "sent": true }))
            }
            ChatCall::StatusSet { .. } => unreachable!("answered above"),
        }
    }

    /// The user's last read offset in `channel` and the live messages of
    /// others after it (at most `chat.max_scan_publications` are looked at).
    async fn unread(&self, channel: &str, user: &str) -> Result<(u64, u64), ReplyError> {
        let (_, top) = self.history(channel, None, 0, false).await?;
        let last_read = self.read_mark_load(channel, user, &top.epoch).await?;
        let max = self.config.chat.max_scan_publications;
        let since = StreamPosition { offset: last_read, epoch: String::new() };
        let pubs = match self.history(channel, Some(&since), max, false).await {
            Ok((pubs, _)) => pubs,
            // The mark is older than what history keeps: all kept is unread.
            Err(ErrorCode::UnrecoverablePosition) => self.history(channel, None, max, false).await?.0,
            Err(code) => return Err(code.into()),
        };
        Ok((last_read, Fold::run(self.limits(), &pubs).unread(user)))
    }

    /// Keeps the highest mark of the stream's current epoch.
    async fn read_mark_store(&self, channel: &str, user: &str, epoch: &str, offset: u64) -> Result<(), ReplyError> {
        if let Some(redis) = self.broker.redis() {
            let ttl = self.channel_options(channel)?.history_meta_ttl_secs;
            return redis
                .read_mark_store(channel, user, epoch, offset, ttl)
                .await
                .map_err(|e| ErrorCode::from(e).into());
        }
        let key = (channel.to_owned(), user.to_owned());
        let keep = self.chat.read_marks.get(&key).is_some_and(|(e, o)| e == epoch && o >= offset);
        if !keep {
            self.chat.read_marks.insert(key, (epoch.to_owned(), offset));
        }
        Ok(())
    }

    /// The user's mark in the current epoch; 0 when none (or another epoch's).
    async fn read_mark_load(&self, channel: &str, user: &str, epoch: &str) -> Result<u64, ReplyError> {
        let mark = match self.broker.redis() {
            Some(redis) => redis.read_mark_load(channel, user).await.map_err(ErrorCode::from)?,
            None => self.chat.read_marks.get(&(channel.to_owned(), user.to_owned())),
        };
        Ok(mark.filter(|(e, _)| e == epoch).map_or(0, |(_, o)| o))
    }

    /// History with each message's aggregate (`aggregate=true`): the page as
    /// asked, messages only, each folded with the interactions after it
    /// (within `chat.max_scan_publications` of the page's oldest message).
    pub async fn history_aggregated(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
        limit: usize,
        reverse: bool,
        caller: &str,
    ) -> Result<(Vec<chat::Aggregate>, StreamPosition), ReplyError> {
        self.chat_options(channel)?;
        let (page, top) = self.history(channel, since, limit, reverse).await?;
        let messages: Vec<u64> = page
            .iter()
            .filter(|p| chat::classify(p).is_some_and(|i| i.kind == Kind::Message))
            .map(|p| p.offset)
            .collect();
        let Some(&oldest) = messages.iter().min() else { return Ok((Vec::new(), top)) };
        let fold = self.fold_from(channel, oldest).await?;
        let aggregates = messages.iter().filter_map(|o| fold.aggregate(*o, caller)).collect();
        Ok((aggregates, top))
    }

    /// Sets `user`'s status.
    pub fn status_set(&self, user: &str, state: &str, text: String) -> Result<StatusView, ReplyError> {
        let state = State::parse(state).ok_or_else(|| bad_request("state must be online, away or busy"))?;
        let max = self.config.status.max_text_bytes;
        if text.len() > max {
            return Err(bad_request(format!("status text too long (max {max} bytes)")));
        }
        if user.is_empty() {
            return Err(ErrorCode::PermissionDenied.into());
        }
        let record = self.chat.record(user);
        let mut record = record.lock();
        record.state = state;
        record.text = text;
        record.last_active = Instant::now();
        Ok(record.view(user, Instant::now(), self.away_after()))
    }

    fn away_after(&self) -> Duration {
        Duration::from_secs(self.config.status.away_after_secs)
    }

    /// The status of each of `users` (unknown users are offline with no
    /// last-seen time).
    pub fn statuses(&self, users: &[String]) -> Vec<StatusView> {
        let now = Instant::now();
        users
            .iter()
            .map(|u| match self.chat.status.get(u) {
                Some(record) => record.lock().view(u, now, self.away_after()),
                None => Record { connections: 0, ..Record::new(now) }.view(u, now, self.away_after()),
            })
            .collect()
    }

    /// A command from one of `user`'s connections: they are active.
    pub(super) fn status_touch(&self, user: &str) {
        if let Some(record) = self.chat.status.get(user) {
            record.lock().last_active = Instant::now();
        }
    }

    /// A connection of `user` opened (`opened`) or closed.
    pub(super) fn status_connection(&self, user: &str, opened: bool) {
        if user.is_empty() {
            return;
        }
        let record = self.chat.record(user);
        let mut record = record.lock();
        if opened {
            record.connections += 1;
            record.last_active = Instant::now();
            record.last_seen = None;
        } else {
            record.connections = record.connections.saturating_sub(1);
            if record.connections == 0 {
                // The set state and text stay for the next connection.
                record.last_seen = Some(unix_now());
            }
        }
    }

    /// Presence entries of a chat channel carry their user's status in
    /// `conn_info.status` (an object `conn_info` keeps its other fields).
    pub(super) fn with_status(&self, mut entries: HashMap<String, ClientInfo>) -> HashMap<String, ClientInfo> {
        let now = Instant::now();
        for info in entries.values_mut() {
            let Some(record) = self.chat.status.get(&info.user) else { continue };
            let view = record.lock().view(&info.user, now, self.away_after());
            let mut conn_info = match info.conn_info.as_ref().map(|p| serde_json::from_slice::<Value>(p.as_bytes())) {
                Some(Ok(Value::Object(map))) => map,
                Some(Ok(other)) => serde_json::Map::from_iter([("info".to_owned(), other)]),
                _ => serde_json::Map::new(),
            };
            conn_info.insert("status".to_owned(), json!({ "state": view.state, "text": view.text }));
            info.conn_info = Some(to_payload(&Value::Object(conn_info)));
        }
        entries
    }
}
