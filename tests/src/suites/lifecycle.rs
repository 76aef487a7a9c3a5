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
