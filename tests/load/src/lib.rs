//! berth-load: calls an admission webhook the way kube-apiserver does (TLS
//! verified against a CA bundle, HTTP/2 multiplexed or HTTP/1.1 kept
//! alive), replays AdmissionReviews with a fresh uid each, checks every
//! answer, and reports throughput and latency.
//!
//! Two ways to drive load:
//! - closed loop: every worker sends its next review as soon as the last
//!   one is answered; the maximum throughput;
//! - open loop: reviews are due at a fixed rate whatever the server does,
//!   and latency is measured from when each was due, not from when it was
//!   sent, so a stalled server shows in the figures (no coordinated
//!   omission).
//!
//! It only ever targets loopback addresses: it is a bench tool, not a way
//! to load someone else's server.

pub mod check;
pub mod client;
pub mod report;
pub mod reviews;
mod run;

pub use check::{Expect, ExpectAllowed, ExpectPatch, Failure};
pub use client::{Protocol, Target, TargetError};
pub use report::Report;
pub use reviews::{Reviews, ReviewsError};
pub use run::{RunError, run};

use std::path::PathBuf;
use std::time::Duration;

/// What to send, where, and how hard.
#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    /// The CA bundle that signed the webhook's certificate (its caBundle).
    pub ca: PathBuf,
    pub protocol: Protocol,
    pub connections: usize,
    /// Requests in flight per connection. HTTP/1.1 carries one at a time,
    /// so there it is always 1.
    pub streams: usize,
    /// Reviews per second, open loop; `None` is closed loop.
    pub rate: Option<f64>,
    /// Stop sending after this long (after the warm-up).
    pub duration: Option<Duration>,
    /// Stop after this many measured requests.
    pub requests: Option<u64>,
    /// Sent and checked but not counted, before the measurement starts.
    pub warmup: Duration,
    /// One request's limit; past it the request counts as an error.
    pub timeout: Duration,
    pub expect: Expect,
}

impl Options {
    /// Requests in flight at most: the workers.
    pub fn workers(&self) -> usize {
        let streams = match self.protocol {
            Protocol::Http2 => self.streams,
            Protocol::Http1 => 1,
        };
        self.connections.max(1) * streams.max(1)
    }
}
