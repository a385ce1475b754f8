//! `berth serve` with the cluster behind it: the stand-in Kubernetes API
//! (tests/src/kube) serves a fixture set's cluster.yaml, and berth reads
//! owners, namespaces and StorageClasses from it through kube-rs, as in a
//! cluster. The `seed-` sets (the hand-made install berth replaces) are
//! admitted exactly as `berth eval --context` admits them; then the API
//! misbehaves: a missing owner, a slow API, an API that goes away.

use berth_e2e::admission::{Answer, check, with_object};
use berth_e2e::client::{Client, Protocol};
use berth_e2e::fixtures::{self, Fixture};
use berth_e2e::kube::{Away, FakeKubeApi};
use berth_e2e::server::Server;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const HARBOR: &str = "harbor.example.com/library/";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio")
}

async fn send(client: &mut Client, endpoint: &str, review: &Value) -> Answer {
    let (status, body) = client.post(endpoint, review.to_string()).await.expect("berth answers");
    assert_eq!(status, hyper::StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    check(review, &body)
}

fn reviews(set: &str) -> Vec<Fixture> {
    let mut all: Vec<Fixture> = fixtures::all().into_iter().filter(|f| f.chart() == set).collect();
    all.sort_by(|a, b| a.path.cmp(&b.path));
    all
}

/// What the default policy promises a pod of `app` (the fixture's own
/// checks in default_policy.rs compare whole objects; these are the parts
/// the issue names, over the wire).
fn assert_placed(name: &str, app: &str, pod: &Value) {
    let tolerations = pod["spec"]["tolerations"].as_array().expect("tolerations");
    assert_eq!(tolerations.len(), 3, "{name}: {tolerations:?}");
    assert_eq!(tolerations[2], json!({"key": "dedicated", "operator": "Equal", "value": app, "effect": "NoSchedule"}));
    let component = pod["metadata"]["labels"]["component"].as_str().unwrap_or_default();
    let pinned = !(app == "pulsar" && matches!(component, "zookeeper" | "bookie"));
    let selector = &pod["spec"]["nodeSelector"][format!("node-role.kubernetes.io/{app}")];
    assert_eq!(selector.as_str() == Some(app), pinned, "{name}: {}", pod["spec"]["nodeSelector"]);
    assert_eq!(pod["spec"]["imagePullSecrets"], json!([{"name": "regsecret"}]), "{name}");
    for list in ["initContainers", "containers"] {
        for container in pod["spec"][list].as_array().into_iter().flatten() {
            let image = container["image"].as_str().unwrap_or_default();
            assert!(image.starts_with(HARBOR), "{name}: {image}");
        }
    }
}

#[test]
fn the_seed_sets_through_berth_serve_with_their_cluster() {
    let runtime = runtime();
    for (set, app) in [("seed-pulsar-2.7.7", "pulsar"), ("seed-kafka-0.21.5", "kafka")] {
        let api = runtime.block_on(FakeKubeApi::from_fixture(set)).expect("cluster.yaml");
        let server = Server::builder().kube_api(&api).spawn();
        runtime.block_on(async {
            let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
            let (status, body) = client.get("/readyz").await.expect("readyz");
            assert_eq!(status, hyper::StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            let (mut pods, mut claims) = (0, 0);
            for fixture in reviews(set) {
                let name = fixture.file_name().to_owned();
                let answer = send(&mut client, "/mutate", &fixture.review).await;
                assert!(answer.allowed(), "{name}: {}", answer.message());
                if fixture.operation() != "CREATE" {
                    assert!(answer.patch.is_none(), "{name}");
                    continue;
                }
                if fixture.kind() == "Pod" {
                    assert_placed(&name, app, &answer.object);
                    let unmutated = send(&mut client, "/validate", &fixture.review).await;
                    assert!(!unmutated.allowed(), "{name}: /validate let the chart's own pod in");
                    pods += 1;
                } else {
                    assert_eq!(answer.object["spec"]["storageClassName"], "local-storage", "{name}");
                    claims += 1;
                }
                let again = with_object(&fixture.review, &answer.object);
                assert!(send(&mut client, "/mutate", &again).await.patch.is_none(), "{name}: reinvocation");
                let validated = send(&mut client, "/validate", &again).await;
                assert!(validated.allowed(), "{name}: {}", validated.message());
            }
            assert!(pods >= 5 && claims >= 4, "{set}: {pods} pods, {claims} claims");
        });

        // berth asked for metadata only, always with its token, and for
        // nothing but the kinds its policies read.
        let requests = api.requests();
        assert!(!requests.is_empty());
        for request in &requests {
            assert!(request.is_metadata_only(), "{set}: not metadata-only: {request:?}");
            assert!(request.is_authenticated(), "{set}: {request:?}");
            let path = request.path_only();
            assert!(
                [
                    "/jobs",
                    "/cronjobs",
                    "/replicasets",
                    "/deployments",
                    "/statefulsets",
                    "/daemonsets",
                    "/storageclasses"
                ]
                .iter()
                .any(|kind| path.contains(kind)),
                "{set}: berth asked for {path}, which the default policy does not need"
            );
            assert!(!path.contains("namespaces/") || path.starts_with("/apis/"), "{path}");
        }
    }
}

/// The Job pod of seed-pulsar, owned by a Job of another uid: the GET for
/// it is made, finds nothing of that uid, and the pod is not guessed at.
#[test]
fn an_owner_that_is_not_there_is_asked_for_once_and_then_not_guessed_at() {
    let runtime = runtime();
    let api = runtime.block_on(FakeKubeApi::from_fixture("seed-pulsar-2.7.7")).expect("cluster.yaml");
    let server = Server::builder().kube_api(&api).spawn();
    let mut review = fixtures::get("seed-pulsar-2.7.7", "025-pod-pulsar-bookie-init.json").review;
    review["request"]["object"]["metadata"]["ownerReferences"][0]["uid"] =
        json!("00000000-0000-0000-0000-00000000dead");
    review["request"]["object"]["metadata"]["ownerReferences"][0]["name"] = json!("a-job-since-deleted");
    api.clear_requests();
    runtime.block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        let answer = send(&mut client, "/mutate", &review).await;
        assert!(answer.allowed() && answer.patch.is_none(), "{:?} {}", answer.patch, answer.message());
    });
    let gets: Vec<_> =
        api.requests().into_iter().filter(|r| r.path_only().ends_with("/jobs/a-job-since-deleted")).collect();
    assert_eq!(gets.len(), 1, "one GET for the owner the cache lacks: {gets:?}");
    assert_eq!(gets[0].path_only(), "/apis/batch/v1/namespaces/pulsar/jobs/a-job-since-deleted");
    assert!(gets[0].is_metadata_only());
}

/// A slow API and then no API: owners already in memory still answer;
/// a lookup the API must answer fails the policy (failurePolicy Fail) with
/// the reason, in the response and the audit log, and never holds the
/// request.
#[test]
fn a_slow_or_absent_api_fails_the_policy_and_never_hangs() {
    let runtime = runtime();
    let api = runtime.block_on(FakeKubeApi::from_fixture("seed-pulsar-2.7.7")).expect("cluster.yaml");
    let server = Server::builder().kube_api(&api).spawn();
    let job_pod = fixtures::get("seed-pulsar-2.7.7", "026-pod-pulsar-pulsar-init.json").review;
    let mut orphan = job_pod.clone();
    orphan["request"]["uid"] = json!("orphan-uid");
    orphan["request"]["object"]["metadata"]["ownerReferences"][0]["uid"] =
        json!("00000000-0000-0000-0000-00000000beef");
    orphan["request"]["object"]["metadata"]["ownerReferences"][0]["name"] = json!("created-a-moment-ago");

    runtime.block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        // Slow: the owner GET is cut at its bound.
        api.set_delay(Duration::from_secs(4));
        let started = Instant::now();
        let answer = send(&mut client, "/mutate", &orphan).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "the request waited {took:?}");
        assert!(!answer.allowed());
        let message = answer.message();
        assert!(
            message.starts_with("policy pulsar-tolerations failed (context): could not read the cluster: looking up Job pulsar/created-a-moment-ago")
                && message.contains("did not answer within"),
            "{message}"
        );
        // The owner berth has in memory answers at once, slow API or not.
        let started = Instant::now();
        let cached = send(&mut client, "/mutate", &job_pod).await;
        assert!(cached.allowed() && cached.patch.is_some(), "{}", cached.message());
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        api.set_delay(Duration::ZERO);

        // Gone: the same.
        api.go_away(Away::Refused).await;
        let answer = send(&mut client, "/mutate", &orphan).await;
        assert!(!answer.allowed());
        assert!(answer.message().contains("looking up Job pulsar/created-a-moment-ago"), "{}", answer.message());
        let cached = send(&mut client, "/mutate", &job_pod).await;
        assert!(cached.allowed() && cached.patch.is_some(), "{}", cached.message());
        api.come_back().await;
    });

    // Every failed lookup is in the audit log, with its kind and reason.
    let log = server.dir().join("berth-audit.log");
    let records: Vec<Value> = std::fs::read_to_string(&log)
        .expect("the audit log")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON record"))
        .collect();
    let context: Vec<&Value> = records.iter().filter(|r| r["errorKind"] == "context").collect();
    assert!(context.len() >= 2, "{records:#?}");
    assert!(context.iter().all(|r| r["uid"] == "orphan-uid"));
    assert!(context[0]["message"].as_str().unwrap_or_default().contains("looking up Job"), "{:?}", context[0]);
}

/// On a cluster whose default StorageClass is `standard`, the Kafka claims
/// arrive with it (DefaultStorageClass ran first) and still end on
/// local-storage; berth learned the default from the StorageClasses.
#[test]
fn the_default_storage_class_is_learned_from_the_cluster() {
    let runtime = runtime();
    let api = runtime.block_on(FakeKubeApi::from_fixture("seed-kafka-0.21.5")).expect("cluster.yaml");
    api.apply(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/no-provisioner",
    }))
    .expect("a StorageClass");
    let server = Server::builder().kube_api(&api).spawn();
    runtime.block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        let mut claims = 0;
        for fixture in reviews("seed-kafka-0.21.5") {
            if fixture.kind() != "PersistentVolumeClaim" || fixture.operation() != "CREATE" {
                continue;
            }
            let mut review = fixture.review.clone();
            review["request"]["object"]["spec"]["storageClassName"] = json!("standard");
            let answer = send(&mut client, "/mutate", &review).await;
            assert_eq!(answer.object["spec"]["storageClassName"], "local-storage", "{}", fixture.file_name());
            claims += 1;
        }
        assert_eq!(claims, 4);
    });
}
