//! Figures from the real control plane (BENCHMARKS.md, "The real control
//! plane"): how long `helm install` of the seed's charts takes to the last
//! pod created, with berth's webhooks and without them, paired round by
//! round; kube-apiserver's own latency histogram of berth's two webhooks
//! over the installs through berth, and berth's own time for the same
//! calls (its replicas' `berth_admission_duration_seconds`).
//!
//!     cargo build --release -p berth --bin berth -p berth-e2e --bin control-plane-bench
//!     target/release/control-plane-bench --berth target/release/berth --rounds 3

use berth_e2e::control_plane::berth::{Berth, OPT_IN};
use berth_e2e::control_plane::release::{SEED_KAFKA, SEED_PULSAR, Set};
use berth_e2e::control_plane::{ControlPlane, Helm, KUBERNETES_VERSION, cluster};
use clap::Parser;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    about = "helm install through berth and without it on the e2e control plane; the apiserver's webhook latency"
)]
struct Args {
    /// The berth binary that runs berth's pods.
    #[arg(long, value_name = "BERTH_BINARY")]
    berth: PathBuf,
    /// Rounds; each installs every seed chart with and without berth.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// The chart's webhook names (deploy/chart/templates/webhooks.yaml).
const WEBHOOKS: [&str; 2] = ["mutate.berth.dev", "validate.berth.dev"];
const METRIC: &str = "apiserver_admission_webhook_admission_duration_seconds";

fn main() {
    let args = Args::parse();
    berth_e2e::machine::print_header("helm install with berth and without it, on the e2e control plane", &args.berth);
    let plane = ControlPlane::shared();
    Berth::install(plane, std::path::absolute(&args.berth).unwrap_or(args.berth.clone()));
    println!(
        "control plane: Kubernetes {KUBERNETES_VERSION} (tests/control-plane), Helm 3 ({}), berth {}",
        helm_version(plane),
        args.berth.display()
    );

    let mut times: BTreeMap<(&str, bool), Vec<Duration>> = BTreeMap::new();
    let mut latency = Histograms::default();
    let mut handler = HandlerTime::default();
    for round in 0..args.rounds {
        // Alternate which goes first, so that a warming cache favours neither.
        let order = if round % 2 == 0 { [true, false] } else { [false, true] };
        for set in [SEED_PULSAR, SEED_KAFKA] {
            for with_berth in order {
                let before = with_berth.then(|| (Histograms::scrape(plane), HandlerTime::scrape(plane)));
                let took = install(plane, &set, with_berth);
                if let Some((apiserver, berth)) = before {
                    latency.add(&Histograms::scrape(plane).minus(&apiserver));
                    handler.add(&HandlerTime::scrape(plane), &berth);
                }
                println!(
                    "round {} {} {}: {:.2} s",
                    round + 1,
                    set.dir,
                    if with_berth { "with berth" } else { "without" },
                    took.as_secs_f64()
                );
                times.entry((set.dir, with_berth)).or_default().push(took);
            }
        }
    }

    println!("\n`helm install` to the last pod created (median of {} rounds):", args.rounds);
    println!("| set | without berth | with berth | ratio |");
    println!("|---|---|---|---|");
    for set in [SEED_PULSAR, SEED_KAFKA] {
        let without = median(&times[&(set.dir, false)]);
        let with = median(&times[&(set.dir, true)]);
        println!(
            "| {} | {:.2} s | {:.2} s | {:.2}× |",
            set.dir,
            without.as_secs_f64(),
            with.as_secs_f64(),
            with.as_secs_f64() / without.as_secs_f64()
        );
    }
    println!(
        "\n{METRIC} over the installs through berth (p50 and p99 interpolated in the apiserver's buckets, as histogram_quantile does):"
    );
    println!("| webhook | calls | mean | p50 | p99 |");
    println!("|---|---|---|---|---|");
    for webhook in WEBHOOKS {
        let h = latency.0.get(webhook).cloned().unwrap_or_default();
        println!(
            "| {webhook} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            h.count,
            1000.0 * h.sum / h.count.max(1.0),
            1000.0 * h.quantile(0.5),
            1000.0 * h.quantile(0.99)
        );
    }
    println!(
        "\nberth's own berth_admission_duration_seconds (request read to answer written) over the same calls, every replica:"
    );
    println!("| endpoint | calls | mean |");
    println!("|---|---|---|");
    for (endpoint, (sum, count)) in &handler.0 {
        println!("| /{endpoint} | {count} | {:.2} ms |", 1000.0 * sum / count.max(1.0));
    }
}

/// berth's replicas' handler time by endpoint: (sum of seconds, count).
#[derive(Default)]
struct HandlerTime(BTreeMap<String, (f64, f64)>);

impl HandlerTime {
    fn scrape(plane: &ControlPlane) -> HandlerTime {
        let mut all = HandlerTime::default();
        for (uid, text) in berth_e2e::control_plane::berth::replica_metrics(plane) {
            let text = text.unwrap_or_else(|| panic!("berth pod {uid} did not answer on /metrics"));
            for line in text.lines().filter(|l| l.starts_with("berth_admission_duration_seconds_")) {
                let Some((series, value)) = line.rsplit_once(' ') else { continue };
                let Some(endpoint) = series.split("endpoint=\"").nth(1).and_then(|rest| rest.split('"').next()) else {
                    continue;
                };
                let value: f64 = value.parse().unwrap_or(0.0);
                let entry = all.0.entry(endpoint.to_string()).or_default();
                if series.starts_with("berth_admission_duration_seconds_sum") {
                    entry.0 += value;
                } else if series.starts_with("berth_admission_duration_seconds_count") {
                    entry.1 += value;
                }
            }
        }
        all
    }

    /// Add what happened between `before` and `after` (the replicas run on).
    fn add(&mut self, after: &HandlerTime, before: &HandlerTime) {
        for (endpoint, (sum, count)) in &after.0 {
            let (was_sum, was_count) = before.0.get(endpoint).copied().unwrap_or_default();
            let entry = self.0.entry(endpoint.clone()).or_default();
            entry.0 += sum - was_sum;
            entry.1 += count - was_count;
        }
    }
}

fn helm_version(plane: &ControlPlane) -> String {
    plane.helm_ok(Helm::V3, &["version", "--template", "{{.Version}}"])
}

/// The dedicated nodes' taints off (`false`) or on. Without berth nothing
/// tolerates them, ZooKeeper's pods never schedule, and a StatefulSet with
/// `OrderedReady` never creates its next pod: the install without berth
/// runs on untainted nodes, so that it completes at all.
fn taint_dedicated(plane: &ControlPlane, on: bool) {
    for (node, app) in cluster::NODES {
        let Some(app) = app else { continue };
        let taint = if on { format!("dedicated={app}:NoSchedule") } else { "dedicated-".to_string() };
        plane.kubectl_ok(&["taint", "nodes", node, &taint, "--overwrite"]);
    }
}

/// One install of `set` into its namespace, opted in to berth or not; the
/// time from `helm install` to the last pod created. It is uninstalled after.
fn install(plane: &ControlPlane, set: &Set, with_berth: bool) -> Duration {
    if !with_berth {
        taint_dedicated(plane, false);
    }
    let took = install_once(plane, set, with_berth);
    if !with_berth {
        taint_dedicated(plane, true);
    }
    took
}

fn install_once(plane: &ControlPlane, set: &Set, with_berth: bool) -> Duration {
    plane.namespace(set.namespace, if with_berth { &[OPT_IN] } else { &[] });
    if !with_berth {
        plane.kubectl_ok(&["label", "namespace", set.namespace, &format!("{}-", OPT_IN.0)]);
    }
    let charts = tempfile::tempdir().expect("tempdir");
    // The volumes first: their creation is not the install's.
    plane.block_on(berth_e2e::control_plane::cluster::ensure_volumes(&plane.client(), 16)).expect("volumes");
    let started = Instant::now();
    let seen = set.install(plane, Helm::V3, charts.path());
    let took = set.created(plane, &seen).unwrap_or_else(|e| panic!("{e}")) - started;
    set.uninstall(plane, Helm::V3);
    took
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let middle = sorted.len() / 2;
    // An even count: the mean of the middle two.
    if sorted.len().is_multiple_of(2) { (sorted[middle - 1] + sorted[middle]) / 2 } else { sorted[middle] }
}

/// A cumulative histogram: upper bounds and counts, as Prometheus exposes it.
#[derive(Clone, Default, Debug)]
struct Histogram {
    buckets: BTreeMap<u64, f64>,
    count: f64,
    sum: f64,
}

impl Histogram {
    /// Linear interpolation inside the bucket the rank falls in.
    fn quantile(&self, q: f64) -> f64 {
        let rank = q * self.count;
        let mut lower = (0.0, 0.0);
        for (&bound, &count) in &self.buckets {
            let upper = f64::from_bits(bound);
            if count >= rank {
                if upper.is_infinite() {
                    return lower.0;
                }
                let width = count - lower.1;
                return if width == 0.0 { upper } else { lower.0 + (upper - lower.0) * (rank - lower.1) / width };
            }
            lower = (upper, count);
        }
        f64::NAN
    }
}

/// berth's webhooks' histograms, summed over operation and rejected.
#[derive(Default, Debug)]
struct Histograms(BTreeMap<String, Histogram>);

impl Histograms {
    fn scrape(plane: &ControlPlane) -> Histograms {
        let request = hyper::Request::get("/metrics").body(Vec::new()).expect("request");
        let text = plane.block_on(plane.client().request_text(request)).expect("kube-apiserver /metrics");
        let mut all = Histograms::default();
        for line in text.lines().filter(|l| l.starts_with(METRIC)) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let label = |name: &str| {
                let start = series.find(&format!("{name}=\""))? + name.len() + 2;
                series[start..].split('"').next()
            };
            let Some(webhook) = label("name").filter(|n| WEBHOOKS.contains(n)) else { continue };
            let h = all.0.entry(webhook.to_string()).or_default();
            if series.starts_with(&format!("{METRIC}_bucket")) {
                let le = label("le").and_then(|le| if le == "+Inf" { Some(f64::INFINITY) } else { le.parse().ok() });
                if let Some(le) = le {
                    *h.buckets.entry(le.to_bits()).or_default() += value;
                }
            } else if series.starts_with(&format!("{METRIC}_count")) {
                h.count += value;
            } else if series.starts_with(&format!("{METRIC}_sum")) {
                h.sum += value;
            }
        }
        all
    }

    fn minus(&self, before: &Histograms) -> Histograms {
        let mut delta = Histograms::default();
        for (name, after) in &self.0 {
            let old = before.0.get(name).cloned().unwrap_or_default();
            let buckets = after.buckets.iter().map(|(b, c)| (*b, c - old.buckets.get(b).unwrap_or(&0.0))).collect();
            delta
                .0
                .insert(name.clone(), Histogram { buckets, count: after.count - old.count, sum: after.sum - old.sum });
        }
        delta
    }

    fn add(&mut self, other: &Histograms) {
        for (name, h) in &other.0 {
            let into = self.0.entry(name.clone()).or_default();
            for (b, c) in &h.buckets {
                *into.buckets.entry(*b).or_default() += c;
            }
            into.count += h.count;
            into.sum += h.sum;
        }
    }
}
