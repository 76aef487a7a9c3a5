//! The unchanged npm `centrifuge` SDK (v5) over the emulation transports:
//! `http_stream` (Node's fetch) and `sse` (the npm `eventsource` package),
//! with commands over `/emulation`; and the Protobuf build
//! (`centrifuge/build/protobuf`) over `http_stream`, whose requests carry
//! `Content-Type: application/octet-stream`. The script is
//! `tests/sdk/js/fallback.mjs`;
//! packages are pinned by `tests/sdk/js/package-lock.json` (`npm ci`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::*;

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk").join("js")
}

async fn run_fallback(transport: &str, protocol: &str) -> Result<()> {
    let dir = js_dir();
    for package in ["centrifuge", "eventsource"] {
        if !dir.join("node_modules").join(package).is_dir() {
            bail!(
                "node_modules/{package} missing in {}: run npm ci in tests/sdk/js (./scripts/test.sh does it)",
                dir.display()
            );
        }
    }
    let gw = TestGateway::start().await?;
    let user = format!("fallback-{transport}-{protocol}");
    let child = tokio::process::Command::new("node")
        .arg("fallback.mjs")
        .current_dir(&dir)
        .env("SWITCHBOARD_TRANSPORT", transport)
        .env("SWITCHBOARD_PROTOCOL", protocol)
        .env("SWITCHBOARD_HTTP_URL", gw.http_url(""))
        .env("SWITCHBOARD_API_KEY", API_KEY)
        .env("SWITCHBOARD_TOKEN", user_token(&user))
        .env("SWITCHBOARD_USER", &user)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn node (is Node.js installed?)")?;
    let out = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .context("node fallback.mjs did not finish in 40 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "node fallback.mjs {transport} ({protocol}) failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            out.status
        );
    }
    print!("{stdout}");
    assert!(stdout.contains(&format!("[sdk-js-fallback {transport}] OK")), "no OK line:\n{stdout}\n{stderr}");
    gw.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn centrifuge_js_over_http_stream_subscribes_publishes_and_recovers() -> Result<()> {
    run_fallback("http_stream", "json").await
}

#[tokio::test]
async fn centrifuge_js_protobuf_over_http_stream_subscribes_publishes_and_recovers() -> Result<()> {
    run_fallback("http_stream", "protobuf").await
}

#[tokio::test]
async fn centrifuge_js_over_sse_subscribes_publishes_and_recovers() -> Result<()> {
    run_fallback("sse", "json").await
}
