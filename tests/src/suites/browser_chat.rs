//! The chat example page (`examples/chat/index.html`) in headless Debian
//! Chromium: two browser contexts chat, edit, react, type and see read
//! receipts through the page's UI (`tests/browser/chat.mjs`). The page and the
//! `centrifuge` UMD bundle are served from another origin, which the gateway
//! allows through `server.allowed_origins`.
//!
//! Needs `/usr/bin/chromium` and `npm ci` in `tests/browser`, like
//! [`super::browser`].

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::net::TcpListener;

use super::browser::{browser_dir, serve_static};
use super::chat::chat_config;
use crate::*;

#[tokio::test]
async fn two_browsers_chat_edit_react_and_see_read_receipts_on_the_example_page() -> Result<()> {
    let dir = browser_dir();
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        bail!("{chromium} missing: install Debian's chromium (./scripts/test.sh and .ci/run do it)");
    }
    for package in ["playwright-core", "centrifuge"] {
        if !dir.join("node_modules").join(package).is_dir() {
            bail!("node_modules/{package} missing in {}: run npm ci there (./scripts/test.sh does it)", dir.display());
        }
    }
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/chat/index.html");
    let page = std::fs::read(&example).context("examples/chat/index.html")?;
    let bundle = std::fs::read(dir.join("node_modules/centrifuge/dist/centrifuge.js")).context("the UMD bundle")?;

    let site = TcpListener::bind("127.0.0.1:0").await?;
    let origin = format!("http://{}", site.local_addr()?);
    let server = tokio::spawn(serve_static(site, page, bundle));

    let mut config = chat_config();
    config.server.allowed_origins = vec![origin.clone()];
    let gw = TestGateway::start_with(config).await?;
    let child = tokio::process::Command::new("node")
        .arg("chat.mjs")
        .current_dir(&dir)
        .env("CHROMIUM_PATH", &chromium)
        .env("SWITCHBOARD_WS_URL", format!("ws://{}", gw.addr))
        .env("SWITCHBOARD_PAGE_URL", format!("{origin}/"))
        .env("SWITCHBOARD_CHANNEL", "room:browser")
        .env("SWITCHBOARD_TOKEN_ALICE", user_token("alice"))
        .env("SWITCHBOARD_TOKEN_BOB", user_token("bob"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn node (is Node.js installed?)")?;
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .context("node chat.mjs did not finish in 90 s")??;
    server.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("node chat.mjs failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}", out.status);
    }
    print!("{stdout}");
    assert!(stdout.contains("[browser-chat] OK"), "no OK line:\n{stdout}\n{stderr}");

    // What the pages did is in the stream: message, edit, reaction, answer, un-reaction.
    let history = gw.api().result("history", json!({ "channel": "room:browser", "limit": -1 })).await?;
    let kinds: Vec<String> =
        publications(&history).iter().map(|p| p["tags"]["sb.kind"].as_str().unwrap_or("message").to_owned()).collect();
    assert_eq!(kinds, ["message", "edit", "reaction.add", "message", "reaction.remove"]);
    gw.shutdown().await
}
