//! Chat interactions over the client protocol's `rpc` and the server API:
//! edits, deletes, reactions, replies and threads, read marks and unread
//! counts, typing, user status; their permissions and limits; recovery of
//! missed interactions; and the publish pipeline applied to edits.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use switchboard::config::{Config, NamespaceConfig, PluginConfig};

use crate::*;

const ROOM: &str = "room:lobby";

/// A `room` namespace with chat on, history, recovery and presence, whose
/// admin claim is `chat_admin`.
fn room(name: &str) -> NamespaceConfig {
    NamespaceConfig {
        name: name.into(),
        chat: true,
        chat_admin_claim: "chat_admin".into(),
        history_size: 1000,
        history_ttl_secs: 300,
        force_recovery: true,
        presence: true,
        allow_publish_for_subscriber: true,
        allow_history_for_subscriber: true,
        allow_presence_for_subscriber: true,
        ..NamespaceConfig::default()
    }
}

pub(crate) fn chat_config() -> Config {
    let mut config = test_config();
    config.channels.namespaces.push(room("room"));
    config
}

/// Sends an rpc and returns the whole reply (result or error).
async fn rpc(ws: &mut WsClient, method: &str, data: Value) -> Result<Value> {
    ws.call(json!({ "rpc": { "method": method, "data": data } })).await
}

/// Sends an rpc and returns its result data; fails on an error reply.
async fn ok(ws: &mut WsClient, method: &str, data: Value) -> Result<Value> {
    let reply = rpc(ws, method, data.clone()).await?;
    match reply.get("error") {
        Some(e) => bail!("rpc {method} {data} failed: {e}"),
        None => Ok(reply["rpc"]["data"].clone()),
    }
}

/// The error of an rpc that must fail.
async fn err(ws: &mut WsClient, method: &str, data: Value) -> Result<Value> {
    let reply = rpc(ws, method, data.clone()).await?;
    reply.get("error").cloned().with_context(|| format!("rpc {method} {data} should fail: {reply}"))
}

/// Connects `user` (with extra token claims) and subscribes to `channel`.
async fn member(gw: &TestGateway, user: &str, claims: Value, channel: &str) -> Result<WsClient> {
    let mut all = json!({ "sub": user, "exp": now_secs() + 3600 });
    for (k, v) in claims.as_object().cloned().unwrap_or_default() {
        all[k] = v;
    }
    let mut ws = gw.ws().await?;
    let reply = ws.connect_token(&token(SECRET, all)).await?;
    ensure!(reply.get("connect").is_some(), "connect {user}: {reply}");
    let reply = ws.call(json!({ "subscribe": { "channel": channel } })).await?;
    ensure!(reply.get("subscribe").is_some(), "subscribe {user}: {reply}");
    Ok(ws)
}

/// The next publication in `channel`, skipping join/leave pushes.
async fn next_pub(ws: &mut WsClient, channel: &str) -> Result<Value> {
    loop {
        let push = ws.next_push().await?;
        if push.get("pub").is_some() {
            ensure!(push["channel"] == json!(channel), "publication in another channel: {push}");
            return Ok(push["pub"].clone());
        }
    }
}

/// (offset, kind, ref, user) of a publication, the interaction stream's key.
fn key(publication: &Value) -> (u64, String, String, String) {
    let tags = &publication["tags"];
    (
        publication["offset"].as_u64().unwrap_or(0),
        tags["sb.kind"].as_str().unwrap_or("message").to_owned(),
        tags["sb.ref"].as_str().unwrap_or("").to_owned(),
        publication["info"]["user"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn interactions_reach_every_subscriber_in_one_order_and_fold_into_aggregates() -> Result<()> {
    let gw = TestGateway::start_with(chat_config()).await?;
    let mut alice = member(&gw, "alice", json!({}), ROOM).await?;
    let mut bob = member(&gw, "bob", json!({}), ROOM).await?;

    let m1 = ok(&mut alice, "message.send", json!({ "channel": ROOM, "data": { "text": "hi" } })).await?;
    assert_eq!(m1["offset"], 1);
    let r1 = ok(&mut bob, "message.send", json!({ "channel": ROOM, "data": { "text": "hey" }, "reply_to": 1 })).await?;
    let r2 =
        ok(&mut alice, "message.send", json!({ "channel": ROOM, "data": { "text": "deep" }, "reply_to": 2 })).await?;
    assert_eq!((r1["offset"].as_u64(), r2["offset"].as_u64()), (Some(2), Some(3)));
    ok(&mut alice, "message.edit", json!({ "channel": ROOM, "offset": 1, "data": { "text": "hi all" } })).await?;
    ok(&mut bob, "reaction.add", json!({ "channel": ROOM, "offset": 1, "reaction": "👍" })).await?;
    ok(&mut alice, "reaction.add", json!({ "channel": ROOM, "offset": 1, "reaction": "👍" })).await?;
    ok(&mut alice, "reaction.add", json!({ "channel": ROOM, "offset": 1, "reaction": "🎉" })).await?;
    ok(&mut alice, "reaction.remove", json!({ "channel": ROOM, "offset": 1, "reaction": "🎉" })).await?;
    ok(&mut bob, "message.delete", json!({ "channel": ROOM, "offset": 2 })).await?;

    let expected: Vec<(u64, &str, &str, &str)> = vec![
        (1, "message", "", "alice"),
        (2, "message", "", "bob"),
        (3, "message", "", "alice"),
        (4, "edit", "1", "alice"),
        (5, "reaction.add", "1", "bob"),
        (6, "reaction.add", "1", "alice"),
        (7, "reaction.add", "1", "alice"),
        (8, "reaction.remove", "1", "alice"),
        (9, "delete", "2", "bob"),
    ];
    let expected: Vec<(u64, String, String, String)> =
        expected.into_iter().map(|(o, k, r, u)| (o, k.to_owned(), r.to_owned(), u.to_owned())).collect();
    for ws in [&mut alice, &mut bob] {
        let mut seen = Vec::new();
        for _ in 0..expected.len() {
            seen.push(next_pub(ws, ROOM).await?);
        }
        assert_eq!(seen.iter().map(key).collect::<Vec<_>>(), expected);
        assert_eq!(seen[1]["tags"]["sb.reply_to"], "1");
        assert_eq!(seen[2]["tags"]["sb.reply_to"], "2");
        assert_eq!(seen[2]["tags"]["sb.thread"], "1", "a reply to a reply stays in the root's thread");
        assert_eq!(seen[3]["data"], json!({ "text": "hi all" }));
        assert_eq!(seen[4]["tags"]["sb.reaction"], "👍");
    }

    let agg = ok(&mut bob, "message.get", json!({ "channel": ROOM, "offset": 1 })).await?;
    assert_eq!(
        agg,
        json!({
            "offset": 1, "user": "alice", "data": { "text": "hi all" }, "edits": 1, "deleted": false,
            "replies": 1,
            "reactions": [{ "reaction": "👍", "count": 2, "users": ["alice", "bob"], "me": true }],
        })
    );
    let deleted = ok(&mut alice, "message.get", json!({ "channel": ROOM, "offset": 2 })).await?;
    assert_eq!((deleted["deleted"].as_bool(), &deleted["data"]), (Some(true), &Value::Null));

    let thread = ok(&mut bob, "thread.history", json!({ "channel": ROOM, "offset": 1, "limit": 10 })).await?;
    assert_eq!(thread["root"]["offset"], 1);
    let replies: Vec<u64> =
        thread["replies"].as_array().unwrap().iter().map(|r| r["offset"].as_u64().unwrap()).collect();
    assert_eq!(replies, vec![3], "the deleted reply is gone from the thread");
    assert_eq!(thread["replies"][0]["reply_to"], 2);
    gw.shutdown().await
}

#[tokio::test]
async fn read_marks_give_unread_counts_and_live_receipts_that_history_never_keeps() -> Result<()> {
    let gw = TestGateway::start_with(chat_config()).await?;
    let mut alice = member(&gw, "alice", json!({}), ROOM).await?;
    let mut bob = member(&gw, "bob", json!({}), ROOM).await?;
    for n in 1..=4 {
        ok(&mut alice, "message.send", json!({ "channel": ROOM, "data": { "n": n } })).await?;
    }
    ok(&mut bob, "message.send", json!({ "channel": ROOM, "data": { "n": 5 } })).await?;
    for _ in 1..=5 {
        next_pub(&mut alice, ROOM).await?;
    }
    let counts = ok(&mut bob, "unread.counts", json!({ "channels": [ROOM] })).await?;
    assert_eq!(counts["channels"][ROOM], json!({ "last_read": 0, "unread": 4 }), "bob's own message is not unread");

    ok(&mut bob, "read.mark", json!({ "channel": ROOM, "offset": 3 })).await?;
    let receipt = next_pub(&mut alice, ROOM).await?;
    assert_eq!(receipt["tags"], json!({ "sb.kind": "read", "sb.ref": "3" }));
    assert_eq!(receipt["info"]["user"], "bob");
    assert!(receipt.get("offset").is_none(), "a receipt has no place in the stream: {receipt}");

    ok(&mut alice, "message.delete", json!({ "channel": ROOM, "offset": 4 })).await?;
    let counts = ok(&mut bob, "unread.counts", json!({ "channels": [ROOM] })).await?;
    assert_eq!(counts["channels"][ROOM], json!({ "last_read": 3, "unread": 0 }), "4 was deleted, 5 is bob's");
    // A lower mark never moves the mark back.
    ok(&mut bob, "read.mark", json!({ "channel": ROOM, "offset": 1 })).await?;
    let counts = ok(&mut bob, "unread.counts", json!({ "channels": [ROOM] })).await?;
    assert_eq!(counts["channels"][ROOM]["last_read"], 3);
    let error = err(&mut bob, "read.mark", json!({ "channel": ROOM, "offset": 99 })).await?;
    assert_eq!(error["code"], 107, "{error}");

    // Receipts and typing are not in history: the top is the delete (6).
    let history = gw.api().result("history", json!({ "channel": ROOM, "limit": -1 })).await?;
    assert_eq!(history["offset"], 6);
    let kinds: Vec<String> =
        publications(&history).iter().map(|p| p["tags"]["sb.kind"].as_str().unwrap_or("message").to_owned()).collect();
    assert_eq!(kinds, ["message", "message", "message", "message", "message", "delete"]);
    gw.shutdown().await
}

#[tokio::test]
async fn permission_failures_have_clear_codes() -> Result<()> {
    let gw = TestGateway::start_with(chat_config()).await?;
    let mut alice = member(&gw, "alice", json!({}), ROOM).await?;
    let mut bob = member(&gw, "bob", json!({}), ROOM).await?;
    let mut admin = member(&gw, "mod", json!({ "chat_admin": true }), ROOM).await?;
    ok(&mut alice, "message.send", json!({ "channel": ROOM, "data": { "text": "mine" } })).await?;

    let e = err(&mut bob, "message.edit", json!({ "channel": ROOM, "offset": 1, "data": { "text": "yours" } })).await?;
    assert_eq!(e, json!({ "code": 103, "message": "only the author may change this message" }));
    let e = err(&mut bob, "message.delete", json!({ "channel": ROOM, "offset": 1 })).await?;
    assert_eq!(e["code"], 103);

    let e = err(&mut bob, "reaction.add", json!({ "channel": ROOM, "offset": 999, "reaction": "👍" })).await?;
    assert_eq!(e, json!({ "code": 107, "message": "message not found (offset 999)" }));
    let e = err(&mut bob, "message.get", json!({ "channel": ROOM, "offset": 999 })).await?;
    assert_eq!(e["message"], "message not found (offset 999)");
    let e = err(&mut bob, "reaction.add", json!({ "channel": ROOM, "offset": 1, "reaction": "" })).await?;
    assert_eq!(e, json!({ "code": 107, "message": "reaction must be 1 to 64 bytes" }));

    // The admin claim edits anyone's message; an edit targets messages only.
    ok(&mut admin, "message.edit", json!({ "channel": ROOM, "offset": 1, "data": { "text": "moderated" } })).await?;
    let e = err(&mut alice, "message.edit", json!({ "channel": ROOM, "offset": 2, "data": {} })).await?;
    assert_eq!(e["message"], "message not found (offset 2)");

    ok(&mut alice, "message.delete", json!({ "channel": ROOM, "offset": 1 })).await?;
    let e =
        err(&mut alice, "message.edit", json!({ "channel": ROOM, "offset": 1, "data": { "text": "back" } })).await?;
    assert_eq!(e, json!({ "code": 107, "message": "message is deleted (offset 1)" }));
    let e = err(&mut bob, "reaction.add", json!({ "channel": ROOM, "offset": 1, "reaction": "👍" })).await?;
    assert_eq!(e["message"], "message is deleted (offset 1)");

    // Chat off in a namespace: 108; not allowed to subscribe: 103.
    let e = err(&mut alice, "message.get", json!({ "channel": "chat:x", "offset": 1 })).await?;
    assert_eq!(e["code"], 108);
    let e = err(&mut alice, "bogus.method", json!({})).await?;
    assert_eq!(e["code"], 104, "non-chat methods still go to the rpc pipeline");
    gw.shutdown().await
}

#[tokio::test]
async fn subscribe_permission_is_needed_for_reactions_and_a_user_for_any_change() -> Result<()> {
    let mut config = chat_config();
    let mut closed = room("closed");
    closed.allow_subscribe_for_client = false;
    config.channels.namespaces.push(closed);
    config.client.allow_anonymous = true;
    config.channels.namespaces[1].allow_subscribe_for_anonymous = true;
    let gw = TestGateway::start_with(config).await?;
    gw.api().result("publish", json!({ "channel": "closed:x", "data": { "text": "secret" } })).await?;
    let (mut bob, _) = gw.connect("bob").await?;
    let e = err(&mut bob, "reaction.add", json!({ "channel": "closed:x", "offset": 1, "reaction": "👍" })).await?;
    assert_eq!(e["code"], 103);
    let e = err(&mut bob, "message.get", json!({ "channel": "closed:x", "offset": 1 })).await?;
    assert_eq!(e["code"], 103);

    let mut anon = gw.ws().await?;
    anon.call(json!({ "connect": {} })).await?;
    let e = err(&mut anon, "reaction.add", json!({ "channel": ROOM, "offset": 1, "reaction": "👍" })).await?;
    assert_eq!(e["code"], 103);
    gw.shutdown().await
}

#[tokio::test]
async fn reactions_stop_at_the_limit_and_typing_is_throttled_per_user() -> Result<()> {
    let mut config = chat_config();
    config.chat.max_reactions_per_message = 2;
    config.chat.typing_throttle_ms = 60_000;
    let gw = TestGateway::start_with(config).await?;
    let mut alice = member(&gw, "alice", json!({}), ROOM).await?;
    let mut bob = member(&gw, "bob", json!({}), ROOM).await?;
    ok(&mut alice, "message.send", json!({ "channel": ROOM, "data": { "text": "vote" } })).await?;
    ok(&mut bob, "reaction.add", json!({ "channel": ROOM, "offset": 1, "reaction": "a" })).await?;
    ok(&mut bob, "reaction.add", json!({ "channel": ROOM, "offset": 1, "reaction": "b" })).await?;
    let e = err(&mut bob, "reaction.add", json!({ "channel": ROOM, "offset": 1, "reaction": "c" })).await?;
    assert_eq!(e, json!({ "code": 106, "message": "too many reactions (max 2 per message)" }));
    ok(&mut alice, "reaction.add", json!({ "channel": ROOM, "offset": 1, "reaction": "a" })).await?;
    let agg = ok(&mut alice, "message.get", json!({ "channel": ROOM, "offset": 1 })).await?;
    let summary: Vec<(String, u64)> = agg["reactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["reaction"].as_str().unwrap().to_owned(), r["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(summary, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
    for _ in 0..4 {
        next_pub(&mut alice, ROOM).await?;
    }

    assert_eq!(ok(&mut bob, "typing", json!({ "channel": ROOM })).await?, json!({ "sent": true }));
    assert_eq!(ok(&mut bob, "typing", json!({ "channel": ROOM })).await?, json!({ "sent": false }));
    assert_eq!(ok(&mut bob, "typing", json!({ "channel": ROOM })).await?, json!({ "sent": false }));
    assert_eq!(ok(&mut alice, "typing", json!({ "channel": ROOM })).await?, json!({ "sent": true }), "per user");
    ok(&mut bob, "message.send", json!({ "channel": ROOM, "data": { "text": "done" } })).await?;
    // Alice sees bob's one typing event, her own, then the message: nothing else.
    let typing = next_pub(&mut alice, ROOM).await?;
    assert_eq!((typing["tags"]["sb.kind"].as_str(), typing["info"]["user"].as_str()), (Some("typing"), Some("bob")));
    let typing = next_pub(&mut alice, ROOM).await?;
    assert_eq!((typing["tags"]["sb.kind"].as_str(), typing["info"]["user"].as_str()), (Some("typing"), Some("alice")));
    let message = next_pub(&mut alice, ROOM).await?;
    assert_eq!((message["offset"].as_u64(), &message["data"]), (Some(5), &json!({ "text": "done" })));
    gw.shutdown().await
}

#[tokio::test]
async fn a_reconnecting_client_recovers_missed_edits_reactions_and_deletes() -> Result<()> {
    let gw = TestGateway::start_with(chat_config()).await?;
    let mut bob = member(&gw, "bob", json!({}), ROOM).await?;
    let mut alice = gw.ws().await?;
    alice.connect_token(&user_token("alice")).await?;
    let sub = alice.call(json!({ "subscribe": { "channel": ROOM } })).await?;
    let epoch = sub["subscribe"]["epoch"].as_str().context("epoch")?.to_owned();
    ok(&mut alice, "message.send", json!({ "channel": ROOM, "data": { "text": "one" } })).await?;
    ok(&mut alice, "message.send", json!({ "channel": ROOM, "data": { "text": "two" } })).await?;
    drop(alice);

    ok(&mut bob, "reaction.add", json!({ "channel": ROOM, "offset": 1, "reaction": "👍" })).await?;
    ok(&mut bob, "message.send", json!({ "channel": ROOM, "data": { "text": "three" } })).await?;
    gw.api().result("message_edit", json!({ "channel": ROOM, "offset": 2, "data": { "text": "TWO" } })).await?;
    gw.api().result("message_delete", json!({ "channel": ROOM, "offset": 1 })).await?;

    let mut alice = gw.ws().await?;
    alice.connect_token(&user_token("alice")).await?;
    let sub =
        alice.call(json!({ "subscribe": { "channel": ROOM, "recover": true, "offset": 2, "epoch": epoch } })).await?;
    assert_eq!(sub["subscribe"]["recovered"], true, "{sub}");
    let recovered: Vec<(u64, String, String, String)> = publications(&sub["subscribe"]).iter().map(key).collect();
    assert_eq!(
        recovered,
        vec![
            (3, "reaction.add".into(), "1".into(), "bob".into()),
            (4, "message".into(), "".into(), "bob".into()),
            (5, "edit".into(), "2".into(), "".into()),
            (6, "delete".into(), "1".into(), "".into()),
        ]
    );
    let agg = ok(&mut alice, "message.get", json!({ "channel": ROOM, "offset": 2 })).await?;
    assert_eq!((&agg["data"], agg["edits"].as_u64()), (&json!({ "text": "TWO" }), Some(1)));
    gw.shutdown().await
}

#[tokio::test]
async fn server_api_acts_for_users_and_reads_history_with_aggregates() -> Result<()> {
    let gw = TestGateway::start_with(chat_config()).await?;
    let api = gw.api();
    let sent = api.result("message_send", json!({ "channel": ROOM, "user": "alice", "data": { "text": "a" } })).await?;
    assert_eq!(sent["offset"], 1);
    api.result("message_send", json!({ "channel": ROOM, "user": "bob", "data": { "text": "b" }, "reply_to": 1 }))
        .await?;
    api.result("reaction_add", json!({ "channel": ROOM, "user": "bob", "offset": 1, "reaction": "❤" })).await?;
    api.result("message_edit", json!({ "channel": ROOM, "offset": 1, "data": { "text": "a2" } })).await?;
    api.result("read_mark", json!({ "channel": ROOM, "user": "alice", "offset": 2 })).await?;
    let unread = api.result("unread_counts", json!({ "channels": [ROOM], "user": "bob" })).await?;
    assert_eq!(unread["channels"][ROOM], json!({ "last_read": 0, "unread": 1 }));
    let missing = api.call("read_mark", json!({ "channel": ROOM, "offset": 2 })).await?;
    assert_eq!(missing["error"]["code"], 107, "{missing}");

    let body = json!({ "channel": ROOM, "limit": 10, "user": "bob" }).to_string();
    let history =
        http_request(gw.addr, "POST", "/api/history?aggregate=true", &[("x-api-key", API_KEY)], &body).await?;
    let result = &history.body["result"];
    assert_eq!(result["offset"], 4, "{}", history.body);
    assert_eq!(
        result["messages"],
        json!([
            { "offset": 1, "user": "alice", "data": { "text": "a2" }, "edits": 1, "deleted": false, "replies": 1,
              "reactions": [{ "reaction": "❤", "count": 1, "users": ["bob"], "me": true }] },
            { "offset": 2, "user": "bob", "data": { "text": "b" }, "edits": 0, "deleted": false, "reply_to": 1,
              "thread": 1, "replies": 0, "reactions": [] },
        ])
    );
    let plain = api.result("history", json!({ "channel": ROOM, "limit": 10 })).await?;
    assert_eq!(publications(&plain).len(), 4, "without aggregate the stream is returned as stored");
    let got = api.result("message_get", json!({ "channel": ROOM, "offset": 1, "user": "alice" })).await?;
    assert_eq!(got["reactions"][0]["me"], false);
    gw.shutdown().await
}

#[tokio::test]
async fn status_shows_in_presence_and_the_api_and_last_seen_outlives_the_connection() -> Result<()> {
    let gw = TestGateway::start_with(chat_config()).await?;
    let mut alice = member(&gw, "alice", json!({ "info": { "name": "Alice" } }), ROOM).await?;
    let set = ok(&mut alice, "status.set", json!({ "state": "busy", "text": "in a meeting" })).await?;
    assert_eq!(set, json!({ "user": "alice", "state": "busy", "text": "in a meeting", "online": true }));
    let e = err(&mut alice, "status.set", json!({ "state": "sleeping" })).await?;
    assert_eq!(e["code"], 107);

    let presence = alice.call(json!({ "presence": { "channel": ROOM } })).await?;
    let entries: Vec<Value> =
        presence["presence"]["presence"].as_object().context("presence")?.values().cloned().collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0]["conn_info"],
        json!({ "name": "Alice", "status": { "state": "busy", "text": "in a meeting" } })
    );

    let statuses = gw.api().result("status", json!({ "users": ["alice", "nobody"] })).await?;
    assert_eq!(
        statuses["statuses"],
        json!([
            { "user": "alice", "state": "busy", "text": "in a meeting", "online": true },
            { "user": "nobody", "state": "offline", "text": "", "online": false },
        ])
    );
    let before = now_secs();
    drop(alice);
    // The close is seen by the server asynchronously: wait for it.
    let deadline = tokio::time::Instant::now() + WAIT;
    let gone = loop {
        let statuses = gw.api().result("status", json!({ "users": ["alice"] })).await?;
        if statuses["statuses"][0]["online"] == false {
            break statuses["statuses"][0].clone();
        }
        ensure!(tokio::time::Instant::now() < deadline, "alice still online: {statuses}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(gone["state"], "offline");
    let last_seen = gone["last_seen"].as_u64().context("last_seen")?;
    assert!((before..=now_secs()).contains(&last_seen), "{gone}");
    gw.shutdown().await
}

/// Builds an example plugin (`plugins/<name>`, the plugins workspace) for
/// wasm32-wasip2 once and returns its `.wasm`.
fn example_plugin(name: &str) -> Result<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?.to_owned();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("example-plugins");
    let output = std::process::Command::new("cargo")
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "-p", name])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(root.join("plugins"))
        .output()
        .context("run cargo for an example plugin")?;
    if !output.status.success() {
        bail!("building plugin {name} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(target.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_"))))
}

#[tokio::test]
async fn moderation_and_redaction_plugins_apply_to_edits() -> Result<()> {
    let mut moderation = toml::Table::new();
    moderation.insert("block".into(), toml::Value::Array(vec!["badword".into()]));
    moderation.insert("mask".into(), toml::Value::Array(vec!["darn".into()]));
    let mut config = chat_config();
    config.plugins = vec![
        PluginConfig {
            name: "moderation".into(),
            path: example_plugin("moderation")?.display().to_string(),
            config: moderation,
            timeout_ms: 1000,
            ..PluginConfig::default()
        },
        PluginConfig {
            name: "pii".into(),
            path: example_plugin("pii-redact")?.display().to_string(),
            timeout_ms: 1000,
            ..PluginConfig::default()
        },
    ];
    config.pipelines.publish = vec!["moderation".into(), "pii".into()];
    config.plugin_runtime.cache_dir = std::env::temp_dir().join("switchboard-test-plugin-cache").display().to_string();
    let gw = TestGateway::start_with(config).await?;
    let mut alice = member(&gw, "alice", json!({}), ROOM).await?;
    let mut bob = member(&gw, "bob", json!({}), ROOM).await?;
    ok(&mut alice, "message.send", json!({ "channel": ROOM, "data": { "text": "hello" } })).await?;

    let e =
        err(&mut alice, "message.edit", json!({ "channel": ROOM, "offset": 1, "data": { "text": "badword" } })).await?;
    assert_eq!(e["code"], 403, "{e}");
    ok(
        &mut alice,
        "message.edit",
        json!({ "channel": ROOM, "offset": 1, "data": { "text": "darn, mail me at a@example.com" } }),
    )
    .await?;
    assert_eq!(next_pub(&mut bob, ROOM).await?["offset"], 1);
    let edit = next_pub(&mut bob, ROOM).await?;
    assert_eq!(edit["tags"]["sb.kind"], "edit");
    assert_eq!(edit["data"], json!({ "text": "****, mail me at [redacted:email]" }));
    let agg = ok(&mut bob, "message.get", json!({ "channel": ROOM, "offset": 1 })).await?;
    assert_eq!(
        (agg["edits"].as_u64(), &agg["data"]),
        (Some(1), &json!({ "text": "****, mail me at [redacted:email]" }))
    );
    gw.shutdown().await
}

/// Cost of an aggregate read (`message.get`) that folds a full scan window:
/// a message followed by 999 reactions. Run with
/// `cargo test -p switchboard -p switchboard-e2e -- --ignored chat_aggregate_read_latency --nocapture`
/// (numbers in BENCHMARKS.md).
#[tokio::test]
#[ignore = "a measurement, not a check; run explicitly"]
async fn chat_aggregate_read_latency() -> Result<()> {
    let gw = TestGateway::start_with(chat_config()).await?;
    let api = gw.api();
    api.result("message_send", json!({ "channel": ROOM, "user": "alice", "data": { "text": "hot" } })).await?;
    let mut ws = member(&gw, "bob", json!({}), ROOM).await?;
    for n in 0..999 {
        let user = format!("u{n}");
        api.result("reaction_add", json!({ "channel": ROOM, "user": user, "offset": 1, "reaction": "👍" })).await?;
    }
    let mut samples = Vec::new();
    for _ in 0..200 {
        let started = std::time::Instant::now();
        let agg = ok(&mut ws, "message.get", json!({ "channel": ROOM, "offset": 1 })).await?;
        samples.push(started.elapsed());
        ensure!(agg["reactions"][0]["count"] == 999, "{agg}");
    }
    samples.sort();
    println!(
        "message.get over 1000 publications: p50 {:?} p90 {:?} p99 {:?}",
        samples[100], samples[180], samples[198]
    );
    gw.shutdown().await
}
