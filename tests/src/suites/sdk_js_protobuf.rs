//! The Protobuf build of the unchanged npm `centrifuge` SDK
//! (`centrifuge/build/protobuf`, v5, over `ws`, subprotocol
//! `centrifuge-protobuf`) against the gateway: the scenario of `sdk_js.rs`
//! (connect, subscribe, ordered delivery, disconnect, recovery, presence and
//! history) with binary payloads that must arrive byte for byte. The script
//! is `tests/sdk/js/recovery_protobuf.mjs`; the same pinned packages
//! (`npm ci --ignore-scripts` suffices: protobufjs needs no install step).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::*;

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk").join("js")
}

#[tokio::test]
async fn centrifuge_js_protobuf_sdk_connects_recovers_binary_payloads_and_reads_presence_and_history() -> Result<()> {
    let dir = js_dir();
    if !dir.join("node_modules").join("centrifuge").is_dir() || !dir.join("node_modules").join("ws").is_dir() {
        let ci = std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false);
        bail!(
            "{}node_modules missing in {}: run npm ci in tests/sdk/js (./scripts/test.sh does it)",
            if ci { "CI: " } else { "" },
            dir.display()
        );
    }

    let gw = TestGateway::start().await?;
    let child = tokio::process::Command::new("node")
        .arg("recovery_protobuf.mjs")
        .current_dir(&dir)
        .env("SWITCHBOARD_WS_URL", gw.ws_url())
        .env("SWITCHBOARD_API_URL", gw.http_url("/api"))
        .env("SWITCHBOARD_API_KEY", API_KEY)
        .env("SWITCHBOARD_TOKEN", user_token("sdk-js-pb"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn node (is Node.js installed?)")?;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .context("node recovery_protobuf.mjs did not finish in 30 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "node recovery_protobuf.mjs failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            out.status
        );
    }
    print!("{stdout}");
    assert!(stdout.contains("[sdk-js-pb] OK"), "no OK line:\n{stdout}\n{stderr}");
    gw.shutdown().await?;
    Ok(())
}
