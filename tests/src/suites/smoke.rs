use serde_json::json;

use crate::*;

#[tokio::test]
async fn connect_subscribe_publish_receive() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, connect) = gw.connect("alice").await?;
    assert_eq!(connect["pong"], json!(true));
    assert_eq!(connect["ping"], json!(25));
    let sub = ws.call(json!({"subscribe": {"channel": "chat:1"}})).await?;
    assert_eq!(sub["subscribe"]["recoverable"], json!(true), "{sub}");
    let res = gw.api().result("publish", json!({"channel": "chat:1", "data": {"text": "hi"}})).await?;
    assert_eq!(res["offset"], json!(1));
    let join = ws.next_push().await?;
    assert_eq!(join["join"]["info"]["user"], json!("alice"), "{join}");
    let push = ws.next_push().await?;
    assert_eq!(push["channel"], json!("chat:1"));
    assert_eq!(push["pub"]["data"], json!({"text": "hi"}));
    assert_eq!(push["pub"]["offset"], json!(1));
    gw.shutdown().await?;
    Ok(())
}
