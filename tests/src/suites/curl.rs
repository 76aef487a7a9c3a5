//! `tests/sdk/curl/uni_and_longpoll.sh`: plain curl on `uni_http_stream`
//! and long-polling, as the README shows them.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::*;

#[tokio::test]
async fn curl_reads_uni_http_stream_and_long_polls() -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk").join("curl").join("uni_and_longpoll.sh");
    let gw = TestGateway::start().await?;
    let claims = json!({"sub": "curl", "exp": now_secs() + 3600, "channels": ["chat:curl"]});
    let child = tokio::process::Command::new("bash")
        .arg(&script)
        .env("SWITCHBOARD_HTTP_URL", gw.http_url(""))
        .env("SWITCHBOARD_API_KEY", API_KEY)
        .env("SWITCHBOARD_TOKEN", token(SECRET, claims))
        .env("SWITCHBOARD_CHANNEL", "chat:curl")
        .env("SWITCHBOARD_USER", "curl")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn bash (is curl installed?)")?;
    let out = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .context("uni_and_longpoll.sh did not finish in 40 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("uni_and_longpoll.sh failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}", out.status);
    }
    assert!(stdout.contains("[curl] OK"), "no OK line:\n{stdout}\n{stderr}");
    gw.shutdown().await?;
    Ok(())
}
