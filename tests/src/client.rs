//! A client that talks to berth the way kube-apiserver does: TLS verified
//! against the webhook's CA bundle, h2 when offered (or http/1.1), a
//! connection kept open across reviews, and, for `--client-ca`, a client
//! certificate as the apiserver's kubeconfig gives it one.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http2,
    Http1,
}

enum Sender {
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
}

/// How one request ended.
#[derive(Debug)]
pub enum Exchange {
    Complete(StatusCode, Bytes),
    NotAccepted(String),
    Broken(String),
}

/// One kept-alive connection to berth.
pub struct Client {
    sender: Sender,
    /// The peer certificate's DER, to tell which certificate was served.
    pub peer_certificate: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
}

/// A client certificate and its key (PEM files), presented to berth.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A TCP connection with Nagle's algorithm off, as kube-apiserver's (Go
/// sets TCP_NODELAY on every connection). With it on, a request written in
/// two pieces (h2 HEADERS, then DATA) waits for the server's delayed ACK,
/// about 40 ms, and every latency measured through it is mostly that.
pub async fn connect_tcp(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

pub fn tls_connector(ca: &Path, protocol: Protocol) -> TlsConnector {
    tls_connector_with(ca, protocol, None)
}

/// A connector that presents `identity`, if given, when asked for a
/// client certificate.
pub fn tls_connector_with(ca: &Path, protocol: Protocol, identity: Option<&Identity>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file readable") {
        roots.add(cert.expect("CA is PEM")).expect("CA is a certificate");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(identity) => {
            let chain = CertificateDer::pem_file_iter(&identity.cert)
                .expect("client certificate readable")
                .collect::<Result<Vec<_>, _>>()
                .expect("client certificate is PEM");
            let key = PrivateKeyDer::from_pem_file(&identity.key).expect("client key is PEM");
            builder.with_client_auth_cert(chain, key).expect("client certificate and key go together")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match protocol {
        Protocol::Http2 => vec![b"h2".to_vec()],
        Protocol::Http1 => vec![b"http/1.1".to_vec()],
    };
    TlsConnector::from(Arc::new(config))
}

impl Client {
    pub async fn connect(addr: SocketAddr, ca: &Path, protocol: Protocol) -> anyhow::Result<Client> {
        Self::connect_as(addr, ca, protocol, "localhost").await
    }

    /// Connect to `addr` expecting a certificate for `name`, as the
    /// apiserver connects to `<service>.<namespace>.svc`.
    pub async fn connect_as(addr: SocketAddr, ca: &Path, protocol: Protocol, name: &str) -> anyhow::Result<Client> {
        Self::connect_with(addr, ca, protocol, name, None).await
    }

    /// Connect as [`Client::connect_as`], presenting `identity` if given.
    /// Under TLS 1.3 a server that refuses the certificate says so after
    /// the client's side of the handshake is done: then this succeeds, and
    /// the first request fails.
    pub async fn connect_with(
        addr: SocketAddr,
        ca: &Path,
        protocol: Protocol,
        name: &str,
        identity: Option<&Identity>,
    ) -> anyhow::Result<Client> {
        Self::over(connect_tcp(addr).await?, ca, protocol, name, identity).await
    }

    /// TLS and HTTP over a TCP connection the caller opened as it likes.
    pub async fn over(
        tcp: TcpStream,
        ca: &Path,
        protocol: Protocol,
        name: &str,
        identity: Option<&Identity>,
    ) -> anyhow::Result<Client> {
        let name = ServerName::try_from(name.to_owned())?;
        let tls = tls_connector_with(ca, protocol, identity).connect(name, tcp).await?;
        let (_, session) = tls.get_ref();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let peer_certificate =
            session.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
        let io = TokioIo::new(tls);
        let sender = match protocol {
            Protocol::Http2 => {
                let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                Sender::H2(sender)
            }
            Protocol::Http1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(conn);
                Sender::H1(sender)
            }
        };
        Ok(Client { sender, peer_certificate, alpn })
    }

    /// POST `body` to `path`; the status and the body.
    pub async fn post(&mut self, path: &str, body: impl Into<Bytes>) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body.into()))?;
        self.send(request).await
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = Request::get(path).header("host", "localhost").body(Full::new(Bytes::new()))?;
        self.send(request).await
    }

    async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)> {
        match self.exchange(request).await {
            Exchange::Complete(status, body) => Ok((status, body)),
            Exchange::NotAccepted(err) => Err(anyhow::anyhow!("request not accepted: {err}")),
            Exchange::Broken(err) => Err(anyhow::anyhow!("response broken off: {err}")),
        }
    }

    /// POST, telling apart a request the server never took from one whose
    /// answer broke off: only the second is a lost request.
    pub async fn post_exchange(&mut self, path: &str, body: impl Into<Bytes>) -> Exchange {
        let request = Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body.into()))
            .expect("request");
        self.exchange(request).await
    }

    async fn exchange(&mut self, request: Request<Full<Bytes>>) -> Exchange {
        let response = match &mut self.sender {
            Sender::H2(sender) => match sender.ready().await {
                Ok(()) => sender.send_request(request).await,
                Err(err) => return Exchange::NotAccepted(err.to_string()),
            },
            Sender::H1(sender) => match sender.ready().await {
                Ok(()) => sender.send_request(request).await,
                Err(err) => return Exchange::NotAccepted(err.to_string()),
            },
        };
        let response = match response {
            Ok(response) => response,
            // Refused before any response: h2 GOAWAY/REFUSED_STREAM, or a
            // closed keep-alive connection.
            Err(err) => return Exchange::NotAccepted(err.to_string()),
        };
        let status = response.status();
        match response.into_body().collect().await {
            Ok(body) => Exchange::Complete(status, body.to_bytes()),
            Err(err) => Exchange::Broken(err.to_string()),
        }
    }
}
