//! What the cluster holds before anything is installed: eight Node objects
//! (no kubelet behind them), the StorageClasses, and local
//! PersistentVolumes, as the seed's hand-made install had.

use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// Taint and label of a dedicated node: what the default policy's values
/// target (deploy/chart/values.yaml, policies.pulsar / policies.kafka).
pub const DEDICATED: [(&str, &str); 2] =
    [("pulsar", "node-role.kubernetes.io/pulsar"), ("kafka", "node-role.kubernetes.io/kafka")];

/// The nodes: three for Pulsar, three for Kafka, two for everything else.
/// Three, not two: the charts spread their three replicas of ZooKeeper,
/// bookies, brokers and proxies with a required pod anti-affinity on the
/// hostname, so a third replica on two nodes is never scheduled.
pub const NODES: [(&str, Option<&str>); 8] = [
    ("pulsar-1", Some("pulsar")),
    ("pulsar-2", Some("pulsar")),
    ("pulsar-3", Some("pulsar")),
    ("kafka-1", Some("kafka")),
    ("kafka-2", Some("kafka")),
    ("kafka-3", Some("kafka")),
    ("general-1", None),
    ("general-2", None),
];

/// The class the default policy gives Pulsar's and Kafka's claims; its
/// volumes are on the dedicated nodes.
pub const LOCAL_STORAGE: &str = "local-storage";
/// The cluster's default class (DefaultStorageClass fills it into claims
/// without one, before any webhook); its volumes are on the general nodes.
pub const DEFAULT_CLASS: &str = "standard";

/// The app a node is dedicated to, if any.
pub fn dedicated_to(node: &str) -> Option<&'static str> {
    NODES.iter().find(|(name, _)| *name == node).and_then(|(_, app)| *app)
}

pub async fn create(client: &kube::Client) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    for (index, (name, app)) in NODES.iter().enumerate() {
        let mut labels = json!({
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        });
        let mut taints = json!([]);
        if let Some(app) = app {
            let key = DEDICATED.iter().find(|(a, _)| a == app).map(|(_, key)| *key).expect("a dedicated app");
            labels[key] = json!(app);
            taints = json!([{"key": "dedicated", "value": app, "effect": "NoSchedule"}]);
        }
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
        }))
        .expect("a Node");
        nodes.create(&PostParams::default(), &node).await.map_err(|e| format!("node {name}: {e}"))?;
        // TaintNodesByCondition gave the new node not-ready:NoSchedule; only
        // the node lifecycle controller (off: no kubelet posts status)
        // would take it off. The node's own taints are put back alone.
        nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"taints": taints}})))
            .await
            .map_err(|e| format!("node {name} untainted: {e}"))?;
        let now = "2026-01-01T00:00:00Z";
        let resources = json!({"cpu": "64", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"});
        let status = json!({"status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "the e2e harness plays this node's kubelet", "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": format!("10.250.0.{}", index + 1)}, {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": super::KUBERNETES_VERSION, "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
                "containerRuntimeVersion": "none://0", "kernelVersion": "", "osImage": "", "machineID": "", "systemUUID": "", "bootID": ""},
        }});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
            .map_err(|e| format!("node {name} status: {e}"))?;
    }
    let classes: Api<StorageClass> = Api::all(client.clone());
    for (name, default) in [(LOCAL_STORAGE, false), (DEFAULT_CLASS, true)] {
        let class: StorageClass = serde_json::from_value(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "annotations": {"storageclass.kubernetes.io/is-default-class": default.to_string()}},
            "provisioner": "kubernetes.io/no-provisioner",
            // Local volumes are bound where the scheduler puts the pod.
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Retain",
        }))
        .expect("a StorageClass");
        classes.create(&PostParams::default(), &class).await.map_err(|e| format!("StorageClass {name}: {e}"))?;
    }
    Ok(())
}

/// Tops up every node's free local volumes to `free`: local-storage ones on
/// the dedicated nodes, default-class ones on the general nodes. A bound
/// volume stays bound after its claim goes (Retain), so each install takes
/// fresh ones.
pub async fn ensure_volumes(client: &kube::Client, free: usize) -> Result<(), String> {
    // Tests in other namespaces top up at once: one at a time, or both
    // would create the same names.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let existing = volumes.list(&ListParams::default()).await.map_err(|e| format!("list PersistentVolumes: {e}"))?;
    for (node, app) in NODES {
        let class = if app.is_some() { LOCAL_STORAGE } else { DEFAULT_CLASS };
        let on_node: Vec<&PersistentVolume> = existing
            .items
            .iter()
            .filter(|pv| pv.metadata.labels.as_ref().and_then(|l| l.get("e2e/node")).is_some_and(|n| n == node))
            .collect();
        let available = on_node.iter().filter(|pv| pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_none())).count();
        for index in on_node.len()..on_node.len() + free.saturating_sub(available) {
            let name = format!("{node}-{index}");
            let pv: PersistentVolume = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": name, "labels": {"e2e/node": node}},
                "spec": {
                    "capacity": {"storage": "1Ti"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": class,
                    "volumeMode": "Filesystem",
                    "local": {"path": format!("/mnt/disks/{name}")},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
                },
            }))
            .expect("a PersistentVolume");
            volumes.create(&PostParams::default(), &pv).await.map_err(|e| format!("PersistentVolume {name}: {e}"))?;
        }
    }
    Ok(())
}
