//! The Protobuf codec: varint-length-delimited `Command`s in, `Reply`s out.
//!
//! A frame is any number of messages, each prefixed with its length as a
//! varint (what `centrifuge-js` and the other SDKs write). Validation mirrors
//! the JSON decoder: two requests in one command are an error, and a command
//! with no known request is a pong only when the message is empty.

use bytes::{Bytes, BytesMut};
use prost::Message as _;

use super::Payload;
use super::json::{DecodeError, MAX_COMMANDS_PER_FRAME, single_request};
use super::proto;
use super::types::{
    ChannelRequest, ClientInfo, Command, ConnectRequest, FilterNode, HistoryRequest, Publication, PublishRequest, Push,
    RefreshRequest, Reply, Request, RpcRequest, SendRequest, StreamPosition, SubRefreshRequest, SubscribeRequest,
    SubscribeResult, UnsubscribeRequest,
};

/// The encoded server ping: an empty `Reply` behind its zero length prefix.
pub const PING: &[u8] = &[0];

/// Decodes one frame of length-delimited commands.
pub fn decode_commands(frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
    let mut rest = frame;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if out.len() == MAX_COMMANDS_PER_FRAME {
            return Err(DecodeError::TooManyCommands);
        }
        let len = prost::decode_length_delimiter(&mut rest).map_err(|_| DecodeError::BadLength)?;
        if len > rest.len() {
            return Err(DecodeError::BadLength);
        }
        let (message, tail) = rest.split_at(len);
        rest = tail;
        let raw = proto::Command::decode(message).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
        let command = into_command(raw)?;
        // Like `{}` in JSON: only the empty message is a pong; an id or
        // fields this schema does not know mean an unknown method.
        if matches!(command.request, Request::Pong) && !message.is_empty() {
            return Err(DecodeError::UnknownCommand);
        }
        out.push(command);
    }
    Ok(out)
}

/// Encodes one reply with its length prefix.
pub fn encode_reply(reply: &Reply) -> Bytes {
    encode_delimited(&reply_to_proto(reply))
}

/// Encodes the `pub` push for `publication` in `channel`, once per
/// publication for every Protobuf subscriber.
pub fn encode_publication_push(channel: &str, publication: &Publication) -> Bytes {
    let push = proto::Push {
        channel: channel.to_owned(),
        publication: Some(publication_to_proto(publication)),
        ..proto::Push::default()
    };
    encode_delimited(&proto::Reply { push: Some(push), ..proto::Reply::default() })
}

/// The `pub` push for a subscription that negotiated delta compression:
/// `data` is `delta` (a fossil delta against the previous publication, with
/// `delta: true`) or, when `None`, the full data. Once per publication.
pub fn encode_delta_publication_push(channel: &str, publication: &Publication, delta: Option<&[u8]>) -> Bytes {
    let mut p = publication_to_proto(publication);
    if let Some(delta) = delta {
        p.data = Bytes::copy_from_slice(delta);
        p.delta = true;
    }
    let push = proto::Push { channel: channel.to_owned(), publication: Some(p), ..proto::Push::default() };
    encode_delimited(&proto::Reply { push: Some(push), ..proto::Reply::default() })
}

/// Appends `message` with its varint length prefix. Used by clients (tests)
/// to build command frames as well.
pub fn encode_delimited(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(len + prost::length_delimiter_len(len));
    // Cannot fail: the buffer was sized for the message.
    let _ = message.encode_length_delimited(&mut buf);
    buf.freeze()
}

/// Splits a frame of length-delimited messages (for clients reading replies).
pub fn split_delimited(frame: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let mut rest = frame;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = prost::decode_length_delimiter(&mut rest).map_err(|_| DecodeError::BadLength)?;
        if len > rest.len() {
            return Err(DecodeError::BadLength);
        }
        let (message, tail) = rest.split_at(len);
        out.push(message);
        rest = tail;
    }
    Ok(out)
}

// ------------------------------------------------------------ wire → model

/// Empty `bytes` is proto3's "absent", like a missing field in JSON.
fn payload(bytes: Bytes) -> Option<Payload> {
    (!bytes.is_empty()).then(|| Payload::from_binary(bytes))
}

fn subscribe_request(r: proto::SubscribeRequest) -> SubscribeRequest {
    SubscribeRequest {
        channel: r.channel,
        token: r.token,
        recover: r.recover,
        epoch: r.epoch,
        offset: r.offset,
        data: payload(r.data),
        positioned: r.positioned,
        recoverable: r.recoverable,
        join_leave: r.join_leave,
        delta: r.delta,
        tf: r.tf.map(filter_node),
    }
}

fn filter_node(n: proto::FilterNode) -> FilterNode {
    FilterNode {
        op: n.op,
        key: n.key,
        cmp: n.cmp,
        val: n.val,
        vals: n.vals,
        nodes: n.nodes.into_iter().map(filter_node).collect(),
    }
}

fn filter_node_to_proto(n: &FilterNode) -> proto::FilterNode {
    proto::FilterNode {
        op: n.op.clone(),
        key: n.key.clone(),
        cmp: n.cmp.clone(),
        val: n.val.clone(),
        vals: n.vals.clone(),
        nodes: n.nodes.iter().map(filter_node_to_proto).collect(),
    }
}

fn into_command(raw: proto::Command) -> Result<Command, DecodeError> {
    let proto::Command {
        id,
        connect,
        subscribe,
        unsubscribe,
        publish,
        presence,
        presence_stats,
        history,
        ping,
        send,
        rpc,
        refresh,
        sub_refresh,
    } = raw;
    let candidates = [
        connect.map(|r| {
            Request::Connect(ConnectRequest {
                token: r.token,
                data: payload(r.data),
                subs: r.subs.into_iter().map(|(k, v)| (k, subscribe_request(v))).collect(),
                name: r.name,
                version: r.version,
                headers: r.headers,
            })
        }),
        subscribe.map(|r| Request::Subscribe(subscribe_request(r))),
        unsubscribe.map(|r| Request::Unsubscribe(UnsubscribeRequest { channel: r.channel })),
        publish.map(|r| Request::Publish(PublishRequest { channel: r.channel, data: payload(r.data) })),
        presence.map(|r| Request::Presence(ChannelRequest { channel: r.channel })),
        presence_stats.map(|r| Request::PresenceStats(ChannelRequest { channel: r.channel })),
        history.map(|r| {
            Request::History(HistoryRequest {
                channel: r.channel,
                limit: r.limit,
                since: r.since.map(|s| StreamPosition { offset: s.offset, epoch: s.epoch }),
                reverse: r.reverse,
            })
        }),
        ping.map(|_| Request::Ping),
        send.map(|r| Request::Send(SendRequest { data: payload(r.data) })),
        rpc.map(|r| Request::Rpc(RpcRequest { method: r.method, data: payload(r.data) })),
        refresh.map(|r| Request::Refresh(RefreshRequest { token: r.token })),
        sub_refresh.map(|r| Request::SubRefresh(SubRefreshRequest { channel: r.channel, token: r.token })),
    ];
    single_request(id, candidates)
}

// ------------------------------------------------------------ model → wire

fn bytes_of(p: &Option<Payload>) -> Bytes {
    p.as_ref().map(|p| p.as_bytes().clone()).unwrap_or_default()
}

fn subscribe_request_to_proto(r: &SubscribeRequest) -> proto::SubscribeRequest {
    proto::SubscribeRequest {
        channel: r.channel.clone(),
        token: r.token.clone(),
        recover: r.recover,
        epoch: r.epoch.clone(),
        offset: r.offset,
        data: bytes_of(&r.data),
        positioned: r.positioned,
        recoverable: r.recoverable,
        join_leave: r.join_leave,
        delta: r.delta.clone(),
        tf: r.tf.as_ref().map(filter_node_to_proto),
        ..proto::SubscribeRequest::default()
    }
}

/// The wire form of a model command (clients and tests encode with it).
impl From<&Command> for proto::Command {
    fn from(command: &Command) -> Self {
        let mut out = proto::Command { id: command.id, ..proto::Command::default() };
        match &command.request {
            Request::Pong => {}
            Request::Connect(r) => {
                out.connect = Some(proto::ConnectRequest {
                    token: r.token.clone(),
                    data: bytes_of(&r.data),
                    subs: r.subs.iter().map(|(k, v)| (k.clone(), subscribe_request_to_proto(v))).collect(),
                    name: r.name.clone(),
                    version: r.version.clone(),
                    headers: r.headers.clone(),
                    ..proto::ConnectRequest::default()
                });
            }
            Request::Subscribe(r) => out.subscribe = Some(subscribe_request_to_proto(r)),
            Request::Unsubscribe(r) => out.unsubscribe = Some(proto::UnsubscribeRequest { channel: r.channel.clone() }),
            Request::Publish(r) => {
                out.publish = Some(proto::PublishRequest {
                    channel: r.channel.clone(),
                    data: bytes_of(&r.data),
                    ..proto::PublishRequest::default()
                });
            }
            Request::Presence(r) => out.presence = Some(proto::PresenceRequest { channel: r.channel.clone() }),
            Request::PresenceStats(r) => {
                out.presence_stats = Some(proto::PresenceStatsRequest { channel: r.channel.clone() });
            }
            Request::History(r) => {
                out.history = Some(proto::HistoryRequest {
                    channel: r.channel.clone(),
                    limit: r.limit,
                    since: r.since.as_ref().map(|s| proto::StreamPosition { offset: s.offset, epoch: s.epoch.clone() }),
                    reverse: r.reverse,
                });
            }
            Request::Ping => out.ping = Some(proto::PingRequest {}),
            Request::Send(r) => out.send = Some(proto::SendRequest { data: bytes_of(&r.data) }),
            Request::Rpc(r) => out.rpc = Some(proto::RpcRequest { data: bytes_of(&r.data), method: r.method.clone() }),
            Request::Refresh(r) => out.refresh = Some(proto::RefreshRequest { token: r.token.clone() }),
            Request::SubRefresh(r) => {
                out.sub_refresh = Some(proto::SubRefreshRequest {
                    channel: r.channel.clone(),
                    token: r.token.clone(),
                    ..proto::SubRefreshRequest::default()
                });
            }
        }
        out
    }
}

fn client_info_to_proto(i: &ClientInfo) -> proto::ClientInfo {
    proto::ClientInfo {
        user: i.user.clone(),
        client: i.client.clone(),
        conn_info: bytes_of(&i.conn_info),
        chan_info: bytes_of(&i.chan_info),
    }
}

fn publication_to_proto(p: &Publication) -> proto::Publication {
    proto::Publication {
        data: p.data.as_bytes().clone(),
        info: p.info.as_ref().map(client_info_to_proto),
        offset: p.offset,
        tags: p.tags.clone(),
        ..proto::Publication::default()
    }
}

fn subscribe_result_to_proto(r: &SubscribeResult) -> proto::SubscribeResult {
    proto::SubscribeResult {
        expires: r.expires,
        ttl: r.ttl,
        recoverable: r.recoverable,
        epoch: r.epoch.clone(),
        publications: r.publications.iter().map(publication_to_proto).collect(),
        recovered: r.recovered,
        offset: r.offset,
        positioned: r.positioned,
        data: bytes_of(&r.data),
        was_recovering: r.was_recovering,
        delta: r.delta,
        ..proto::SubscribeResult::default()
    }
}

fn push_to_proto(p: &Push) -> proto::Push {
    proto::Push {
        channel: p.channel.clone(),
        publication: p.publication.as_ref().map(publication_to_proto),
        join: p.join.as_ref().map(|j| proto::Join { info: Some(client_info_to_proto(&j.info)) }),
        leave: p.leave.as_ref().map(|l| proto::Leave { info: Some(client_info_to_proto(&l.info)) }),
        unsubscribe: p.unsubscribe.as_ref().map(|u| proto::Unsubscribe { code: u.code, reason: u.reason.clone() }),
        message: p.message.as_ref().map(|m| proto::Message { data: m.data.as_bytes().clone() }),
        subscribe: p.subscribe.as_ref().map(|s| proto::Subscribe {
            recoverable: s.recoverable,
            epoch: s.epoch.clone(),
            offset: s.offset,
            positioned: s.positioned,
            data: bytes_of(&s.data),
        }),
        disconnect: p.disconnect.as_ref().map(|d| proto::Disconnect {
            code: d.code,
            reason: d.reason.clone(),
            reconnect: d.reconnect,
        }),
        refresh: p.refresh.as_ref().map(|r| proto::Refresh { expires: r.expires, ttl: r.ttl }),
        ..proto::Push::default()
    }
}

/// The wire form of a model reply.
pub fn reply_to_proto(r: &Reply) -> proto::Reply {
    proto::Reply {
        id: r.id,
        error: r.error.as_ref().map(|e| proto::Error {
            code: e.code,
            message: e.message.clone(),
            temporary: e.temporary,
        }),
        push: r.push.as_ref().map(push_to_proto),
        connect: r.connect.as_ref().map(|c| proto::ConnectResult {
            client: c.client.clone(),
            version: c.version.clone(),
            expires: c.expires,
            ttl: c.ttl,
            data: bytes_of(&c.data),
            subs: c.subs.iter().map(|(k, v)| (k.clone(), subscribe_result_to_proto(v))).collect(),
            ping: c.ping,
            pong: c.pong,
            session: c.session.clone(),
            node: c.node.clone(),
            time: c.time,
        }),
        subscribe: r.subscribe.as_ref().map(subscribe_result_to_proto),
        unsubscribe: r.unsubscribe.map(|_| proto::UnsubscribeResult {}),
        publish: r.publish.map(|_| proto::PublishResult::default()),
        presence: r.presence.as_ref().map(|p| proto::PresenceResult {
            presence: p.presence.iter().map(|(k, v)| (k.clone(), client_info_to_proto(v))).collect(),
        }),
        presence_stats: r
            .presence_stats
            .as_ref()
            .map(|s| proto::PresenceStatsResult { num_clients: s.num_clients, num_users: s.num_users }),
        history: r.history.as_ref().map(|h| proto::HistoryResult {
            publications: h.publications.iter().map(publication_to_proto).collect(),
            epoch: h.epoch.clone(),
            offset: h.offset,
        }),
        ping: r.ping.map(|_| proto::PingResult {}),
        rpc: r.rpc.as_ref().map(|x| proto::RpcResult { data: bytes_of(&x.data) }),
        refresh: r.refresh.as_ref().map(|x| proto::RefreshResult {
            client: x.client.clone(),
            version: x.version.clone(),
            expires: x.expires,
            ttl: x.ttl,
        }),
        sub_refresh: r.sub_refresh.as_ref().map(|x| proto::SubRefreshResult {
            expires: x.expires,
            ttl: x.ttl,
            ..proto::SubRefreshResult::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json::tests::json_value;
    use crate::protocol::{JoinLeave, decode_commands as decode_json};
    use proptest::prelude::*;

    fn frame(messages: &[proto::Command]) -> Vec<u8> {
        messages.iter().flat_map(|m| encode_delimited(m).to_vec()).collect()
    }

    #[test]
    fn decodes_a_batch_and_the_empty_message_is_a_pong() {
        let connect = proto::Command {
            id: 1,
            connect: Some(proto::ConnectRequest { token: "t".into(), ..Default::default() }),
            ..Default::default()
        };
        let mut bytes = frame(&[connect]);
        bytes.push(0);
        let cmds = decode_commands(&bytes).unwrap();
        assert_eq!(cmds.len(), 2);
        assert!(matches!(&cmds[0].request, Request::Connect(c) if c.token == "t" && cmds[0].id == 1));
        assert!(matches!(cmds[1].request, Request::Pong));
    }

    #[test]
    fn validation_mirrors_the_json_decoder() {
        let two = proto::Command {
            id: 1,
            ping: Some(proto::PingRequest {}),
            presence: Some(proto::PresenceRequest { channel: "a".into() }),
            ..Default::default()
        };
        assert_eq!(decode_commands(&frame(&[two])).unwrap_err(), DecodeError::TwoRequests);
        // An id alone, or a field this schema does not know (tag 99), is no pong.
        let id_only = proto::Command { id: 3, ..Default::default() };
        assert_eq!(decode_commands(&frame(&[id_only])).unwrap_err(), DecodeError::UnknownCommand);
        assert_eq!(decode_commands(&[3, 0x98, 0x06, 1]).unwrap_err(), DecodeError::UnknownCommand);
        let too_many = frame(&vec![proto::Command::default(); MAX_COMMANDS_PER_FRAME + 1]);
        assert_eq!(decode_commands(&too_many).unwrap_err(), DecodeError::TooManyCommands);
    }

    #[test]
    fn truncated_frames_are_errors() {
        // Length 5 with 2 bytes behind it; a varint that never ends.
        assert_eq!(decode_commands(&[5, 8, 1]).unwrap_err(), DecodeError::BadLength);
        assert_eq!(decode_commands(&[0xff; 11]).unwrap_err(), DecodeError::BadLength);
        assert_eq!(decode_commands(&[0x80]).unwrap_err(), DecodeError::BadLength);
        // A complete length whose message is itself cut short.
        assert!(matches!(decode_commands(&[2, 0x22, 5]), Err(DecodeError::Protobuf(_))));
    }

    #[test]
    fn ping_is_the_empty_reply() {
        assert_eq!(encode_reply(&Reply::default()).as_ref(), PING);
    }

    #[test]
    fn publication_push_shares_the_payload_and_matches_the_owned_encoding() {
        let publication = Publication {
            data: Payload::from_binary(Bytes::from_static(&[0, 1, 2, 255])),
            offset: 9,
            info: Some(ClientInfo { user: "u".into(), client: "c".into(), ..Default::default() }),
            ..Default::default()
        };
        let borrowed = encode_publication_push("ch", &publication);
        let owned = encode_reply(&Reply::push(Push {
            channel: "ch".into(),
            publication: Some(publication.clone()),
            ..Default::default()
        }));
        assert_eq!(borrowed, owned);
        let reply = proto::Reply::decode_length_delimited(borrowed).unwrap();
        let push = reply.push.unwrap();
        assert_eq!(push.channel, "ch");
        let p = push.publication.unwrap();
        assert_eq!(p.data.as_ref(), &[0, 1, 2, 255]);
        assert_eq!((p.offset, p.info.unwrap().user.as_str()), (9, "u"));
    }

    #[test]
    fn join_push_and_error_reply_reach_the_wire() {
        let info = ClientInfo { user: "u".into(), client: "c".into(), ..Default::default() };
        let join = Reply::push(Push { channel: "a".into(), join: Some(JoinLeave { info }), ..Default::default() });
        let decoded = proto::Reply::decode_length_delimited(encode_reply(&join)).unwrap();
        assert_eq!(decoded.push.unwrap().join.unwrap().info.unwrap().client, "c");
        let err = Reply::error(4, crate::protocol::ErrorCode::PermissionDenied.into());
        let decoded = proto::Reply::decode_length_delimited(encode_reply(&err)).unwrap();
        assert_eq!((decoded.id, decoded.error.unwrap().code), (4, 103));
    }

    #[test]
    fn delta_and_tags_filter_travel_both_ways_and_delta_pushes_carry_the_flag() {
        let tf = proto::FilterNode {
            op: "not".into(),
            nodes: vec![proto::FilterNode { key: "k".into(), cmp: "eq".into(), val: "v".into(), ..Default::default() }],
            ..Default::default()
        };
        let sub = proto::SubscribeRequest {
            channel: "a".into(),
            delta: "fossil".into(),
            tf: Some(tf.clone()),
            ..Default::default()
        };
        let wire = encode_delimited(&proto::Command { id: 1, subscribe: Some(sub), ..Default::default() });
        let cmds = decode_commands(&wire).unwrap();
        let Request::Subscribe(s) = &cmds[0].request else { panic!("not a subscribe") };
        assert_eq!(s.delta, "fossil");
        assert_eq!(s.tf.as_ref().unwrap().nodes[0].val, "v");
        let back = proto::Command::from(&cmds[0]).subscribe.unwrap();
        assert_eq!((back.delta.as_str(), back.tf), ("fossil", Some(tf)));

        let publication =
            Publication { data: Payload::from_binary(Bytes::from_static(b"full")), offset: 4, ..Default::default() };
        let push = |delta: Option<&[u8]>| {
            let reply =
                proto::Reply::decode_length_delimited(encode_delta_publication_push("c", &publication, delta)).unwrap();
            reply.push.unwrap().publication.unwrap()
        };
        let full = push(None);
        assert_eq!((full.data.as_ref(), full.delta, full.offset), (&b"full"[..], false, 4));
        let delta = push(Some(b"\xff\x00"));
        assert_eq!((delta.data.as_ref(), delta.delta, delta.offset), (&b"\xff\x00"[..], true, 4));
        let result = SubscribeResult { delta: true, ..Default::default() };
        let reply = encode_reply(&Reply { id: 2, subscribe: Some(result), ..Default::default() });
        assert!(proto::Reply::decode_length_delimited(reply).unwrap().subscribe.unwrap().delta);
    }

    fn channel() -> impl Strategy<Value = String> {
        "[a-z:#$]{0,12}"
    }

    /// JSON commands the gateway accepts, built as JSON values.
    fn json_command() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::json;
        let data = json_value().prop_filter("null is absent data", |v| !v.is_null()).boxed();
        let sub = (channel(), "[a-z]{0,6}", any::<bool>(), any::<u64>(), "[a-z]{0,4}", any::<bool>(), any::<bool>())
            .prop_map(|(channel, token, recover, offset, epoch, recoverable, join_leave)| {
                json!({"channel": channel, "token": token, "recover": recover, "offset": offset,
                       "epoch": epoch, "recoverable": recoverable, "join_leave": join_leave, "positioned": recover})
            })
            .boxed();
        let request = prop_oneof![
            ("[a-z.]{0,20}", "[a-z]{0,8}", prop::option::of(data.clone()), prop::option::of(sub.clone())).prop_map(
                |(token, name, data, sub)| {
                    let mut c = json!({"token": token, "name": name, "version": "1"});
                    if let Some(d) = data {
                        c["data"] = d;
                    }
                    if let Some(s) = sub {
                        c["subs"] = json!({ s["channel"].as_str().unwrap_or(""): s });
                    }
                    json!({"connect": c})
                }
            ),
            sub.prop_map(|s| json!({"subscribe": s})),
            channel().prop_map(|c| json!({"unsubscribe": {"channel": c}})),
            (channel(), data.clone()).prop_map(|(c, d)| json!({"publish": {"channel": c, "data": d}})),
            channel().prop_map(|c| json!({"presence": {"channel": c}})),
            channel().prop_map(|c| json!({"presence_stats": {"channel": c}})),
            (channel(), any::<i32>(), prop::option::of((any::<u64>(), "[a-z]{0,4}")), any::<bool>()).prop_map(
                |(c, limit, since, reverse)| {
                    let mut h = json!({"channel": c, "limit": limit, "reverse": reverse});
                    if let Some((offset, epoch)) = since {
                        h["since"] = json!({"offset": offset, "epoch": epoch});
                    }
                    json!({"history": h})
                }
            ),
            Just(json!({"ping": {}})),
            data.clone().prop_map(|d| json!({"send": {"data": d}})),
            ("[a-z]{0,6}", data).prop_map(|(m, d)| json!({"rpc": {"method": m, "data": d}})),
            "[a-z]{0,10}".prop_map(|t| json!({"refresh": {"token": t}})),
            (channel(), "[a-z]{0,6}").prop_map(|(c, t)| json!({"sub_refresh": {"channel": c, "token": t}})),
        ];
        (1u32.., request).prop_map(|(id, mut r)| {
            r["id"] = id.into();
            r
        })
    }

    proptest! {
        #[test]
        fn json_commands_round_trip_through_protobuf(batch in prop::collection::vec(json_command(), 1..4)) {
            let text = batch.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("\n");
            let from_json = decode_json(text.as_bytes()).unwrap();
            let wire: Vec<u8> = from_json.iter().flat_map(|c| encode_delimited(&proto::Command::from(c)).to_vec()).collect();
            let from_proto = decode_commands(&wire).unwrap();
            // The model types carry no PartialEq; Debug shows every field,
            // including each payload's bytes and whether they are JSON.
            prop_assert_eq!(format!("{from_json:?}"), format!("{from_proto:?}"));
        }

        #[test]
        fn binary_publish_data_arrives_untouched(data in prop::collection::vec(any::<u8>(), 1..64)) {
            let command = proto::Command {
                id: 7,
                publish: Some(proto::PublishRequest { channel: "c".into(), data: Bytes::from(data.clone()), ..Default::default() }),
                ..Default::default()
            };
            let cmds = decode_commands(&encode_delimited(&command)).unwrap();
            let Request::Publish(p) = &cmds[0].request else { panic!("not a publish") };
            let payload = p.data.clone().unwrap();
            prop_assert_eq!(payload.as_bytes().as_ref(), &data[..]);
            let is_json = std::str::from_utf8(&data).is_ok_and(|t| serde_json::from_str::<serde_json::Value>(t).is_ok());
            prop_assert_eq!(payload.is_json(), is_json);
        }

        #[test]
        fn publication_pushes_round_trip(value in json_value(), offset in any::<u64>(), tags in prop::collection::hash_map("[a-z]{1,4}", "[a-z]{0,4}", 0..3)) {
            prop_assume!(!value.is_null());
            let data = Payload::from_json(&value.to_string()).unwrap();
            let publication = Publication { data: data.clone(), offset, tags: tags.clone(), info: None };
            let reply = proto::Reply::decode_length_delimited(encode_publication_push("c", &publication)).unwrap();
            let p = reply.push.unwrap().publication.unwrap();
            prop_assert_eq!(&p.data, data.as_bytes());
            prop_assert_eq!(p.offset, offset);
            prop_assert_eq!(p.tags, tags);
        }

        #[test]
        fn garbage_and_truncation_never_panic(frame in prop::collection::vec(any::<u8>(), 0..256), cut in any::<prop::sample::Index>()) {
            let _ = decode_commands(&frame);
            let valid = encode_delimited(&proto::Command { id: 1, ping: Some(proto::PingRequest {}), ..Default::default() });
            let at = cut.index(valid.len());
            // Every strict prefix of a valid message is an error, never a panic.
            prop_assert!(at == 0 || decode_commands(&valid[..at]).is_err());
        }
    }
}
