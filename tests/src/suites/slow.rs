//! Slow consumers: a client that stops reading is closed with 3008 while
//! the others on the channel keep receiving everything.

use serde_json::json;

use crate::*;

#[tokio::test]
async fn non_reading_client_is_closed_with_3008() -> anyhow::Result<()> {
    let mut config = test_config();
    config.client.queue_max_bytes = 4096;
    config.client.write_batch_max_bytes = 4096;
    let gw = TestGateway::start_with(config).await?;

    // The slow client asks for a tiny kernel receive buffer so that the
    // server's socket backs up after little data.
    let mut slow = WsClient::open_with_recv_buffer(&gw.ws_url(), gw.addr, 4096).await?;
    assert!(slow.connect_token(&user_token("slow")).await?.get("connect").is_some());
    assert!(slow.call(json!({"subscribe": {"channel": "chat:slow"}})).await?.get("subscribe").is_some());
    let (mut reader, _) = gw.connect("reader").await?;
    reader.call(json!({"subscribe": {"channel": "chat:slow"}})).await?;
    assert_eq!(reader.next_push().await?["join"]["info"]["user"], json!("reader"));

    let pad = "x".repeat(1500);
    let api = gw.api();
    let mut published = 0u64;
    let mut slow_gone = false;
    // Bounded: publish until the server has dropped the slow subscriber.
    while published < 20_000 {
        published += 1;
        let res = api.result("publish", json!({"channel": "chat:slow", "data": {"n": published, "pad": pad}})).await?;
        assert_eq!(res["offset"], json!(published));
        // The reader keeps up: each publication arrives before the next.
        // The slow client's removal shows up as its leave push.
        let push = loop {
            let push = reader.next_push().await?;
            if push.get("leave").is_some() {
                assert_eq!(push["leave"]["info"]["user"], json!("slow"));
                slow_gone = true;
                continue;
            }
            break push;
        };
        assert_eq!(push["pub"]["offset"], json!(published), "reader missed or reordered");
        assert_eq!(push["pub"]["data"]["n"], json!(published));
        if slow_gone {
            break;
        }
    }
    assert!(slow_gone, "slow client still subscribed after {published} publications");
    let channels = api.result("channels", json!({"pattern": "chat:slow"})).await?;
    assert_eq!(channels["channels"]["chat:slow"]["num_clients"], json!(1), "{channels}");

    // The slow client sees a gap-free prefix (its join and leave pushes
    // aside), then 3008.
    let mut next = 1u64;
    let close = loop {
        match slow.next_frame().await? {
            Frame::Json(v) => {
                let push = &v["push"];
                if let Some(p) = push.get("pub") {
                    assert_eq!(p["offset"], json!(next), "slow client got a gap");
                    next += 1;
                }
            }
            Frame::Close(code, reason) => break (code, reason),
        }
    };
    assert_eq!(close, (3008, "slow".to_owned()));
    assert!(next - 1 < published, "slow client cannot have everything: got {} of {published}", next - 1);

    // The reader is still connected and subscribed.
    let reply = reader.call(json!({"ping": {}})).await?;
    assert_eq!(reply["ping"], json!({}));
    Ok(())
}
