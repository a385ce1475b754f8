//! How much berth writes to the Kubernetes API when it denies 1,000
//! requests a second (issue 24): its Events are aggregated and
//! rate-limited, and this prints the writes per second that come of it.
//!
//! ```text
//! cargo build --release -p berth
//! cargo run --release -p berth-e2e --bin event-rate -- [BERTH] [--seconds S] [--rate R]
//! ```
//!
//! BERTH is the binary to measure (default target/release/berth). For each
//! of three loads it starts the stand-in Kubernetes API (tests/src/kube,
//! seed-pulsar-2.7.7's cluster) and `berth serve` with the default policy
//! reading it, sends /validate reviews that the policy denies with
//! berth-load, open loop at R a second (1,000) for S seconds (20), and
//! counts the POSTs and PATCHes of Events the API received meanwhile. It
//! then stops berth (SIGTERM: what waits is flushed) and sums the Events'
//! counts, which must equal the denials unless some were dropped (and
//! counted in berth_events_dropped_total).
//!
//! - one StatefulSet: one pod, the same denial over and over;
//! - the seed install: the 17 pods of the Pulsar seed in turn, of 9
//!   controllers (its StatefulSets, Jobs and a Deployment's ReplicaSet);
//! - all different: every review a pod of its own with no owner, 1,000
//!   distinct Events a second, which only the overall bucket bounds.

use anyhow::{Context as _, bail, ensure};
use berth_e2e::fixtures;
use berth_e2e::kube::FakeKubeApi;
use berth_e2e::machine;
use berth_e2e::server::Server;
use berth_load::{Expect, ExpectAllowed, ExpectPatch, Options as Load, Protocol, Reviews};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SET: &str = "seed-pulsar-2.7.7";

struct Options {
    berth: PathBuf,
    seconds: u64,
    rate: f64,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options { berth: "target/release/berth".into(), seconds: 20, rate: 1000.0 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => options.seconds = args.next().context("--seconds S")?.parse()?,
            "--rate" => options.rate = args.next().context("--rate R")?.parse()?,
            flag if flag.starts_with("--") => bail!("unknown option {flag}"),
            path => options.berth = path.into(),
        }
    }
    ensure!(options.berth.is_file(), "{} is not a file (cargo build --release -p berth)", options.berth.display());
    options.berth = std::fs::canonicalize(&options.berth)?;
    Ok(options)
}

/// The seed's pod reviews that the default policy denies on /validate (the
/// pods as the chart wrote them, before /mutate), dry runs left out.
fn seed_pods() -> Vec<Value> {
    let mut pods: Vec<_> = fixtures::all()
        .into_iter()
        .filter(|f| f.chart() == SET && f.kind() == "Pod" && f.operation() == "CREATE")
        .filter(|f| f.request()["dryRun"] != true)
        .collect();
    pods.sort_by(|a, b| a.path.cmp(&b.path));
    pods.into_iter().map(|f| f.review).collect()
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    machine::print_header("event-rate: Events written to the Kubernetes API under denials (issue 24)", &options.berth);
    println!(
        "load:     /validate over h2, open loop at {} reviews/s for {} s, every one denied",
        options.rate, options.seconds
    );
    let pods = seed_pods();
    let bookie = pods.iter().find(|r| r["request"]["object"]["metadata"]["name"] == "pulsar-bookie-0").cloned();
    let bookie = bookie.context("the seed's pulsar-bookie-0")?;
    let distinct: Vec<Value> = (0..1000)
        .map(|i| {
            let mut review = bookie.clone();
            let name = format!("solo-{i:04}");
            review["request"]["name"] = json!(name);
            let metadata = &mut review["request"]["object"]["metadata"];
            metadata["name"] = json!(name);
            metadata.as_object_mut().map(|m| m.remove("ownerReferences"));
            review
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    println!(
        "\n{:<18} {:>9} {:>10} {:>7} {:>7} {:>9} {:>8} {:>12} {:>9} {:>8}",
        "load", "denials", "denials/s", "POSTs", "PATCHes", "writes/s", "Events", "sum(counts)", "dropped", "pending"
    );
    for (name, reviews) in [("one StatefulSet", vec![bookie]), ("the seed install", pods), ("all different", distinct)]
    {
        runtime.block_on(measure(&options, name, &reviews))?;
    }
    println!(
        "\nwrites/s: POSTs and PATCHes of events.k8s.io Events the API received during the load, per second of it."
    );
    println!("sum(counts): the stored Events' series counts (1 without a series) after SIGTERM's flush.");
    println!("dropped, pending: berth_events_dropped_total and berth_events_pending as the load ended (pending Events");
    println!("  are written at the bucket's rate; what is left at exit after a 3 s flush is not written).");
    Ok(())
}

async fn measure(options: &Options, name: &str, reviews: &[Value]) -> anyhow::Result<()> {
    let api = FakeKubeApi::from_fixture(SET).await?;
    let mut server = Server::builder().binary(options.berth.clone()).kube_api(&api).spawn();
    let dir = tempfile::tempdir()?;
    let files = reviews
        .iter()
        .enumerate()
        .map(|(i, review)| {
            let path = dir.path().join(format!("{i:04}.json"));
            std::fs::write(&path, review.to_string()).map(|()| path)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let load = Load {
        target: format!("https://127.0.0.1:{}/validate", server.listen.port()).parse()?,
        ca: server.ca.clone(),
        protocol: Protocol::Http2,
        connections: 1,
        streams: 64,
        rate: Some(options.rate),
        duration: Some(Duration::from_secs(options.seconds)),
        requests: None,
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(10),
        expect: Expect { allowed: ExpectAllowed::False, patch: ExpectPatch::Never },
    };
    api.clear_requests();
    let started = Instant::now();
    let report = berth_load::run(load, Reviews::load(&files)?).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let writes = |method: &str| {
        api.requests()
            .iter()
            .filter(|r| r.method == method && r.path_only().starts_with("/apis/events.k8s.io/"))
            .count()
    };
    let (posts, patches) = (writes("POST"), writes("PATCH"));
    let metrics = server.metrics_text();
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(30));
    ensure!(status.success(), "berth exited with {status}");
    let events = api.all("Event");
    let counts: u64 = events.iter().map(|e| e["series"]["count"].as_u64().unwrap_or(1)).sum();
    // Counters and gauges are whole numbers, summed over their labels.
    let metric = |prefix: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let (dropped, pending) = (metric("berth_events_dropped_total"), metric("berth_events_pending"));
    println!(
        "{name:<18} {:>9} {:>10.0} {posts:>7} {patches:>7} {:>9.2} {:>8} {counts:>12} {dropped:>9} {pending:>8}",
        report.denied,
        report.denied as f64 / report.seconds.max(f64::EPSILON),
        (posts + patches) as f64 / elapsed,
        events.len(),
    );
    if report.failed > 0 {
        println!("  ({} requests failed: {:?})", report.failed, report.failures);
    }
    Ok(())
}
