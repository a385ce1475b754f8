//! What berth knows of the cluster beyond the review itself: the labels of
//! namespaces, the owners of objects (for `match.owner` and
//! `match.helmRelease`), and the default StorageClass.
//!
//! Each kind a configuration needs is kept in memory, metadata only, from a
//! kube-rs watch (`watch.rs`) or from `berth eval --context` files
//! (`snapshot.rs`); matching reads memory. Owners are kept in a store with
//! a ceiling (`owners.rs`). An owner the store does not hold (created
//! milliseconds ago, or left out at the ceiling) costs one GET with a short
//! timeout.

mod owners;
mod snapshot;
mod watch;

pub use owners::{CacheStats, Controller, Keep, Owner};
pub use snapshot::SnapshotError;
pub use watch::{ApiConfig, KubeError, OwnerCacheOptions, Watches};

use owners::{OwnerStore, Uid};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize as _;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use thiserror::Error;

pub type Labels = BTreeMap<String, String>;

/// Helm writes these on every object `helm install` creates.
pub const HELM_RELEASE_NAME: &str = "meta.helm.sh/release-name";
pub const HELM_RELEASE_NAMESPACE: &str = "meta.helm.sh/release-namespace";
/// Marks the cluster's default StorageClass (and its beta predecessor).
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const DEFAULT_CLASS_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The annotations berth keeps; every other one is dropped on arrival (a
/// `last-applied-configuration` can be as large as the object).
const KEPT_ANNOTATIONS: [&str; 4] = [HELM_RELEASE_NAME, HELM_RELEASE_NAMESPACE, DEFAULT_CLASS, DEFAULT_CLASS_BETA];
/// How long a GET for an owner the watch has not shown yet may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(1500);
/// Owner chains are short (Pod → ReplicaSet → Deployment); a longer one is a
/// loop in the cluster's data, not a reason to keep walking.
const MAX_CHAIN: usize = 8;

/// A lookup that could not be answered. It fails the policy that needed it,
/// under that policy's failurePolicy.
#[derive(Debug, Clone, Error)]
pub enum ContextError {
    #[error("the {0} cache has not synced with the Kubernetes API yet")]
    NotSynced(&'static str),
    #[error("this needs the {what} of the cluster, and {hint}")]
    Unavailable { what: &'static str, hint: &'static str },
    /// `object` is `namespace/name`, or a cluster-scoped object's name.
    #[error("looking up {kind} {object} in the Kubernetes API")]
    Lookup {
        kind: &'static str,
        object: String,
        #[source]
        error: Arc<kube::Error>,
    },
    #[error("looking up {kind} {object}: the Kubernetes API did not answer within {after:?}")]
    Timeout { kind: &'static str, object: String, after: Duration },
}

/// What a configuration asks of the cluster; each part is watched only when
/// some policy needs it (and needs its RBAC only then).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// `namespaceSelector` on a label other than `kubernetes.io/metadata.name`.
    pub namespace_labels: bool,
    /// `match.owner` or `match.helmRelease`.
    pub owners: bool,
    /// `context: [defaultStorageClass]`.
    pub default_storage_class: bool,
}

impl Needs {
    pub fn any(self) -> bool {
        self.namespace_labels || self.owners || self.default_storage_class
    }

    pub fn union(self, other: Self) -> Self {
        Self {
            namespace_labels: self.namespace_labels || other.namespace_labels,
            owners: self.owners || other.owners,
            default_storage_class: self.default_storage_class || other.default_storage_class,
        }
    }
}

/// The controllers whose objects own pods, directly or up a chain:
/// Pod → Job → CronJob, Pod → ReplicaSet → Deployment, Pod → StatefulSet,
/// Pod → DaemonSet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OwnerKind {
    Job,
    CronJob,
    ReplicaSet,
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl OwnerKind {
    pub const ALL: [OwnerKind; 6] =
        [Self::Job, Self::CronJob, Self::ReplicaSet, Self::Deployment, Self::StatefulSet, Self::DaemonSet];

    /// The kind of an ownerReference, if it is one berth follows.
    pub fn from_reference(api_version: &str, kind: &str) -> Option<Self> {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        Self::ALL.into_iter().find(|k| k.kind() == kind && k.group() == group)
    }

    pub fn kind(self) -> &'static str {
        match self {
            Self::Job => "Job",
            Self::CronJob => "CronJob",
            Self::ReplicaSet => "ReplicaSet",
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Self::Job | Self::CronJob => "batch",
            _ => "apps",
        }
    }

    /// The resource name RBAC rules use.
    pub fn resource(self) -> &'static str {
        match self {
            Self::Job => "jobs",
            Self::CronJob => "cronjobs",
            Self::ReplicaSet => "replicasets",
            Self::Deployment => "deployments",
            Self::StatefulSet => "statefulsets",
            Self::DaemonSet => "daemonsets",
        }
    }
}

/// An ownerReference, as much of it as berth follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// What berth keeps of one object: its identity, labels, the annotations it
/// reads, and its controlling owner. Nothing else of the object is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// The prefix a client asks the apiserver to name the object from;
    /// such an object can reach admission with no name yet (the Pods of
    /// Jobs and ReplicaSets do).
    pub generate_name: String,
    pub labels: Labels,
    pub annotations: Labels,
    /// The ownerReference with `controller: true`, the one controllers
    /// follow; other owners do not manage the object.
    pub controller: Option<OwnerRef>,
    /// `metadata.creationTimestamp` (RFC 3339): of two default
    /// StorageClasses, the apiserver uses the newer.
    pub created: Option<String>,
}

impl Meta {
    pub fn from_object_meta(meta: &ObjectMeta) -> Self {
        let annotations = meta
            .annotations
            .iter()
            .flatten()
            .filter(|(key, _)| KEPT_ANNOTATIONS.contains(&key.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let controller =
            meta.owner_references.iter().flatten().find(|r| r.controller == Some(true)).map(|r| OwnerRef {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
                uid: r.uid.clone(),
            });
        Self {
            name: meta.name.clone().unwrap_or_default(),
            generate_name: meta.generate_name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            annotations,
            controller,
            created: meta.creation_timestamp.as_ref().map(|t| t.0.to_string()),
        }
    }

    /// The metadata of an object given as JSON text, read without building
    /// a tree of the object: what matching and the audit log need of the
    /// object under review. Fails if the object is not a JSON object or its
    /// `metadata` is not shaped as ObjectMeta, which the apiserver checks
    /// before any webhook.
    pub fn of_object(text: &str) -> Result<Self, serde_json::Error> {
        let MapOnly(ObjectView { metadata: MapOnly(view) }) = serde_json::from_str(text)?;
        let annotations = view.annotations.into_iter().filter(|(key, _)| KEPT_ANNOTATIONS.contains(&key.as_str()));
        let mut owners = view.owner_references.into_iter().map(|MapOnly(owner)| owner);
        let controller = owners.find(|r| r.controller == Some(true)).map(|r| OwnerRef {
            api_version: r.api_version,
            kind: r.kind,
            name: r.name,
            uid: r.uid,
        });
        Ok(Self {
            name: view.name,
            generate_name: view.generate_name,
            namespace: view.namespace,
            uid: view.uid,
            labels: view.labels,
            annotations: annotations.collect(),
            controller,
            created: view.creation_timestamp,
        })
    }

    /// The Helm release (`namespace`, `name`) whose install created this
    /// object, from Helm's own annotations.
    pub fn helm_release(&self) -> Option<(&str, &str)> {
        let name = self.annotations.get(HELM_RELEASE_NAME)?;
        let namespace = self.annotations.get(HELM_RELEASE_NAMESPACE).unwrap_or(&self.namespace);
        Some((namespace, name))
    }

    pub(crate) fn is_default_class(&self) -> bool {
        [DEFAULT_CLASS, DEFAULT_CLASS_BETA].iter().any(|key| self.annotations.get(*key).is_some_and(|v| v == "true"))
    }
}

/// One kind's objects, by key (uid for owners, name for cluster-scoped
/// kinds), and whether the first list has arrived.
#[derive(Debug, Default)]
pub(crate) struct Store {
    items: RwLock<HashMap<String, Arc<Meta>>>,
    synced: AtomicBool,
}

impl Store {
    fn get(&self, key: &str) -> Option<Arc<Meta>> {
        self.items.read().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    fn insert(&self, key: String, meta: Meta) {
        self.items.write().unwrap_or_else(|p| p.into_inner()).insert(key, Arc::new(meta));
    }

    fn remove(&self, key: &str) {
        self.items.write().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Replace everything at once (a relist), and count as synced.
    fn replace(&self, items: HashMap<String, Arc<Meta>>) {
        *self.items.write().unwrap_or_else(|p| p.into_inner()) = items;
        self.synced.store(true, Ordering::Release);
    }

    fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The newest object that `f` accepts (ties by name), as the
    /// DefaultStorageClass admission plugin picks among two defaults.
    fn newest(&self, mut f: impl FnMut(&Meta) -> bool) -> Option<Arc<Meta>> {
        let items = self.items.read().unwrap_or_else(|p| p.into_inner());
        items.values().filter(|m| f(m)).max_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name))).cloned()
    }
}

/// The stores a configuration reads, and how to ask the API on a miss.
/// Cheap to clone; what `PolicySet` holds.
#[derive(Clone, Default)]
pub struct Cluster {
    namespaces: Option<Arc<Store>>,
    owners: HashMap<OwnerKind, Arc<OwnerStore>>,
    storage_classes: Option<Arc<Store>>,
    /// Where owner lookups were answered (cache or API).
    stats: CacheStats,
    /// For an owner not (yet) in memory; `None` offline (`berth eval`).
    api: Option<watch::Fallback>,
    /// Set when berth has nothing to ask (`berth eval` without
    /// `--context`, `berth serve` without an API): policies that match on
    /// owners load, and a request that needs a lookup fails its policy with
    /// this hint (never passes silently).
    offline: Option<&'static str>,
    /// Offline, whether the default StorageClass may be taken to be none:
    /// for `berth eval` (an author's try), not for a server, where a
    /// wrong "none" would keep a class the apiserver chose.
    assume_no_default_class: bool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("provides", &self.provides()).field("online", &self.api.is_some()).finish()
    }
}

impl Cluster {
    /// Nothing known: configurations that need the cluster are refused.
    pub fn none() -> Self {
        Self::default()
    }

    /// `berth eval` without `--context`.
    pub fn missing_context() -> Self {
        Self {
            offline: Some("berth eval was given no --context file that holds them"),
            assume_no_default_class: true,
            ..Self::default()
        }
    }

    /// `berth serve` outside a cluster with no `--kube-api` (a laptop):
    /// owner lookups fail their policies, and the default StorageClass is
    /// taken to be none. In a pod, berth refuses to start without its API
    /// instead (server/mod.rs).
    pub fn no_api() -> Self {
        Self {
            offline: Some("berth serve has no Kubernetes API: run it in a cluster, or give it --kube-api"),
            assume_no_default_class: true,
            ..Self::default()
        }
    }

    /// What this view can answer. Offline, owner lookups load (and fail the
    /// requests that need them); namespace labels are refused at load, as a
    /// namespaceSelector that cannot match anything is a mistake to report.
    pub fn provides(&self) -> Needs {
        if self.offline.is_some() {
            return Needs {
                namespace_labels: false,
                owners: true,
                default_storage_class: self.assume_no_default_class,
            };
        }
        Needs {
            namespace_labels: self.namespaces.is_some(),
            owners: !self.owners.is_empty(),
            default_storage_class: self.storage_classes.is_some(),
        }
    }

    /// The caches that have not synced yet (`/readyz` waits for them); an
    /// owner cache past its sync deadline serves by GET and counts as ready.
    pub fn unsynced(&self) -> Vec<&'static str> {
        self.pending(|owners| owners.ready())
    }

    /// The caches that have not completed a full list, deadline or not. A
    /// reload waits for these: a serving set is replaced only by one whose
    /// caches all synced.
    pub fn unlisted(&self) -> Vec<&'static str> {
        self.pending(|owners| owners.synced())
    }

    fn pending(&self, owners_done: impl Fn(&OwnerStore) -> bool) -> Vec<&'static str> {
        let mut pending = Vec::new();
        if self.namespaces.as_ref().is_some_and(|s| !s.synced()) {
            pending.push("namespaces");
        }
        for kind in OwnerKind::ALL {
            if self.owners.get(&kind).is_some_and(|s| !owners_done(s)) {
                pending.push(kind.resource());
            }
        }
        if self.storage_classes.as_ref().is_some_and(|s| !s.synced()) {
            pending.push("storageclasses");
        }
        pending
    }

    /// `name`'s labels; `Ok(None)` for a namespace that does not exist (or
    /// when namespace labels are not watched).
    pub fn namespace_labels(&self, name: &str) -> Result<Option<Arc<Meta>>, ContextError> {
        let Some(store) = &self.namespaces else { return Ok(None) };
        if !store.synced() {
            return Err(ContextError::NotSynced("namespaces"));
        }
        match (store.get(name), &self.api) {
            // Created a moment ago (`kubectl apply` of a Namespace and its
            // pods together): asked for, as kube-apiserver's own matcher does.
            (None, Some(api)) => api.get_namespace(name, std::time::Instant::now() + LOOKUP_TIMEOUT),
            (found, _) => Ok(found),
        }
    }

    /// The cluster's default StorageClass, if it has one.
    pub fn default_storage_class(&self) -> Result<Option<String>, ContextError> {
        let Some(store) = &self.storage_classes else { return Ok(None) };
        if !store.synced() {
            return Err(ContextError::NotSynced("storageclasses"));
        }
        Ok(store.newest(Meta::is_default_class).map(|m| m.name.clone()))
    }

    /// The controlling owners of an object in `namespace`, nearest first:
    /// `[ReplicaSet, Deployment]` for a Deployment's pod. The chain ends at
    /// an owner of a kind berth does not follow, or one that no longer
    /// exists.
    pub fn owner_chain(&self, namespace: &str, first: Option<OwnerRef>) -> Result<Vec<Arc<Owner>>, ContextError> {
        let Some(first) = first else { return Ok(Vec::new()) };
        let Some(kind) = OwnerKind::from_reference(&first.api_version, &first.kind) else { return Ok(Vec::new()) };
        if let Some(hint) = self.offline {
            return Err(ContextError::Unavailable { what: "owners (Jobs, ReplicaSets, StatefulSets, ...)", hint });
        }
        // One bound for the whole chain, however many owners miss the cache.
        let deadline = std::time::Instant::now() + LOOKUP_TIMEOUT;
        let mut chain: Vec<Arc<Owner>> = Vec::new();
        let mut next = Some((kind, Arc::<str>::from(first.name), Uid::new(&first.uid)));
        while let Some((kind, name, uid)) = next.take() {
            if chain.len() == MAX_CHAIN {
                break;
            }
            let Some(store) = self.owners.get(&kind) else { break };
            let owner = match store.get(&uid) {
                Some(owner) => {
                    self.stats.looked_up("cache");
                    Some(owner)
                }
                None => match &self.api {
                    Some(api) => {
                        self.stats.looked_up("api");
                        // A different uid is another object of the same
                        // name: the owner this one refers to is gone.
                        api.get_owner(kind, namespace, &name, deadline)?
                            .filter(|(found, _)| *found == uid)
                            .map(|(_, o)| o)
                    }
                    None => None,
                },
            };
            // Owners are in the object's own namespace; a reference across
            // namespaces is void, as for Kubernetes' garbage collector.
            let Some(owner) = owner.filter(|o| &*o.namespace == namespace) else { break };
            next = owner.controller.as_ref().map(|c| (c.kind, c.name.clone(), c.uid.clone()));
            chain.push(owner);
        }
        Ok(chain)
    }

    /// The controller of `owner` (an object's own ownerReference) as memory
    /// holds it, never asking the API: for what an Event about a denied
    /// object regards (`events/`), which must not cost the answer a GET.
    /// `None` when the owner is not in memory, or not of a kind berth
    /// follows, or has no controller berth follows.
    pub fn cached_controller(&self, namespace: &str, owner: &OwnerRef) -> Option<Controller> {
        let kind = OwnerKind::from_reference(&owner.api_version, &owner.kind)?;
        let found = self.owners.get(&kind)?.get(&Uid::new(&owner.uid))?;
        // As in `owner_chain`: a reference across namespaces is void.
        (&*found.namespace == namespace).then(|| found.controller.clone()).flatten()
    }
}

#[cfg(test)]
impl Cluster {
    /// Namespaces with these labels, and nothing else.
    pub(crate) fn fixed_namespaces<'a>(
        namespaces: impl IntoIterator<Item = (&'a str, &'a [(&'a str, &'a str)])>,
    ) -> Self {
        let objects = namespaces
            .into_iter()
            .map(|(name, labels)| {
                let labels: serde_json::Map<String, serde_json::Value> =
                    labels.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
            })
            .collect();
        Self::fixed_objects(objects)
    }

    /// A snapshot of these objects.
    pub(crate) fn fixed_objects(objects: Vec<serde_json::Value>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.json");
        std::fs::write(&path, serde_json::json!({"kind": "List", "items": objects}).to_string()).expect("write");
        Self::snapshot(&[path]).expect("snapshot")
    }
}

/// `{"metadata": ...}` of any object; everything else is skipped unread.
#[derive(serde::Deserialize)]
struct ObjectView {
    #[serde(default, deserialize_with = "null_as_default")]
    metadata: MapOnly<MetaView>,
}

/// ObjectMeta as far as [`Meta`] keeps it; `managedFields` and the rest are
/// skipped unread. Go's JSON writes `null` for some empty fields
/// (`creationTimestamp`), so every field takes `null` as absent.
#[derive(Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct MetaView {
    #[serde(deserialize_with = "null_as_default")]
    name: String,
    #[serde(deserialize_with = "null_as_default")]
    generate_name: String,
    #[serde(deserialize_with = "null_as_default")]
    namespace: String,
    #[serde(deserialize_with = "null_as_default")]
    uid: String,
    #[serde(deserialize_with = "null_as_default")]
    labels: Labels,
    #[serde(deserialize_with = "null_as_default")]
    annotations: Labels,
    #[serde(deserialize_with = "null_as_default")]
    owner_references: Vec<MapOnly<OwnerView>>,
    creation_timestamp: Option<String>,
}

#[derive(Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct OwnerView {
    #[serde(deserialize_with = "null_as_default")]
    api_version: String,
    #[serde(deserialize_with = "null_as_default")]
    kind: String,
    #[serde(deserialize_with = "null_as_default")]
    name: String,
    #[serde(deserialize_with = "null_as_default")]
    uid: String,
    controller: Option<bool>,
}

/// `T` from a JSON object only: serde_json also fills a struct from an
/// array, by position, and no Kubernetes object or metadata is an array.
#[derive(Default)]
struct MapOnly<T>(T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Map<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Map<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Map(std::marker::PhantomData)).map(MapOnly)
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, uid: &str, labels: &[(&str, &str)], controller: Option<(&str, &str, &str)>) -> Meta {
        Meta {
            name: name.into(),
            namespace: "ns".into(),
            uid: uid.into(),
            generate_name: String::new(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            annotations: Labels::new(),
            created: None,
            controller: controller.map(|(api_version, kind, uid)| OwnerRef {
                api_version: api_version.into(),
                kind: kind.into(),
                name: format!("{kind}-owner"),
                uid: uid.into(),
            }),
        }
    }

    fn cluster_with(owners: Vec<(OwnerKind, Meta)>) -> Cluster {
        let mut cluster = Cluster::none();
        for kind in OwnerKind::ALL {
            let store = OwnerStore::fixed(owners.iter().filter(|(k, _)| *k == kind).map(|(_, m)| m.into()));
            cluster.owners.insert(kind, Arc::new(store));
        }
        cluster
    }

    #[test]
    fn the_chain_follows_controllers_up_to_the_top() {
        let cluster = cluster_with(vec![
            (
                OwnerKind::ReplicaSet,
                meta("rs", "rs-uid", &[("pod-template-hash", "x")], Some(("apps/v1", "Deployment", "d-uid"))),
            ),
            (OwnerKind::Deployment, meta("d", "d-uid", &[("app", "pulsar")], None)),
        ]);
        let first = OwnerRef {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "rs".into(),
            uid: "rs-uid".into(),
        };
        let chain = cluster.owner_chain("ns", Some(first)).unwrap();
        let labels = chain.iter().map(|o| (o.label("pod-template-hash"), o.label("app"))).collect::<Vec<_>>();
        assert_eq!(labels, [(Some("x"), None), (None, Some("pulsar"))], "the ReplicaSet, then the Deployment");
    }

    #[test]
    fn the_chain_ends_at_unknown_kinds_stale_uids_and_missing_owners() {
        let cluster = cluster_with(vec![(OwnerKind::Job, meta("j", "j-uid", &[], None))]);
        let reference = |api: &str, kind: &str, uid: &str| {
            Some(OwnerRef { api_version: api.into(), kind: kind.into(), name: "x".into(), uid: uid.into() })
        };
        assert!(cluster.owner_chain("ns", reference("example.com/v1", "Job", "j-uid")).unwrap().is_empty());
        assert!(cluster.owner_chain("ns", reference("batch/v1", "Job", "other")).unwrap().is_empty());
        assert_eq!(cluster.owner_chain("ns", reference("batch/v1", "Job", "j-uid")).unwrap().len(), 1);
        assert!(Cluster::none().owner_chain("ns", reference("batch/v1", "Job", "j-uid")).unwrap().is_empty());
    }

    #[test]
    fn a_cached_controller_is_read_from_memory_only() {
        let cluster = cluster_with(vec![(
            OwnerKind::ReplicaSet,
            meta("rs", "4a1f0000-0000-4000-8000-00000000002a", &[], Some(("apps/v1", "Deployment", "d-uid"))),
        )]);
        let rs = |uid: &str| OwnerRef {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "rs".into(),
            uid: uid.into(),
        };
        let found = cluster.cached_controller("ns", &rs("4a1f0000-0000-4000-8000-00000000002a")).unwrap();
        assert_eq!(
            (found.kind, &*found.name, found.uid.to_string().as_str()),
            (OwnerKind::Deployment, "Deployment-owner", "d-uid")
        );
        assert!(cluster.cached_controller("other", &rs("4a1f0000-0000-4000-8000-00000000002a")).is_none());
        assert!(cluster.cached_controller("ns", &rs("not-in-memory")).is_none());
        assert!(Cluster::no_api().cached_controller("ns", &rs("4a1f0000-0000-4000-8000-00000000002a")).is_none());
    }

    #[test]
    fn an_owner_in_another_namespace_is_not_followed() {
        let mut job = meta("j", "j-uid", &[("app", "pulsar")], None);
        job.namespace = "pulsar".into();
        let cluster = cluster_with(vec![(OwnerKind::Job, job)]);
        let reference =
            OwnerRef { api_version: "batch/v1".into(), kind: "Job".into(), name: "j".into(), uid: "j-uid".into() };
        assert_eq!(cluster.owner_chain("pulsar", Some(reference.clone())).unwrap().len(), 1);
        assert!(
            cluster.owner_chain("team-a", Some(reference)).unwrap().is_empty(),
            "a reference across namespaces is void"
        );
    }

    #[test]
    fn offline_only_the_kinds_berth_follows_need_a_lookup() {
        let node =
            OwnerRef { api_version: "example.com/v1".into(), kind: "Widget".into(), name: "w".into(), uid: "w".into() };
        assert!(Cluster::missing_context().owner_chain("ns", Some(node)).unwrap().is_empty());
        let job = OwnerRef { api_version: "batch/v1".into(), kind: "Job".into(), name: "j".into(), uid: "j".into() };
        let err = Cluster::missing_context().owner_chain("ns", Some(job)).unwrap_err();
        assert!(err.to_string().contains("--context"), "{err}");
    }

    #[test]
    fn an_unsynced_cache_is_an_error_not_an_empty_answer() {
        let mut cluster = Cluster::none();
        cluster.storage_classes = Some(Arc::new(Store::default()));
        assert!(matches!(cluster.default_storage_class(), Err(ContextError::NotSynced("storageclasses"))));
        assert_eq!(cluster.unsynced(), ["storageclasses"]);
    }

    #[test]
    fn only_the_annotations_berth_reads_are_kept() {
        let object: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "x", "namespace": "ns", "uid": "u",
            "annotations": {
                "meta.helm.sh/release-name": "pulsar",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"huge\": true}",
            },
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "n"},
                {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "j", "controller": true},
            ],
        }))
        .unwrap();
        let meta = Meta::from_object_meta(&object);
        assert_eq!(meta.annotations.len(), 1);
        assert_eq!(meta.helm_release(), Some(("ns", "pulsar")));
        assert_eq!(meta.controller.unwrap().kind, "Job");
    }
}
