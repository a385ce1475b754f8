//! What a run measured: counts, throughput, latency percentiles
//! (HdrHistogram) and failures by kind, as a table and as JSON.

use crate::check::{Failure, Verdict};
use crate::reviews::Reviews;
use crate::{Options, Protocol};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Latencies are recorded in microseconds, 1 µs to 60 s, 3 significant digits.
const HIGHEST_MICROS: u64 = 60_000_000;

/// One worker's tally; merged at the end so workers share nothing hot.
pub struct Stats {
    latency: Histogram<u64>,
    allowed: u64,
    denied: u64,
    patched: u64,
    failures: BTreeMap<Failure, u64>,
    /// The first answer of each kind of failure that had one.
    samples: BTreeMap<Failure, String>,
}

impl Stats {
    pub fn new() -> Self {
        let latency = Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).expect("constant bounds hdrhistogram accepts");
        Self { latency, allowed: 0, denied: 0, patched: 0, failures: BTreeMap::new(), samples: BTreeMap::new() }
    }

    pub fn ok(&mut self, latency: Duration, verdict: Verdict) {
        let micros = (latency.as_micros() as u64).clamp(1, HIGHEST_MICROS);
        self.latency.saturating_record(micros);
        if verdict.allowed {
            self.allowed += 1;
        } else {
            self.denied += 1;
        }
        if verdict.patched {
            self.patched += 1;
        }
    }

    pub fn fail(&mut self, failure: Failure) {
        *self.failures.entry(failure).or_default() += 1;
    }

    pub fn fail_with(&mut self, failure: Failure, sample: Option<String>) {
        self.fail(failure);
        if let Some(sample) = sample {
            self.samples.entry(failure).or_insert(sample);
        }
    }

    pub fn merge(&mut self, other: Stats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.allowed += other.allowed;
        self.denied += other.denied;
        self.patched += other.patched;
        for (failure, count) in other.failures {
            *self.failures.entry(failure).or_default() += count;
        }
        for (failure, sample) in other.samples {
            self.samples.entry(failure).or_insert(sample);
        }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

/// Latency of the good answers, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReviewFile {
    pub path: String,
    pub bytes: usize,
}

/// The result of one run. Serialized as is for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub protocol: &'static str,
    pub connections: usize,
    pub streams_per_connection: usize,
    /// `closed` or `open`.
    pub mode: &'static str,
    /// The open-loop rate asked for, reviews per second.
    pub rate: Option<f64>,
    pub warmup_seconds: f64,
    /// From the end of the warm-up to the last answer.
    pub seconds: f64,
    pub reviews: Vec<ReviewFile>,
    /// Measured requests: good answers plus failures.
    pub requests: u64,
    pub ok: u64,
    pub allowed: u64,
    pub denied: u64,
    pub patched: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    /// For each kind of failure with an answer, the first such answer.
    pub failure_samples: BTreeMap<String, String>,
    /// Good answers per second.
    pub throughput: f64,
    pub latency_ms: Latency,
}

impl Report {
    pub fn new(options: &Options, reviews: &Reviews, stats: Stats, elapsed: Duration) -> Self {
        let ok = stats.allowed + stats.denied;
        let failed: u64 = stats.failures.values().sum();
        let seconds = elapsed.as_secs_f64();
        let ms = |micros: u64| micros as f64 / 1000.0;
        let h = &stats.latency;
        let latency = if h.is_empty() {
            Latency { min: 0.0, mean: 0.0, p50: 0.0, p90: 0.0, p99: 0.0, p99_9: 0.0, max: 0.0 }
        } else {
            Latency {
                min: ms(h.min()),
                mean: h.mean() / 1000.0,
                p50: ms(h.value_at_quantile(0.50)),
                p90: ms(h.value_at_quantile(0.90)),
                p99: ms(h.value_at_quantile(0.99)),
                p99_9: ms(h.value_at_quantile(0.999)),
                max: ms(h.max()),
            }
        };
        let target = &options.target;
        Self {
            url: format!("https://{}{}", target.addr, target.path),
            protocol: options.protocol.name(),
            connections: options.connections.max(1),
            streams_per_connection: match options.protocol {
                Protocol::Http2 => options.streams.max(1),
                Protocol::Http1 => 1,
            },
            mode: if options.rate.is_some() { "open" } else { "closed" },
            rate: options.rate,
            warmup_seconds: options.warmup.as_secs_f64(),
            seconds,
            reviews: reviews
                .files()
                .map(|(path, bytes)| ReviewFile { path: path.display().to_string(), bytes })
                .collect(),
            requests: ok + failed,
            ok,
            allowed: stats.allowed,
            denied: stats.denied,
            patched: stats.patched,
            failed,
            failures: stats.failures.into_iter().map(|(failure, count)| (failure.name(), count)).collect(),
            failure_samples: stats.samples.into_iter().map(|(failure, sample)| (failure.name(), sample)).collect(),
            throughput: if seconds > 0.0 { ok as f64 / seconds } else { 0.0 },
            latency_ms: latency,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.rate {
            Some(rate) => format!("open loop at {rate}/s"),
            None => "closed loop".to_owned(),
        };
        writeln!(
            f,
            "{} over {}, {} connection(s) x {} stream(s), {mode}, {:.2} s measured after {:.2} s warm-up",
            self.url, self.protocol, self.connections, self.streams_per_connection, self.seconds, self.warmup_seconds
        )?;
        match self.reviews.as_slice() {
            [one] => writeln!(f, "review      {} ({} bytes)", one.path, one.bytes)?,
            many => writeln!(f, "reviews     {} files, round-robin", many.len())?,
        }
        writeln!(
            f,
            "requests    {} ({} ok: {} allowed, {} denied, {} patched; {} failed)",
            self.requests, self.ok, self.allowed, self.denied, self.patched, self.failed
        )?;
        writeln!(f, "throughput  {:.1} reviews/s", self.throughput)?;
        let l = &self.latency_ms;
        writeln!(f, "latency ms  min      mean     p50      p90      p99      p99.9    max")?;
        writeln!(
            f,
            "            {:<8.3} {:<8.3} {:<8.3} {:<8.3} {:<8.3} {:<8.3} {:<8.3}",
            l.min, l.mean, l.p50, l.p90, l.p99, l.p99_9, l.max
        )?;
        for (failure, count) in &self.failures {
            writeln!(f, "failed      {failure}: {count}")?;
            if let Some(sample) = self.failure_samples.get(failure) {
                writeln!(f, "            first: {sample}")?;
            }
        }
        Ok(())
    }
}
