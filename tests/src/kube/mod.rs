//! A stand-in for the Kubernetes API, enough for kube-rs and berth: over
//! TLS with a bearer token, it serves get, paginated list and watch of any
//! resource it holds, as full objects or as `PartialObjectMetadata`, from a
//! fixture's `cluster.yaml` or objects a test gives it. The test can change
//! objects while watches run, slow every response down, take the API away
//! and bring it back, and read every request it was sent.
//!
//! Modelled as kube-apiserver does: one resourceVersion counter for all
//! objects; a list's version is the current one, and its continue token
//! keeps it; a watch from "" or "0" starts with ADDED events for what exists,
//! from a version with what changed after it, and gets an ERROR event with a
//! 410 Status once that version is compacted away ([`FakeKubeApi::compact`];
//! the objects loaded at start have no history before them); BOOKMARKs when
//! allowed, the initial-events-end one for `sendInitialEvents`; label and
//! name/namespace field selectors. Not modelled: later pages of a list are
//! read from the current objects, not a snapshot; `resourceVersionMatch`
//! is ignored; clients write only `events.k8s.io/v1` Events (POST, merge
//! PATCH; checked as the API checks them, `events.rs`), and other writes
//! are the test's, through [`FakeKubeApi::apply`] and
//! [`FakeKubeApi::delete`]; no discovery.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use berth_e2e::kube::{Away, FakeKubeApi};
//! let api = FakeKubeApi::from_fixture("seed-pulsar-2.7.7").await?;
//! let client = kube::Client::try_from(api.kube_config())?;
//! api.go_away(Away::Refused).await; // requests fail, watches end
//! api.come_back().await;
//! # Ok(()) }
//! ```

mod events;
mod http;
mod select;
mod store;

pub use store::ObjectError;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub const TOKEN: &str = "berth-e2e-token";

/// How the API is unreachable while it is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Away {
    /// Nothing listens on the port: connecting is refused.
    Refused,
    /// Connections are accepted and closed at once, before TLS.
    Dropped,
}

/// Faults a test switches at runtime.
#[derive(Debug, Clone, Default)]
struct Faults {
    /// Before every response (a watch's first line included).
    delay: Duration,
    away: Option<Away>,
}

/// One request as the API saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub accept: Option<String>,
    pub authorization: Option<String>,
}

impl Recorded {
    /// Whether it asked for `PartialObjectMetadata` (or its List) only.
    pub fn is_metadata_only(&self) -> bool {
        self.accept.as_deref().is_some_and(|accept| {
            accept.split(',').all(|range| {
                range.contains("as=PartialObjectMetadata") && range.contains("g=meta.k8s.io") && range.contains("v=v1")
            })
        })
    }

    pub fn is_authenticated(&self) -> bool {
        self.authorization.as_deref() == Some(format!("Bearer {TOKEN}").as_str())
    }

    /// The path without its query.
    pub fn path_only(&self) -> &str {
        self.path.split_once('?').map_or(self.path.as_str(), |(path, _)| path)
    }

    /// A query parameter, as sent (not decoded).
    pub fn query(&self, key: &str) -> Option<&str> {
        let (_, query) = self.path.split_once('?')?;
        query.split('&').filter_map(|pair| pair.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn is_watch(&self) -> bool {
        matches!(self.query("watch"), Some("true" | "1"))
    }
}

/// State the server's tasks share with the test's handle.
struct Shared {
    store: Mutex<Store>,
    /// The store's revision after each change, to wake watches.
    changes: watch::Sender<u64>,
    requests: Mutex<Vec<Recorded>>,
    watchers: AtomicUsize,
    /// TCP connections open now (so going away can wait for them to close).
    connections: AtomicUsize,
    /// Whether the port accepts connections (so coming back can wait).
    listening: AtomicBool,
    /// How often a watch that allows bookmarks gets one.
    bookmark_every: Mutex<Duration>,
    token: String,
}

/// Why a cluster.yaml does not load.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: berth::yaml::Error,
    },
    #[error("{path}: document {index}")]
    Object {
        path: PathBuf,
        index: usize,
        #[source]
        source: ObjectError,
    },
}

/// The objects of a multi-document `cluster.yaml` (empty documents skipped).
pub fn load_cluster(path: &Path) -> Result<Vec<Value>, ClusterError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClusterError::Read { path: path.to_owned(), source })?;
    berth::yaml::documents(&text).map_err(|source| ClusterError::Parse { path: path.to_owned(), source })
}

/// A Namespace object, labelled as the API labels it (with its name).
pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Value {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().chain([("kubernetes.io/metadata.name", name)]).collect();
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// The stand-in API, serving until it is dropped.
pub struct FakeKubeApi {
    pub url: String,
    /// The CA that signed its serving certificate.
    pub ca: PathBuf,
    /// A file holding the bearer token it accepts.
    pub token_file: PathBuf,
    shared: Arc<Shared>,
    /// Dropping it stops the accept loop and ends every watch.
    faults: watch::Sender<Faults>,
    _dir: tempfile::TempDir,
}

impl FakeKubeApi {
    /// Serve `objects` (call inside a tokio runtime that outlives its
    /// clients). Panics on an object the API could not store: the test
    /// wrote it.
    pub async fn start(objects: Vec<Value>) -> FakeKubeApi {
        let mut store = Store::new();
        if let Err((index, error)) = store.load(objects) {
            panic!("object {index}: {error}");
        }
        Self::serve(store).await
    }

    /// Serve the objects of a `cluster.yaml` (see tests/fixtures/README.md).
    pub async fn from_cluster(path: &Path) -> Result<FakeKubeApi, ClusterError> {
        let mut store = Store::new();
        store.load(load_cluster(path)?).map_err(|(index, source)| ClusterError::Object {
            path: path.to_owned(),
            index,
            source,
        })?;
        Ok(Self::serve(store).await)
    }

    /// Serve `tests/fixtures/<set>/cluster.yaml`.
    pub async fn from_fixture(set: &str) -> Result<FakeKubeApi, ClusterError> {
        Self::from_cluster(&crate::fixtures::dir().join(set).join("cluster.yaml")).await
    }

    async fn serve(store: Store) -> FakeKubeApi {
        let dir = tempfile::tempdir().expect("tmp");
        let certs =
            berth::certs::generate(dir.path(), &["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("certs");
        let token_file = dir.path().join("token");
        // No newline at the end, as a projected service account token:
        // kube-rs sends the file's bytes as they are.
        std::fs::write(&token_file, TOKEN).expect("token");
        let tls = {
            use rustls_pki_types::pem::PemObject;
            use rustls_pki_types::{CertificateDer, PrivateKeyDer};
            let chain = CertificateDer::pem_file_iter(&certs.cert).expect("cert").map(|c| c.expect("cert")).collect();
            let key = PrivateKeyDer::from_pem_file(&certs.key).expect("key");
            let mut config =
                rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("versions")
                    .with_no_client_auth()
                    .with_single_cert(chain, key)
                    .expect("server config");
            // kube-rs offers only HTTP/1.1; other clients may take h2.
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let revision = store.revision();
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            changes: watch::Sender::new(revision),
            requests: Mutex::new(Vec::new()),
            watchers: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            listening: AtomicBool::new(true),
            bookmark_every: Mutex::new(Duration::from_secs(1)),
            token: TOKEN.to_owned(),
        });
        let (faults, _) = watch::channel(Faults::default());
        tokio::spawn(accept(listener, addr, tls, shared.clone(), faults.subscribe()));
        FakeKubeApi { url: format!("https://{addr}"), ca: certs.ca_cert, token_file, shared, faults, _dir: dir }
    }

    /// A kube-rs configuration for this API: its URL, CA and token file.
    pub fn kube_config(&self) -> kube::Config {
        let mut config = kube::Config::new(self.url.parse().expect("the API's URL"));
        config.root_cert_file = Some(self.ca.clone());
        config.auth_info.token_file = Some(self.token_file.display().to_string());
        config
    }

    /// Create or replace an object (by apiVersion, kind, namespace and
    /// name); watchers see it ADDED or MODIFIED. The stored object, with its
    /// new resourceVersion (and a uid if it had none).
    pub fn apply(&self, object: Value) -> Result<Value, ObjectError> {
        self.handle().apply(object)
    }

    /// Delete an object of a kind (`Job`, `Namespace`) by namespace (`None`
    /// for a cluster-scoped kind) and name; watchers see it DELETED. Its
    /// last state, or `None` if there was no such object.
    pub fn delete(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.handle().delete(kind, namespace, name)
    }

    /// A handle that changes objects from another task (it does not keep
    /// the API serving).
    pub fn handle(&self) -> ApiHandle {
        ApiHandle { shared: self.shared.clone() }
    }

    /// An object as stored now.
    pub fn get(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let store = self.shared.store.lock().expect("store lock");
        store.get(store.find_kind(kind)?, namespace.unwrap_or(""), name).cloned()
    }

    /// Every object of a kind (`Event`), in every namespace, in key order.
    pub fn all(&self, kind: &str) -> Vec<Value> {
        let store = self.shared.store.lock().expect("store lock");
        let Some(resource) = store.find_kind(kind) else { return Vec::new() };
        store.list(resource, None, None).map(|(_, object)| object.clone()).collect()
    }

    /// The current resourceVersion (a list's `metadata.resourceVersion`).
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().expect("store lock").revision()
    }

    /// Forget the change history: a watch or continue token from an older
    /// version now gets 410 Gone, as after an etcd compaction.
    pub fn compact(&self) {
        self.shared.store.lock().expect("store lock").compact();
        // Wake watches, so one still behind learns it is gone.
        self.shared.changes.send_modify(|_| {});
    }

    /// Delay every response by this much (zero: answer at once).
    pub fn set_delay(&self, delay: Duration) {
        self.faults.send_modify(|faults| faults.delay = delay);
    }

    /// Become unreachable: open connections (and so every watch) close, and
    /// new ones fail as `away` says, until [`come_back`](Self::come_back).
    /// Returns once the connections open before are closed.
    pub async fn go_away(&self, away: Away) {
        self.faults.send_modify(|faults| faults.away = Some(away));
        self.settle("its connections closed", || {
            self.shared.connections.load(Ordering::SeqCst) == 0
                && (away == Away::Dropped || !self.shared.listening.load(Ordering::SeqCst))
        })
        .await;
    }

    /// Be reachable again; returns once the port accepts connections.
    pub async fn come_back(&self) {
        self.faults.send_modify(|faults| faults.away = None);
        self.settle("listening again", || self.shared.listening.load(Ordering::SeqCst)).await;
    }

    async fn settle(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "the stand-in API was not {what} within 5s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// How often watches that allow bookmarks get one (for watches started
    /// from now on; 1 s by default).
    pub fn set_bookmark_interval(&self, every: Duration) {
        *self.shared.bookmark_every.lock().expect("bookmark lock") = every;
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    pub fn clear_requests(&self) {
        self.shared.requests.lock().expect("requests lock").clear();
    }

    /// Watches open now.
    pub fn watchers(&self) -> usize {
        self.shared.watchers.load(Ordering::SeqCst)
    }
}

/// Changes objects of a [`FakeKubeApi`], from any task.
#[derive(Clone)]
pub struct ApiHandle {
    shared: Arc<Shared>,
}

impl ApiHandle {
    /// As [`FakeKubeApi::apply`].
    pub fn apply(&self, object: Value) -> Result<Value, ObjectError> {
        let mut store = self.shared.store.lock().expect("store lock");
        let (_, stored) = store.apply(object)?;
        self.shared.changes.send_replace(store.revision());
        Ok(stored)
    }

    /// As [`FakeKubeApi::delete`].
    pub fn delete(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let mut store = self.shared.store.lock().expect("store lock");
        let resource = store.find_kind(kind)?;
        let deleted = store.delete(resource, namespace.unwrap_or(""), name)?;
        self.shared.changes.send_replace(store.revision());
        Some(deleted)
    }
}

/// Accept connections until the handle is dropped, honouring `away`.
async fn accept(
    listener: TcpListener,
    addr: SocketAddr,
    tls: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    mut faults: watch::Receiver<Faults>,
) {
    let mut listener = Some(listener);
    loop {
        let refusing = faults.borrow_and_update().away == Some(Away::Refused);
        match (&listener, refusing) {
            // Closing the listening socket is what makes connecting fail.
            (Some(_), true) => {
                listener = None;
                shared.listening.store(false, Ordering::SeqCst);
            }
            (None, false) => {
                listener = Some(rebind(addr).await);
                shared.listening.store(true, Ordering::SeqCst);
            }
            (None, true) => {
                if faults.changed().await.is_err() {
                    return;
                }
            }
            (Some(open), false) => {
                tokio::select! {
                    accepted = open.accept() => {
                        if let Ok((tcp, _)) = accepted {
                            // As kube-apiserver (Go sets it on every
                            // connection): a response written in pieces
                            // must not wait for the client's delayed ACK.
                            let _ = tcp.set_nodelay(true);
                            tokio::spawn(connection(tcp, tls.clone(), shared.clone(), faults.clone()));
                        }
                    }
                    changed = faults.changed() => if changed.is_err() { return },
                }
            }
        }
    }
}

/// The same port again (tokio sets SO_REUSEADDR, so the closed connections
/// of before do not hold it).
async fn rebind(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("could not listen on {addr} again");
}

async fn connection(
    tcp: tokio::net::TcpStream,
    tls: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    mut faults: watch::Receiver<Faults>,
) {
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let _open = Connection(shared.clone());
    if faults.borrow().away.is_some() {
        return; // Dropped: close before the handshake.
    }
    let Ok(stream) = tls.accept(tcp).await else { return };
    let requests = faults.clone();
    let service = service_fn(move |request| {
        let (shared, faults) = (shared.clone(), requests.clone());
        async move { Ok::<_, std::convert::Infallible>(http::answer(shared, faults, request).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let serving = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = serving => {}
        // Going away drops the connection, whatever it was doing.
        () = gone_away(&mut faults) => {}
    }
}

/// Counts a connection as open until its task ends.
struct Connection(Arc<Shared>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Until the API goes away (or its handle is dropped).
async fn gone_away(faults: &mut watch::Receiver<Faults>) {
    let _ = faults.wait_for(|f| f.away.is_some()).await;
}
