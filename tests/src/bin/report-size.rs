//! What `berth audit report --html` costs on a large log (issue 24): the
//! time to build the page, berth's peak memory doing it, and the page's
//! size, at 10,000 and 1,000,000 records.
//!
//! ```text
//! cargo build --release -p berth
//! cargo run -p berth-e2e --bin report-size -- [BERTH] [--records N]... [--without-objects]
//! ```
//!
//! BERTH is the binary measured (default target/release/berth); this
//! program only writes its input, untimed, so it needs no release build of
//! its own. For each N
//! (default 10,000 and 1,000,000) this writes an audit log of N denials,
//! not timed, then times `berth audit report --log LOG --html FILE`,
//! sampling its VmHWM (peak RSS) as it runs. The records are the seed
//! charts' real Pods (tests/fixtures/seed-*: 6 to 7 KB of object each, as
//! berth records them with `redact.object: true`), over 7 days, spread over
//! 20 namespaces, 6 policies and 15 users; `--without-objects` leaves the
//! object out, as `redact.object: false` does. The log is written in a
//! temporary directory and deleted afterwards (a million records with
//! objects is some 7 GB).

use anyhow::{Context as _, bail, ensure};
use berth_e2e::fixtures;
use berth_e2e::machine;
use serde_json::{Value, json};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const POLICIES: [(&str, &str); 6] = [
    ("require-toleration", "pod lacks the required toleration dedicated=data:NoSchedule"),
    ("require-node-pool", "pod lacks the required nodeSelector pool=data"),
    ("allowed-registries", "container \"main\" image is not from an allowed registry (registry.example.com)"),
    ("no-latest", "container \"main\" uses the tag latest"),
    ("resource-limits", "container \"main\" sets no memory limit"),
    ("no-host-path", "volume \"data\" is a hostPath"),
];
const WEEK: Duration = Duration::from_secs(7 * 86_400);

struct Options {
    berth: PathBuf,
    records: Vec<usize>,
    objects: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options { berth: "target/release/berth".into(), records: Vec::new(), objects: true };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--records" => options.records.push(args.next().context("--records N")?.parse()?),
            "--without-objects" => options.objects = false,
            flag if flag.starts_with("--") => bail!("unknown option {flag}"),
            path => options.berth = path.into(),
        }
    }
    if options.records.is_empty() {
        options.records = vec![10_000, 1_000_000];
    }
    ensure!(options.berth.is_file(), "{} is not a file (cargo build --release -p berth)", options.berth.display());
    Ok(options)
}

/// The seed charts' Pod objects, as an audit record holds them.
fn pods() -> Vec<Value> {
    fixtures::all()
        .into_iter()
        .filter(|f| f.chart().starts_with("seed-") && f.kind() == "Pod" && f.operation() == "CREATE")
        .map(|f| f.object().clone())
        .collect()
}

/// Write `n` denials to `path`, in time order over the week before now.
fn write_log(path: &Path, n: usize, objects: bool) -> anyhow::Result<u64> {
    let pods = pods();
    // Each object's text once: copying a 7 KB tree per record made writing
    // a million of them take longer than reading them.
    let texts: Vec<String> = pods.iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
    let start = SystemTime::now() - WEEK;
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    for i in 0..n {
        let time = start + WEEK.mul_f64(i as f64 / n as f64);
        let (policy, message) = POLICIES[(i * 7 + i / 13) % POLICIES.len()];
        let pod = &pods[i % pods.len()];
        let mut record = json!({
            "time": berth::audit::record::format_rfc3339(time),
            "uid": format!("{:08x}-0000-4000-8000-{:012x}", i, i),
            "operation": "CREATE",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": format!("team-{:02}", (i * 31 + i / 97) % 20),
            "user": format!("system:serviceaccount:ci:deployer-{:02}", (i / 3) % 15),
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "dryRun": false,
            "endpoint": "validate",
            "policy": policy,
            "plugin": format!("builtin:{policy}"),
            "sha256": format!("{:064x}", policy.len()),
            "decision": "denied",
            "code": 403,
            "message": message,
            "allowed": false,
        });
        match pod["metadata"]["name"].as_str() {
            Some(name) => record["name"] = json!(name),
            None => record["generateName"] = pod["metadata"]["generateName"].clone(),
        }
        let text = serde_json::to_string(&record)?;
        if objects {
            // The record's own closing brace, then the object as its last field.
            out.write_all(&text.as_bytes()[..text.len() - 1])?;
            writeln!(out, ",\"object\":{}}}", texts[i % pods.len()])?;
        } else {
            writeln!(out, "{text}")?;
        }
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Run `command` to its end; its wall time and the highest VmHWM seen.
fn measure(mut command: Command) -> anyhow::Result<(Duration, u64, String)> {
    let started = Instant::now();
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let mut peak_kib = 0;
    loop {
        if let Some(status) = child.try_wait()? {
            let elapsed = started.elapsed();
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().context("stderr")?, &mut stderr)?;
            ensure!(status.success(), "berth failed: {stderr}");
            return Ok((elapsed, peak_kib, stderr));
        }
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            let hwm =
                text.lines().find_map(|l| l.strip_prefix("VmHWM:")).map(|v| v.trim().trim_end_matches("kB").trim());
            peak_kib = peak_kib.max(hwm.and_then(|v| v.parse().ok()).unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    machine::print_header("report-size: `berth audit report --html` on large logs (issue 24)", &options.berth);
    println!(
        "records:  denials of the seed charts' Pods over 7 days, 20 namespaces, 6 policies, 15 users, {}",
        if options.objects { "each with its object" } else { "no objects (redact.object: false)" }
    );
    println!();
    println!(
        "{:>10}  {:>11}  {:>9}  {:>11}  {:>10}  {:>12}",
        "records", "log", "time", "records/s", "peak RSS", "page"
    );
    for &n in &options.records {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("audit.log");
        let log_size = write_log(&log, n, options.objects)?;
        let page = dir.path().join("report.html");
        let mut berth = Command::new(&options.berth);
        berth.args(["audit", "report", "--log"]).arg(&log).arg("--html").arg(&page);
        let (elapsed, peak_kib, stderr) = measure(berth)?;
        ensure!(stderr.contains(&format!("({n} records")), "berth read another number of records: {stderr}");
        let page_size = std::fs::metadata(&page)?.len();
        println!(
            "{:>10}  {:>11}  {:>8.2}s  {:>11.0}  {:>10}  {:>12}",
            n,
            mib(log_size),
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64(),
            mib(peak_kib * 1024),
            mib(page_size),
        );
    }
    println!("\nThe page's table holds the newest 10,000 records (--table-limit); its charts count them all.");
    Ok(())
}
