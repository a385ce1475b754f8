//! A minimal kubelet for every node: no container runs, but each pod the
//! scheduler binds becomes what the controllers wait for. A StatefulSet
//! with `OrderedReady` creates pod-1 only once pod-0 is Running and Ready,
//! a Job completes only when its pod has Succeeded, and a deleted pod stays
//! Terminating until its kubelet force-deletes it.
//!
//! - A pod that restarts (`restartPolicy: Always`) becomes Running and Ready.
//! - Any other (Job pods, hook and test pods) becomes Succeeded.
//! - A pod being deleted is force-deleted (grace period 0).
//! - Pods of the host workload ([`Kubelet::run_on_host`], berth's own) run
//!   for real: as a process on the host, in a network namespace of its own
//!   whose address is the pod's IP, with the pod's volumes bind-mounted at
//!   their mount paths and its service-account token, so that it runs
//!   exactly as rendered, in-cluster. They are Ready while their readiness
//!   probe passes; the EndpointSlice controller publishes them.

use super::ControlPlane;
use super::process::Proc;
use futures_util::StreamExt as _;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, ServiceAccount, Volume};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which pods run as host processes, and with which binary.
#[derive(Clone)]
struct HostWorkload {
    plane: &'static ControlPlane,
    namespace: String,
    /// A label every such pod has.
    label: (String, String),
    /// The binary that stands for the container's image.
    binary: PathBuf,
}

#[derive(Default)]
struct State {
    /// Pods whose status this kubelet has set, by uid.
    started: HashSet<String>,
    deleting: HashSet<String>,
    next_ip: u32,
    host: Option<HostWorkload>,
    /// Host pods running now, by uid.
    running: HashMap<String, HostPod>,
    /// Host pods being started, by uid: a deletion waits for them.
    starting: HashSet<String>,
    /// Network slots of host pods, by pod name (a StatefulSet's pod keeps
    /// its slot when it comes back).
    slots: BTreeMap<String, u8>,
}

struct HostPod {
    proc: Arc<Mutex<Proc>>,
    /// Stops the prober and the volume refresher.
    stop: tokio::sync::watch::Sender<bool>,
}

#[derive(Clone)]
pub struct Kubelet {
    client: kube::Client,
    state: Arc<Mutex<State>>,
}

fn now() -> String {
    // RFC 3339 in UTC, seconds: what the API's metav1.Time holds.
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil(days as i64);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

impl Kubelet {
    pub fn new(client: kube::Client) -> Kubelet {
        Kubelet { client, state: Arc::default() }
    }

    pub(super) fn start(&self, runtime: &tokio::runtime::Runtime) {
        let kubelet = self.clone();
        runtime.spawn(async move { kubelet.run().await });
    }

    /// From now on, pods in `namespace` with `label` run as host processes
    /// of `binary`.
    pub fn run_on_host(&self, plane: &'static ControlPlane, namespace: &str, label: (&str, &str), binary: PathBuf) {
        self.state.lock().expect("kubelet").host = Some(HostWorkload {
            plane,
            namespace: namespace.to_string(),
            label: (label.0.to_string(), label.1.to_string()),
            binary,
        });
    }

    /// The host processes running now: pod name and pid.
    pub fn host_pods(&self) -> Vec<u32> {
        let state = self.state.lock().expect("kubelet");
        state.running.values().map(|pod| pod.proc.lock().expect("proc").pid()).collect()
    }

    async fn run(self) {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let mut events = watcher(pods, watcher::Config::default()).default_backoff().applied_objects().boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(pod) => self.observe(pod),
                Err(e) => eprintln!("kubelet: watch: {e}"),
            }
        }
    }

    fn observe(&self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else { return };
        let mut state = self.state.lock().expect("kubelet");
        if pod.metadata.deletion_timestamp.is_some() {
            if state.deleting.insert(uid.clone()) {
                let host = state.running.remove(&uid);
                let kubelet = self.clone();
                tokio::spawn(async move { kubelet.delete(pod, host).await });
            }
            return;
        }
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        if !bound || state.started.contains(&uid) {
            return;
        }
        state.started.insert(uid.clone());
        let is_host = state.host.as_ref().filter(|host| {
            pod.metadata.namespace.as_deref() == Some(host.namespace.as_str())
                && pod.metadata.labels.as_ref().and_then(|l| l.get(&host.label.0)) == Some(&host.label.1)
        });
        if let Some(host) = is_host.cloned() {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let next = u8::try_from(state.slots.len()).expect("fewer than 240 host pods");
            let slot = *state.slots.entry(name).or_insert(next);
            state.starting.insert(uid.clone());
            let kubelet = self.clone();
            tokio::spawn(async move { kubelet.start_host_retrying(host, slot, pod, uid).await });
            return;
        }
        state.next_ip += 1;
        let ip = format!("10.244.{}.{}", state.next_ip / 250, state.next_ip % 250 + 2);
        drop(state);
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(e) = set_status(&client, &pod, &ip, true).await {
                eprintln!("kubelet: status of {}: {e}", pod.metadata.name.unwrap_or_default());
            }
        });
    }

    async fn delete(&self, pod: Pod, host: Option<HostPod>) {
        // A pod still starting stops its own process once it sees the
        // deletion; the replacement (same name, same address) must not
        // exist before that.
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        for _ in 0..600 {
            if !self.state.lock().expect("kubelet").starting.contains(&uid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(host) = host {
            let _ = host.stop.send(true);
            let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
            let proc = host.proc.clone();
            let _ = tokio::task::spawn_blocking(move || {
                proc.lock().expect("proc").stop(Duration::from_secs(u64::try_from(grace).unwrap_or(30)))
            })
            .await;
        }
        let (Some(name), Some(namespace)) = (pod.metadata.name, pod.metadata.namespace) else { return };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let params = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
        if let Err(e) = pods.delete(&name, &params).await
            && !matches!(&e, kube::Error::Api(s) if s.code == 404)
        {
            eprintln!("kubelet: force-delete {namespace}/{name}: {e}");
        }
    }

    /// A kubelet retries a pod whose start failed (its ConfigMap not
    /// there yet, a token refused) until the pod is deleted.
    async fn start_host_retrying(&self, host: HostWorkload, slot: u8, pod: Pod, uid: String) {
        self.start_host_attempts(host, slot, pod, &uid).await;
        self.state.lock().expect("kubelet").starting.remove(&uid);
    }

    async fn start_host_attempts(&self, host: HostWorkload, slot: u8, pod: Pod, uid: &str) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        for attempt in 1.. {
            if self.state.lock().expect("kubelet").deleting.contains(uid) {
                return;
            }
            match self.start_host(host.clone(), slot, pod.clone()).await {
                Ok(()) => return,
                Err(e) if attempt < 10 => eprintln!("kubelet: host pod {name}, attempt {attempt}: {e}"),
                Err(e) => return eprintln!("kubelet: host pod {name} not started: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn start_host(&self, host: HostWorkload, slot: u8, pod: Pod) -> Result<(), String> {
        let plane = host.plane;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().ok_or("a pod without spec")?;
        let container = spec.containers.first().cloned().ok_or("a pod without containers")?;
        let (netns, address) = plane.network.pod(slot)?;
        let dir = plane.dir.join("pods").join(&name).join(&uid);
        let mut volumes = Vec::new();
        for volume in spec.volumes.iter().flatten() {
            let local = materialize(&self.client, &pod, volume, plane, &dir).await?;
            volumes.push((volume.clone(), local));
        }
        let mounts: Vec<(PathBuf, String, bool)> = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| {
                let (_, local) =
                    volumes.iter().find(|(v, _)| v.name == m.name).ok_or(format!("no volume {}", m.name))?;
                let source = m.sub_path.as_ref().map_or(local.clone(), |sub| local.join(sub));
                Ok((source, m.mount_path.clone(), m.read_only.unwrap_or(false)))
            })
            .collect::<Result<_, String>>()?;
        for (_, target, _) in &mounts {
            plane.note_created_dirs(Path::new(target))?;
        }
        let command = host_command(&host.binary, &netns, &container, &mounts, plane, &dir);
        let proc = Arc::new(Mutex::new(plane.group().spawn(&format!("pod-{name}"), command)));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let deleted = {
            let mut state = self.state.lock().expect("kubelet");
            let deleted = state.deleting.contains(&uid);
            if !deleted {
                state.running.insert(uid, HostPod { proc: proc.clone(), stop });
            }
            deleted
        };
        // Deleted while it was starting: `observe` found nothing to stop,
        // and the pod's next incarnation will want its slot.
        if deleted {
            let _ = tokio::task::spawn_blocking(move || proc.lock().expect("proc").stop(Duration::from_secs(1))).await;
            return Ok(());
        }

        let refresher = (self.client.clone(), pod.clone(), volumes, plane);
        tokio::spawn(refresh_volumes(refresher, stopped.clone()));
        let probe = readiness_url(&container, &address.to_string());
        tokio::spawn(probe_readiness(self.client.clone(), pod, address.to_string(), probe, stopped));
        Ok(())
    }
}

/// `ip netns exec NETNS unshare --mount sh -c 'mounts; exec binary args'`:
/// the pod's network namespace, a mount namespace of its own with the
/// pod's volumes at their paths, and the environment a pod gets.
fn host_command(
    binary: &Path,
    netns: &str,
    container: &Container,
    mounts: &[(PathBuf, String, bool)],
    plane: &ControlPlane,
    dir: &Path,
) -> Command {
    let mut script = String::from("set -e\n");
    for (source, target, read_only) in mounts {
        script += &format!("mkdir -p '{target}'\nmount --bind '{}' '{target}'\n", source.display());
        if *read_only {
            script += &format!("mount -o remount,bind,ro '{target}'\n");
        }
    }
    script += "exec \"$@\"\n";
    let mut command = Command::new("ip");
    command.args(["netns", "exec", netns, "unshare", "--mount", "--propagation", "private", "sh", "-c", &script, "sh"]);
    command.arg(binary);
    command.args(container.command.iter().flatten().skip(1));
    command.args(container.args.iter().flatten());
    command.current_dir(dir).env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin");
    for var in container.env.iter().flatten() {
        if let Some(value) = &var.value {
            command.env(&var.name, value);
        }
    }
    // What kube-proxy would route the `kubernetes` Service's ClusterIP to.
    let (host, port) = plane.server.trim_start_matches("https://").rsplit_once(':').expect("host:port");
    command.env("KUBERNETES_SERVICE_HOST", host).env("KUBERNETES_SERVICE_PORT", port);
    command
}

/// A volume's files in a directory of the pod's: ConfigMaps, Secrets and
/// the projected service-account token as the kubelet writes them; a claim
/// by its name, so that the pod that comes back finds its files.
async fn materialize(
    client: &kube::Client,
    pod: &Pod,
    volume: &Volume,
    plane: &ControlPlane,
    dir: &Path,
) -> Result<PathBuf, String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(claim) = &volume.persistent_volume_claim {
        let path = plane.dir.join("claims").join(&namespace).join(&claim.claim_name);
        std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        return Ok(path);
    }
    let path = dir.join("volumes").join(&volume.name);
    std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
    for (file, bytes) in volume_files(client, pod, volume, plane).await? {
        write_atomically(&path.join(file), &bytes)?;
    }
    Ok(path)
}

/// The files of a ConfigMap, Secret or projected volume (empty for others).
async fn volume_files(
    client: &kube::Client,
    pod: &Pod,
    volume: &Volume,
    plane: &ControlPlane,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut files = Vec::new();
    if let Some(source) = &volume.config_map {
        let map = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
            .get(&source.name)
            .await
            .map_err(|e| format!("ConfigMap {}: {e}", source.name))?;
        for (key, value) in map.data.unwrap_or_default() {
            files.push((key, value.into_bytes()));
        }
    }
    if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
            .get(&name)
            .await
            .map_err(|e| format!("Secret {name}: {e}"))?;
        let keys: Option<HashMap<String, String>> =
            source.items.as_ref().map(|items| items.iter().map(|i| (i.key.clone(), i.path.clone())).collect());
        for (key, value) in secret.data.unwrap_or_default() {
            let file = match &keys {
                Some(keys) => match keys.get(&key) {
                    Some(path) => path.clone(),
                    None => continue,
                },
                None => key,
            };
            files.push((file, value.0));
        }
    }
    if let Some(projected) = &volume.projected {
        for source in projected.sources.iter().flatten() {
            if let Some(token) = &source.service_account_token {
                let account =
                    pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
                let request: TokenRequest = serde_json::from_value(json!({"spec": {
                    "audiences": token.audience.iter().collect::<Vec<_>>(),
                    "expirationSeconds": token.expiration_seconds.unwrap_or(3607),
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.metadata.name, "uid": pod.metadata.uid},
                }}))
                .expect("a TokenRequest");
                let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
                let issued = accounts
                    .create_token_request(&account, &PostParams::default(), &request)
                    .await
                    .map_err(|e| format!("a token for {account}: {e}"))?;
                files.push((token.path.clone(), issued.status.and_then(|s| s.token).unwrap_or_default().into_bytes()));
            }
            if let Some(map) = &source.config_map {
                // kube-root-ca.crt: the cluster's CA, as the root-ca publisher
                // copies it into every namespace.
                let data = if map.name == "kube-root-ca.crt" {
                    HashMap::from([("ca.crt".to_string(), std::fs::read(&plane.pki.ca).map_err(|e| e.to_string())?)])
                } else {
                    let found = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
                        .get(&map.name)
                        .await
                        .map_err(|e| e.to_string())?;
                    found.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
                };
                for item in map.items.iter().flatten() {
                    if let Some(bytes) = data.get(&item.key) {
                        files.push((item.path.clone(), bytes.clone()));
                    }
                }
            }
            if let Some(downward) = &source.downward_api {
                for item in downward.items.iter().flatten() {
                    if item.field_ref.as_ref().is_some_and(|f| f.field_path == "metadata.namespace") {
                        files.push((item.path.clone(), namespace.clone().into_bytes()));
                    }
                }
            }
        }
    }
    Ok(files)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let tmp = path.with_extension("kubelet-tmp");
    std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

/// ConfigMap and Secret volumes follow their objects, as the kubelet's
/// periodic sync does (a `helm upgrade` of the policies reaches berth so).
async fn refresh_volumes(
    (client, pod, volumes, plane): (kube::Client, Pod, Vec<(Volume, PathBuf)>, &'static ControlPlane),
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for (volume, local) in &volumes {
            if volume.config_map.is_none() && volume.secret.is_none() {
                continue;
            }
            if let Ok(files) = volume_files(&client, &pod, volume, plane).await {
                for (file, bytes) in files {
                    let _ = write_atomically(&local.join(file), &bytes);
                }
            }
        }
    }
}

/// The container's readiness probe as a URL at the pod's address (HTTP GET
/// probes only; a named port is looked up in the container's ports).
fn readiness_url(container: &Container, address: &str) -> Option<String> {
    let get = container.readiness_probe.as_ref()?.http_get.as_ref()?;
    let port = match &get.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port) => *port,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name) => {
            container.ports.iter().flatten().find(|p| p.name.as_deref() == Some(name))?.container_port
        }
    };
    let scheme = get.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
    Some(format!("{scheme}://{address}:{port}{}", get.path.as_deref().unwrap_or("/")))
}

/// Probes every second, as the kubelet does, and sets Ready when the
/// answer changes (no probe: Ready at once).
async fn probe_readiness(
    client: kube::Client,
    pod: Pod,
    ip: String,
    url: Option<String>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut ready: Option<bool> = None;
    loop {
        let now_ready = match &url {
            None => true,
            Some(url) => {
                let url = url.clone();
                tokio::task::spawn_blocking(move || {
                    // The kubelet does not verify a probe's certificate.
                    Command::new("curl")
                        .args(["-ks", "--noproxy", "*", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", &url])
                        .output()
                        .is_ok_and(|o| o.stdout.starts_with(b"2"))
                })
                .await
                .unwrap_or(false)
            }
        };
        if ready != Some(now_ready) {
            match set_status(&client, &pod, &ip, now_ready).await {
                Ok(()) => ready = Some(now_ready),
                Err(e) => eprintln!("kubelet: readiness of {}: {e}", pod.metadata.name.clone().unwrap_or_default()),
            }
        }
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The status a kubelet reports: Running (Ready or not) for a pod that
/// restarts, Succeeded for one that runs to completion.
async fn set_status(client: &kube::Client, pod: &Pod, ip: &str, ready: bool) -> Result<(), String> {
    let (Some(name), Some(namespace)) = (&pod.metadata.name, &pod.metadata.namespace) else { return Ok(()) };
    let spec = pod.spec.as_ref().ok_or("no spec")?;
    let node = spec.node_name.clone().unwrap_or_default();
    let host_ip = super::cluster::NODES
        .iter()
        .position(|(n, _)| *n == node)
        .map(|i| format!("10.250.0.{}", i + 1))
        .unwrap_or_default();
    let completes = spec.restart_policy.as_deref().is_some_and(|p| p != "Always");
    let at = now();
    let condition = |kind: &str, status: bool| json!({"type": kind, "status": if status { "True" } else { "False" }, "lastTransitionTime": at, "lastProbeTime": null});
    let finished = json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": at, "finishedAt": at}});
    let statuses = |containers: &[Container], state: &serde_json::Value, ready: bool| {
        containers
            .iter()
            .map(|c| json!({"name": c.name, "image": c.image, "imageID": "", "ready": ready, "started": !completes, "restartCount": 0, "state": state}))
            .collect::<Vec<_>>()
    };
    let running = json!({"running": {"startedAt": at}});
    let (phase, state, ready) = if completes { ("Succeeded", &finished, false) } else { ("Running", &running, ready) };
    let status = json!({"status": {
        "phase": phase,
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "podIP": ip, "podIPs": [{"ip": ip}],
        "startTime": at,
        "conditions": [condition("PodReadyToStartContainers", true), condition("Initialized", true),
            condition("ContainersReady", ready), condition("Ready", ready), condition("PodScheduled", true)],
        "initContainerStatuses": statuses(spec.init_containers.as_deref().unwrap_or_default(), &finished, true),
        "containerStatuses": statuses(&spec.containers, state, ready),
    }});
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(status)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}
