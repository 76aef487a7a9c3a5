//! Slow or oversized HTTP request heads are cut off, not buffered forever.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::*;

#[tokio::test]
async fn incomplete_headers_are_dropped_after_the_header_timeout() -> anyhow::Result<()> {
    let mut config = test_config();
    config.server.header_read_timeout_secs = 1;
    let gw = TestGateway::start_with(config).await?;
    let mut stream = TcpStream::connect(gw.addr).await?;
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ").await?;
    let started = Instant::now();
    let mut buf = Vec::new();
    // The server must end the connection by itself; WAIT bounds the test.
    tokio::time::timeout(WAIT, stream.read_to_end(&mut buf)).await??;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "closed too early: {elapsed:?}");
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"), "a partial request must not be served");
    Ok(())
}

#[tokio::test]
async fn oversized_headers_are_rejected() -> anyhow::Result<()> {
    let gw = TestGateway::start().await?;
    let mut stream = TcpStream::connect(gw.addr).await?;
    let huge = "a".repeat(64 * 1024);
    let request = format!("GET /health HTTP/1.1\r\nhost: x\r\nx-big: {huge}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut buf)).await?;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 431"), "got {text:?}");
    Ok(())
}
