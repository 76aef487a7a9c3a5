//! Connection timers: ping/pong, connect timeout, token expiry and refresh.

use serde_json::json;

use crate::*;

fn ping_config() -> switchboard::config::Config {
    let mut config = test_config();
    config.client.ping_interval_secs = 2;
    config.client.pong_timeout_secs = 1;
    config
}

/// Waits for the next server ping (`{}`) with auto-pong off; fails on any
/// other frame.
async fn expect_ping(ws: &mut WsClient) -> anyhow::Result<()> {
    match ws.next_frame().await? {
        Frame::Json(v) if v == json!({}) => Ok(()),
        other => anyhow::bail!("expected a ping, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_pong_closes_with_3012() -> anyhow::Result<()> {
    let gw = TestGateway::start_with(ping_config()).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.auto_pong = false;
    expect_ping(&mut ws).await?;
    // No pong: the next thing is the close.
    match ws.next_frame().await? {
        Frame::Close(code, reason) => {
            assert_eq!(code, 3012);
            assert_eq!(reason, "no pong");
        }
        other => panic!("expected close 3012, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn pongs_keep_the_connection_alive() -> anyhow::Result<()> {
    let gw = TestGateway::start_with(ping_config()).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.auto_pong = false;
    // Three ping rounds (6s) answered by hand: well past one pong timeout.
    for _ in 0..3 {
        expect_ping(&mut ws).await?;
        ws.send_text("{}").await?;
    }
    let reply = ws.call(json!({"ping": {}})).await?;
    assert_eq!(reply["ping"], json!({}));
    Ok(())
}

#[tokio::test]
async fn no_connect_closes_with_3502() -> anyhow::Result<()> {
    let mut config = test_config();
    config.client.connect_timeout_secs = 1;
    let gw = TestGateway::start_with(config).await?;
    let mut ws = gw.ws().await?;
    match ws.next_frame().await? {
        Frame::Close(code, reason) => {
            assert_eq!(code, 3502);
            assert_eq!(reason, "stale");
        }
        other => panic!("expected close 3502, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn connect_in_time_is_not_stale() -> anyhow::Result<()> {
    let mut config = ping_config();
    config.client.connect_timeout_secs = 1;
    let gw = TestGateway::start_with(config).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.auto_pong = false;
    // A ping 2s later proves the 1s connect timeout did not fire.
    expect_ping(&mut ws).await?;
    ws.send_text("{}").await?;
    let reply = ws.call(json!({"ping": {}})).await?;
    assert_eq!(reply["ping"], json!({}));
    Ok(())
}

fn expiring_token(user: &str, secs: u64) -> String {
    token(SECRET, json!({"sub": user, "exp": now_secs() + secs}))
}

fn expiry_config() -> switchboard::config::Config {
    let mut config = test_config();
    config.client.expired_close_delay_secs = 1;
    config
}

#[tokio::test]
async fn expired_connection_closes_with_3005() -> anyhow::Result<()> {
    let gw = TestGateway::start_with(expiry_config()).await?;
    let mut ws = gw.ws().await?;
    let reply = ws.connect_token(&expiring_token("alice", 2)).await?;
    let connect = &reply["connect"];
    assert_eq!(connect["expires"], json!(true), "{reply}");
    let ttl = connect["ttl"].as_u64().expect("ttl");
    assert!((1..=2).contains(&ttl), "{reply}");
    match ws.next_frame().await? {
        Frame::Close(code, reason) => {
            assert_eq!(code, 3005);
            assert_eq!(reason, "connection expired");
        }
        other => panic!("expected close 3005, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn refresh_extends_the_connection() -> anyhow::Result<()> {
    let mut config = expiry_config();
    config.client.ping_interval_secs = 2;
    config.client.pong_timeout_secs = 1;
    let gw = TestGateway::start_with(config).await?;
    let mut ws = gw.ws().await?;
    ws.auto_pong = false;
    let reply = ws.connect_token(&expiring_token("alice", 2)).await?;
    let client = reply["connect"]["client"].clone();

    let refresh = ws.call(json!({"refresh": {"token": expiring_token("alice", 3600)}})).await?;
    let refresh = &refresh["refresh"];
    assert_eq!(refresh["client"], client, "{refresh}");
    assert_eq!(refresh["version"], reply["connect"]["version"]);
    assert_eq!(refresh["expires"], json!(true));
    let ttl = refresh["ttl"].as_u64().expect("ttl");
    assert!((3590..=3600).contains(&ttl), "{refresh}");

    // The old deadline (about 3s) passes during two ping rounds (4s).
    for _ in 0..2 {
        expect_ping(&mut ws).await?;
        ws.send_text("{}").await?;
    }
    let reply = ws.call(json!({"ping": {}})).await?;
    assert_eq!(reply["ping"], json!({}));
    Ok(())
}

#[tokio::test]
async fn refresh_with_another_users_token_is_rejected() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.send(json!({"refresh": {"token": user_token("mallory")}})).await?;
    assert_eq!(ws.expect_close().await?.0, 3500);
    Ok(())
}
