//! Protobuf over the bidirectional emulation: `POST /connection/http_stream`
//! with `Content-Type: application/octet-stream` streams varint-delimited
//! `Reply` messages, and `/emulation` takes a Protobuf `EmulationRequest`
//! whose `data` is the delimited commands. Driven by a raw HTTP client built
//! on the gateway's own prost types.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use prost::Message as _;
use serde_json::json;
use switchboard::protocol::proto;
use switchboard::protocol::protobuf::encode_delimited;

use crate::*;

const OCTET_STREAM: (&str, &str) = ("content-type", "application/octet-stream");
/// Not UTF-8, so certainly not JSON: it must arrive byte for byte.
const BINARY: &[u8] = &[0x00, 0xff, 0x9f, 0x0a, b'{'];

fn command(id: u32, build: impl FnOnce(&mut proto::Command)) -> proto::Command {
    let mut command = proto::Command { id, ..Default::default() };
    build(&mut command);
    command
}

/// Posts `commands` to `/emulation` as a Protobuf `EmulationRequest`; the status.
async fn emulate(gw: &TestGateway, session: &str, node: &str, commands: &[proto::Command]) -> Result<u16> {
    let mut data = Vec::new();
    for c in commands {
        data.extend_from_slice(&encode_delimited(c));
    }
    emulate_raw(gw, session, node, data).await
}

async fn emulate_raw(gw: &TestGateway, session: &str, node: &str, data: Vec<u8>) -> Result<u16> {
    let request = proto::EmulationRequest { node: node.to_owned(), session: session.to_owned(), data: data.into() };
    let resp = http_request_bytes(gw.addr, "POST", "/emulation", &[OCTET_STREAM], &request.encode_to_vec()).await?;
    Ok(resp.status)
}

/// The next reply that is neither a ping (the empty message) nor a join or
/// leave push; `None` when the stream ended.
async fn next_reply(stream: &mut HttpStream) -> Result<Option<proto::Reply>> {
    loop {
        let Some(message) = stream.next_delimited().await? else { return Ok(None) };
        if message.is_empty() {
            continue;
        }
        let reply = proto::Reply::decode(&message[..]).context("bad reply")?;
        if reply.push.as_ref().is_some_and(|p| p.join.is_some() || p.leave.is_some()) {
            continue;
        }
        return Ok(Some(reply));
    }
}

async fn expect_reply(stream: &mut HttpStream) -> Result<proto::Reply> {
    next_reply(stream).await?.context("stream ended")
}

/// Opens a Protobuf http_stream for `user`: the stream and the connect result.
async fn open(gw: &TestGateway, user: &str) -> Result<(HttpStream, proto::ConnectResult)> {
    let connect =
        command(1, |c| c.connect = Some(proto::ConnectRequest { token: user_token(user), ..Default::default() }));
    let body = encode_delimited(&connect);
    let mut stream = HttpStream::open_bytes(gw.addr, "POST", "/connection/http_stream", &[OCTET_STREAM], &body).await?;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("application/octet-stream"));
    let reply = expect_reply(&mut stream).await?;
    assert_eq!(reply.id, 1);
    let result = reply.connect.with_context(|| format!("connect failed: {:?}", reply.error))?;
    Ok((stream, result))
}

#[tokio::test]
async fn protobuf_http_stream_subscribes_publishes_and_ends_with_a_protobuf_disconnect() -> Result<()> {
    let gw = TestGateway::start().await?;
    let (mut stream, connect) = open(&gw, "pb-alice").await?;
    assert!(!connect.session.is_empty() && !connect.node.is_empty(), "{connect:?}");
    assert!(connect.pong, "emulation clients answer pings");
    let (session, node) = (connect.session, connect.node);

    let subscribe = command(2, |c| {
        c.subscribe = Some(proto::SubscribeRequest { channel: "chat:pbe".into(), ..Default::default() });
    });
    assert_eq!(emulate(&gw, &session, &node, &[subscribe]).await?, 204);
    let reply = expect_reply(&mut stream).await?;
    assert_eq!(reply.id, 2);
    assert!(reply.subscribe.is_some(), "{reply:?}");

    // Binary payloads from the server API travel untouched, in order.
    for n in 1..=3u8 {
        let mut data = BINARY.to_vec();
        data.push(n);
        let b64data = base64::engine::general_purpose::STANDARD.encode(&data);
        gw.api().result("publish", json!({"channel": "chat:pbe", "b64data": b64data})).await?;
    }
    for n in 1..=3u8 {
        let reply = expect_reply(&mut stream).await?;
        let push = reply.push.context("a push")?;
        assert_eq!(push.channel, "chat:pbe");
        let publication = push.publication.context("a publication")?;
        let mut want = BINARY.to_vec();
        want.push(n);
        assert_eq!(publication.data.as_ref(), &want[..], "publication {n}");
        assert_eq!(publication.offset, u64::from(n));
    }

    // Two commands in one post: a client publish and a ping.
    let publish = command(3, |c| {
        c.publish = Some(proto::PublishRequest {
            channel: "chat:pbe".into(),
            data: BINARY.to_vec().into(),
            ..Default::default()
        });
    });
    let ping = command(4, |c| c.ping = Some(proto::PingRequest {}));
    assert_eq!(emulate(&gw, &session, &node, &[publish, ping]).await?, 204);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(expect_reply(&mut stream).await?);
    }
    assert!(seen.iter().any(|r| r.id == 3 && r.publish.is_some()), "{seen:?}");
    assert!(seen.iter().any(|r| r.id == 4 && r.ping.is_some()), "{seen:?}");
    assert!(
        seen.iter().any(|r| r
            .push
            .as_ref()
            .and_then(|p| p.publication.as_ref())
            .is_some_and(|p| p.data.as_ref() == BINARY && p.offset == 4)),
        "{seen:?}"
    );

    gw.api().result("disconnect", json!({"user": "pb-alice", "disconnect": {"code": 3011, "reason": "x"}})).await?;
    let last = expect_reply(&mut stream).await?;
    let disconnect = last.push.and_then(|p| p.disconnect).context("a disconnect push")?;
    assert_eq!((disconnect.code, disconnect.reconnect), (3011, true), "{disconnect:?}");
    assert!(next_reply(&mut stream).await?.is_none(), "the stream ends after the disconnect");
    assert_eq!(emulate(&gw, &session, &node, &[command(5, |c| c.ping = Some(proto::PingRequest {}))]).await?, 404);
    gw.shutdown().await
}

#[tokio::test]
async fn protobuf_emulation_refuses_bad_bodies_and_a_truncated_frame_ends_the_session() -> Result<()> {
    let gw = TestGateway::start().await?;
    let (mut stream, connect) = open(&gw, "pb-bob").await?;
    let (session, node) = (connect.session, connect.node);

    // Not an EmulationRequest, or one without a session: 400.
    for body in [&[0xff, 0xff, 0xff][..], b"{\"session\":\"x\"}", &proto::EmulationRequest::default().encode_to_vec()] {
        let resp = http_request_bytes(gw.addr, "POST", "/emulation", &[OCTET_STREAM], body).await?;
        assert_eq!(resp.status, 400, "{body:?}");
    }
    let ping = || command(2, |c| c.ping = Some(proto::PingRequest {}));
    assert_eq!(emulate(&gw, "no-such-session", &node, &[ping()]).await?, 404);
    assert_eq!(emulate(&gw, &session, "another-node", &[ping()]).await?, 404, "a foreign node's session");
    let big = vec![0u8; 200_000];
    assert_eq!(emulate_raw(&gw, &session, &node, big).await?, 413);

    // The session survived all of that.
    assert_eq!(emulate(&gw, &session, &node, &[ping()]).await?, 204);
    assert_eq!(expect_reply(&mut stream).await?.id, 2);

    // A length prefix promising more than arrives: 3501, as on WebSocket.
    assert_eq!(emulate_raw(&gw, &session, &node, vec![10, 8, 2]).await?, 204);
    let last = expect_reply(&mut stream).await?;
    let disconnect = last.push.and_then(|p| p.disconnect).context("a disconnect push")?;
    assert_eq!((disconnect.code, disconnect.reason.as_str()), (3501, "bad request"));
    if let Some(extra) = next_reply(&mut stream).await? {
        bail!("the stream goes on after the disconnect: {extra:?}");
    }
    gw.shutdown().await
}

#[tokio::test]
async fn json_http_stream_is_unchanged_without_the_octet_stream_content_type() -> Result<()> {
    let gw = TestGateway::start().await?;
    let connect = json!({"id": 1, "connect": {"token": user_token("json-carol")}}).to_string();
    let mut stream =
        HttpStream::open(gw.addr, "POST", "/connection/http_stream", &[("content-type", "application/json")], &connect)
            .await?;
    assert_eq!(stream.header("content-type"), Some("application/json"));
    let reply = stream.next_json().await?.context("connect reply")?;
    assert_eq!(reply["id"], json!(1), "{reply}");
    // A Protobuf post to a JSON session is handed over as the session's own
    // (text) frame, which is not JSON: the session ends with 3501.
    let session = reply["connect"]["session"].as_str().context("session")?.to_owned();
    let node = reply["connect"]["node"].as_str().context("node")?.to_owned();
    assert_eq!(emulate(&gw, &session, &node, &[command(2, |c| c.ping = Some(proto::PingRequest {}))]).await?, 204);
    let last = stream.next_json().await?.context("disconnect push")?;
    assert_eq!(last["push"]["disconnect"]["code"], json!(3501), "{last}");
    gw.shutdown().await
}
