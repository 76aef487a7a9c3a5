//! The unchanged PyPI `cent` client (Centrifugo HTTP API) against `/api`:
//! publish, history, presence, presence_stats and an API error. The script
//! is `tests/sdk/python/api_test.py`; its packages are pinned by
//! `tests/sdk/python/requirements.txt` and installed into
//! `tests/sdk/python/.venv` (or the Python named by `SWITCHBOARD_PY`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::*;

fn py_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk").join("python")
}

fn python() -> PathBuf {
    match std::env::var_os("SWITCHBOARD_PY") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => py_dir().join(".venv").join("bin").join("python"),
    }
}

#[tokio::test]
async fn cent_python_client_publishes_and_reads_history_and_presence() -> Result<()> {
    let python = python();
    if !python.exists() {
        bail!(
            "no Python at {}: create the venv (python3 -m venv tests/sdk/python/.venv && \
             tests/sdk/python/.venv/bin/pip install -r tests/sdk/python/requirements.txt; \
             ./scripts/test.sh does it) or set SWITCHBOARD_PY",
            python.display()
        );
    }

    let gw = TestGateway::start().await?;
    let (mut ws, connect) = gw.connect("py-watcher").await?;
    let client_id = connect["client"].as_str().context("connect reply without client id")?.to_string();
    let sub = ws.call(json!({"subscribe": {"channel": "chat:py"}})).await?;
    assert!(sub.get("error").is_none(), "subscribe failed: {sub}");

    let child = tokio::process::Command::new(&python)
        .arg("api_test.py")
        .current_dir(py_dir())
        .env("SWITCHBOARD_API_URL", gw.http_url("/api"))
        .env("SWITCHBOARD_API_KEY", API_KEY)
        .env("SWITCHBOARD_CLIENT_ID", &client_id)
        .env("SWITCHBOARD_USER", "py-watcher")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {}", python.display()))?;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .context("api_test.py did not finish in 30 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("api_test.py failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}", out.status);
    }
    print!("{stdout}");
    assert!(stdout.contains("[cent] OK"), "no OK line:\n{stdout}\n{stderr}");

    // The watcher saw the three publications, in order, after its own join.
    let mut offsets = Vec::new();
    while offsets.len() < 3 {
        let push = ws.next_push().await?;
        if let Some(offset) = push["pub"]["offset"].as_u64() {
            assert_eq!(push["channel"], json!("chat:py"), "{push}");
            offsets.push(offset);
        }
    }
    assert_eq!(offsets, vec![1, 2, 3]);
    gw.shutdown().await?;
    Ok(())
}
