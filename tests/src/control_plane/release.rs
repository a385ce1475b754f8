//! The fixtures' charts as Helm releases on the control plane: which set
//! goes where, what its install must make, and install, settle, uninstall
//! (for the control-plane suites and `control-plane-bench`).

use super::berth::{SETTLE, fixture_chart};
use super::{ControlPlane, Helm, cluster, repo};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// A fixture set, the release and namespace it was rendered for, and the
/// app whose nodes its pods belong on.
#[derive(Clone, Copy, Debug)]
pub struct Set {
    pub dir: &'static str,
    pub release: &'static str,
    pub namespace: &'static str,
    pub app: &'static str,
}

pub const SEED_PULSAR: Set = Set { dir: "seed-pulsar-2.7.7", release: "pulsar", namespace: "pulsar", app: "pulsar" };
pub const SEED_KAFKA: Set = Set { dir: "seed-kafka-0.21.5", release: "kafka", namespace: "default", app: "kafka" };
pub const PULSAR: Set = Set { dir: "pulsar", release: "pulsar", namespace: "pulsar", app: "pulsar" };
pub const KAFKA_KRAFT: Set = Set { dir: "kafka-kraft", release: "kafka", namespace: "kafka", app: "kafka" };
pub const KAFKA_ZOOKEEPER: Set = Set { dir: "kafka-zookeeper", release: "kafka", namespace: "kafka", app: "kafka" };

impl Set {
    /// What the fixture's reviews say `helm install` makes: the Pods and
    /// claims the controllers create (CREATE, not dry run).
    pub fn expected(&self) -> (usize, usize) {
        let dir = repo().join("tests/fixtures").join(self.dir).join("reviews");
        let (mut pods, mut claims) = (0, 0);
        for entry in std::fs::read_dir(&dir).expect("reviews").flatten() {
            let review: Value = serde_json::from_slice(&std::fs::read(entry.path()).expect("review")).expect("JSON");
            let request = &review["request"];
            if request["operation"] != "CREATE" || request["dryRun"] == true || request.get("subResource").is_some_and(|s| !s.is_null()) {
                continue;
            }
            match request["kind"]["kind"].as_str() {
                Some("Pod") => pods += 1,
                Some("PersistentVolumeClaim") => claims += 1,
                _ => {}
            }
        }
        (pods, claims)
    }

    /// `helm install` of the set's chart; it returns once Helm has created
    /// the release's objects (no `--wait`: the controllers go on after).
    pub fn install(&self, plane: &ControlPlane, helm: Helm, charts: &Path) {
        plane.block_on(cluster::ensure_volumes(&plane.client(), 16)).expect("volumes");
        let chart = fixture_chart(self.dir, charts);
        plane.helm_ok(helm, &["install", self.release, &chart.display().to_string(), "-n", self.namespace, "--create-namespace", "--timeout", "10m"]);
    }

    /// The namespace's pods and claims once the controllers have made as
    /// many as the fixture has, every pod bound, every claim bound; and
    /// when the last pod was first seen (polled every 100 ms).
    pub fn settle(&self, plane: &ControlPlane) -> Result<Installed, String> {
        let want = self.expected();
        let pods: Api<Pod> = Api::namespaced(plane.client(), self.namespace);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(plane.client(), self.namespace);
        let mut last = None;
        let mut all_created = None;
        let settled = plane.wait_for(&format!("{} to settle", self.dir), SETTLE, || {
            let (Ok(p), Ok(c)) = (plane.block_on(pods.list(&ListParams::default())), plane.block_on(claims.list(&ListParams::default())))
            else {
                return false;
            };
            if p.items.len() >= want.0 {
                all_created.get_or_insert_with(Instant::now);
            }
            let done = p.items.len() >= want.0
                && c.items.len() >= want.1
                && p.items.iter().all(|pod| pod.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
                && c.items.iter().all(|claim| claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"));
            last = Some((p.items, c.items));
            done
        });
        let (pods, claims) = last.unwrap_or_default();
        settled.map_err(|e| {
            format!(
                "{e}: want {want:?} pods and claims, have {} and {}\n{}\n{}",
                pods.len(),
                claims.len(),
                plane.kubectl_ok(&["get", "pods,pvc,statefulsets,jobs", "-n", self.namespace, "-o", "wide"]),
                plane.kubectl_ok(&["get", "events", "-n", self.namespace, "--sort-by=.lastTimestamp"]),
            )
        })?;
        Ok(Installed { pods, claims, all_created: all_created.expect("settled means created") })
    }

    /// `helm uninstall`, then the claims (a StatefulSet's outlive it); it
    /// waits until the kubelet has let every pod go.
    pub fn uninstall(&self, plane: &ControlPlane, helm: Helm) {
        plane.helm_ok(helm, &["uninstall", self.release, "-n", self.namespace, "--wait", "--timeout", "5m"]);
        plane.kubectl_ok(&["delete", "pvc", "--all", "-n", self.namespace, "--wait=false"]);
        let pods: Api<Pod> = Api::namespaced(plane.client(), self.namespace);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(plane.client(), self.namespace);
        plane
            .wait_for(&format!("{} gone", self.dir), Duration::from_secs(180), || {
                plane.block_on(pods.list(&ListParams::default())).is_ok_and(|l| l.items.is_empty())
                    && plane.block_on(claims.list(&ListParams::default())).is_ok_and(|l| l.items.is_empty())
            })
            .unwrap_or_else(|e| panic!("{e}\n{}", plane.kubectl_ok(&["get", "pods,pvc", "-n", self.namespace])));
    }
}

pub struct Installed {
    pub pods: Vec<Pod>,
    pub claims: Vec<PersistentVolumeClaim>,
    /// When the list first held every pod the fixture has.
    pub all_created: Instant,
}
