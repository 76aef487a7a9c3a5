//! The Protobuf build of the unchanged npm `centrifuge` SDK
//! (`centrifuge/build/protobuf`, v5, over `ws`, subprotocol
//! `centrifuge-protobuf`) against the gateway: the scenario of `sdk_js.rs`
//! (connect, subscribe, ordered delivery, disconnect, recovery, presence and
//! history) with binary payloads that must arrive byte for byte. The script
//! is `tests/sdk/js/recovery_protobuf.mjs`; the same pinned packages
//! (`npm ci --ignore-scripts` suffices: protobufjs needs no install step).

use std::time::Duration;

use anyhow::Result;

use crate::*;

#[tokio::test]
async fn centrifuge_js_protobuf_sdk_connects_recovers_binary_payloads_and_reads_presence_and_history() -> Result<()> {
    let gw = TestGateway::start().await?;
    let env = [
        ("SWITCHBOARD_WS_URL", gw.ws_url()),
        ("SWITCHBOARD_API_URL", gw.http_url("/api")),
        ("SWITCHBOARD_API_KEY", API_KEY.to_owned()),
        ("SWITCHBOARD_TOKEN", user_token("sdk-js-pb")),
    ];
    let packages = ["centrifuge", "ws"];
    run_sdk_script("recovery_protobuf.mjs", &packages, &env, Duration::from_secs(30), "[sdk-js-pb] OK").await?;
    gw.shutdown().await?;
    Ok(())
}
