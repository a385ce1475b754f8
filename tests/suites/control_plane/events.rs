//! The Events berth records for denials (docs/AUDIT.md), seen as an
//! operator sees them: `helm install` of a chart whose images the policy
//! refuses, then `kubectl get events` and `kubectl describe` of the
//! StatefulSet and the Job whose pods were never created.

use berth_e2e::control_plane::Helm;
use berth_e2e::control_plane::berth::{Berth, OPT_IN};
use serde_json::Value;
use std::time::Duration;

const REFUSED_IMAGE: &str = "quay.io/evil/pulsar:1";
/// berth's replicas (the chart's default): each aggregates on its own.
const REPLICAS: usize = 2;

/// Pulsar's workloads, from a registry the policy refuses.
fn refused_chart() -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: bookie
  labels: {{app: pulsar, component: bookie}}
spec:
  replicas: 1
  serviceName: bookie
  selector: {{matchLabels: {{app: pulsar, component: bookie}}}}
  template:
    metadata: {{labels: {{app: pulsar, component: bookie}}}}
    spec:
      containers: [{{name: bookie, image: "{REFUSED_IMAGE}"}}]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: initialize
  labels: {{app: pulsar, component: init}}
spec:
  backoffLimit: 2
  template:
    metadata: {{labels: {{app: pulsar, component: init}}}}
    spec:
      restartPolicy: Never
      containers: [{{name: init, image: "{REFUSED_IMAGE}"}}]
"#
    )
}

#[test]
fn a_refused_install_says_why_in_kubectl_get_events_and_describe() {
    let (plane, _berth) = Berth::shared();
    let ns = "events-refused";
    plane.namespace(ns, &[OPT_IN]);
    let chart = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(chart.path().join("templates")).expect("chart");
    std::fs::write(chart.path().join("Chart.yaml"), "apiVersion: v2\nname: refused\nversion: 1.0.0\n")
        .expect("Chart.yaml");
    std::fs::write(chart.path().join("templates/workloads.yaml"), refused_chart()).expect("template");
    plane.helm_ok(Helm::V3, &["install", "refused", &chart.path().display().to_string(), "-n", ns]);

    // The controllers try again and again, berth refuses each time, and
    // its Events reach the API after the answers (written off the hot
    // path): each controller's retries are counted in one Event per
    // replica, its count patched at most every 10 s.
    let mut events = Vec::new();
    let found =
        plane.wait_for("berth's Events on the StatefulSet and the Job, with counts", Duration::from_secs(90), || {
            let listed: Value =
                serde_json::from_str(&plane.kubectl_ok(&["get", "events", "-n", ns, "-o", "json"])).expect("JSON");
            events = listed["items"].as_array().cloned().unwrap_or_default();
            ["StatefulSet", "Job"].iter().all(|kind| {
                events.iter().any(|e| {
                    e["involvedObject"]["kind"] == *kind
                        && e["reason"] == "PolicyDenied"
                        && e["series"]["count"].as_i64() > Some(1)
                })
            })
        });
    // As docs/AUDIT.md writes it: berth's Events, and only those.
    let table =
        plane.kubectl_ok(&["get", "events", "-n", ns, "--field-selector", "reportingComponent=berth.dev/admission"]);
    let describe_sts = plane.kubectl_ok(&["describe", "statefulset", "-n", ns, "bookie"]);
    let describe_job = plane.kubectl_ok(&["describe", "job", "-n", ns, "initialize"]);
    let pods = plane.kubectl_ok(&["get", "pods", "-n", ns, "-o", "name"]);
    plane.helm_ok(Helm::V3, &["uninstall", "refused", "-n", ns]);
    found.unwrap_or_else(|e| panic!("{e}: {events:#?}"));
    eprintln!(
        "kubectl get events -n {ns}:\n{table}\nkubectl describe statefulset bookie (end):\n{}",
        tail(&describe_sts, 6)
    );

    assert!(pods.trim().is_empty(), "a pod was admitted: {pods}");
    for (kind, name) in [("StatefulSet", "bookie"), ("Job", "initialize")] {
        let event = events
            .iter()
            .find(|e| e["involvedObject"]["kind"] == kind && e["reason"] == "PolicyDenied")
            .expect("found above");
        assert_eq!(event["involvedObject"]["name"], name, "{event}");
        assert_eq!(event["type"], "Warning", "{event}");
        assert_eq!(event["reportingComponent"], "berth.dev/admission", "{event}");
        assert!(
            event["message"].as_str().is_some_and(|m| m.contains(REFUSED_IMAGE)),
            "the note is berth's message: {event}"
        );
        let berths =
            events.iter().filter(|e| e["involvedObject"]["name"] == name && e["reason"] == "PolicyDenied").count();
        assert!(berths <= REPLICAS, "{berths} Events on {kind} {name}: the retries were not aggregated");
    }
    assert!(table.contains("PolicyDenied") && table.contains(REFUSED_IMAGE), "{table}");
    assert!(!table.contains("FailedCreate"), "the controllers' own Events are not berth's: {table}");
    for (what, text) in [("statefulset", &describe_sts), ("job", &describe_job)] {
        let section = text.split("Events:").nth(1).unwrap_or_default();
        assert!(
            section.contains("PolicyDenied") && section.contains(REFUSED_IMAGE),
            "kubectl describe {what} shows no reason:\n{text}"
        );
        assert!(
            section.lines().any(|line| line.contains("PolicyDenied") && line.contains("(x")),
            "kubectl describe {what} shows no count of the refusals:\n{text}"
        );
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
