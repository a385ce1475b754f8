//! One run: connect, warm up, drive load closed or open loop, collect.

use crate::check::{self, Failure};
use crate::client::{ConnectError, Connection, Connector, TlsSetupError};
use crate::report::{Report, Stats};
use crate::reviews::Reviews;
use crate::{Options, Protocol};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("opening connection {index} to {addr}")]
    Connect {
        index: usize,
        addr: std::net::SocketAddr,
        #[source]
        error: ConnectError,
    },
    #[error("the rate must be a positive number of reviews per second, not {0}")]
    Rate(f64),
    #[error("a worker task failed")]
    Worker(#[source] tokio::task::JoinError),
}

/// With neither a duration nor a request count, a run lasts this long.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// After a failed connect, wait this long before the next try, so a server
/// that is down is not hammered in a busy loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

/// What all workers of a run share.
struct Shared {
    options: Options,
    reviews: Reviews,
    connector: Connector,
    host: String,
    /// Measurement starts here (after the warm-up).
    measure_from: Instant,
    /// No request is started after this.
    stop_at: Instant,
    /// Measured requests started so far, for `--requests`.
    started: AtomicU64,
}

impl Shared {
    /// Claim one more measured request, if the count bound allows.
    fn claim(&self) -> bool {
        match self.options.requests {
            Some(limit) => self.started.fetch_add(1, Ordering::Relaxed) < limit,
            None => true,
        }
    }
}

/// Run the load and report. Connections are opened before the clock
/// starts; a connection that cannot be opened at all ends the run.
pub async fn run(options: Options, reviews: Reviews) -> Result<Report, RunError> {
    if let Some(rate) = options.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(RunError::Rate(rate));
    }
    let connector = Connector::new(&options.target, &options.ca, options.protocol)?;
    let streams = match options.protocol {
        Protocol::Http2 => options.streams.max(1),
        Protocol::Http1 => 1,
    };
    let mut links = Vec::with_capacity(options.workers());
    for index in 0..options.connections.max(1) {
        let connection =
            connector.connect().await.map_err(|error| RunError::Connect { index, addr: options.target.addr, error })?;
        for _ in 1..streams {
            links.push(connection.share());
        }
        links.push(Some(connection));
    }

    let duration = match (options.duration, options.requests) {
        (Some(duration), _) => duration,
        // A count bound alone still stops: after ten minutes at the latest.
        (None, Some(_)) => Duration::from_secs(600),
        (None, None) => DEFAULT_DURATION,
    };
    let begin = Instant::now();
    let measure_from = begin + options.warmup;
    let host = match options.target.addr.port() {
        443 => options.target.server_name.clone(),
        port => format!("{}:{port}", options.target.server_name),
    };
    let shared = Arc::new(Shared {
        host,
        reviews,
        connector,
        measure_from,
        stop_at: measure_from + duration,
        started: AtomicU64::new(0),
        options,
    });

    let (queue, scheduler) = match shared.options.rate {
        Some(rate) => {
            let (send, receive) = mpsc::unbounded_channel();
            let scheduler = {
                let shared = shared.clone();
                tokio::task::spawn_blocking(move || schedule(&shared, rate, begin, send))
            };
            (Some(Arc::new(Mutex::new(receive))), Some(scheduler))
        }
        None => (None, None),
    };
    let workers: Vec<_> =
        links.into_iter().map(|link| tokio::spawn(worker(shared.clone(), link, queue.clone()))).collect();
    let mut stats = Stats::new();
    for worker in workers {
        stats.merge(worker.await.map_err(RunError::Worker)?);
    }
    if let Some(scheduler) = scheduler {
        scheduler.await.map_err(RunError::Worker)?;
    }
    let elapsed = Instant::now().saturating_duration_since(shared.measure_from);
    Ok(Report::new(&shared.options, &shared.reviews, stats, elapsed))
}

/// Open loop: put each request's due time on the queue at its time, from
/// `begin` on, whatever the workers are doing. Requests the workers never
/// got to by the end are counted as not sent.
///
/// A thread of its own, sleeping with the OS's high-resolution timer:
/// tokio's timer wheel rounds every deadline up to the next millisecond,
/// which made each request up to a millisecond late and counted that in its
/// latency (the server's p99 at 1,000/s read 1 ms worse than it was).
fn schedule(shared: &Shared, rate: f64, begin: Instant, queue: mpsc::UnboundedSender<Instant>) {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut index: u64 = 0;
    loop {
        let due = begin + interval.mul_f64(index as f64);
        if due >= shared.stop_at {
            break;
        }
        if due >= shared.measure_from && !shared.claim() {
            break;
        }
        // A sleep that ends late sends the requests due by then at once;
        // their latency still counts from when they were due.
        let wait = due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        if queue.send(due).is_err() {
            break;
        }
        index += 1;
    }
    // Dropping the sender lets the workers finish once the queue is empty.
}

/// One request in flight at a time: closed loop, or open loop taking due
/// times off the queue.
async fn worker(
    shared: Arc<Shared>,
    mut link: Option<Connection>,
    queue: Option<Arc<Mutex<mpsc::UnboundedReceiver<Instant>>>>,
) -> Stats {
    let mut stats = Stats::new();
    // Past this, an open-loop backlog is abandoned: a run always ends.
    let hard_stop = shared.stop_at + shared.options.timeout;
    loop {
        let (start, measured) = match &queue {
            None => {
                let now = Instant::now();
                if now >= shared.stop_at {
                    break;
                }
                let measured = now >= shared.measure_from;
                if measured && !shared.claim() {
                    break;
                }
                (now, measured)
            }
            Some(queue) => {
                let next = tokio::select! {
                    next = async { queue.lock().await.recv().await } => next,
                    _ = tokio::time::sleep_until(hard_stop) => None,
                };
                let Some(due) = next else { break };
                let measured = due >= shared.measure_from;
                if Instant::now() >= hard_stop {
                    if measured {
                        stats.fail(Failure::NotSent);
                    }
                    continue;
                }
                (due, measured)
            }
        };
        let outcome = send_one(&shared, &mut link).await;
        if measured {
            match outcome {
                Ok(verdict) => stats.ok(Instant::now().saturating_duration_since(start), verdict),
                Err((failure, sample)) => stats.fail_with(failure, sample),
            }
        }
    }
    // Open loop: due times still queued at the hard stop were never sent.
    if let Some(queue) = &queue
        && let Ok(mut queue) = queue.try_lock()
    {
        while let Ok(due) = queue.try_recv() {
            if due >= shared.measure_from {
                stats.fail(Failure::NotSent);
            }
        }
    }
    stats
}

/// One review: (re)connect if needed, send, check the answer.
async fn send_one(shared: &Shared, link: &mut Option<Connection>) -> Result<check::Verdict, (Failure, Option<String>)> {
    if link.as_ref().is_none_or(Connection::is_closed) {
        *link = None;
        match tokio::time::timeout(shared.options.timeout, shared.connector.connect()).await {
            Ok(Ok(connection)) => *link = Some(connection),
            Ok(Err(_)) | Err(_) => {
                tokio::time::sleep(RECONNECT_PAUSE).await;
                return Err((Failure::Connect, None));
            }
        }
    }
    let connection = link.as_mut().ok_or((Failure::Connect, None))?;
    let body = shared.reviews.next();
    let answer = tokio::time::timeout(
        shared.options.timeout,
        connection.post(&shared.options.target.path, &shared.host, body.bytes),
    )
    .await;
    let (status, answer) = match answer {
        Ok(Ok(answer)) => answer,
        Ok(Err(failure)) => return Err((failure, None)),
        // The connection may be stuck: start a new one for the next request.
        Err(_) => {
            *link = None;
            return Err((Failure::Timeout, None));
        }
    };
    check::check(status, &answer, &body.uid, shared.options.expect)
        .map_err(|failure| (failure, Some(check::describe(status, &answer))))
}
