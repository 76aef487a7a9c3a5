//! The JSON codec: newline-delimited commands in, replies out.

use bytes::{BufMut, Bytes, BytesMut};

use super::EncodeError;
use super::types::{Command, Publication, RawCommand, Reply, Request};

/// Most commands accepted in one frame; a larger batch is a bad request.
pub const MAX_COMMANDS_PER_FRAME: usize = 256;
/// Deepest nesting of objects and arrays accepted in one command, payloads
/// included (serde_json's own limit for typed values). Payloads are kept as
/// raw JSON, which serde_json skips without a depth limit: without this
/// check a 10,000-deep publication would reach every subscriber, whose own
/// parsers may have far lower limits (Python's is about 1,000).
pub const MAX_JSON_DEPTH: usize = 128;

/// Why a frame could not be decoded. Every variant is the client's fault and
/// ends the connection with 3501 bad request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("frame is not utf-8")]
    NotUtf8,
    #[error("invalid command json: {0}")]
    Json(String),
    #[error("command carries more than one request")]
    TwoRequests,
    #[error("unknown command")]
    UnknownCommand,
    #[error("too many commands in one frame (max {MAX_COMMANDS_PER_FRAME})")]
    TooManyCommands,
    #[error("json nested too deep (max {MAX_JSON_DEPTH} levels)")]
    TooDeep,
    #[error("truncated or invalid length prefix")]
    BadLength,
    #[error("invalid command protobuf: {0}")]
    Protobuf(String),
}

/// Decodes one frame of newline-separated JSON commands. Blank lines are
/// skipped. A command with no request is a pong.
pub fn decode_commands(frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
    let text = std::str::from_utf8(frame).map_err(|_| DecodeError::NotUtf8)?;
    let mut out = Vec::new();
    for line in text.split('\n') {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if out.len() == MAX_COMMANDS_PER_FRAME {
            return Err(DecodeError::TooManyCommands);
        }
        if nesting_exceeds(line.as_bytes(), MAX_JSON_DEPTH) {
            return Err(DecodeError::TooDeep);
        }
        let raw: RawCommand = serde_json::from_str(line).map_err(|e| DecodeError::Json(e.to_string()))?;
        let command = into_command(raw)?;
        if matches!(command.request, Request::Pong) && !is_pong(command.id, line) {
            return Err(DecodeError::UnknownCommand);
        }
        out.push(command);
    }
    Ok(out)
}

/// Whether `json` opens more than `max` objects or arrays at once. A byte
/// scan that skips strings; it does not validate (the parser does that).
fn nesting_exceeds(json: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A command with no known request is a pong only when it is empty: an id
/// or any other key means a method this server does not know. Checked only
/// on the rare request-less command, so the common path parses once.
fn is_pong(id: u32, line: &str) -> bool {
    id == 0
        && serde_json::from_str::<std::collections::HashMap<&str, serde::de::IgnoredAny>>(line)
            .is_ok_and(|keys| keys.is_empty())
}

fn into_command(raw: RawCommand) -> Result<Command, DecodeError> {
    let RawCommand {
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
        connect.map(Request::Connect),
        subscribe.map(Request::Subscribe),
        unsubscribe.map(Request::Unsubscribe),
        publish.map(Request::Publish),
        presence.map(Request::Presence),
        presence_stats.map(Request::PresenceStats),
        history.map(Request::History),
        ping.map(|_| Request::Ping),
        send.map(Request::Send),
        rpc.map(Request::Rpc),
        refresh.map(Request::Refresh),
        sub_refresh.map(Request::SubRefresh),
    ];
    single_request(id, candidates)
}

/// The one rule both encodings share: a command carries at most one request,
/// and none means a pong. The wire has no `oneof` (for JSON's sake), so
/// decoders hand over every request slot and this picks.
pub(super) fn single_request<const N: usize>(
    id: u32,
    candidates: [Option<Request>; N],
) -> Result<Command, DecodeError> {
    let mut found = None;
    for request in candidates.into_iter().flatten() {
        if found.is_some() {
            return Err(DecodeError::TwoRequests);
        }
        found = Some(request);
    }
    Ok(Command { id, request: found.unwrap_or(Request::Pong) })
}

/// Encodes one reply as a single JSON line (no trailing newline). Fails only
/// when the reply carries a binary payload, which JSON cannot embed.
pub fn encode_reply(reply: &Reply) -> Result<Bytes, EncodeError> {
    let mut buf = BytesMut::with_capacity(128);
    encode_reply_into(reply, &mut buf)?;
    Ok(buf.freeze())
}

/// Appends one reply to `buf`; on error `buf` may hold a partial reply.
pub fn encode_reply_into(reply: &Reply, buf: &mut BytesMut) -> Result<(), EncodeError> {
    // Serializing our own types into memory fails only on a binary Payload:
    // every JSON one was validated when it was built.
    let writer = (&mut *buf).writer();
    serde_json::to_writer(writer, reply).map_err(|_| EncodeError::BinaryPayload)
}

/// Encodes the `pub` push for `publication` in `channel` without cloning
/// the publication: the hot path encodes each publication exactly once and
/// shares the bytes with every subscriber.
pub fn encode_publication_push(channel: &str, publication: &Publication) -> Result<Bytes, EncodeError> {
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        push: PushRef<'a>,
    }
    #[derive(serde::Serialize)]
    struct PushRef<'a> {
        channel: &'a str,
        #[serde(rename = "pub")]
        publication: &'a Publication,
    }
    let mut buf = BytesMut::with_capacity(64 + channel.len() + publication.data.len());
    let envelope = Envelope { push: PushRef { channel, publication } };
    serde_json::to_writer((&mut buf).writer(), &envelope).map_err(|_| EncodeError::BinaryPayload)?;
    Ok(buf.freeze())
}

/// The `pub` push for a subscription that negotiated delta compression. As
/// the SDKs expect, `data` is a JSON *string*: the text of the full data, or
/// of the fossil `delta` against the previous publication (then with
/// `delta: true`). Fails when that text is not UTF-8 or the full data is not
/// JSON; the caller then falls back to the full form or closes with 3506.
pub fn encode_delta_publication_push(
    channel: &str,
    publication: &Publication,
    delta: Option<&[u8]>,
) -> Result<Bytes, EncodeError> {
    fn is_false(v: &bool) -> bool {
        !*v
    }
    fn is_zero(v: &u64) -> bool {
        *v == 0
    }
    fn no_tags(t: &&std::collections::HashMap<String, String>) -> bool {
        t.is_empty()
    }
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        push: PushRef<'a>,
    }
    #[derive(serde::Serialize)]
    struct PushRef<'a> {
        channel: &'a str,
        #[serde(rename = "pub")]
        publication: PubRef<'a>,
    }
    #[derive(serde::Serialize)]
    struct PubRef<'a> {
        data: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        info: Option<&'a super::ClientInfo>,
        #[serde(skip_serializing_if = "is_zero")]
        offset: u64,
        #[serde(skip_serializing_if = "no_tags")]
        tags: &'a std::collections::HashMap<String, String>,
        #[serde(skip_serializing_if = "is_false")]
        delta: bool,
    }
    let bytes = match delta {
        Some(delta) => delta,
        None if publication.data.is_json() => publication.data.as_bytes(),
        None => return Err(EncodeError::BinaryPayload),
    };
    let data = std::str::from_utf8(bytes).map_err(|_| EncodeError::BinaryPayload)?;
    let publication = PubRef {
        data,
        info: publication.info.as_ref(),
        offset: publication.offset,
        tags: &publication.tags,
        delta: delta.is_some(),
    };
    let mut buf = BytesMut::with_capacity(80 + channel.len() + data.len() + data.len() / 8);
    let envelope = Envelope { push: PushRef { channel, publication } };
    serde_json::to_writer((&mut buf).writer(), &envelope).map_err(|_| EncodeError::BinaryPayload)?;
    Ok(buf.freeze())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::{Payload, Publication, Push};
    use proptest::prelude::*;

    #[test]
    fn nesting_past_the_limit_is_refused_wherever_it_is() {
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        // The command object, `publish` and `data` take three of the levels.
        let ok = format!(r#"{{"id":1,"publish":{{"channel":"a","data":{{"x":{}}}}}}}"#, deep(MAX_JSON_DEPTH - 3));
        decode_commands(ok.as_bytes()).unwrap();
        let over = format!(r#"{{"id":1,"publish":{{"channel":"a","data":{{"x":{}}}}}}}"#, deep(MAX_JSON_DEPTH - 2));
        assert_eq!(decode_commands(over.as_bytes()).unwrap_err(), DecodeError::TooDeep);
        let ping = format!(r#"{{"id":1,"ping":{}}}"#, deep(10_000));
        assert_eq!(decode_commands(ping.as_bytes()).unwrap_err(), DecodeError::TooDeep);
        // Brackets inside strings, escaped quotes included, do not count.
        let text = format!(r#"{{"id":1,"publish":{{"channel":"a","data":"\\\"{}"}}}}"#, "[".repeat(10_000));
        decode_commands(text.as_bytes()).unwrap();
    }

    #[test]
    fn decodes_a_batch_of_commands() {
        let frame = b"{\"id\":1,\"connect\":{\"token\":\"t\",\"name\":\"js\"}}\n{\"id\":2,\"subscribe\":{\"channel\":\"a\",\"recover\":true,\"offset\":5,\"epoch\":\"e\"}}\n";
        let cmds = decode_commands(frame).unwrap();
        assert_eq!(cmds.len(), 2);
        assert!(matches!(&cmds[0].request, Request::Connect(c) if c.token == "t" && c.name == "js"));
        assert!(matches!(&cmds[1].request, Request::Subscribe(s) if s.recover && s.offset == 5 && s.epoch == "e"));
    }

    #[test]
    fn empty_object_is_a_pong() {
        let cmds = decode_commands(b"{}").unwrap();
        assert!(matches!(cmds[0].request, Request::Pong));
    }

    #[test]
    fn two_requests_in_one_command_is_an_error() {
        let err =
            decode_commands(b"{\"id\":1,\"publish\":{\"channel\":\"a\",\"data\":1},\"presence\":{\"channel\":\"a\"}}")
                .unwrap_err();
        assert_eq!(err, DecodeError::TwoRequests);
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(matches!(decode_commands(b"{\"id\":"), Err(DecodeError::Json(_))));
        assert!(matches!(decode_commands(b"[1,2]"), Err(DecodeError::Json(_))));
        assert_eq!(decode_commands(&[0xff, 0xfe]).unwrap_err(), DecodeError::NotUtf8);
    }

    #[test]
    fn a_command_with_no_known_method_is_unknown() {
        assert_eq!(decode_commands(b"{\"id\":3,\"future\":{}}").unwrap_err(), DecodeError::UnknownCommand);
        assert_eq!(decode_commands(b"{\"future\":{}}").unwrap_err(), DecodeError::UnknownCommand);
        assert_eq!(decode_commands(b"{\"id\":3}").unwrap_err(), DecodeError::UnknownCommand);
        // Unknown keys beside a known method are tolerated (newer SDKs send extra fields).
        let cmds = decode_commands(b"{\"id\":3,\"ping\":{},\"future\":1}").unwrap();
        assert!(matches!(cmds[0].request, Request::Ping));
    }

    #[test]
    fn push_encoding_matches_the_wire_shape() {
        let reply = Reply::push(Push {
            channel: "chat:1".into(),
            publication: Some(Publication {
                data: Payload::from_json("{\"text\":\"hi\"}").unwrap(),
                offset: 15,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            encode_reply(&reply).unwrap().as_ref(),
            br#"{"push":{"channel":"chat:1","pub":{"data":{"text":"hi"},"offset":15}}}"#
        );
    }

    #[test]
    fn borrowed_publication_push_matches_the_owned_encoding() {
        let publication = Publication { data: Payload::from_json("[1,2]").unwrap(), offset: 7, ..Default::default() };
        let owned = encode_reply(&Reply::push(Push {
            channel: "c".into(),
            publication: Some(publication.clone()),
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(encode_publication_push("c", &publication).unwrap(), owned);
        let binary = Publication { data: Payload::from_binary(bytes::Bytes::from_static(&[0xff])), ..publication };
        assert_eq!(encode_publication_push("c", &binary), Err(EncodeError::BinaryPayload));
    }

    #[test]
    fn delta_publication_push_carries_data_as_a_json_string() {
        let publication = Publication {
            data: Payload::from_binary(bytes::Bytes::from_static(b"{\"s\":\"caf\xc3\xa9\"}")),
            offset: 3,
            ..Default::default()
        };
        let full = encode_delta_publication_push("c", &publication, None).unwrap();
        let expected = r#"{"push":{"channel":"c","pub":{"data":"{\"s\":\"café\"}","offset":3}}}"#;
        assert_eq!(std::str::from_utf8(&full).unwrap(), expected);
        let delta = encode_delta_publication_push("c", &publication, Some(b"9\n3:abc")).unwrap();
        assert_eq!(delta.as_ref(), br#"{"push":{"channel":"c","pub":{"data":"9\n3:abc","offset":3,"delta":true}}}"#);
        // Bytes that are not UTF-8 cannot be a JSON string; binary data is not JSON.
        assert_eq!(encode_delta_publication_push("c", &publication, Some(&[0xc3])), Err(EncodeError::BinaryPayload));
        let binary = Publication { data: Payload::from_binary(bytes::Bytes::from_static(&[0xff])), ..publication };
        assert_eq!(encode_delta_publication_push("c", &binary, None), Err(EncodeError::BinaryPayload));
    }

    #[test]
    fn subscribe_decodes_delta_and_the_tags_filter() {
        let frame = br#"{"id":2,"subscribe":{"channel":"a","delta":"fossil","tf":{"op":"and","nodes":[{"key":"t","cmp":"in","vals":["x","y"]}]}}}"#;
        let cmds = decode_commands(frame).unwrap();
        let Request::Subscribe(s) = &cmds[0].request else { panic!("not a subscribe") };
        assert_eq!(s.delta, "fossil");
        let tf = s.tf.as_ref().unwrap();
        assert_eq!((tf.op.as_str(), tf.nodes.len()), ("and", 1));
        assert_eq!(
            (tf.nodes[0].key.as_str(), tf.nodes[0].cmp.as_str(), &tf.nodes[0].vals[..]),
            ("t", "in", &["x".to_owned(), "y".to_owned()][..])
        );
    }

    pub(crate) fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[ -~\\n\\t]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z\\n]{1,6}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn publish_data_round_trips_through_decode_and_encode(value in json_value(), id in 1u32.., pretty in any::<bool>()) {
            // `data: null` decodes as "no data", like any absent optional field.
            prop_assume!(!value.is_null());
            let data = if pretty { serde_json::to_string_pretty(&value).unwrap() } else { value.to_string() };
            // A pretty-printed payload spans lines; on the wire it must be one line.
            let compact = data.replace('\n', "");
            let frame = format!("{{\"id\":{id},\"publish\":{{\"channel\":\"c\",\"data\":{compact}}}}}");
            let cmds = decode_commands(frame.as_bytes()).unwrap();
            prop_assert_eq!(cmds.len(), 1);
            prop_assert_eq!(cmds[0].id, id);
            let Request::Publish(p) = &cmds[0].request else { panic!("not a publish") };
            let payload = p.data.clone().unwrap();
            prop_assert!(!payload.as_bytes().contains(&b'\n'));
            let back: serde_json::Value = serde_json::from_slice(payload.as_bytes()).unwrap();
            prop_assert_eq!(&back, &value);

            // Encoding embeds the bytes verbatim and stays one line.
            let reply = Reply::push(Push { channel: "c".into(), publication: Some(Publication { data: payload, offset: 1, ..Default::default() }), ..Default::default() });
            let bytes = encode_reply(&reply).unwrap();
            prop_assert!(!bytes.contains(&b'\n'));
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(&v["push"]["pub"]["data"], &value);
        }

        #[test]
        fn decoder_never_panics_on_arbitrary_bytes(frame in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_commands(&frame);
        }
    }
}
