//! Frames the JSON protocol refuses, and how the connection ends.

use serde_json::json;

use crate::*;

async fn close_code(ws: &mut WsClient) -> anyhow::Result<u16> {
    match ws.next_frame().await? {
        Frame::Close(code, _) => Ok(code),
        other => anyhow::bail!("expected a close, got {other:?}"),
    }
}

#[tokio::test]
async fn oversize_frame_closes_with_1009() -> anyhow::Result<()> {
    let mut config = test_config();
    config.client.max_frame_bytes = 1024;
    let gw = TestGateway::start_with(config).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    // Just under the limit is fine.
    let pad = "x".repeat(900);
    let reply = ws.call(json!({"ping": {}, "pad": pad})).await?;
    assert_eq!(reply["ping"], json!({}));
    let big = json!({"id": 9, "publish": {"channel": "chat:1", "data": {"pad": "x".repeat(2000)}}});
    ws.send_text(big.to_string()).await?;
    assert_eq!(close_code(&mut ws).await?, 1009);
    Ok(())
}

#[tokio::test]
async fn malformed_json_closes_with_3501() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.send_text("{not json").await?;
    assert_eq!(close_code(&mut ws).await?, 3501);
    Ok(())
}

#[tokio::test]
async fn two_methods_close_with_3501() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.send_text(r#"{"id":5,"ping":{},"presence":{"channel":"chat:1"}}"#).await?;
    assert_eq!(close_code(&mut ws).await?, 3501);
    Ok(())
}

#[tokio::test]
async fn binary_frame_closes_with_3506() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.send_binary(b"{\"id\":2,\"ping\":{}}".to_vec()).await?;
    match ws.next_frame().await? {
        Frame::Close(code, reason) => {
            assert_eq!(code, 3506);
            assert_eq!(reason, "inappropriate protocol");
        }
        other => panic!("expected close, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn command_before_connect_closes_with_3501() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let mut ws = gw.ws().await?;
    ws.send_text(r#"{"id":1,"subscribe":{"channel":"chat:1"}}"#).await?;
    assert_eq!(close_code(&mut ws).await?, 3501);
    Ok(())
}

#[tokio::test]
async fn second_connect_closes_with_3501() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.send(json!({"connect": {"token": user_token("alice")}})).await?;
    assert_eq!(close_code(&mut ws).await?, 3501);
    Ok(())
}

#[tokio::test]
async fn unknown_command_closes_with_3501() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.send_text(r#"{"id":77,"foo":{}}"#).await?;
    assert_eq!(ws.expect_close().await?, (3501, "bad request".to_owned()));
    Ok(())
}

#[tokio::test]
async fn batched_commands_in_one_frame_get_replies_in_order() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let mut ws = gw.ws().await?;
    let frame = format!(
        "{}\n{}\n{}",
        json!({"id": 1, "connect": {"token": user_token("alice")}}),
        json!({"id": 2, "subscribe": {"channel": "plain"}}),
        json!({"id": 3, "ping": {}})
    );
    ws.send_text(frame).await?;
    let mut ids = Vec::new();
    while ids.len() < 3 {
        match ws.next_frame().await? {
            Frame::Json(v) => {
                assert!(v.get("error").is_none(), "{v}");
                ids.push(v["id"].as_u64().unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ids, vec![1, 2, 3]);
    Ok(())
}
