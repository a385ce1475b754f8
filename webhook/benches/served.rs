//! What one review costs served, next to its parts, on the Pulsar bookie
//! Pod (005 fixture, 17 KB) and the embedded default policy (3 of its
//! mutating policies match the bookie):
//!
//! - `parse_review`: `Review::parse`
//! - `match_mutate`: choosing the mutating policies that apply
//!   (`PolicySet::matching`) on the parsed request
//! - `admit_mutate` / `admit_validate_mutated`: the whole chain in-process,
//!   no server (what `--bench evaluate` measures on a broker)
//! - `served_*`: berth's real server (`server::run`: TLS, HTTP/2, axum,
//!   the worker pool, the audit log) started in this process on 127.0.0.1,
//!   one review per iteration over one kept-open h2 connection, sent and
//!   answered in full; `served_floor` is a server with `policies: []`.
//!
//! `served_mutate` minus `admit_mutate` is what serving adds; the
//! client's side of TLS and h2 is in that gap too, as it is for any
//! caller on the same machine.
//!
//! `cargo bench -p berth --bench served` (about half a minute).

use berth::admission::{Endpoint, admit};
use berth::config::Mode;
use berth::review::Review;
use berth::runtime::RuntimeOptions;
use berth::server::{ServeOptions, TlsSource};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

const BOOKIE: &str = "005-pod-pulsar-bookie-0.json";

/// A berth server running in this process until the bench exits.
struct Served {
    addr: SocketAddr,
    ca: PathBuf,
}

/// A port nobody listens on now. `server::run` binds what it is given and
/// reports the bound address only in its log, so the bench picks one.
fn free_port() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("its address")
}

impl Served {
    /// Start `berth serve` with `config` (None: the embedded default) and
    /// wait until /readyz says it is ready.
    fn start(dir: &Path, config: Option<PathBuf>) -> Served {
        let addr = free_port();
        let tls_dir = dir.join("tls");
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) * 2;
        let options = ServeOptions {
            config: config.into_iter().collect(),
            listen: addr,
            metrics_listen: free_port(),
            tls: TlsSource::Generate { dir: tls_dir.clone() },
            max_body: 3584 << 10,
            body_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_streams: 100,
            client_ca: None,
            workers,
            queue_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(1),
            watch_interval: Duration::from_secs(1),
            runtime: RuntimeOptions {
                cache: common::cache(),
                max_instances: workers as u32 + 8,
                ..RuntimeOptions::default()
            },
            audit_log: Some(dir.join("audit.log")),
            require_pinned: false,
            kube: None,
            owner_cache: Default::default(),
            // No API to write Events to.
            events: false,
        };
        // As `berth serve` builds its runtime (cli/serve.rs).
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(workers + 4)
                .build()
                .expect("server runtime");
            if let Err(err) = runtime.block_on(berth::server::run(options)) {
                panic!("berth serve failed: {}", berth::error_chain(&err));
            }
        });
        let served = Served { addr, ca: tls_dir.join("ca.crt") };
        served.wait_ready();
        served
    }

    fn wait_ready(&self) {
        let client = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ready = self.ca.exists()
                && client.block_on(async {
                    let mut sender = self.connect().await.ok()?;
                    let request = hyper::Request::get("/readyz")
                        .header("host", "localhost")
                        .body(Full::new(Bytes::new()))
                        .ok()?;
                    let response = sender.send_request(request).await.ok()?;
                    Some(response.status() == 200)
                }) == Some(true);
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "berth was not ready within two minutes");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One h2 connection, verified against the generated CA.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Box<dyn std::error::Error>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca)? {
            roots.add(cert?)?;
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
            .await?;
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

/// POST one review and read the whole answer.
async fn post(sender: &mut SendRequest<Full<Bytes>>, path: &str, body: Bytes) -> (u16, Bytes) {
    let request = hyper::Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body))
        .expect("request");
    sender.ready().await.expect("connection open");
    let response = sender.send_request(request).await.expect("answered");
    let status = response.status().as_u16();
    (status, response.into_body().collect().await.expect("whole answer").to_bytes())
}

/// The answer's `response`, checked to be a 200 for this review.
fn response(status: u16, body: &[u8]) -> serde_json::Value {
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(body));
    let review: serde_json::Value = serde_json::from_slice(body).expect("a JSON answer");
    review["response"].clone()
}

fn bench(c: &mut Criterion) {
    let bookie = common::pulsar_review(BOOKIE);
    let runtime = common::runtime();
    let default = common::default_policy(&runtime);
    let bookie_mutated = common::mutated(&default, &bookie);

    let mut group = c.benchmark_group("served_bookie");

    group.bench_function("parse_review", |b| b.iter(|| Review::parse(black_box(&bookie)).expect("a review")));
    let parsed = Review::parse(&bookie).expect("a review");
    let matched = default.matching(Mode::Mutate, &parsed.request);
    assert!(!matched.is_empty(), "mutating policies match the bookie");
    eprintln!(
        "mutating policies matching the bookie: {}",
        matched.iter().map(|m| &*m.policy.name).collect::<Vec<_>>().join(", ")
    );
    group.bench_function("match_mutate", |b| b.iter(|| default.matching(Mode::Mutate, black_box(&parsed.request))));
    group.bench_function("admit_mutate", |b| {
        b.iter(|| admit(&default, Endpoint::Mutate, Review::parse(black_box(&bookie)).expect("review")))
    });
    group.bench_function("admit_validate_mutated", |b| {
        b.iter(|| admit(&default, Endpoint::Validate, Review::parse(black_box(&bookie_mutated)).expect("review")))
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let floor_config = dir.path().join("floor.yaml");
    std::fs::write(&floor_config, "policies: []\n").expect("floor config");
    let floor = Served::start(&dir.path().join("floor"), Some(floor_config));
    let served = Served::start(&dir.path().join("default"), None);

    let client = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
    let cases: [(&str, &Served, &str, &[u8], bool, bool); 4] = [
        // name, server, path, review, allowed, patched
        ("served_floor", &floor, "/mutate", bookie.as_slice(), true, false),
        ("served_mutate", &served, "/mutate", bookie.as_slice(), true, true),
        ("served_validate_mutated", &served, "/validate", bookie_mutated.as_slice(), true, false),
        ("served_validate_unmutated", &served, "/validate", bookie.as_slice(), false, false),
    ];
    for (name, server, path, review, allowed, patched) in cases {
        let mut sender = client.block_on(server.connect()).expect("connects");
        let body = Bytes::copy_from_slice(review);
        // The answer is what the case says, before timing it.
        let (status, answer) = client.block_on(post(&mut sender, path, body.clone()));
        let answer = response(status, &answer);
        assert_eq!(answer["allowed"], allowed, "{name}: {answer}");
        assert_eq!(answer["patch"].is_string(), patched, "{name}: {answer}");
        group.bench_function(name, |b| {
            b.iter(|| {
                let (status, answer) = client.block_on(post(&mut sender, path, body.clone()));
                assert_eq!(status, 200);
                answer
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
