//! The server HTTP API: auth, methods and transport-level errors.

use serde_json::{Value, json};

use crate::*;

/// Subscribes `ws` to a `chat` channel and consumes its own join push.
async fn join(ws: &mut WsClient, channel: &str) -> anyhow::Result<Value> {
    let reply = ws.call(json!({"subscribe": {"channel": channel}})).await?;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    assert!(ws.next_push().await?.get("join").is_some());
    Ok(reply["subscribe"].clone())
}

#[tokio::test]
async fn api_key_required_in_either_header() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let api = gw.api();
    let body = r#"{"channel":"chat:k","data":{}}"#;
    let none = api.raw("publish", body, &[]).await?;
    assert_eq!(none.status, 401);
    assert_eq!(none.body["error"]["code"], json!(401));
    assert_eq!(api.raw("publish", body, &[("x-api-key", "wrong")]).await?.status, 401);
    assert_eq!(api.raw("publish", body, &[("authorization", "apikey wrong")]).await?.status, 401);
    assert_eq!(api.raw("publish", body, &[("authorization", &format!("bearer {API_KEY}"))]).await?.status, 401);

    let ok = api.raw("publish", body, &[("x-api-key", API_KEY)]).await?;
    assert_eq!((ok.status, &ok.body["result"]["offset"]), (200, &json!(1)), "{:?}", ok.body);
    let ok = api.raw("publish", body, &[("authorization", &format!("apikey {API_KEY}"))]).await?;
    assert_eq!((ok.status, &ok.body["result"]["offset"]), (200, &json!(2)), "{:?}", ok.body);
    // Rejected calls published nothing.
    let h = api.result("history", json!({"channel": "chat:k", "limit": -1})).await?;
    assert_eq!(offsets(&publications(&h)), vec![1, 2]);
    Ok(())
}

#[tokio::test]
async fn idempotent_publish_delivers_once() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    join(&mut ws, "chat:i").await?;
    ws.call(json!({"subscribe": {"channel": "marker"}})).await?;
    let api = gw.api();
    let params = json!({"channel": "chat:i", "data": {"once": true}, "idempotency_key": "k-1"});
    let first = api.result("publish", params.clone()).await?;
    let second = api.result("publish", params).await?;
    assert_eq!(first["offset"], json!(1));
    assert_eq!(first, second);
    api.result("publish", json!({"channel": "marker", "data": {}})).await?;

    let push = ws.next_push().await?;
    assert_eq!((push["channel"].clone(), push["pub"]["offset"].clone()), (json!("chat:i"), json!(1)), "{push}");
    let push = ws.next_push().await?;
    assert_eq!(push["channel"], json!("marker"), "second copy delivered: {push}");
    let h = api.result("history", json!({"channel": "chat:i", "limit": -1})).await?;
    assert_eq!(publications(&h).len(), 1, "{h}");
    // A different key publishes again.
    let third = api.result("publish", json!({"channel": "chat:i", "data": {}, "idempotency_key": "k-2"})).await?;
    assert_eq!(third["offset"], json!(2));
    Ok(())
}

#[tokio::test]
async fn broadcast_publishes_to_every_channel() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    join(&mut ws, "chat:b1").await?;
    join(&mut ws, "chat:b2").await?;
    let res = gw.api().result("broadcast", json!({"channels": ["chat:b1", "chat:b2"], "data": {"all": true}})).await?;
    let responses = res["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 2, "{res}");
    for r in responses {
        assert_eq!(r["result"]["offset"], json!(1), "{res}");
    }
    let mut seen = Vec::new();
    for _ in 0..2 {
        let push = ws.next_push().await?;
        assert_eq!(push["pub"]["data"], json!({"all": true}));
        seen.push(push["channel"].as_str().unwrap().to_owned());
    }
    seen.sort();
    assert_eq!(seen, vec!["chat:b1", "chat:b2"]);

    let res = gw.api().result("broadcast", json!({"channels": ["chat:b1", "bad:ns"], "data": {}})).await?;
    assert_eq!(res["responses"][0]["result"]["offset"], json!(2), "{res}");
    assert_eq!(res["responses"][1]["error"]["code"], json!(102), "{res}");
    Ok(())
}

#[tokio::test]
async fn api_subscribe_and_unsubscribe() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.call(json!({"subscribe": {"channel": "marker"}})).await?;
    let api = gw.api();
    assert_eq!(api.result("subscribe", json!({"user": "alice", "channel": "chat:s"})).await?, json!({}));
    let push = ws.next_push().await?;
    assert_eq!(push["channel"], json!("chat:s"));
    assert_eq!(push["subscribe"]["recoverable"], json!(true), "{push}");
    assert!(push["subscribe"]["epoch"].is_string(), "{push}");
    let join = ws.next_push().await?;
    assert_eq!(join["join"]["info"]["user"], json!("alice"), "{join}");

    api.result("publish", json!({"channel": "chat:s", "data": {"n": 1}})).await?;
    let push = ws.next_push().await?;
    assert_eq!((push["channel"].clone(), push["pub"]["data"].clone()), (json!("chat:s"), json!({"n": 1})));

    assert_eq!(api.result("unsubscribe", json!({"user": "alice", "channel": "chat:s"})).await?, json!({}));
    let push = ws.next_push().await?;
    assert_eq!(push["channel"], json!("chat:s"));
    assert_eq!(push["unsubscribe"]["code"], json!(2000), "{push}");

    api.result("publish", json!({"channel": "chat:s", "data": {"n": 2}})).await?;
    api.result("publish", json!({"channel": "marker", "data": {}})).await?;
    let push = ws.next_push().await?;
    assert_eq!(push["channel"], json!("marker"), "publication after API unsubscribe: {push}");
    Ok(())
}

#[tokio::test]
async fn api_disconnect_closes_with_3503() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut alice, _) = gw.connect("alice").await?;
    let (mut bob, _) = gw.connect("bob").await?;
    assert_eq!(gw.api().result("disconnect", json!({"user": "alice"})).await?, json!({}));
    assert_eq!(alice.expect_close().await?, (3503, "force disconnect".to_owned()));
    let reply = bob.call(json!({"ping": {}})).await?;
    assert_eq!(reply["ping"], json!({}), "other users stay connected");
    Ok(())
}

#[tokio::test]
async fn channels_and_info() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut a1, _) = gw.connect("alice").await?;
    let (mut a2, _) = gw.connect("alice").await?;
    let (mut b, _) = gw.connect("bob").await?;
    join(&mut a1, "chat:c1").await?;
    join(&mut a2, "chat:c1").await?;
    join(&mut b, "chat:c2").await?;
    let api = gw.api();

    let all = api.result("channels", json!({})).await?;
    assert_eq!(all["channels"], json!({"chat:c1": {"num_clients": 2}, "chat:c2": {"num_clients": 1}}), "{all}");
    let some = api.result("channels", json!({"pattern": "chat:c1"})).await?;
    assert_eq!(some["channels"], json!({"chat:c1": {"num_clients": 2}}), "{some}");

    let info = api.result("info", json!({})).await?;
    let node = &info["nodes"][0];
    assert_eq!(node["num_clients"], json!(3), "{info}");
    assert_eq!(node["num_users"], json!(2), "{info}");
    assert_eq!(node["num_channels"], json!(2), "{info}");
    assert!(node["uid"].is_string() && node["version"].is_string(), "{info}");
    Ok(())
}

#[tokio::test]
async fn batch_runs_commands_in_order() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let res = gw
        .api()
        .result(
            "batch",
            json!({"commands": [
                {"publish": {"channel": "chat:x", "data": {"n": 1}}},
                {"publish": {"channel": "chat:x", "data": {"n": 2}}},
                {"history": {"channel": "chat:x", "limit": -1}},
                {"nope": {}},
            ]}),
        )
        .await?;
    let replies = res["replies"].as_array().expect("replies");
    assert_eq!(replies.len(), 4, "{res}");
    assert_eq!(replies[0]["publish"]["offset"], json!(1), "{res}");
    assert_eq!(replies[1]["publish"]["offset"], json!(2), "{res}");
    assert_eq!(offsets(&publications(&replies[2]["history"])), vec![1, 2], "{res}");
    assert_eq!(replies[3]["error"]["code"], json!(107), "{res}");
    Ok(())
}

#[tokio::test]
async fn history_remove_keeps_position() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let api = gw.api();
    let mut epoch = Value::Null;
    for n in 1..=3 {
        epoch = api.result("publish", json!({"channel": "chat:hr", "data": {"n": n}})).await?["epoch"].clone();
    }
    assert_eq!(api.result("history_remove", json!({"channel": "chat:hr"})).await?, json!({}));
    let h = api.result("history", json!({"channel": "chat:hr", "limit": -1})).await?;
    assert!(publications(&h).is_empty(), "{h}");
    assert_eq!(h["offset"], json!(3));
    assert_eq!(h["epoch"], epoch);
    let next = api.result("publish", json!({"channel": "chat:hr", "data": {}})).await?;
    assert_eq!(next["offset"], json!(4));
    Ok(())
}

#[tokio::test]
async fn transport_errors() -> anyhow::Result<()> {
    let mut config = test_config();
    config.api.max_body_bytes = 256;
    let gw = TestGateway::start_with(config).await?;
    let api = gw.api();
    let key = [("x-api-key", API_KEY)];

    let unknown = api.raw("nope", "{}", &key).await?;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["error"]["code"], json!(404));

    let big = json!({"channel": "chat:1", "data": {"pad": "x".repeat(1000)}}).to_string();
    let too_large = api.raw("publish", &big, &key).await?;
    assert_eq!(too_large.status, 413);
    assert_eq!(too_large.body["error"]["code"], json!(413));

    let invalid = api.raw("publish", "{not json", &key).await?;
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.body["error"]["code"], json!(107));

    // Valid JSON with the wrong shape is a method error under HTTP 200.
    let shape = api.raw("publish", r#"{"data":{}}"#, &key).await?;
    assert_eq!(shape.status, 200);
    assert_eq!(shape.body["error"]["code"], json!(107), "{:?}", shape.body);
    Ok(())
}

#[tokio::test]
async fn health_and_ready() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let health = http_request(gw.addr, "GET", "/health", &[], "").await?;
    assert_eq!(health.status, 200);
    assert_eq!(health.body, json!({"status": "ok"}));
    let ready = http_request(gw.addr, "GET", "/ready", &[], "").await?;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body, json!({"status": "ready"}));
    Ok(())
}

#[tokio::test]
async fn api_disconnect_one_client_with_custom_code() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut a1, c1) = gw.connect("alice").await?;
    let (mut a2, _) = gw.connect("alice").await?;
    a1.call(json!({"subscribe": {"channel": "chat:d"}})).await?;
    let params = json!({"user": "alice", "client": c1["client"], "disconnect": {"code": 4000, "reason": "bye"}});
    assert_eq!(gw.api().result("disconnect", params).await?, json!({}));
    assert_eq!(a1.expect_close().await?.0, 4000);
    let reply = a2.call(json!({"ping": {}})).await?;
    assert_eq!(reply["ping"], json!({}), "the other connection of the user stays");
    // The disconnected client's presence is gone.
    let mut stats = json!(null);
    for _ in 0..500 {
        stats = gw.api().result("presence_stats", json!({"channel": "chat:d"})).await?;
        if stats["num_clients"] == json!(0) {
            break;
        }
    }
    assert_eq!(stats, json!({"num_clients": 0, "num_users": 0}));
    let bad = gw.api().call("disconnect", json!({"user": "alice", "disconnect": {"code": 1000}})).await?;
    assert_eq!(bad["error"]["code"], json!(107), "{bad}");
    Ok(())
}

#[tokio::test]
async fn api_errors_for_unknown_namespace() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let api = gw.api();
    for (method, params) in [
        ("publish", json!({"channel": "nope:1", "data": {}})),
        ("history", json!({"channel": "nope:1"})),
        ("subscribe", json!({"user": "alice", "channel": "nope:1"})),
    ] {
        let body = api.call(method, params).await?;
        assert_eq!(body["error"]["code"], json!(102), "{method}: {body}");
    }
    let body = api.call("presence", json!({"channel": "plain"})).await?;
    assert_eq!(body["error"]["code"], json!(108), "presence off: {body}");
    let body = api.call("history", json!({"channel": "plain", "limit": 1})).await?;
    assert_eq!(body["error"]["code"], json!(108), "history off: {body}");
    Ok(())
}
