//! Disk history (`[engine] history_storage = "disk"`) across real process
//! deaths: kill -9 loses no acknowledged publication, a damaged store is
//! refused (or reset to new epochs), retention holds across restarts.
//!
//! These tests run the real `switchboard` binary as a child process
//! ([`GatewayProcess`]) so that SIGKILL really kills the process holding the
//! store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::{GatewayProcess, WAIT, offsets, publications, test_config};
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use switchboard::config::{Config, FsyncPolicy, HistoryStorage, StorageRecover};

/// `test_config` with disk history for every channel under `data_dir`.
pub(crate) fn disk_config(data_dir: &std::path::Path, fsync: FsyncPolicy) -> Config {
    let mut config = test_config();
    config.engine.history_storage = HistoryStorage::Disk;
    config.engine.data_dir = data_dir.display().to_string();
    config.engine.history_fsync = fsync;
    config.channels.namespaces[0].history_size = 10_000;
    config.channels.namespaces[0].history_ttl_secs = 3600;
    config.client.history_max_publication_limit = 10_000;
    config.client.recovery_max_publication_limit = 10_000;
    config
}

/// The full history of `channel`: publications (oldest first) and position.
async fn history(gw: &GatewayProcess, channel: &str) -> Result<(Vec<Value>, u64, String)> {
    let result = gw.api().result("history", json!({ "channel": channel, "limit": 10_000 })).await?;
    let epoch = result["epoch"].as_str().context("epoch")?.to_owned();
    Ok((publications(&result), result["offset"].as_u64().unwrap_or(0), epoch))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_publication() -> Result<()> {
    for fsync in [FsyncPolicy::Always, FsyncPolicy::BatchMs(5)] {
        let data = tempfile::tempdir()?;
        let mut gw = GatewayProcess::start(disk_config(data.path(), fsync)).await?;
        let channel = "chat:durable";

        // A subscriber records what it saw before the kill.
        let (mut ws, _) = gw.connect("watcher").await?;
        let sub = ws.call(json!({ "subscribe": { "channel": channel } })).await?;
        let epoch = sub["subscribe"]["epoch"].as_str().context("epoch")?.to_owned();
        ensure!(!epoch.is_empty(), "{sub}");

        // Four publishers publish until the process dies under them.
        let acked: Arc<parking_lot::Mutex<BTreeMap<u64, Value>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut publishers = Vec::new();
        for p in 0..4 {
            let (api, acked, stop, epoch) = (gw.api(), acked.clone(), stop.clone(), epoch.clone());
            publishers.push(tokio::spawn(async move {
                for i in 0..10_000 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let data = json!({ "p": p, "i": i });
                    match api.call("publish", json!({ "channel": channel, "data": data })).await {
                        Ok(body) if body.get("result").is_some() => {
                            let offset = body["result"]["offset"].as_u64().expect("offset");
                            assert_eq!(body["result"]["epoch"], json!(epoch), "{body}");
                            acked.lock().insert(offset, data);
                        }
                        // The process is gone (or going): this publish was never acked.
                        _ => return,
                    }
                }
            }));
        }
        // Kill once enough publishes were acked, while they keep coming.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while acked.lock().len() < 150 {
            ensure!(tokio::time::Instant::now() < deadline, "only {} acked", acked.lock().len());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Live deliveries seen so far (offsets), read for a bounded time.
        let mut seen = Vec::new();
        let reading = tokio::time::Instant::now() + Duration::from_millis(300);
        while let Ok(Ok(push)) = tokio::time::timeout_at(reading, ws.next_push()).await {
            if let Some(o) = push["pub"]["offset"].as_u64() {
                seen.push(o);
            }
        }
        let expected_seen: Vec<u64> = (1..=seen.len() as u64).collect();
        assert_eq!(seen, expected_seen, "{fsync:?}: live deliveries are in offset order without gaps");
        gw.kill().await?;
        stop.store(true, Ordering::Relaxed);
        for p in publishers {
            p.await?;
        }
        let acked = acked.lock().clone();
        let last_seen = *seen.last().context("the subscriber saw publications before the kill")?;

        gw.restart().await?;
        let (pubs, top, epoch_after) = history(&gw, channel).await?;
        assert_eq!(epoch_after, epoch, "{fsync:?}: the epoch survives kill -9");
        let offs = offsets(&pubs);
        let expected: Vec<u64> = (1..=top).collect();
        assert_eq!(offs, expected, "{fsync:?}: offsets are continuous from 1 to the top");
        let stored: BTreeMap<u64, Value> =
            pubs.iter().map(|p| (p["offset"].as_u64().unwrap(), p["data"].clone())).collect();
        for (offset, data) in &acked {
            assert_eq!(stored.get(offset), Some(data), "{fsync:?}: acked offset {offset} lost or changed");
        }
        assert!(top >= *acked.keys().last().unwrap(), "{fsync:?}: top {top} below an acked offset");
        assert!(top <= acked.len() as u64 + 4, "{fsync:?}: at most one unacked publish per publisher stored");

        // The subscriber resumes: everything after what it saw, recovered.
        let (mut ws, _) = gw.connect("watcher").await?;
        let reply = ws
            .call(json!({ "subscribe": { "channel": channel, "recover": true, "offset": last_seen, "epoch": epoch } }))
            .await?;
        let result = &reply["subscribe"];
        assert_eq!(result["recovered"], json!(true), "{fsync:?}: {reply}");
        assert_eq!(offsets(&publications(result)), ((last_seen + 1)..=top).collect::<Vec<_>>());

        // Offsets continue after the restart.
        let next = gw.api().result("publish", json!({ "channel": channel, "data": { "after": true } })).await?;
        assert_eq!(next["offset"], json!(top + 1), "{next}");
        assert_eq!(next["epoch"], json!(epoch));
        gw.terminate().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_refused_or_reset_to_a_new_epoch() -> Result<()> {
    for damage in ["truncate", "flip"] {
        let data = tempfile::tempdir()?;
        let mut config = disk_config(data.path(), FsyncPolicy::Always);
        let mut gw = GatewayProcess::start(config.clone()).await?;
        let channel = "chat:damaged";
        let mut epoch = String::new();
        for i in 0..20 {
            let r = gw
                .api()
                .result("publish", json!({ "channel": channel, "data": { "marker": format!("m{i:04}") } }))
                .await?;
            epoch = r["epoch"].as_str().unwrap().to_owned();
        }
        gw.terminate().await?;

        let file = data.path().join("history.redb");
        let mut bytes = std::fs::read(&file)?;
        match damage {
            "truncate" => bytes.truncate(bytes.len() / 2),
            _ => {
                // Old copies of the page may linger in freed space: damage every one.
                let hits: Vec<usize> =
                    bytes.windows(5).enumerate().filter(|(_, w)| w == b"m0007").map(|(i, _)| i).collect();
                ensure!(!hits.is_empty(), "payload not in the file");
                for at in hits {
                    bytes[at + 4] = b'9';
                }
            }
        }
        std::fs::write(&file, &bytes)?;

        // refuse (the default): the process exits with a clear message.
        let (code, log) = gw.run_to_exit().await?;
        assert_eq!(code, Some(1), "{damage}: {log}");
        assert!(log.contains("is corrupted or truncated") && log.contains("history.redb"), "{damage}: {log}");
        assert!(log.contains("history_storage_recover"), "{damage}: the message names the way out: {log}");

        // reset: starts, with a new epoch; an old position is not recovered.
        config.engine.history_storage_recover = StorageRecover::Reset;
        gw.set_config(&config)?;
        gw.restart().await?;
        let (mut ws, _) = gw.connect("u").await?;
        let reply = ws
            .call(json!({ "subscribe": { "channel": channel, "recover": true, "offset": 5, "epoch": epoch } }))
            .await?;
        let result = &reply["subscribe"];
        // `recovered: false` is omitted from the reply.
        assert!(!result["recovered"].as_bool().unwrap_or(false), "{damage}: {reply}");
        assert_eq!(result["was_recovering"], json!(true), "{damage}: {reply}");
        assert!(publications(result).is_empty(), "{reply}");
        assert_ne!(result["epoch"], json!(epoch), "{damage}: a reset store starts a new epoch");
        assert_eq!(result["offset"].as_u64().unwrap_or(0), 0);
        let aside: Vec<_> = std::fs::read_dir(data.path())?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("history.redb.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "the damaged file is kept aside for inspection");
        gw.terminate().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_idempotency_keys_survive_a_restart() -> Result<()> {
    let data = tempfile::tempdir()?;
    let mut config = disk_config(data.path(), FsyncPolicy::BatchMs(2));
    config.channels.namespaces[0].history_size = 5;
    let mut gw = GatewayProcess::start(config).await?;
    let channel = "chat:retained";
    let mut first = Value::Null;
    for i in 1..=12 {
        let mut params = json!({ "channel": channel, "data": { "i": i } });
        if i == 3 {
            params["idempotency_key"] = json!("once");
        }
        let r = gw.api().result("publish", params).await?;
        if i == 3 {
            first = r;
        }
    }
    gw.kill().await?;
    gw.restart().await?;
    let (pubs, top, _) = history(&gw, channel).await?;
    assert_eq!(top, 12);
    assert_eq!(offsets(&pubs), [8, 9, 10, 11, 12], "history_size 5 holds on disk");
    assert_eq!(pubs[0]["data"], json!({ "i": 8 }));
    // The idempotency key survived: the repeat publishes nothing.
    let again = gw
        .api()
        .result("publish", json!({ "channel": channel, "data": { "i": 99 }, "idempotency_key": "once" }))
        .await?;
    assert_eq!(again, first);
    let (_, top, _) = history(&gw, channel).await?;
    assert_eq!(top, 12, "a repeated idempotency key publishes nothing after a restart");
    gw.terminate().await?;
    Ok(())
}

/// Polls `/ready` until it answers `want`.
pub(crate) async fn wait_ready(gw: &GatewayProcess, want: u16) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = crate::http_request(gw.addr, "GET", "/ready", &[], "").await?.status;
        if status == want {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("/ready stayed {status}, wanted {want}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
