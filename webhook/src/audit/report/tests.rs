use super::*;
use serde_json::{Value, json};
use std::sync::Arc;

fn record(second: u64, policy: &str, namespace: Option<&str>, decision: &str, image: &str) -> AuditRecord {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + second) + Duration::from_nanos(123_456_789);
    let mut value = json!({
        "time": format_rfc3339(time),
        "uid": format!("uid-{second}-{policy}"),
        "operation": "CREATE",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "generateName": "web-",
        "user": "system:serviceaccount:ci:deployer",
        "endpoint": "validate",
        "policy": policy,
        "plugin": format!("builtin:{policy}"),
        "sha256": "ab".repeat(32),
        "decision": decision,
        "message": format!("{policy} says no"),
        "allowed": decision != "denied",
        "object": {"spec": {"containers": [{"name": "c", "image": image, "env": [{"name": "K", "value": "<redacted>"}]}]}},
    });
    if let Some(namespace) = namespace {
        value["namespace"] = json!(namespace);
    }
    if decision == "error" {
        value["errorKind"] = json!("timeout");
    }
    serde_json::from_value(value).expect("a record")
}

fn entry(record: AuditRecord, file: &str) -> Entry {
    let line = serde_json::to_string(&record).expect("a line");
    Entry { record, line, file: Arc::from(Path::new(file)) }
}

fn scope(table_limit: usize) -> Scope {
    Scope { table_limit, top: 3, filters: vec!["--namespace".into(), "team-*".into()], ..Scope::default() }
}

fn build(records: Vec<AuditRecord>, table_limit: usize) -> Value {
    let mut report = Report::new(scope(table_limit));
    for (i, record) in records.into_iter().enumerate() {
        report.add(entry(record, if i % 2 == 0 { "/logs/berth-0/audit.log" } else { "/logs/berth-1/audit.log.1" }));
    }
    let logs = [
        (PathBuf::from("/logs/berth-0/audit.log"), vec![PathBuf::from("/logs/berth-0/audit.log")]),
        (
            PathBuf::from("/logs/berth-1/audit.log"),
            vec![PathBuf::from("/logs/berth-1/audit.log.1"), PathBuf::from("/logs/berth-1/audit.log")],
        ),
    ];
    serde_json::to_value(report.finish(&logs, SystemTime::UNIX_EPOCH)).expect("serialisable")
}

/// A page of three policies, two namespaces, one cluster-scoped record, and
/// a hostile string, for html.rs's tests.
pub(super) fn sample_page() -> PageData {
    let mut report = Report::new(scope(100));
    let mut hostile = record(3, "p", Some("a"), "denied", "busybox");
    hostile.message = Some("</script><script>alert(1)</script>".into());
    for record in [record(0, "p", Some("a"), "denied", "busybox"), record(1, "q", None, "error", "x"), hostile] {
        report.add(entry(record, "/l/audit.log"));
    }
    report.finish(&[(PathBuf::from("/l/audit.log"), vec![PathBuf::from("/l/audit.log")])], SystemTime::UNIX_EPOCH)
}

#[test]
fn counts_rankings_and_registries_cover_every_record() {
    let mut records = Vec::new();
    for i in 0..10 {
        records.push(record(i, "no-latest", Some("team-a"), "denied", "busybox:latest"));
    }
    for i in 0..4 {
        records.push(record(i, "registries", Some("team-b"), "denied", "quay.io/org/app:1"));
    }
    records.push(record(5, "slow", Some("team-b"), "error", "busybox"));
    records.push(record(6, "", None, "denied", "UPPER"));
    let page = build(records, 1000);
    assert_eq!(page["counts"]["total"], 16);
    assert_eq!(page["counts"]["denied"], 15);
    assert_eq!(page["counts"]["errors"], 1);
    assert_eq!(page["filters"], json!(["--namespace", "team-*"]));
    // [denied, errors, mutated] per group, largest first.
    assert_eq!(
        page["namespaces"]["rows"],
        json!([["team-a", [10, 0, 0]], ["team-b", [4, 1, 0]], ["(cluster-scoped)", [1, 0, 0]]])
    );
    assert_eq!(page["policies"]["rows"][0], json!(["no-latest", [10, 0, 0]]));
    assert_eq!(page["policies"]["others"], 1, "top 3 of 4 policies");
    assert_eq!(page["policies"]["otherRecords"], 1);
    assert_eq!(page["users"]["rows"], json!([["system:serviceaccount:ci:deployer", [15, 1, 0]]]));
    assert_eq!(page["reasons"]["rows"][0], json!(["no-latest says no", [10, 0, 0]]));
    // Errors name no denied image.
    assert_eq!(
        page["registries"],
        json!([
            {"registry": "docker.io", "records": 10, "images": [["busybox:latest", 10]]},
            {"registry": "quay.io", "records": 4, "images": [["quay.io/org/app:1", 4]]},
            {"registry": "(invalid)", "records": 1, "images": [["UPPER", 1]]},
        ])
    );
    // Replicas are named by their directory; each file says what it gave.
    assert_eq!(page["logs"][0]["replica"], "berth-0");
    assert_eq!(page["logs"][0]["files"][0]["records"], 8);
    assert_eq!(
        page["logs"][1]["files"],
        json!([{"path": "/logs/berth-1/audit.log.1", "records": 8}, {"path": "/logs/berth-1/audit.log", "records": 0}])
    );
}

#[test]
fn the_timeline_stacks_denials_by_policy_in_whole_buckets() {
    // 10 minutes of denials: 10 s buckets would be 60, 5 s ones 120; 1 s
    // ones too many.
    let mut records: Vec<AuditRecord> = (0..600).map(|s| record(s, "a", Some("n"), "denied", "x")).collect();
    records.extend((0..300).map(|s| record(s * 2, "b", Some("n"), "denied", "x")));
    records.push(record(7, "c", Some("n"), "error", "x"));
    let page = build(records, 0);
    let timeline = &page["timeline"];
    assert_eq!(timeline["stepMs"], 5_000);
    assert_eq!(timeline["startMs"].as_u64().unwrap() % 5_000, 0);
    let names: Vec<&str> = timeline["series"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a", "b"], "errors are not denials");
    let sum =
        |i: usize| timeline["series"][i]["counts"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum(0), sum(1)), (600, 300));
    assert!(timeline["series"][0]["counts"].as_array().unwrap().len() <= MAX_BUCKETS as usize);
    assert_eq!(page["table"]["rows"], json!([]), "--table-limit 0 keeps no rows");
    assert_eq!(page["table"]["total"], 901);

    // Beyond the eighth policy, the rest are one series.
    let many: Vec<AuditRecord> = (0..12).map(|p| record(p, &format!("p{p:02}"), Some("n"), "denied", "x")).collect();
    let page = build(many, 0);
    let series = page["timeline"]["series"].as_array().unwrap();
    assert_eq!(series.len(), TIMELINE_POLICIES + 1);
    assert_eq!(series[TIMELINE_POLICIES]["name"], OTHER);
    assert_eq!(
        series[TIMELINE_POLICIES]["counts"].as_array().unwrap().iter().filter_map(Value::as_u64).sum::<u64>(),
        4
    );
    assert_eq!(build(Vec::new(), 10)["timeline"]["series"], json!([]));
}

#[test]
fn the_table_keeps_the_newest_records_newest_first_and_stores_repeats_once() {
    let records: Vec<AuditRecord> = (0..50)
        .map(|s| {
            record(s, if s % 2 == 0 { "a" } else { "b" }, Some("team-a"), "denied", if s < 45 { "x" } else { "y" })
        })
        .collect();
    let page = build(records, 10);
    let table = &page["table"];
    assert_eq!(table["total"], 50);
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 10);
    let strings: Vec<&str> = table["strings"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let text = |row: &Value, field: usize| strings[row[field].as_u64().unwrap() as usize];
    // Newest first: seconds 49 down to 40.
    assert_eq!(text(&rows[0], 13), "uid-49-b");
    assert_eq!(text(&rows[9], 13), "uid-40-a");
    assert_eq!(rows[0][0].as_u64().unwrap() % 1000, 123, "milliseconds");
    assert_eq!(rows[0][1], 456_789, "and the rest of the log's nanoseconds");
    assert_eq!(text(&rows[0], 2), "denied");
    assert_eq!(text(&rows[0], 3), "team-a");
    assert_eq!(text(&rows[0], 6), "ab".repeat(32));
    assert_eq!(text(&rows[0], 8), "CREATE");
    assert_eq!(text(&rows[0], 9), "Pod");
    assert_eq!(text(&rows[0], 10), "web-*");
    assert_eq!(text(&rows[0], 11), "b says no");
    // Two distinct objects among ten rows.
    let objects = table["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[rows[0][16].as_u64().unwrap() as usize]["spec"]["containers"][0]["image"], "y");
    assert_eq!(
        objects[rows[9][16].as_u64().unwrap() as usize]["spec"]["containers"][0]["env"][0]["value"],
        "<redacted>"
    );
}

#[test]
fn replica_names() {
    assert_eq!(replica_name(Path::new("/var/log/berth/audit.log")), "berth");
    assert_eq!(replica_name(Path::new("audit/berth-0/audit.log")), "berth-0");
    assert_eq!(replica_name(Path::new("audit/berth-1.log")), "berth-1");
    assert_eq!(replica_name(Path::new("berth-audit.log")), "berth-audit");
}
