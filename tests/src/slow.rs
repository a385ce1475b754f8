//! A client on a bad link: it sends its request body in pieces with pauses
//! between them, over a connection of its own, and then reads the answer
//! as kube-apiserver would.

use crate::client::{Protocol, connect_tcp, tls_connector};
use http_body_util::BodyExt;
use http_body_util::channel::Channel;
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// How a trickled request is sent.
#[derive(Debug, Clone, Copy)]
pub struct Trickle {
    pub protocol: Protocol,
    /// The body is cut into this many pieces.
    pub pieces: usize,
    /// The pause before each piece after the first.
    pub pause: Duration,
}

/// POST `body` to `path` piece by piece; the status and the answer's body.
/// The request declares its length, as the apiserver's does.
pub async fn post(
    addr: SocketAddr,
    ca: &Path,
    path: &str,
    body: Bytes,
    trickle: Trickle,
) -> anyhow::Result<(StatusCode, Bytes)> {
    // Without Nagle's algorithm, each piece leaves when it is written: the
    // pauses are the only slowness, as intended.
    let tcp = connect_tcp(addr).await?;
    let tls = tls_connector(ca, trickle.protocol).connect(ServerName::try_from("localhost")?, tcp).await?;
    let io = TokioIo::new(tls);
    let (mut sender, channel) = Channel::<Bytes, std::convert::Infallible>::new(1);
    let request = Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(channel)?;
    let pieces = trickle.pieces.clamp(1, body.len().max(1));
    let size = body.len().div_ceil(pieces).max(1);
    let feed = async move {
        for (index, start) in (0..body.len()).step_by(size).enumerate() {
            if index > 0 {
                tokio::time::sleep(trickle.pause).await;
            }
            let end = (start + size).min(body.len());
            if sender.send_data(body.slice(start..end)).await.is_err() {
                // The server stopped reading (it answered early): the
                // answer says why.
                return;
            }
        }
    };
    let response = match trickle.protocol {
        Protocol::Http2 => {
            let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            let (response, ()) = tokio::join!(sender.send_request(request), feed);
            response?
        }
        Protocol::Http1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            let (response, ()) = tokio::join!(sender.send_request(request), feed);
            response?
        }
    };
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}
