//! The API methods: request shapes and their calls into the hub.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::ApiError;
use crate::hub::{Hub, PublishRequest};
use crate::protocol::{DisconnectCode, ErrorCode, Payload, StreamPosition};

const METHODS: &[&str] = &[
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "channels",
    "info",
    "batch",
];

pub(super) fn exists(method: &str) -> bool {
    METHODS.contains(&method) || super::chat::exists(method)
}

fn parse<'a, T: Deserialize<'a>>(params: &'a RawValue) -> Result<T, ApiError> {
    serde_json::from_str(params.get()).map_err(ApiError::bad_request)
}

/// Params of `publish` (`channel`) and `broadcast` (`channels`). One struct
/// for both because serde's `flatten` buffers fields and cannot hand raw
/// JSON to `Payload`. Content is `data` (JSON) or `b64data`: any bytes,
/// delivered untouched to Protobuf clients; JSON subscribers can receive
/// them only if they are JSON (otherwise fan-out closes them with 3506).
#[derive(Deserialize)]
struct PublishParams {
    #[serde(default)]
    channel: String,
    #[serde(default)]
    channels: Vec<String>,
    data: Option<Payload>,
    #[serde(default)]
    b64data: Option<String>,
    #[serde(default)]
    skip_history: bool,
    #[serde(default)]
    tags: HashMap<String, String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    /// The publishing connection (Pusher's `socket_id`): skipped in the
    /// fan-out when the namespace has `exclude_publisher` or
    /// `exclude_publisher` below is set.
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    exclude_publisher: bool,
    /// `broadcast` only: publish to every channel with subscribers whose
    /// name matches (`*` and `?` wildcards), at most `api.max_pattern_channels`.
    #[serde(default)]
    pattern: String,
}

impl PublishParams {
    fn request(&self, channel: String) -> Result<PublishRequest, ApiError> {
        let data = match (&self.data, &self.b64data) {
            (Some(data), _) => data.clone(),
            (None, Some(b64)) => {
                let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(ApiError::bad_request)?;
                if raw.is_empty() {
                    return Err(ApiError::bad_request("data required"));
                }
                Payload::from_binary(raw.into())
            }
            (None, None) => return Err(ApiError::bad_request("data required")),
        };
        // Client ids are the gateway's own (UUIDs); one with `:` could not
        // travel in the Redis engine's live message.
        if self.client.as_deref().is_some_and(|c| c.contains(':') || c.len() > 64) {
            return Err(ApiError::bad_request("client must be a client id"));
        }
        if self.exclude_publisher && self.client.is_none() {
            return Err(ApiError::bad_request("exclude_publisher needs client"));
        }
        Ok(PublishRequest {
            channel,
            data,
            info: None,
            tags: self.tags.clone(),
            skip_history: self.skip_history,
            idempotency_key: self.idempotency_key.clone(),
            client: self.client.clone(),
            exclude_publisher: self.exclude_publisher,
            connection: None,
        })
    }
}

#[derive(Deserialize)]
struct UserChannel {
    #[serde(default)]
    user: String,
    channel: String,
    #[serde(default)]
    client: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DisconnectSpec {
    code: u16,
    reason: String,
}

#[derive(Deserialize)]
struct Disconnect {
    user: String,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    whitelist: Vec<String>,
    #[serde(default)]
    disconnect: Option<DisconnectSpec>,
}

#[derive(Deserialize)]
struct ChannelOnly {
    channel: String,
}

#[derive(Deserialize)]
struct History {
    channel: String,
    #[serde(default)]
    limit: i64,
    #[serde(default)]
    since: Option<StreamPosition>,
    #[serde(default)]
    reverse: bool,
    /// Chat channels: messages only, each with its aggregate.
    #[serde(default)]
    aggregate: bool,
    /// Whose `me` the aggregates answer.
    #[serde(default)]
    user: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Channels {
    pattern: String,
}

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    commands: Vec<HashMap<String, &'a RawValue>>,
}

fn position(pos: StreamPosition) -> Value {
    let mut out = serde_json::Map::new();
    if pos.offset > 0 {
        out.insert("offset".into(), pos.offset.into());
    }
    if !pos.epoch.is_empty() {
        out.insert("epoch".into(), pos.epoch.into());
    }
    Value::Object(out)
}

/// Disconnect codes the API may send: the reserved reconnect/terminal ranges
/// and the application ranges.
fn disconnect_code(spec: Option<DisconnectSpec>) -> Result<DisconnectCode, ApiError> {
    let Some(spec) = spec.filter(|s| s.code != 0) else { return Ok(DisconnectCode::FORCE_DISCONNECT) };
    if !(3000..5000).contains(&spec.code) {
        return Err(ApiError::bad_request("disconnect code must be in 3000..4999"));
    }
    if spec.reason.len() > 32 {
        return Err(ApiError::bad_request("disconnect reason too long (max 32 bytes)"));
    }
    // Close reasons are 'static in the writer; custom reasons are rare, so
    // leaking is avoided by mapping them to a fixed reason text.
    Ok(DisconnectCode { code: spec.code, reason: "disconnect" })
}

/// The channels with subscribers (on any node) matching `pattern`, sorted;
/// 106 when there are more than `api.max_pattern_channels`.
async fn pattern_channels(hub: &Hub, pattern: &str) -> Result<Vec<String>, ApiError> {
    let max = hub.config().api.max_pattern_channels;
    let matcher = wildmatch::WildMatch::new(pattern);
    let mut channels: Vec<String> =
        hub.all_channels().await.into_iter().map(|(name, _)| name).filter(|name| matcher.matches(name)).collect();
    if channels.len() > max {
        return Err(ApiError {
            code: ErrorCode::LimitExceeded.code(),
            message: format!("pattern matches {} channels (max {max})", channels.len()),
        });
    }
    channels.sort_unstable();
    Ok(channels)
}

/// Runs one method.
pub(super) async fn call(hub: &Hub, method: &str, params: &RawValue) -> Result<Value, ApiError> {
    match method {
        "publish" => {
            let p: PublishParams = parse(params)?;
            if p.channel.is_empty() {
                return Err(ApiError::bad_request("channel required"));
            }
            Ok(position(hub.publish(p.request(p.channel.clone())?).await?))
        }
        "broadcast" => {
            let b: PublishParams = parse(params)?;
            let by_pattern = !b.pattern.is_empty();
            let channels = match (by_pattern, b.channels.is_empty()) {
                (false, true) => return Err(ApiError::bad_request("channels or pattern required")),
                (true, false) => return Err(ApiError::bad_request("channels and pattern are exclusive")),
                (false, false) => b.channels.clone(),
                (true, true) => pattern_channels(hub, &b.pattern).await?,
            };
            let mut responses: Vec<Value> = Vec::with_capacity(channels.len());
            for channel in &channels {
                let outcome = match b.request(channel.clone()) {
                    Ok(r) => hub.publish(r).await.map_err(ApiError::from),
                    Err(e) => Err(e),
                };
                responses.push(match outcome {
                    Ok(pos) => json!({ "result": position(pos) }),
                    Err(e) => json!({ "error": e }),
                });
            }
            if by_pattern {
                return Ok(json!({ "channels": channels, "responses": responses }));
            }
            Ok(json!({ "responses": responses }))
        }
        "subscribe" => {
            let s: UserChannel = parse(params)?;
            hub.server_subscribe(&s.user, s.client.as_deref(), &s.channel)?;
            Ok(json!({}))
        }
        "unsubscribe" => {
            let s: UserChannel = parse(params)?;
            hub.server_unsubscribe(&s.user, s.client.as_deref(), &s.channel)?;
            Ok(json!({}))
        }
        "disconnect" => {
            let d: Disconnect = parse(params)?;
            let code = disconnect_code(d.disconnect)?;
            hub.disconnect(&d.user, d.client.as_deref(), &d.whitelist, code);
            Ok(json!({}))
        }
        "presence" => {
            let c: ChannelOnly = parse(params)?;
            Ok(json!({ "presence": hub.presence(&c.channel).await? }))
        }
        "presence_stats" => {
            let c: ChannelOnly = parse(params)?;
            let stats = hub.presence_stats(&c.channel).await?;
            Ok(json!({ "num_clients": stats.num_clients, "num_users": stats.num_users }))
        }
        "history" => {
            let h: History = parse(params)?;
            // No limit: only the stream position. Negative: everything kept.
            let limit = usize::try_from(h.limit).unwrap_or(usize::MAX);
            if h.aggregate {
                let (messages, top) =
                    hub.history_aggregated(&h.channel, h.since.as_ref(), limit, h.reverse, &h.user).await?;
                let mut result = position(top);
                result["messages"] = serde_json::to_value(messages).map_err(ApiError::bad_request)?;
                return Ok(result);
            }
            let (pubs, top) = hub.history(&h.channel, h.since.as_ref(), limit, h.reverse).await?;
            let mut result = position(top);
            result["publications"] = serde_json::to_value(pubs).map_err(ApiError::bad_request)?;
            Ok(result)
        }
        "history_remove" => {
            let c: ChannelOnly = parse(params)?;
            hub.remove_history(&c.channel).await?;
            Ok(json!({}))
        }
        "channels" => {
            let c: Channels = parse(params)?;
            let matcher = (!c.pattern.is_empty()).then(|| wildmatch::WildMatch::new(&c.pattern));
            let channels: serde_json::Map<String, Value> = hub
                .all_channels()
                .await
                .into_iter()
                .filter(|(name, _)| matcher.as_ref().is_none_or(|m| m.matches(name)))
                .map(|(name, n)| (name, json!({ "num_clients": n })))
                .collect();
            Ok(json!({ "channels": channels }))
        }
        "info" => Ok(json!({ "nodes": hub.nodes().await })),
        "batch" => {
            let batch: Batch<'_> = parse(params)?;
            let mut replies: Vec<Value> = Vec::with_capacity(batch.commands.len());
            for command in batch.commands {
                let mut entries = command.into_iter();
                replies.push(match (entries.next(), entries.next()) {
                    (Some((method, params)), None) if method != "batch" && exists(&method) => {
                        // Boxed: `call` is async and recursive here.
                        match Box::pin(call(hub, &method, params)).await {
                            Ok(result) => json!({ method: result }),
                            Err(e) => json!({ "error": e }),
                        }
                    }
                    _ => json!({ "error": ApiError::bad_request("each command needs exactly one known method") }),
                });
            }
            Ok(json!({ "replies": replies }))
        }
        _ => super::chat::call(hub, method, params).await,
    }
}
