//! The unchanged npm `centrifuge` SDK (v5, over `ws`) against the gateway:
//! connect, subscribe, ordered delivery, disconnect, recovery, presence and
//! history. The script is `tests/sdk/js/recovery.mjs`; its packages are
//! pinned by `tests/sdk/js/package-lock.json` and installed by `npm ci`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::*;

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk").join("js")
}

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
    let dir = js_dir();
    if !dir.join("node_modules").join("centrifuge").is_dir() || !dir.join("node_modules").join("ws").is_dir() {
        let ci = std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false);
        bail!(
            "{}node_modules missing in {}: run npm ci in tests/sdk/js (./scripts/test.sh does it)",
            if ci { "CI: " } else { "" },
            dir.display()
        );
    }

    let gw = TestGateway::start_with(config).await?;
    let child = tokio::process::Command::new("node")
        .arg("recovery.mjs")
        .current_dir(&dir)
        .env("SWITCHBOARD_WS_URL", gw.ws_url())
        .env("SWITCHBOARD_API_URL", gw.http_url("/api"))
        .env("SWITCHBOARD_API_KEY", API_KEY)
        .env("SWITCHBOARD_TOKEN", user_token("sdk-js"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn node (is Node.js installed?)")?;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .context("node recovery.mjs did not finish in 30 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("node recovery.mjs failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}", out.status);
    }
    print!("{stdout}");
    assert!(stdout.contains("[sdk-js] OK"), "no OK line:\n{stdout}\n{stderr}");
    gw.shutdown().await?;
    Ok(())
}
