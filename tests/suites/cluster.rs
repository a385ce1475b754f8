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
        // nothing but the kinds its policies read; what it wrote was the
        // Events of the denials (suites/events.rs).
        let (writes, requests): (Vec<_>, Vec<_>) = api.requests().into_iter().partition(|r| r.method != "GET");
        assert!(!requests.is_empty());
        for write in &writes {
            assert!(write.path_only().starts_with("/apis/events.k8s.io/v1/namespaces/"), "{set}: {write:?}");
            assert!(write.is_authenticated(), "{set}: {write:?}");
        }
        assert!(!writes.is_empty(), "{set}: /validate's denials are Events");
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

/// A chart Job (`app: pulsar`, which the default policy's owner selector
/// reads) or another one, in namespace pulsar, with the metadata berth
/// must drop.
fn owner_job(index: usize, chart: bool) -> Value {
    let app = if chart { "pulsar" } else { "backup" };
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": format!("job-{index:05}"), "namespace": "pulsar", "uid": job_uid(index),
            "labels": {"app": app, "component": "init", "release": app},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(2000)},
            "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:metadata": {}}}],
        },
    })
}

fn job_uid(index: usize) -> String {
    format!("4a1f0000-0000-4000-8000-{index:012}")
}

/// The seed-pulsar Job pod (no labels of its own), owned by Job `index`.
fn pod_of_job(base: &Value, index: usize) -> Value {
    let mut review = base.clone();
    review["request"]["uid"] = json!(format!("pod-of-{index}"));
    let metadata = &mut review["request"]["object"]["metadata"];
    metadata["ownerReferences"][0]["name"] = json!(format!("job-{index:05}"));
    metadata["ownerReferences"][0]["uid"] = json!(job_uid(index));
    review
}

/// The value of one metric line (name with its labels), if present.
fn metric(server: &Server, series: &str) -> Option<f64> {
    server.metrics_text().lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

/// Single-object GETs of Jobs the API received.
fn job_gets(api: &FakeKubeApi) -> Vec<String> {
    api.requests()
        .into_iter()
        .filter(|r| r.method == "GET" && !r.is_watch() && r.path_only().contains("/jobs/"))
        .map(|r| r.path_only().to_owned())
        .collect()
}

/// The API holds far more owners than the cache's ceiling lets berth keep:
/// every review is still decided on the right owner (by GET for those left
/// out), the cache stays under its ceiling, and the metrics say so.
#[test]
fn past_the_owner_cache_ceiling_every_owner_is_still_answered_by_get() {
    const JOBS: usize = 400;
    const LIMIT: usize = 16 * 1024;
    let runtime = runtime();
    let jobs = (0..JOBS).map(|i| owner_job(i, i % 2 == 0)).collect();
    let api = runtime.block_on(FakeKubeApi::start(jobs));
    let server = Server::builder().kube_api(&api).arg("--owner-cache-limit").arg(LIMIT.to_string()).spawn();
    server.wait_for_log("the owner cache is at its ceiling", Duration::from_secs(10));
    let entries = metric(&server, "berth_owner_cache_entries ").expect("entries metric") as usize;
    assert!(entries > 0 && entries < JOBS, "{entries} owners kept of {JOBS}");
    assert_eq!(metric(&server, "berth_owner_cache_at_limit "), Some(1.0));
    let base = fixtures::get("seed-pulsar-2.7.7", "025-pod-pulsar-bookie-init.json").review;
    api.clear_requests();
    runtime.block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        for index in 0..JOBS {
            let answer = send(&mut client, "/mutate", &pod_of_job(&base, index)).await;
            assert!(answer.allowed(), "job {index}: {}", answer.message());
            assert_eq!(answer.patch.is_some(), index % 2 == 0, "job {index}: placed only if its Job is the chart's");
        }
    });
    let bytes = metric(&server, "berth_owner_cache_bytes ").expect("bytes metric");
    assert!(bytes > 0.0 && bytes <= LIMIT as f64, "{bytes} bytes held under a ceiling of {LIMIT}");
    let gets = job_gets(&api);
    let by_api = metric(&server, "berth_owner_lookups_total{source=\"api\"} ").unwrap_or(0.0) as usize;
    let by_cache = metric(&server, "berth_owner_lookups_total{source=\"cache\"} ").unwrap_or(0.0) as usize;
    assert_eq!(by_api, gets.len(), "the metric counts the GETs the API saw");
    assert_eq!(by_api + by_cache, JOBS, "one lookup per review");
    assert!(by_api >= JOBS - entries, "every owner left out was asked for: {by_api} GETs, {entries} kept");
}

/// A replica starting while owners come and go under it: the API is slow,
/// so its list takes several pages and seconds, and Jobs are deleted and
/// created meanwhile. Once it has caught up, no deleted Job still matches
/// (its pods are not placed) and no new one is missing from memory (its
/// pods are placed without a GET).
#[test]
fn a_restart_during_churn_neither_keeps_deleted_owners_nor_misses_new_ones() {
    const JOBS: usize = 2000;
    const CHURN: usize = 300;
    let runtime = runtime();
    let jobs = (0..JOBS).map(|i| owner_job(i, true)).collect();
    let api = runtime.block_on(FakeKubeApi::start(jobs));
    // Each page of 500 waits 300 ms: the list spans the churn below.
    api.set_delay(Duration::from_millis(300));
    let server = Server::builder().kube_api(&api).spawn_listening();
    let job_pages = |api: &FakeKubeApi| {
        let lists = api.requests().into_iter().filter(|r| !r.is_watch() && r.path_only().ends_with("/jobs"));
        lists.count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while job_pages(&api) == 0 {
        assert!(Instant::now() < deadline, "berth never listed Jobs");
        std::thread::sleep(Duration::from_millis(5));
    }
    for step in 0..CHURN {
        // Deleted: spread over the whole key range, so some go before
        // their page is read and some after.
        let gone = step * JOBS / CHURN;
        api.delete("Job", Some("pulsar"), &format!("job-{gone:05}")).expect("a Job to delete");
        api.apply(owner_job(JOBS + step, true)).expect("a new Job");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(job_pages(&api) > 1, "the list of Jobs went on while they changed");
    api.set_delay(Duration::ZERO);
    server.wait_for_log("ready", Duration::from_secs(30));
    // Caught up: the watch has delivered every change after the list.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, "berth_owner_cache_entries ") != Some(JOBS as f64) {
        assert!(
            Instant::now() < deadline,
            "berth holds {:?} owners, not {JOBS}",
            metric(&server, "berth_owner_cache_entries ")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let base = fixtures::get("seed-pulsar-2.7.7", "025-pod-pulsar-bookie-init.json").review;
    api.clear_requests();
    runtime.block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        for step in 0..CHURN {
            let new = send(&mut client, "/mutate", &pod_of_job(&base, JOBS + step)).await;
            assert!(new.allowed() && new.patch.is_some(), "new job {}: {}", JOBS + step, new.message());
        }
        assert!(job_gets(&api).is_empty(), "new owners were missing from memory: {:?}", job_gets(&api));
        for step in 0..CHURN {
            let gone = step * JOBS / CHURN;
            let answer = send(&mut client, "/mutate", &pod_of_job(&base, gone)).await;
            assert!(answer.allowed() && answer.patch.is_none(), "deleted job {gone} still matched");
        }
    });
    // The deleted ones were asked for (not in memory), and found gone.
    assert_eq!(job_gets(&api).len(), CHURN);
}
