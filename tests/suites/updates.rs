//! Running Pods updated, through `berth serve` over TLS with its embedded
//! default policy: `kubectl debug` (an UPDATE of the
//! `pods/ephemeralcontainers` sub-resource), `kubectl set image` and
//! `kubectl label` (UPDATEs of `pods`), each built from a chart fixture as
//! kube-apiserver sends it (`subResource`, `oldObject`, `UpdateOptions`).
//!
//! Each answer is checked as the apiserver would (the patch applied by the
//! suite's own RFC 6902 applier), and every UPDATE patch is checked to
//! touch only what the apiserver lets that update change: the fields fixed
//! once a Pod exists (nodeSelector, affinity, imagePullSecrets, volumes,
//! the service account) come out exactly as they went in.

use berth_e2e::admission::{Answer, check};
use berth_e2e::client::{Client, Protocol};
use berth_e2e::fixtures;
use berth_e2e::kube::FakeKubeApi;
use berth_e2e::server::Server;
use berth_sdk::apiserver::{self, PodUpdate};
use hyper::StatusCode;
use serde_json::{Value, json};

const HARBOR: &str = "harbor.example.com/library";
const DEBUGGER: &str = "debugger-7xk2p";

/// Fields an UPDATE patch must leave as the client sent them.
const FIXED: [&str; 7] = [
    "/spec/nodeSelector",
    "/spec/affinity",
    "/spec/imagePullSecrets",
    "/spec/volumes",
    "/spec/serviceAccountName",
    "/spec/serviceAccount",
    "/spec/tolerations",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio")
}

async fn send(client: &mut Client, endpoint: &str, review: &Value) -> Answer {
    let (status, body) = client.post(endpoint, review.to_string()).await.expect("berth answers");
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    check(review, &body)
}

fn warnings(answer: &Answer) -> Vec<&str> {
    answer.response["warnings"].as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

/// A chart's Pod as it runs. `created_by_berth`: admitted by the default
/// policy at CREATE (patched by berth's own /mutate, then stored); else the
/// stored Pod of the chart's UPDATE fixture, created before berth was
/// installed (Docker Hub images, no nodeSelector, no regsecret).
struct Chart {
    name: &'static str,
    create: &'static str,
    update: &'static str,
    /// A container in `spec.containers`, and its index there.
    container: (&'static str, usize),
    /// A Docker Hub short name for `kubectl set image`.
    new_image: &'static str,
    registry_policy: &'static str,
    pull_secrets_policy: &'static str,
}

const CHARTS: [Chart; 2] = [
    Chart {
        name: "pulsar",
        create: "005-pod-pulsar-bookie-0.json",
        update: "031-pod-pulsar-bookie-0-update.json",
        container: ("pulsar-bookie", 0),
        new_image: "apachepulsar/pulsar-all:9.9.9",
        registry_policy: "pulsar-allowed-registries",
        pull_secrets_policy: "pulsar-pull-secrets",
    },
    Chart {
        name: "kafka-kraft",
        create: "002-pod-kafka-broker-0.json",
        update: "014-pod-kafka-broker-0-update.json",
        container: ("kafka", 0),
        new_image: "bitnami/kafka:9.9.9",
        registry_policy: "kafka-allowed-registries",
        pull_secrets_policy: "kafka-pull-secrets",
    },
];

impl Chart {
    async fn running(&self, client: &mut Client, created_by_berth: bool) -> Value {
        if created_by_berth {
            let fixture = fixtures::get(self.name, self.create);
            let answer = send(client, "/mutate", &fixture.review).await;
            assert!(answer.patch.is_some(), "{}: the CREATE is patched", self.name);
            apiserver::stored(&answer.object)
        } else {
            let fixture = fixtures::get(self.name, self.update);
            let old = fixture.request()["oldObject"].clone();
            assert!(old["spec"].get("imagePullSecrets").is_none(), "{}: a pod from before berth", self.name);
            old
        }
    }
}

/// The answer of /mutate to `update`, checked: allowed, and a patch (if
/// any) of image replacements only, in the lists this update may change,
/// leaving every fixed field as the client sent it.
async fn mutate(client: &mut Client, update: &PodUpdate) -> Answer {
    let review = update.review();
    let answer = send(client, "/mutate", &review).await;
    assert!(answer.allowed(), "{}", answer.message());
    let allowed_lists: &[&str] = match update.sub_resource.as_deref() {
        Some("ephemeralcontainers") => &["ephemeralContainers"],
        _ => &["containers", "initContainers"],
    };
    for op in answer.patch.iter().flat_map(|p| p.as_array().expect("a patch is a list")) {
        let path = op["path"].as_str().expect("an op has a path");
        let segments: Vec<&str> = path.split('/').collect();
        let image_path = matches!(segments.as_slice(),
            ["", "spec", list, index, "image"] if allowed_lists.contains(list) && index.parse::<usize>().is_ok());
        assert!(
            op["op"] == "replace" && image_path,
            "an UPDATE patch may only replace images of {allowed_lists:?}: {op}"
        );
    }
    for field in FIXED {
        assert_eq!(answer.object.pointer(field), update.new.pointer(field), "{field} changed by the patch");
    }
    assert_eq!(answer.object["metadata"], update.new["metadata"], "metadata changed by the patch");
    answer
}

/// `/validate` on what the apiserver would store: `update` with `object`.
async fn validate(client: &mut Client, update: &PodUpdate, object: &Value) -> Answer {
    let answer = send(client, "/validate", &update.with_object(object).review()).await;
    assert!(answer.patch.is_none(), "/validate never patches");
    answer
}

#[test]
fn kubectl_debug_with_a_docker_hub_image_is_rewritten_and_then_passes_validate() {
    let server = Server::start();
    runtime().block_on(async {
        for protocol in [Protocol::Http2, Protocol::Http1] {
            let mut client = Client::connect(server.listen, &server.ca, protocol).await.expect("connect");
            for chart in &CHARTS {
                for created_by_berth in [true, false] {
                    let case = format!("{} {protocol:?}, created by berth: {created_by_berth}", chart.name);
                    let running = chart.running(&mut client, created_by_berth).await;
                    let update = PodUpdate::debug(&running, DEBUGGER, "busybox:1.36", chart.container.0);
                    let answer = mutate(&mut client, &update).await;
                    assert_eq!(
                        answer.patch,
                        Some(json!([{"op": "replace", "path": "/spec/ephemeralContainers/0/image",
                                     "value": format!("{HARBOR}/library/busybox:1.36")}])),
                        "{case}"
                    );
                    // The Pod's own images are as they were, Docker Hub ones included.
                    let mut expected = update.new.clone();
                    expected["spec"]["ephemeralContainers"][0]["image"] = format!("{HARBOR}/library/busybox:1.36").into();
                    assert_eq!(answer.object, expected, "{case}");

                    // regsecret cannot be added now: said where it matters.
                    let expected_warnings: Vec<String> = if created_by_berth {
                        Vec::new()
                    } else {
                        vec![format!(
                            "{}: imagePullSecrets is fixed once a pod exists: without regsecret, \"{DEBUGGER}\" may fail to pull",
                            chart.pull_secrets_policy
                        )]
                    };
                    assert_eq!(warnings(&answer), expected_warnings, "{case}");

                    let image = "docker.io/library/busybox:1.36";
                    judged_after_rewrite(&mut client, chart, &update, &answer, DEBUGGER, image, &case).await;
                }
            }
        }
    });
}

/// After berth rewrote `update`'s image into the registry: a second pass
/// changes nothing, /validate lets the rewritten pod in, and the update as
/// the user sent it (`image` in `container`) is denied, naming both.
async fn judged_after_rewrite(
    client: &mut Client,
    chart: &Chart,
    update: &PodUpdate,
    answer: &Answer,
    container: &str,
    image: &str,
    case: &str,
) {
    let again = mutate(client, &update.with_object(&answer.object)).await;
    assert!(again.patch.is_none(), "{case}: {:?}", again.patch);
    let validated = validate(client, update, &answer.object).await;
    assert!(validated.allowed(), "{case}: {}", validated.message());
    let denied = validate(client, update, &update.new).await;
    assert_eq!(denied.message(), not_allowed(chart, container, image), "{case}");
}

/// The registry policy's denial of `image` in `container`.
fn not_allowed(chart: &Chart, container: &str, image: &str) -> String {
    format!(
        "{}: container \"{container}\" image \"{image}\" is not from an allowed registry (harbor.example.com)",
        chart.registry_policy
    )
}

#[test]
fn kubectl_debug_from_another_registry_is_denied_naming_the_container_and_image() {
    let server = Server::start();
    runtime().block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        for chart in &CHARTS {
            for created_by_berth in [true, false] {
                let case = format!("{}, created by berth: {created_by_berth}", chart.name);
                let running = chart.running(&mut client, created_by_berth).await;
                let image = "quay.io/jetstack/cert-manager-ctl:v1.16.1";
                let update = PodUpdate::debug(&running, DEBUGGER, image, chart.container.0);
                // No rule covers quay.io: nothing to rewrite.
                let answer = mutate(&mut client, &update).await;
                assert!(answer.patch.is_none(), "{case}: {:?}", answer.patch);
                let denied = validate(&mut client, &update, &answer.object).await;
                assert!(!denied.allowed(), "{case}");
                assert_eq!(denied.response["status"]["code"], 403, "{case}");
                assert_eq!(denied.message(), not_allowed(chart, DEBUGGER, image), "{case}");
            }
        }
    });
}

#[test]
fn kubectl_set_image_to_docker_hub_is_rewritten_and_then_passes_validate() {
    let server = Server::start();
    runtime().block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        for chart in &CHARTS {
            for created_by_berth in [true, false] {
                let case = format!("{}, created by berth: {created_by_berth}", chart.name);
                let running = chart.running(&mut client, created_by_berth).await;
                let (container, index) = chart.container;
                let image = chart.new_image;
                let update = PodUpdate::set_image(&running, container, image);
                let answer = mutate(&mut client, &update).await;
                assert_eq!(
                    answer.patch,
                    Some(json!([{"op": "replace", "path": format!("/spec/containers/{index}/image"),
                                 "value": format!("{HARBOR}/{image}")}])),
                    "{case}"
                );
                // Only the container the user changed: an init container
                // still on Docker Hub (a pod from before berth) is left.
                let mut expected = update.new.clone();
                expected["spec"]["containers"][index]["image"] = format!("{HARBOR}/{image}").into();
                assert_eq!(answer.object, expected, "{case}");
                let image = format!("docker.io/{image}");
                judged_after_rewrite(&mut client, chart, &update, &answer, container, &image, &case).await;
            }
        }
    });
}

#[test]
fn a_label_update_is_allowed_by_both_endpoints_with_no_patch() {
    let server = Server::start();
    runtime().block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        for chart in &CHARTS {
            // The fixture's own `kubectl label`, as recorded, on a pod from
            // before berth: Docker Hub images, no toleration, no nodeSelector.
            let fixture = fixtures::get(chart.name, chart.update);
            assert_eq!(fixture.operation(), "UPDATE");
            for endpoint in ["/mutate", "/validate"] {
                let answer = send(&mut client, endpoint, &fixture.review).await;
                assert!(answer.allowed(), "{} {endpoint}: {}", chart.name, answer.message());
                assert!(answer.patch.is_none(), "{} {endpoint}: {:?}", chart.name, answer.patch);
                assert_eq!(warnings(&answer), Vec::<&str>::new(), "{} {endpoint}", chart.name);
            }
            // And built here with UpdateOptions, on both kinds of pod.
            for created_by_berth in [true, false] {
                let running = chart.running(&mut client, created_by_berth).await;
                let update = PodUpdate::label(&running, "maintenance", "planned");
                let answer = mutate(&mut client, &update).await;
                assert!(answer.patch.is_none(), "{}: {:?}", chart.name, answer.patch);
                assert_eq!(warnings(&answer), Vec::<&str>::new(), "{}", chart.name);
                let validated = validate(&mut client, &update, &update.new).await;
                assert!(validated.allowed(), "{}: {}", chart.name, validated.message());
            }
        }
    });
}

#[test]
fn an_update_that_drops_the_chart_label_is_still_judged() {
    // A pod left with no chart label at all is judged by its owner's too:
    // berth reads the owners from the (stand-in) Kubernetes API.
    let runtime = runtime();
    let api = runtime.block_on(FakeKubeApi::from_fixture(CHARTS[0].name)).expect("the fixture's cluster.yaml");
    let server = Server::builder().kube_api(&api).spawn();
    runtime.block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        let chart = &CHARTS[0];
        let running = chart.running(&mut client, true).await;
        // `kubectl edit`: the image to Docker Hub and `app: pulsar` removed,
        // in one update. The policies select on the old labels too.
        let mut update = PodUpdate::set_image(&running, chart.container.0, chart.new_image);
        update.new["metadata"]["labels"].as_object_mut().expect("labels").remove("app");
        let answer = mutate(&mut client, &update).await;
        let rewritten = format!("{HARBOR}/{}", chart.new_image);
        assert_eq!(
            answer.patch,
            Some(json!([{"op": "replace", "path": "/spec/containers/0/image", "value": rewritten}]))
        );
        let denied = validate(&mut client, &update, &update.new).await;
        assert!(denied.message().starts_with(&format!("{}: container", chart.registry_policy)), "{}", denied.message());
        assert!(validate(&mut client, &update, &answer.object).await.allowed());
    });
}

#[test]
fn updates_of_pods_outside_the_charts_are_left_alone() {
    let server = Server::start();
    runtime().block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        for chart in &CHARTS {
            let mut running = chart.running(&mut client, false).await;
            running["metadata"]["labels"] = json!({"app": "nginx", "app.kubernetes.io/name": "nginx"});
            for update in [
                PodUpdate::debug(&running, DEBUGGER, "busybox:1.36", chart.container.0),
                PodUpdate::set_image(&running, chart.container.0, "nginx:1.27"),
            ] {
                let answer = mutate(&mut client, &update).await;
                assert!(answer.patch.is_none(), "{}: {:?}", chart.name, answer.patch);
                assert!(validate(&mut client, &update, &update.new).await.allowed(), "{}", chart.name);
            }
        }
    });
}

#[test]
fn berth_eval_judges_an_update_the_same_way() {
    let dir = tempfile::tempdir().expect("tmp");
    let running = fixtures::get("pulsar", "031-pod-pulsar-bookie-0-update.json").request()["oldObject"].clone();
    let update = PodUpdate::debug(&running, DEBUGGER, "busybox:1.36", "pulsar-bookie");
    let file = dir.path().join("debug.json");
    std::fs::write(&file, update.review().to_string()).expect("write");
    let cache = berth_e2e::server::cache_dir().display().to_string();
    let file = file.display().to_string();

    let (status, stdout, stderr) = Server::cli(&["eval", "--cache-dir", &cache, &file]);
    assert!(status.success(), "{stderr}");
    let answer = check(&update.review(), stdout.as_bytes());
    assert_eq!(answer.object["spec"]["ephemeralContainers"][0]["image"], format!("{HARBOR}/library/busybox:1.36"));

    let (status, stdout, stderr) = Server::cli(&["eval", "--cache-dir", &cache, "--endpoint", "validate", &file]);
    assert!(status.success(), "{stderr}");
    let answer = check(&update.review(), stdout.as_bytes());
    assert!(!answer.allowed());
    assert!(
        answer.message().starts_with(&format!("pulsar-allowed-registries: container \"{DEBUGGER}\"")),
        "{}",
        answer.message()
    );
}
