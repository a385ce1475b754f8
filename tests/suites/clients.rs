//! The server's side of its clients (issue 12): mutual TLS with
//! `--client-ca` and its rotation, slow and greedy clients
//! (`--max-connections`, `--max-streams`, `--body-timeout`), and a body
//! over the limit answered 413 over HTTP/2 too.

use berth::certs::{IssueRequest, issue};
use berth_e2e::client::{Client, Exchange, Identity, Protocol, connect_tcp, tls_connector};
use berth_e2e::fixtures::{self, Fixture};
use berth_e2e::server::Server;
use berth_e2e::slow;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio")
}

fn bookie() -> Fixture {
    fixtures::get("pulsar", "005-pod-pulsar-bookie-0.json")
}

/// A CA with a serving certificate for localhost and a client certificate
/// for kube-apiserver, as `berth certs --client-cert` writes them.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client: Identity,
}

fn pki(dir: &Path) -> Pki {
    let request = IssueRequest {
        names: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        days: 1,
        renew: false,
        client: Some("kube-apiserver".to_owned()),
    };
    let issued = issue(dir, &request).expect("certificates");
    let (cert, key) = issued.client.expect("a client certificate");
    Pki { ca: issued.files.ca_cert, cert: issued.files.cert, key: issued.files.key, client: Identity { cert, key } }
}

/// Replace `path` whole, as a Secret's volume update does.
fn install(from: &Path, path: &Path) {
    let tmp = path.with_extension("new");
    std::fs::copy(from, &tmp).expect("copy");
    std::fs::rename(&tmp, path).expect("rename");
}

/// The value of one metric line (name with its labels), 0 if absent.
fn metric(server: &Server, series: &str) -> f64 {
    server
        .metrics_text()
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// POST the bookie Pod to /mutate, presenting `identity`: the status, or
/// why there was none.
async fn mutate_as(
    server: &Server,
    ca: &Path,
    protocol: Protocol,
    identity: Option<&Identity>,
) -> Result<StatusCode, String> {
    let mut client = Client::connect_with(server.listen, ca, protocol, "localhost", identity)
        .await
        .map_err(|err| format!("connect: {err}"))?;
    match client.post_exchange("/mutate", bookie().body).await {
        Exchange::Complete(status, _) => Ok(status),
        Exchange::NotAccepted(err) | Exchange::Broken(err) => Err(err),
    }
}

#[test]
fn client_ca_admits_its_clients_refuses_the_rest_and_follows_rotation() {
    let dir = tempfile::tempdir().expect("tmp");
    let (ours, theirs) = (pki(&dir.path().join("ours")), pki(&dir.path().join("theirs")));
    let client_ca = dir.path().join("client-ca.crt");
    install(&ours.ca, &client_ca);
    let server = Server::builder()
        .tls_files(ours.ca.clone(), ours.cert.clone(), ours.key.clone())
        .arg("--client-ca")
        .arg(client_ca.display().to_string())
        .spawn();
    let refused = r#"berth_connections_refused_total{reason="handshake_failed"}"#;
    runtime().block_on(async {
        for protocol in [Protocol::Http2, Protocol::Http1] {
            // Signed by the CA: admitted.
            let status = mutate_as(&server, &ours.ca, protocol, Some(&ours.client)).await;
            assert_eq!(status, Ok(StatusCode::OK), "{protocol:?}, our client");

            // No certificate: the admission routes refuse it with a reason;
            // the probes' routes answer (the kubelet has no certificate).
            let mut anonymous =
                Client::connect_as(server.listen, &ours.ca, protocol, "localhost").await.expect("connect");
            let (status, text) = anonymous.post("/mutate", bookie().body).await.expect("an answer");
            assert_eq!(status, StatusCode::FORBIDDEN, "{protocol:?}: {text:?}");
            assert!(String::from_utf8_lossy(&text).contains("client certificate signed by the --client-ca CA"));
            let (status, _) = anonymous.post("/validate", bookie().body).await.expect("an answer");
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert_eq!(anonymous.get("/healthz").await.expect("healthz").0, StatusCode::OK);
            assert_eq!(anonymous.get("/readyz").await.expect("readyz").0, StatusCode::OK);

            // A certificate of another CA: refused in the handshake, no
            // HTTP answer at all.
            let before = metric(&server, refused);
            let status = mutate_as(&server, &ours.ca, protocol, Some(&theirs.client)).await;
            assert!(status.is_err(), "{protocol:?}: a client of another CA got {status:?}");
            assert!(metric(&server, refused) > before, "the refused handshake is counted");
        }

        // Rotation: the client CA file now holds the other CA. A connection
        // verified before keeps working; new ones are checked against the
        // new CA, without a restart.
        let mut verified_before =
            Client::connect_with(server.listen, &ours.ca, Protocol::Http2, "localhost", Some(&ours.client))
                .await
                .expect("connect");
        install(&theirs.ca, &client_ca);
        server.wait_for_log("client CA reloaded", Duration::from_secs(10));
        let deadline = Instant::now() + Duration::from_secs(10);
        while mutate_as(&server, &ours.ca, Protocol::Http2, Some(&theirs.client)).await != Ok(StatusCode::OK) {
            assert!(Instant::now() < deadline, "the rotated CA's client was not admitted within 10 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = mutate_as(&server, &ours.ca, Protocol::Http2, Some(&ours.client)).await;
        assert!(status.is_err(), "the old CA's client after rotation got {status:?}");
        let (status, _) = verified_before.post("/mutate", bookie().body).await.expect("the open connection answers");
        assert_eq!(status, StatusCode::OK);

        // A client CA file that is no certificate is refused; the CA in
        // force stays.
        std::fs::write(&client_ca, "not a certificate\n").expect("write");
        server.wait_for_log("keeping the current client CA", Duration::from_secs(10));
        let status = mutate_as(&server, &ours.ca, Protocol::Http2, Some(&theirs.client)).await;
        assert_eq!(status, Ok(StatusCode::OK));
    });
}

#[test]
fn client_ca_that_is_no_ca_stops_berth_with_a_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let empty = dir.path().join("empty.crt");
    std::fs::write(&empty, "").expect("write");
    let (status, stderr) = Server::builder().arg("--client-ca").arg(empty.display().to_string()).run_to_exit();
    assert!(!status.success());
    assert!(stderr.contains("empty.crt holds no PEM certificate"), "{stderr}");
}

#[test]
fn a_body_that_trickles_gets_408_after_the_body_timeout() {
    let server = Server::builder().arg("--body-timeout").arg("1s").spawn();
    runtime().block_on(async {
        let body = bookie().body;
        for protocol in [Protocol::Http2, Protocol::Http1] {
            // A byte every 200 ms: always something, never the whole body.
            let trickle = slow::Trickle { protocol, pieces: body.len(), pause: Duration::from_millis(200) };
            let started = Instant::now();
            let answer = tokio::time::timeout(
                Duration::from_secs(10),
                slow::post(server.listen, &server.ca, "/mutate", Bytes::from(body.clone()), trickle),
            )
            .await
            .expect("an answer within 10 s");
            let elapsed = started.elapsed();
            let (status, text) = answer.unwrap_or_else(|err| panic!("{protocol:?}: no answer: {err}"));
            assert_eq!(status, StatusCode::REQUEST_TIMEOUT, "{protocol:?}: {text:?}");
            assert!(String::from_utf8_lossy(&text).contains("did not arrive within 1s (--body-timeout)"), "{text:?}");
            assert!(elapsed >= Duration::from_millis(900), "{protocol:?}: 408 after {elapsed:?}, before the timeout");
        }
        // A body sent at once is not affected.
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        assert_eq!(client.post("/mutate", body).await.expect("mutate").0, StatusCode::OK);
    });
}

/// A TLS connection to berth, as raw bytes.
async fn tls_stream(server: &Server, protocol: Protocol) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = connect_tcp(server.listen).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    tls_connector(&server.ca, protocol).connect(name, tcp).await.expect("TLS")
}

/// Hold one slow connection of kind `kind % 4` until `stop`: a TCP
/// connection that never starts TLS, a TLS one that never sends a byte,
/// HTTP/1.1 headers a byte at a time, or a body a byte at a time.
async fn slow_connection(server: &Server, kind: usize, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let headers = "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n";
    match kind % 4 {
        0 => {
            let tcp = TcpStream::connect(server.listen).await.expect("connect");
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                drop(tcp);
            })
        }
        1 => {
            let tls = tls_stream(server, Protocol::Http1).await;
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                drop(tls);
            })
        }
        slow => {
            let mut tls = tls_stream(server, Protocol::Http1).await;
            let (first, rest) = if slow == 2 {
                (String::new(), format!("{headers}content-length: 10\r\n\r\n"))
            } else {
                (format!("{headers}content-length: 100000\r\n\r\n"), " ".repeat(100_000))
            };
            tokio::spawn(async move {
                if tls.write_all(first.as_bytes()).await.is_err() {
                    return;
                }
                for byte in rest.bytes() {
                    if stop.load(Ordering::Relaxed) || tls.write_all(&[byte]).await.is_err() {
                        return;
                    }
                    let _ = tls.flush().await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        }
    }
}

/// One HTTP/2 connection opening streams as fast as it can (as many in
/// flight as berth lets it), reconnecting if berth ends it. Counts answers.
fn greedy_client(server: &Server, stop: Arc<AtomicBool>, answered: Arc<AtomicUsize>) -> tokio::task::JoinHandle<()> {
    let (addr, ca) = (server.listen, server.ca.clone());
    let body = Bytes::from(bookie().body);
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let Ok(tcp) = connect_tcp(addr).await else { continue };
            let name = ServerName::try_from("localhost").expect("name");
            let Ok(tls) = tls_connector(&ca, Protocol::Http2).connect(name, tcp).await else { continue };
            let Ok((sender, conn)) =
                hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(TokioExecutor::new(), TokioIo::new(tls))
                    .await
            else {
                continue;
            };
            let conn = tokio::spawn(conn);
            let in_flight = Arc::new(tokio::sync::Semaphore::new(1000));
            while !stop.load(Ordering::Relaxed) && !conn.is_finished() {
                let permit = in_flight.clone().acquire_owned().await.expect("semaphore");
                let (mut sender, body, answered) = (sender.clone(), body.clone(), answered.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let request = Request::post("/mutate")
                        .header("host", "localhost")
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .expect("request");
                    if let Ok(response) = sender.send_request(request).await
                        && response.into_body().collect().await.is_ok()
                    {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
    })
}

#[test]
fn valid_requests_are_answered_while_slow_and_greedy_clients_are_at_work() {
    let server = Server::start();
    let stop = Arc::new(AtomicBool::new(false));
    runtime().block_on(async {
        let mut slow = Vec::new();
        for kind in 0..200 {
            slow.push(slow_connection(&server, kind, stop.clone()).await);
        }
        let greedy_answered = Arc::new(AtomicUsize::new(0));
        let greedy = greedy_client(&server, stop.clone(), greedy_answered.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;

        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        let (mut worst, mut open) = (Duration::ZERO, 0.0_f64);
        for i in 0..40 {
            let started = Instant::now();
            let answer = tokio::time::timeout(Duration::from_secs(2), client.post("/mutate", bookie().body)).await;
            let elapsed = started.elapsed();
            let (status, text) = answer
                .unwrap_or_else(|_| panic!("request {i} not answered within 2 s"))
                .unwrap_or_else(|err| panic!("request {i}: {err}"));
            assert_eq!(status, StatusCode::OK, "request {i}: {}", String::from_utf8_lossy(&text));
            worst = worst.max(elapsed);
            if i % 10 == 0 {
                open = open.max(metric(&server, "berth_connections_open"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The clients were at work all along: the slow connections held
        // open (nothing of theirs times out within these seconds) and the
        // greedy one answered.
        assert!(open >= 200.0, "only {open} connections open: the slow clients were not holding theirs");
        let greedy_count = greedy_answered.load(Ordering::Relaxed);
        assert!(greedy_count > 0, "the greedy client got no answer");
        eprintln!("40 valid requests, the slowest in {worst:?}; the greedy client got {greedy_count} answers");
        stop.store(true, Ordering::Relaxed);
        greedy.abort();
        for task in slow {
            task.abort();
        }
    });
}

#[test]
fn past_max_connections_new_connections_wait_for_one_to_close() {
    let server = Server::builder().arg("--max-connections").arg("4").spawn();
    runtime().block_on(async {
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
            assert_eq!(client.post("/mutate", bookie().body).await.expect("mutate").0, StatusCode::OK);
            held.push(client);
        }
        let (addr, ca) = (server.listen, server.ca.clone());
        let mut fifth = tokio::spawn(async move {
            let mut client = Client::connect(addr, &ca, Protocol::Http2).await.expect("connect");
            client.post("/mutate", bookie().body).await.expect("mutate").0
        });
        // The fifth's TCP connection sits in the kernel's queue: no TLS
        // handshake, so no answer, while four are open.
        assert!(
            tokio::time::timeout(Duration::from_secs(1), &mut fifth).await.is_err(),
            "a fifth connection was served"
        );
        assert_eq!(metric(&server, "berth_connections_open"), 4.0);
        assert!(metric(&server, "berth_connections_waited_total") >= 1.0);
        drop(held.pop());
        let status = tokio::time::timeout(Duration::from_secs(10), fifth)
            .await
            .expect("served once a connection closed")
            .expect("task");
        assert_eq!(status, StatusCode::OK);
    });
}

#[test]
fn a_body_over_the_limit_gets_413_over_h2_and_http1() {
    let server = Server::start();
    // 6.5 MB: far over the 3.5 MiB limit, so most of it is still unsent
    // when berth answers.
    let body = " ".repeat(6_500_000);
    runtime().block_on(async {
        for protocol in [Protocol::Http2, Protocol::Http1] {
            let mut client = Client::connect(server.listen, &server.ca, protocol).await.expect("connect");
            let (status, text) = client.post("/mutate", body.clone()).await.expect("an answer");
            let text = String::from_utf8_lossy(&text);
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{protocol:?}: {text}");
            assert!(text.contains("larger than the 3670016 byte limit (--max-body-size)"), "{protocol:?}: {text}");
        }
        // The HTTP/2 connection is fine afterwards: the stream was reset,
        // not the connection.
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        assert_eq!(client.post("/mutate", body.clone()).await.expect("413").0, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(client.post("/mutate", bookie().body).await.expect("mutate").0, StatusCode::OK);
    });
    // curl, as the issue found it: over HTTP/2 it reads the 413 too.
    let file = server.dir().join("big.json");
    std::fs::write(&file, &body).expect("write");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(&server.ca)
        .args(["-H", "content-type: application/json", "-w", "\n%{http_version} %{http_code}", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(format!("https://localhost:{}/mutate", server.listen.port()))
        .output()
        .expect("curl runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "curl failed: {stderr}");
    assert!(stdout.ends_with("\n2 413"), "{stdout}");
    assert!(stdout.contains("--max-body-size"), "{stdout}");
}

/// With --client-ca, clients without a certificate cannot hold the
/// connections kube-apiserver needs: they get 32 slots of their own, past
/// which they are closed at once, and each lives 10 s at most. Meanwhile a
/// certified client is answered.
#[test]
fn connections_without_a_client_certificate_get_few_slots_and_a_short_life() {
    let dir = tempfile::tempdir().expect("tmp");
    let ours = pki(&dir.path().join("ours"));
    let server = Server::builder()
        .tls_files(ours.ca.clone(), ours.cert.clone(), ours.key.clone())
        .arg("--client-ca")
        .arg(ours.ca.display().to_string())
        .spawn();
    let capped = r#"berth_connections_refused_total{reason="uncertified_cap"}"#;
    runtime().block_on(async {
        // 40 idle HTTP/2 connections without a certificate, each proven
        // open by one answered probe.
        let mut idle = Vec::new();
        for _ in 0..40 {
            if let Ok(mut client) = Client::connect_as(server.listen, &ours.ca, Protocol::Http2, "localhost").await
                && client.get("/healthz").await.is_ok()
            {
                idle.push(client);
            }
        }
        assert_eq!(idle.len(), 32, "connections without a certificate beyond their 32 slots were served");
        assert!(metric(&server, capped) >= 8.0, "the refused ones are counted");
        let status = mutate_as(&server, &ours.ca, Protocol::Http2, Some(&ours.client)).await;
        assert_eq!(status, Ok(StatusCode::OK), "a certified client is answered while they idle");

        // Past their lifetime they are closed, and their slots are free again.
        tokio::time::sleep(Duration::from_secs(11)).await;
        for client in &mut idle {
            assert!(client.get("/healthz").await.is_err(), "a connection without a certificate outlived 10 s");
        }
        drop(idle);
        let mut fresh =
            Client::connect_as(server.listen, &ours.ca, Protocol::Http2, "localhost").await.expect("connect");
        assert_eq!(fresh.get("/healthz").await.expect("healthz").0, StatusCode::OK, "a slot is free again");
    });
}

/// The suites' client must not measure TCP instead of berth (issue 19):
/// with Nagle's algorithm on, each POST waits ~40 ms for berth's delayed
/// ACK. Its reviews are compared, interleaved on the same server, with the
/// same reviews over a connection this test opens with TCP_NODELAY set
/// itself: the floor, taken in the same run. With the delay, the client's
/// median is that floor plus 40 ms, tens of times the floor.
#[test]
fn the_test_client_does_not_wait_for_delayed_acks() {
    const REVIEWS: usize = 50;
    let server = Server::start();
    let body = Bytes::from(bookie().body);
    let (client, floor) = runtime().block_on(async {
        let mut client = Client::connect(server.listen, &server.ca, Protocol::Http2).await.expect("connect");
        let tcp = TcpStream::connect(server.listen).await.expect("connect");
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        let mut reference =
            Client::over(tcp, &server.ca, Protocol::Http2, "localhost", None).await.expect("reference connection");
        let mut times = (Vec::new(), Vec::new());
        // The first of each warms berth's instance pool; not counted.
        for round in 0..=REVIEWS {
            for (which, connection) in [&mut client, &mut reference].into_iter().enumerate() {
                let started = Instant::now();
                let (status, _) = connection.post("/mutate", body.clone()).await.expect("mutate");
                let took = started.elapsed();
                assert_eq!(status, StatusCode::OK);
                if round > 0 {
                    if which == 0 { times.0.push(took) } else { times.1.push(took) }
                }
            }
        }
        let median = |mut times: Vec<Duration>| {
            times.sort();
            times[times.len() / 2]
        };
        (median(times.0), median(times.1))
    });
    assert!(
        client < floor * 4,
        "the test client's /mutate median is {client:?}, the floor (a TCP_NODELAY connection) {floor:?}: \
         it waits for delayed ACKs"
    );
}
