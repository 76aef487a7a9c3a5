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

/// Server-side subscriptions recover inside the connect reply. A reply larger
/// than the connection's whole queue (`client.queue_max_bytes`) used to be
/// queued anyway and close the connection with 3008 at the next push, on
/// every reconnect. Now the largest recoveries are given up (the explicit
/// gap signal, as for a client-side subscribe) until the reply fits.
#[tokio::test]
async fn a_connect_reply_too_large_for_the_queue_gives_up_the_largest_recovery() -> anyhow::Result<()> {
    let mut config = test_config();
    config.client.queue_max_bytes = 8192;
    config.client.write_batch_max_bytes = 8192;
    let gw = TestGateway::start_with(config).await?;
    let claims = json!({"sub": "bob", "exp": now_secs() + 3600, "channels": ["chat:big", "chat:small"]});
    let mut ws = gw.ws().await?;
    let reply = ws.call(json!({"connect": {"token": token(SECRET, claims.clone())}})).await?;
    let epoch = |channel: &str| reply["connect"]["subs"][channel]["epoch"].as_str().map(str::to_owned);
    let (big_epoch, small_epoch) = (epoch("chat:big").expect("epoch"), epoch("chat:small").expect("epoch"));
    drop(ws);

    // Missed while away: 3 small publications (fit), 60 of ~200 bytes (~12
    // KiB, more than the 8 KiB queue on their own).
    let api = gw.api();
    for n in 1..=3 {
        api.result("publish", json!({"channel": "chat:small", "data": {"n": n}})).await?;
    }
    let pad = "x".repeat(180);
    for n in 1..=60 {
        api.result("publish", json!({"channel": "chat:big", "data": {"n": n, "pad": pad}})).await?;
    }

    let mut ws = gw.ws().await?;
    let subs = json!({
        "chat:big": {"recover": true, "offset": 0, "epoch": big_epoch},
        "chat:small": {"recover": true, "offset": 0, "epoch": small_epoch},
    });
    let reply = ws.call(json!({"connect": {"token": token(SECRET, claims), "subs": subs}})).await?;
    let small = &reply["connect"]["subs"]["chat:small"];
    assert_eq!(small["recovered"], json!(true), "{reply}");
    assert_eq!(offsets(&publications(small)), [1, 2, 3], "{reply}");
    let big = &reply["connect"]["subs"]["chat:big"];
    // `recovered: false` is left out, as proto3 JSON leaves out defaults.
    assert_eq!(big.get("recovered"), None, "{reply}");
    assert_eq!(big["was_recovering"], json!(true), "{reply}");
    assert_eq!(big["offset"], json!(60), "{reply}");
    assert!(publications(big).is_empty(), "{reply}");

    // The connection stays open and receives what comes next.
    api.result("publish", json!({"channel": "chat:big", "data": {"n": 61}})).await?;
    let mut push = ws.next_push().await?;
    while push.get("join").is_some() {
        push = ws.next_push().await?;
    }
    assert_eq!(push["pub"]["data"]["n"], json!(61), "{push}");
    assert_eq!(push["pub"]["offset"], json!(61), "{push}");
    Ok(())
}
