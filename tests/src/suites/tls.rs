//! TLS termination: `[server.tls]` serves HTTPS and WSS with the given
//! certificate.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_tungstenite::tungstenite::Message;

use crate::*;

struct Tls {
    _dir: tempfile::TempDir,
    connector: TlsConnector,
    config: switchboard::config::Config,
}

/// A self-signed certificate for `localhost`, written where the config
/// points, and a client that trusts exactly it.
fn tls_setup() -> anyhow::Result<Tls> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let dir = tempfile::tempdir()?;
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem())?;
    std::fs::write(&key_path, cert.signing_key.serialize_pem())?;

    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(cert.cert.der().to_vec()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();

    let mut config = test_config();
    config.server.tls.cert_path = cert_path.display().to_string();
    config.server.tls.key_path = key_path.display().to_string();
    Ok(Tls { _dir: dir, connector: TlsConnector::from(Arc::new(client)), config })
}

#[tokio::test]
async fn https_health_and_wss_connect_over_tls() -> anyhow::Result<()> {
    let tls = tls_setup()?;
    let gw = TestGateway::start_with(tls.config.clone()).await?;
    let name = ServerName::try_from("localhost")?;

    let tcp = TcpStream::connect(gw.addr).await?;
    let mut stream = tls.connector.connect(name.clone(), tcp).await?;
    stream.write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await?;
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with(r#"{"status":"ok"}"#), "{text}");

    let tcp = TcpStream::connect(gw.addr).await?;
    let stream = tls.connector.connect(name, tcp).await?;
    let url = format!("wss://localhost:{}/connection/websocket", gw.addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    let connect = json!({"id": 1, "connect": {"token": user_token("alice")}});
    ws.send(Message::text(connect.to_string())).await?;
    let reply = tokio::time::timeout(WAIT, ws.next()).await?.expect("a reply")?;
    let reply: Value = serde_json::from_str(reply.to_text()?)?;
    assert_eq!(reply["id"], json!(1));
    assert!(reply["connect"]["client"].as_str().is_some_and(|c| !c.is_empty()), "{reply}");
    Ok(())
}

#[tokio::test]
async fn plaintext_to_a_tls_listener_is_not_served() -> anyhow::Result<()> {
    let tls = tls_setup()?;
    let gw = TestGateway::start_with(tls.config).await?;
    let resp = http_request(gw.addr, "GET", "/health", &[], "").await;
    assert!(resp.is_err() || resp.is_ok_and(|r| r.status != 200), "plain HTTP must not reach the handlers");
    Ok(())
}

#[tokio::test]
async fn a_missing_certificate_fails_startup_with_the_key_path() -> anyhow::Result<()> {
    let mut config = test_config();
    config.server.tls.cert_path = "/nonexistent/cert.pem".into();
    config.server.tls.key_path = "/nonexistent/key.pem".into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let err = switchboard::run(config, listener, std::future::pending()).await.expect_err("must not start");
    let message = err.to_string();
    assert!(message.contains("server.tls") && message.contains("/nonexistent/cert.pem"), "{message}");
    Ok(())
}
