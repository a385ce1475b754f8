//! namespaceSelector on namespace labels: berth lists and watches Namespaces
//! from the Kubernetes API (here a stand-in) and matches on their labels.

use berth_e2e::admission::check;
use berth_e2e::client::{Client, Protocol};
use berth_e2e::fixtures;
use berth_e2e::kube::{FakeKubeApi, namespace};
use berth_e2e::server::Server;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const CONFIG: &str = "policies:
  - name: tolerations
    plugin: builtin:tolerations
    mode: mutate
    match:
      resources: [pods]
      namespaceSelector:
        matchLabels:
          berth.dev/enabled: \"true\"
    settings:
      tolerations:
        - {key: dedicated, operator: Equal, value: pulsar, effect: NoSchedule}
";

/// The bookie review, moved to `namespace`.
fn bookie_in(namespace: &str) -> Value {
    let mut review = fixtures::get("pulsar", "005-pod-pulsar-bookie-0.json").review;
    review["request"]["namespace"] = json!(namespace);
    review["request"]["object"]["metadata"]["namespace"] = json!(namespace);
    review
}

async fn patched(server: &Server, namespace: &str) -> bool {
    let review = bookie_in(namespace);
    let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
    let (_, body) = client.post("/mutate", review.to_string()).await.expect("mutate");
    check(&review, &body).patch.is_some()
}

#[test]
fn namespace_labels_are_listed_watched_and_matched() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    let api = runtime.block_on(FakeKubeApi::start(vec![
        namespace("pulsar", &[("berth.dev/enabled", "true")]),
        namespace("other", &[]),
    ]));
    let listed_at = api.resource_version();
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    let server = Server::builder().config(&config).kube_api(&api).spawn();

    runtime.block_on(async {
        assert!(patched(&server, "pulsar").await, "a namespace labelled berth.dev/enabled=true is selected");
        assert!(!patched(&server, "other").await, "an unlabelled namespace is not");
        assert!(!patched(&server, "unknown").await, "nor is one berth has not seen");

        // Label a namespace: the watch brings it in without a restart.
        let deadline = Instant::now() + Duration::from_secs(10);
        while api.watchers() == 0 {
            assert!(Instant::now() < deadline, "berth never started a watch");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        api.apply(namespace("other", &[("berth.dev/enabled", "true")])).expect("label other");
        while !patched(&server, "other").await {
            assert!(Instant::now() < deadline, "the labelled namespace was never selected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        api.delete("Namespace", None, "pulsar").expect("pulsar was there");
        while patched(&server, "pulsar").await {
            assert!(Instant::now() < deadline, "a deleted namespace was still selected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let requests = api.requests();
    assert!(requests.iter().all(|r| r.is_authenticated()), "{requests:?}");
    // The watch starts from the list's version.
    let from = listed_at.to_string();
    assert!(requests.iter().any(|r| r.is_watch() && r.query("resourceVersion") == Some(&from)), "{requests:?}");
}

#[test]
fn without_the_api_a_label_selector_is_refused_at_start_up() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    let (status, stderr) = Server::builder().config(&config).run_to_exit();
    assert!(!status.success());
    assert!(
        stderr
            .contains("policy \"tolerations\": match.namespaceSelector uses the namespace label \"berth.dev/enabled\""),
        "{stderr}"
    );
}

#[test]
fn until_its_caches_sync_berth_is_live_but_not_ready_and_lookups_fail_closed() {
    // A Kubernetes API that never answers: the policies load, but the
    // namespace cache never syncs.
    let dir = tempfile::tempdir().expect("tmp");
    let certs = berth::certs::generate(dir.path(), &["127.0.0.1".to_owned()]).expect("certs");
    let config = dir.path().join("berth.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    let server = Server::builder()
        .config(&config)
        .arg("--kube-api")
        .arg("https://127.0.0.1:1")
        .arg("--kube-ca")
        .arg(certs.ca_cert.display().to_string())
        .spawn_listening();
    server.wait_for_log("policies loaded; waiting for the Kubernetes API", Duration::from_secs(30));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    runtime.block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http1).await.expect("connect");
        let (status, _) = client.get("/healthz").await.expect("healthz");
        assert_eq!(status, hyper::StatusCode::OK, "live while waiting");
        let (status, body) = client.get("/readyz").await.expect("readyz");
        assert_eq!(status, hyper::StatusCode::SERVICE_UNAVAILABLE);
        let body = String::from_utf8_lossy(&body).into_owned();
        assert!(body.contains("waiting for the Kubernetes API: namespaces"), "{body}");
        // A request is answered, never held: the lookup it needs fails its
        // policy (failurePolicy Fail), with the reason.
        let review = bookie_in("pulsar");
        let started = Instant::now();
        let (status, body) = client.post("/mutate", review.to_string()).await.expect("mutate");
        assert_eq!(status, hyper::StatusCode::OK);
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        let answer = check(&review, &body);
        assert!(!answer.allowed());
        let message = answer.message();
        assert!(message.contains("failed (context)") && message.contains("namespaces cache has not synced"), "{message}");
    });
    server.wait_for_log("watch failed, retrying", Duration::from_secs(10));
    // SIGTERM before it was ever ready still ends it, cleanly.
    let mut server = server;
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(10)).success());
}

#[test]
fn the_namespace_api_is_asked_only_once_a_policy_needs_labels() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");
    let api = runtime.block_on(FakeKubeApi::start(vec![namespace("pulsar", &[("berth.dev/enabled", "true")])]));
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    // No namespaceSelector on labels: ready without the API (no RBAC needed).
    let unselective =
        CONFIG.replace("      namespaceSelector:\n        matchLabels:\n          berth.dev/enabled: \"true\"\n", "");
    assert_ne!(unselective, CONFIG);
    std::fs::write(&config, &unselective).expect("config");
    let server = Server::builder().config(&config).kube_api(&api).spawn();
    assert!(api.requests().is_empty(), "berth asked the API with no policy needing it");

    // A reload that selects by label starts the list and the watch.
    let tmp = config.with_extension("new");
    std::fs::write(&tmp, CONFIG).expect("config");
    std::fs::rename(&tmp, &config).expect("rename");
    server.wait_for_log("configuration reloaded", Duration::from_secs(10));
    runtime.block_on(async {
        assert!(patched(&server, "pulsar").await);
        assert!(!patched(&server, "other").await);
    });
    assert!(api.requests().iter().any(|r| r.path_only() == "/api/v1/namespaces" && !r.is_watch()));
}
