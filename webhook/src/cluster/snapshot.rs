//! `berth eval --context FILE`: Kubernetes objects that stand in for the
//! cluster, as multi-document YAML or JSON (a `kind: List` included), read
//! into the same stores the watches fill.

use super::{Cluster, Meta, OwnerKind, OwnerStore, Store};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    /// The source names the line.
    #[error("{path}: not a stream of Kubernetes objects")]
    Parse {
        path: PathBuf,
        #[source]
        error: crate::yaml::Error,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    /// A `List`'s objects.
    #[serde(default)]
    items: Vec<Object>,
}

impl Cluster {
    /// A fixed cluster of the objects in `paths`. Every kind counts as
    /// synced: what the files do not hold does not exist.
    pub fn snapshot(paths: &[PathBuf]) -> Result<Self, SnapshotError> {
        let mut namespaces = HashMap::new();
        let mut storage_classes = HashMap::new();
        let mut owners: HashMap<OwnerKind, Vec<super::owners::WireMeta>> = HashMap::new();
        for path in paths {
            for object in read(path)? {
                let meta = Arc::new(Meta::from_object_meta(&object.metadata));
                match (object.api_version.as_str(), object.kind.as_str()) {
                    ("v1", "Namespace") => {
                        namespaces.insert(meta.name.clone(), meta);
                    }
                    ("storage.k8s.io/v1" | "storage.k8s.io/v1beta1", "StorageClass") => {
                        storage_classes.insert(meta.name.clone(), meta);
                    }
                    (api_version, kind) => {
                        if let Some(kind) = OwnerKind::from_reference(api_version, kind) {
                            owners.entry(kind).or_default().push((&*meta).into());
                        }
                    }
                }
            }
        }
        let store = |items| {
            let store = Store::default();
            store.replace(items);
            Arc::new(store)
        };
        Ok(Cluster {
            namespaces: Some(store(namespaces)),
            owners: OwnerKind::ALL
                .into_iter()
                .map(|k| (k, Arc::new(OwnerStore::fixed(owners.remove(&k).unwrap_or_default()))))
                .collect(),
            storage_classes: Some(store(storage_classes)),
            stats: super::CacheStats::default(),
            api: None,
            offline: None,
            assume_no_default_class: false,
        })
    }
}

fn read(path: &Path) -> Result<Vec<Object>, SnapshotError> {
    let text = std::fs::read_to_string(path).map_err(|error| SnapshotError::Read { path: path.to_owned(), error })?;
    // JSON is YAML, so one parser takes both.
    let documents: Vec<Object> =
        crate::yaml::documents(&text).map_err(|error| SnapshotError::Parse { path: path.to_owned(), error })?;
    let mut objects = Vec::new();
    for object in documents {
        flatten(object, &mut objects);
    }
    Ok(objects)
}

fn flatten(mut object: Object, into: &mut Vec<Object>) {
    for item in std::mem::take(&mut object.items) {
        flatten(item, into);
    }
    if object.kind != "List" && !object.kind.ends_with("List") {
        into.push(object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixture_cluster_gives_owners_namespaces_and_classes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.yaml");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: pulsar, labels: {team: data}}\n---\n\
             apiVersion: batch/v1\nkind: Job\nmetadata: {name: init, namespace: pulsar, uid: j1, labels: {app: pulsar}}\n---\n\
             apiVersion: v1\nkind: List\nitems:\n- apiVersion: storage.k8s.io/v1\n  kind: StorageClass\n  metadata:\n    name: standard\n    annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}\n",
        )
        .unwrap();
        let cluster = Cluster::snapshot(&[path]).unwrap();
        assert!(cluster.unsynced().is_empty());
        assert_eq!(cluster.default_storage_class().unwrap().as_deref(), Some("standard"));
        assert_eq!(cluster.namespace_labels("pulsar").unwrap().unwrap().labels["team"], "data");
        let job = super::super::OwnerRef {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: "init".into(),
            uid: "j1".into(),
        };
        assert_eq!(cluster.owner_chain("pulsar", Some(job)).unwrap()[0].label("app"), Some("pulsar"));
    }

    #[test]
    fn of_two_default_classes_the_newer_counts_as_the_apiserver_picks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classes.yaml");
        let class = |name: &str, created: &str| {
            format!(
                "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: {name}\n  creationTimestamp: \"{created}\"\n  annotations: {{storageclass.kubernetes.io/is-default-class: \"true\"}}\n"
            )
        };
        std::fs::write(
            &path,
            format!("{}---\n{}", class("zzz-new", "2025-01-01T00:00:00Z"), class("aaa-old", "2020-01-01T00:00:00Z")),
        )
        .unwrap();
        assert_eq!(
            Cluster::snapshot(std::slice::from_ref(&path)).unwrap().default_storage_class().unwrap().as_deref(),
            Some("zzz-new")
        );
        std::fs::write(
            &path,
            format!("{}---\n{}", class("aaa-new", "2025-01-01T00:00:00Z"), class("zzz-old", "2020-01-01T00:00:00Z")),
        )
        .unwrap();
        assert_eq!(Cluster::snapshot(&[path]).unwrap().default_storage_class().unwrap().as_deref(), Some("aaa-new"));
    }

    #[test]
    fn a_broken_document_names_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, "kind: Namespace\n---\n- not\n- an object\n").unwrap();
        let err = crate::error_chain(&Cluster::snapshot(std::slice::from_ref(&path)).unwrap_err());
        assert!(err.starts_with(&path.display().to_string()) && err.contains("line 3"), "{err}");
        // Two objects of one uid in one document would hide one: refused.
        std::fs::write(&path, "kind: Job\nmetadata:\n  uid: a\n  uid: b\n").unwrap();
        let err = crate::error_chain(&Cluster::snapshot(std::slice::from_ref(&path)).unwrap_err());
        assert!(err.contains("duplicate") && err.contains("line 4"), "{err}");
    }
}
