//! Connections as kube-apiserver makes them: TLS verified against the
//! webhook's CA bundle (rustls, ring), ALPN h2 or http/1.1, kept open.

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::check::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// HTTP/2 over TLS (ALPN h2), streams multiplexed on each connection.
    #[value(name = "h2")]
    Http2,
    /// HTTP/1.1 over TLS, one request at a time per kept-alive connection.
    #[value(name = "h1")]
    Http1,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http2 => "h2",
            Protocol::Http1 => "http/1.1",
        }
    }
}

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("{0:?} is not an https:// URL")]
    NotHttps(String),
    #[error("{0:?} has no port")]
    NoPort(String),
    #[error("{host:?} is not a loopback address: berth-load only targets this machine")]
    NotLoopback { host: String },
}

/// Where reviews go: `https://127.0.0.1:8443/mutate`. Only loopback.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    /// The name the certificate must be valid for (SNI).
    pub server_name: String,
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(url: &str) -> Result<Self, TargetError> {
        let rest = url.strip_prefix("https://").ok_or_else(|| TargetError::NotHttps(url.to_owned()))?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        let (host, port) = authority.rsplit_once(':').ok_or_else(|| TargetError::NoPort(url.to_owned()))?;
        let port: u16 = port.parse().map_err(|_| TargetError::NoPort(url.to_owned()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            other => other.parse().map_err(|_| TargetError::NotLoopback { host: other.to_owned() })?,
        };
        if !ip.is_loopback() {
            return Err(TargetError::NotLoopback { host: host.to_owned() });
        }
        Ok(Target { addr: SocketAddr::new(ip, port), path: path.to_owned(), server_name: host.to_owned() })
    }
}

#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("reading the CA bundle {path}")]
    Ca {
        path: PathBuf,
        #[source]
        error: rustls_pki_types::pem::Error,
    },
    #[error("{path} holds no usable CA certificate")]
    NoCa { path: PathBuf },
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("building the TLS client configuration")]
    Config(#[source] rustls::Error),
}

/// How every connection of a run is made.
#[derive(Clone)]
pub struct Connector {
    tls: TlsConnector,
    name: ServerName<'static>,
    addr: SocketAddr,
    protocol: Protocol,
}

impl Connector {
    pub fn new(target: &Target, ca: &Path, protocol: Protocol) -> Result<Self, TlsSetupError> {
        let mut roots = RootCertStore::empty();
        let certs =
            CertificateDer::pem_file_iter(ca).map_err(|error| TlsSetupError::Ca { path: ca.to_owned(), error })?;
        for cert in certs {
            let cert = cert.map_err(|error| TlsSetupError::Ca { path: ca.to_owned(), error })?;
            // A bundle may carry certificates rustls cannot use; the rest still count.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(TlsSetupError::NoCa { path: ca.to_owned() });
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(TlsSetupError::Config)?
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = match protocol {
            Protocol::Http2 => vec![b"h2".to_vec()],
            Protocol::Http1 => vec![b"http/1.1".to_vec()],
        };
        let name = ServerName::try_from(target.server_name.as_str())
            .map_err(|_| TlsSetupError::ServerName(target.server_name.clone()))?
            .to_owned();
        Ok(Self { tls: TlsConnector::from(Arc::new(config)), name, addr: target.addr, protocol })
    }

    /// A new connection, its TLS handshake done and HTTP set up.
    pub async fn connect(&self) -> Result<Connection, ConnectError> {
        let tcp = TcpStream::connect(self.addr).await.map_err(ConnectError::Tcp)?;
        // Small requests and answers: do not wait to fill segments.
        let _ = tcp.set_nodelay(true);
        let tls = self.tls.connect(self.name.clone(), tcp).await.map_err(ConnectError::Tls)?;
        let io = TokioIo::new(tls);
        match self.protocol {
            Protocol::Http2 => {
                let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(ConnectError::Http)?;
                tokio::spawn(connection);
                Ok(Connection::H2(sender))
            }
            Protocol::Http1 => {
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(io).await.map_err(ConnectError::Http)?;
                tokio::spawn(connection);
                Ok(Connection::H1(sender))
            }
        }
    }
}

#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("connecting")]
    Tcp(#[source] std::io::Error),
    #[error("TLS handshake")]
    Tls(#[source] std::io::Error),
    #[error("HTTP handshake")]
    Http(#[source] hyper::Error),
}

/// One connection. An h2 connection is shared by several workers, each
/// holding a clone of its sender; an HTTP/1.1 one belongs to one worker.
pub enum Connection {
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
}

impl Connection {
    /// A sender for another worker on the same h2 connection.
    pub fn share(&self) -> Option<Connection> {
        match self {
            Connection::H2(sender) => Some(Connection::H2(sender.clone())),
            Connection::H1(_) => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Connection::H2(sender) => sender.is_closed(),
            Connection::H1(sender) => sender.is_closed(),
        }
    }

    /// POST `body` to `path`; the status and the whole answer.
    pub async fn post(&mut self, path: &str, host: &str, body: Bytes) -> Result<(u16, Bytes), Failure> {
        let request = Request::post(path)
            .header("host", host)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(Full::new(body))
            .map_err(|_| Failure::NotAccepted)?;
        let response = match self {
            Connection::H2(sender) => {
                sender.ready().await.map_err(|_| Failure::NotAccepted)?;
                sender.send_request(request).await
            }
            Connection::H1(sender) => {
                sender.ready().await.map_err(|_| Failure::NotAccepted)?;
                sender.send_request(request).await
            }
        };
        let response = response.map_err(|_| Failure::NotAccepted)?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|_| Failure::Broken)?;
        Ok((status, body.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        let target: Target = "https://127.0.0.1:8443/mutate".parse().expect("loopback");
        assert_eq!(target.addr, "127.0.0.1:8443".parse().expect("addr"));
        assert_eq!(target.path, "/mutate");
        assert_eq!(target.server_name, "127.0.0.1");
        let target: Target = "https://localhost:9/validate".parse().expect("localhost");
        assert_eq!((target.addr.ip(), target.server_name.as_str()), (IpAddr::V4(Ipv4Addr::LOCALHOST), "localhost"));
        let target: Target = "https://[::1]:8443".parse().expect("v6 loopback");
        assert_eq!((target.path.as_str(), target.server_name.as_str()), ("/", "::1"));
        assert!(matches!("https://10.0.0.1:8443/mutate".parse::<Target>(), Err(TargetError::NotLoopback { .. })));
        assert!(matches!("https://example.com:443/".parse::<Target>(), Err(TargetError::NotLoopback { .. })));
        assert!(matches!("http://127.0.0.1:8443/".parse::<Target>(), Err(TargetError::NotHttps(_))));
        assert!(matches!("https://127.0.0.1/".parse::<Target>(), Err(TargetError::NoPort(_))));
    }
}
