//! `berth audit report --html` of real denials, read in a real browser: the
//! seed charts' reviews denied by two berth replicas, the report built from
//! both logs, and the page opened in headless Chromium (Debian's, driven by
//! playwright-core through tests/browser/report.mjs), offline.

use berth_e2e::admission::check;
use berth_e2e::client::{Client, Protocol};
use berth_e2e::fixtures::{self, Fixture};
use berth_e2e::server::Server;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const POLICIES: [&str; 3] = ["require-toleration", "require-node-pool", "allowed-registries"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// playwright-core, where `.ci/install-tools` puts it. Never skipped:
/// missing, the test says how to get it.
fn playwright_core() -> PathBuf {
    let path = repo().join(".ci/browser/node_modules/playwright-core");
    assert!(
        path.join("package.json").is_file(),
        "playwright-core is not at {}: run `bash .ci/install-tools` (CI's .ci/run does)",
        path.display()
    );
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: run `bash .ci/install-tools` (it installs Debian's chromium)"
    );
    path
}

/// The Node.js `.ci/install-tools` chose: its own (.ci/node/bin, when the
/// machine's is older than playwright-core needs), else the machine's.
fn node() -> PathBuf {
    let own = repo().join(".ci/node/bin/node");
    if own.is_file() { own } else { PathBuf::from("node") }
}

/// Three validating policies every seed Pod fails, each for its own reason.
const CONFIG: &str = r#"policies:
  - name: require-toleration
    plugin: builtin:require-placement
    mode: validate
    match: {resources: [pods]}
    settings:
      tolerations: [{key: dedicated, operator: Equal, value: data, effect: NoSchedule}]
  - name: require-node-pool
    plugin: builtin:require-placement
    mode: validate
    match: {resources: [pods]}
    settings:
      nodeSelector: {pool: data}
  - name: allowed-registries
    plugin: builtin:allowed-registries
    mode: validate
    match: {resources: [pods]}
    settings:
      registries: [registry.example.com]
"#;

fn seed_reviews() -> Vec<Fixture> {
    let mut all: Vec<Fixture> = fixtures::all()
        .into_iter()
        .filter(|f| matches!(f.chart(), "seed-pulsar-2.7.7" | "seed-kafka-0.21.5"))
        .collect();
    all.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(all.len(), 40, "the two seed sets");
    all
}

/// Each seed review, in `rounds` rounds a second apart (so the timeline has
/// bars to stack), alternately to each replica; the number of denials.
fn deny_seed_reviews(replicas: &[Server], rounds: usize) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    runtime.block_on(async {
        let mut clients = Vec::new();
        for server in replicas {
            clients.push(Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect"));
        }
        let mut denied = 0;
        let mut sent = 0;
        for round in 0..rounds {
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
            for fixture in seed_reviews() {
                let mut review = fixture.review.clone();
                review["request"]["uid"] = json!(format!("round-{round}-{}", fixture.file_name()));
                let client = &mut clients[sent % replicas.len()];
                sent += 1;
                let (status, body) = client.post("/validate", review.to_string()).await.expect("berth answers");
                assert_eq!(status, hyper::StatusCode::OK, "{}", fixture.file_name());
                let answer = check(&review, &body);
                if fixture.kind() == "Pod" && fixture.operation() == "CREATE" {
                    assert!(!answer.allowed(), "{} must be denied", fixture.file_name());
                }
                denied += usize::from(!answer.allowed());
            }
        }
        denied
    })
}

/// The name of the record the browser script opened.
fn opened_name(seen: &Value) -> String {
    seen["opened"]["fields"]["Name"].as_str().expect("the opened record's name").to_owned()
}

/// The records of the logs under `dir`, as `berth audit` reads them.
fn records(dir: &Path) -> Vec<Value> {
    let (status, stdout, stderr) = Server::cli(&["audit", "--log", &dir.display().to_string(), "--output", "json"]);
    assert!(status.success(), "{stderr}");
    stdout.lines().map(|l| serde_json::from_str(l).expect("a record")).collect()
}

#[test]
fn the_report_of_real_denials_draws_filters_and_opens_records_in_chromium_offline() {
    let playwright = playwright_core();
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    let logs = dir.path().join("audit");
    // Two replicas, each with its own log, as the chart lays them out once
    // copied off their claims (deploy/README.md).
    let replicas: Vec<Server> = ["berth-0", "berth-1"]
        .iter()
        .map(|name| {
            let log = logs.join(name).join("audit.log");
            Server::builder().config(&config).arg("--audit-log").arg(log.display().to_string()).spawn()
        })
        .collect();
    let denied = deny_seed_reviews(&replicas, 3);
    drop(replicas);
    let records = records(&logs);
    assert!(denied >= 3 * 22, "every seed Pod CREATE denied in each round, {denied} denials");
    assert!(records.iter().all(|r| r["decision"] == "denied"));
    let uids: BTreeSet<&str> = records.iter().filter_map(|r| r["uid"].as_str()).collect();
    assert_eq!(uids.len(), denied, "every denial has its records");

    let page = dir.path().join("report.html");
    let (status, _, stderr) =
        Server::cli(&["audit", "report", "--log", &logs.display().to_string(), "--html", &page.display().to_string()]);
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{} records", records.len())), "{stderr}");
    // `--html -` writes the same page to stdout (`kubectl exec … > report.html`).
    let (status, stdout, stderr) =
        Server::cli(&["audit", "report", "--log", &logs.display().to_string(), "--html", "-"]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.starts_with("<!DOCTYPE html>") && stdout.trim_end().ends_with("</html>"), "{}", &stdout[..100]);
    assert!(stdout.len() > 200_000, "Chart.js is inlined");

    let screenshot = dir.path().join("report.png");
    let output = Command::new(node())
        .arg(repo().join("tests/browser/report.mjs"))
        .arg(&playwright)
        .arg(&page)
        .arg("pulsar")
        .arg(&screenshot)
        .output()
        .expect("node runs (.ci/install-tools makes sure there is one)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the browser script failed:\n{stderr}");
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));

    // Offline: the page asked for nothing but itself, and nothing broke
    // (a script its Content-Security-Policy blocked would be an error).
    let url = format!("file://{}", page.display());
    assert_eq!(seen["requests"], json!([url]), "the page made network requests");
    assert_eq!(seen["consoleErrors"], json!([]));
    assert_eq!(seen["pageErrors"], json!([]));

    // The plots drew, with the series they should have.
    let chart = |id: &str| &seen["charts"][id];
    for id in
        ["chart-timeline", "chart-namespaces", "chart-policies", "chart-users", "chart-reasons", "chart-registries"]
    {
        assert_eq!(chart(id)["visible"], true, "{id}");
        assert!(chart(id)["painted"].as_u64().unwrap_or(0) > 2_000, "{id} drew nothing: {}", chart(id));
        // Each series drew its bars, not only its legend's swatch (40 x 12
        // pixels of its colour).
        for (name, pixels) in
            chart(id)["series"].as_array().unwrap().iter().zip(chart(id)["seriesPixels"].as_array().unwrap())
        {
            assert!(pixels.as_u64().unwrap_or(0) > 1_000, "{id}: series {name} drew no bars: {}", chart(id));
        }
    }
    let series = |id: &str| -> BTreeSet<String> {
        chart(id)["series"].as_array().expect("series").iter().map(|s| s.as_str().expect("name").to_owned()).collect()
    };
    assert_eq!(series("chart-timeline"), POLICIES.iter().map(|p| p.to_string()).collect());
    let timeline_total: u64 =
        chart("chart-timeline")["totals"].as_array().unwrap().iter().filter_map(Value::as_u64).sum();
    assert_eq!(timeline_total, records.len() as u64, "every denial is in the timeline");
    assert_eq!(series("chart-namespaces"), BTreeSet::from(["Denied".to_owned()]));
    assert_eq!(chart("chart-namespaces")["labels"], json!(["pulsar", "default"]), "pulsar has the most pods");
    let policy_labels: BTreeSet<&str> =
        chart("chart-policies")["labels"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(policy_labels, BTreeSet::from(POLICIES));
    assert_eq!(chart("chart-registries")["labels"], json!(["docker.io"]), "the seed charts pull from Docker Hub");

    // What was read: two replicas, and their files.
    assert_eq!(seen["sources"], "2 replicas, 2 files");
    let replicas: Vec<&str> = seen["files"].as_array().unwrap().iter().filter_map(|r| r[0].as_str()).collect();
    assert_eq!(replicas, ["berth-0", "berth-1"]);

    // The table holds every record; filtering by one namespace leaves
    // exactly that namespace's.
    let mut by_namespace: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &records {
        *by_namespace.entry(record["namespace"].as_str().unwrap_or_default()).or_default() += 1;
    }
    assert_eq!(by_namespace.keys().copied().collect::<Vec<_>>(), ["default", "pulsar"]);
    let before = seen["rowsBefore"].as_array().expect("rows");
    assert_eq!(before.len(), records.len());
    let filtered = seen["rowsFiltered"].as_array().expect("rows");
    assert_eq!(filtered.len(), by_namespace["pulsar"], "{}", seen["pagerFiltered"]);
    assert!(filtered.len() < before.len());
    assert!(filtered.iter().all(|row| row["namespace"] == "pulsar"), "{filtered:?}");
    assert!(seen["pagerFiltered"].as_str().unwrap().contains(&format!(
        "of {} (filtered from {})",
        filtered.len(),
        records.len()
    )));

    // The search box narrows to the records that mention what it holds.
    let name = opened_name(&seen);
    let mentioning = records
        .iter()
        .filter(|r| {
            let name_field =
                r["name"].as_str().map(str::to_owned).or_else(|| r["generateName"].as_str().map(|p| format!("{p}*")));
            [
                r["namespace"].as_str(),
                r["policy"].as_str(),
                r["user"].as_str(),
                r["kind"]["kind"].as_str(),
                name_field.as_deref(),
                r["message"].as_str(),
                r["uid"].as_str(),
                r["operation"].as_str(),
            ]
            .into_iter()
            .flatten()
            .any(|field| field.to_lowercase().contains(&name.to_lowercase()))
        })
        .count();
    assert!(0 < mentioning && mentioning < records.len());
    assert!(
        seen["pagerSearched"].as_str().unwrap().contains(&format!("of {mentioning} (filtered from {})", records.len())),
        "searching {name}: {}",
        seen["pagerSearched"]
    );

    // The record opened is the denied object, with its reason, policy and
    // plugin hash, user and operation, as the log has them.
    let opened = &seen["opened"];
    let fields = &opened["fields"];
    let uid = fields["Request uid"].as_str().expect("uid");
    let policy = fields["Policy"].as_str().expect("policy");
    let record = records
        .iter()
        .find(|r| r["uid"] == uid && r["policy"] == policy)
        .unwrap_or_else(|| panic!("no record {uid} of {policy} in the log"));
    assert_eq!(record["namespace"], "pulsar");
    let object: Value = serde_json::from_str(opened["object"].as_str().unwrap()).expect("the object as JSON");
    assert_eq!(object, record["object"], "the object shown is the one the log holds");
    assert!(object["spec"]["containers"].is_array());
    assert_eq!(opened["reason"], record["message"]);
    assert_eq!(fields["Plugin sha256"], record["sha256"]);
    assert_eq!(fields["User"], record["user"]);
    assert_eq!(fields["Operation"], record["operation"]);
    assert!(opened["title"].as_str().unwrap().starts_with("denied: Pod pulsar/"), "{}", opened["title"]);

    // The screenshot (docs/audit-report.png is one, refreshed as
    // tests/browser/report.mjs says).
    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 50_000, "{} bytes", png.len());
}
