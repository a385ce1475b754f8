//! How berth's cost grows with the cluster it runs in (issue 18): memory,
//! start-up and `/mutate` latency against N owner objects.
//!
//! ```text
//! cargo build --release -p berth
//! cargo run --release -p berth-e2e --bin cluster-scale -- \
//!     [BERTH] [--objects 0,10000,100000,300000] [--rate 500] [--seconds 10] \
//!     [--churn 200] [-- BERTH-SERVE-ARGS...]
//! ```
//!
//! For each N, it serves N owner objects from the stand-in Kubernetes API
//! (tests/src/kube), mixed as in a cluster: 70% ReplicaSets (ten per
//! Deployment, `revisionHistoryLimit`'s default), 15% Jobs, 7%
//! Deployments, 5% StatefulSets, 3% DaemonSets, over 300 namespaces. Their
//! metadata is what the apiserver stores: labels, Helm's annotations,
//! `kubectl.kubernetes.io/last-applied-configuration` on what kubectl or
//! Helm applied, `managedFields`, and the controlling ownerReference of
//! every ReplicaSet. Then it starts `berth serve` (the default policy)
//! against it and reports:
//!
//! - ready: from starting the process to its `ready` log line (policies
//!   loaded from the compile cache, caches synced);
//! - peak: VmHWM once ready (the initial list included);
//! - RSS: VmRSS once ready and 3 s idle, and per object over N = 0;
//! - `/mutate` p50 and p99, open loop at `--rate` reviews/s for
//!   `--seconds` (latency from when each review was due), half of them a
//!   pod that needs its owner (no labels of its own, owned by a pulsar
//!   ReplicaSet of a Deployment: the chain is read), half one that does
//!   not (labelled); while `--churn` owner changes a second reach berth's
//!   watches (updates, and ReplicaSets created and deleted as in
//!   rollouts);
//! - the stand-in API's requests: lists (pages), watches, single GETs.
//!
//! Every answer is checked: both pods must be patched (placed).

use anyhow::{Context as _, bail, ensure};
use berth_e2e::fixtures;
use berth_e2e::kube::{FakeKubeApi, Recorded};
use berth_e2e::machine;
use berth_e2e::server::Server;
use berth_load::client::Connector;
use berth_load::{Protocol, Target};
use hyper::body::Bytes;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A Job pod of seed-pulsar-2.7.7: no labels of its own; its owner is
/// replaced by a ReplicaSet here.
const POD: &str = "025-pod-pulsar-bookie-init.json";
const SETTLE: Duration = Duration::from_secs(3);
const NAMESPACES: usize = 300;
/// Deployments of app=pulsar in namespace `pulsar`; their ReplicaSets own
/// the pods that need an owner.
const PULSAR_DEPLOYMENTS: usize = 20;

struct Options {
    berth: PathBuf,
    objects: Vec<usize>,
    rate: f64,
    seconds: u64,
    churn: f64,
    serve_args: Vec<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        berth: "target/release/berth".into(),
        objects: vec![0, 10_000, 100_000, 300_000],
        rate: 500.0,
        seconds: 10,
        churn: 200.0,
        serve_args: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--objects" => {
                options.objects = args
                    .next()
                    .context("--objects N,N,...")?
                    .split(',')
                    .map(|n| n.trim().parse().context("--objects N,N,..."))
                    .collect::<anyhow::Result<_>>()?;
            }
            "--rate" => options.rate = args.next().context("--rate R")?.parse()?,
            "--seconds" => options.seconds = args.next().context("--seconds S")?.parse()?,
            "--churn" => options.churn = args.next().context("--churn C")?.parse()?,
            "--" => options.serve_args.extend(args.by_ref()),
            flag if flag.starts_with("--") => bail!("unknown option {flag}"),
            path => options.berth = path.into(),
        }
    }
    ensure!(options.berth.is_file(), "{} is not a file (cargo build --release -p berth)", options.berth.display());
    options.berth = std::fs::canonicalize(&options.berth)?;
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    machine::print_header("cluster-scale: berth against N owner objects (issue 18)", &options.berth);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // A first start compiles the plugins into the cache, not measured.
    {
        let api = runtime.block_on(FakeKubeApi::start(Vec::new()));
        drop(start(&options, &api).0);
    }
    let mut idle_rss = None;
    let mut rows = Vec::new();
    for &n in &options.objects {
        let objects = cluster(n);
        let bytes: usize =
            objects.iter().take(1000).map(|o| o.to_string().len()).sum::<usize>() / objects.len().clamp(1, 1000);
        eprintln!("N = {n}: {} objects generated (~{bytes} bytes of JSON each); serving", objects.len());
        let api = runtime.block_on(FakeKubeApi::start(objects));
        let (server, ready) = start(&options, &api);
        let peak = field(&server, "VmHWM:")?;
        let cpu = cpu_seconds(&server)?;
        std::thread::sleep(SETTLE);
        let rss = field(&server, "VmRSS:")?;
        let at_start = api.requests();
        let latency = runtime.block_on(latency(&options, &api, &server, n))?;
        let during = api.requests();
        let metrics = server.metrics_text();
        let metric = |name: &str| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse::<f64>().ok()))
                .unwrap_or(f64::NAN)
        };
        let idle = *idle_rss.get_or_insert(rss);
        rows.push(Row {
            n,
            ready,
            cpu,
            peak,
            rss,
            per_object: if n > 0 { Some((rss as f64 - idle as f64) * 1024.0 / n as f64) } else { None },
            latency,
            start: Counts::of(&at_start),
            run: Counts::of(&during[at_start.len()..]),
            cache_bytes: metric("berth_owner_cache_bytes "),
            cache_entries: metric("berth_owner_cache_entries "),
            at_limit: metric("berth_owner_cache_at_limit "),
        });
        print_rows(&options, &rows);
    }
    Ok(())
}

struct Row {
    n: usize,
    ready: Duration,
    /// berth's CPU time (user and system) when ready.
    cpu: f64,
    peak: u64,
    rss: u64,
    per_object: Option<f64>,
    latency: Latency,
    start: Counts,
    run: Counts,
    cache_bytes: f64,
    cache_entries: f64,
    at_limit: f64,
}

fn print_rows(options: &Options, rows: &[Row]) {
    let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    println!(
        "\n{:>7} | {:>8} | {:>6} | {:>8} | {:>8} | {:>7} | {:>13} | {:>13} | {:>6} | {:>17} | {:>17} | cache entries/bytes/at limit",
        "N",
        "ready s",
        "CPU s",
        "peak MiB",
        "RSS MiB",
        "B/obj",
        "owner p50/p99",
        "label p50/p99",
        "errors",
        "start list/watch/GET",
        "run list/watch/GET",
    );
    for row in rows {
        println!(
            "{:>7} | {:>8.2} | {:>6.2} | {:>8} | {:>8} | {:>7} | {:>13} | {:>13} | {:>6} | {:>17} | {:>17} | {}/{}/{}",
            row.n,
            row.ready.as_secs_f64(),
            row.cpu,
            mib(row.peak),
            mib(row.rss),
            row.per_object.map_or("-".to_owned(), |b| format!("{b:.0}")),
            format!("{}/{}", ms(row.latency.owner.0), ms(row.latency.owner.1)),
            format!("{}/{}", ms(row.latency.labelled.0), ms(row.latency.labelled.1)),
            row.latency.errors,
            row.start.to_string(),
            row.run.to_string(),
            row.cache_entries,
            row.cache_bytes,
            row.at_limit,
        );
    }
    println!(
        "(latency in ms, open loop at {}/s for {} s, owner churn {}/s; B/obj = (RSS - RSS at N=0) / N)",
        options.rate, options.seconds, options.churn
    );
}

fn start(options: &Options, api: &FakeKubeApi) -> (Server, Duration) {
    let started = Instant::now();
    let mut builder = Server::builder().binary(options.berth.clone()).kube_api(api);
    for arg in &options.serve_args {
        builder = builder.arg(arg.clone());
    }
    let server = builder.spawn_listening();
    server.wait_for_log("ready", Duration::from_secs(600));
    (server, started.elapsed())
}

/// utime + stime of the process, in seconds (clock ticks of 1/100 s).
fn cpu_seconds(server: &Server) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid()))?;
    // Fields after the command (which may hold spaces), from the state on.
    let fields: Vec<&str> = stat.rsplit_once(')').context("stat")?.1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

fn field(server: &Server, name: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))?;
    let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name}"))?;
    Ok(line[name.len()..].trim().trim_end_matches("kB").trim().parse()?)
}

/// The stand-in's requests by what they are.
#[derive(Default, Clone, Copy)]
struct Counts {
    lists: usize,
    watches: usize,
    gets: usize,
}

impl Counts {
    fn of(requests: &[Recorded]) -> Self {
        let mut counts = Counts::default();
        for request in requests {
            let path = request.path_only();
            let segments = path.trim_matches('/').split('/').count();
            // /apis/G/V/R, /apis/G/V/namespaces/NS/R, /api/V/R...: a
            // collection; one more segment names an object.
            let collection = match path.starts_with("/apis/") {
                true => segments == 4 || (segments == 6 && path.contains("/namespaces/")),
                false => segments == 3 || (segments == 5 && path.contains("/namespaces/")),
            };
            if request.is_watch() {
                counts.watches += 1;
            } else if collection {
                counts.lists += 1;
            } else {
                counts.gets += 1;
            }
        }
        counts
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.lists, self.watches, self.gets)
    }
}

fn uid(kind: u8, index: usize) -> String {
    format!("{kind:02x}1f0000-0000-4000-8000-{index:012}")
}

fn namespace(index: usize) -> String {
    format!("team-{:03}", index % NAMESPACES)
}

/// managedFields as the apiserver records them: who set which fields.
fn managed_fields(manager: &str, labels: &Value, annotations: &[&str], spec: &Value) -> Value {
    let mut f_labels = serde_json::Map::new();
    f_labels.insert(".".into(), json!({}));
    for key in labels.as_object().into_iter().flatten().map(|(k, _)| k) {
        f_labels.insert(format!("f:{key}"), json!({}));
    }
    let mut f_annotations = serde_json::Map::new();
    f_annotations.insert(".".into(), json!({}));
    for key in annotations {
        f_annotations.insert(format!("f:{key}"), json!({}));
    }
    json!([
        {"manager": manager, "operation": "Update", "apiVersion": "apps/v1", "time": "2026-11-02T09:14:31Z",
         "fieldsType": "FieldsV1",
         "fieldsV1": {"f:metadata": {"f:annotations": f_annotations, "f:labels": f_labels}, "f:spec": spec}},
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
         "time": "2026-11-02T09:15:02Z", "fieldsType": "FieldsV1", "subresource": "status",
         "fieldsV1": {"f:status": {"f:availableReplicas": {}, "f:observedGeneration": {}, "f:readyReplicas": {},
             "f:replicas": {}, "f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {".": {}, "f:lastTransitionTime": {},
             "f:lastUpdateTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {}}}}}},
    ])
}

fn f_spec() -> Value {
    json!({"f:replicas": {}, "f:selector": {}, "f:template": {"f:metadata": {"f:labels": {".": {}, "f:app": {},
        "f:component": {}, "f:release": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"main\"}": {".": {},
        "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:ports": {}, "f:resources": {},
        "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}}, "f:dnsPolicy": {},
        "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}}}})
}

/// What `kubectl apply` (or Helm) records of the object it applied.
fn last_applied(api_version: &str, kind: &str, name: &str, namespace: &str, labels: &Value) -> String {
    json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
            "annotations": {"meta.helm.sh/release-name": labels["release"], "meta.helm.sh/release-namespace": namespace}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": labels["app"], "component": labels["component"]}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                "name": "main", "image": format!("registry.example.com/{}/{}:1.4.2", labels["app"].as_str().unwrap_or(""), name),
                "args": ["--config", "/etc/app/config.yaml", "--log-level", "info", "--metrics-port", "9090"],
                "ports": [{"containerPort": 8080, "name": "http"}, {"containerPort": 9090, "name": "metrics"}],
                "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
                "env": [{"name": "JAVA_OPTS", "value": "-Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=10"},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 10},
                "livenessProbe": {"httpGet": {"path": "/live", "port": "http"}, "periodSeconds": 30}}]}}},
    })
    .to_string()
}

fn labels(app: &str, component: &str, release: &str) -> Value {
    json!({"app": app, "component": component, "release": release, "heritage": "Helm",
        "chart": format!("{app}-1.4.2"), "app.kubernetes.io/managed-by": "Helm"})
}

/// An applied controller (Deployment, StatefulSet, DaemonSet, Job).
fn applied(kind: &str, api_version: &str, name: &str, ns: &str, uid: &str, labels: &Value) -> Value {
    let release = labels["release"].as_str().unwrap_or_default();
    let annotations = json!({
        "meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": ns,
        "kubectl.kubernetes.io/last-applied-configuration": last_applied(api_version, kind, name, ns, labels),
        "deployment.kubernetes.io/revision": "10",
    });
    json!({"apiVersion": api_version, "kind": kind, "metadata": {
        "name": name, "namespace": ns, "uid": uid, "generation": 10,
        "creationTimestamp": "2026-11-02T09:14:31Z", "labels": labels, "annotations": annotations,
        "managedFields": managed_fields("kubectl-client-side-apply", labels,
            &["kubectl.kubernetes.io/last-applied-configuration", "meta.helm.sh/release-name",
              "meta.helm.sh/release-namespace"], &f_spec()),
    }})
}

fn replica_set(deployment: &str, deployment_uid: &str, ns: &str, index: usize, labels: &Value) -> Value {
    let hash = format!("{:010x}", (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 24);
    let name = format!("{deployment}-{}", &hash[..10]);
    let mut labels = labels.clone();
    labels["pod-template-hash"] = json!(&hash[..10]);
    let release = labels["release"].as_str().unwrap_or_default().to_owned();
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {
        "name": name, "namespace": ns, "uid": uid(2, index), "generation": 2,
        "creationTimestamp": "2026-11-02T09:14:31Z", "labels": labels,
        "annotations": {"deployment.kubernetes.io/desired-replicas": "3", "deployment.kubernetes.io/max-replicas": "4",
            "deployment.kubernetes.io/revision": "10", "meta.helm.sh/release-name": release,
            "meta.helm.sh/release-namespace": ns},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment,
            "uid": deployment_uid, "controller": true, "blockOwnerDeletion": true}],
        "managedFields": managed_fields("kube-controller-manager", &labels,
            &["deployment.kubernetes.io/desired-replicas", "deployment.kubernetes.io/max-replicas",
              "deployment.kubernetes.io/revision", "meta.helm.sh/release-name", "meta.helm.sh/release-namespace"],
            &f_spec()),
    }})
}

/// N owner objects, mixed as in a cluster; the first Deployments (and
/// their ReplicaSets) are pulsar's, in namespace `pulsar`.
fn cluster(n: usize) -> Vec<Value> {
    let deployments = n * 7 / 100;
    let replica_sets = deployments * 10;
    let jobs = n * 15 / 100;
    let stateful_sets = n * 5 / 100;
    let daemon_sets = n.saturating_sub(deployments + replica_sets + jobs + stateful_sets);
    let mut objects = Vec::with_capacity(n);
    for d in 0..deployments {
        let (ns, app, name) = if d < PULSAR_DEPLOYMENTS {
            ("pulsar".to_owned(), "pulsar".to_owned(), format!("pulsar-broker-{d}"))
        } else {
            (namespace(d), format!("svc-{}", d % 997), format!("svc-{d:06}"))
        };
        let labels = labels(&app, "server", &format!("{app}-release"));
        let deployment_uid = uid(1, d);
        objects.push(applied("Deployment", "apps/v1", &name, &ns, &deployment_uid, &labels));
        for r in 0..10 {
            objects.push(replica_set(&name, &deployment_uid, &ns, d * 10 + r, &labels));
        }
    }
    for j in 0..jobs {
        let labels = labels(&format!("batch-{}", j % 211), "job", "batch");
        objects.push(applied("Job", "batch/v1", &format!("job-{j:06}"), &namespace(j), &uid(3, j), &labels));
    }
    for s in 0..stateful_sets {
        let labels = labels(&format!("db-{}", s % 113), "db", "db");
        objects.push(applied("StatefulSet", "apps/v1", &format!("db-{s:06}"), &namespace(s), &uid(4, s), &labels));
    }
    for s in 0..daemon_sets {
        let labels = labels(&format!("agent-{}", s % 17), "agent", "agents");
        objects.push(applied("DaemonSet", "apps/v1", &format!("agent-{s:06}"), &namespace(s), &uid(5, s), &labels));
    }
    objects
}

#[derive(Default)]
struct Latency {
    /// p50, p99
    owner: (Duration, Duration),
    labelled: (Duration, Duration),
    errors: usize,
}

/// The review of a pod of pulsar ReplicaSet `index` (of the
/// `PULSAR_DEPLOYMENTS * 10`), labelled or not.
fn review(base: &Value, request: usize, index: usize, labelled: bool) -> Value {
    let mut review = base.clone();
    review["request"]["uid"] = json!(format!("scale-{request}"));
    let (deployment, replica) = (index / 10, index);
    let hash = format!("{:010x}", (replica as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 24);
    let metadata = &mut review["request"]["object"]["metadata"];
    metadata["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": format!("pulsar-broker-{deployment}-{}", &hash[..10]), "uid": uid(2, replica),
        "controller": true, "blockOwnerDeletion": true}]);
    metadata["labels"] = if labelled {
        json!({"app": "pulsar", "component": "broker", "pod-template-hash": &hash[..10]})
    } else {
        json!({"pod-template-hash": &hash[..10]})
    };
    review
}

async fn latency(options: &Options, api: &FakeKubeApi, server: &Server, n: usize) -> anyhow::Result<Latency> {
    let owners = (n * 7 / 100).min(PULSAR_DEPLOYMENTS) * 10;
    if owners == 0 {
        return Ok(Latency::default());
    }
    let base = fixtures::get("seed-pulsar-2.7.7", POD).review;
    let target: Target = format!("https://localhost:{}/mutate", server.listen.port()).parse()?;
    let connector = Connector::new(&target, &server.ca, Protocol::Http2)?;
    let mut connections = Vec::new();
    for _ in 0..4 {
        connections.push(connector.connect().await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let churned = Arc::new(AtomicUsize::new(0));
    let churn = churn(api, options.churn, n, stop.clone(), churned.clone());
    let total = (options.rate * options.seconds as f64) as usize;
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let started = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(total);
    for request in 0..total {
        let due = started + interval * request as u32;
        let labelled = request % 2 == 1;
        let body = Bytes::from(review(&base, request, (request / 2) % owners, labelled).to_string());
        let mut connection = connections[request % connections.len()].share().context("h2")?;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let answer = connection.post("/mutate", "localhost", body).await;
            let took = due.elapsed();
            let placed = match &answer {
                Ok((200, body)) => {
                    let text = String::from_utf8_lossy(body);
                    text.contains("\"allowed\":true") && text.contains("\"patch\"")
                }
                _ => false,
            };
            (labelled, took, placed)
        }));
    }
    let mut owner = Vec::new();
    let mut labelled = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (is_labelled, took, placed) = task.await?;
        if !placed {
            errors += 1;
        }
        if is_labelled { labelled.push(took) } else { owner.push(took) }
    }
    stop.store(true, Ordering::Relaxed);
    churn.await??;
    eprintln!("  {} owner changes during the run", churned.load(Ordering::Relaxed));
    let quantiles = |mut times: Vec<Duration>| {
        times.sort();
        let at = |q: usize| times[(times.len() * q / 100).min(times.len() - 1)];
        (at(50), at(99))
    };
    Ok(Latency { owner: quantiles(owner), labelled: quantiles(labelled), errors })
}

/// Owner changes at `rate` a second until `stop`: nine in ten update a
/// ReplicaSet's annotation; the tenth creates a ReplicaSet and deletes an
/// older one (a rollout). The pulsar ones the reviews read are left alone.
fn churn(
    api: &FakeKubeApi,
    rate: f64,
    n: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    let replica_sets = n * 7 / 100 * 10;
    let first = PULSAR_DEPLOYMENTS * 10;
    // The API handle is not Clone; its state is shared with its tasks, so
    // changes are made through a second handle onto the same server.
    let api = api.handle();
    tokio::spawn(async move {
        if rate <= 0.0 || replica_sets <= first {
            return Ok(());
        }
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let mut step = 0usize;
        while !stop.load(Ordering::Relaxed) {
            ticks.tick().await;
            let index = first + (step * 7919) % (replica_sets - first);
            let deployment = index / 10;
            let ns = namespace(deployment);
            let labels =
                labels(&format!("svc-{}", deployment % 997), "server", &format!("svc-{}-release", deployment % 997));
            let mut object = replica_set(&format!("svc-{deployment:06}"), &uid(1, deployment), &ns, index, &labels);
            if step % 10 == 9 {
                let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                api.delete("ReplicaSet", Some(&ns), &name);
                object["metadata"]["name"] = json!(format!("{name}-r{step}"));
                object["metadata"]["uid"] = json!(uid(6, step));
            } else {
                object["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
                    json!((step % 5).to_string());
            }
            api.apply(object)?;
            step += 1;
            done.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
}
