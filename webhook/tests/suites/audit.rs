//! The audit log as the server and the operator use it: concurrent writers
//! and group commit, rotation under load, torn lines, redaction, failing
//! destinations, reading and merging, summaries, and the `berth audit`
//! command.

use berth::admission::{Admitted, Endpoint, PolicyOutcome, PolicyResult, admit};
use berth::audit::reader::rotated_files;
use berth::audit::{AuditError, AuditLog, AuditRecord, AuditSpec, Decision, Filter, LogReader, OnError, Summary};
use berth::config::{Config, FailurePolicy, Source};
use berth::policy::PolicySet;
use berth::review::{AdmissionResponse, Review};
use berth::runtime::{ArtifactCache, PluginError, Runtime, RuntimeOptions};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn spec(path: &Path) -> AuditSpec {
    AuditSpec { path: path.to_owned(), ..AuditSpec::default() }
}

/// An AdmissionReview body for a Pod in `namespace`.
fn review_body(uid: &str, namespace: &str, user: &str, dry_run: bool) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "dryRun": dry_run,
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "web-", "namespace": namespace},
                "spec": {"containers": [{"name": "app", "image": "nginx:latest", "env": [{"name": "DB_PASSWORD", "value": "hunter2"}]}]}
            }
        }
    })
    .to_string()
}

fn outcome(policy: &str, result: PolicyResult) -> PolicyOutcome {
    PolicyOutcome {
        policy: Arc::from(policy),
        plugin: format!("builtin:{policy}").into(),
        sha256: "0f".repeat(32).into(),
        elapsed: Duration::from_micros(300),
        result,
    }
}

/// What `admit` returns when `policy` denied the request.
fn denied(body: &str, policy: &str, message: &str) -> Admitted {
    let request = Review::parse(body.as_bytes()).expect("a valid review").request;
    let mut response = AdmissionResponse::from(&request);
    response.deny(403, format!("{policy}: {message}"));
    let outcomes = vec![outcome(policy, PolicyResult::Denied { code: 403, message: message.to_owned() })];
    Admitted { request, response, outcomes, patch: Vec::new() }
}

fn denial_records(log: &AuditLog, uid: &str, namespace: &str, policy: &str) -> Vec<AuditRecord> {
    let admitted = denied(&review_body(uid, namespace, "alice", false), policy, "image tag latest is not allowed");
    let records = log.records(Endpoint::Validate, &admitted.request, &admitted);
    assert_eq!(records.len(), 1);
    records
}

/// Every line of every file of the log at `path`, oldest first; each must
/// be a whole record.
fn all_lines(path: &Path) -> Vec<AuditRecord> {
    let mut files = rotated_files(path);
    files.push(path.to_owned());
    let mut records = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap_or_default();
        assert!(text.is_empty() || text.ends_with('\n'), "{} ends in a torn line", file.display());
        for line in text.lines() {
            let record: AuditRecord = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("{}: not a record ({err}): {line}", file.display()));
            records.push(record);
        }
    }
    records
}

fn uids(records: &[AuditRecord]) -> HashSet<String> {
    records.iter().map(|r| r.uid.clone()).collect()
}

const WRITERS: usize = 32;
const EACH: usize = 200;

#[test]
fn concurrent_threads_lose_nothing_and_never_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&spec(&path)).unwrap();
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let log = log.clone();
            scope.spawn(move || {
                for n in 0..EACH {
                    let records = denial_records(&log, &format!("t{writer}-{n}"), "team-a", "no-latest");
                    log.write_blocking(records).expect("written");
                }
            });
        }
    });
    let records = all_lines(&path);
    assert_eq!(records.len(), WRITERS * EACH);
    assert_eq!(uids(&records).len(), WRITERS * EACH, "every record once");
    assert_eq!(log.written(), (WRITERS * EACH) as u64);
    assert_eq!(log.failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tasks_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dirs/audit.log");
    let log = AuditLog::open(&spec(&path)).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let log = log.clone();
        tasks.spawn(async move {
            for n in 0..EACH {
                let records = denial_records(&log, &format!("a{writer}-{n}"), "team-b", "no-latest");
                log.write(records).await.expect("written");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let records = all_lines(&path);
    assert_eq!(records.len(), WRITERS * EACH);
    assert_eq!(uids(&records).len(), WRITERS * EACH);
}

#[test]
fn rotation_under_concurrent_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let max_size = 64 << 10;
    let log = AuditLog::open(&AuditSpec { max_size, max_files: 10_000, ..spec(&path) }).unwrap();
    let each = 100;
    std::thread::scope(|scope| {
        for writer in 0..WRITERS {
            let log = log.clone();
            scope.spawn(move || {
                for n in 0..each {
                    let records = denial_records(&log, &format!("r{writer}-{n}"), "team-a", "no-latest");
                    log.write_blocking(records).expect("written");
                }
            });
        }
    });
    let rotated = rotated_files(&path);
    assert!(rotated.len() >= 10, "rotated {} times only", rotated.len());
    for file in rotated.iter().chain([&path]) {
        let size = fs::metadata(file).unwrap().len();
        assert!(size <= max_size, "{} is {size} bytes", file.display());
    }
    let records = all_lines(&path);
    assert_eq!(records.len(), WRITERS * each);
    assert_eq!(uids(&records).len(), WRITERS * each);
    // The reader sees the same, through every rotated file.
    let read = LogReader::open(std::slice::from_ref(&path), Filter::default()).unwrap().count();
    assert_eq!(read, WRITERS * each);
}

#[test]
fn rotation_keeps_max_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&AuditSpec { max_size: 4 << 10, max_files: 3, ..spec(&path) }).unwrap();
    for n in 0..100 {
        log.write_blocking(denial_records(&log, &format!("k{n}"), "team-a", "p")).unwrap();
    }
    assert_eq!(rotated_files(&path), vec![path.with_extension("log.2"), path.with_extension("log.1")]);
    let records = all_lines(&path);
    // The newest records, in order, up to the last one.
    assert_eq!(records.last().unwrap().uid, "k99");
    let first: usize = records[0].uid[1..].parse().unwrap();
    let expected: Vec<String> = (first..100).map(|n| format!("k{n}")).collect();
    assert_eq!(records.iter().map(|r| r.uid.clone()).collect::<Vec<_>>(), expected);
}

#[test]
fn a_torn_final_line_is_skipped_with_a_warning_then_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&spec(&path)).unwrap();
    for n in 0..10 {
        log.write_blocking(denial_records(&log, &format!("w{n}"), "team-a", "p")).unwrap();
    }
    drop(log);
    // A crash in the middle of a write.
    let line = fs::read_to_string(&path).unwrap().lines().next().unwrap().to_owned();
    fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&line.as_bytes()[..line.len() / 2]).unwrap();

    let mut reader = LogReader::open(std::slice::from_ref(&path), Filter::default()).unwrap();
    assert_eq!(reader.by_ref().count(), 10);
    let warnings = reader.take_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("torn final line"), "{warnings:?}");

    // The command says so on stderr, and still prints every record.
    let out = berth(&["audit", "--log", path.to_str().unwrap(), "--output", "json"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 10);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning:") && stderr.contains("torn final line"), "{stderr}");

    // Restarted, berth cuts the torn line and appends whole lines.
    let log = AuditLog::open(&spec(&path)).unwrap();
    log.write_blocking(denial_records(&log, "after", "team-a", "p")).unwrap();
    let records = all_lines(&path);
    assert_eq!(records.len(), 11);
    assert_eq!(records[10].uid, "after");
}

#[test]
fn redaction_is_on_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&spec(&path)).unwrap();
    let applied = json!({"kind": "Secret", "stringData": {"token": "t0ps3cret"}}).to_string();
    let secret = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "s1", "kind": {"group": "", "version": "v1", "kind": "Secret"},
            "resource": {"group": "", "version": "v1", "resource": "secrets"},
            "namespace": "team-a", "name": "db", "operation": "CREATE", "userInfo": {"username": "bob"},
            "object": {
                "kind": "Secret",
                "metadata": {"name": "db", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied}},
                "data": {"password": "aHVudGVyMg=="},
                "stringData": {"token": "t0ps3cret"}
            }
        }
    })
    .to_string();
    let admitted = denied(&secret, "no-secrets", "no");
    log.write_blocking(log.records(Endpoint::Validate, &admitted.request, &admitted)).unwrap();
    let admitted = denied(&review_body("p1", "team-a", "bob", false), "no-latest", "no");
    log.write_blocking(log.records(Endpoint::Validate, &admitted.request, &admitted)).unwrap();

    let text = fs::read_to_string(&path).unwrap();
    for secret in ["aHVudGVyMg==", "t0ps3cret", "hunter2"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let records = all_lines(&path);
    let object = records[0].object.as_ref().unwrap();
    assert_eq!(object["data"], json!({"password": "<redacted>"}));
    assert_eq!(object["stringData"], json!({"token": "<redacted>"}));
    assert_eq!(object["metadata"]["name"], "db");
    let pod = records[1].object.as_ref().unwrap();
    assert_eq!(pod["spec"]["containers"][0]["env"][0], json!({"name": "DB_PASSWORD", "value": "<redacted>"}));
    assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:latest");
}

#[test]
fn a_full_disk_is_reported_and_on_error_decides() {
    for on_error in [OnError::Deny, OnError::Allow] {
        let log = AuditLog::open(&AuditSpec { on_error, ..spec(Path::new("/dev/full")) }).unwrap();
        let err = log.write_blocking(denial_records(&log, "full", "team-a", "p")).unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::StorageFull));
        assert_eq!(err.to_string(), "writing /dev/full: No space left on device (os error 28)");
        assert_eq!(log.on_error(), on_error);
        assert_eq!(log.failures(), 1);
        assert_eq!(log.written(), 0);
    }
}

#[tokio::test]
async fn a_full_disk_fails_the_async_write_too() {
    let log = AuditLog::open(&spec(Path::new("/dev/full"))).unwrap();
    let err = log.write(denial_records(&log, "full", "team-a", "p")).await.unwrap_err();
    assert!(matches!(err, AuditError::Io { .. }), "{err:?}");
    assert_eq!(log.on_error(), OnError::Deny);
    // Nothing to write is never an error.
    log.write(Vec::new()).await.unwrap();
    assert_eq!(log.failures(), 1);
}

#[test]
fn an_unwritable_path_is_reported_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, "").unwrap();
    let path = blocker.join("audit.log");
    for on_error in [OnError::Deny, OnError::Allow] {
        // Opening succeeds: the server starts, and onError decides per write.
        let log = AuditLog::open(&AuditSpec { on_error, ..spec(&path) }).unwrap();
        let err = log.write_blocking(denial_records(&log, "x", "team-a", "p")).unwrap_err().to_string();
        assert!(err.contains("not-a-dir is not a directory"), "{err}");
        assert_eq!(log.on_error(), on_error);
        assert_eq!(log.failures(), 1);
    }
    let log = AuditLog::open(&spec(&path)).unwrap();
    assert!(log.write_blocking(denial_records(&log, "x", "team-a", "p")).is_err());
    fs::remove_file(&blocker).unwrap();
    log.write_blocking(denial_records(&log, "y", "team-a", "p")).unwrap();
    assert_eq!(all_lines(&path).len(), 1);
}

#[test]
fn a_directory_without_write_permission_is_reported() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    if fs::write(locked.join("probe"), "").is_ok() {
        eprintln!("skipped: running with CAP_DAC_OVERRIDE (root), permissions are not enforced");
        return;
    }
    let log = AuditLog::open(&spec(&locked.join("audit.log"))).unwrap();
    let err = log.write_blocking(denial_records(&log, "x", "team-a", "p")).unwrap_err();
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::PermissionDenied), "{err}");
    assert!(err.to_string().starts_with("opening "), "{err}");
}

#[test]
fn dry_runs_errors_and_mutations_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&AuditSpec { record_mutations: true, ..spec(&path) }).unwrap();
    let body = review_body("d1", "team-a", "alice", true);
    let admitted = denied(&body, "no-latest", "no");
    let records = log.records(Endpoint::Mutate, &admitted.request, &admitted);
    assert!(records[0].dry_run);
    assert_eq!(records[0].endpoint, "mutate");

    let request = Review::parse(body.as_bytes()).unwrap().request;
    let ignored = Admitted {
        response: AdmissionResponse::from(&request),
        request,
        patch: Vec::new(),
        outcomes: vec![
            outcome(
                "slow",
                PolicyResult::Failed {
                    error: PluginError::Timeout { after: Duration::from_millis(100) }.into(),
                    failure_policy: FailurePolicy::Ignore,
                },
            ),
            outcome("fine", PolicyResult::Allowed),
        ],
    };
    assert!(log.wants(&ignored));
    let records = log.records(Endpoint::Validate, &ignored.request, &ignored);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].decision, Decision::Error);
    assert!(records[0].allowed);

    let without = AuditLog::open(&spec(&dir.path().join("other.log"))).unwrap();
    let allowed = Admitted { outcomes: vec![outcome("fine", PolicyResult::Allowed)], ..ignored };
    assert!(!without.wants(&allowed));
    assert!(without.records(Endpoint::Validate, &allowed.request, &allowed).is_empty());
}

/// A real admission: the tolerations plugin patches a Pulsar bookie.
#[test]
fn a_real_mutation_through_admit() {
    let runtime = Runtime::new(RuntimeOptions {
        cache: ArtifactCache::at(Path::new(env!("CARGO_TARGET_TMPDIR")).join("berth-artifact-cache")),
        ..RuntimeOptions::default()
    })
    .unwrap();
    let yaml = "policies:\n  - name: pulsar-tolerations\n    plugin: builtin:tolerations\n    mode: mutate\n    settings:\n      tolerations: [{key: dedicated, operator: Equal, value: pulsar, effect: NoSchedule}]\n";
    let config = Config::parse(yaml, "test").unwrap();
    let policies = PolicySet::load(
        &runtime,
        &[Source { config, base_dir: PathBuf::new(), origin: "test".into() }],
        berth::cluster::Cluster::none(),
    )
    .unwrap();
    let body = fs::read("../tests/fixtures/pulsar/reviews/005-pod-pulsar-bookie-0.json").unwrap();
    let admitted = admit(&policies, Endpoint::Mutate, Review::parse(&body).unwrap());
    assert!(admitted.response.allowed && admitted.response.patch.is_some());

    let dir = tempfile::tempdir().unwrap();
    let off = AuditLog::open(&spec(&dir.path().join("off.log"))).unwrap();
    assert!(!off.wants(&admitted), "mutations are not recorded by default");
    let log = AuditLog::open(&AuditSpec { record_mutations: true, ..spec(&dir.path().join("audit.log")) }).unwrap();
    let records = log.records(Endpoint::Mutate, &admitted.request, &admitted);
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.decision, Decision::Mutated);
    assert_eq!(record.policy, "pulsar-tolerations");
    assert_eq!(record.plugin, "builtin:tolerations");
    assert_eq!(record.sha256.len(), 64);
    let patch = record.patch.as_ref().unwrap().as_array().unwrap();
    assert!(patch.iter().any(|op| op["path"].as_str().unwrap().starts_with("/spec/tolerations")), "{patch:?}");
    assert_eq!(record.uid, admitted.request.uid);
    // The object as submitted, before the patch.
    let tolerations = record.object.as_ref().unwrap()["spec"]["tolerations"].to_string();
    assert!(!tolerations.contains("dedicated"), "{tolerations}");
    log.write_blocking(records).unwrap();
}

fn write_log(path: &Path, records: &[(&str, &str, &str, &str)]) {
    // (time, namespace, policy, decision)
    let text: String = records
        .iter()
        .map(|(time, namespace, policy, decision)| {
            let mut record = json!({
                "time": time, "uid": format!("{policy}@{time}"), "operation": "CREATE",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": namespace, "generateName": "web-", "user": "system:serviceaccount:ci:deployer",
                "groups": [], "dryRun": false, "endpoint": "validate", "policy": policy,
                "plugin": "builtin:x", "sha256": "00", "decision": decision, "allowed": false
            });
            match *decision {
                "denied" => {
                    record["code"] = 403.into();
                    record["message"] = format!("{policy} says no").into();
                }
                "error" => {
                    record["message"] = "timed out after 100ms".into();
                    record["errorKind"] = "timeout".into();
                    record["failurePolicy"] = "Fail".into();
                }
                _ => record["patch"] = json!([{"op": "add", "path": "/metadata/labels", "value": {}}]),
            }
            record.to_string() + "\n"
        })
        .collect();
    fs::write(path, text).unwrap();
}

fn two_replicas(dir: &Path) -> (PathBuf, PathBuf) {
    let a = dir.join("replica-a.log");
    let b = dir.join("replica-b.log");
    write_log(
        &a,
        &[
            ("2024-05-01T10:00:00Z", "team-a", "no-latest", "denied"),
            ("2024-05-01T10:00:02Z", "team-b", "no-latest", "denied"),
            ("2024-05-01T10:00:04Z", "team-a", "registries", "error"),
        ],
    );
    write_log(
        &b,
        &[
            ("2024-05-01T10:00:01Z", "team-a", "no-latest", "denied"),
            ("2024-05-01T10:00:03Z", "team-a", "tolerations", "mutated"),
            ("2024-05-01T10:00:05Z", "team-b", "no-latest", "denied"),
        ],
    );
    (a, b)
}

#[test]
fn two_files_merge_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_replicas(dir.path());
    let reader = LogReader::open(&[a.clone(), b.clone()], Filter::default()).unwrap();
    let seconds: Vec<u64> =
        reader.map(|e| e.record.time.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() % 60).collect();
    assert_eq!(seconds, [0, 1, 2, 3, 4, 5]);
    // A directory holds both.
    assert_eq!(LogReader::open(&[dir.path().to_owned()], Filter::default()).unwrap().count(), 6);
    // Filtered.
    let filter = Filter { namespaces: vec!["team-a".into()], policies: vec!["no-latest".into()], ..Filter::default() };
    assert_eq!(LogReader::open(&[a, b], filter).unwrap().count(), 2);
}

#[test]
fn summary_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_replicas(dir.path());
    let mut summary = Summary::default();
    for entry in LogReader::open(&[a, b], Filter::default()).unwrap() {
        summary.add(&entry.record);
    }
    assert_eq!(
        (summary.counts.total, summary.counts.denied, summary.counts.errors, summary.counts.mutated),
        (6, 4, 1, 1)
    );
    assert_eq!(summary.by_policy["no-latest"].denied, 4);
    assert_eq!(summary.by_policy["registries"].errors, 1);
    assert_eq!(summary.by_namespace["team-a"].total, 4);
    assert_eq!(summary.by_namespace["team-b"].total, 2);
    let reasons = summary.reasons();
    assert_eq!((reasons[0].reason.as_str(), reasons[0].count), ("no-latest says no", 4));
}

fn berth(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth")).args(args).output().expect("berth runs")
}

#[test]
fn the_audit_command() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_replicas(dir.path());
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    let out = berth(&["audit", "--log", a, "--log", b, "--output", "json", "--namespace", "team-a"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let times: Vec<&str> = lines.iter().map(|l| l["time"].as_str().unwrap()).collect();
    assert_eq!(times, ["2024-05-01T10:00:00Z", "2024-05-01T10:00:01Z", "2024-05-01T10:00:03Z", "2024-05-01T10:00:04Z"]);

    let out = berth(&[
        "audit",
        "--log",
        dir.path().to_str().unwrap(),
        "--since",
        "2024-05-01T10:00:02Z",
        "--until",
        "2024-05-01T10:00:05Z",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("TIME "), "{table}");
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        table.contains("no-latest says no") && table.contains("error/Fail") && table.contains("1 patch operation"),
        "{table}"
    );
    assert!(table.contains("web-*"), "{table}");

    let out = berth(&[
        "audit",
        "--log",
        a,
        "--policy",
        "registries",
        "--kind",
        "pods",
        "--user",
        "system:serviceaccount:ci:*",
        "--output",
        "json",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);

    let out = berth(&["audit", "summary", "--log", a, "--log", b]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("Audit records from 2024-05-01T10:00:00Z to 2024-05-01T10:00:05Z: 6\n"), "{text}");
    assert!(text.contains("denied 4, errors 1, mutated 1"), "{text}");
    for header in ["POLICY", "NAMESPACE", "REASON"] {
        assert!(text.contains(header), "{text}");
    }

    let out = berth(&["audit", "summary", "--log", a, "--log", b, "--output", "json", "--namespace", "team-b"]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["counts"]["total"], 2);

    let out = berth(&["audit", "--log", dir.path().join("missing.log").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no audit log at"));

    let out = berth(&["audit", "--log", a, "--since", "someday"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
}

#[test]
fn the_audit_command_reads_the_configured_path() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("configured.log");
    write_log(&log, &[("2024-05-01T10:00:00Z", "team-a", "no-latest", "denied")]);
    let config = dir.path().join("berth.yaml");
    fs::write(&config, format!("policies: []\naudit:\n  path: {}\n", log.display())).unwrap();
    let out = berth(&["audit", "--config", config.to_str().unwrap(), "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn following_prints_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["audit", "--follow", "--output", "json", "--log", path.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = AuditLog::open(&AuditSpec { max_size: 2 << 10, max_files: 100, ..spec(&path) }).unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Following starts at the active file, like `tail -f`: the first record
    // is seen before the rest are written, so none of them can rotate away
    // before the follower has opened the log (a busy machine starts it late).
    let next = || received.recv_timeout(Duration::from_secs(30)).expect("a followed record within 30 s");
    log.write_blocking(denial_records(&log, "f0", "team-a", "p")).unwrap();
    let mut lines = vec![next()];
    for n in 1..10 {
        log.write_blocking(denial_records(&log, &format!("f{n}"), "team-a", "p")).unwrap();
    }
    lines.extend((1..10).map(|_| next()));
    child.kill().unwrap();
    child.wait().unwrap();
    let uids: Vec<String> = lines.iter().map(|l| serde_json::from_str::<AuditRecord>(l).unwrap().uid).collect();
    assert_eq!(uids, (0..10).map(|n| format!("f{n}")).collect::<Vec<_>>());
}
