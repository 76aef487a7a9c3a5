//! Presence, presence stats and join/leave pushes.

use serde_json::json;

use crate::*;

/// Subscribes `ws` to `channel` and consumes its own join push.
async fn join(ws: &mut WsClient, channel: &str) -> anyhow::Result<()> {
    let reply = ws.call(json!({"subscribe": {"channel": channel}})).await?;
    assert!(reply.get("subscribe").is_some(), "{reply}");
    let push = ws.next_push().await?;
    assert!(push.get("join").is_some(), "{push}");
    Ok(())
}

#[tokio::test]
async fn presence_and_stats_count_clients_and_users() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut a1, c1) = gw.connect("alice").await?;
    let (mut a2, c2) = gw.connect("alice").await?;
    let (mut b, c3) = gw.connect("bob").await?;
    join(&mut a1, "chat:room").await?;
    join(&mut a2, "chat:room").await?;
    join(&mut b, "chat:room").await?;

    let reply = a1.call(json!({"presence": {"channel": "chat:room"}})).await?;
    let presence = reply["presence"]["presence"].as_object().expect("presence map").clone();
    assert_eq!(presence.len(), 3, "{reply}");
    for (connect, user) in [(&c1, "alice"), (&c2, "alice"), (&c3, "bob")] {
        let id = connect["client"].as_str().unwrap();
        assert_eq!(presence[id]["client"], json!(id));
        assert_eq!(presence[id]["user"], json!(user));
    }

    let reply = b.call(json!({"presence_stats": {"channel": "chat:room"}})).await?;
    assert_eq!(reply["presence_stats"], json!({"num_clients": 3, "num_users": 2}), "{reply}");
    let api = gw.api().result("presence_stats", json!({"channel": "chat:room"})).await?;
    assert_eq!(api, json!({"num_clients": 3, "num_users": 2}));
    let api = gw.api().result("presence", json!({"channel": "chat:room"})).await?;
    assert_eq!(api["presence"].as_object().unwrap().len(), 3);

    // One of alice's connections leaves: still two users, two clients.
    a2.call(json!({"unsubscribe": {"channel": "chat:room"}})).await?;
    let api = gw.api().result("presence_stats", json!({"channel": "chat:room"})).await?;
    assert_eq!(api, json!({"num_clients": 2, "num_users": 2}));
    // Bob disconnects: his entry goes (poll: cleanup runs after the socket drops).
    drop(b);
    let mut stats = json!(null);
    for _ in 0..500 {
        stats = gw.api().result("presence_stats", json!({"channel": "chat:room"})).await?;
        if stats == json!({"num_clients": 1, "num_users": 1}) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(stats, json!({"num_clients": 1, "num_users": 1}));
    Ok(())
}

#[tokio::test]
async fn presence_requires_subscription() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    let reply = ws.call(json!({"presence": {"channel": "chat:room"}})).await?;
    assert_eq!(reply["error"]["code"], json!(103), "{reply}");
    let reply = ws.call(json!({"presence_stats": {"channel": "chat:room"}})).await?;
    assert_eq!(reply["error"]["code"], json!(103), "{reply}");
    Ok(())
}

#[tokio::test]
async fn join_and_leave_pushes() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut alice, _) = gw.connect("alice").await?;
    join(&mut alice, "chat:jl").await?;

    let (mut bob, bob_connect) = gw.connect("bob").await?;
    join(&mut bob, "chat:jl").await?;
    let push = alice.next_push().await?;
    assert_eq!(push["channel"], json!("chat:jl"));
    assert_eq!(push["join"]["info"]["user"], json!("bob"));
    assert_eq!(push["join"]["info"]["client"], bob_connect["client"]);

    bob.call(json!({"unsubscribe": {"channel": "chat:jl"}})).await?;
    let push = alice.next_push().await?;
    assert_eq!(push["channel"], json!("chat:jl"));
    assert_eq!(push["leave"]["info"]["user"], json!("bob"));
    assert_eq!(push["leave"]["info"]["client"], bob_connect["client"]);

    // A second bob connection subscribes, then its socket goes away.
    let (mut bob2, bob2_connect) = gw.connect("bob").await?;
    join(&mut bob2, "chat:jl").await?;
    let push = alice.next_push().await?;
    assert_eq!(push["join"]["info"]["client"], bob2_connect["client"]);
    drop(bob2);
    let push = alice.next_push().await?;
    assert_eq!(push["channel"], json!("chat:jl"));
    assert_eq!(push["leave"]["info"]["user"], json!("bob"));
    assert_eq!(push["leave"]["info"]["client"], bob2_connect["client"]);
    Ok(())
}
