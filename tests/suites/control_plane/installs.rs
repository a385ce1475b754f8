//! `helm install` of the fixtures' charts through berth: every pod and
//! claim the controllers make, changed by the default policy, and bound by
//! the scheduler to its app's nodes.

use berth_e2e::control_plane::berth::{Berth, OPT_IN, SETTLE};
use berth_e2e::control_plane::cluster::{self, DEFAULT_CLASS, LOCAL_STORAGE};
use berth_e2e::control_plane::release::{KAFKA_KRAFT, KAFKA_ZOOKEEPER, PULSAR, SEED_KAFKA, SEED_PULSAR, Set};
use berth_e2e::control_plane::{ControlPlane, Helm};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use serde_json::Value;

fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serializable")
}

/// What the default policy must have done to a stored pod of `app`, and
/// where the scheduler must have put it; the problems found.
fn misplaced(pod: &Pod, app: &str) -> Vec<String> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = json(pod.spec.as_ref().expect("spec"));
    let mut wrong = Vec::new();
    let tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let has = |key: &str, value: Option<&str>, effect: &str| {
        tolerations.iter().any(|t| t["key"] == key && value.is_none_or(|v| t["value"] == v) && t["effect"] == effect)
    };
    if !has("dedicated", Some(app), "NoSchedule") {
        wrong.push(format!("{name}: no toleration of dedicated={app}:NoSchedule: {tolerations:?}"));
    }
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        if !has(key, None, "NoExecute") {
            wrong.push(format!("{name}: the apiserver's toleration of {key} is gone"));
        }
    }
    let label = cluster::DEDICATED.iter().find(|(a, _)| *a == app).map(|(_, key)| *key).expect("an app");
    // Pulsar's ZooKeeper and bookies get no nodeSelector: they go where
    // the toleration and their local volumes let them (deploy/policies/pulsar.yaml).
    let component = pod.metadata.labels.as_ref().and_then(|l| l.get("component")).map(String::as_str);
    let by_volume = app == "pulsar" && matches!(component, Some("zookeeper" | "bookie"));
    if !by_volume && spec["nodeSelector"][label] != app {
        wrong.push(format!("{name}: nodeSelector {} lacks {label}={app}", spec["nodeSelector"]));
    }
    if !spec["imagePullSecrets"].as_array().is_some_and(|s| s.iter().any(|s| s["name"] == "regsecret")) {
        wrong.push(format!("{name}: imagePullSecrets {} lacks regsecret", spec["imagePullSecrets"]));
    }
    for list in ["initContainers", "containers"] {
        for container in spec[list].as_array().into_iter().flatten() {
            let image = container["image"].as_str().unwrap_or_default();
            if !image.starts_with("harbor.example.com/") {
                wrong.push(format!("{name}: {list} image {image} is not from harbor.example.com"));
            }
        }
    }
    let node = spec["nodeName"].as_str().unwrap_or_default();
    if cluster::dedicated_to(node) != Some(app) {
        wrong.push(format!("{name}: bound to {node}, not to a {app} node"));
    }
    wrong
}

/// The install of one set: every pod the fixture has, with the policy's
/// changes, on its app's nodes; every claim of the policy's class. The
/// row of the note's table: pods, claims, placed right, wrong.
fn install_and_check(plane: &ControlPlane, helm: Helm, set: &Set) -> String {
    let _turn = plane.turn(set.namespace);
    plane.namespace(set.namespace, &[OPT_IN]);
    let charts = tempfile::tempdir().expect("tempdir");
    let want = set.expected();
    let seen = set.install(plane, helm, charts.path());
    // Failed, the release would make the next install of this set "in use".
    let _uninstall = berth_e2e::control_plane::on_panic(|| set.uninstall(plane, helm));
    let installed = set.settle(plane, &seen).unwrap_or_else(|e| panic!("{e}"));
    let wrong: Vec<String> = installed.pods.iter().flat_map(|pod| misplaced(pod, set.app)).collect();
    let classes: Vec<String> = installed
        .claims
        .iter()
        .filter(|c| c.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()) != Some(LOCAL_STORAGE))
        .map(|c| {
            format!(
                "claim {}: class {:?}",
                c.metadata.name.clone().unwrap_or_default(),
                c.spec.as_ref().and_then(|s| s.storage_class_name.clone())
            )
        })
        .collect();
    let right = installed.pods.len() - installed.pods.iter().filter(|p| !misplaced(p, set.app).is_empty()).count();
    let row = format!(
        "| {} | {helm:?} | {} | {} | {right} | {} |",
        set.dir,
        installed.pods.len(),
        installed.claims.len(),
        installed.pods.len() - right
    );
    eprintln!("{row}");
    assert_eq!(
        (installed.pods.len(), installed.claims.len()),
        want,
        "{}: pods and claims against the fixture's reviews",
        set.dir
    );
    assert!(
        wrong.is_empty() && classes.is_empty(),
        "{} with {helm:?}:\n{}\n{}",
        set.dir,
        wrong.join("\n"),
        classes.join("\n")
    );
    set.uninstall(plane, helm);
    row
}

#[test]
fn the_seeds_install_lands_every_pulsar_and_kafka_pod_on_its_nodes_with_helm_3_and_4() {
    let (plane, _berth) = Berth::shared();
    for helm in [Helm::V3, Helm::V4] {
        for set in [SEED_PULSAR, SEED_KAFKA] {
            install_and_check(plane, helm, &set);
        }
    }
}

#[test]
fn the_other_charts_land_on_their_nodes() {
    let (plane, _berth) = Berth::shared();
    ensure_pod_monitor_crd(plane);
    for set in [PULSAR, KAFKA_KRAFT, KAFKA_ZOOKEEPER] {
        install_and_check(plane, Helm::V3, &set);
    }
}

/// The Pulsar 4 chart ships PodMonitors: the cluster it was rendered for
/// runs the Prometheus operator. Its CRD, schemaless.
fn ensure_pod_monitor_crd(plane: &ControlPlane) {
    let crd = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
      "metadata":{"name":"podmonitors.monitoring.coreos.com"},
      "spec":{"group":"monitoring.coreos.com","scope":"Namespaced",
        "names":{"kind":"PodMonitor","listKind":"PodMonitorList","plural":"podmonitors","singular":"podmonitor"},
        "versions":[{"name":"v1","served":true,"storage":true,
          "schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}"#;
    let file = plane.dir.join("podmonitor-crd.json");
    std::fs::write(&file, crd).expect("crd file");
    plane.kubectl_ok(&["apply", "-f", &file.display().to_string()]);
    plane.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/podmonitors.monitoring.coreos.com",
        "--timeout=60s",
    ]);
}

/// The control, shown once: the seed's Kafka without berth (its namespace
/// not opted in) keeps Docker Hub images and no placement, and nothing of
/// it reaches a dedicated node; the claims keep the cluster's default class.
#[test]
fn without_berth_the_seeds_kafka_is_not_placed() {
    let (plane, _berth) = Berth::shared();
    let set = Set { namespace: "control", ..SEED_KAFKA };
    let _turn = plane.turn(set.namespace);
    plane.namespace(set.namespace, &[]);
    let charts = tempfile::tempdir().expect("tempdir");
    let _seen = set.install(plane, Helm::V3, charts.path());
    let _uninstall = berth_e2e::control_plane::on_panic(|| {
        let _ = plane.helm(Helm::V3, &["uninstall", set.release, "-n", set.namespace]);
    });
    // Bound or not: without the webhooks nothing says where they belong.
    // The controllers go on until every pod exists or one that must come
    // first cannot be scheduled (OrderedReady): wait until the pods have
    // stayed the same, each bound or unschedulable, for 10 s.
    let pods: Api<Pod> = Api::namespaced(plane.client(), set.namespace);
    let want = set.expected();
    let (mut last, mut since) = (Vec::new(), std::time::Instant::now());
    plane
        .wait_for("the control's pods to settle", SETTLE, || {
            let Ok(listed) = plane.block_on(pods.list(&ListParams::default())) else { return false };
            let settled = !listed.items.is_empty()
                && listed
                    .items
                    .iter()
                    .all(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()) || unschedulable(p));
            let names: Vec<String> = listed
                .items
                .iter()
                .map(|p| format!("{:?}{:?}", p.metadata.name, p.spec.as_ref().map(|s| &s.node_name)))
                .collect();
            if !settled || names != last {
                (last, since) = (names, std::time::Instant::now());
            }
            settled && (listed.items.len() == want.0 || since.elapsed() > std::time::Duration::from_secs(10))
        })
        .expect("the control's pods");
    let listed = plane.block_on(pods.list(&ListParams::default())).expect("pods").items;
    for pod in &listed {
        assert!(!misplaced(pod, set.app).is_empty(), "{:?} was placed without berth", pod.metadata.name);
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        assert!(node.as_deref().and_then(cluster::dedicated_to).is_none(), "{:?} reached {node:?}", pod.metadata.name);
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(plane.client(), set.namespace);
    for claim in plane.block_on(claims.list(&ListParams::default())).expect("claims").items {
        assert_eq!(claim.spec.and_then(|s| s.storage_class_name).as_deref(), Some(DEFAULT_CLASS));
    }
    eprintln!("control: {} of {} pods created, none placed", listed.len(), want.0);
    plane.helm_ok(Helm::V3, &["uninstall", set.release, "-n", set.namespace]);
}

fn unschedulable(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| {
        c.iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
    })
}
