//! `server.allowed_origins` on the WebSocket upgrade.

use serde_json::json;
use tokio_tungstenite::tungstenite;

use crate::*;

fn config() -> switchboard::config::Config {
    let mut config = test_config();
    config.server.allowed_origins = vec!["https://app.example.com".into()];
    config
}

#[tokio::test]
async fn foreign_origin_gets_403_before_upgrade() -> anyhow::Result<()> {
    let gw = TestGateway::start_with(config()).await?;
    let err = match WsClient::open(&gw.ws_url(), Some("https://evil.example.org")).await {
        Ok(_) => panic!("foreign origin was upgraded"),
        Err(e) => e,
    };
    match err.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 403),
        other => panic!("expected an HTTP error, got {other:?} ({err})"),
    }
    Ok(())
}

#[tokio::test]
async fn allowed_and_absent_origins_connect() -> anyhow::Result<()> {
    let gw = TestGateway::start_with(config()).await?;
    for origin in [Some("https://app.example.com"), None] {
        let mut ws = WsClient::open(&gw.ws_url(), origin).await?;
        let reply = ws.connect_token(&user_token("alice")).await?;
        assert!(reply["connect"]["client"].is_string(), "{origin:?}: {reply}");
        assert_eq!(reply["connect"]["pong"], json!(true));
    }
    Ok(())
}
