//! `berth eval`: the policy author's tool, run as a newcomer would.

use berth_e2e::admission::check;
use berth_e2e::fixtures;
use berth_e2e::server::{Server, cache_dir};
use serde_json::Value;
use std::path::Path;

fn eval(args: &[&str]) -> (bool, String, String) {
    let cache = cache_dir().display().to_string();
    let mut all = vec!["eval", "--cache-dir", &cache];
    all.extend_from_slice(args);
    let (status, stdout, stderr) = Server::cli(&all);
    (status.success(), stdout, stderr)
}

fn sample_config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/tolerations.yaml").display().to_string()
}

#[test]
fn the_sample_config_adds_the_toleration_next_to_the_apiservers_two() {
    let fixture = fixtures::get("pulsar", "005-pod-pulsar-bookie-0.json");
    let (ok, stdout, stderr) = eval(&["--config", &sample_config(), &fixture.path.display().to_string()]);
    assert!(ok, "{stderr}");
    let answer = check(&fixture.review, stdout.as_bytes());
    assert!(answer.allowed());
    let patch = answer.patch.expect("a patch");
    assert_eq!(patch.as_array().map(Vec::len), Some(1), "{patch}");
    assert_eq!(patch[0]["op"], "add");
    assert_eq!(patch[0]["path"], "/spec/tolerations/-");
    let keys: Vec<&str> = answer.object["spec"]["tolerations"]
        .as_array()
        .expect("tolerations")
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert_eq!(keys, ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable", "dedicated"]);
}

#[test]
fn apply_prints_the_resulting_objects_and_validate_judges_them() {
    let fixtures: Vec<_> = ["002-pod-kafka-broker-0.json", "001-pvc-data-kafka-broker-0.json"]
        .iter()
        .map(|f| fixtures::get("kafka-kraft", f))
        .collect();
    let paths: Vec<String> = fixtures.iter().map(|f| f.path.display().to_string()).collect();
    let mut args = vec!["--apply"];
    args.extend(paths.iter().map(String::as_str));
    // The embedded default policy: no --config.
    let (ok, stdout, stderr) = eval(&args);
    assert!(ok, "{stderr}");
    let objects: Vec<Value> =
        serde_json::Deserializer::from_str(&stdout).into_iter().collect::<Result<_, _>>().expect("JSON objects");
    assert_eq!(objects.len(), 2);
    assert!(
        objects[0]["spec"]["containers"][0]["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("harbor.example.com/library/bitnami/kafka:"))
    );
    assert_eq!(objects[1]["spec"]["storageClassName"], "local-storage");

    // The unmutated pod breaks the policy; /validate says why, naming the container.
    let (ok, stdout, stderr) = eval(&["--endpoint", "validate", &paths[0]]);
    assert!(ok, "{stderr}");
    let answer = check(&fixtures[0].review, stdout.as_bytes());
    assert!(!answer.allowed());
    let message = answer.message();
    assert!(
        message.starts_with("kafka-allowed-registries: container \"prepare-config\" image \"docker.io/bitnami/kafka:"),
        "{message}"
    );
    assert!(message.contains("; container \"kafka\" image \"docker.io/bitnami/kafka:"), "{message}");
    assert!(
        message.contains("; kafka-require-placement: pod lacks the required toleration dedicated=kafka:NoSchedule"),
        "{message}"
    );
}

#[test]
fn a_malformed_review_is_reported_and_fails_the_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).expect("write");
    let (ok, _, stderr) = eval(&[&bad.display().to_string()]);
    assert!(!ok);
    assert!(stderr.contains("the review has no request"), "{stderr}");
}

/// The must-show of the context work, as a new user runs it: every review
/// of the hand-made install's charts through `berth eval --context
/// <dir>/cluster.yaml --apply`, and the objects it prints.
#[test]
fn the_seed_sets_with_their_cluster_as_context() {
    for chart in ["seed-pulsar-2.7.7", "seed-kafka-0.21.5"] {
        let dir = fixtures::dir().join(chart);
        let context = dir.join("cluster.yaml").display().to_string();
        let mut reviews: Vec<_> = std::fs::read_dir(dir.join("reviews"))
            .expect("reviews")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains("-pod-") || p.to_string_lossy().contains("-pvc-"))
            .collect();
        reviews.sort();
        let paths: Vec<String> = reviews.iter().map(|p| p.display().to_string()).collect();
        let mut args = vec!["--context", &context, "--apply"];
        args.extend(paths.iter().map(String::as_str));
        let (ok, stdout, stderr) = eval(&args);
        assert!(ok, "{chart}: {stderr}");
        let objects: Vec<Value> =
            serde_json::Deserializer::from_str(&stdout).into_iter().collect::<Result<_, _>>().expect("JSON objects");
        assert_eq!(objects.len(), reviews.len(), "{chart}");
        let app = if chart.contains("pulsar") { "pulsar" } else { "kafka" };
        for (path, object) in reviews.iter().zip(&objects) {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let review: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("review")).expect("JSON");
            if review["request"]["operation"] != "CREATE" {
                continue;
            }
            if object["kind"] == "PersistentVolumeClaim" {
                assert_eq!(object["spec"]["storageClassName"], "local-storage", "{name}");
                continue;
            }
            let tolerations = object["spec"]["tolerations"].as_array().expect("tolerations");
            assert_eq!(tolerations.len(), 3, "{name}: the apiserver's two and the dedicated one: {tolerations:?}");
            assert_eq!(tolerations[2]["value"], app, "{name}");
            let component = object["metadata"]["labels"]["component"].as_str().unwrap_or_default();
            let pinned = !(app == "pulsar" && matches!(component, "zookeeper" | "bookie"));
            assert_eq!(
                object["spec"]["nodeSelector"].get(format!("node-role.kubernetes.io/{app}")).is_some(),
                pinned,
                "{name}"
            );
            assert_eq!(object["spec"]["imagePullSecrets"], serde_json::json!([{"name": "regsecret"}]), "{name}");
            for list in ["initContainers", "containers"] {
                for container in object["spec"][list].as_array().into_iter().flatten() {
                    let image = container["image"].as_str().unwrap_or_default();
                    assert!(image.starts_with("harbor.example.com/library/"), "{name}: {image}");
                }
            }
        }
    }
}

/// Without --context, a policy that needs an owner fails the request with a
/// message that says what is missing; it never lets the pod through
/// unmutated.
#[test]
fn without_context_an_owner_lookup_fails_and_says_why() {
    let job_pod = fixtures::get("seed-pulsar-2.7.7", "025-pod-pulsar-bookie-init.json");
    let (ok, stdout, stderr) = eval(&[&job_pod.path.display().to_string()]);
    assert!(ok, "{stderr}");
    let answer = check(&job_pod.review, stdout.as_bytes());
    assert!(!answer.allowed(), "the pod passed without its owner being known");
    let message = answer.message();
    assert!(message.contains("--context") && message.contains("(context)"), "{message}");
    assert_eq!(answer.response["status"]["code"], 500);
}
