//! Request, result and push types with their JSON names from `client.proto`.
//!
//! Requests derive `Deserialize` only and results `Serialize` only: the
//! gateway never has to read its own replies (tests use `serde_json::Value`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::Payload;

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

// ---------------------------------------------------------------- commands

/// One client command as it appears on the wire: an `id` plus at most one
/// request. `{}` (no request) is a pong.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawCommand {
    pub id: u32,
    pub connect: Option<ConnectRequest>,
    pub subscribe: Option<SubscribeRequest>,
    pub unsubscribe: Option<UnsubscribeRequest>,
    pub publish: Option<PublishRequest>,
    pub presence: Option<ChannelRequest>,
    pub presence_stats: Option<ChannelRequest>,
    pub history: Option<HistoryRequest>,
    pub ping: Option<serde::de::IgnoredAny>,
    pub send: Option<SendRequest>,
    pub rpc: Option<RpcRequest>,
    pub refresh: Option<RefreshRequest>,
    pub sub_refresh: Option<SubRefreshRequest>,
}

/// A decoded command: the `id` and exactly one request.
#[derive(Debug)]
pub struct Command {
    pub id: u32,
    pub request: Request,
}

/// The request carried by a [`Command`].
#[derive(Debug)]
pub enum Request {
    /// `{}`: the client's answer to a server ping.
    Pong,
    Connect(ConnectRequest),
    Subscribe(SubscribeRequest),
    Unsubscribe(UnsubscribeRequest),
    Publish(PublishRequest),
    Presence(ChannelRequest),
    PresenceStats(ChannelRequest),
    History(HistoryRequest),
    /// Legacy explicit ping; answered with an empty `ping` result.
    Ping,
    Send(SendRequest),
    Rpc(RpcRequest),
    Refresh(RefreshRequest),
    SubRefresh(SubRefreshRequest),
}

impl Request {
    /// The method name, for logs and metrics.
    pub fn method(&self) -> &'static str {
        match self {
            Self::Pong => "pong",
            Self::Connect(_) => "connect",
            Self::Subscribe(_) => "subscribe",
            Self::Unsubscribe(_) => "unsubscribe",
            Self::Publish(_) => "publish",
            Self::Presence(_) => "presence",
            Self::PresenceStats(_) => "presence_stats",
            Self::History(_) => "history",
            Self::Ping => "ping",
            Self::Send(_) => "send",
            Self::Rpc(_) => "rpc",
            Self::Refresh(_) => "refresh",
            Self::SubRefresh(_) => "sub_refresh",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConnectRequest {
    pub token: String,
    pub data: Option<Payload>,
    pub subs: HashMap<String, SubscribeRequest>,
    pub name: String,
    pub version: String,
    /// Emulated HTTP headers (lowercase names by convention); a W3C
    /// `traceparent` here parents the connection's spans.
    pub headers: HashMap<String, String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct SubscribeRequest {
    pub channel: String,
    pub token: String,
    pub recover: bool,
    pub epoch: String,
    pub offset: u64,
    pub data: Option<Payload>,
    pub positioned: bool,
    pub recoverable: bool,
    pub join_leave: bool,
    /// The delta compression the client asks for (`"fossil"`), or empty.
    pub delta: String,
    /// A server-side filter on publication tags (`tf`).
    pub tf: Option<FilterNode>,
}

/// A tags filter as the client sends it: a comparison leaf (`op` empty:
/// `key`, `cmp` and `val` or `vals`) or `and`/`or`/`not` over `nodes`.
/// Unvalidated; the channel layer compiles and bounds it.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct FilterNode {
    pub op: String,
    pub key: String,
    pub cmp: String,
    pub val: String,
    pub vals: Vec<String>,
    pub nodes: Vec<FilterNode>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UnsubscribeRequest {
    pub channel: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PublishRequest {
    pub channel: String,
    pub data: Option<Payload>,
}

/// `presence` and `presence_stats` both carry just a channel.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChannelRequest {
    pub channel: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HistoryRequest {
    pub channel: String,
    pub limit: i32,
    pub since: Option<StreamPosition>,
    pub reverse: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SendRequest {
    pub data: Option<Payload>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RpcRequest {
    pub method: String,
    pub data: Option<Payload>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RefreshRequest {
    pub token: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SubRefreshRequest {
    pub channel: String,
    pub token: String,
}

/// A position in a channel stream.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamPosition {
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub offset: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
}

// ------------------------------------------------------------------ replies

/// The server's envelope: a reply to a command (`id` > 0) or a push.
#[derive(Debug, Default, Serialize)]
pub struct Reply {
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplyError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<Push>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<SubscribeResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribe: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_stats: Option<PresenceStatsResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc: Option<RpcResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_refresh: Option<SubRefreshResult>,
}

impl Reply {
    /// An error reply to command `id`.
    pub fn error(id: u32, error: ReplyError) -> Self {
        Self { id, error: Some(error), ..Self::default() }
    }

    /// A push (no id).
    pub fn push(push: Push) -> Self {
        Self { push: Some(push), ..Self::default() }
    }
}

/// A result with no fields, encoded as `{}`.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Empty {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplyError {
    pub code: u32,
    pub message: String,
    #[serde(skip_serializing_if = "is_false")]
    pub temporary: bool,
}

impl From<super::ErrorCode> for ReplyError {
    fn from(code: super::ErrorCode) -> Self {
        Self { code: code.code(), message: code.message().to_owned(), temporary: code.temporary() }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct ConnectResult {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub subs: HashMap<String, SubscribeResult>,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ping: u32,
    #[serde(skip_serializing_if = "is_false")]
    pub pong: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub time: i64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct SubscribeResult {
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
    #[serde(skip_serializing_if = "is_false")]
    pub recoverable: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Publication>,
    #[serde(skip_serializing_if = "is_false")]
    pub recovered: bool,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub offset: u64,
    #[serde(skip_serializing_if = "is_false")]
    pub positioned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
    #[serde(skip_serializing_if = "is_false")]
    pub was_recovering: bool,
    /// Delta compression was negotiated: publications carry their data as a
    /// JSON string (JSON protocol) and may be fossil deltas (`delta: true`).
    #[serde(skip_serializing_if = "is_false")]
    pub delta: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct PresenceResult {
    pub presence: HashMap<String, ClientInfo>,
}

#[derive(Debug, Default, Serialize)]
pub struct PresenceStatsResult {
    pub num_clients: u32,
    pub num_users: u32,
}

#[derive(Debug, Default, Serialize)]
pub struct HistoryResult {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publications: Vec<Publication>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub offset: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct RpcResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
}

#[derive(Debug, Default, Serialize)]
pub struct RefreshResult {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
}

#[derive(Debug, Default, Serialize)]
pub struct SubRefreshResult {
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
}

/// Who a publication, join or leave came from.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ClientInfo {
    pub user: String,
    pub client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn_info: Option<Payload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chan_info: Option<Payload>,
}

/// A message in a channel.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Publication {
    pub data: Payload,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<ClientInfo>,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub offset: u64,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub tags: HashMap<String, String>,
}

// -------------------------------------------------------------------- pushes

/// An asynchronous message from the server. Exactly one payload is set.
#[derive(Debug, Default, Serialize)]
pub struct Push {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub channel: String,
    #[serde(rename = "pub", skip_serializing_if = "Option::is_none")]
    pub publication: Option<Publication>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinLeave>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leave: Option<JoinLeave>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsubscribe: Option<UnsubscribePush>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<MessagePush>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<SubscribePush>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disconnect: Option<DisconnectPush>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshPush>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JoinLeave {
    pub info: ClientInfo,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnsubscribePush {
    pub code: u32,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessagePush {
    pub data: Payload,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct SubscribePush {
    #[serde(skip_serializing_if = "is_false")]
    pub recoverable: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub offset: u64,
    #[serde(skip_serializing_if = "is_false")]
    pub positioned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DisconnectPush {
    pub code: u32,
    pub reason: String,
    #[serde(skip_serializing_if = "is_false")]
    pub reconnect: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefreshPush {
    #[serde(skip_serializing_if = "is_false")]
    pub expires: bool,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub ttl: u32,
}
