//! What berth's cluster cache costs (issue 9): the memory it takes per
//! 10,000 owner objects, and what an owner lookup adds to `/mutate`.
//!
//! ```text
//! cargo build --release -p berth
//! cargo run -p berth-e2e --bin cluster-footprint -- \
//!     [BERTH] [--objects N] [--requests R] [--without-last-applied]
//! ```
//!
//! BERTH is the binary to measure (default target/release/berth); this
//! driver (the client and the stand-in API) need not be a release build,
//! as it is not what is measured (`berth-e2e`'s dependencies are built
//! optimised in the dev profile anyway). It runs
//! `berth serve` with the default policy against the stand-in Kubernetes API
//! (tests/src/kube) twice: with no objects, and with N chart Jobs (10,000),
//! each carrying a ~2 KB `last-applied-configuration` that berth must drop
//! (`--without-last-applied` leaves it out, to show what receiving it
//! costs). It prints VmRSS once each is ready and idle, then, against the second,
//! the latency of `/mutate` over TLS/HTTP2 for four kinds of pod:
//!
//! - labelled: carries the chart's labels, so no owner is looked up;
//! - owner in memory: no labels, owned by one of the N Jobs (chart labels);
//! - owner in memory, not a chart's: same lookup, but no policy matches, so
//!   nothing is patched — the fair comparison for the next one;
//! - owner by GET: owned by a name the API holds (one of the N Jobs) under
//!   a uid berth has never seen, as a pod of a Job deleted and re-created
//!   under the same name. The cache misses, berth GETs the Job (a real
//!   200 with the full metadata), sees another uid and matches nothing.
//!   It never enters the cache under that uid, so every such pod costs one
//!   GET: the round trip a pod of a Job the watch has not delivered yet
//!   pays. The GETs the API received are counted and printed.

use anyhow::{Context as _, bail, ensure};
use berth_e2e::admission::{Answer, check};
use berth_e2e::client::{Client, Protocol};
use berth_e2e::fixtures;
use berth_e2e::kube::{FakeKubeApi, Recorded};
use berth_e2e::machine;
use berth_e2e::server::Server;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const NAMESPACE: &str = "pulsar";
/// A Job pod of seed-pulsar-2.7.7: no labels of its own, owned by a Job.
const JOB_POD: &str = "025-pod-pulsar-bookie-init.json";
/// How long berth is left alone after it is ready before its RSS is read.
const SETTLE: Duration = Duration::from_secs(3);
const WARM_UP: usize = 20;

struct Options {
    berth: PathBuf,
    objects: usize,
    requests: usize,
    /// Leave the large annotation out, to see what its passing through costs.
    without_last_applied: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut options =
        Options { berth: "target/release/berth".into(), objects: 10_000, requests: 300, without_last_applied: false };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--objects" => options.objects = args.next().context("--objects N")?.parse()?,
            "--requests" => options.requests = args.next().context("--requests R")?.parse()?,
            "--without-last-applied" => options.without_last_applied = true,
            flag if flag.starts_with("--") => bail!("unknown option {flag}"),
            path => options.berth = path.into(),
        }
    }
    ensure!(options.berth.is_file(), "{} is not a file (cargo build --release -p berth)", options.berth.display());
    // berth runs in a directory of its own.
    options.berth = std::fs::canonicalize(&options.berth)?;
    ensure!(options.objects >= 2, "--objects must be at least 2 (half are read from memory, half by GET)");
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    machine::print_header("cluster-footprint: berth's cluster cache (issue 9)", &options.berth);
    let jobs: Vec<Value> = (0..options.objects).map(|i| chart_job(i, !options.without_last_applied)).collect();
    let last_applied =
        match jobs[0]["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str() {
            Some(annotation) => format!("a last-applied-configuration of {} bytes", annotation.len()),
            None => "no last-applied-configuration".to_owned(),
        };
    println!(
        "objects:  N Jobs in namespace {NAMESPACE}, each with {} labels, Helm's 2 annotations and {last_applied}",
        jobs[0]["metadata"]["labels"].as_object().map_or(0, serde_json::Map::len),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // A first start compiles the plugins into the cache (and is not
    // measured), so neither measured run holds the compiler's memory.
    drop(start(&options, &runtime.block_on(FakeKubeApi::start(Vec::new()))));
    println!("\nberth serve (default policy), VmRSS once ready and {SETTLE:?} idle (VmHWM: its peak so far):");
    let idle = {
        let api = runtime.block_on(FakeKubeApi::start(Vec::new()));
        let server = start(&options, &api);
        let memory = memory(&server)?;
        println!("  N = 0       {memory}");
        memory
    };
    let api = runtime.block_on(FakeKubeApi::start(jobs));
    let server = start(&options, &api);
    let loaded = memory(&server)?;
    println!("  N = {:<7} {loaded}", options.objects);
    let per_10k = (loaded.rss_kib as f64 - idle.rss_kib as f64) * 10_000.0 / options.objects as f64;
    println!("  difference  {:.1} MiB per 10,000 Jobs ({:.2} KiB per Job)", per_10k / 1024.0, per_10k / 10_000.0);

    runtime.block_on(latency(&options, &api, &server))
}

fn start(options: &Options, api: &FakeKubeApi) -> Server {
    Server::builder().binary(options.berth.clone()).kube_api(api).spawn()
}

/// A Job as `helm install` of a chart creates it, through `kubectl apply`.
fn chart_job(index: usize, last_applied: bool) -> Value {
    let name = format!("load-{index:05}");
    let labels = json!({
        "app": "pulsar", "chart": "pulsar-2.7.7", "release": "pulsar", "heritage": "Helm",
        "component": "bookie-init", "app.kubernetes.io/managed-by": "Helm",
    });
    // An init script of the size chart Jobs carry, so the annotation that
    // repeats the whole object is ~2 KB.
    let script = "bin/bookkeeper shell initnewcluster --zk pulsar-zookeeper:2181 || true; ".repeat(24);
    let spec = json!({"template": {"spec": {"restartPolicy": "Never", "containers": [{
        "name": "init", "image": "apachepulsar/pulsar-all:2.7.4", "command": ["sh", "-c", script],
    }]}}});
    let applied = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels,
            "annotations": {"meta.helm.sh/release-name": "pulsar", "meta.helm.sh/release-namespace": NAMESPACE}},
        "spec": spec,
    });
    let mut job = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": name, "namespace": NAMESPACE, "uid": job_uid(index), "labels": labels,
            "annotations": {"meta.helm.sh/release-name": "pulsar", "meta.helm.sh/release-namespace": NAMESPACE},
        },
        "spec": spec,
    });
    if last_applied {
        job["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = json!(applied.to_string());
    }
    job
}

fn job_uid(index: usize) -> String {
    format!("4a1f0000-0000-4000-8000-{index:012}")
}

struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |kib: u64| kib as f64 / 1024.0;
        write!(f, "VmRSS {:6.1} MiB   (VmHWM {:6.1} MiB)", mib(self.rss_kib), mib(self.hwm_kib))
    }
}

fn memory(server: &Server) -> anyhow::Result<Memory> {
    std::thread::sleep(SETTLE);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name}"))?;
        Ok(line[name.len()..].trim().trim_end_matches("kB").trim().parse()?)
    };
    Ok(Memory { rss_kib: field("VmRSS:")?, hwm_kib: field("VmHWM:")? })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Labelled,
    InMemory,
    InMemoryUnmatched,
    ByGet,
}

impl Case {
    const ALL: [Case; 4] = [Case::Labelled, Case::InMemory, Case::InMemoryUnmatched, Case::ByGet];

    fn describe(self) -> &'static str {
        match self {
            Case::Labelled => "labelled pod, no owner lookup (patched)",
            Case::InMemory => "owner Job in memory (patched)",
            Case::InMemoryUnmatched => "owner Job in memory, not a chart's",
            Case::ByGet => "owner not in memory: one GET",
        }
    }

    /// Whether berth must patch it: a check that each case took its path.
    fn patched(self) -> bool {
        matches!(self, Case::Labelled | Case::InMemory)
    }
}

/// The Job pod's review, owned by `name`/`uid`.
fn job_pod(base: &Value, request: usize, name: &str, uid: &str) -> Value {
    let mut review = base.clone();
    review["request"]["uid"] = json!(format!("footprint-{request}"));
    let metadata = &mut review["request"]["object"]["metadata"];
    metadata["ownerReferences"][0]["name"] = json!(name);
    metadata["ownerReferences"][0]["uid"] = json!(uid);
    for (key, value) in [("job-name", name), ("controller-uid", uid)] {
        metadata["labels"][key] = json!(value);
        metadata["labels"][format!("batch.kubernetes.io/{key}")] = json!(value);
    }
    review
}

fn review(case: Case, base: &Value, request: usize, objects: usize) -> Value {
    // Cases that read the N Jobs spread over them: the lower half from
    // memory, the upper half by GET, so the API's GETs tell them apart.
    let half = objects / 2;
    match case {
        Case::Labelled => {
            let index = request % half;
            let mut review = job_pod(base, request, &format!("load-{index:05}"), &job_uid(index));
            let labels = &mut review["request"]["object"]["metadata"]["labels"];
            labels["app"] = json!("pulsar");
            labels["component"] = json!("bookie-init");
            review
        }
        Case::InMemory => {
            let index = request % half;
            job_pod(base, request, &format!("load-{index:05}"), &job_uid(index))
        }
        Case::InMemoryUnmatched => job_pod(base, request, OTHER_JOB, OTHER_UID),
        Case::ByGet => {
            let index = half + request % (objects - half);
            job_pod(base, request, &format!("load-{index:05}"), &format!("dead0000-0000-4000-8000-{request:012}"))
        }
    }
}

/// A Job of something that is not a chart berth's policies place.
const OTHER_JOB: &str = "backup-nightly";
const OTHER_UID: &str = "0b0b0000-0000-4000-8000-000000000001";

async fn send(client: &mut Client, review: &Value) -> anyhow::Result<(Duration, Answer)> {
    let body = review.to_string();
    let started = Instant::now();
    let (status, bytes) = client.post("/mutate", body).await?;
    let took = started.elapsed();
    ensure!(status == hyper::StatusCode::OK, "{status}: {}", String::from_utf8_lossy(&bytes));
    Ok((took, check(review, &bytes)))
}

/// GETs of single Jobs (not lists or watches) the API has received, by
/// whether the name is in the lower (in-memory) half of the N Jobs.
fn owner_gets(requests: &[Recorded], objects: usize) -> (usize, usize) {
    let gets = requests.iter().filter(|r| r.method == "GET" && !r.is_watch());
    let mut counts = (0, 0);
    for request in gets {
        let path = request.path_only();
        let Some(index) = path.rsplit_once("/jobs/load-").and_then(|(_, i)| i.parse::<usize>().ok()) else { continue };
        if index < objects / 2 { counts.0 += 1 } else { counts.1 += 1 }
    }
    counts
}

async fn latency(options: &Options, api: &FakeKubeApi, server: &Server) -> anyhow::Result<()> {
    // Added after the memory was read, so N is N there; the watch brings it.
    api.apply(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": OTHER_JOB, "namespace": NAMESPACE, "uid": OTHER_UID, "labels": {"app": "backup"}},
    }))?;
    let base = fixtures::get("seed-pulsar-2.7.7", JOB_POD).review;
    let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await?;
    ensure!(client.alpn.as_deref() == Some(b"h2".as_slice()), "berth did not take HTTP/2");

    let rounds = WARM_UP + options.requests;
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); Case::ALL.len()];
    let mut gets_before = (0, 0);
    for round in 0..rounds {
        if round == WARM_UP {
            gets_before = owner_gets(&api.requests(), options.objects);
        }
        // Rotated, so whatever else runs on the machine falls on every case.
        for offset in 0..Case::ALL.len() {
            let slot = (round + offset) % Case::ALL.len();
            let case = Case::ALL[slot];
            let (took, answer) = send(&mut client, &review(case, &base, round, options.objects)).await?;
            ensure!(answer.allowed(), "{}: refused: {}", case.describe(), answer.message());
            ensure!(answer.patch.is_some() == case.patched(), "{}: patch {:?}", case.describe(), answer.patch);
            if round >= WARM_UP {
                samples[slot].push(took);
            }
        }
    }
    let gets_after = owner_gets(&api.requests(), options.objects);
    let gets = [0, gets_after.0 - gets_before.0, 0, gets_after.1 - gets_before.1];

    println!(
        "\n/mutate over TLS/HTTP2, one connection, one request at a time, N = {}: {} requests of each \
         (after {WARM_UP} of each to warm up), interleaved",
        options.objects, options.requests
    );
    println!("  {:<42} {:>9} {:>9}   owner GETs/request", "pod", "p50", "p99");
    for (slot, case) in Case::ALL.into_iter().enumerate() {
        let times = &mut samples[slot];
        times.sort();
        let at = |q: usize| times[(times.len() * q / 100).min(times.len() - 1)];
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        let per_request = gets[slot] as f64 / options.requests as f64;
        println!("  {:<42} {:>9} {:>9}   {per_request:.2}", case.describe(), ms(at(50)), ms(at(99)));
    }
    Ok(())
}
