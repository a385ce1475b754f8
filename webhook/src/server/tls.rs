//! TLS for the admission listener: rustls, TLS 1.2 and 1.3, h2 and
//! http/1.1 over ALPN, and a certificate that follows its files on disk
//! (cert-manager rotation) without dropping connections.

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no usable PEM private key")]
    NoKey { path: PathBuf },
    #[error("the certificate and key do not go together")]
    Mismatch(#[source] rustls::Error),
    #[error("building the TLS configuration")]
    Config(#[source] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The serving certificate, swapped atomically when its files change.
/// Handshakes in progress keep the key they started with.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    loaded_from: std::sync::Mutex<Vec<u8>>,
}

impl ReloadingCert {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let (key, raw) = read_pair(cert_path, key_path)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: ArcSwap::from_pointee(key),
            loaded_from: std::sync::Mutex::new(raw),
        })
    }

    /// Re-read the files; swap if they changed and parse. A half-written
    /// pair (mid-rotation) fails to parse and is retried on the next poll.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let cert =
            std::fs::read(&self.cert_path).map_err(|error| TlsError::Read { path: self.cert_path.clone(), error })?;
        let key =
            std::fs::read(&self.key_path).map_err(|error| TlsError::Read { path: self.key_path.clone(), error })?;
        let raw = [cert.as_slice(), key.as_slice()].concat();
        let mut loaded = self.loaded_from.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *loaded == raw {
            return Ok(false);
        }
        let certified = certified_key(&self.cert_path, &cert, &self.key_path, &key)?;
        self.current.store(Arc::new(certified));
        *loaded = raw;
        Ok(true)
    }

    /// Poll the files every `interval` for as long as the server runs.
    pub fn watch(self: Arc<Self>, interval: Duration) {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let this = self.clone();
                match tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
                    Ok(Ok(true)) => tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded"),
                    Ok(Ok(false)) => {}
                    Ok(Err(err)) => tracing::warn!("keeping the current certificate: {}", crate::error_chain(&err)),
                    Err(err) => tracing::warn!("certificate reload task failed: {err}"),
                }
            }
        });
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(CertifiedKey, Vec<u8>), TlsError> {
    let cert = std::fs::read(cert_path).map_err(|error| TlsError::Read { path: cert_path.to_owned(), error })?;
    let key = std::fs::read(key_path).map_err(|error| TlsError::Read { path: key_path.to_owned(), error })?;
    let certified = certified_key(cert_path, &cert, key_path, &key)?;
    Ok((certified, [cert, key].concat()))
}

fn certified_key(cert_path: &Path, cert: &[u8], key_path: &Path, key: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path.to_owned() });
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| TlsError::NoKey { path: key_path.to_owned() })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(TlsError::Mismatch)
}

/// The rustls configuration: safe defaults (TLS 1.2+), h2 preferred.
pub fn server_config(cert: Arc<ReloadingCert>) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
