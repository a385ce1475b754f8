//! The audit log through the real server: every acknowledged denial is on
//! disk, under concurrency, across rotation, after `kill -9`, and when the
//! destination fails the configured way.

use berth_e2e::admission::check;
use berth_e2e::client::{Client, Exchange, Protocol};
use berth_e2e::fixtures;
use berth_e2e::server::Server;
use hyper::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio")
}

/// One validating policy that denies the unpatched Pulsar bookie: it lacks
/// the toleration.
fn denying_config(audit: &str) -> String {
    format!(
        "policies:\n  - name: require-toleration\n    plugin: builtin:require-placement\n    mode: validate\n    match:\n      resources: [pods]\n    settings:\n      tolerations:\n        - {{key: dedicated, operator: Equal, value: pulsar, effect: NoSchedule}}\n{audit}"
    )
}

/// The bookie review with a fresh uid, so each record can be traced.
fn bookie_with_uid(uid: &str) -> String {
    let mut review = fixtures::get("pulsar", "005-pod-pulsar-bookie-0.json").review;
    review["request"]["uid"] = json!(uid);
    review.to_string()
}

/// Every line of the active and rotated files: parsed records and torn lines.
fn read_lines(path: &Path) -> (Vec<Value>, Vec<String>) {
    let dir = path.parent().expect("parent");
    let name = path.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
    let (mut records, mut torn) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file != name && !file.starts_with(&format!("{name}.")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).expect("read log");
        for line in text.lines() {
            match serde_json::from_str::<Value>(line) {
                Ok(record) => records.push(record),
                Err(_) => torn.push(line.to_owned()),
            }
        }
    }
    (records, torn)
}

/// Send `per_connection` denials on each of `connections` connections; the
/// uids whose denial came back.
async fn deny_many(server: &Server, connections: usize, per_connection: usize) -> Vec<String> {
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let protocol = if c % 2 == 0 { Protocol::Http2 } else { Protocol::Http1 };
        let mut client = Client::connect(server.listen, &server.ca, protocol).await.expect("connect");
        let acknowledged = acknowledged.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_connection {
                let uid = format!("uid-{c}-{i}");
                let body = bookie_with_uid(&uid);
                if let Exchange::Complete(StatusCode::OK, answer) =
                    client.post_exchange("/validate", body.clone()).await
                {
                    let review: Value = serde_json::from_str(&body).expect("review");
                    let answer = check(&review, &answer);
                    assert!(!answer.allowed(), "the bookie without its toleration must be denied");
                    acknowledged.lock().expect("lock").push(uid);
                } else {
                    return;
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    Arc::try_unwrap(acknowledged).expect("tasks done").into_inner().expect("lock")
}

#[test]
fn concurrent_denials_make_exactly_one_record_each() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    std::fs::write(&config, denying_config("")).expect("config");
    let log = dir.path().join("audit/berth.log");
    let server = Server::builder().config(&config).arg("--audit-log").arg(log.display().to_string()).spawn();
    let acknowledged = runtime().block_on(deny_many(&server, 16, 25));
    assert_eq!(acknowledged.len(), 400);
    let (records, torn) = read_lines(&log);
    assert!(torn.is_empty(), "interleaved or torn lines: {torn:?}");
    assert_eq!(records.len(), 400, "one record per denial");
    let uids: HashSet<&str> = records.iter().filter_map(|r| r["uid"].as_str()).collect();
    assert_eq!(uids.len(), 400, "no record lost or written twice");
    let record = &records[0];
    assert_eq!(record["decision"], "denied");
    assert_eq!(record["policy"], "require-toleration");
    assert_eq!(record["plugin"], "builtin:require-placement");
    assert_eq!(record["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(record["endpoint"], "validate");
    assert_eq!(record["namespace"], "pulsar");
    assert_eq!(record["name"], "pulsar-bookie-0");
    assert_eq!(record["code"], 403);
    assert!(record["message"].as_str().unwrap_or_default().contains("dedicated"), "{record}");
    assert!(record["object"]["spec"]["containers"].is_array(), "the object as submitted is kept");
    assert!(record["time"].as_str().is_some_and(|t| t.contains('.') && t.ends_with('Z')), "{record}");
}

#[test]
fn rotation_under_load_loses_no_record() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    let log = dir.path().join("berth.log");
    let audit = format!("audit:\n  path: {}\n  maxSize: 64Ki\n  maxFiles: 200\n", log.display());
    std::fs::write(&config, denying_config(&audit)).expect("config");
    let server = Server::builder().config(&config).spawn();
    let acknowledged = runtime().block_on(deny_many(&server, 8, 50));
    let (records, torn) = read_lines(&log);
    assert!(torn.is_empty(), "{torn:?}");
    let rotated = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("berth.log."))
        .count();
    assert!(rotated >= 3, "the log should have rotated several times, it rotated {rotated}");
    let uids: HashSet<String> = records.iter().filter_map(|r| r["uid"].as_str().map(str::to_owned)).collect();
    assert_eq!(uids.len(), records.len(), "duplicated records");
    for uid in &acknowledged {
        assert!(uids.contains(uid), "the denial of {uid} was acknowledged but is not in the log");
    }
    // `berth audit` reads the rotated files too.
    let (status, stdout, stderr) = Server::cli(&["audit", "--log", &log.display().to_string(), "--output", "json"]);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), acknowledged.len(), "{stderr}");
}

#[test]
fn kill_9_keeps_every_acknowledged_denial() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    std::fs::write(&config, denying_config("")).expect("config");
    let log = dir.path().join("berth.log");
    let mut server = Server::builder().config(&config).arg("--audit-log").arg(log.display().to_string()).spawn();
    let acknowledged = runtime().block_on(async {
        let killer = {
            let pid = server.pid();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(400)).await;
                let status = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill");
                assert!(status.success());
            })
        };
        let acknowledged = deny_many(&server, 8, 100_000).await;
        killer.await.expect("killer");
        acknowledged
    });
    let status = server.wait(Duration::from_secs(10));
    assert!(!status.success(), "berth was killed");
    assert!(acknowledged.len() > 20, "too little traffic before the kill: {}", acknowledged.len());

    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    let complete = text.ends_with('\n');
    for (i, line) in lines.iter().enumerate() {
        let last = i + 1 == lines.len();
        let parsed = serde_json::from_str::<Value>(line).is_ok();
        assert!(parsed || (last && !complete), "line {i} is torn and is not the final line");
    }
    let uids: HashSet<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|r| r["uid"].as_str().map(str::to_owned))
        .collect();
    for uid in &acknowledged {
        assert!(uids.contains(uid), "the denial of {uid} was answered before the kill but is not in the log");
    }
    // The reader copes with whatever the kill left, and says so.
    let (status, stdout, stderr) = Server::cli(&["audit", "--log", &log.display().to_string(), "--output", "json"]);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), uids.len());
    if !complete {
        assert!(stderr.contains("warning"), "a torn tail must be reported: {stderr:?}");
    }
}

#[test]
fn torn_tail_is_skipped_with_a_warning() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("berth.log");
    let config = dir.path().join("berth.yaml");
    std::fs::write(&config, denying_config("")).expect("config");
    let server = Server::builder().config(&config).arg("--audit-log").arg(log.display().to_string()).spawn();
    runtime().block_on(deny_many(&server, 1, 3));
    drop(server);
    let mut text = std::fs::read_to_string(&log).expect("log");
    text.push_str("{\"time\":\"2026-11-25T00:00:00.000000001Z\",\"uid\":\"tor");
    std::fs::write(&log, text).expect("tear");
    let (status, stdout, stderr) = Server::cli(&["audit", "--log", &log.display().to_string(), "--output", "json"]);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 3);
    assert!(stderr.contains("warning") && stderr.contains("torn"), "{stderr}");
}

/// A mutating policy with mutations recorded: the destination's failure
/// then decides the fate of an otherwise allowed request.
fn recording_config(path: &Path, on_error: &str) -> String {
    format!(
        "policies:\n  - name: tolerations\n    plugin: builtin:tolerations\n    mode: mutate\n    settings:\n      tolerations:\n        - {{key: dedicated, operator: Equal, value: pulsar, effect: NoSchedule}}\naudit:\n  path: {}\n  recordMutations: true\n  onError: {on_error}\n",
        path.display()
    )
}

#[test]
fn a_failing_destination_follows_on_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").expect("file");
    let fixture = fixtures::get("pulsar", "005-pod-pulsar-bookie-0.json");
    // A full disk, and a path that cannot be created.
    for destination in [Path::new("/dev/full").to_owned(), not_a_dir.join("audit.log")] {
        for on_error in ["deny", "allow"] {
            let config = dir.path().join(format!("berth-{on_error}.yaml"));
            std::fs::write(&config, recording_config(&destination, on_error)).expect("config");
            let server = Server::builder().config(&config).spawn();
            let answer = runtime().block_on(async {
                let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
                let (status, body) = client.post("/mutate", fixture.body.clone()).await.expect("mutate");
                assert_eq!(status, StatusCode::OK);
                check(&fixture.review, &body)
            });
            let what = format!("{} with onError {on_error}", destination.display());
            if on_error == "deny" {
                assert!(!answer.allowed(), "{what}: must fail closed");
                assert!(answer.message().contains("could not write its audit log"), "{what}: {}", answer.message());
            } else {
                assert!(answer.allowed() && answer.patch.is_some(), "{what}: must answer as if the log worked");
            }
            let metrics = server.metrics_text();
            assert!(metrics.contains("berth_audit_failures_total 1"), "{what}: {metrics}");
            server.wait_for_log("audit log write failed", Duration::from_secs(2));
        }
    }
}

#[test]
fn dry_run_denials_are_recorded_as_dry_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    std::fs::write(&config, denying_config("")).expect("config");
    let log = dir.path().join("berth.log");
    let server = Server::builder().config(&config).arg("--audit-log").arg(log.display().to_string()).spawn();
    let fixture = fixtures::get("pulsar", "030-pod-pulsar-bookie-0-dryrun.json");
    runtime().block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        let (_, body) = client.post("/validate", fixture.body.clone()).await.expect("validate");
        assert!(!check(&fixture.review, &body).allowed());
    });
    let (records, _) = read_lines(&log);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["dryRun"], true);
    assert_eq!(records[0]["user"], "kubernetes-admin");
}

#[test]
fn summary_of_the_default_policy_over_every_chart() {
    // The charts' pods as they would arrive if the mutating webhook had been
    // skipped: the default policy's validators deny them.
    let server = Server::start();
    runtime().block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        for fixture in fixtures::all().into_iter().filter(|f| f.kind() == "Pod" && f.operation() == "CREATE") {
            let (status, body) = client.post("/validate", fixture.body.clone()).await.expect("validate");
            assert_eq!(status, StatusCode::OK);
            let answer = check(&fixture.review, &body);
            assert!(!answer.allowed(), "{}: an unmutated chart pod must be denied", fixture.file_name());
        }
    });
    let log = server.dir().join("berth-audit.log");
    let (status, stdout, stderr) = Server::cli(&["audit", "summary", "--log", &log.display().to_string()]);
    assert!(status.success(), "{stderr}");
    for expected in ["pulsar-allowed-registries", "kafka-allowed-registries", "pulsar", "kafka"] {
        assert!(stdout.contains(expected), "summary lacks {expected:?}:\n{stdout}");
    }
    println!("{stdout}");
    // The shared options before the subcommand: the same summary.
    let (status, before, stderr) = Server::cli(&["audit", "--log", &log.display().to_string(), "summary"]);
    assert!(status.success(), "{stderr}");
    assert_eq!(before, stdout);
}

/// The chart's StatefulSet gives each replica its own volume, which outlives
/// the pod (deploy/README.md): a replica replaced by a new berth process on
/// the same volume keeps the records of the one before, and an auditor
/// reads every replica's records in one `berth audit`, merged by time,
/// from what `kubectl exec POD -- berth audit --output json` prints for
/// each pod (or from the volumes themselves).
#[test]
fn a_replicas_records_outlive_its_process_and_every_replica_is_read_merged_by_time() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    std::fs::write(&config, denying_config("")).expect("config");
    let volumes = dir.path().join("volumes");
    let log = |replica: &str| volumes.join(replica).join("audit.log");
    // One process at a time, the replicas taking turns, so that the
    // records' times interleave across the two volumes.
    let turns = [("berth-0", "r0-first"), ("berth-1", "r1-first"), ("berth-0", "r0-second"), ("berth-1", "r1-second")];
    for (replica, uid) in turns {
        let mut server =
            Server::builder().config(&config).arg("--audit-log").arg(log(replica).display().to_string()).spawn();
        runtime().block_on(async {
            let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
            let (status, answer) = client.post("/validate", bookie_with_uid(uid)).await.expect("validate");
            assert_eq!(status, StatusCode::OK);
            let review: Value = serde_json::from_str(&bookie_with_uid(uid)).expect("review");
            assert!(!check(&review, &answer).allowed(), "{uid}: denied");
        });
        // A rollout: SIGTERM, and the next process on the same volume.
        server.signal("TERM");
        assert!(server.wait(Duration::from_secs(30)).success(), "{replica}: exit 0 on SIGTERM");
    }
    let uids_of = |records: &[Value]| -> Vec<String> {
        records.iter().map(|r| r["uid"].as_str().expect("uid").to_owned()).collect()
    };
    // The first process's record survived its replacement, before the second's.
    let (records, torn) = read_lines(&log("berth-0"));
    assert!(torn.is_empty(), "{torn:?}");
    assert_eq!(uids_of(&records), ["r0-first", "r0-second"]);
    assert_eq!(uids_of(&read_lines(&log("berth-1")).0), ["r1-first", "r1-second"]);

    // The auditor's command (deploy/README.md): each pod's records as JSON
    // lines (`kubectl exec berth-N -- berth audit --log
    // /var/log/berth/audit.log --output json > audit/berth-N.log`), then one
    // `berth audit` over them.
    let collected = dir.path().join("audit");
    std::fs::create_dir_all(&collected).expect("dir");
    for replica in ["berth-0", "berth-1"] {
        let active = log(replica).display().to_string();
        let (status, stdout, stderr) = Server::cli(&["audit", "--log", &active, "--output", "json"]);
        assert!(status.success(), "{stderr}");
        std::fs::write(collected.join(format!("{replica}.log")), stdout).expect("write");
    }
    let expected = ["r0-first", "r1-first", "r0-second", "r1-second"];
    for logs in [&collected, &volumes] {
        let (status, stdout, stderr) =
            Server::cli(&["audit", "--log", &logs.display().to_string(), "--output", "json"]);
        assert!(status.success(), "{stderr}");
        let records: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("a record")).collect();
        assert_eq!(uids_of(&records), expected, "{}: every replica's records, merged by time", logs.display());
        let times: Vec<&str> = records.iter().map(|r| r["time"].as_str().expect("time")).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    }
}
