//! A stand-in for the Kubernetes API's namespace endpoints: a list, and a
//! watch whose events the test sends. Over TLS, with a bearer token, as the
//! real one.

use http_body_util::channel::{Channel, Sender};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

pub const TOKEN: &str = "berth-e2e-token";

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

pub struct FakeKubeApi {
    pub url: String,
    pub ca: PathBuf,
    pub token_file: PathBuf,
    events: broadcast::Sender<Value>,
    /// Every request seen: (path and query, authorization header).
    pub requests: Arc<Mutex<Vec<(String, String)>>>,
    _dir: tempfile::TempDir,
}

pub fn namespace(name: &str, labels: &[(&str, &str)], version: u64) -> Value {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().chain([("kubernetes.io/metadata.name", name)]).collect();
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels, "resourceVersion": version.to_string()}})
}

impl FakeKubeApi {
    /// Serve `namespaces` (call inside a tokio runtime that outlives berth).
    pub async fn start(namespaces: Vec<Value>) -> FakeKubeApi {
        let dir = tempfile::tempdir().expect("tmp");
        let certs = berth::certs::generate(dir.path(), &["127.0.0.1".to_owned()]).expect("certs");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
        let tls = {
            use rustls_pki_types::pem::PemObject;
            use rustls_pki_types::{CertificateDer, PrivateKeyDer};
            let chain = CertificateDer::pem_file_iter(&certs.cert).expect("cert").map(|c| c.expect("cert")).collect();
            let key = PrivateKeyDer::from_pem_file(&certs.key).expect("key");
            let config =
                rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("versions")
                    .with_no_client_auth()
                    .with_single_cert(chain, key)
                    .expect("server config");
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let (events, _) = broadcast::channel(64);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let list = Arc::new(
            json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": "100"}, "items": namespaces}),
        );
        {
            let (events, requests) = (events.clone(), requests.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else { continue };
                    let (tls, events, requests, list) = (tls.clone(), events.clone(), requests.clone(), list.clone());
                    tokio::spawn(async move {
                        let Ok(stream) = tls.accept(tcp).await else { return };
                        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                            let (events, requests, list) = (events.clone(), requests.clone(), list.clone());
                            async move { Ok::<_, std::convert::Infallible>(answer(request, &events, &requests, &list)) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        }
        FakeKubeApi { url, ca: certs.ca_cert, token_file, events, requests, _dir: dir }
    }

    /// Send a watch event (`ADDED`, `MODIFIED`, `DELETED`) to every watcher.
    pub fn send(&self, kind: &str, object: Value) {
        let _ = self.events.send(json!({"type": kind, "object": object}));
    }

    pub fn watchers(&self) -> usize {
        self.events.receiver_count()
    }
}

fn answer(
    request: Request<hyper::body::Incoming>,
    events: &broadcast::Sender<Value>,
    requests: &Mutex<Vec<(String, String)>>,
    list: &Value,
) -> Response<Body> {
    let path = request.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let auth = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    requests.lock().expect("lock").push((path.clone(), auth.clone()));
    let full = |status: StatusCode, body: String| {
        Response::builder().status(status).body(Full::new(Bytes::from(body)).boxed()).expect("response")
    };
    if auth != format!("Bearer {TOKEN}") {
        return full(StatusCode::UNAUTHORIZED, r#"{"kind":"Status","code":401}"#.into());
    }
    if !path.starts_with("/api/v1/namespaces") {
        return full(StatusCode::NOT_FOUND, "{}".into());
    }
    if !path.contains("watch=1") {
        return full(StatusCode::OK, list.to_string());
    }
    // A watch: a chunked body of JSON lines, one per event the test sends.
    let (mut sender, body): (Sender<Bytes, std::convert::Infallible>, Channel<Bytes, std::convert::Infallible>) =
        Channel::new(8);
    let mut receiver = events.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = receiver.recv().await {
            if sender.send_data(Bytes::from(format!("{event}\n"))).await.is_err() {
                return;
            }
        }
    });
    Response::builder().status(StatusCode::OK).body(body.boxed()).expect("response")
}
