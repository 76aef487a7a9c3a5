//! The Protobuf wire messages of the client protocol, written by hand from
//! `client.proto` (package `centrifugal.centrifuge.protocol`) with
//! `prost::Message` derives: no build script, no `protoc`.
//!
//! Field numbers and scalar types follow the schema exactly; reserved numbers
//! are left out. `bytes` fields are `bytes::Bytes`, so decoding slices the
//! inbound frame and encoding shares the `Payload` buffer without copying.
//! These types are the wire only: the gateway works on the model in
//! `types.rs`, and `protobuf.rs` converts between the two.

use std::collections::HashMap;

use bytes::Bytes;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Error {
    #[prost(uint32, tag = "1")]
    pub code: u32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(bool, tag = "3")]
    pub temporary: bool,
}

/// The body of an `/emulation` POST.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EmulationRequest {
    #[prost(string, tag = "1")]
    pub node: String,
    #[prost(string, tag = "2")]
    pub session: String,
    #[prost(bytes = "bytes", tag = "3")]
    pub data: Bytes,
}

/// A client command: an id and (at most) one request. Not a `oneof` in the
/// schema, so a peer may set several; the decoder rejects that.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Command {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(message, optional, tag = "4")]
    pub connect: Option<ConnectRequest>,
    #[prost(message, optional, tag = "5")]
    pub subscribe: Option<SubscribeRequest>,
    #[prost(message, optional, tag = "6")]
    pub unsubscribe: Option<UnsubscribeRequest>,
    #[prost(message, optional, tag = "7")]
    pub publish: Option<PublishRequest>,
    #[prost(message, optional, tag = "8")]
    pub presence: Option<PresenceRequest>,
    #[prost(message, optional, tag = "9")]
    pub presence_stats: Option<PresenceStatsRequest>,
    #[prost(message, optional, tag = "10")]
    pub history: Option<HistoryRequest>,
    #[prost(message, optional, tag = "11")]
    pub ping: Option<PingRequest>,
    #[prost(message, optional, tag = "12")]
    pub send: Option<SendRequest>,
    #[prost(message, optional, tag = "13")]
    pub rpc: Option<RpcRequest>,
    #[prost(message, optional, tag = "14")]
    pub refresh: Option<RefreshRequest>,
    #[prost(message, optional, tag = "15")]
    pub sub_refresh: Option<SubRefreshRequest>,
}

/// A reply to a command (`id` > 0) or a push (`id` 0, `push` set). An
/// entirely empty reply is the server ping.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Reply {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(message, optional, tag = "2")]
    pub error: Option<Error>,
    #[prost(message, optional, tag = "4")]
    pub push: Option<Push>,
    #[prost(message, optional, tag = "5")]
    pub connect: Option<ConnectResult>,
    #[prost(message, optional, tag = "6")]
    pub subscribe: Option<SubscribeResult>,
    #[prost(message, optional, tag = "7")]
    pub unsubscribe: Option<UnsubscribeResult>,
    #[prost(message, optional, tag = "8")]
    pub publish: Option<PublishResult>,
    #[prost(message, optional, tag = "9")]
    pub presence: Option<PresenceResult>,
    #[prost(message, optional, tag = "10")]
    pub presence_stats: Option<PresenceStatsResult>,
    #[prost(message, optional, tag = "11")]
    pub history: Option<HistoryResult>,
    #[prost(message, optional, tag = "12")]
    pub ping: Option<PingResult>,
    #[prost(message, optional, tag = "13")]
    pub rpc: Option<RpcResult>,
    #[prost(message, optional, tag = "14")]
    pub refresh: Option<RefreshResult>,
    #[prost(message, optional, tag = "15")]
    pub sub_refresh: Option<SubRefreshResult>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Push {
    /// Optional numeric channel id (bandwidth optimisation; unused here).
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(string, tag = "2")]
    pub channel: String,
    #[prost(message, optional, tag = "4")]
    pub publication: Option<Publication>,
    #[prost(message, optional, tag = "5")]
    pub join: Option<Join>,
    #[prost(message, optional, tag = "6")]
    pub leave: Option<Leave>,
    #[prost(message, optional, tag = "7")]
    pub unsubscribe: Option<Unsubscribe>,
    #[prost(message, optional, tag = "8")]
    pub message: Option<Message>,
    #[prost(message, optional, tag = "9")]
    pub subscribe: Option<Subscribe>,
    #[prost(message, optional, tag = "10")]
    pub connect: Option<Connect>,
    #[prost(message, optional, tag = "11")]
    pub disconnect: Option<Disconnect>,
    #[prost(message, optional, tag = "12")]
    pub refresh: Option<Refresh>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ClientInfo {
    #[prost(string, tag = "1")]
    pub user: String,
    #[prost(string, tag = "2")]
    pub client: String,
    #[prost(bytes = "bytes", tag = "3")]
    pub conn_info: Bytes,
    #[prost(bytes = "bytes", tag = "4")]
    pub chan_info: Bytes,
}

/// W3C trace context riding along a publication between nodes (Redis). Its
/// tags are far above `Publication`'s, so it is appended to an encoded
/// `Publication` as is: decoders of either message skip the other's fields,
/// which keeps old and new nodes compatible both ways. Never sent to clients.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceContext {
    #[prost(string, tag = "1000")]
    pub traceparent: String,
    #[prost(string, tag = "1001")]
    pub tracestate: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Publication {
    #[prost(bytes = "bytes", tag = "4")]
    pub data: Bytes,
    #[prost(message, optional, tag = "5")]
    pub info: Option<ClientInfo>,
    #[prost(uint64, tag = "6")]
    pub offset: u64,
    #[prost(map = "string, string", tag = "7")]
    pub tags: HashMap<String, String>,
    #[prost(bool, tag = "8")]
    pub delta: bool,
    /// Unix milliseconds.
    #[prost(int64, tag = "9")]
    pub time: i64,
    #[prost(string, tag = "10")]
    pub channel: String,
    #[prost(string, tag = "11")]
    pub key: String,
    #[prost(bool, tag = "12")]
    pub removed: bool,
    #[prost(sint64, tag = "13")]
    pub score: i64,
    #[prost(string, tag = "14")]
    pub epoch: String,
    #[prost(bytes = "bytes", tag = "15")]
    pub prev_data: Bytes,
    #[prost(uint64, tag = "16")]
    pub version: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Join {
    #[prost(message, optional, tag = "1")]
    pub info: Option<ClientInfo>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Leave {
    #[prost(message, optional, tag = "1")]
    pub info: Option<ClientInfo>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Unsubscribe {
    #[prost(uint32, tag = "2")]
    pub code: u32,
    #[prost(string, tag = "3")]
    pub reason: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Subscribe {
    #[prost(bool, tag = "1")]
    pub recoverable: bool,
    #[prost(string, tag = "4")]
    pub epoch: String,
    #[prost(uint64, tag = "5")]
    pub offset: u64,
    #[prost(bool, tag = "6")]
    pub positioned: bool,
    #[prost(bytes = "bytes", tag = "7")]
    pub data: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    #[prost(bytes = "bytes", tag = "1")]
    pub data: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Connect {
    #[prost(string, tag = "1")]
    pub client: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(bytes = "bytes", tag = "3")]
    pub data: Bytes,
    #[prost(map = "string, message", tag = "4")]
    pub subs: HashMap<String, SubscribeResult>,
    #[prost(bool, tag = "5")]
    pub expires: bool,
    #[prost(uint32, tag = "6")]
    pub ttl: u32,
    #[prost(uint32, tag = "7")]
    pub ping: u32,
    #[prost(bool, tag = "8")]
    pub pong: bool,
    #[prost(string, tag = "9")]
    pub session: String,
    #[prost(string, tag = "10")]
    pub node: String,
    #[prost(int64, tag = "11")]
    pub time: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Disconnect {
    #[prost(uint32, tag = "1")]
    pub code: u32,
    #[prost(string, tag = "2")]
    pub reason: String,
    #[prost(bool, tag = "3")]
    pub reconnect: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Refresh {
    #[prost(bool, tag = "1")]
    pub expires: bool,
    #[prost(uint32, tag = "2")]
    pub ttl: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectRequest {
    #[prost(string, tag = "1")]
    pub token: String,
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
    #[prost(map = "string, message", tag = "3")]
    pub subs: HashMap<String, SubscribeRequest>,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub version: String,
    #[prost(map = "string, string", tag = "6")]
    pub headers: HashMap<String, String>,
    #[prost(int64, tag = "7")]
    pub flag: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectResult {
    #[prost(string, tag = "1")]
    pub client: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(bool, tag = "3")]
    pub expires: bool,
    #[prost(uint32, tag = "4")]
    pub ttl: u32,
    #[prost(bytes = "bytes", tag = "5")]
    pub data: Bytes,
    #[prost(map = "string, message", tag = "6")]
    pub subs: HashMap<String, SubscribeResult>,
    #[prost(uint32, tag = "7")]
    pub ping: u32,
    #[prost(bool, tag = "8")]
    pub pong: bool,
    #[prost(string, tag = "9")]
    pub session: String,
    #[prost(string, tag = "10")]
    pub node: String,
    #[prost(int64, tag = "11")]
    pub time: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RefreshRequest {
    #[prost(string, tag = "1")]
    pub token: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RefreshResult {
    #[prost(string, tag = "1")]
    pub client: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(bool, tag = "3")]
    pub expires: bool,
    #[prost(uint32, tag = "4")]
    pub ttl: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SubscribeRequest {
    #[prost(string, tag = "1")]
    pub channel: String,
    #[prost(string, tag = "2")]
    pub token: String,
    #[prost(bool, tag = "3")]
    pub recover: bool,
    #[prost(string, tag = "6")]
    pub epoch: String,
    #[prost(uint64, tag = "7")]
    pub offset: u64,
    #[prost(bytes = "bytes", tag = "8")]
    pub data: Bytes,
    #[prost(bool, tag = "9")]
    pub positioned: bool,
    #[prost(bool, tag = "10")]
    pub recoverable: bool,
    #[prost(bool, tag = "11")]
    pub join_leave: bool,
    #[prost(string, tag = "12")]
    pub delta: String,
    #[prost(message, optional, tag = "13")]
    pub tf: Option<FilterNode>,
    #[prost(int64, tag = "14")]
    pub flag: i64,
    #[prost(int32, tag = "15")]
    pub r#type: i32,
    #[prost(int32, tag = "16")]
    pub phase: i32,
    #[prost(string, tag = "17")]
    pub cursor: String,
    #[prost(int32, tag = "18")]
    pub limit: i32,
    #[prost(bool, tag = "19")]
    pub asc: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SubscribeResult {
    #[prost(bool, tag = "1")]
    pub expires: bool,
    #[prost(uint32, tag = "2")]
    pub ttl: u32,
    #[prost(bool, tag = "3")]
    pub recoverable: bool,
    #[prost(string, tag = "6")]
    pub epoch: String,
    #[prost(message, repeated, tag = "7")]
    pub publications: Vec<Publication>,
    #[prost(bool, tag = "8")]
    pub recovered: bool,
    #[prost(uint64, tag = "9")]
    pub offset: u64,
    #[prost(bool, tag = "10")]
    pub positioned: bool,
    #[prost(bytes = "bytes", tag = "11")]
    pub data: Bytes,
    #[prost(bool, tag = "12")]
    pub was_recovering: bool,
    #[prost(bool, tag = "13")]
    pub delta: bool,
    #[prost(int64, tag = "14")]
    pub id: i64,
    #[prost(int32, tag = "15")]
    pub r#type: i32,
    #[prost(int32, tag = "16")]
    pub phase: i32,
    #[prost(string, tag = "17")]
    pub cursor: String,
    #[prost(message, repeated, tag = "18")]
    pub state: Vec<Publication>,
    /// Milliseconds.
    #[prost(uint32, tag = "19")]
    pub publish_debounce: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyedItem {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(uint64, tag = "2")]
    pub version: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SubRefreshRequest {
    #[prost(string, tag = "1")]
    pub channel: String,
    #[prost(string, tag = "2")]
    pub token: String,
    #[prost(message, repeated, tag = "3")]
    pub items: Vec<KeyedItem>,
    #[prost(string, repeated, tag = "4")]
    pub untrack_keys: Vec<String>,
    #[prost(int32, tag = "5")]
    pub r#type: i32,
    #[prost(string, tag = "6")]
    pub signature: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SubRefreshResult {
    #[prost(bool, tag = "1")]
    pub expires: bool,
    #[prost(uint32, tag = "2")]
    pub ttl: u32,
    #[prost(message, repeated, tag = "3")]
    pub items: Vec<Publication>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UnsubscribeRequest {
    #[prost(string, tag = "1")]
    pub channel: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UnsubscribeResult {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PublishRequest {
    #[prost(string, tag = "1")]
    pub channel: String,
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    #[prost(string, tag = "4")]
    pub key: String,
    #[prost(bool, tag = "5")]
    pub removed: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PublishResult {
    /// Milliseconds.
    #[prost(int32, tag = "1")]
    pub debounce: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PresenceRequest {
    #[prost(string, tag = "1")]
    pub channel: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PresenceResult {
    #[prost(map = "string, message", tag = "1")]
    pub presence: HashMap<String, ClientInfo>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PresenceStatsRequest {
    #[prost(string, tag = "1")]
    pub channel: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PresenceStatsResult {
    #[prost(uint32, tag = "1")]
    pub num_clients: u32,
    #[prost(uint32, tag = "2")]
    pub num_users: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamPosition {
    #[prost(uint64, tag = "1")]
    pub offset: u64,
    #[prost(string, tag = "2")]
    pub epoch: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HistoryRequest {
    #[prost(string, tag = "1")]
    pub channel: String,
    #[prost(int32, tag = "7")]
    pub limit: i32,
    #[prost(message, optional, tag = "8")]
    pub since: Option<StreamPosition>,
    #[prost(bool, tag = "9")]
    pub reverse: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HistoryResult {
    #[prost(message, repeated, tag = "1")]
    pub publications: Vec<Publication>,
    #[prost(string, tag = "2")]
    pub epoch: String,
    #[prost(uint64, tag = "3")]
    pub offset: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PingRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PingResult {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcRequest {
    #[prost(bytes = "bytes", tag = "1")]
    pub data: Bytes,
    #[prost(string, tag = "2")]
    pub method: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcResult {
    #[prost(bytes = "bytes", tag = "1")]
    pub data: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SendRequest {
    #[prost(bytes = "bytes", tag = "1")]
    pub data: Bytes,
}

/// A server-side publication filter on tags: a leaf comparison (`op` empty)
/// or `and`/`or`/`not` over `nodes`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FilterNode {
    #[prost(string, tag = "1")]
    pub op: String,
    #[prost(string, tag = "2")]
    pub key: String,
    #[prost(string, tag = "3")]
    pub cmp: String,
    #[prost(string, tag = "4")]
    pub val: String,
    #[prost(string, repeated, tag = "5")]
    pub vals: Vec<String>,
    #[prost(message, repeated, tag = "6")]
    pub nodes: Vec<FilterNode>,
}
