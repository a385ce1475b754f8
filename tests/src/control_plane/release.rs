//! The fixtures' charts as Helm releases on the control plane: which set
//! goes where, what its install must make, and install, settle, uninstall
//! (for the control-plane suites and `control-plane-bench`).

use super::berth::{SETTLE, fixture_chart};
use super::{ControlPlane, Helm, cluster, repo};
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
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
            if request["operation"] != "CREATE"
                || request["dryRun"] == true
                || request.get("subResource").is_some_and(|s| !s.is_null())
            {
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
    /// Every pod of the namespace is recorded from before the install on,
    /// hook pods included, which Helm deletes once they have succeeded.
    pub fn install(&self, plane: &ControlPlane, helm: Helm, charts: &Path) -> Pods {
        plane.block_on(cluster::ensure_volumes(&plane.client(), 16)).expect("volumes");
        let chart = fixture_chart(self.dir, charts);
        let pods = Pods::watch(plane, self.namespace);
        plane.helm_ok(
            helm,
            &[
                "install",
                self.release,
                &chart.display().to_string(),
                "-n",
                self.namespace,
                "--create-namespace",
                "--timeout",
                "10m",
            ],
        );
        pods
    }

    /// Every pod the namespace has had once the controllers have made as
    /// many as the fixture has, every pod still there bound, every claim
    /// bound; and when the last pod was first seen.
    pub fn settle(&self, plane: &ControlPlane, seen: &Pods) -> Result<Installed, String> {
        let want = self.expected();
        let pods: Api<Pod> = Api::namespaced(plane.client(), self.namespace);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(plane.client(), self.namespace);
        let mut last = Vec::new();
        let mut all_created = None;
        let settled = plane.wait_for(&format!("{} to settle", self.dir), SETTLE, || {
            let (Ok(p), Ok(c)) = (
                plane.block_on(pods.list(&ListParams::default())),
                plane.block_on(claims.list(&ListParams::default())),
            ) else {
                return false;
            };
            let created = seen.count();
            if created >= want.0 {
                all_created.get_or_insert_with(Instant::now);
            }
            last = c.items;
            created >= want.0
                && last.len() >= want.1
                && p.items.iter().all(|pod| pod.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
                && last.iter().all(|claim| claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        });
        let pods = seen.all();
        settled.map_err(|e| {
            format!(
                "{e}: want {want:?} pods and claims, have {} and {}\n{}\n{}",
                pods.len(),
                last.len(),
                plane.kubectl_ok(&["get", "pods,pvc,statefulsets,jobs", "-n", self.namespace, "-o", "wide"]),
                plane.kubectl_ok(&["get", "events", "-n", self.namespace, "--sort-by=.lastTimestamp"]),
            )
        })?;
        Ok(Installed { pods, claims: last, all_created: all_created.expect("settled means created") })
    }

    /// When the namespace first had every pod the fixture has (bound or
    /// not: without berth some never are).
    pub fn created(&self, plane: &ControlPlane, seen: &Pods) -> Result<Instant, String> {
        let want = self.expected().0;
        plane.wait_for(&format!("{}'s {want} pods", self.dir), SETTLE, || seen.count() >= want)?;
        Ok(Instant::now())
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
    /// Every pod the namespace had, in its last state seen (bound).
    pub pods: Vec<Pod>,
    pub claims: Vec<PersistentVolumeClaim>,
    /// When the list first held every pod the fixture has.
    pub all_created: Instant,
}

/// The pods a namespace has had since the watch began, by uid, each in the
/// last state seen before it went.
pub struct Pods {
    seen: Arc<Mutex<BTreeMap<String, Pod>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Pods {
    fn watch(plane: &ControlPlane, namespace: &str) -> Pods {
        let seen: Arc<Mutex<BTreeMap<String, Pod>>> = Arc::default();
        let api: Api<Pod> = Api::namespaced(plane.client(), namespace);
        let into = seen.clone();
        let (ready, started) = std::sync::mpsc::channel();
        let task = plane.runtime().spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        let _ = ready.send(());
                    }
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                        if let Some(uid) = pod.metadata.uid.clone() {
                            into.lock().expect("pods").insert(uid, pod);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("pods watch: {e}"),
                }
            }
        });
        // Nothing is installed before the watch has its first list.
        started.recv_timeout(Duration::from_secs(30)).expect("the pods watch started");
        Pods { seen, task }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().expect("pods").len()
    }

    pub fn all(&self) -> Vec<Pod> {
        self.seen.lock().expect("pods").values().cloned().collect()
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        self.task.abort();
    }
}
