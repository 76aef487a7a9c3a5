//! The Protobuf protocol over WebSocket (`centrifuge-protobuf` subprotocol),
//! driven by a client built on the gateway's own prost types: binary
//! payloads travel untouched, recovery works, pings are the empty reply, and
//! a JSON subscriber of a channel that carries a binary publication is
//! closed with 3506 while JSON publications still reach both.

use std::collections::VecDeque;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use serde_json::json;
use switchboard::protocol::proto;
use switchboard::protocol::protobuf::{encode_delimited, split_delimited};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::*;

/// What the Protobuf client reads.
#[derive(Debug)]
enum PbFrame {
    Reply(Box<proto::Reply>),
    Close(u16, String),
}

struct PbClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u32,
    pending: VecDeque<proto::Reply>,
}

impl PbClient {
    async fn open(gw: &TestGateway) -> Result<Self> {
        let mut request = gw.ws_url().into_client_request()?;
        request.headers_mut().insert("sec-websocket-protocol", "centrifuge-protobuf".parse()?);
        // tungstenite fails the handshake unless the 101 selects the offered subprotocol.
        let (ws, response) = tokio_tungstenite::connect_async(request).await?;
        assert_eq!(
            response.headers().get("sec-websocket-protocol").map(|v| v.as_bytes()),
            Some(&b"centrifuge-protobuf"[..])
        );
        Ok(Self { ws, next_id: 1, pending: VecDeque::new() })
    }

    async fn connect(gw: &TestGateway, user: &str) -> Result<(Self, proto::ConnectResult)> {
        let mut client = Self::open(gw).await?;
        let connect = proto::ConnectRequest { token: user_token(user), ..Default::default() };
        let reply = client.call(proto::Command { connect: Some(connect), ..Default::default() }).await?;
        let result = reply.connect.with_context(|| format!("connect failed: {:?}", reply.error))?;
        Ok((client, result))
    }

    async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.ws.send(Message::binary(bytes)).await?;
        Ok(())
    }

    async fn call(&mut self, mut command: proto::Command) -> Result<proto::Reply> {
        let id = self.next_id;
        self.next_id += 1;
        command.id = id;
        self.send_raw(encode_delimited(&command).to_vec()).await?;
        let mut skipped = Vec::new();
        let reply = loop {
            match self.next_frame().await? {
                PbFrame::Reply(r) if r.id == id => break *r,
                PbFrame::Reply(r) => skipped.push(*r),
                PbFrame::Close(code, reason) => bail!("closed {code} {reason:?} while waiting for reply {id}"),
            }
        };
        for r in skipped.into_iter().rev() {
            self.pending.push_front(r);
        }
        Ok(reply)
    }

    async fn subscribe(&mut self, request: proto::SubscribeRequest) -> Result<proto::SubscribeResult> {
        let reply = self.call(proto::Command { subscribe: Some(request), ..Default::default() }).await?;
        reply.subscribe.with_context(|| format!("subscribe failed: {:?}", reply.error))
    }

    /// The next reply or close within [`WAIT`]; pings (empty replies) are
    /// answered with the empty command and skipped.
    async fn next_frame(&mut self) -> Result<PbFrame> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Ok(PbFrame::Reply(Box::new(r)));
            }
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.context("timed out waiting for a frame")?;
            match msg {
                Some(Ok(Message::Binary(bytes))) => {
                    for message in split_delimited(&bytes).context("bad length prefix")? {
                        if message.is_empty() {
                            self.send_raw(vec![0]).await?;
                            continue;
                        }
                        self.pending.push_back(proto::Reply::decode(message).context("bad reply")?);
                    }
                }
                Some(Ok(Message::Text(text))) => bail!("text frame on a protobuf connection: {text}"),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) =
                        frame.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new()));
                    return Ok(PbFrame::Close(code, reason));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("websocket error: {e}"),
                None => bail!("connection ended without a close frame"),
            }
        }
    }

    /// The next publication push, skipping join and leave pushes.
    async fn next_publication(&mut self) -> Result<(String, proto::Publication)> {
        loop {
            let reply = match self.next_frame().await? {
                PbFrame::Reply(r) => *r,
                PbFrame::Close(code, reason) => bail!("closed {code} {reason:?} while waiting for a publication"),
            };
            match reply.push {
                Some(proto::Push { channel, publication: Some(p), .. }) => return Ok((channel, p)),
                Some(p) if p.join.is_some() || p.leave.is_some() => {}
                _ => bail!("expected a publication push, got {reply:?}"),
            }
        }
    }

    async fn expect_close(&mut self) -> Result<(u16, String)> {
        loop {
            if let PbFrame::Close(code, reason) = self.next_frame().await? {
                return Ok((code, reason));
            }
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Not UTF-8, let alone JSON.
const BINARY: &[u8] = &[0x00, 0x9f, 0x92, 0x96, 0xff, b'\n'];

#[tokio::test]
async fn protobuf_client_gets_binary_payloads_untouched_and_recovers() -> Result<()> {
    let gw = TestGateway::start().await?;
    let api = gw.api();
    let (mut pb, connect) = PbClient::connect(&gw, "pb-user").await?;
    assert!(!connect.client.is_empty());
    assert!(connect.pong && connect.ping > 0, "{connect:?}");

    let sub = pb.subscribe(proto::SubscribeRequest { channel: "chat:pb".into(), ..Default::default() }).await?;
    assert!(sub.recoverable && sub.positioned && !sub.epoch.is_empty(), "{sub:?}");
    let epoch = sub.epoch.clone();

    let pos = api.result("publish", json!({ "channel": "chat:pb", "b64data": b64(BINARY) })).await?;
    assert_eq!(pos["offset"], 1);
    let (channel, publication) = pb.next_publication().await?;
    assert_eq!(channel, "chat:pb");
    assert_eq!(publication.data.as_ref(), BINARY);
    assert_eq!(publication.offset, 1);

    // Miss three publications (binary and JSON), then come back and recover.
    drop(pb);
    let missed: [Vec<u8>; 3] = [vec![1, 2, 3], b"{\"n\":3}".to_vec(), vec![0xff; 40]];
    for data in &missed {
        api.result("publish", json!({ "channel": "chat:pb", "b64data": b64(data) })).await?;
    }
    let (mut pb, _) = PbClient::connect(&gw, "pb-user").await?;
    let sub = pb
        .subscribe(proto::SubscribeRequest {
            channel: "chat:pb".into(),
            recover: true,
            offset: 1,
            epoch: epoch.clone(),
            ..Default::default()
        })
        .await?;
    assert!(sub.recovered && sub.was_recovering, "{sub:?}");
    assert_eq!(sub.epoch, epoch);
    assert_eq!(sub.offset, 4);
    let offsets: Vec<u64> = sub.publications.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, [2, 3, 4]);
    let datas: Vec<&[u8]> = sub.publications.iter().map(|p| p.data.as_ref()).collect();
    assert_eq!(datas, missed.iter().map(Vec::as_slice).collect::<Vec<_>>());

    // Client-side publish of arbitrary bytes arrives untouched, with info.
    let reply = pb
        .call(proto::Command {
            publish: Some(proto::PublishRequest {
                channel: "chat:pb".into(),
                data: Bytes::from_static(&[7, 0, 7]),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    assert!(reply.publish.is_some(), "{reply:?}");
    let (_, own) = pb.next_publication().await?;
    assert_eq!((own.data.as_ref(), own.offset), (&[7u8, 0, 7][..], 5));
    assert_eq!(own.info.map(|i| i.user), Some("pb-user".to_owned()));
    gw.shutdown().await
}

#[tokio::test]
async fn json_subscriber_gets_3506_for_a_binary_publication_and_json_reaches_both() -> Result<()> {
    let gw = TestGateway::start().await?;
    let api = gw.api();
    let (mut pb, _) = PbClient::connect(&gw, "pb").await?;
    pb.subscribe(proto::SubscribeRequest { channel: "chat:mix".into(), ..Default::default() }).await?;
    let (mut js, _) = gw.connect("js").await?;
    let sub = js.call(json!({ "subscribe": { "channel": "chat:mix" } })).await?;
    assert!(sub.get("subscribe").is_some(), "{sub}");

    api.result("publish", json!({ "channel": "chat:mix", "data": { "text": "hi" } })).await?;
    let push = loop {
        let push = js.next_push().await?;
        if push.get("pub").is_some() {
            break push;
        }
    };
    assert_eq!(push["pub"]["data"], json!({ "text": "hi" }));
    let (_, publication) = pb.next_publication().await?;
    assert_eq!(publication.data.as_ref(), br#"{"text":"hi"}"#);

    api.result("publish", json!({ "channel": "chat:mix", "b64data": b64(BINARY) })).await?;
    let (_, publication) = pb.next_publication().await?;
    assert_eq!(publication.data.as_ref(), BINARY);
    assert_eq!(js.expect_close().await?, (3506, "inappropriate protocol".to_owned()));

    // The Protobuf subscriber is unaffected.
    api.result("publish", json!({ "channel": "chat:mix", "data": [1, 2] })).await?;
    let (_, p) = pb.next_publication().await?;
    assert_eq!((p.data.as_ref(), p.offset), (&b"[1,2]"[..], 3));
    gw.shutdown().await
}

#[tokio::test]
async fn protobuf_ping_is_one_zero_byte_and_the_empty_command_is_its_pong() -> Result<()> {
    let mut config = test_config();
    config.client.ping_interval_secs = 2;
    config.client.pong_timeout_secs = 1;
    let gw = TestGateway::start_with(config).await?;
    let (mut pb, connect) = PbClient::connect(&gw, "pinged").await?;
    assert_eq!(connect.ping, 2);
    // Two pings, each answered with the empty command; a missed pong would
    // close with 3012 one second after the ping, before the second ping.
    for _ in 0..2 {
        let frame = tokio::time::timeout(WAIT, pb.ws.next()).await.context("no ping")?.context("closed")??;
        assert_eq!(frame, Message::binary(vec![0]), "a ping is the empty reply behind a zero length byte");
        pb.send_raw(vec![0]).await?;
    }
    let reply = pb.call(proto::Command { ping: Some(proto::PingRequest {}), ..Default::default() }).await?;
    assert!(reply.ping.is_some());
    gw.shutdown().await
}

#[tokio::test]
async fn wrong_frames_on_a_protobuf_connection_close_it() -> Result<()> {
    let gw = TestGateway::start().await?;
    // A text frame: the client speaks JSON on a Protobuf connection.
    let (mut pb, _) = PbClient::connect(&gw, "u").await?;
    pb.ws.send(Message::text(r#"{"id":2,"ping":{}}"#)).await?;
    assert_eq!(pb.expect_close().await?.0, 3506);
    // A truncated frame: a length prefix promising more than arrives.
    let (mut pb, _) = PbClient::connect(&gw, "u").await?;
    pb.send_raw(vec![10, 8, 2]).await?;
    assert_eq!(pb.expect_close().await?, (3501, "bad request".to_owned()));
    // Two requests in one command.
    let (mut pb, _) = PbClient::connect(&gw, "u").await?;
    let two = proto::Command {
        id: 9,
        ping: Some(proto::PingRequest {}),
        presence: Some(proto::PresenceRequest { channel: "chat:x".into() }),
        ..Default::default()
    };
    pb.send_raw(encode_delimited(&two).to_vec()).await?;
    assert_eq!(pb.expect_close().await?.0, 3501);
    gw.shutdown().await
}

#[tokio::test]
async fn json_client_recovering_a_binary_publication_is_closed_with_3506() -> Result<()> {
    let gw = TestGateway::start().await?;
    let api = gw.api();
    let first = api.result("publish", json!({ "channel": "chat:hist", "data": { "n": 1 } })).await?;
    api.result("publish", json!({ "channel": "chat:hist", "b64data": b64(BINARY) })).await?;
    let (mut js, _) = gw.connect("js").await?;
    let epoch = first["epoch"].as_str().context("epoch")?;
    js.send(json!({ "subscribe": { "channel": "chat:hist", "recover": true, "offset": 1, "epoch": epoch } })).await?;
    assert_eq!(js.expect_close().await?, (3506, "inappropriate protocol".to_owned()));
    // JSON recovery without binary publications still works.
    let (mut js, _) = gw.connect("js").await?;
    let reply = js
        .call(json!({ "subscribe": { "channel": "chat:hist", "recover": true, "offset": 2, "epoch": epoch } }))
        .await?;
    assert_eq!(reply["subscribe"]["recovered"], true, "{reply}");
    gw.shutdown().await
}
