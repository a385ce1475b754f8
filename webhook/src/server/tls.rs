//! TLS for the admission listener: rustls, TLS 1.2 and 1.3, h2 and
//! http/1.1 over ALPN, a certificate that follows its files on disk
//! (cert-manager rotation) without dropping connections, and with
//! `--client-ca` the CA client certificates are verified against, which
//! follows its file the same way.

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
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
    #[error("{path}: a CA certificate that cannot be used")]
    BadCa {
        path: PathBuf,
        #[source]
        error: rustls::Error,
    },
    /// A PEM block that does not parse: a bundle half-written during a
    /// rotation must not load with a CA missing.
    #[error("{path}: a PEM block that does not parse")]
    BadPem {
        path: PathBuf,
        #[source]
        error: rustls_pki_types::pem::Error,
    },
    #[error("{path} cannot verify client certificates")]
    ClientVerifier {
        path: PathBuf,
        #[source]
        error: rustls::server::VerifierBuilderError,
    },
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

/// The listener's TLS: the serving certificate and, with `--client-ca`,
/// the client certificate verifier. A new CA takes a new rustls
/// configuration (the verifier holds its roots), so the configuration is
/// swapped whole and each connection takes the one current when it arrives.
/// The new configuration has a new session cache too, so a TLS session
/// verified under the old CA is not resumed under the new one.
pub struct Tls {
    cert: Arc<ReloadingCert>,
    client_ca: Option<ClientCa>,
    config: ArcSwap<ServerConfig>,
}

/// The `--client-ca` file and the bytes the current verifier was built from.
struct ClientCa {
    path: PathBuf,
    loaded_from: std::sync::Mutex<Vec<u8>>,
}

impl Tls {
    pub fn load(cert_path: &Path, key_path: &Path, client_ca: Option<&Path>) -> Result<Self, TlsError> {
        let cert = Arc::new(ReloadingCert::load(cert_path, key_path)?);
        let (client_ca, verifier) = match client_ca {
            Some(path) => {
                let raw = std::fs::read(path).map_err(|error| TlsError::Read { path: path.to_owned(), error })?;
                let verifier = client_verifier(path, &raw)?;
                (Some(ClientCa { path: path.to_owned(), loaded_from: std::sync::Mutex::new(raw) }), Some(verifier))
            }
            None => (None, None),
        };
        let config = server_config(cert.clone(), verifier)?;
        Ok(Self { cert, client_ca, config: ArcSwap::from_pointee(config) })
    }

    /// An acceptor for one new connection, with the configuration in force.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }

    /// Whether clients must present a certificate signed by `--client-ca`.
    pub fn verifies_clients(&self) -> bool {
        self.client_ca.is_some()
    }

    /// Re-read the client CA; rebuild the configuration if it changed and
    /// parses. Connections already open keep the CA they were verified by.
    fn reload_client_ca_if_changed(&self) -> Result<bool, TlsError> {
        let Some(ca) = &self.client_ca else { return Ok(false) };
        let raw = std::fs::read(&ca.path).map_err(|error| TlsError::Read { path: ca.path.clone(), error })?;
        let mut loaded = ca.loaded_from.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *loaded == raw {
            return Ok(false);
        }
        let verifier = client_verifier(&ca.path, &raw)?;
        self.config.store(Arc::new(server_config(self.cert.clone(), Some(verifier))?));
        *loaded = raw;
        Ok(true)
    }

    /// Poll the certificate, key and client CA files every `interval` for
    /// as long as the server runs. A file that fails to parse (caught
    /// mid-rotation) leaves what is in force and is tried again.
    pub fn watch(self: Arc<Self>, interval: Duration) {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let this = self.clone();
                let checked = tokio::task::spawn_blocking(move || {
                    (this.cert.reload_if_changed(), this.reload_client_ca_if_changed())
                })
                .await;
                let (cert, client_ca) = match checked {
                    Ok(checked) => checked,
                    Err(err) => {
                        tracing::warn!("certificate reload task failed: {err}");
                        continue;
                    }
                };
                match cert {
                    Ok(true) => tracing::info!(cert = %self.cert.cert_path.display(), "serving certificate reloaded"),
                    Ok(false) => {}
                    Err(err) => tracing::warn!("keeping the current certificate: {}", crate::error_chain(&err)),
                }
                match client_ca {
                    Ok(true) => {
                        let path = self.client_ca.as_ref().map(|ca| ca.path.display().to_string()).unwrap_or_default();
                        tracing::info!(client_ca = %path, "client CA reloaded");
                    }
                    Ok(false) => {}
                    Err(err) => tracing::warn!("keeping the current client CA: {}", crate::error_chain(&err)),
                }
            }
        });
    }
}

/// A verifier of client certificates against the CA certificates in `pem`.
/// It asks every client for a certificate and refuses the handshake of one
/// that presents a certificate the CA did not sign; a client that presents
/// none is let through the handshake and refused by the admission routes,
/// so that the kubelet's HTTPS probes (which carry no certificate) still
/// reach /healthz and /readyz.
fn client_verifier(path: &Path, pem: &[u8]) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|error| TlsError::BadPem { path: path.to_owned(), error })?;
        roots.add(cert).map_err(|error| TlsError::BadCa { path: path.to_owned(), error })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|error| TlsError::ClientVerifier { path: path.to_owned(), error })
}

/// The rustls configuration: safe defaults (TLS 1.2+), h2 preferred.
fn server_config(
    cert: Arc<ReloadingCert>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let mut config = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    }
    .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
