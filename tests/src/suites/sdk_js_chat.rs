//! Chat interactions with the unchanged npm `centrifuge` SDK: two users in a
//! room through `client.rpc` and `sub.publish` (`tests/sdk/js/chat.mjs`), on
//! the memory engine and on Redis.

use std::time::Duration;

use anyhow::{Result, bail};

use super::chat::chat_config;
use crate::*;

async fn run(mut config: switchboard::config::Config) -> Result<()> {
    // Generous: the script's second typing call must land inside the window.
    config.chat.typing_throttle_ms = 60_000;
    let gw = TestGateway::start_with(config).await?;
    let env = [
        ("SWITCHBOARD_WS_URL", gw.ws_url()),
        ("SWITCHBOARD_CHANNEL", "room:sdk".to_owned()),
        ("SWITCHBOARD_TOKEN_ALICE", user_token("alice")),
        ("SWITCHBOARD_TOKEN_BOB", user_token("bob")),
    ];
    run_sdk_script("chat.mjs", &["centrifuge", "ws"], &env, Duration::from_secs(40), "[sdk-chat] OK").await?;
    gw.shutdown().await
}

#[tokio::test]
async fn centrifuge_js_sdk_chats_edits_reacts_marks_read_and_recovers_interactions() -> Result<()> {
    run(chat_config()).await
}

/// The same script on the Redis engine (`REDIS_URL`, default
/// `redis://127.0.0.1:6379`; skipped without Redis unless `CI=true`):
/// read marks live in Redis then.
#[tokio::test]
async fn centrifuge_js_sdk_chats_on_the_redis_engine() -> Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let hostport = url.trim_start_matches("redis://").split('/').next().unwrap_or_default().to_owned();
    if tokio::net::TcpStream::connect(hostport).await.is_err() {
        if std::env::var("CI").as_deref() == Ok("true") {
            bail!("CI=true but Redis at {url} is unreachable");
        }
        eprintln!("skipped: Redis at {url} is unreachable");
        return Ok(());
    }
    let mut config = chat_config();
    config.engine.kind = switchboard::config::EngineKind::Redis;
    config.engine.redis_url = url;
    config.engine.redis_prefix = format!("sbchat-{}-{}", std::process::id(), now_secs());
    run(config).await
}
