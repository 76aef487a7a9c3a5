//! Server-side subscriptions from the connection token's `channels` claim.

use serde_json::json;

use crate::*;

#[tokio::test]
async fn token_channels_subscribe_at_connect_and_recover_on_reconnect() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let claims = json!({"sub": "bob", "exp": now_secs() + 3600, "channels": ["chat:srv", "nope:x"]});
    let mut ws = gw.ws().await?;
    let reply = ws.call(json!({"connect": {"token": token(SECRET, claims.clone())}})).await?;
    let subs = &reply["connect"]["subs"];
    assert_eq!(subs["chat:srv"]["recoverable"], json!(true), "{reply}");
    assert!(subs.get("nope:x").is_none(), "unknown namespaces are skipped: {reply}");
    let epoch = subs["chat:srv"]["epoch"].as_str().unwrap().to_owned();

    gw.api().result("publish", json!({"channel": "chat:srv", "data": {"n": 1}})).await?;
    let mut push = ws.next_push().await?;
    if push.get("join").is_some() {
        push = ws.next_push().await?;
    }
    assert_eq!(push["channel"], json!("chat:srv"));
    assert_eq!(push["pub"]["data"], json!({"n": 1}));
    assert_eq!(push["pub"]["offset"], json!(1));
    drop(ws);

    // Missed while away: recovered through the connect request's `subs`.
    gw.api().result("publish", json!({"channel": "chat:srv", "data": {"n": 2}})).await?;
    gw.api().result("publish", json!({"channel": "chat:srv", "data": {"n": 3}})).await?;
    let mut ws = gw.ws().await?;
    let connect = json!({"connect": {"token": token(SECRET, claims), "subs": {"chat:srv": {"recover": true, "offset": 1, "epoch": epoch}}}});
    let reply = ws.call(connect).await?;
    let sub = &reply["connect"]["subs"]["chat:srv"];
    assert_eq!(sub["recovered"], json!(true), "{reply}");
    assert_eq!(sub["was_recovering"], json!(true));
    let data: Vec<_> = sub["publications"].as_array().unwrap().iter().map(|p| p["data"]["n"].clone()).collect();
    assert_eq!(data, [json!(2), json!(3)]);
    Ok(())
}
