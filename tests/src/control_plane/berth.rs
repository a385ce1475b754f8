//! berth installed for real, and the fixtures as real Helm releases.
//!
//! berth: `berth certs` makes its serving certificate, and
//! `helm install berth deploy/chart` creates what the chart renders. The
//! controllers create berth's pods; the scheduler binds them; the minimal
//! kubelet runs each as a host process with the configuration the chart
//! rendered and a token of the chart's ServiceAccount. kube-apiserver
//! reaches it through the chart's Service, by its EndpointSlice.
//!
//! A fixture: its `rendered.yaml` (what `helm template` of the real chart
//! gave) inside a chart of its own, so that `helm install` stores it as a
//! release, with Helm's ownership labels and annotations, and runs its
//! hooks.

use super::{ControlPlane, Helm, repo};
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

pub const NAMESPACE: &str = "berth-system";
pub const RELEASE: &str = "berth";
/// The label the chart's selector puts on berth's pods.
pub const POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "berth");
/// What namespaces opt in with (the chart's webhook.namespaceLabels).
pub const OPT_IN: (&str, &str) = ("berth.dev/enabled", "true");

pub struct Berth {
    pub certs: PathBuf,
    /// Tests that stop, restart or reconfigure berth hold it alone; the
    /// others share it.
    lock: RwLock<()>,
}

/// The install's outcome, failure included (a second `helm install berth`
/// would only say the name is in use).
static BERTH: OnceLock<Result<Berth, String>> = OnceLock::new();

fn installed(plane: &'static ControlPlane, binary: PathBuf) -> &'static Berth {
    let outcome = BERTH.get_or_init(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| install(plane, binary))).map_err(super::panic_text)
    });
    outcome.as_ref().unwrap_or_else(|e| panic!("berth was not installed: {e}"))
}

impl Berth {
    /// berth installed once per test process, with Helm 3 and the chart's
    /// defaults; shared, so that no test changes it meanwhile.
    pub fn shared() -> (&'static ControlPlane, RwLockReadGuard<'static, ()>) {
        let plane = ControlPlane::shared();
        let berth = installed(plane, crate::server::binary());
        (plane, berth.lock.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// berth alone: no other control-plane test runs meanwhile.
    pub fn exclusive() -> (&'static ControlPlane, RwLockWriteGuard<'static, ()>) {
        let plane = ControlPlane::shared();
        let berth = installed(plane, crate::server::binary());
        (plane, berth.lock.write().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// berth installed with this binary standing for its image (the
    /// control-plane binary, by hand).
    pub fn install(plane: &'static ControlPlane, binary: PathBuf) -> &'static Berth {
        installed(plane, binary)
    }

    pub fn get() -> &'static Berth {
        BERTH.get().and_then(|b| b.as_ref().ok()).expect("berth is installed")
    }

    /// `helm install`'s (and `helm upgrade`'s) arguments for the serving
    /// certificate, as certs/README.md gives them.
    pub fn tls_args(&self) -> Vec<String> {
        let file = |name: &str| self.certs.join(name).display().to_string();
        let ca = std::fs::read(self.certs.join("ca.crt")).expect("ca.crt");
        use base64::Engine as _;
        vec![
            "--set-file".into(),
            format!("tls.cert={},tls.key={},tls.ca={}", file("tls.crt"), file("tls.key"), file("ca.crt")),
            "--set".into(),
            format!("tls.caBundle={}", base64::engine::general_purpose::STANDARD.encode(ca)),
        ]
    }
}

impl Berth {
    /// `helm upgrade berth` with the chart's values (and these), returning
    /// once every replica answers with the new configuration. A ConfigMap
    /// change restarts no pod, and `--wait` returns at once: each replica
    /// reloads on its own, a second or two apart. So this waits until each
    /// pod that was there has a successful reload more on its `/metrics`
    /// (a new pod started with the new configuration).
    pub fn upgrade(&self, plane: &ControlPlane, values: &[&str]) {
        // Every replica's count first: one that did not answer would pass
        // below without a reload.
        let mut before = Vec::new();
        plane
            .wait_for("every berth replica's /metrics", Duration::from_secs(60), || {
                before = replica_reloads(plane);
                before.iter().all(|(_, count)| count.is_some())
            })
            .unwrap_or_else(|e| panic!("{e}: {before:?}"));
        let config_before = configuration(plane);
        let chart = repo().join("deploy/chart").display().to_string();
        let tls = self.tls_args();
        let mut args = vec!["upgrade", RELEASE, &chart, "-n", NAMESPACE, "--reuse-values", "--wait", "--timeout", "5m"];
        args.extend(tls.iter().map(String::as_str));
        args.extend_from_slice(values);
        plane.helm_ok(Helm::V3, &args);
        plane.kubectl_ok(&["rollout", "status", "statefulset/berth", "-n", NAMESPACE, "--timeout=300s"]);
        // Values that leave the configuration as it was make no reload to
        // wait for (a restore that is already in place).
        let changed = configuration(plane) != config_before;
        let mut now = Vec::new();
        plane
            .wait_for("every berth replica to reload", Duration::from_secs(60), || {
                now = replica_reloads(plane);
                !now.is_empty()
                    && now.iter().all(|(uid, count)| {
                        let was = before.iter().find(|(u, _)| u == uid).map(|(_, was)| *was);
                        count.is_some_and(|count| !changed || was.is_none_or(|was| Some(count) > was))
                    })
            })
            .unwrap_or_else(|e| {
                let tail = |name: &str| {
                    let log = plane.log_of(name);
                    log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
                };
                panic!(
                    "{e}: reloads before {before:?}, now {now:?}\n--- berth-0 ---\n{}\n--- berth-1 ---\n{}",
                    tail("pod-berth-0"),
                    tail("pod-berth-1")
                )
            });
    }
}

/// The ConfigMaps of berth's namespace, as the pods read them.
fn configuration(plane: &ControlPlane) -> Vec<(String, std::collections::BTreeMap<String, String>)> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let maps: kube::Api<ConfigMap> = kube::Api::namespaced(plane.client(), NAMESPACE);
    let listed = plane.block_on(maps.list(&kube::api::ListParams::default())).expect("berth's ConfigMaps").items;
    listed.into_iter().map(|map| (map.metadata.name.unwrap_or_default(), map.data.unwrap_or_default())).collect()
}

/// Each running berth pod's uid and its count of successful reloads, from
/// its `/metrics`; none when it does not answer.
fn replica_reloads(plane: &ControlPlane) -> Vec<(String, Option<u64>)> {
    replica_metrics(plane)
        .into_iter()
        .map(|(uid, text)| {
            // No line yet: no reload since the start.
            let ok = text.map(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("berth_config_reloads_total{result=\"ok\"} "))
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0)
            });
            (uid, ok)
        })
        .collect()
}

/// Each running berth pod's uid and its `/metrics` text, from its pod IP
/// and the chart's metrics port; none when it does not answer.
pub fn replica_metrics(plane: &ControlPlane) -> Vec<(String, Option<String>)> {
    use k8s_openapi::api::core::v1::Pod;
    let pods: kube::Api<Pod> = kube::Api::namespaced(plane.client(), NAMESPACE);
    let params = kube::api::ListParams::default().labels(&format!("{}={}", POD_LABEL.0, POD_LABEL.1));
    let listed = plane.block_on(pods.list(&params)).map(|l| l.items).unwrap_or_default();
    listed
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .map(|pod| {
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
            let text = std::process::Command::new("curl")
                .args(["-sf", "--noproxy", "*", "-m", "2", &format!("http://{ip}:9090/metrics")])
                .output()
                .ok()
                .filter(|out| out.status.success())
                .map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
            (pod.metadata.uid.clone().unwrap_or_default(), text)
        })
        .collect()
}

fn install(plane: &'static ControlPlane, binary: PathBuf) -> Berth {
    let certs = plane.dir.join("berth-certs");
    let output = std::process::Command::new(&binary)
        .args(["certs", "--service", RELEASE, "--namespace", NAMESPACE, "--out", &certs.display().to_string()])
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", binary.display()));
    assert!(output.status.success(), "berth certs: {}", String::from_utf8_lossy(&output.stderr));
    plane.kubelet.run_on_host(plane, NAMESPACE, POD_LABEL, binary);
    plane.block_on(super::cluster::ensure_volumes(&plane.client(), 4)).expect("volumes");
    let berth = Berth { certs, lock: RwLock::new(()) };
    let chart = repo().join("deploy/chart").display().to_string();
    let mut args: Vec<String> =
        ["install", RELEASE, &chart, "-n", NAMESPACE, "--create-namespace", "--wait", "--timeout", "5m"]
            .map(String::from)
            .to_vec();
    args.extend(berth.tls_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = plane.helm(Helm::V3, &args);
    assert!(
        output.status.success(),
        "helm install berth: {}{}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        plane.kubectl_ok(&["get", "pods,pvc,endpointslices", "-n", NAMESPACE, "-o", "wide"]),
        plane.logs(30)
    );
    berth
}

/// A fixture set of tests/fixtures as a chart: its rendered manifests as
/// the one template, unchanged but for API versions the cluster no longer
/// serves ([`current_apis`]).
pub fn fixture_chart(set: &str, into: &Path) -> PathBuf {
    let chart = into.join(set);
    std::fs::create_dir_all(chart.join("templates")).expect("chart dir");
    std::fs::create_dir_all(chart.join("manifests")).expect("chart dir");
    let name: String =
        set.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    std::fs::write(chart.join("Chart.yaml"), format!("apiVersion: v2\nname: {name}\nversion: 0.1.0\n"))
        .expect("Chart.yaml");
    let rendered =
        std::fs::read_to_string(repo().join("tests/fixtures").join(set).join("rendered.yaml")).expect("rendered.yaml");
    std::fs::write(chart.join("manifests/rendered.yaml"), current_apis(&rendered)).expect("rendered.yaml");
    // .Files.Get: the text is not templated again.
    std::fs::write(chart.join("templates/rendered.yaml"), "{{ .Files.Get \"manifests/rendered.yaml\" }}\n")
        .expect("template");
    chart
}

/// How long the controllers, scheduler and kubelet take for a whole chart.
pub const SETTLE: Duration = Duration::from_secs(300);

/// The seed's charts (2020) render PodDisruptionBudgets as
/// `policy/v1beta1`, which Kubernetes removed in 1.25: an install on a
/// current cluster fails before any pod exists. `policy/v1` takes the same
/// fields; what `helm mapkubeapis` would do. No other removed API is in the
/// fixtures, and nothing berth sees (pods, claims) changes.
fn current_apis(rendered: &str) -> String {
    rendered.replace(
        "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget",
    )
}
