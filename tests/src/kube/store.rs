//! What the stand-in cluster holds: objects by resource, a resourceVersion
//! counter shared by all of them (as etcd's revision is), and the history of
//! changes since the last compaction, which watches and continue tokens read.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A resource the API serves: `/api/v1/namespaces`, `/apis/batch/v1/jobs`...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub group: String,
    pub version: String,
    /// The path segment: `jobs`, `storageclasses`.
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// How the API names it in messages: `jobs.batch`, `namespaces`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }
}

/// Built-in resources the API serves even while it holds none of them (a
/// list of CronJobs in a cluster without any is empty, not 404).
/// `(apiVersion, kind, plural, namespaced)`.
const BUILT_IN: &[(&str, &str, &str, bool)] = &[
    ("v1", "Namespace", "namespaces", false),
    ("v1", "Node", "nodes", false),
    ("v1", "PersistentVolume", "persistentvolumes", false),
    ("v1", "Pod", "pods", true),
    ("v1", "PersistentVolumeClaim", "persistentvolumeclaims", true),
    ("v1", "Service", "services", true),
    ("v1", "ServiceAccount", "serviceaccounts", true),
    ("v1", "ConfigMap", "configmaps", true),
    ("v1", "Secret", "secrets", true),
    ("v1", "Endpoints", "endpoints", true),
    ("apps/v1", "Deployment", "deployments", true),
    ("apps/v1", "ReplicaSet", "replicasets", true),
    ("apps/v1", "StatefulSet", "statefulsets", true),
    ("apps/v1", "DaemonSet", "daemonsets", true),
    ("apps/v1", "ControllerRevision", "controllerrevisions", true),
    ("batch/v1", "Job", "jobs", true),
    ("batch/v1", "CronJob", "cronjobs", true),
    // The one kind clients may write (events.rs).
    ("events.k8s.io/v1", "Event", "events", true),
    ("storage.k8s.io/v1", "StorageClass", "storageclasses", false),
    ("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", true),
    ("networking.k8s.io/v1", "Ingress", "ingresses", true),
    ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", true),
    ("rbac.authorization.k8s.io/v1", "Role", "roles", true),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", true),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", false),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", false),
];

fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// The path segment for a kind the table does not know, the way the API
/// pluralises: `Ingress` → `ingresses`, `NetworkPolicy` → `networkpolicies`.
fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s') || lower.ends_with('x') || lower.ends_with("ch") || lower.ends_with("sh") {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y').filter(|s| !s.ends_with(['a', 'e', 'o', 'u'])) {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// Why an object cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("the object has no {0}")]
    Missing(&'static str),
    #[error("a {kind} is {scope}, but this one {has} metadata.namespace")]
    Scope { kind: String, scope: &'static str, has: &'static str },
}

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
pub struct Change {
    pub revision: u64,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind: &'static str,
    pub resource: usize,
    pub object: Value,
    /// The state before a MODIFIED, so a filtered watch can tell an object
    /// that stopped matching (DELETED to it) from one that started (ADDED).
    pub previous: Option<Value>,
}

/// A watch or a continue token from before the last compaction.
#[derive(Debug)]
pub struct Gone {
    pub requested: u64,
    pub oldest: u64,
}

type Key = (String, String);

#[derive(Debug, Default)]
pub struct Store {
    resources: Vec<Resource>,
    /// Per resource index: objects by (namespace, name), the order lists use.
    objects: BTreeMap<usize, BTreeMap<Key, Value>>,
    revision: u64,
    /// Changes after this revision are in `history`; before it, gone (410).
    compacted: u64,
    history: Vec<Change>,
    next_uid: u64,
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object["metadata"][field].as_str().filter(|s| !s.is_empty())
}

impl Store {
    pub fn new() -> Store {
        let resources = BUILT_IN
            .iter()
            .map(|(api_version, kind, plural, namespaced)| {
                let (group, version) = split_api_version(api_version);
                Resource {
                    group: group.to_owned(),
                    version: version.to_owned(),
                    plural: (*plural).to_owned(),
                    kind: (*kind).to_owned(),
                    namespaced: *namespaced,
                }
            })
            .collect();
        Store { resources, ..Store::default() }
    }

    /// Load objects as they are stored: each keeps its resourceVersion (one
    /// without gets the next after the highest), and no history precedes
    /// them, so a watch must start from the list's version or later.
    pub fn load(&mut self, objects: Vec<Value>) -> Result<(), (usize, ObjectError)> {
        let highest = objects
            .iter()
            .filter_map(|o| meta_str(o, "resourceVersion").and_then(|v| v.parse::<u64>().ok()))
            .max()
            .unwrap_or(0);
        self.revision = self.revision.max(highest);
        for (index, mut object) in objects.into_iter().enumerate() {
            let (resource, key) = self.place(&object).map_err(|e| (index, e))?;
            if meta_str(&object, "resourceVersion").and_then(|v| v.parse::<u64>().ok()).is_none() {
                self.revision += 1;
                object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
            }
            self.fill_uid(&mut object, None);
            self.objects.entry(resource).or_default().insert(key, object);
        }
        self.compacted = self.revision;
        self.history.clear();
        Ok(())
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn resource(&self, index: usize) -> &Resource {
        &self.resources[index]
    }

    /// The resource a request path names.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.resources.iter().position(|r| r.group == group && r.version == version && r.plural == plural)
    }

    pub fn find_kind(&self, kind: &str) -> Option<usize> {
        self.resources.iter().position(|r| r.kind == kind)
    }

    /// The resource and key of an object, registering a kind not yet known
    /// (a custom resource, say) with its scope taken from the object.
    fn place(&mut self, object: &Value) -> Result<(usize, Key), ObjectError> {
        let api_version = object["apiVersion"].as_str().ok_or(ObjectError::Missing("apiVersion"))?;
        let kind = object["kind"].as_str().ok_or(ObjectError::Missing("kind"))?;
        let name = meta_str(object, "name").ok_or(ObjectError::Missing("metadata.name"))?;
        let namespace = meta_str(object, "namespace");
        let (group, version) = split_api_version(api_version);
        let index = match self.resources.iter().position(|r| r.group == group && r.version == version && r.kind == kind)
        {
            Some(index) => index,
            None => {
                self.resources.push(Resource {
                    group: group.to_owned(),
                    version: version.to_owned(),
                    plural: plural(kind),
                    kind: kind.to_owned(),
                    namespaced: namespace.is_some(),
                });
                self.resources.len() - 1
            }
        };
        let resource = &self.resources[index];
        match (resource.namespaced, namespace) {
            (true, Some(namespace)) => Ok((index, (namespace.to_owned(), name.to_owned()))),
            (false, None) => Ok((index, (String::new(), name.to_owned()))),
            (true, None) => Err(ObjectError::Scope { kind: kind.to_owned(), scope: "namespaced", has: "has no" }),
            (false, Some(_)) => Err(ObjectError::Scope { kind: kind.to_owned(), scope: "cluster-scoped", has: "has" }),
        }
    }

    /// Keep the uid an object had (or was given); make one up otherwise.
    fn fill_uid(&mut self, object: &mut Value, previous: Option<&Value>) {
        if meta_str(object, "uid").is_some() {
            return;
        }
        let uid = match previous.and_then(|p| meta_str(p, "uid")) {
            Some(uid) => uid.to_owned(),
            None => {
                self.next_uid += 1;
                format!("00000000-0000-4000-8000-{:012x}", self.next_uid)
            }
        };
        object["metadata"]["uid"] = json!(uid);
    }

    /// Create or replace an object: the stored copy, with its new version.
    pub fn apply(&mut self, mut object: Value) -> Result<(usize, Value), ObjectError> {
        let (resource, key) = self.place(&object)?;
        let previous = self.objects.get(&resource).and_then(|objects| objects.get(&key)).cloned();
        self.revision += 1;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        self.fill_uid(&mut object, previous.as_ref());
        let kind = if previous.is_some() { "MODIFIED" } else { "ADDED" };
        self.objects.entry(resource).or_default().insert(key, object.clone());
        self.history.push(Change { revision: self.revision, kind, resource, object: object.clone(), previous });
        Ok((resource, object))
    }

    /// Delete an object: its last state, at the version of its deletion.
    pub fn delete(&mut self, resource: usize, namespace: &str, name: &str) -> Option<Value> {
        let mut object = self.objects.get_mut(&resource)?.remove(&(namespace.to_owned(), name.to_owned()))?;
        self.revision += 1;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        self.history.push(Change {
            revision: self.revision,
            kind: "DELETED",
            resource,
            object: object.clone(),
            previous: None,
        });
        Some(object)
    }

    pub fn get(&self, resource: usize, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&resource)?.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Objects of a resource (in one namespace, or all) whose key is after
    /// `after`, in key order.
    pub fn list<'a>(
        &'a self,
        resource: usize,
        namespace: Option<&'a str>,
        after: Option<&'a Key>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        use std::ops::Bound;
        // A page starts where the last ended, not with a scan from the
        // first object (a list of 300,000 in pages of 500).
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.objects
            .get(&resource)
            .into_iter()
            .flat_map(move |objects| objects.range::<Key, _>((from, Bound::Unbounded)))
            .filter(move |((ns, _), _)| namespace.is_none_or(|namespace| ns == namespace))
    }

    /// Whether a version is still served (a watch from it, a continue token).
    pub fn check(&self, revision: u64) -> Result<(), Gone> {
        if revision < self.compacted { Err(Gone { requested: revision, oldest: self.compacted }) } else { Ok(()) }
    }

    /// Changes to a resource (in one namespace, or all) after `revision`.
    pub fn changes_after(&self, revision: u64, resource: usize, namespace: Option<&str>) -> Result<Vec<Change>, Gone> {
        self.check(revision)?;
        Ok(self
            .history
            .iter()
            .filter(|c| c.revision > revision && c.resource == resource)
            .filter(|c| namespace.is_none_or(|ns| meta_str(&c.object, "namespace") == Some(ns)))
            .cloned()
            .collect())
    }

    /// Forget the history: watches and continue tokens from before now get
    /// 410 Gone, as after an etcd compaction.
    pub fn compact(&mut self) {
        self.compacted = self.revision;
        self.history.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::plural;

    #[test]
    fn kinds_are_pluralised_as_the_api_does() {
        for (kind, expected) in [
            ("Job", "jobs"),
            ("StorageClass", "storageclasses"),
            ("Ingress", "ingresses"),
            ("NetworkPolicy", "networkpolicies"),
            ("Gateway", "gateways"),
        ] {
            assert_eq!(plural(kind), expected);
        }
    }
}
