//! Kubernetes Events for denials (issue 24), against the stand-in API
//! (tests/src/kube), which takes Events only in the shape kube-apiserver
//! accepts (tests/src/kube/events.rs): a refused pod of a StatefulSet or a
//! Job is an Event on the StatefulSet or the Job; repeats are one Event
//! with a series count; dry runs make none; an API that hangs delays no
//! answer, the audit log has every denial, and the Events are written once
//! the API answers again.

use berth_e2e::admission::check;
use berth_e2e::client::{Client, Protocol};
use berth_e2e::fixtures;
use berth_e2e::kube::FakeKubeApi;
use berth_e2e::server::Server;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const SET: &str = "seed-pulsar-2.7.7";
/// A pod of the StatefulSet pulsar-bookie, and one of the Job
/// pulsar-bookie-init (a generateName only): both refused on /validate as
/// the chart wrote them (their images are not from the private registry).
const BOOKIE: &str = "004-pod-pulsar-bookie-0.json";
const BOOKIE_INIT: &str = "025-pod-pulsar-bookie-init.json";
const DRY_RUN: &str = "027-pod-pulsar-bookie-0-dryrun.json";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio")
}

/// `file`'s review with a uid of its own.
fn review(file: &str, uid: usize) -> Value {
    let mut review = fixtures::get(SET, file).review;
    review["request"]["uid"] = json!(format!("00000000-0000-4000-8000-{uid:012}"));
    review
}

/// Deny it, as the answer says; the denial's message.
async fn deny(client: &mut Client, review: &Value) -> String {
    let (status, body) = client.post("/validate", review.to_string()).await.expect("berth answers");
    assert_eq!(status, hyper::StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer = check(review, &body);
    assert!(!answer.allowed(), "the chart's own pod is refused on /validate");
    answer.message().to_owned()
}

/// The Events regarding `kind`/`name`, once `done` holds of them.
fn events_on(api: &FakeKubeApi, kind: &str, name: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events: Vec<Value> = api
            .all("Event")
            .into_iter()
            .filter(|e| e["regarding"]["kind"] == kind && e["regarding"]["name"] == name)
            .collect();
        if done(&events) {
            return events;
        }
        assert!(Instant::now() < deadline, "no Event as expected on {kind} {name} within 30s: {events:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn owner_of(file: &str) -> Value {
    fixtures::get(SET, file).object()["metadata"]["ownerReferences"]
        .as_array()
        .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
        .cloned()
        .expect("a controller")
}

fn count(event: &Value) -> u64 {
    event["series"]["count"].as_u64().unwrap_or(1)
}

fn denials_in(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"decision\":\"denied\"") && l.contains("\"dryRun\":false"))
        .map(|l| serde_json::from_str::<Value>(l).expect("a record")["uid"].as_str().unwrap_or("").to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

#[test]
fn a_refused_pod_is_an_event_on_its_statefulset_or_job_and_repeats_are_one_event_with_a_count() {
    let runtime = runtime();
    let api = runtime.block_on(FakeKubeApi::from_fixture(SET)).expect("cluster.yaml");
    let mut server = Server::builder().kube_api(&api).spawn();
    let message = runtime.block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        let message = deny(&mut client, &review(BOOKIE, 1)).await;
        deny(&mut client, &review(BOOKIE_INIT, 2)).await;
        // A dry run changes nothing, so there is nothing to explain.
        let (_, body) = client.post("/validate", review(DRY_RUN, 3).to_string()).await.expect("dry run");
        assert!(!check(&review(DRY_RUN, 3), &body).allowed());
        message
    });

    let statefulset = owner_of(BOOKIE);
    let events = events_on(&api, "StatefulSet", "pulsar-bookie", |e| !e.is_empty());
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event["apiVersion"], "events.k8s.io/v1");
    assert_eq!(event["metadata"]["namespace"], "pulsar");
    assert!(event["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("pulsar-bookie.")), "{event}");
    assert_eq!(event["reason"], "PolicyDenied");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["note"], message.as_str(), "the note is berth's message");
    assert_eq!(event["reportingController"], "berth.dev/admission");
    assert!(event["reportingInstance"].as_str().is_some_and(|i| !i.is_empty()));
    assert_eq!(event["regarding"]["uid"], statefulset["uid"], "kubectl describe matches on the uid");
    assert_eq!(event["regarding"]["apiVersion"], "apps/v1");
    assert_eq!((&event["related"]["kind"], &event["related"]["name"]), (&json!("Pod"), &json!("pulsar-bookie-0")));
    assert!(event["series"].is_null(), "one denial so far: {event}");

    let job = owner_of(BOOKIE_INIT);
    let on_job = events_on(&api, "Job", "pulsar-bookie-init", |e| !e.is_empty());
    assert_eq!(on_job[0]["regarding"]["uid"], job["uid"]);
    assert!(on_job[0]["related"].is_null(), "the Job's pod had no name yet");

    // Four more of the same: one Event, patched. Its count reaches the API
    // at the next interval or, here, at SIGTERM's flush.
    runtime.block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        for uid in 10..14 {
            deny(&mut client, &review(BOOKIE, uid)).await;
        }
    });
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(20)).success());
    let events = events_on(&api, "StatefulSet", "pulsar-bookie", |e| e.iter().any(|e| count(e) >= 5));
    assert_eq!(events.len(), 1, "repeats are one Event: {events:#?}");
    // The dry run was of the same pod: counted, it would make 6.
    assert_eq!(count(&events[0]), 5, "five denials, and the dry run is not one: {events:#?}");
    let series = &events[0]["series"];
    assert!(series["lastObservedTime"].as_str().is_some_and(|t| t > events[0]["eventTime"].as_str().unwrap_or("")));

    let writes: Vec<_> =
        api.requests().into_iter().filter(|r| r.path_only().starts_with("/apis/events.k8s.io/v1/")).collect();
    let posts = writes.iter().filter(|r| r.method == "POST").count();
    let patches: Vec<_> = writes.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(posts, 2, "one creation per Event (the StatefulSet's, the Job's): {writes:#?}");
    assert!(!patches.is_empty() && patches.len() <= 2, "four repeats, at most two patches: {writes:#?}");
    assert!(
        patches
            .iter()
            .all(|p| p.path_only().starts_with("/apis/events.k8s.io/v1/namespaces/pulsar/events/pulsar-bookie."))
    );
    assert!(writes.iter().all(|r| r.is_authenticated()));
    assert_eq!(api.all("Event").len(), 2, "the dry run made no Event of its own");
}

#[test]
fn an_api_that_hangs_delays_no_answer_and_the_events_follow_when_it_answers() {
    let runtime = runtime();
    let api = runtime.block_on(FakeKubeApi::from_fixture(SET)).expect("cluster.yaml");
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("audit.log");
    let server = Server::builder().kube_api(&api).arg("--audit-log").arg(log.display().to_string()).spawn();
    // Every request to the API now takes a minute: berth's writes of Events
    // hang (and time out), its owner watches are already open.
    api.set_delay(Duration::from_secs(60));
    let slowest = runtime.block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        let mut slowest = Duration::ZERO;
        for uid in 0..20 {
            let file = if uid % 2 == 0 { BOOKIE } else { BOOKIE_INIT };
            let started = Instant::now();
            deny(&mut client, &review(file, 100 + uid)).await;
            slowest = slowest.max(started.elapsed());
        }
        slowest
    });
    assert!(slowest < Duration::from_secs(3), "an answer took {slowest:?} while the API hung");
    assert_eq!(denials_in(&log), 20, "the audit log has every denial");
    assert!(api.all("Event").is_empty(), "nothing could be written yet");

    api.set_delay(Duration::ZERO);
    // The write in flight times out (10 s), berth backs off, and writes
    // both Events with every denial counted.
    let bookie = events_on(&api, "StatefulSet", "pulsar-bookie", |e| e.iter().any(|e| count(e) == 10));
    let job = events_on(&api, "Job", "pulsar-bookie-init", |e| e.iter().any(|e| count(e) == 10));
    assert_eq!((bookie.len(), job.len()), (1, 1));
    let metrics = server.metrics_text();
    assert!(metrics.contains("berth_event_writes_total{verb=\"create\",result=\"ok\"} 2"), "{metrics}");
    assert!(
        metrics.contains("berth_event_writes_total{verb=\"create\",result=\"error\"}"),
        "the hung write counted: {metrics}"
    );
}

#[test]
fn no_events_writes_nothing() {
    let runtime = runtime();
    let api = runtime.block_on(FakeKubeApi::from_fixture(SET)).expect("cluster.yaml");
    let server = Server::builder().kube_api(&api).arg("--no-events").spawn();
    runtime.block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        deny(&mut client, &review(BOOKIE, 1)).await;
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(api.requests().iter().all(|r| r.method == "GET"), "{:#?}", api.requests());
    assert!(api.all("Event").is_empty());
}
