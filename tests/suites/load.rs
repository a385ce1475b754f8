//! The load generator against berth as a process, for about a second per
//! run: every answer must pass its checks, and the counts must add up.
//! Nothing here asserts speed; BENCHMARKS.md shows the figures.
//!
//! Two requests in flight at most: each plugin call has a 100 ms wall-clock
//! deadline, and more evaluations than cores on a busy CI machine can trip
//! it (berth then answers as the policy's failure mode says, which these
//! checks would rightly count as failures).

use berth_e2e::server::Server;
use berth_load::{Expect, ExpectAllowed, ExpectPatch, Options, Protocol, Report, Reviews};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixture(path: &str) -> PathBuf {
    berth_e2e::fixtures::dir().join(path)
}

const BOOKIE: &str = "pulsar/reviews/005-pod-pulsar-bookie-0.json";

fn options(server: &Server, path: &str, protocol: Protocol, expect: Expect) -> Options {
    Options {
        target: format!("https://127.0.0.1:{}{path}", server.listen.port()).parse().expect("a loopback URL"),
        ca: server.ca.clone(),
        protocol,
        // h2: two streams on one connection; HTTP/1.1: one connection.
        connections: 1,
        streams: 2,
        rate: None,
        duration: Some(Duration::from_secs(1)),
        requests: None,
        warmup: Duration::from_millis(200),
        timeout: Duration::from_secs(10),
        expect,
    }
}

fn run(options: Options, reviews: &[PathBuf]) -> Report {
    let reviews = Reviews::load(reviews).expect("the fixtures load");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(berth_load::run(options, reviews)).expect("the run completes")
}

const MUTATED: Expect = Expect { allowed: ExpectAllowed::True, patch: ExpectPatch::Always };

#[test]
fn mutate_over_h2_and_http1_gets_only_good_answers() {
    let server = Server::start();
    for protocol in [Protocol::Http2, Protocol::Http1] {
        let report = run(options(&server, "/mutate", protocol, MUTATED), &[fixture(BOOKIE)]);
        assert_eq!(report.failed, 0, "{report}");
        assert!(report.ok >= 10, "a second of load gives at least a few answers: {report}");
        assert_eq!((report.allowed, report.patched, report.requests), (report.ok, report.ok, report.ok), "{report}");
        assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.max >= report.latency_ms.p99, "{report}");
        assert_eq!(report.protocol, if protocol == Protocol::Http2 { "h2" } else { "http/1.1" });
    }
}

#[test]
fn the_unmutated_bookie_is_denied_on_validate() {
    let server = Server::start();
    let expect = Expect { allowed: ExpectAllowed::False, patch: ExpectPatch::Never };
    let report = run(options(&server, "/validate", Protocol::Http2, expect), &[fixture(BOOKIE)]);
    assert_eq!(report.failed, 0, "{report}");
    assert!(report.denied >= 10 && report.allowed == 0, "{report}");
}

#[test]
fn a_wrong_expectation_fails_every_request_by_name() {
    let server = Server::start();
    let expect = Expect { allowed: ExpectAllowed::Any, patch: ExpectPatch::Never };
    let mut options = options(&server, "/mutate", Protocol::Http2, expect);
    options.duration = None;
    options.requests = Some(40);
    let report = run(options, &[fixture(BOOKIE)]);
    assert_eq!(report.ok, 0, "{report}");
    assert_eq!(report.failed, 40, "exactly the requests asked for: {report}");
    assert_eq!(report.failures.get("unexpected-patch"), Some(&40), "{report}");
}

#[test]
fn open_loop_sends_at_the_rate_and_replays_a_whole_directory() {
    let server = Server::start();
    let mut options = options(&server, "/mutate", Protocol::Http2, Expect::default());
    options.rate = Some(100.0);
    options.warmup = Duration::ZERO;
    let dir = fixture("pulsar/reviews");
    let report = run(options, std::slice::from_ref(&dir));
    assert_eq!(report.failed, 0, "{report}");
    // One second at 100/s: 100 requests were due, each sent once.
    assert!((99..=101).contains(&report.requests), "{report}");
    let files = std::fs::read_dir(&dir).expect("fixtures").count();
    assert_eq!(report.reviews.len(), files, "every review of the directory is replayed");
    assert!(report.patched > 0 && report.patched < report.ok, "pods are patched, a DELETE is not: {report}");
    assert!(Path::new(&report.reviews[0].path).exists());
}
