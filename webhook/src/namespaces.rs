//! Namespace labels, for policies whose `namespaceSelector` selects by
//! labels other than the namespace's name: listed, then watched, from the
//! Kubernetes API (in-cluster, or `--kube-api`), and kept in memory so that
//! matching never waits on the network.

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use thiserror::Error;
use tokio_rustls::TlsConnector;

pub type Labels = BTreeMap<String, String>;

const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, Error)]
pub enum NamespaceError {
    #[error("the Kubernetes API address {0:?} is not an https URL")]
    Url(String),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoCa(PathBuf),
    #[error("connecting to the Kubernetes API")]
    Connect(#[source] std::io::Error),
    #[error("talking to the Kubernetes API")]
    Http(#[source] hyper::Error),
    #[error("the Kubernetes API answered {status} to {what}: {body}")]
    Status { what: &'static str, status: u16, body: String },
    #[error("the Kubernetes API sent something that is not a namespace list: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("the Kubernetes API did not answer {what} within {after:?}")]
    Timeout { what: &'static str, after: Duration },
}

/// Connecting, and a list, must finish within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Watches are asked to end after 290 s; one silent for longer is dead.
const WATCH_SECONDS: u64 = 290;
const WATCH_IDLE: Duration = Duration::from_secs(WATCH_SECONDS + 40);

async fn within<T>(
    what: &'static str,
    after: Duration,
    work: impl Future<Output = Result<T, NamespaceError>>,
) -> Result<T, NamespaceError> {
    tokio::time::timeout(after, work).await.map_err(|_| NamespaceError::Timeout { what, after })?
}

/// The labels of every namespace, as last seen.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    labels: Arc<RwLock<HashMap<String, Labels>>>,
}

impl Namespaces {
    /// Run `f` on `name`'s labels; `None` if the namespace is not (yet) known.
    pub fn with_labels<R>(&self, name: &str, f: impl FnOnce(Option<&Labels>) -> R) -> R {
        let map = self.labels.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(map.get(name))
    }

    /// A fixed set, for tests and offline use.
    pub fn fixed(namespaces: impl IntoIterator<Item = (String, Labels)>) -> Self {
        Self { labels: Arc::new(RwLock::new(namespaces.into_iter().collect())) }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Labels>> {
        self.labels.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Where the Kubernetes API is and how to authenticate to it.
#[derive(Clone)]
pub struct KubeApi {
    uri: Uri,
    host: String,
    port: u16,
    tls: TlsConnector,
    /// Re-read on every request: projected service-account tokens rotate.
    token_file: Option<PathBuf>,
}

impl std::fmt::Debug for KubeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApi").field("uri", &self.uri).field("token_file", &self.token_file).finish()
    }
}

impl KubeApi {
    /// The in-cluster API, from the service environment and the pod's
    /// service account; `None` outside a cluster.
    pub fn in_cluster() -> Option<Result<Self, NamespaceError>> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        let dir = Path::new(SERVICE_ACCOUNT);
        Some(Self::new(&format!("https://{host}:{port}"), &dir.join("ca.crt"), Some(&dir.join("token"))))
    }

    pub fn new(url: &str, ca: &Path, token_file: Option<&Path>) -> Result<Self, NamespaceError> {
        let uri: Uri = url.parse().map_err(|_| NamespaceError::Url(url.to_owned()))?;
        if uri.scheme_str() != Some("https") {
            return Err(NamespaceError::Url(url.to_owned()));
        }
        let host = uri.host().ok_or_else(|| NamespaceError::Url(url.to_owned()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let pem = std::fs::read(ca).map_err(|error| NamespaceError::Read { path: ca.to_owned(), error })?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(NamespaceError::NoCa(ca.to_owned()));
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|_| NamespaceError::Url(url.to_owned()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            uri,
            host,
            port,
            tls: TlsConnector::from(Arc::new(config)),
            token_file: token_file.map(Path::to_owned),
        })
    }

    /// One GET on a fresh connection (a list, or a long-lived watch).
    async fn get(&self, path_and_query: &str) -> Result<Response<Incoming>, NamespaceError> {
        within("the connection", REQUEST_TIMEOUT, self.send(path_and_query)).await
    }

    async fn send(&self, path_and_query: &str) -> Result<Response<Incoming>, NamespaceError> {
        let tcp =
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await.map_err(NamespaceError::Connect)?;
        let name = ServerName::try_from(self.host.clone()).map_err(|_| NamespaceError::Url(self.uri.to_string()))?;
        let tls = self.tls.connect(name, tcp).await.map_err(NamespaceError::Connect)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(NamespaceError::Http)?;
        tokio::spawn(connection);
        let mut request = Request::get(path_and_query).header("host", self.uri.authority().map_or("", |a| a.as_str()));
        if let Some(file) = &self.token_file {
            let token =
                std::fs::read_to_string(file).map_err(|error| NamespaceError::Read { path: file.clone(), error })?;
            request = request.header("authorization", format!("Bearer {}", token.trim()));
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(|_| NamespaceError::Url(self.uri.to_string()))?;
        sender.send_request(request).await.map_err(NamespaceError::Http)
    }
}

#[derive(Deserialize)]
struct List {
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Namespace>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(default)]
    resource_version: String,
}

#[derive(Deserialize)]
struct Namespace {
    metadata: Meta,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: Labels,
    #[serde(default)]
    resource_version: String,
}

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

/// The namespace labels, started the first time a configuration needs
/// them: berth asks the Kubernetes API for nothing (and needs no RBAC for
/// Namespaces) while no policy selects namespaces by their labels.
#[derive(Debug, Default)]
pub struct OnDemand {
    api: Option<KubeApi>,
    started: tokio::sync::OnceCell<Namespaces>,
}

impl OnDemand {
    pub fn new(api: Option<KubeApi>) -> Self {
        Self { api, started: tokio::sync::OnceCell::new() }
    }

    /// The labels for a configuration: started now if `needed` and not yet;
    /// `None` if never needed, or if there is no API to ask.
    pub async fn get(&self, needed: bool) -> Option<Namespaces> {
        match (&self.api, needed) {
            (Some(api), true) => Some(self.started.get_or_init(|| start(api.clone())).await.clone()),
            _ => self.started.get().cloned(),
        }
    }
}

/// List the namespaces (retrying until the API answers), then keep the
/// labels current from a watch in the background.
pub async fn start(api: KubeApi) -> Namespaces {
    let namespaces = Namespaces::default();
    let mut version = list_until_done(&api, &namespaces).await;
    tracing::info!(namespaces = namespaces.labels.read().map_or(0, |m| m.len()), "namespace labels listed");
    let cache = namespaces.clone();
    tokio::spawn(async move {
        loop {
            let started = std::time::Instant::now();
            match watch(&api, &cache, &version).await {
                // The watch timed out or was closed: resume from where it
                // was (no event is lost), slowly if it keeps ending at once.
                Ok(Some(last)) => {
                    version = last;
                    if started.elapsed() < Duration::from_secs(5) {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                // The version is too old (410 Gone): start over from a list.
                Ok(None) => version = list_until_done(&api, &cache).await,
                Err(err) => {
                    tracing::warn!("namespace watch failed, listing again: {}", crate::error_chain(&err));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    version = list_until_done(&api, &cache).await;
                }
            }
        }
    });
    namespaces
}

async fn list_until_done(api: &KubeApi, namespaces: &Namespaces) -> String {
    let mut delay = Duration::from_millis(200);
    loop {
        match list(api, namespaces).await {
            Ok(version) => return version,
            Err(err) => {
                tracing::warn!("listing namespaces failed, retrying in {delay:?}: {}", crate::error_chain(&err));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn list(api: &KubeApi, namespaces: &Namespaces) -> Result<String, NamespaceError> {
    let (status, body) = within("the namespace list", REQUEST_TIMEOUT, async {
        let response = api.get("/api/v1/namespaces").await?;
        let status = response.status().as_u16();
        Ok((status, response.into_body().collect().await.map_err(NamespaceError::Http)?.to_bytes()))
    })
    .await?;
    if status != 200 {
        let body = String::from_utf8_lossy(&body).chars().take(300).collect();
        return Err(NamespaceError::Status { what: "listing namespaces", status, body });
    }
    let list: List = serde_json::from_slice(&body).map_err(NamespaceError::Decode)?;
    *namespaces.write() = list.items.into_iter().map(|n| (n.metadata.name, n.metadata.labels)).collect();
    Ok(list.metadata.resource_version)
}

/// Follow one watch; `Some(version)` to resume from, `None` to relist.
async fn watch(api: &KubeApi, namespaces: &Namespaces, version: &str) -> Result<Option<String>, NamespaceError> {
    let path = format!(
        "/api/v1/namespaces?watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={version}"
    );
    let response = api.get(&path).await?;
    let status = response.status().as_u16();
    if status == 410 {
        return Ok(None);
    }
    let mut body = response.into_body();
    if status != 200 {
        let text =
            body.collect().await.map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned()).unwrap_or_default();
        return Err(NamespaceError::Status {
            what: "watching namespaces",
            status,
            body: text.chars().take(300).collect(),
        });
    }
    let mut version = version.to_owned();
    let mut pending = Vec::new();
    while let Some(frame) = within("the namespace watch", WATCH_IDLE, async { Ok(body.frame().await) }).await? {
        let Ok(data) = frame.map_err(NamespaceError::Http)?.into_data() else { continue };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event: WatchEvent = serde_json::from_slice(&line).map_err(NamespaceError::Decode)?;
            if event.kind == "ERROR" {
                // A Status; 410 means our version is gone.
                return Ok(if event.object["code"] == 410 { None } else { Some(version) });
            }
            let namespace: Namespace = serde_json::from_value(event.object).map_err(NamespaceError::Decode)?;
            if !namespace.metadata.resource_version.is_empty() {
                version = namespace.metadata.resource_version;
            }
            match event.kind.as_str() {
                "ADDED" | "MODIFIED" => {
                    namespaces.write().insert(namespace.metadata.name, namespace.metadata.labels);
                }
                "DELETED" => {
                    namespaces.write().remove(&namespace.metadata.name);
                }
                _ => {} // BOOKMARK: only the version matters.
            }
        }
    }
    Ok(Some(version))
}
