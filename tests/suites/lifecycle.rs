//! berth's life in a cluster: certificates rotated by cert-manager, the
//! configuration reloaded, SIGTERM on a rolling update. Each under load,
//! each with no request lost.

use berth_e2e::admission::check;
use berth_e2e::client::{Client, Exchange, Protocol};
use berth_e2e::fixtures::{self, Fixture};
use berth_e2e::server::Server;
use hyper::StatusCode;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio")
}

fn bookie() -> Fixture {
    fixtures::get("pulsar", "005-pod-pulsar-bookie-0.json")
}

/// Steady traffic on `connections` connections until stopped; counts
/// answers and failures. Every answer is checked as the apiserver would.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(server: &Server, ca: &Path, connections: usize) -> Load {
        let (stop, ok, failed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(std::sync::Mutex::new(Vec::new())),
        );
        let mut tasks = Vec::new();
        for i in 0..connections {
            let protocol = if i % 2 == 0 { Protocol::Http2 } else { Protocol::Http1 };
            let mut client = Client::connect(server.listen, ca, protocol).await.expect("connect");
            let (stop, ok, failed, fixture) = (stop.clone(), ok.clone(), failed.clone(), bookie());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client.post("/mutate", fixture.body.clone()).await {
                        Ok((StatusCode::OK, body)) => {
                            let answer = check(&fixture.review, &body);
                            if answer.allowed() && answer.patch.is_some() {
                                ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                failed.lock().expect("lock").push(answer.response.to_string());
                            }
                        }
                        Ok((status, body)) => {
                            failed.lock().expect("lock").push(format!("{status}: {}", String::from_utf8_lossy(&body)))
                        }
                        Err(err) => failed.lock().expect("lock").push(err.to_string()),
                    }
                }
            }));
        }
        Load { stop, ok, failed, tasks }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        (self.ok.load(Ordering::Relaxed), self.failed.lock().expect("lock").clone())
    }
}

fn install(from: &berth::certs::GeneratedCerts, dir: &Path) {
    // As a Secret volume update would: key and certificate each replaced whole.
    berth::certs::write_private(&dir.join("tls.key"), &std::fs::read(&from.key).expect("key")).expect("install key");
    berth::certs::write_private(&dir.join("tls.crt"), &std::fs::read(&from.cert).expect("cert")).expect("install cert");
}

fn der(pem_path: &Path) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(pem_path).expect("pem").next().expect("one cert").expect("cert").to_vec()
}

#[test]
fn certificate_rotation_keeps_connections_and_serves_the_new_certificate() {
    let dir = tempfile::tempdir().expect("tmp");
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let first = berth::certs::generate(&dir.path().join("first"), &names).expect("first certs");
    let second = berth::certs::generate(&dir.path().join("second"), &names).expect("second certs");
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).expect("live dir");
    install(&first, &live);
    // The caBundle during a rotation holds both CAs.
    let bundle = dir.path().join("bundle.crt");
    let both = [std::fs::read(&first.ca_cert).expect("ca1"), std::fs::read(&second.ca_cert).expect("ca2")].concat();
    std::fs::write(&bundle, both).expect("bundle");

    let server = Server::builder().tls_files(bundle.clone(), live.join("tls.crt"), live.join("tls.key")).spawn();
    runtime().block_on(async {
        let mut held = Vec::new();
        for protocol in [Protocol::Http2, Protocol::Http1, Protocol::Http2] {
            let client = Client::connect(server.listen, &bundle, protocol).await.expect("connect");
            assert_eq!(client.peer_certificate, der(&first.cert));
            held.push(client);
        }
        let load = Load::start(&server, &bundle, 4).await;
        tokio::time::sleep(Duration::from_millis(300)).await;

        install(&second, &live);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let client = Client::connect(server.listen, &bundle, Protocol::Http2).await.expect("connect");
            if client.peer_certificate == der(&second.cert) {
                break;
            }
            assert!(Instant::now() < deadline, "new connections still get the old certificate");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Connections opened before the rotation keep working.
        for client in &mut held {
            let (status, _) = client.post("/mutate", bookie().body).await.expect("held connection still serves");
            assert_eq!(status, StatusCode::OK);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (ok, failed) = load.finish().await;
        assert!(ok > 20, "load made too few requests: {ok}");
        assert!(failed.is_empty(), "requests failed during rotation: {failed:?}");
    });
    server.wait_for_log("serving certificate reloaded", Duration::from_secs(1));
}

fn tolerations_config(value: &str) -> String {
    format!(
        "policies:\n  - name: tolerations\n    plugin: builtin:tolerations\n    mode: mutate\n    match:\n      operations: [CREATE]\n      resources: [pods]\n    settings:\n      tolerations:\n        - {{key: dedicated, operator: Equal, value: {value}, effect: NoSchedule}}\n"
    )
}

fn replace_file(path: &Path, contents: &str) {
    // As a ConfigMap update would: the new file appears whole.
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

async fn toleration_value(server: &Server) -> String {
    let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
    let (_, body) = client.post("/mutate", bookie().body).await.expect("mutate");
    let answer = check(&bookie().review, &body);
    answer.object["spec"]["tolerations"][2]["value"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn configuration_reload_under_load_fails_no_request() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    std::fs::write(&config, tolerations_config("first")).expect("config");
    let server = Server::builder().config(&config).spawn();
    runtime().block_on(async {
        assert_eq!(toleration_value(&server).await, "first");
        let load = Load::start(&server, &server.ca, 4).await;

        replace_file(&config, &tolerations_config("second"));
        server.wait_for_log("configuration reloaded", Duration::from_secs(10));
        assert_eq!(toleration_value(&server).await, "second");

        // A bad configuration is refused; the good one keeps serving.
        replace_file(&config, &tolerations_config("second").replace("effect: NoSchedule", "effect: Sometimes"));
        let refused = server.wait_for_log("new configuration refused", Duration::from_secs(10));
        let message = refused["fields"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("tolerations") && message.contains("tolerations[0].effect"), "{message}");
        assert_eq!(toleration_value(&server).await, "second");

        // SIGHUP reloads too.
        replace_file(&config, &tolerations_config("third"));
        server.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        while toleration_value(&server).await != "third" {
            assert!(Instant::now() < deadline, "the third configuration never took effect");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let (ok, failed) = load.finish().await;
        assert!(ok > 20, "load made too few requests: {ok}");
        assert!(failed.is_empty(), "requests failed during reloads: {failed:?}");
    });
}

fn hostile_wasm() -> PathBuf {
    Path::new(berth::builtin::TEST_PLUGIN_DIR).join("berth_plugin_hostile.wasm")
}

#[test]
fn sigterm_drains_every_accepted_request() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    // Each review spends ~300 ms in a plugin that runs to its deadline and
    // is ignored, so SIGTERM always lands with requests in flight.
    let slow = format!(
        "policies:\n  - name: slow\n    plugin: {}\n    mode: mutate\n    timeout: 300ms\n    failurePolicy: Ignore\n    settings: {{behaviour: loop}}\n",
        hostile_wasm().display()
    );
    std::fs::write(&config, slow + &tolerations_config("pulsar").replace("policies:\n", "")).expect("config");
    let mut server = Server::builder().config(&config).arg("--workers").arg("16").spawn();
    let fixture = bookie();
    let (complete, broken, in_flight_at_term) = runtime().block_on(async {
        let complete = Arc::new(AtomicUsize::new(0));
        let broken = Arc::new(std::sync::Mutex::new(Vec::new()));
        let spans = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let protocol = if i % 2 == 0 { Protocol::Http2 } else { Protocol::Http1 };
            let mut client = Client::connect(server.listen, &server.ca, protocol).await.expect("connect");
            let (complete, broken, spans, fixture) = (complete.clone(), broken.clone(), spans.clone(), fixture.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let started = Instant::now();
                    match client.post_exchange("/mutate", fixture.body.clone()).await {
                        Exchange::Complete(StatusCode::OK, body) => {
                            let answer = check(&fixture.review, &body);
                            assert!(answer.allowed() && answer.patch.is_some(), "{}", answer.response);
                            complete.fetch_add(1, Ordering::Relaxed);
                            spans.lock().expect("lock").push((started, Instant::now()));
                        }
                        Exchange::Complete(status, body) => {
                            broken.lock().expect("lock").push(format!("{status}: {}", String::from_utf8_lossy(&body)))
                        }
                        Exchange::Broken(err) => broken.lock().expect("lock").push(err),
                        // The server stopped taking requests: this client is done.
                        Exchange::NotAccepted(_) => return,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let term = Instant::now();
        server.signal("TERM");
        for task in tasks {
            task.await.expect("client task");
        }
        let in_flight = spans.lock().expect("lock").iter().filter(|(start, end)| *start < term && *end > term).count();
        (complete.load(Ordering::Relaxed), broken.lock().expect("lock").clone(), in_flight)
    });
    let status = server.wait(Duration::from_secs(30));
    assert!(status.success(), "berth must exit 0 after draining, got {status}");
    assert!(broken.is_empty(), "accepted requests lost their answer: {broken:?}");
    assert!(complete >= 16, "too little traffic to mean anything: {complete}");
    assert!(in_flight_at_term >= 4, "expected requests in flight at SIGTERM to complete, {in_flight_at_term} did");
    server.wait_for_log("drained", Duration::from_secs(1));
}

#[test]
fn a_bad_setting_at_start_up_stops_berth_with_the_policy_and_the_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    std::fs::write(&config, tolerations_config("x").replace("effect: NoSchedule", "effect: Sometimes"))
        .expect("config");
    let (status, stderr) = Server::builder().config(&config).run_to_exit();
    assert!(!status.success());
    assert!(stderr.contains("policy \"tolerations\""), "{stderr}");
    assert!(
        stderr.contains("settings.tolerations[0].effect: must be NoSchedule, PreferNoSchedule or NoExecute"),
        "{stderr}"
    );

    std::fs::write(&config, tolerations_config("x").replace("    mode: mutate", "    mode: mutate\n    tmeout: 1s"))
        .expect("config");
    let (status, stderr) = Server::builder().config(&config).run_to_exit();
    assert!(!status.success());
    assert!(stderr.contains("unknown field `tmeout`") && stderr.contains("line 5"), "{stderr}");
}

#[test]
fn past_capacity_a_request_waits_a_bounded_time_then_gets_a_clear_503() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    let slow = format!(
        "policies:\n  - name: slow\n    plugin: {}\n    mode: mutate\n    timeout: 400ms\n    failurePolicy: Ignore\n    settings: {{behaviour: loop}}\n",
        hostile_wasm().display()
    );
    std::fs::write(&config, slow).expect("config");
    // One worker; a second review waits 100 ms for it, then is refused.
    let server =
        Server::builder().config(&config).arg("--workers").arg("1").arg("--queue-timeout").arg("100ms").spawn();
    let fixture = bookie();
    let statuses = runtime().block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
            let body = fixture.body.clone();
            tasks.push(tokio::spawn(async move { client.post("/mutate", body).await.expect("an answer") }));
        }
        let mut statuses = Vec::new();
        for task in tasks {
            let (status, body) = task.await.expect("task");
            statuses.push((status, String::from_utf8_lossy(&body).into_owned()));
        }
        statuses
    });
    let ok = statuses.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let refused: Vec<_> = statuses.iter().filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert_eq!(ok, 1, "{statuses:?}");
    assert_eq!(refused.len(), 2, "{statuses:?}");
    assert!(refused.iter().all(|(_, body)| body.contains("at capacity: no worker free within 100ms")), "{refused:?}");
    assert!(
        server.metrics_text().contains("berth_admission_requests_total{endpoint=\"mutate\",outcome=\"unavailable\"} 2")
    );
}

#[test]
fn a_reload_that_changes_the_audit_section_says_it_needs_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    std::fs::write(&config, tolerations_config("first")).expect("config");
    let server = Server::builder().config(&config).spawn();
    replace_file(&config, &(tolerations_config("second") + "audit:\n  recordMutations: true\n"));
    server.wait_for_log("the audit section changed", Duration::from_secs(10));
    server.wait_for_log("configuration reloaded", Duration::from_secs(10));
    runtime().block_on(async { assert_eq!(toleration_value(&server).await, "second") });
}

#[test]
fn a_client_that_sends_nothing_after_the_handshake_is_disconnected() {
    use tokio::io::AsyncReadExt;
    let server = Server::start();
    let closed_after = runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(server.listen).await.expect("connect");
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name").to_owned();
        let connector = berth_e2e::client::tls_connector(&server.ca, Protocol::Http1);
        let mut tls = connector.connect(name, tcp).await.expect("handshake");
        let started = Instant::now();
        let mut buf = [0u8; 64];
        // Say nothing: berth must hang up rather than hold the socket.
        let read = tokio::time::timeout(Duration::from_secs(30), tls.read(&mut buf)).await;
        assert!(read.is_ok(), "berth still holds an idle connection after 30 s");
        started.elapsed()
    });
    assert!(closed_after >= Duration::from_secs(5), "closed too early: {closed_after:?}");
}

#[test]
fn a_reload_waiting_for_its_plugin_file_happens_when_the_file_arrives() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("berth.yaml");
    std::fs::write(&config, tolerations_config("first")).expect("config");
    let server = Server::builder().config(&config).spawn();

    // The configuration names a plugin file that is not there yet (a volume
    // still syncing): refused, the old one keeps serving.
    replace_file(&config, &tolerations_config("second").replace("builtin:tolerations", "plugin.wasm"));
    server.wait_for_log("new configuration refused", Duration::from_secs(10));
    runtime().block_on(async { assert_eq!(toleration_value(&server).await, "first") });

    // The file arrives; the configuration itself does not change again.
    let wasm = Path::new(berth::builtin::TEST_PLUGIN_DIR).join("berth_plugin_tolerations.wasm");
    std::fs::copy(&wasm, dir.path().join("plugin.tmp")).expect("copy");
    std::fs::rename(dir.path().join("plugin.tmp"), dir.path().join("plugin.wasm")).expect("rename");
    let deadline = Instant::now() + Duration::from_secs(10);
    runtime().block_on(async {
        while toleration_value(&server).await != "second" {
            assert!(Instant::now() < deadline, "the plugin file arrived but the configuration never loaded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}
