//! JWT checks on connect and subscribe, and anonymous access.

use serde_json::json;
use switchboard::config::NamespaceConfig;

use crate::*;

/// `chat` plus `private`, where subscribing needs a subscription token.
fn config() -> switchboard::config::Config {
    let mut config = test_config();
    config.channels.namespaces.push(NamespaceConfig {
        name: "private".into(),
        allow_subscribe_for_client: false,
        ..NamespaceConfig::default()
    });
    config
}

async fn expect_close_code(ws: &mut WsClient, expected: u16) -> anyhow::Result<()> {
    match ws.next_frame().await? {
        Frame::Close(code, _) => assert_eq!(code, expected),
        other => panic!("expected close {expected}, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn wrong_secret_closes_with_3500() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let mut ws = gw.ws().await?;
    let bad = token("some-other-secret", json!({"sub": "alice", "exp": now_secs() + 3600}));
    ws.send(json!({"connect": {"token": bad}})).await?;
    expect_close_code(&mut ws, 3500).await
}

#[tokio::test]
async fn alg_none_closes_with_3500() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let mut ws = gw.ws().await?;
    let unsigned = unsigned_token(json!({"sub": "alice", "exp": now_secs() + 3600}));
    ws.send(json!({"connect": {"token": unsigned}})).await?;
    expect_close_code(&mut ws, 3500).await
}

#[tokio::test]
async fn garbage_token_closes_with_3500() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let mut ws = gw.ws().await?;
    ws.send(json!({"connect": {"token": "not.a.jwt"}})).await?;
    expect_close_code(&mut ws, 3500).await
}

#[tokio::test]
async fn expired_token_gets_109_and_connection_stays() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let mut ws = gw.ws().await?;
    let expired = token(SECRET, json!({"sub": "alice", "exp": now_secs() - 3600}));
    let reply = ws.connect_token(&expired).await?;
    assert_eq!(reply["error"]["code"], json!(109), "{reply}");
    assert!(reply.get("connect").is_none());
    // Same socket, fresh token.
    let reply = ws.connect_token(&user_token("alice")).await?;
    assert!(reply["connect"]["client"].is_string(), "{reply}");
    let reply = ws.call(json!({"ping": {}})).await?;
    assert_eq!(reply["ping"], json!({}));
    Ok(())
}

#[tokio::test]
async fn subscription_token_for_another_channel_closes_with_3500() -> anyhow::Result<()> {
    let gw = TestGateway::start_with(config()).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let sub_token = token(SECRET, json!({"sub": "alice", "channel": "private:other", "exp": now_secs() + 3600}));
    ws.send(json!({"subscribe": {"channel": "private:mine", "token": sub_token}})).await?;
    expect_close_code(&mut ws, 3500).await
}

#[tokio::test]
async fn subscription_token_opens_token_only_namespace() -> anyhow::Result<()> {
    let gw = TestGateway::start_with(config()).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let denied = ws.call(json!({"subscribe": {"channel": "private:mine"}})).await?;
    assert_eq!(denied["error"]["code"], json!(103), "{denied}");

    let sub_token = token(SECRET, json!({"sub": "alice", "channel": "private:mine", "exp": now_secs() + 3600}));
    let ok = ws.call(json!({"subscribe": {"channel": "private:mine", "token": sub_token}})).await?;
    assert!(ok.get("subscribe").is_some(), "{ok}");
    assert!(ok.get("error").is_none(), "{ok}");
    // And it is a real subscription.
    gw.api().result("publish", json!({"channel": "private:mine", "data": {"secret": 1}})).await?;
    let push = ws.next_push().await?;
    assert_eq!(push["channel"], json!("private:mine"));
    assert_eq!(push["pub"]["data"], json!({"secret": 1}));
    Ok(())
}

#[tokio::test]
async fn subscription_token_for_another_user_closes_with_3500() -> anyhow::Result<()> {
    let gw = TestGateway::start_with(config()).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let sub_token = token(SECRET, json!({"sub": "bob", "channel": "private:mine", "exp": now_secs() + 3600}));
    ws.send(json!({"subscribe": {"channel": "private:mine", "token": sub_token}})).await?;
    expect_close_code(&mut ws, 3500).await
}

#[tokio::test]
async fn missing_token_closes_with_3500_when_anonymous_disallowed() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let mut ws = gw.ws().await?;
    ws.send(json!({"connect": {}})).await?;
    expect_close_code(&mut ws, 3500).await
}

#[tokio::test]
async fn missing_token_connects_anonymously_when_allowed() -> anyhow::Result<()> {
    let mut config = test_config();
    config.client.allow_anonymous = true;
    config.channels.namespaces.push(NamespaceConfig {
        name: "lobby".into(),
        presence: true,
        allow_subscribe_for_anonymous: true,
        ..NamespaceConfig::default()
    });
    let gw = TestGateway::start_with(config).await?;
    let mut ws = gw.ws().await?;
    let reply = ws.call(json!({"connect": {}})).await?;
    let connect = &reply["connect"];
    let client = connect["client"].as_str().expect("client").to_owned();
    assert!(connect.get("expires").is_none(), "{reply}");
    // Anonymous may not subscribe where anonymous access is off...
    let denied = ws.call(json!({"subscribe": {"channel": "chat:1"}})).await?;
    assert_eq!(denied["error"]["code"], json!(103), "{denied}");
    // ...and appears in presence with user "" where it is on.
    ws.call(json!({"subscribe": {"channel": "lobby:1"}})).await?;
    let presence = gw.api().result("presence", json!({"channel": "lobby:1"})).await?;
    let info = &presence["presence"][&client];
    assert_eq!(info["client"], json!(client), "{presence}");
    assert_eq!(info.get("user").and_then(|u| u.as_str()).unwrap_or(""), "", "{presence}");
    Ok(())
}

#[test]
fn unsigned_token_is_well_formed() {
    assert_eq!(base64url(b"Man"), "TWFu");
    assert_eq!(base64url(b"Ma"), "TWE");
    assert_eq!(base64url(b"M"), "TQ");
    assert_eq!(unsigned_token(json!({})), "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.e30.");
}

#[tokio::test]
async fn token_channels_become_server_side_subscriptions() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    gw.api().result("publish", json!({"channel": "chat:srv", "data": {"n": 1}})).await?;
    let mut ws = gw.ws().await?;
    let t = token(SECRET, json!({"sub": "alice", "exp": now_secs() + 3600, "channels": ["chat:srv", "nope:x"]}));
    let reply = ws.connect_token(&t).await?;
    let subs = reply["connect"]["subs"].as_object().expect("subs").clone();
    assert_eq!(subs.keys().collect::<Vec<_>>(), vec!["chat:srv"], "unknown namespace skipped: {reply}");
    assert_eq!(subs["chat:srv"]["recoverable"], json!(true));
    assert_eq!(subs["chat:srv"]["offset"], json!(1));
    let push = ws.next_push().await?;
    assert_eq!(push["join"]["info"]["user"], json!("alice"), "{push}");
    gw.api().result("publish", json!({"channel": "chat:srv", "data": {"n": 2}})).await?;
    let push = ws.next_push().await?;
    assert_eq!(push["channel"], json!("chat:srv"));
    assert_eq!(push["pub"]["offset"], json!(2));
    // A client subscribe to a server-side channel is a duplicate.
    let dup = ws.call(json!({"subscribe": {"channel": "chat:srv"}})).await?;
    assert_eq!(dup["error"]["code"], json!(105), "{dup}");
    Ok(())
}

#[tokio::test]
async fn expired_subscription_token_gets_109() -> anyhow::Result<()> {
    let gw = TestGateway::start_with(config()).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let expired = token(SECRET, json!({"sub": "alice", "channel": "private:mine", "exp": now_secs() - 3600}));
    let reply = ws.call(json!({"subscribe": {"channel": "private:mine", "token": expired}})).await?;
    assert_eq!(reply["error"]["code"], json!(109), "{reply}");
    // Not subscribed: a fresh token subscribes without 105.
    let fresh = token(SECRET, json!({"sub": "alice", "channel": "private:mine", "exp": now_secs() + 60}));
    let reply = ws.call(json!({"subscribe": {"channel": "private:mine", "token": fresh}})).await?;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    Ok(())
}

#[tokio::test]
async fn sub_refresh_reports_new_ttl() -> anyhow::Result<()> {
    let gw = TestGateway::start_with(config()).await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let t = token(SECRET, json!({"sub": "alice", "channel": "private:mine", "exp": now_secs() + 60}));
    ws.call(json!({"subscribe": {"channel": "private:mine", "token": t}})).await?;
    let t = token(SECRET, json!({"sub": "alice", "channel": "private:mine", "exp": now_secs() + 600}));
    let reply = ws.call(json!({"sub_refresh": {"channel": "private:mine", "token": t}})).await?;
    assert_eq!(reply["sub_refresh"]["expires"], json!(true), "{reply}");
    let ttl = reply["sub_refresh"]["ttl"].as_u64().expect("ttl");
    assert!((590..=600).contains(&ttl), "{reply}");
    // A channel the client is not in.
    let t = token(SECRET, json!({"sub": "alice", "channel": "private:other", "exp": now_secs() + 600}));
    let reply = ws.call(json!({"sub_refresh": {"channel": "private:other", "token": t}})).await?;
    assert_eq!(reply["error"]["code"], json!(103), "{reply}");
    Ok(())
}

#[tokio::test]
async fn audience_and_issuer_are_enforced_when_configured() -> anyhow::Result<()> {
    let mut config = test_config();
    config.auth.audience = "switchboard".into();
    config.auth.issuer = "backend".into();
    let gw = TestGateway::start_with(config).await?;
    let exp = now_secs() + 3600;
    let good = token(SECRET, json!({"sub": "alice", "exp": exp, "aud": "switchboard", "iss": "backend"}));
    let mut ws = gw.ws().await?;
    assert!(ws.connect_token(&good).await?.get("connect").is_some());
    for claims in [
        json!({"sub": "alice", "exp": exp, "aud": "other", "iss": "backend"}),
        json!({"sub": "alice", "exp": exp, "aud": "switchboard", "iss": "other"}),
        json!({"sub": "alice", "exp": exp}),
    ] {
        let mut ws = gw.ws().await?;
        ws.send(json!({"connect": {"token": token(SECRET, claims.clone())}})).await?;
        match ws.next_frame().await? {
            Frame::Close(code, _) => assert_eq!(code, 3500, "{claims}"),
            other => panic!("{claims}: expected close, got {other:?}"),
        }
    }
    Ok(())
}
