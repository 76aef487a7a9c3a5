//! The unchanged npm `centrifuge` SDK (v5, over `ws`) against the gateway:
//! connect, subscribe, ordered delivery, disconnect, recovery, presence and
//! history. The script is `tests/sdk/js/recovery.mjs`; its packages are
//! pinned by `tests/sdk/js/package-lock.json` and installed by `npm ci`.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::*;

#[tokio::test]
async fn centrifuge_js_sdk_connects_recovers_and_reads_presence_and_history() -> Result<()> {
    run_sdk(test_config()).await
}

/// The same script against the Redis engine (`REDIS_URL`, default
/// `redis://127.0.0.1:6379`; skipped without Redis unless `CI=true`).
#[tokio::test]
async fn centrifuge_js_sdk_works_on_the_redis_engine() -> Result<()> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let hostport = url.trim_start_matches("redis://").split('/').next().unwrap_or_default().to_owned();
    if tokio::net::TcpStream::connect(hostport).await.is_err() {
        if std::env::var("CI").as_deref() == Ok("true") {
            bail!("CI=true but Redis at {url} is unreachable");
        }
        eprintln!("skipped: Redis at {url} is unreachable");
        return Ok(());
    }
    let mut config = test_config();
    config.engine.kind = switchboard::config::EngineKind::Redis;
    config.engine.redis_url = url;
    config.engine.redis_prefix = format!("sbsdk-{}-{}", std::process::id(), now_secs());
    run_sdk(config).await
}

async fn run_sdk(config: switchboard::config::Config) -> Result<()> {
    let gw = TestGateway::start_with(config).await?;
    let env = [
        ("SWITCHBOARD_WS_URL", gw.ws_url()),
        ("SWITCHBOARD_API_URL", gw.http_url("/api")),
        ("SWITCHBOARD_API_KEY", API_KEY.to_owned()),
        ("SWITCHBOARD_TOKEN", user_token("sdk-js")),
    ];
    run_sdk_script("recovery.mjs", &["centrifuge", "ws"], &env, Duration::from_secs(30), "[sdk-js] OK").await?;
    gw.shutdown().await?;
    Ok(())
}
