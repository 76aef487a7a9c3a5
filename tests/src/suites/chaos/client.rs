//! One chaos subscriber's connection, over any of the three transport
//! families the gateway speaks to browsers: WebSocket, SSE with commands
//! over `/emulation` (bidirectional emulation), and long-polling (commands
//! over `/emulation` too). Each hands the subscriber the same JSON replies
//! and pushes, so the workload and the checker do not care which it is.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::{Frame, HttpStream, WAIT, WsClient, emulate, http_request, url_encode, user_token};

/// How a subscriber talks to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    /// `GET /connection/sse` down, `POST /emulation` up.
    Sse,
    /// `POST /connection/long_poll` down, `POST /emulation` up.
    LongPoll,
}

impl Transport {
    pub const ALL: [Self; 3] = [Self::WebSocket, Self::Sse, Self::LongPoll];
}

/// What reading a connection gave.
#[derive(Debug)]
pub enum Incoming {
    /// A reply or a push.
    Message(Value),
    /// The server ended the connection, with a close code or a disconnect
    /// push's code when there was one.
    Closed(Option<u16>),
    /// Nothing arrived for a while (a held poll came back empty, a read
    /// waited [`WAIT`]): the caller may look at its faults and read again.
    Quiet,
}

/// A connected client (its `connect` succeeded).
pub struct Conn {
    addr: SocketAddr,
    kind: Kind,
    /// Messages read (SSE, long-poll) but not yet handed out.
    pending: VecDeque<Value>,
    next_id: u32,
}

enum Kind {
    Ws(Box<WsClient>),
    Sse { stream: Box<HttpStream>, session: String, node: String },
    LongPoll { session: String, node: String, seq: u64 },
}

impl Conn {
    /// Connects as `user` and completes `connect`.
    pub async fn open(transport: Transport, addr: SocketAddr, user: &str) -> Result<Self> {
        let connect = json!({ "id": 1, "connect": { "token": user_token(user) } });
        let mut pending = VecDeque::new();
        let kind = match transport {
            Transport::WebSocket => {
                let mut ws = WsClient::open(&format!("ws://{addr}/connection/websocket"), None).await?;
                let reply = ws.call(json!({ "connect": connect["connect"] })).await?;
                ensure!(reply.get("error").is_none(), "connect failed: {reply}");
                Kind::Ws(Box::new(ws))
            }
            Transport::Sse => {
                let path = format!("/connection/sse?cf_connect={}", url_encode(&connect.to_string()));
                let mut stream = HttpStream::open(addr, "GET", &path, &[], "").await?;
                ensure!(stream.status == 200, "sse answered {}", stream.status);
                let reply = loop {
                    let event = stream.next_event().await?.context("sse ended before the connect reply")?;
                    if event.data != json!({}) {
                        break event.data;
                    }
                };
                let (session, node) = session_of(&reply)?;
                Kind::Sse { stream: Box::new(stream), session, node }
            }
            Transport::LongPoll => {
                let resp = http_request(addr, "POST", "/connection/long_poll", &[], &connect.to_string()).await?;
                ensure!(resp.status == 200, "long_poll answered {}: {}", resp.status, resp.body);
                let mut messages = resp.body["messages"].as_array().cloned().unwrap_or_default().into_iter();
                let reply = messages.next().context("no connect reply")?;
                pending.extend(messages);
                let (session, node) = session_of(&reply)?;
                let seq = resp.body["seq"].as_u64().context("seq")?;
                Kind::LongPoll { session, node, seq }
            }
        };
        Ok(Self { addr, kind, pending, next_id: 2 })
    }

    /// Sends `command` and waits for its reply; pushes read meanwhile are
    /// kept, in order, for [`next`](Self::next).
    pub async fn call(&mut self, mut command: Value) -> Result<Value> {
        if let Kind::Ws(ws) = &mut self.kind {
            return ws.call(command).await;
        }
        let id = self.next_id;
        self.next_id += 1;
        command["id"] = json!(id);
        self.emulate(&command).await?;
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut skipped = Vec::new();
        let reply = loop {
            match self.next_raw().await? {
                Incoming::Message(v) if v["id"] == json!(id) => break v,
                Incoming::Message(v) => skipped.push(v),
                Incoming::Closed(code) => bail!("closed ({code:?}) while waiting for reply {id}"),
                Incoming::Quiet => ensure!(tokio::time::Instant::now() < deadline, "no reply {id} within {WAIT:?}"),
            }
        };
        for v in skipped.into_iter().rev() {
            self.pending.push_front(v);
        }
        Ok(reply)
    }

    /// The next reply or push. Pings are answered and skipped; a disconnect
    /// push ends the connection.
    pub async fn next(&mut self) -> Result<Incoming> {
        let incoming = self.next_raw().await?;
        if let Incoming::Message(v) = &incoming
            && let Some(disconnect) = v.get("push").and_then(|p| p.get("disconnect"))
        {
            return Ok(Incoming::Closed(disconnect["code"].as_u64().and_then(|c| u16::try_from(c).ok())));
        }
        Ok(incoming)
    }

    async fn next_raw(&mut self) -> Result<Incoming> {
        loop {
            if let Some(v) = self.pending.pop_front() {
                return Ok(Incoming::Message(v));
            }
            match &mut self.kind {
                Kind::Ws(ws) => {
                    // Not wrapped in a shorter timeout: cancelling next_frame
                    // while it answers a ping could drop the rest of a batch.
                    return match ws.next_frame().await {
                        Ok(Frame::Json(v)) => Ok(Incoming::Message(v)),
                        Ok(Frame::Close(code, _)) => Ok(Incoming::Closed(Some(code))),
                        Err(e) if e.to_string().contains("timed out waiting for a frame") => Ok(Incoming::Quiet),
                        Err(e) => Err(e),
                    };
                }
                Kind::Sse { stream, .. } => match stream.next_event().await {
                    // The gateway asks emulation clients to pong: `{}` up.
                    Ok(Some(event)) if event.data == json!({}) => self.emulate(&json!({})).await?,
                    Ok(Some(event)) => return Ok(Incoming::Message(event.data)),
                    Ok(None) => return Ok(Incoming::Closed(None)),
                    Err(e) if e.to_string().contains("timed out reading the stream") => return Ok(Incoming::Quiet),
                    Err(e) => return Err(e),
                },
                Kind::LongPoll { session, node, seq } => {
                    let body = json!({ "session": session, "node": node, "seq": seq }).to_string();
                    let resp = http_request(self.addr, "POST", "/connection/long_poll", &[], &body).await?;
                    if resp.status != 200 {
                        // 404: the session ended (expired, or its last batch
                        // with the disconnect was taken).
                        return Ok(Incoming::Closed(None));
                    }
                    *seq = resp.body["seq"].as_u64().context("seq")?;
                    let messages = resp.body["messages"].as_array().cloned().unwrap_or_default();
                    if messages.is_empty() {
                        return Ok(Incoming::Quiet);
                    }
                    self.pending.extend(messages);
                }
            }
        }
    }

    /// Posts one command to `/emulation` for this SSE or long-poll session.
    async fn emulate(&self, command: &Value) -> Result<()> {
        let (Kind::Sse { session, node, .. } | Kind::LongPoll { session, node, .. }) = &self.kind else {
            bail!("a WebSocket sends its commands itself");
        };
        let status = emulate(self.addr, session, node, std::slice::from_ref(command)).await?;
        ensure!(status == 204, "/emulation answered {status}");
        Ok(())
    }
}

fn session_of(reply: &Value) -> Result<(String, String)> {
    let connect = reply.get("connect").with_context(|| format!("connect failed: {reply}"))?;
    let session = connect["session"].as_str().context("session")?.to_owned();
    let node = connect["node"].as_str().context("node")?.to_owned();
    Ok((session, node))
}

/// How long a slow subscriber takes per message.
pub const SLOW_READ: Duration = Duration::from_millis(30);
