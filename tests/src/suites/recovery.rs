//! Recovery on resubscribe: all or nothing.

use serde_json::{Value, json};

use crate::*;

/// Connects `user`, subscribes to `channel` and returns the socket and the
/// subscribe result (its own join push consumed).
async fn subscribed(gw: &TestGateway, user: &str, sub: Value) -> anyhow::Result<(WsClient, Value)> {
    let (mut ws, _) = gw.connect(user).await?;
    let reply = ws.call(json!({ "subscribe": sub })).await?;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    let join = ws.next_push().await?;
    assert!(join.get("join").is_some(), "{join}");
    Ok((ws, reply["subscribe"].clone()))
}

async fn publish(gw: &TestGateway, channel: &str, n: u64) -> anyhow::Result<Value> {
    gw.api().result("publish", json!({"channel": channel, "data": {"n": n}})).await
}

#[tokio::test]
async fn recovers_missed_publications_in_order() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (ws, first) = subscribed(&gw, "alice", json!({"channel": "chat:r"})).await?;
    publish(&gw, "chat:r", 1).await?;
    let epoch = first["epoch"].clone();
    drop(ws);
    for n in 2..=4 {
        publish(&gw, "chat:r", n).await?;
    }
    let (mut ws, sub) = subscribed(
        &gw,
        "alice",
        json!({"channel": "chat:r", "recover": true, "offset": 1, "epoch": epoch, "recoverable": true}),
    )
    .await?;
    assert_eq!(sub["recovered"], json!(true), "{sub}");
    assert_eq!(sub["was_recovering"], json!(true), "{sub}");
    assert_eq!(sub["epoch"], epoch);
    assert_eq!(sub["offset"], json!(4));
    let pubs = publications(&sub);
    assert_eq!(offsets(&pubs), vec![2, 3, 4], "{sub}");
    let data: Vec<Value> = pubs.iter().map(|p| p["data"].clone()).collect();
    assert_eq!(data, vec![json!({"n": 2}), json!({"n": 3}), json!({"n": 4})]);
    // Live publications continue right after the recovered ones.
    publish(&gw, "chat:r", 5).await?;
    let push = ws.next_push().await?;
    assert_eq!(push["pub"]["offset"], json!(5), "{push}");
    Ok(())
}

#[tokio::test]
async fn nothing_missed_recovers_empty() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    publish(&gw, "chat:r", 1).await?;
    let (_ws, first) = subscribed(&gw, "alice", json!({"channel": "chat:r"})).await?;
    let (_ws2, sub) =
        subscribed(&gw, "alice", json!({"channel": "chat:r", "recover": true, "offset": 1, "epoch": first["epoch"]}))
            .await?;
    assert_eq!(sub["recovered"], json!(true), "{sub}");
    assert!(publications(&sub).is_empty(), "{sub}");
    Ok(())
}

#[tokio::test]
async fn epoch_mismatch_is_not_recovered() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    for n in 1..=3 {
        publish(&gw, "chat:r", n).await?;
    }
    let (_ws, sub) =
        subscribed(&gw, "alice", json!({"channel": "chat:r", "recover": true, "offset": 1, "epoch": "not-the-epoch"}))
            .await?;
    assert_ne!(sub["recovered"], json!(true), "{sub}");
    assert_eq!(sub["was_recovering"], json!(true), "{sub}");
    assert!(publications(&sub).is_empty(), "{sub}");
    assert_eq!(sub["offset"], json!(3), "current position still reported: {sub}");
    Ok(())
}

#[tokio::test]
async fn gap_over_limit_is_not_recovered() -> anyhow::Result<()> {
    let mut config = test_config();
    config.client.recovery_max_publication_limit = 2;
    let gw = TestGateway::start_with(config).await?;
    let first = publish(&gw, "chat:r", 1).await?;
    let epoch = first["epoch"].clone();
    for n in 2..=4 {
        publish(&gw, "chat:r", n).await?;
    }
    // Gap of 3 > 2: nothing, never a partial list.
    let (_ws, sub) =
        subscribed(&gw, "alice", json!({"channel": "chat:r", "recover": true, "offset": 1, "epoch": epoch})).await?;
    assert_ne!(sub["recovered"], json!(true), "{sub}");
    assert_eq!(sub["was_recovering"], json!(true), "{sub}");
    assert!(publications(&sub).is_empty(), "{sub}");
    // Gap of exactly 2 is within the limit.
    let (_ws2, sub) =
        subscribed(&gw, "bob", json!({"channel": "chat:r", "recover": true, "offset": 2, "epoch": epoch})).await?;
    assert_eq!(sub["recovered"], json!(true), "{sub}");
    assert_eq!(offsets(&publications(&sub)), vec![3, 4], "{sub}");
    Ok(())
}

#[tokio::test]
async fn no_recovery_after_history_remove_or_from_the_future() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let first = publish(&gw, "chat:r", 1).await?;
    let epoch = first["epoch"].clone();
    publish(&gw, "chat:r", 2).await?;
    let (_ws, sub) =
        subscribed(&gw, "alice", json!({"channel": "chat:r", "recover": true, "offset": 9, "epoch": epoch})).await?;
    assert_ne!(sub["recovered"], json!(true), "offset past the top: {sub}");
    assert!(publications(&sub).is_empty(), "{sub}");

    gw.api().result("history_remove", json!({"channel": "chat:r"})).await?;
    let (_ws2, sub) =
        subscribed(&gw, "bob", json!({"channel": "chat:r", "recover": true, "offset": 1, "epoch": epoch})).await?;
    assert_ne!(sub["recovered"], json!(true), "publication 2 is gone: {sub}");
    assert!(publications(&sub).is_empty(), "{sub}");
    assert_eq!(sub["offset"], json!(2));
    assert_eq!(sub["epoch"], epoch);
    Ok(())
}

#[tokio::test]
async fn no_recovery_past_history_size() -> anyhow::Result<()> {
    let mut config = test_config();
    config.channels.namespaces[0].history_size = 3;
    let gw = TestGateway::start_with(config).await?;
    let first = publish(&gw, "chat:r", 1).await?;
    let epoch = first["epoch"].clone();
    for n in 2..=5 {
        publish(&gw, "chat:r", n).await?;
    }
    // Kept: 3..=5. From 1 needs 2, which was evicted.
    let (_ws, sub) =
        subscribed(&gw, "alice", json!({"channel": "chat:r", "recover": true, "offset": 1, "epoch": epoch})).await?;
    assert_ne!(sub["recovered"], json!(true), "{sub}");
    assert!(publications(&sub).is_empty(), "{sub}");
    // From 2 everything missed is still there.
    let (_ws2, sub) =
        subscribed(&gw, "bob", json!({"channel": "chat:r", "recover": true, "offset": 2, "epoch": epoch})).await?;
    assert_eq!(sub["recovered"], json!(true), "{sub}");
    assert_eq!(offsets(&publications(&sub)), vec![3, 4, 5]);
    Ok(())
}
