//! `berth-load`: the command line. Exit status 0 when every measured
//! request got a good answer, 1 when any failed, 2 when the run could not
//! start.

use berth_load::{Expect, ExpectAllowed, ExpectPatch, Options, Protocol, Reviews, Target};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use thiserror::Error;

/// Load an admission webhook the way kube-apiserver calls it, checking
/// every answer.
#[derive(Debug, Parser)]
#[command(name = "berth-load", version)]
struct Args {
    /// The webhook endpoint, on this machine only:
    /// https://127.0.0.1:8443/mutate or https://localhost:8443/validate.
    #[arg(long)]
    url: Target,
    /// The CA bundle that signed the webhook's certificate.
    #[arg(long)]
    ca: PathBuf,
    /// h2 (multiplexed, as the apiserver negotiates by default) or h1
    /// (HTTP/1.1 keep-alive).
    #[arg(long, value_enum, default_value = "h2")]
    protocol: Protocol,
    /// Connections opened before the run starts.
    #[arg(long, short = 'c', default_value_t = 8)]
    connections: usize,
    /// Requests in flight per connection (h2 only; HTTP/1.1 has one).
    #[arg(long, short = 'm', default_value_t = 8)]
    streams: usize,
    /// Open loop: reviews per second, latency from when each was due.
    /// Without it, closed loop at maximum throughput.
    #[arg(long)]
    rate: Option<f64>,
    /// How long to measure. Default: 10s, unless --requests is given.
    #[arg(long, short = 'd', value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many measured requests.
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Load sent and checked, but not measured, before the measurement.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// One request's time limit (the apiserver's default is 10s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Every answer must allow (true), deny (false), or either (any).
    #[arg(long, value_enum, default_value = "any")]
    expect_allowed: ExpectAllowed,
    /// Every answer must carry a JSONPatch (always), none (never), or
    /// either (any).
    #[arg(long, value_enum, default_value = "any")]
    expect_patch: ExpectPatch,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Worker threads of the client (the server shares the machine).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// AdmissionReview files, or directories of them (*.json), replayed
    /// round-robin with a fresh uid each.
    #[arg(required = true)]
    reviews: Vec<PathBuf>,
}

#[derive(Debug, Error)]
enum CliError {
    #[error(transparent)]
    Reviews(#[from] berth_load::ReviewsError),
    #[error(transparent)]
    Run(#[from] berth_load::RunError),
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("writing {path}")]
    Json {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(err) => {
            let mut text = format!("berth-load: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{text}");
            ExitCode::from(2)
        }
    }
}

/// The number of failed requests.
fn run(args: Args) -> Result<u64, CliError> {
    let reviews = Reviews::load(&args.reviews)?;
    let options = Options {
        target: args.url,
        ca: args.ca,
        protocol: args.protocol,
        connections: args.connections,
        streams: args.streams,
        rate: args.rate,
        duration: args.duration,
        requests: args.requests,
        warmup: args.warmup,
        timeout: args.timeout,
        expect: Expect { allowed: args.expect_allowed, patch: args.expect_patch },
    };
    let runtime = match args.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        threads => tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build(),
    }
    .map_err(CliError::Runtime)?;
    let report = runtime.block_on(berth_load::run(options, reviews))?;
    print!("{report}");
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
        text.push('\n');
        std::fs::write(path, text).map_err(|error| CliError::Json { path: path.clone(), error })?;
    }
    Ok(report.failed)
}
