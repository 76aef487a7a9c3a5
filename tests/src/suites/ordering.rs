//! Publication order: offsets ascend, and every subscriber sees one order.

use serde_json::{Value, json};

use crate::*;

/// Reads `n` publications on `channel` (skipping join/leave pushes).
async fn read_pubs(ws: &mut WsClient, channel: &str, n: usize) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let push = ws.next_push().await?;
        if push.get("pub").is_some() {
            assert_eq!(push["channel"], json!(channel));
            out.push(push["pub"].clone());
        }
    }
    Ok(out)
}

#[tokio::test]
async fn sequential_publishes_arrive_in_offset_order() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut ws, _) = gw.connect("alice").await?;
    ws.call(json!({"subscribe": {"channel": "chat:o"}})).await?;
    let n = 150u64;
    for i in 1..=n {
        let res = gw.api().result("publish", json!({"channel": "chat:o", "data": {"i": i}})).await?;
        assert_eq!(res["offset"], json!(i));
    }
    let pubs = read_pubs(&mut ws, "chat:o", n as usize).await?;
    assert_eq!(offsets(&pubs), (1..=n).collect::<Vec<_>>());
    let data: Vec<u64> = pubs.iter().map(|p| p["data"]["i"].as_u64().unwrap()).collect();
    assert_eq!(data, (1..=n).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn concurrent_publishes_arrive_in_one_order_everywhere() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let (mut a, _) = gw.connect("alice").await?;
    let (mut b, _) = gw.connect("bob").await?;
    a.call(json!({"subscribe": {"channel": "chat:c"}})).await?;
    b.call(json!({"subscribe": {"channel": "chat:c"}})).await?;

    let (tasks, per_task) = (4u64, 40u64);
    let mut handles = Vec::new();
    for t in 0..tasks {
        let api = gw.api();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                api.result("publish", json!({"channel": "chat:c", "data": {"t": t, "i": i}})).await?;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let total = (tasks * per_task) as usize;
    let pa = read_pubs(&mut a, "chat:c", total).await?;
    let pb = read_pubs(&mut b, "chat:c", total).await?;
    assert_eq!(offsets(&pa), (1..=total as u64).collect::<Vec<_>>());
    assert_eq!(pa, pb, "both subscribers see the same sequence");
    // Each task's own publications keep their order.
    for t in 0..tasks {
        let seq: Vec<u64> =
            pa.iter().filter(|p| p["data"]["t"] == json!(t)).map(|p| p["data"]["i"].as_u64().unwrap()).collect();
        assert_eq!(seq, (0..per_task).collect::<Vec<_>>(), "task {t}");
    }
    Ok(())
}

#[tokio::test]
async fn recovering_subscribe_during_publishing_has_no_gap_or_duplicate() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let first = gw.api().result("publish", json!({"channel": "chat:live", "data": {"i": 1}})).await?;
    let epoch = first["epoch"].clone();
    let total = 120u64;
    let api = gw.api();
    let publisher = tokio::spawn(async move {
        for i in 2..=total {
            api.result("publish", json!({"channel": "chat:live", "data": {"i": i}})).await?;
        }
        anyhow::Ok(())
    });
    // Wait until publishing is under way, then subscribe mid-stream.
    let mut top = 0;
    for _ in 0..10_000 {
        top = gw.api().result("history", json!({"channel": "chat:live"})).await?["offset"].as_u64().unwrap_or(0);
        if top >= 10 {
            break;
        }
    }
    assert!(top >= 10, "publisher stalled at {top}");
    let (mut ws, _) = gw.connect("alice").await?;
    let reply =
        ws.call(json!({"subscribe": {"channel": "chat:live", "recover": true, "offset": 1, "epoch": epoch}})).await?;
    let sub = &reply["subscribe"];
    assert_eq!(sub["recovered"], json!(true), "{reply}");
    let mut seen = offsets(&publications(sub));
    assert_eq!(sub["offset"].as_u64(), seen.last().copied(), "position is the last recovered offset");
    publisher.await??;
    let remaining = (total - 1) as usize - seen.len();
    let live = read_pubs(&mut ws, "chat:live", remaining).await?;
    seen.extend(offsets(&live));
    assert_eq!(seen, (2..=total).collect::<Vec<_>>());
    Ok(())
}
