//! berth over real TLS, as kube-apiserver calls it: every fixture review over
//! HTTP/2 and HTTP/1.1, bad input, health, readiness and metrics.

use berth_e2e::admission::{check, with_object};
use berth_e2e::client::{Client, Protocol};
use berth_e2e::fixtures;
use berth_e2e::kube::{FakeKubeApi, load_cluster};
use berth_e2e::server::Server;
use hyper::StatusCode;
use serde_json::{Value, json};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio")
}

#[test]
fn every_fixture_over_h2_and_http1() {
    // The cluster every fixture set describes, served as the Kubernetes API
    // (the seed sets last: their Jobs share names with the 4.7.0 chart's,
    // and their pods need their own as owners).
    let runtime = runtime();
    let mut sets: Vec<String> = fixtures::all().iter().map(|f| f.chart().to_owned()).collect();
    sets.dedup();
    sets.sort_by_key(|set| set.starts_with("seed-"));
    let objects = sets
        .iter()
        .flat_map(|set| load_cluster(&fixtures::dir().join(set).join("cluster.yaml")).expect("cluster.yaml"))
        .collect();
    let api = runtime.block_on(FakeKubeApi::start(objects));
    let server = Server::builder().kube_api(&api).spawn();
    runtime.block_on(async {
        for protocol in [Protocol::Http2, Protocol::Http1] {
            let mut client = Client::connect(server.listen, &server.ca, protocol).await.expect("connect");
            let expected_alpn: &[u8] = if protocol == Protocol::Http2 { b"h2" } else { b"http/1.1" };
            assert_eq!(client.alpn.as_deref(), Some(expected_alpn), "ALPN must negotiate {protocol:?}");
            let mut patched = 0;
            for fixture in fixtures::all() {
                let (status, body) = client.post("/mutate", fixture.body.clone()).await.expect("mutate");
                assert_eq!(status, StatusCode::OK, "{}: {}", fixture.file_name(), String::from_utf8_lossy(&body));
                let answer = check(&fixture.review, &body);
                assert!(answer.allowed(), "{}: {}", fixture.file_name(), answer.response);
                if fixture.operation() != "CREATE" {
                    assert!(answer.patch.is_none(), "{}: UPDATE and DELETE get no patch", fixture.file_name());
                    continue;
                }
                if answer.patch.is_some() {
                    patched += 1;
                }
                // Reinvocation: the apiserver may call again with our own
                // output; an idempotent webhook answers with no patch.
                let again = with_object(&fixture.review, &answer.object);
                let (status, body) = client.post("/mutate", again.to_string()).await.expect("reinvoke");
                assert_eq!(status, StatusCode::OK);
                let second = check(&again, &body);
                assert!(
                    second.patch.is_none(),
                    "{}: second pass patched again: {:?}",
                    fixture.file_name(),
                    second.patch
                );
                // The validating webhook sees the final object and lets it in.
                let (status, body) = client.post("/validate", again.to_string()).await.expect("validate");
                assert_eq!(status, StatusCode::OK);
                let validated = check(&again, &body);
                assert!(validated.allowed(), "{}: final object denied: {}", fixture.file_name(), validated.message());
                assert!(validated.patch.is_none(), "/validate never patches");
            }
            assert!(patched >= 40, "the default policy should patch the charts' Pods and PVCs, patched {patched}");
        }
    });
}

#[test]
fn dry_run_is_mutated_exactly_like_the_real_request() {
    let server = Server::start();
    runtime().block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        for (chart, real, dry) in [
            ("pulsar", "005-pod-pulsar-bookie-0.json", "030-pod-pulsar-bookie-0-dryrun.json"),
            ("kafka-kraft", "002-pod-kafka-broker-0.json", "013-pod-kafka-broker-0-dryrun.json"),
        ] {
            let (real, dry) = (fixtures::get(chart, real), fixtures::get(chart, dry));
            assert_eq!(dry.request()["dryRun"], true);
            let (_, real_body) = client.post("/mutate", real.body.clone()).await.expect("real");
            let (_, dry_body) = client.post("/mutate", dry.body.clone()).await.expect("dry");
            let (real, dry) = (check(&real.review, &real_body), check(&dry.review, &dry_body));
            assert!(real.patch.is_some());
            assert_eq!(real.patch, dry.patch, "{chart}: dryRun must be mutated exactly as the real request");
        }
    });
}

fn review(request: Value) -> String {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).to_string()
}

#[test]
fn bad_input_gets_a_status_and_a_reason() {
    let server = Server::start();
    let fixture = fixtures::get("pulsar", "005-pod-pulsar-bookie-0.json");
    let request = fixture.request().clone();
    let mut no_uid = request.clone();
    no_uid.as_object_mut().expect("object").remove("uid");
    let mut wrong_version = fixture.review.clone();
    wrong_version["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut wrong_kind = fixture.review.clone();
    wrong_kind["kind"] = json!("ConversionReview");

    let cases: Vec<(&str, String, StatusCode, String)> = vec![
        (
            "not JSON",
            "{\"apiVersion\": ".into(),
            StatusCode::BAD_REQUEST,
            "invalid AdmissionReview: body is not JSON".into(),
        ),
        (
            "wrong apiVersion",
            wrong_version.to_string(),
            StatusCode::BAD_REQUEST,
            "apiVersion must be admission.k8s.io/v1, got \"admission.k8s.io/v1beta1\"".into(),
        ),
        (
            "wrong kind",
            wrong_kind.to_string(),
            StatusCode::BAD_REQUEST,
            "kind must be AdmissionReview, got \"ConversionReview\"".into(),
        ),
        (
            "no request",
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string(),
            StatusCode::BAD_REQUEST,
            "the review has no request".into(),
        ),
        ("no uid", review(no_uid), StatusCode::BAD_REQUEST, "the request has no uid".into()),
        (
            "over the body limit",
            // Just over; far larger bodies are the clients suite's.
            " ".repeat((3584 << 10) + (4 << 10)),
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("larger than the {} byte limit", 3584 << 10),
        ),
    ];
    runtime().block_on(async {
        for protocol in [Protocol::Http2, Protocol::Http1] {
            for (name, body, status, reason) in &cases {
                for endpoint in ["/mutate", "/validate"] {
                    let mut client = Client::connect(server.listen, &server.ca, protocol).await.expect("connect");
                    let (got, text) = client.post(endpoint, body.clone()).await.expect("answer");
                    let text = String::from_utf8_lossy(&text);
                    assert_eq!(got, *status, "{name} on {endpoint}: {text}");
                    assert!(text.contains(reason.as_str()), "{name} on {endpoint}: {text:?} should contain {reason:?}");
                }
            }
        }
        // Still serving after all of that.
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        let (status, _) = client.post("/mutate", fixture.body.clone()).await.expect("mutate");
        assert_eq!(status, StatusCode::OK);
    });
}

#[test]
fn a_review_above_axums_2mb_default_is_accepted() {
    let server = Server::start();
    let mut fixture = fixtures::get("pulsar", "005-pod-pulsar-bookie-0.json").review;
    // A 2.5 MB annotation: within what the apiserver sends, above axum's default.
    fixture["request"]["object"]["metadata"]["annotations"] = json!({"example.com/blob": "x".repeat(2_500_000)});
    runtime().block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        let (status, body) = client.post("/mutate", fixture.to_string()).await.expect("mutate");
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        assert!(check(&fixture, &body).patch.is_some());
    });
}

#[test]
fn health_readiness_and_metrics() {
    let server = Server::start();
    let fixture = fixtures::get("pulsar", "005-pod-pulsar-bookie-0.json");
    runtime().block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http1).await.expect("connect");
        assert_eq!(client.get("/healthz").await.expect("healthz").0, StatusCode::OK);
        let (status, body) = client.get("/readyz").await.expect("readyz");
        assert_eq!(status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&body).starts_with("ready"));
        client.post("/mutate", fixture.body.clone()).await.expect("mutate");
        client.post("/mutate", "garbage").await.expect("bad");
    });
    let metrics = server.metrics_text();
    for expected in [
        "berth_admission_requests_total{endpoint=\"mutate\",outcome=\"mutated\"} 1",
        "berth_admission_requests_total{endpoint=\"mutate\",outcome=\"bad_request\"} 1",
        "berth_policy_duration_seconds_count{policy=\"pulsar-tolerations\"} 1",
        "berth_admission_duration_seconds_bucket",
        "berth_policies_loaded",
    ] {
        assert!(metrics.contains(expected), "metrics lack {expected:?}:\n{metrics}");
    }
}

#[test]
fn the_readme_curl_command_gets_the_bundled_patch() {
    let server = Server::start();
    let fixture = fixtures::get("pulsar", "005-pod-pulsar-bookie-0.json");
    // As README.md shows it, with this server's port and CA.
    let output = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&server.ca)
        .args(["-H", "Content-Type: application/json", "--data"])
        .arg(format!("@{}", fixture.path.display()))
        .arg(format!("https://localhost:{}/mutate", server.listen.port()))
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "curl failed: {}", String::from_utf8_lossy(&output.stderr));
    let answer = check(&fixture.review, &output.stdout);
    let tolerations = answer.object["spec"]["tolerations"].as_array().expect("tolerations");
    assert!(tolerations.iter().any(|t| t["key"] == "dedicated" && t["value"] == "pulsar"), "{tolerations:?}");
}
