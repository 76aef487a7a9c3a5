//! The unchanged npm `centrifuge` SDK (v5) over the emulation transports:
//! `http_stream` (Node's fetch) and `sse` (the npm `eventsource` package),
//! with commands over `/emulation`; and the Protobuf build
//! (`centrifuge/build/protobuf`) over `http_stream`, whose requests carry
//! `Content-Type: application/octet-stream`. The script is
//! `tests/sdk/js/fallback.mjs`;
//! packages are pinned by `tests/sdk/js/package-lock.json` (`npm ci`).

use std::time::Duration;

use anyhow::Result;

use crate::*;

async fn run_fallback(transport: &str, protocol: &str) -> Result<()> {
    let gw = TestGateway::start().await?;
    let user = format!("fallback-{transport}-{protocol}");
    let env = [
        ("SWITCHBOARD_TRANSPORT", transport.to_owned()),
        ("SWITCHBOARD_PROTOCOL", protocol.to_owned()),
        ("SWITCHBOARD_HTTP_URL", gw.http_url("")),
        ("SWITCHBOARD_API_KEY", API_KEY.to_owned()),
        ("SWITCHBOARD_TOKEN", user_token(&user)),
        ("SWITCHBOARD_USER", user.clone()),
    ];
    let ok_line = format!("[sdk-js-fallback {transport}] OK");
    run_sdk_script("fallback.mjs", &["centrifuge", "eventsource"], &env, Duration::from_secs(40), &ok_line).await?;
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
