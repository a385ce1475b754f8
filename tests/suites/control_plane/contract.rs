//! The contract with the real kube-apiserver, one test each: what kubectl
//! sends on a running pod (`set image`, `debug`), server-side dry run,
//! reinvocation after another webhook, berth down under `failurePolicy:
//! Fail`, berth restarted while a Job waits, and `helm upgrade berth`.

use base64::Engine as _;
use berth_e2e::control_plane::berth::{Berth, NAMESPACE as BERTH_NAMESPACE, OPT_IN};
use berth_e2e::control_plane::{ControlPlane, on_panic};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use std::process::Output;
use std::time::Duration;

fn pod(name: &str, labels: Value, image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": image}]}})
}

fn pulsar_pod(name: &str, image: &str) -> Value {
    pod(name, json!({"app": "pulsar", "component": "broker"}), image)
}

/// `kubectl create -f` of one object, with more arguments.
fn create(plane: &ControlPlane, namespace: &str, object: &Value, extra: &[&str]) -> Output {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), object.to_string()).expect("write");
    let path = file.path().display().to_string();
    let mut args = vec!["create", "-n", namespace, "-f", &path];
    args.extend_from_slice(extra);
    plane.kubectl(&args)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stored(plane: &ControlPlane, namespace: &str, name: &str) -> Option<Value> {
    let pods: Api<Pod> = Api::namespaced(plane.client(), namespace);
    plane.block_on(pods.get_opt(name)).expect("get pod").map(|p| serde_json::to_value(p).expect("json"))
}

fn wait_running(plane: &ControlPlane, namespace: &str, name: &str) {
    plane
        .wait_for(&format!("{namespace}/{name} Running"), Duration::from_secs(120), || {
            stored(plane, namespace, name).is_some_and(|p| p["status"]["phase"] == "Running")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", plane.kubectl_ok(&["get", "pods", "-n", namespace, "-o", "wide"])));
}

/// Every record of every replica's audit log (the claims' files).
fn audit_records(plane: &ControlPlane) -> Vec<Value> {
    let claims = plane.dir.join("claims").join(BERTH_NAMESPACE);
    let mut records = Vec::new();
    for claim in std::fs::read_dir(&claims).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(claim.path()).into_iter().flatten().flatten() {
            if file.file_name().to_string_lossy().starts_with("audit.log") {
                let text = std::fs::read_to_string(file.path()).unwrap_or_default();
                records.extend(text.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()));
            }
        }
    }
    records
}

/// kubectl's error for a denial by berth's validating webhook.
fn assert_denied_by_berth(output: &Output, image: &str) {
    let text = stderr(output);
    assert!(!output.status.success(), "admitted: {}", String::from_utf8_lossy(&output.stdout));
    assert!(
        text.contains("admission webhook") && text.contains("berth") && text.contains("denied the request"),
        "{text}"
    );
    assert!(text.contains(image), "berth's message names the image: {text}");
}

#[test]
fn kubectl_set_image_and_debug_are_rewritten_or_denied_with_berths_message() {
    let (plane, _berth) = Berth::shared();
    let ns = "contract-images";
    plane.namespace(ns, &[OPT_IN]);
    let created = create(plane, ns, &pulsar_pod("broker", "apachepulsar/pulsar:2.7.4"), &[]);
    assert!(created.status.success(), "{}", stderr(&created));
    wait_running(plane, ns, "broker");
    assert_eq!(
        stored(plane, ns, "broker").expect("pod")["spec"]["containers"][0]["image"],
        "harbor.example.com/library/apachepulsar/pulsar:2.7.4"
    );

    plane.kubectl_ok(&["set", "image", "-n", ns, "pod/broker", "main=apachepulsar/pulsar:2.7.5"]);
    assert_eq!(
        stored(plane, ns, "broker").expect("pod")["spec"]["containers"][0]["image"],
        "harbor.example.com/library/apachepulsar/pulsar:2.7.5"
    );
    let refused = plane.kubectl(&["set", "image", "-n", ns, "pod/broker", "main=quay.io/evil/pulsar:1"]);
    assert_denied_by_berth(&refused, "quay.io/evil/pulsar:1");

    // kubectl debug: an UPDATE of pods/ephemeralcontainers.
    plane.kubectl_ok(&["debug", "-n", ns, "broker", "--image=busybox:1.36", "-c", "debugger"]);
    let debugged = stored(plane, ns, "broker").expect("pod");
    // Docker Hub's official images keep their `library/` (deploy/policies/pulsar.yaml).
    assert_eq!(
        debugged["spec"]["ephemeralContainers"][0]["image"], "harbor.example.com/library/library/busybox:1.36",
        "{debugged}"
    );
    let refused_debug = plane.kubectl(&["debug", "-n", ns, "broker", "--image=quay.io/evil/tools:1", "-c", "evil"]);
    assert_denied_by_berth(&refused_debug, "quay.io/evil/tools:1");

    let records = audit_records(plane);
    for (image, sub_resource) in
        [("quay.io/evil/pulsar:1", None), ("quay.io/evil/tools:1", Some("ephemeralcontainers"))]
    {
        let found =
            records.iter().find(|r| r["namespace"] == ns && r["message"].as_str().is_some_and(|m| m.contains(image)));
        let record = found.unwrap_or_else(|| panic!("no audit record of {image} in {records:?}"));
        assert_eq!(record["user"], "kubernetes-admin", "{record}");
        assert_eq!(record["operation"], "UPDATE", "{record}");
        assert_eq!(record["subResource"].as_str(), sub_resource, "{record}");
    }
}

#[test]
fn a_server_side_dry_run_is_answered_audited_as_dry_run_and_nothing_is_stored() {
    let (plane, _berth) = Berth::shared();
    let ns = "contract-dry-run";
    plane.namespace(ns, &[OPT_IN]);
    let answered =
        create(plane, ns, &pulsar_pod("dry", "apachepulsar/pulsar:2.7.4"), &["--dry-run=server", "-o", "json"]);
    assert!(answered.status.success(), "{}", stderr(&answered));
    let object: Value = serde_json::from_slice(&answered.stdout).expect("kubectl prints the object");
    assert_eq!(object["spec"]["containers"][0]["image"], "harbor.example.com/library/apachepulsar/pulsar:2.7.4");
    let refused = create(plane, ns, &pulsar_pod("dry-evil", "quay.io/evil/pulsar:1"), &["--dry-run=server"]);
    assert_denied_by_berth(&refused, "quay.io/evil/pulsar:1");
    assert!(stored(plane, ns, "dry").is_none() && stored(plane, ns, "dry-evil").is_none(), "a dry run stored a pod");
    let records = audit_records(plane);
    let record = records
        .iter()
        .find(|r| r["namespace"] == ns && r["name"] == "dry-evil")
        .unwrap_or_else(|| panic!("no record: {records:?}"));
    assert_eq!(record["dryRun"], true, "{record}");
}

/// The test's own mutating webhook, called after berth (configurations run
/// in name order): it adds a Docker Hub sidecar, and the apiserver calls
/// berth again (its reinvocationPolicy is IfNeeded), which rewrites it.
#[test]
fn berth_is_reinvoked_after_another_webhook_adds_a_container() {
    let (plane, _berth) = Berth::shared();
    let ns = "contract-reinvocation";
    plane.namespace(ns, &[OPT_IN, ("e2e/sidecar", "true")]);
    let sidecar = sidecar::start(plane);
    let config = json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "zz-e2e-sidecar"},
        "webhooks": [{"name": "sidecar.e2e.test", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "reinvocationPolicy": "Never", "timeoutSeconds": 5,
            "clientConfig": {"url": sidecar.url, "caBundle": sidecar.ca_bundle},
            "namespaceSelector": {"matchLabels": {"e2e/sidecar": "true"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]}],
    });
    let file = plane.dir.join("sidecar-webhook.json");
    std::fs::write(&file, config.to_string()).expect("write");
    plane.kubectl_ok(&["apply", "-f", &file.display().to_string()]);
    // The apiserver's webhook informer takes a moment to see the new configuration.
    let mut stored_pod = None;
    let mut attempt = 0;
    plane
        .wait_for("the sidecar webhook to be called", Duration::from_secs(30), || {
            attempt += 1;
            let name = format!("reinvoked-{attempt}");
            let created = create(plane, ns, &pulsar_pod(&name, "apachepulsar/pulsar:2.7.4"), &[]);
            assert!(created.status.success(), "{}", stderr(&created));
            stored_pod = stored(plane, ns, &name);
            stored_pod.as_ref().is_some_and(|p| p["spec"]["containers"].as_array().is_some_and(|c| c.len() == 2))
        })
        .expect("the sidecar added");
    assert!(sidecar.calls() > 0, "the sidecar webhook was never called");
    plane.kubectl_ok(&["delete", "mutatingwebhookconfiguration", "zz-e2e-sidecar"]);
    let pod = stored_pod.expect("a pod");
    let images: Vec<&str> =
        pod["spec"]["containers"].as_array().expect("containers").iter().filter_map(|c| c["image"].as_str()).collect();
    assert_eq!(
        images,
        ["harbor.example.com/library/apachepulsar/pulsar:2.7.4", "harbor.example.com/library/fluent/fluent-bit:3.0"],
        "{pod}"
    );
}

/// With berth scaled to nothing, `failurePolicy: Fail` refuses a Pulsar
/// pod with the apiserver's own message; pods in berth's namespace and in
/// kube-system are never sent to berth, so berth's own pods can start.
#[test]
fn berth_down_refuses_pulsar_pods_but_not_its_own_namespace_or_kube_system() {
    let (plane, _berth) = Berth::exclusive();
    let ns = "contract-down";
    plane.namespace(ns, &[OPT_IN]);
    let _up_again = on_panic(|| scale(plane, 2));
    scale(plane, 0);
    let refused = create(plane, ns, &pulsar_pod("refused", "apachepulsar/pulsar:2.7.4"), &[]);
    let own: Vec<(&str, Output)> = [BERTH_NAMESPACE, "kube-system"]
        .into_iter()
        .map(|namespace| {
            (namespace, create(plane, namespace, &pulsar_pod("while-berth-is-down", "apachepulsar/pulsar:2.7.4"), &[]))
        })
        .collect();
    scale(plane, 2);
    let text = stderr(&refused);
    assert!(!refused.status.success(), "admitted with berth down");
    assert!(text.contains("failed calling webhook") && text.contains("berth"), "{text}");
    for (namespace, output) in own {
        assert!(output.status.success(), "{namespace}: {}", stderr(&output));
        plane.kubectl_ok(&["delete", "pod", "-n", namespace, "while-berth-is-down", "--wait=false"]);
    }
}

fn scale(plane: &ControlPlane, replicas: u32) {
    plane.kubectl_ok(&["scale", "statefulset/berth", "-n", BERTH_NAMESPACE, &format!("--replicas={replicas}")]);
    if replicas == 0 {
        let pods: Api<Pod> = Api::namespaced(plane.client(), BERTH_NAMESPACE);
        let params = ListParams::default().labels("app.kubernetes.io/name=berth");
        plane
            .wait_for("berth's pods gone", Duration::from_secs(120), || {
                plane.block_on(pods.list(&params)).is_ok_and(|l| l.items.is_empty())
            })
            .expect("berth scaled down");
    } else {
        plane.kubectl_ok(&["rollout", "status", "statefulset/berth", "-n", BERTH_NAMESPACE, "--timeout=300s"]);
        // Ready pods reach the EndpointSlice a moment later.
        std::thread::sleep(Duration::from_secs(2));
    }
}

mod sidecar {
    //! A mutating webhook of the test's own, by `url:` on the host's bridge
    //! address: it appends a Docker Hub sidecar to every pod it is sent.
    use super::*;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct Sidecar {
        pub url: String,
        pub ca_bundle: String,
        calls: Arc<AtomicUsize>,
    }

    impl Sidecar {
        pub fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    pub fn start(plane: &'static ControlPlane) -> Sidecar {
        let host = plane.network.host();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names.push(rcgen::SanType::IpAddress(std::net::IpAddr::V4(host)));
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("tls config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = plane.block_on(tokio::net::TcpListener::bind((host, 0))).expect("bind");
        let url = format!("https://{}/mutate", listener.local_addr().expect("addr"));
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        plane.runtime().spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, counter) = (acceptor.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            counter.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                answer(&body).to_string(),
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Sidecar { url, ca_bundle: base64::engine::general_purpose::STANDARD.encode(cert.pem()), calls }
    }

    fn answer(body: &[u8]) -> Value {
        let review: Value = serde_json::from_slice(body).unwrap_or_default();
        let request = &review["request"];
        let has = request["object"]["spec"]["containers"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "sidecar"));
        let mut response = json!({"uid": request["uid"], "allowed": true});
        if !has {
            let patch = json!([{"op": "add", "path": "/spec/containers/-", "value": {"name": "sidecar", "image": "fluent/fluent-bit:3.0"}}]);
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
    }
}

/// A Job whose pods carry no chart label (chart 2.7's init Jobs): only its
/// owner says it is Pulsar's.
fn unlabelled_job(name: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "labels": {"app": "pulsar", "component": "init"}},
        "spec": {"backoffLimit": 10, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "init", "image": "apachepulsar/pulsar-all:2.7.4"}]}}}})
}

/// The pods of a Job, by the label the Job controller gives them.
fn job_pods(plane: &ControlPlane, namespace: &str, job: &str) -> Vec<Value> {
    let pods: Api<Pod> = Api::namespaced(plane.client(), namespace);
    let params = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    plane
        .block_on(pods.list(&params))
        .map(|l| l.items.iter().map(|p| serde_json::to_value(p).expect("json")).collect())
        .unwrap_or_default()
}

fn tolerates(pod: &Value, app: &str) -> bool {
    pod["spec"]["tolerations"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["key"] == "dedicated" && t["value"] == app))
}

/// berth down while a Job is created (its pods are refused, the Job
/// controller retries), then up again: the Job's pods are matched by their
/// owner, which berth learns from a fresh list and watch under the chart's
/// RBAC. Once with paged lists, once with streaming lists (WatchList).
#[test]
fn after_a_restart_berth_matches_the_pods_of_a_job_created_while_it_was_down() {
    let (plane, _berth) = Berth::exclusive();
    let ns = "contract-restart";
    plane.namespace(ns, &[OPT_IN]);
    let up_again = on_panic(|| {
        scale(plane, 2);
        upgrade_berth(plane, &["--set", "serve.ownerCache.streamingList=false"]);
    });
    for (round, streaming) in [false, true].into_iter().enumerate() {
        let watch_lists_before = watch_lists_of_jobs(plane);
        if streaming {
            upgrade_berth(plane, &["--set", "serve.ownerCache.streamingList=true"]);
        }
        scale(plane, 0);
        let job = format!("init-{round}");
        let created = create(plane, ns, &unlabelled_job(&job), &[]);
        assert!(created.status.success(), "{}", stderr(&created));
        // The Job controller tries, and the apiserver refuses without berth.
        std::thread::sleep(Duration::from_secs(3));
        assert!(job_pods(plane, ns, &job).is_empty(), "a pod was admitted while berth was down");
        scale(plane, 2);
        plane
            .wait_for(&format!("{job}'s pod"), Duration::from_secs(240), || !job_pods(plane, ns, &job).is_empty())
            .unwrap_or_else(|e| panic!("{e}\n{}", plane.kubectl_ok(&["describe", "job", "-n", ns, &job])));
        for pod in job_pods(plane, ns, &job) {
            assert!(
                tolerates(&pod, "pulsar"),
                "streaming {streaming}: the Job's pod was not matched by its owner: {}",
                pod["spec"]
            );
            assert!(
                pod["spec"]["containers"][0]["image"].as_str().is_some_and(|i| i.starts_with("harbor.example.com/")),
                "{}",
                pod["spec"]
            );
        }
        // berth's replicas say how they last listed Jobs; in the streaming
        // round, kube-apiserver's count of watch lists of jobs says it
        // served them (another client's relist could add to it, never
        // take away).
        let mode = if streaming { "streaming" } else { "paged" };
        for replica in ["pod-berth-0", "pod-berth-1"] {
            let log = plane.log_of(replica);
            let last = log
                .lines()
                .rev()
                .find(|l| l.contains("cache synced from the Kubernetes API") && l.contains(r#""what":"jobs""#));
            assert!(
                last.is_some_and(|l| l.contains(&format!(r#""list":"{mode}""#))),
                "{replica} last listed jobs: {last:?}"
            );
        }
        if streaming {
            let after = watch_lists_of_jobs(plane);
            assert!(
                after > watch_lists_before,
                "no watch list of jobs reached kube-apiserver ({watch_lists_before} before, {after} after)"
            );
        }
    }
    upgrade_berth(plane, &["--set", "serve.ownerCache.streamingList=false"]);
    up_again.disarm();
}

/// Streaming lists (WatchList) of Jobs that kube-apiserver has served,
/// from its `apiserver_watch_list_duration_seconds` histogram.
fn watch_lists_of_jobs(plane: &ControlPlane) -> u64 {
    let metrics = plane.kubectl_ok(&["get", "--raw", "/metrics"]);
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("apiserver_watch_list_duration_seconds_count{") && line.contains(r#"resource="jobs""#)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `helm upgrade berth` with the chart's values (and these), returning
/// once every replica has reloaded.
fn upgrade_berth(plane: &ControlPlane, values: &[&str]) {
    Berth::get().upgrade(plane, values);
}

/// `helm upgrade berth` with another pull Secret, while pods are created
/// without pause: none is refused, and once both replicas have reloaded
/// the ConfigMap (their `/metrics` say so) every new pod gets the new
/// Secret. (The apiserver picks a replica per call, and each reloads on
/// its own, a second or two apart: in that window a pod gets either
/// Secret.)
#[test]
fn helm_upgrade_of_the_policy_reaches_new_pods_and_no_admission_fails_meanwhile() {
    let (plane, _berth) = Berth::exclusive();
    let ns = "contract-upgrade";
    plane.namespace(ns, &[OPT_IN]);
    let restore = on_panic(|| upgrade_berth(plane, &["--set", "policies.pullSecret=regsecret"]));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Dropped first: the creator stops before the policy is put back.
    let _stop_creating = on_panic({
        let stop = stop.clone();
        move || stop.store(true, std::sync::atomic::Ordering::SeqCst)
    });
    let creator = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let plane = ControlPlane::shared();
            let pods: Api<Pod> = Api::namespaced(plane.client(), ns);
            let mut results = Vec::new();
            let mut index = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let object: Pod =
                    serde_json::from_value(pulsar_pod(&format!("during-{index}"), "apachepulsar/pulsar:2.7.4"))
                        .expect("pod");
                let sent = std::time::Instant::now();
                let result = plane.block_on(pods.create(&kube::api::PostParams::default(), &object));
                results.push((
                    sent,
                    result.map(|p| {
                        let secrets = p.spec.and_then(|s| s.image_pull_secrets).unwrap_or_default();
                        secrets.into_iter().map(|s| s.name).collect::<Vec<_>>()
                    }),
                ));
                index += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            results
        })
    };
    // Pods are being created before the upgrade starts.
    std::thread::sleep(Duration::from_secs(2));
    upgrade_berth(plane, &["--set", "policies.pullSecret=regsecret-v2"]);
    let both_reloaded = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let results = creator.join().expect("the creator");
    upgrade_berth(plane, &["--set", "policies.pullSecret=regsecret"]);
    restore.disarm();
    let failures: Vec<String> = results.iter().filter_map(|(_, r)| r.as_ref().err()).map(ToString::to_string).collect();
    assert!(
        failures.is_empty(),
        "{} of {} admissions failed during the upgrade: {failures:?}",
        failures.len(),
        results.len()
    );
    let secrets = |after: bool| -> Vec<&Vec<String>> {
        results
            .iter()
            .filter(|(sent, _)| (*sent > both_reloaded) == after)
            .filter_map(|(_, r)| r.as_ref().ok())
            .collect()
    };
    let (before, after) = (secrets(false), secrets(true));
    assert!(!after.is_empty(), "no pod was created after the reload");
    assert!(after.iter().all(|s| s.contains(&"regsecret-v2".to_string())), "after the reload: {after:?}");
    assert!(
        before.iter().all(|s| s.contains(&"regsecret".to_string()) || s.contains(&"regsecret-v2".to_string())),
        "{before:?}"
    );
    assert!(
        before.first().is_some_and(|s| s.contains(&"regsecret".to_string())),
        "the first pod had the old Secret: {before:?}"
    );
}

/// `policies.kafka.helmReleases`: a release whose labels no rule knows is
/// Kafka's, and every pod of it is placed on the Kafka nodes.
#[test]
fn a_release_named_in_helm_releases_is_placed_whatever_its_labels() {
    let (plane, _berth) = Berth::exclusive();
    let ns = "streaming";
    plane.namespace(ns, &[OPT_IN]);
    let restore = on_panic(|| {
        let _ = plane.helm(berth_e2e::control_plane::Helm::V3, &["uninstall", "confluent", "-n", ns]);
        upgrade_berth(plane, &["--set-json", "policies.kafka.helmReleases=[]"]);
    });
    upgrade_berth(plane, &["--set", "policies.kafka.helmReleases={streaming/confluent}"]);
    // berth reloads its ConfigMap in place: wait until it answers with it.
    let release = json!({"meta.helm.sh/release-name": "confluent", "meta.helm.sh/release-namespace": ns});
    let mut probe = pod("probe", json!({"role": "probe"}), "confluentinc/cp-kafka:7.5.0");
    probe["metadata"]["annotations"] = release;
    plane
        .wait_for("berth to reload with helmReleases", Duration::from_secs(60), || {
            let output = create(plane, ns, &probe, &["--dry-run=server", "-o", "json"]);
            serde_json::from_slice::<Value>(&output.stdout).is_ok_and(|p| tolerates(&p, "kafka"))
        })
        .expect("berth reloaded the upgraded values");
    let chart = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(chart.path().join("templates")).expect("chart");
    std::fs::write(chart.path().join("Chart.yaml"), "apiVersion: v2\nname: confluent\nversion: 1.0.0\n")
        .expect("Chart.yaml");
    std::fs::write(chart.path().join("templates/workloads.yaml"), OTHER_LABELS_CHART).expect("template");
    plane.helm_ok(
        berth_e2e::control_plane::Helm::V3,
        &["install", "confluent", &chart.path().display().to_string(), "-n", ns],
    );
    let pods: Api<Pod> = Api::namespaced(plane.client(), ns);
    let settled = plane.wait_for("confluent's pods", Duration::from_secs(240), || {
        plane.block_on(pods.list(&ListParams::default())).is_ok_and(|l| {
            l.items.len() == 3 && l.items.iter().all(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
        })
    });
    let listed = plane.block_on(pods.list(&ListParams::default())).expect("pods").items;
    plane.helm_ok(berth_e2e::control_plane::Helm::V3, &["uninstall", "confluent", "-n", ns]);
    upgrade_berth(plane, &["--set-json", "policies.kafka.helmReleases=[]"]);
    restore.disarm();
    settled.unwrap_or_else(|e| panic!("{e}\n{listed:?}"));
    for pod in listed {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        assert!(node.starts_with("kafka-"), "{:?} on {node}", pod.metadata.name);
    }
}

/// A release with labels of its own: no `app: kafka`, no
/// `app.kubernetes.io/name: kafka`.
const OTHER_LABELS_CHART: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: broker
  labels: {tier: streaming, role: broker}
spec:
  replicas: 2
  serviceName: broker
  selector: {matchLabels: {role: broker}}
  template:
    metadata: {labels: {tier: streaming, role: broker}}
    spec:
      containers: [{name: broker, image: "confluentinc/cp-kafka:7.5.0"}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: schema-registry
  labels: {tier: streaming, role: registry}
spec:
  replicas: 1
  selector: {matchLabels: {role: registry}}
  template:
    metadata: {labels: {tier: streaming, role: registry}}
    spec:
      containers: [{name: registry, image: "confluentinc/cp-schema-registry:7.5.0"}]
"#;
