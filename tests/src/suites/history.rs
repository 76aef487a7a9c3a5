//! History over the client protocol and the server API.

use serde_json::{Value, json};

use crate::*;

/// Publishes `n` messages `{"n": i}` (i from 1) to `channel`; returns the epoch.
async fn publish_n(gw: &TestGateway, channel: &str, n: u64) -> anyhow::Result<String> {
    let mut epoch = String::new();
    for i in 1..=n {
        let res = gw.api().result("publish", json!({"channel": channel, "data": {"n": i}})).await?;
        assert_eq!(res["offset"], json!(i));
        epoch = res["epoch"].as_str().expect("epoch").to_owned();
    }
    Ok(epoch)
}

fn data_ns(pubs: &[Value]) -> Vec<u64> {
    pubs.iter().map(|p| p["data"]["n"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn client_history_limit_since_reverse() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let epoch = publish_n(&gw, "chat:h", 5).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.call(json!({"subscribe": {"channel": "chat:h"}})).await?;

    let h = ws.call(json!({"history": {"channel": "chat:h", "limit": 2}})).await?;
    let h = &h["history"];
    assert_eq!(offsets(&publications(h)), vec![1, 2], "{h}");
    assert_eq!(data_ns(&publications(h)), vec![1, 2]);
    assert_eq!(h["offset"], json!(5));
    assert_eq!(h["epoch"], json!(epoch));

    let h =
        ws.call(json!({"history": {"channel": "chat:h", "limit": 10, "since": {"offset": 2, "epoch": epoch}}})).await?;
    assert_eq!(offsets(&publications(&h["history"])), vec![3, 4, 5], "{h}");

    let h = ws.call(json!({"history": {"channel": "chat:h", "limit": 2, "reverse": true}})).await?;
    assert_eq!(offsets(&publications(&h["history"])), vec![5, 4], "{h}");

    let h = ws.call(json!({"history": {"channel": "chat:h", "limit": -1}})).await?;
    assert_eq!(offsets(&publications(&h["history"])), vec![1, 2, 3, 4, 5], "{h}");

    let h = ws.call(json!({"history": {"channel": "chat:h", "limit": 0}})).await?;
    assert!(publications(&h["history"]).is_empty(), "{h}");
    assert_eq!(h["history"]["offset"], json!(5));
    assert_eq!(h["history"]["epoch"], json!(epoch));

    let h = ws
        .call(json!({"history": {"channel": "chat:h", "limit": 10, "since": {"offset": 2, "epoch": "wrong"}}}))
        .await?;
    assert_eq!(h["error"]["code"], json!(112), "{h}");
    Ok(())
}

#[tokio::test]
async fn client_history_needs_subscription_and_history() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let h = ws.call(json!({"history": {"channel": "chat:h", "limit": 1}})).await?;
    assert_eq!(h["error"]["code"], json!(103), "{h}");
    // A channel without a namespace has no history permission.
    ws.call(json!({"subscribe": {"channel": "plain"}})).await?;
    let h = ws.call(json!({"history": {"channel": "plain", "limit": 1}})).await?;
    assert_eq!(h["error"]["code"], json!(103), "{h}");
    Ok(())
}

#[tokio::test]
async fn api_history() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let epoch = publish_n(&gw, "chat:h", 4).await?;
    let api = gw.api();

    let h = api.result("history", json!({"channel": "chat:h", "limit": -1})).await?;
    assert_eq!(offsets(&publications(&h)), vec![1, 2, 3, 4], "{h}");
    assert_eq!(data_ns(&publications(&h)), vec![1, 2, 3, 4]);
    assert_eq!(h["offset"], json!(4));
    assert_eq!(h["epoch"], json!(epoch));

    let h = api.result("history", json!({"channel": "chat:h"})).await?;
    assert!(publications(&h).is_empty(), "no limit means position only: {h}");
    assert_eq!(h["offset"], json!(4));

    let h = api.result("history", json!({"channel": "chat:h", "limit": 2, "reverse": true})).await?;
    assert_eq!(offsets(&publications(&h)), vec![4, 3], "{h}");

    let h = api
        .result("history", json!({"channel": "chat:h", "limit": -1, "since": {"offset": 3, "epoch": epoch}}))
        .await?;
    assert_eq!(offsets(&publications(&h)), vec![4], "{h}");

    let body =
        api.call("history", json!({"channel": "chat:h", "limit": -1, "since": {"offset": 3, "epoch": "x"}})).await?;
    assert_eq!(body["error"]["code"], json!(112), "{body}");
    Ok(())
}
