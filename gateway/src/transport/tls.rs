//! TLS termination with rustls (ring provider).

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use super::Error;
use crate::config::TlsConfig;

/// The acceptor for `[server.tls]`, or `None` when TLS is off.
pub fn acceptor(cfg: &TlsConfig) -> Result<Option<TlsAcceptor>, Error> {
    if cfg.cert_path.is_empty() && cfg.key_path.is_empty() {
        return Ok(None);
    }
    let certs = CertificateDer::pem_file_iter(&cfg.cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Tls(format!("cert_path {}: {e}", cfg.cert_path)))?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_path)
        .map_err(|e| Error::Tls(format!("key_path {}: {e}", cfg.key_path)))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}
