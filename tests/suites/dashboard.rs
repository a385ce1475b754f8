//! The chart's Grafana dashboard (deploy/chart/dashboards/berth.json) asks
//! only for what berth exports: every series one of its queries names is
//! on a running berth's /metrics, with every label the query uses. The
//! berth serves one review of each kind the panels show first, so that
//! every labelled series has a sample to show its labels.

use berth_e2e::client::{Client, Protocol};
use berth_e2e::fixtures;
use berth_e2e::server::Server;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Labels Prometheus gives every series it scrapes from the chart's pods
/// (the target's), which no exporter exports.
const TARGET_LABELS: [&str; 4] = ["namespace", "pod", "job", "instance"];

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/chart/dashboards/berth.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every PromQL expression of the dashboard: the panels' queries and the
/// template variables'.
fn expressions(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels.iter().chain(panels.iter().flat_map(|p| p["panels"].as_array().into_iter().flatten())) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().expect("a target's expr").to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().expect("templating") {
        if let Some(query) = variable["query"]["query"].as_str() {
            out.push(query.to_owned());
        }
    }
    out
}

/// The series (`berth_…`) an expression names, and the labels it uses: in
/// matchers, `by (…)`/`without (…)`, and `label_values(series, label)`.
/// Deliberately small: it reads the dashboard's own queries, which a test
/// below pins to these forms.
fn series_and_labels(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut series = BTreeSet::new();
    let mut labels = BTreeSet::new();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| word(c)) {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !word(c)).unwrap_or(tail.len());
        let name = &tail[..end];
        let after = tail[end..].trim_start();
        if name.starts_with("berth_") {
            series.insert(name.to_owned());
        } else if matches!(name, "by" | "without") && after.starts_with('(') {
            let list = &after[1..after.find(')').expect("a closed label list")];
            labels.extend(list.split(',').map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()));
        } else if name == "label_values" {
            let args = &after[1..after.find(')').expect("label_values(…)")];
            labels.extend(args.rsplit(',').next().map(|l| l.trim().to_owned()));
        }
        if after.starts_with('{') {
            let matchers = &after[1..after.find('}').expect("closed matchers")];
            for matcher in matchers.split(',').filter(|m| !m.trim().is_empty()) {
                let label = matcher.split(['=', '!']).next().unwrap_or_default().trim();
                labels.insert(label.to_owned());
            }
        }
        rest = &tail[end..];
    }
    (series, labels)
}

/// /metrics, parsed: each series name with the labels of its samples.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..name_end].to_owned()).or_default();
        if line[name_end..].starts_with('{') {
            let body = &line[name_end + 1..line.rfind('}').expect("closed labels")];
            // Label values here are plain (no `,` or `=` inside quotes).
            for pair in body.split(',') {
                labels.insert(pair.split('=').next().unwrap_or_default().trim().to_owned());
            }
        }
    }
    out
}

fn hostile_wasm() -> PathBuf {
    Path::new(berth::builtin::TEST_PLUGIN_DIR).join("berth_plugin_hostile.wasm")
}

/// A berth that has denied, failed a policy by timeout, reloaded, and been
/// refused a reload: every labelled series the dashboard shows has samples.
fn exercised_berth(dir: &Path) -> Server {
    let config = dir.join("berth.yaml");
    let policies = format!(
        "policies:\n  - name: require-toleration\n    plugin: builtin:require-placement\n    mode: validate\n    match: {{resources: [pods]}}\n    settings:\n      tolerations: [{{key: dedicated, operator: Equal, value: data, effect: NoSchedule}}]\n  - name: slow\n    plugin: {}\n    mode: validate\n    timeout: 20ms\n    failurePolicy: Ignore\n    match: {{resources: [pods]}}\n    settings: {{behaviour: loop}}\n",
        hostile_wasm().display()
    );
    std::fs::write(&config, &policies).expect("config");
    let server = Server::builder().config(&config).spawn();
    let bookie = fixtures::get("pulsar", "005-pod-pulsar-bookie-0.json").review;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    runtime.block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        for endpoint in ["/validate", "/mutate"] {
            let (status, _) = client.post(endpoint, bookie.to_string()).await.expect("berth answers");
            assert_eq!(status, hyper::StatusCode::OK);
        }
    });
    // A reload, then one refused (the policy names a plugin that is not there).
    std::fs::write(&config, policies.replace("timeout: 20ms", "timeout: 25ms")).expect("config");
    server.wait_for_log("configuration reloaded", Duration::from_secs(10));
    std::fs::write(&config, policies.replace("builtin:require-placement", "builtin:no-such-plugin")).expect("config");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.metrics_text().contains("berth_config_reloads_total{result=\"refused\"}") {
        assert!(
            std::time::Instant::now() < deadline,
            "the bad configuration was not refused:\n{}",
            server.metrics_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[test]
fn every_series_the_dashboard_queries_is_exported_with_the_labels_it_uses() {
    let dashboard = dashboard();
    let expressions = expressions(&dashboard);
    assert!(expressions.len() >= 15, "{expressions:?}");
    let dir = tempfile::tempdir().expect("tmp");
    let server = exercised_berth(dir.path());
    let exported = exported(&server.metrics_text());
    let mut queried = BTreeSet::new();
    for expr in &expressions {
        let (series, labels) = series_and_labels(expr);
        assert!(!series.is_empty(), "{expr} queries no berth series");
        for name in &series {
            let have = exported.get(name).unwrap_or_else(|| {
                panic!("{expr} queries {name}, which berth does not export: {:#?}", exported.keys())
            });
            for label in labels.iter().filter(|l| !TARGET_LABELS.contains(&l.as_str())) {
                assert!(have.contains(label), "{expr} uses label {label}, which {name} has not (it has {have:?})");
            }
            queried.insert(name.clone());
        }
    }
    // What the chart promises the dashboard shows.
    for name in [
        "berth_admission_requests_total",
        "berth_admission_duration_seconds_bucket",
        "berth_denials_total",
        "berth_policy_errors_total",
        "berth_policy_timeouts_total",
        "berth_owner_cache_entries",
        "berth_owner_cache_at_limit",
        "berth_config_reloads_total",
    ] {
        assert!(queried.contains(name), "the dashboard shows no {name}");
    }
    let text = server.metrics_text();
    assert!(
        text.contains("berth_denials_total{policy=\"require-toleration\",resource_namespace=\"pulsar\"} 1"),
        "{text}"
    );
    assert!(text.contains("berth_policy_errors_total{policy=\"slow\",kind=\"timeout\"}"), "{text}");
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_every_panel_of_which_queries_prometheus() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "berth-admission");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let variables = dashboard["templating"]["list"].as_array().expect("variables");
    assert!(variables.iter().any(|v| v["type"] == "datasource" && v["query"] == "prometheus"));
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(ids.insert(panel["id"].as_u64().expect("an id")), "duplicate panel id {}", panel["id"]);
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().expect("x"), grid["w"].as_u64().expect("w"));
        assert!(x + w <= 24 && grid["h"].as_u64().is_some_and(|h| h > 0), "{}: off the grid", panel["title"]);
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            assert_eq!(expr.matches('(').count(), expr.matches(')').count(), "{expr}");
            assert_eq!(expr.matches('{').count(), expr.matches('}').count(), "{expr}");
        }
    }
}

#[test]
fn the_query_reader_finds_series_and_labels() {
    let (series, labels) = series_and_labels(
        r#"histogram_quantile(0.99, sum by (endpoint, le) (rate(berth_admission_duration_seconds_bucket{namespace=~"$namespace", outcome!="error"}[$__rate_interval])))"#,
    );
    assert_eq!(series, BTreeSet::from(["berth_admission_duration_seconds_bucket".to_owned()]));
    assert_eq!(labels, ["endpoint", "le", "namespace", "outcome"].into_iter().map(String::from).collect());
    let (series, labels) = series_and_labels("label_values(berth_policies_loaded, namespace)");
    assert_eq!((series.len(), labels.into_iter().collect::<Vec<_>>()), (1, vec!["namespace".to_owned()]));
    let exported = exported("# HELP x\nberth_a_total{policy=\"p\",kind=\"timeout\"} 1\nberth_b 0\n");
    assert_eq!(exported["berth_a_total"], ["kind", "policy"].into_iter().map(String::from).collect());
    assert!(exported["berth_b"].is_empty());
}
