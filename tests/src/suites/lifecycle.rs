//! Process-level behaviour: connection limit and graceful shutdown.

use serde_json::json;

use crate::*;

#[tokio::test]
async fn connection_over_limit_closes_with_3504() -> anyhow::Result<()> {
    let mut config = test_config();
    config.server.max_connections = 1;
    let gw = TestGateway::start_with(config).await?;
    let (mut first, _) = gw.connect("alice").await?;
    let mut second = gw.ws().await?;
    assert_eq!(second.expect_close().await?, (3504, "connection limit".to_owned()));
    let reply = first.call(json!({"ping": {}})).await?;
    assert_eq!(reply["ping"], json!({}), "the first connection is unaffected");
    Ok(())
}

#[tokio::test]
async fn shutdown_closes_clients_with_3001() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut a, _) = gw.connect("alice").await?;
    let (mut b, _) = gw.connect("bob").await?;
    a.call(json!({"subscribe": {"channel": "chat:1"}})).await?;
    let shutdown = tokio::spawn(gw.shutdown());
    assert_eq!(a.expect_close().await?, (3001, "shutdown".to_owned()));
    assert_eq!(b.expect_close().await?, (3001, "shutdown".to_owned()));
    // Dropping the sockets ends the close handshake, so run returns
    // without waiting out the grace period.
    drop((a, b));
    tokio::time::timeout(WAIT, shutdown).await???;
    Ok(())
}

#[tokio::test]
async fn command_rate_limit_gives_111_then_3013() -> anyhow::Result<()> {
    let mut config = test_config();
    config.client.max_commands_per_sec = 3;
    let gw = TestGateway::start_with(config).await?;
    let mut ws = gw.ws().await?;
    // One frame, so all commands land in the same one-second window.
    let frame: Vec<String> = std::iter::once(json!({"id": 1, "connect": {"token": user_token("alice")}}))
        .chain((2..=4).map(|id| json!({"id": id, "ping": {}})))
        .map(|c| c.to_string())
        .collect();
    ws.send_text(frame.join("\n")).await?;
    let mut replies = Vec::new();
    while replies.len() < 4 {
        match ws.next_frame().await? {
            Frame::Json(v) => replies.push(v),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(replies[0].get("connect").is_some(), "{replies:?}");
    assert_eq!(replies[1], json!({"id": 2, "ping": {}}));
    assert_eq!(replies[2], json!({"id": 3, "ping": {}}));
    assert_eq!(replies[3]["id"], json!(4));
    assert_eq!(replies[3]["error"]["code"], json!(111), "{replies:?}");
    assert_eq!(replies[3]["error"]["temporary"], json!(true), "{replies:?}");
    // Past twice the limit within the window: disconnected.
    let more: Vec<String> = (5..=8).map(|id| json!({"id": id, "ping": {}}).to_string()).collect();
    ws.send_text(more.join("\n")).await?;
    assert_eq!(ws.expect_close().await?.0, 3013);
    Ok(())
}

#[tokio::test]
async fn shutdown_completes_with_a_client_that_never_reads() -> anyhow::Result<()> {
    let mut config = test_config();
    config.server.shutdown_grace_secs = 1;
    let gw = TestGateway::start_with(config).await?;
    let mut stuck = WsClient::open_with_recv_buffer(&gw.ws_url(), gw.addr, 4096).await?;
    stuck.connect_token(&user_token("stuck")).await?;
    stuck.call(json!({"subscribe": {"channel": "chat:big"}})).await?;
    // Back the server's socket up (the queue budget is the default 1 MiB).
    let pad = "x".repeat(16 * 1024);
    for n in 0..64 {
        gw.api().result("publish", json!({"channel": "chat:big", "data": {"n": n, "pad": pad}})).await?;
    }
    let (mut other, _) = gw.connect("other").await?;
    let shutdown = tokio::spawn(gw.shutdown());
    assert_eq!(other.expect_close().await?, (3001, "shutdown".to_owned()));
    drop(other);
    // `run` returns (after at most the grace period) although `stuck` never reads.
    tokio::time::timeout(WAIT, shutdown).await???;
    drop(stuck);
    Ok(())
}
