//! Client protocol basics: connect, subscribe, publish, unsubscribe and the
//! command-level error codes.

use serde_json::{Value, json};
use switchboard::config::NamespaceConfig;

use crate::*;

/// `chat` plus a `ro` namespace whose subscribers may not publish.
fn config() -> switchboard::config::Config {
    let mut config = test_config();
    config.channels.namespaces.push(NamespaceConfig { name: "ro".into(), ..NamespaceConfig::default() });
    config
}

/// Reads pushes until a publication on `marker` arrives; fails if any
/// publication on `absent` arrives first. Returns the marker publication.
async fn pub_on_marker_skipping(ws: &mut WsClient, marker: &str, absent: &str) -> anyhow::Result<Value> {
    loop {
        let push = ws.next_push().await?;
        assert!(!(push["channel"] == json!(absent) && push.get("pub").is_some()), "unexpected pub on {absent}: {push}");
        if push["channel"] == json!(marker) && push.get("pub").is_some() {
            return Ok(push["pub"].clone());
        }
    }
}

#[tokio::test]
async fn connect_reply_carries_client_version_ping_pong() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (_ws, connect) = gw.connect("alice").await?;
    let client = connect["client"].as_str().expect("client id");
    assert_eq!(client.len(), 36, "uuid client id: {connect}");
    assert!(!connect["version"].as_str().expect("version").is_empty(), "{connect}");
    assert_eq!(connect["ping"], json!(25));
    assert_eq!(connect["pong"], json!(true));
    // `user_token` expires in an hour.
    assert_eq!(connect["expires"], json!(true));
    let ttl = connect["ttl"].as_u64().expect("ttl");
    assert!((3590..=3600).contains(&ttl), "{connect}");
    // Two connections get distinct ids.
    let (_ws2, connect2) = gw.connect("alice").await?;
    assert_ne!(connect2["client"], connect["client"]);
    Ok(())
}

#[tokio::test]
async fn server_pings_with_empty_object_at_configured_interval() -> anyhow::Result<()> {
    let mut config = test_config();
    config.client.ping_interval_secs = 2;
    config.client.pong_timeout_secs = 1;
    let gw = TestGateway::start_with(config).await?;
    let (mut ws, connect) = gw.connect("alice").await?;
    assert_eq!(connect["ping"], json!(2));
    ws.auto_pong = false;
    match ws.next_frame().await? {
        Frame::Json(v) => assert_eq!(v, json!({})),
        other => panic!("expected a ping, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn api_publish_reaches_subscriber() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let sub = ws.call(json!({"subscribe": {"channel": "chat:a"}})).await?;
    let sub = &sub["subscribe"];
    assert_eq!(sub["recoverable"], json!(true));
    assert_eq!(sub["positioned"], json!(true));
    assert!(!sub["epoch"].as_str().unwrap_or("").is_empty(), "{sub}");
    assert!(sub.get("offset").is_none_or(|o| o == &json!(0)), "{sub}");
    let join = ws.next_push().await?;
    assert_eq!(join["join"]["info"]["user"], json!("alice"));

    let res = gw.api().result("publish", json!({"channel": "chat:a", "data": {"n": 1}})).await?;
    assert_eq!(res["offset"], json!(1));
    assert_eq!(res["epoch"], sub["epoch"]);
    let push = ws.next_push().await?;
    assert_eq!(push["channel"], json!("chat:a"));
    assert_eq!(push["pub"]["data"], json!({"n": 1}));
    assert_eq!(push["pub"]["offset"], json!(1));
    Ok(())
}

#[tokio::test]
async fn client_publish_allowed_for_subscriber() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut alice, alice_connect) = gw.connect("alice").await?;
    let (mut bob, _) = gw.connect("bob").await?;
    alice.call(json!({"subscribe": {"channel": "chat:p"}})).await?;
    assert!(alice.next_push().await?.get("join").is_some());
    bob.call(json!({"subscribe": {"channel": "chat:p"}})).await?;
    assert!(bob.next_push().await?.get("join").is_some());
    assert_eq!(alice.next_push().await?["join"]["info"]["user"], json!("bob"));

    let reply = alice.call(json!({"publish": {"channel": "chat:p", "data": {"text": "hello"}}})).await?;
    assert_eq!(reply["publish"], json!({}), "{reply}");
    for ws in [&mut alice, &mut bob] {
        let push = ws.next_push().await?;
        assert_eq!(push["channel"], json!("chat:p"));
        assert_eq!(push["pub"]["data"], json!({"text": "hello"}));
        assert_eq!(push["pub"]["offset"], json!(1));
        assert_eq!(push["pub"]["info"]["user"], json!("alice"));
        assert_eq!(push["pub"]["info"]["client"], alice_connect["client"]);
    }
    Ok(())
}

#[tokio::test]
async fn client_publish_denied_without_permission() -> anyhow::Result<()> {
    let gw = TestGateway::start_with(config()).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    // A channel without a namespace: defaults forbid publishing.
    ws.call(json!({"subscribe": {"channel": "news"}})).await?;
    let reply = ws.call(json!({"publish": {"channel": "news", "data": {}}})).await?;
    assert_eq!(reply["error"]["code"], json!(103), "{reply}");
    // A namespace without publish permission.
    ws.call(json!({"subscribe": {"channel": "ro:1"}})).await?;
    let reply = ws.call(json!({"publish": {"channel": "ro:1", "data": {}}})).await?;
    assert_eq!(reply["error"]["code"], json!(103), "{reply}");
    // `chat` allows subscribers only.
    let reply = ws.call(json!({"publish": {"channel": "chat:not-subscribed", "data": {}}})).await?;
    assert_eq!(reply["error"]["code"], json!(103), "{reply}");
    // Nothing was published.
    let hist = gw.api().result("history", json!({"channel": "chat:not-subscribed", "limit": -1})).await?;
    assert!(publications(&hist).is_empty(), "{hist}");
    // The connection is still usable.
    let reply = ws.call(json!({"ping": {}})).await?;
    assert_eq!(reply["ping"], json!({}));
    Ok(())
}

#[tokio::test]
async fn unsubscribe_stops_publications() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.call(json!({"subscribe": {"channel": "chat:u"}})).await?;
    assert!(ws.next_push().await?.get("join").is_some());
    ws.call(json!({"subscribe": {"channel": "marker"}})).await?;
    let reply = ws.call(json!({"unsubscribe": {"channel": "chat:u"}})).await?;
    assert_eq!(reply["unsubscribe"], json!({}), "{reply}");

    gw.api().result("publish", json!({"channel": "chat:u", "data": {"gone": true}})).await?;
    gw.api().result("publish", json!({"channel": "marker", "data": {"marker": 1}})).await?;
    let marker = pub_on_marker_skipping(&mut ws, "marker", "chat:u").await?;
    assert_eq!(marker["data"], json!({"marker": 1}));
    // Subscribing again works (the old subscription is really gone).
    let sub = ws.call(json!({"subscribe": {"channel": "chat:u"}})).await?;
    assert_eq!(sub["subscribe"]["offset"], json!(1), "{sub}");
    Ok(())
}

#[tokio::test]
async fn subscribe_errors() -> anyhow::Result<()> {
    let mut config = test_config();
    config.client.max_channels_per_connection = 2;
    let gw = TestGateway::start_with(config).await?;
    let (mut ws, _) = gw.connect("alice").await?;

    let ok = ws.call(json!({"subscribe": {"channel": "chat:1"}})).await?;
    assert!(ok.get("subscribe").is_some(), "{ok}");
    let again = ws.call(json!({"subscribe": {"channel": "chat:1"}})).await?;
    assert_eq!(again["error"]["code"], json!(105), "{again}");

    let unknown = ws.call(json!({"subscribe": {"channel": "nope:1"}})).await?;
    assert_eq!(unknown["error"]["code"], json!(102), "{unknown}");
    let invalid = ws.call(json!({"subscribe": {"channel": "chat:bad name"}})).await?;
    assert_eq!(invalid["error"]["code"], json!(107), "{invalid}");
    let empty = ws.call(json!({"subscribe": {"channel": ""}})).await?;
    assert_eq!(empty["error"]["code"], json!(107), "{empty}");

    let second = ws.call(json!({"subscribe": {"channel": "chat:2"}})).await?;
    assert!(second.get("subscribe").is_some(), "{second}");
    let third = ws.call(json!({"subscribe": {"channel": "chat:3"}})).await?;
    assert_eq!(third["error"]["code"], json!(106), "{third}");
    // Freeing a slot allows a new subscription.
    ws.call(json!({"unsubscribe": {"channel": "chat:1"}})).await?;
    let third = ws.call(json!({"subscribe": {"channel": "chat:3"}})).await?;
    assert!(third.get("subscribe").is_some(), "{third}");
    Ok(())
}

#[tokio::test]
async fn rpc_is_method_not_found() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let reply = ws.call(json!({"rpc": {"method": "getProfile", "data": {"id": 1}}})).await?;
    assert_eq!(reply["error"]["code"], json!(104), "{reply}");
    let reply = ws.call(json!({"ping": {}})).await?;
    assert_eq!(reply["ping"], json!({}));
    Ok(())
}

#[tokio::test]
async fn newlines_in_payloads_do_not_break_framing() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.call(json!({"subscribe": {"channel": "plain"}})).await?;
    // Pretty-printed data: raw JSON with newlines, sent as-is by the backend.
    let body = "{\"channel\": \"plain\",\n \"data\": {\n  \"text\": \"a\\nb\",\n  \"list\": [1,\n 2]\n }\n}";
    let resp = gw.api().raw("publish", body, &[("x-api-key", API_KEY)]).await?;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    // The harness splits frames on '\n': a raw newline would fail to parse.
    let push = ws.next_push().await?;
    assert_eq!(push["pub"]["data"], json!({"text": "a\nb", "list": [1, 2]}));
    Ok(())
}

#[tokio::test]
async fn publication_larger_than_write_batch_is_delivered() -> anyhow::Result<()> {
    let mut config = test_config();
    config.client.write_batch_max_bytes = 1024;
    let gw = TestGateway::start_with(config).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.call(json!({"subscribe": {"channel": "plain"}})).await?;
    let big = "y".repeat(5000);
    for n in 0..3 {
        gw.api().result("publish", json!({"channel": "plain", "data": {"n": n, "big": big}})).await?;
    }
    for n in 0..3 {
        let push = ws.next_push().await?;
        assert_eq!(push["pub"]["data"]["n"], json!(n));
        assert_eq!(push["pub"]["data"]["big"].as_str().map(str::len), Some(5000));
    }
    Ok(())
}

#[tokio::test]
async fn conn_info_travels_with_publications_and_presence() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let mut ws = gw.ws().await?;
    let t = token(SECRET, json!({"sub": "alice", "exp": now_secs() + 3600, "info": {"name": "Alice"}}));
    let connect = ws.connect_token(&t).await?;
    let client = connect["connect"]["client"].as_str().unwrap().to_owned();
    ws.call(json!({"subscribe": {"channel": "chat:info"}})).await?;
    let join = ws.next_push().await?;
    assert_eq!(join["join"]["info"]["conn_info"], json!({"name": "Alice"}), "{join}");
    ws.call(json!({"publish": {"channel": "chat:info", "data": {}}})).await?;
    let push = ws.next_push().await?;
    assert_eq!(push["pub"]["info"]["conn_info"], json!({"name": "Alice"}), "{push}");
    let presence = gw.api().result("presence", json!({"channel": "chat:info"})).await?;
    assert_eq!(presence["presence"][&client]["conn_info"], json!({"name": "Alice"}), "{presence}");
    Ok(())
}

#[tokio::test]
async fn user_limited_channels() -> anyhow::Result<()> {
    let mut config = test_config();
    config.channels.namespaces.push(NamespaceConfig {
        name: "dm".into(),
        allow_user_limited_channels: true,
        ..NamespaceConfig::default()
    });
    let gw = TestGateway::start_with(config).await?;
    let (mut alice, _) = gw.connect("alice").await?;
    let (mut mallory, _) = gw.connect("mallory").await?;
    let ok = alice.call(json!({"subscribe": {"channel": "dm:chat#alice,bob"}})).await?;
    assert!(ok.get("subscribe").is_some(), "{ok}");
    let denied = mallory.call(json!({"subscribe": {"channel": "dm:chat#alice,bob"}})).await?;
    assert_eq!(denied["error"]["code"], json!(103), "{denied}");
    Ok(())
}
