//! A real browser: headless Debian Chromium driven by `playwright-core`
//! (`tests/browser/run.mjs`). The test serves the page and the UMD bundle of
//! the npm `centrifuge` package from its own tiny HTTP server, so the page is
//! a different origin from the gateway, which allows it through
//! `server.allowed_origins` (WebSocket Origin check and CORS). The script
//! connects with WebSocket, with WebSocket removed (fallback to http_stream,
//! then to sse), and with a native `EventSource` on `uni_sse` whose stream
//! the server ends mid-way: the browser's own reconnect resumes by
//! `Last-Event-ID` with no gap and no duplicate.
//!
//! Needs `/usr/bin/chromium` (`.ci/run` and `scripts/test.sh` install Debian's
//! `chromium` when missing) and `npm ci` in `tests/browser`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::*;

const UNI_CHANNEL: &str = "chat:browser-uni";

pub(super) fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Serves `/` (the page) and `/centrifuge.js` (the SDK bundle) until the
/// task is dropped. One request per connection.
pub(super) async fn serve_static(listener: TcpListener, page: Vec<u8>, bundle: Vec<u8>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else { return };
        let (page, bundle) = (page.clone(), bundle.clone());
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match tokio::time::timeout(WAIT, socket.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let line = String::from_utf8_lossy(&head);
            let path = line.split(' ').nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_owned();
            let (status, content_type, body) = match path.as_str() {
                "/" | "/index.html" => ("200 OK", "text/html; charset=utf-8", page),
                "/centrifuge.js" => ("200 OK", "text/javascript; charset=utf-8", bundle),
                _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
            let _ = socket.shutdown().await;
        });
    }
}

#[tokio::test]
async fn chromium_connects_over_websocket_http_stream_sse_and_resumes_uni_sse_by_last_event_id() -> Result<()> {
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
    let page = std::fs::read(dir.join("page.html")).context("tests/browser/page.html")?;
    let bundle = std::fs::read(dir.join("node_modules/centrifuge/dist/centrifuge.js")).context("the UMD bundle")?;

    let site = TcpListener::bind("127.0.0.1:0").await?;
    let origin = format!("http://{}", site.local_addr()?);
    let server = tokio::spawn(serve_static(site, page, bundle));

    let mut config = test_config();
    config.server.allowed_origins = vec![origin.clone()];
    let gw = TestGateway::start_with(config).await?;
    let uni_token = token(SECRET, json!({ "sub": "browser-uni", "exp": now_secs() + 3600, "channels": [UNI_CHANNEL] }));

    let child = tokio::process::Command::new("node")
        .arg("run.mjs")
        .current_dir(&dir)
        .env("CHROMIUM_PATH", &chromium)
        .env("SWITCHBOARD_HTTP_URL", gw.http_url(""))
        .env("SWITCHBOARD_PAGE_URL", format!("{origin}/"))
        .env("SWITCHBOARD_API_KEY", API_KEY)
        .env("SWITCHBOARD_UNI_CHANNEL", UNI_CHANNEL)
        .env("SWITCHBOARD_TOKEN_WS", user_token("browser-ws"))
        .env("SWITCHBOARD_TOKEN_HTTP_STREAM", user_token("browser-http-stream"))
        .env("SWITCHBOARD_TOKEN_SSE", user_token("browser-sse"))
        .env("SWITCHBOARD_TOKEN_UNI", uni_token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn node (is Node.js installed?)")?;
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .context("node run.mjs did not finish in 90 s")??;
    server.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("node run.mjs failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}", out.status);
    }
    print!("{stdout}");
    for line in
        ["websocket OK (websocket)", "http_stream OK (http_stream)", "sse OK (sse)", "uni_sse OK", "[browser] OK"]
    {
        assert!(stdout.contains(line), "no {line:?} line:\n{stdout}\n{stderr}");
    }
    gw.shutdown().await
}
