//! The Kubernetes API side, through kube-rs: one client, a metadata-only
//! watch per kind a configuration needs (started the first time one does),
//! and the GET for an owner that the watch has not shown yet.

use super::owners::{self, CacheStats, Keep, Owner, OwnerStore, Shared, Uid, Wire};
use super::{Cluster, ContextError, LOOKUP_TIMEOUT, Meta, Needs, OwnerKind, Store};
use futures_util::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use kube::{Api, Client, Resource};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KubeError {
    #[error("the Kubernetes API address {0:?} is not a URL")]
    Url(String),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoCa(PathBuf),
    #[error("reading the in-cluster Kubernetes configuration")]
    InCluster(#[source] kube::config::InClusterError),
    #[error("creating the Kubernetes client")]
    Client(#[source] kube::Error),
}

/// Where the Kubernetes API is and how to authenticate to it.
#[derive(Debug, Clone)]
pub enum ApiConfig {
    /// The pod's service account and the service environment.
    InCluster,
    /// `--kube-api`, `--kube-ca`, `--kube-token-file`.
    Explicit { url: String, ca: PathBuf, token_file: Option<PathBuf> },
}

impl ApiConfig {
    /// In a pod (the service environment is set), the in-cluster API.
    pub fn from_environment() -> Option<Self> {
        std::env::var_os("KUBERNETES_SERVICE_HOST").map(|_| Self::InCluster)
    }

    /// A client. Tokens are read from their file again as they rotate
    /// (kube-rs re-reads a token file before it expires), and so is the
    /// in-cluster CA.
    pub fn client(&self) -> Result<Client, KubeError> {
        let config = match self {
            Self::InCluster => kube::Config::incluster().map_err(KubeError::InCluster)?,
            Self::Explicit { url, ca, token_file } => {
                let mut config = kube::Config::new(url.parse().map_err(|_| KubeError::Url(url.clone()))?);
                config.root_cert = Some(read_ca(ca)?);
                config.auth_info.token_file = token_file.as_ref().map(|p| p.display().to_string());
                config
            }
        };
        Client::try_from(config).map_err(KubeError::Client)
    }
}

fn read_ca(path: &Path) -> Result<Vec<Vec<u8>>, KubeError> {
    let pem = std::fs::read(path).map_err(|error| KubeError::Read { path: path.to_owned(), error })?;
    let certs: Vec<Vec<u8>> =
        CertificateDer::pem_slice_iter(&pem).flatten().map(|cert| cert.as_ref().to_vec()).collect();
    if certs.is_empty() {
        return Err(KubeError::NoCa(path.to_owned()));
    }
    Ok(certs)
}

/// The GET for an owner not in memory, from the synchronous admission path.
#[derive(Clone)]
pub(super) struct Fallback {
    client: Client,
    handle: tokio::runtime::Handle,
}

impl Fallback {
    /// Called on a blocking-pool thread (admission never runs on the async
    /// workers), so it may wait on the runtime, until `deadline` (one for
    /// the whole owner chain). What it finds is not put in the store: the
    /// watch brings it, in order with later changes and deletion.
    pub(super) fn get_owner(
        &self,
        kind: OwnerKind,
        namespace: &str,
        name: &str,
        deadline: std::time::Instant,
    ) -> Result<Option<(Uid, Arc<Owner>)>, ContextError> {
        let client = self.client.clone();
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let found = self.handle.block_on(tokio::time::timeout(left, async {
            match kind {
                OwnerKind::Job => get::<Job>(client, namespace, name).await,
                OwnerKind::CronJob => get::<CronJob>(client, namespace, name).await,
                OwnerKind::ReplicaSet => get::<ReplicaSet>(client, namespace, name).await,
                OwnerKind::Deployment => get::<Deployment>(client, namespace, name).await,
                OwnerKind::StatefulSet => get::<StatefulSet>(client, namespace, name).await,
                OwnerKind::DaemonSet => get::<DaemonSet>(client, namespace, name).await,
            }
        }));
        let object = format!("{namespace}/{name}");
        match found {
            Err(_) => Err(ContextError::Timeout { kind: kind.kind(), object, after: LOOKUP_TIMEOUT }),
            Ok(Err(error)) => Err(ContextError::Lookup { kind: kind.kind(), object, error: Arc::new(error) }),
            Ok(Ok(None)) => Ok(None),
            Ok(Ok(Some(wire))) => Ok(Some(owners::looked_up(&wire))),
        }
    }
}

impl Fallback {
    /// A namespace the watch has not shown yet, as [`Fallback::get_owner`].
    pub(super) fn get_namespace(
        &self,
        name: &str,
        deadline: std::time::Instant,
    ) -> Result<Option<Arc<Meta>>, ContextError> {
        let api = Api::<Namespace>::all(self.client.clone());
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let object = name.to_owned();
        match self.handle.block_on(tokio::time::timeout(left, api.get_metadata_opt(name))) {
            Err(_) => Err(ContextError::Timeout { kind: "Namespace", object, after: LOOKUP_TIMEOUT }),
            Ok(Err(error)) => Err(ContextError::Lookup { kind: "Namespace", object, error: Arc::new(error) }),
            Ok(Ok(found)) => Ok(found.map(|object| Arc::new(Meta::from_object_meta(&object.metadata)))),
        }
    }
}

/// One owner's metadata, read as the watch reads it.
async fn get<K>(client: Client, namespace: &str, name: &str) -> Result<Option<owners::WireMeta>, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    let found = Api::<Wire<K>>::namespaced(client, namespace).get_opt(name).await?;
    Ok(found.map(|object| object.meta))
}

/// How the owner cache is bounded, in memory and in time.
#[derive(Debug, Clone, Copy)]
pub struct OwnerCacheOptions {
    /// Bytes the owner cache may hold (as it accounts them); past it,
    /// owners it cannot hold are looked up by GET.
    pub limit: usize,
    /// How long `/readyz` waits for the owners' first list; after it, berth
    /// serves, and looks up by GET the owners not listed yet.
    pub sync_deadline: Duration,
    /// Objects per page of a paginated list.
    pub page_size: u32,
    /// List with a streaming watch (`sendInitialEvents`, Kubernetes
    /// WatchList) instead of pages.
    pub streaming: bool,
}

impl Default for OwnerCacheOptions {
    fn default() -> Self {
        Self { limit: 64 << 20, sync_deadline: Duration::from_secs(20), page_size: 500, streaming: false }
    }
}

/// The watches of one server: started on demand, kept for its lifetime
/// (a reload that needs a kind again reuses its cache).
pub struct Watches {
    client: Option<Client>,
    options: OwnerCacheOptions,
    stats: CacheStats,
    started: Mutex<Started>,
}

#[derive(Default)]
struct Started {
    namespaces: Option<Arc<Store>>,
    owners: Option<OwnerWatches>,
    storage_classes: Option<Arc<Store>>,
}

/// The owner stores of the label keys `shared.keep`. A configuration that
/// names a label key they do not keep gets new ones, listed anew; the old
/// ones stop when the last configuration that reads them is dropped.
struct OwnerWatches {
    shared: Arc<Shared>,
    stores: HashMap<OwnerKind, Arc<OwnerStore>>,
}

impl Watches {
    /// Without a client, nothing is watched and configurations that need
    /// the cluster are refused at load.
    pub fn new(client: Option<Client>, options: OwnerCacheOptions, stats: CacheStats) -> Self {
        Self { client, options, stats, started: Mutex::new(Started::default()) }
    }

    /// The view a configuration with `needs` reads, starting the watches it
    /// adds. Call within the tokio runtime. It does not wait for them:
    /// until they sync, `/readyz` says so and lookups that need them fail
    /// under their policy's failurePolicy (an owner is still asked for).
    ///
    /// `keep` is the owner label keys the configuration's selectors read.
    pub fn cluster(&self, needs: Needs, keep: Keep) -> Cluster {
        let Some(client) = &self.client else { return Cluster::no_api() };
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let mut cluster = Cluster {
            api: Some(Fallback { client: client.clone(), handle: tokio::runtime::Handle::current() }),
            stats: self.stats.clone(),
            ..Cluster::none()
        };
        if needs.namespace_labels {
            let store = started.namespaces.get_or_insert_with(|| {
                spawn(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), "namespaces", by_name)
            });
            cluster.namespaces = Some(store.clone());
        }
        if needs.owners {
            if started.owners.as_ref().is_none_or(|o| !o.shared.keep.covers(&keep)) {
                let keep = match (&started.owners, keep) {
                    (Some(old), Keep::Only(mut keys)) => {
                        if let Keep::Only(old) = &old.shared.keep {
                            keys.extend(old.iter().cloned());
                        }
                        Keep::Only(keys)
                    }
                    (_, keep) => keep,
                };
                let shared = Shared::new(self.options.limit, keep, self.stats.clone());
                let stores = OwnerKind::ALL
                    .into_iter()
                    .map(|kind| {
                        let store = Arc::new(OwnerStore::new(shared.clone()));
                        watch_owners(client.clone(), kind, Arc::downgrade(&store), self.options);
                        (kind, store)
                    })
                    .collect();
                started.owners = Some(OwnerWatches { shared, stores });
            }
            if let Some(owners) = &started.owners {
                cluster.owners = owners.stores.clone();
            }
        }
        if needs.default_storage_class {
            let store = started.storage_classes.get_or_insert_with(|| {
                spawn(Api::<PartialObjectMeta<StorageClass>>::all(client.clone()), "storageclasses", by_name)
            });
            cluster.storage_classes = Some(store.clone());
        }
        cluster
    }
}

fn watch_owners(client: Client, kind: OwnerKind, store: Weak<OwnerStore>, options: OwnerCacheOptions) {
    let what = kind.resource();
    match kind {
        OwnerKind::Job => spawn_owners(Api::<Wire<Job>>::all(client), what, store, options),
        OwnerKind::CronJob => spawn_owners(Api::<Wire<CronJob>>::all(client), what, store, options),
        OwnerKind::ReplicaSet => spawn_owners(Api::<Wire<ReplicaSet>>::all(client), what, store, options),
        OwnerKind::Deployment => spawn_owners(Api::<Wire<Deployment>>::all(client), what, store, options),
        OwnerKind::StatefulSet => spawn_owners(Api::<Wire<StatefulSet>>::all(client), what, store, options),
        OwnerKind::DaemonSet => spawn_owners(Api::<Wire<DaemonSet>>::all(client), what, store, options),
    }
}

/// Keep an owner store current from a metadata-only watch, read into
/// [`Wire`] (only what is kept is built), with kube-rs's backoff on errors.
/// A relist (the first, or after the watch fell too far behind) drops what
/// it did not show once it is complete. The task ends when the store is
/// dropped (a configuration that needed other label keys replaced it).
fn spawn_owners<K>(api: Api<Wire<K>>, what: &'static str, store: Weak<OwnerStore>, options: OwnerCacheOptions)
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
{
    let waiting = store.clone();
    let deadline = options.sync_deadline;
    tokio::spawn(async move {
        tokio::time::sleep(deadline).await;
        if waiting.upgrade().is_some_and(|store| store.deadline_passed()) {
            tracing::warn!(
                what,
                after = ?deadline,
                "not synced with the Kubernetes API within the sync deadline: serving, and looking up by GET the owners not listed yet"
            );
        }
    });
    tokio::spawn(async move {
        // berth holds one page's text while it reads it, and the allocator
        // keeps what it held: smaller pages, a smaller peak.
        let (config, list) = match options.streaming {
            true => (watcher::Config::default().streaming_lists(), "streaming"),
            false => (watcher::Config::default().page_size(options.page_size.max(1)), "paged"),
        };
        let mut events = std::pin::pin!(watch_stream(api, config).default_backoff());
        let started = std::time::Instant::now();
        while let Some(event) = events.next().await {
            let Some(store) = store.upgrade() else { return };
            match event {
                Ok(Event::Init) => store.begin_list(),
                Ok(Event::InitApply(object) | Event::Apply(object)) => store.apply(&object.meta),
                Ok(Event::InitDone) => {
                    let count = store.end_list();
                    // The pages just parsed are garbage now; an idle server
                    // would hold them until its next allocations.
                    crate::allocator::release_freed();
                    let took = started.elapsed();
                    tracing::info!(what, count, ?took, list, "cache synced from the Kubernetes API");
                }
                Ok(Event::Delete(object)) => store.remove(&object.meta.uid),
                Err(err) => tracing::warn!(what, "watch failed, retrying: {}", crate::error_chain(&err)),
            }
        }
    });
}

fn by_name(meta: &Meta) -> String {
    meta.name.clone()
}

/// Keep a store current from a metadata-only watch (kube-rs asks the API
/// for `PartialObjectMetadata`, so whole objects never reach berth), with
/// kube-rs's backoff on errors. A relist replaces the store at once.
fn spawn<K>(api: Api<PartialObjectMeta<K>>, what: &'static str, key: fn(&Meta) -> String) -> Arc<Store>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Clone + Eq + std::hash::Hash + Send + Sync,
{
    let store = Arc::new(Store::default());
    let cache = store.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watch_stream(api, watcher::Config::default().page_size(500)).default_backoff());
        let mut relist: HashMap<String, Arc<Meta>> = HashMap::new();
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => relist.clear(),
                Ok(Event::InitApply(object)) => {
                    let meta = Meta::from_object_meta(&object.metadata);
                    relist.insert(key(&meta), Arc::new(meta));
                }
                Ok(Event::InitDone) => {
                    let count = relist.len();
                    cache.replace(std::mem::take(&mut relist));
                    tracing::info!(what, count, "cache synced from the Kubernetes API");
                }
                Ok(Event::Apply(object)) => {
                    let meta = Meta::from_object_meta(&object.metadata);
                    cache.insert(key(&meta), meta);
                }
                Ok(Event::Delete(object)) => cache.remove(&key(&Meta::from_object_meta(&object.metadata))),
                Err(err) => tracing::warn!(what, "watch failed, retrying: {}", crate::error_chain(&err)),
            }
        }
    });
    store
}
