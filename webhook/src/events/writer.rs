//! The task that writes Events: it takes denials from the admission path's
//! channel, counts them into the aggregator (`series.rs`), and makes the
//! writes it asks for, one at a time, through kube-rs: a POST of a new
//! `events.k8s.io/v1` Event, or a merge patch of its `series`. Taking
//! denials never waits for a write, so a slow API fills nothing but the
//! aggregator, which is bounded.

use super::series::{Aggregator, Limits, Next, Observed, Outcome, Write};
use super::{ACTION, Denial, EventStats, Regarding, Reporter, WriteLabels};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// One write may take this long; then it counts as failed and is retried.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// When nothing is due, look again this often (expiry).
const IDLE_TICK: Duration = Duration::from_secs(5);

/// Where Events go: the Kubernetes API.
pub(super) struct ApiSink {
    client: kube::Client,
}

type Pending = Pin<Box<dyn Future<Output = (Write, Outcome)> + Send>>;

impl ApiSink {
    pub(super) fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// Make `write`; how it ended.
    fn write(&self, write: Write, reporter: &Reporter, stats: &EventStats) -> Pending {
        let api: Api<Event> = Api::namespaced(self.client.clone(), write.key.regarding.event_namespace());
        let event = write.create.then(|| event(&write, reporter));
        let stats = stats.clone();
        Box::pin(async move {
            let verb = if write.create { "create" } else { "patch" };
            let sent = async {
                match &event {
                    Some(event) => api.create(&PostParams::default(), event).await.map(drop),
                    None => {
                        let patch = serde_json::json!({"series": series(&write)});
                        api.patch(&write.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
                    }
                }
            };
            let outcome = match tokio::time::timeout(WRITE_TIMEOUT, sent).await {
                Ok(Ok(())) => Outcome::Stored,
                Ok(Err(err)) => classify(&err, write.create),
                Err(_) => Outcome::Retry,
            };
            let result = if outcome == Outcome::Stored { "ok" } else { "error" };
            stats.writes.get_or_create(&WriteLabels { verb, result }).inc();
            if outcome == Outcome::Rejected {
                tracing::warn!(event = %write.name, verb, "the Kubernetes API refused an Event; it is dropped");
            }
            (write, outcome)
        })
    }
}

/// What a failed write means for the Event.
fn classify(err: &kube::Error, create: bool) -> Outcome {
    match err {
        kube::Error::Api(status) => match status.code {
            // A create that timed out may have been stored: the retry finds it.
            409 if create => Outcome::Stored,
            404 if !create => Outcome::Gone,
            408 | 429 => Outcome::Retry,
            code if code >= 500 => Outcome::Retry,
            _ => Outcome::Rejected,
        },
        // Connection refused, TLS, a body cut short: the API is not there.
        _ => Outcome::Retry,
    }
}

fn micro_time(at: SystemTime) -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::try_from(at).unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
}

fn series(write: &Write) -> Option<EventSeries> {
    (write.count >= 2).then(|| EventSeries {
        count: i32::try_from(write.count).unwrap_or(i32::MAX),
        last_observed_time: micro_time(write.last_observed),
    })
}

fn reference(regarding: &Regarding) -> ObjectReference {
    let some = |text: &str| Some(text.to_owned()).filter(|t| !t.is_empty());
    ObjectReference {
        api_version: some(&regarding.api_version),
        kind: some(&regarding.kind),
        namespace: some(&regarding.namespace),
        name: some(&regarding.name),
        uid: some(&regarding.uid),
        ..ObjectReference::default()
    }
}

/// The `events.k8s.io/v1` Event a creation sends.
fn event(write: &Write, reporter: &Reporter) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(write.name.clone()),
            namespace: Some(write.key.regarding.event_namespace().to_owned()),
            ..ObjectMeta::default()
        },
        event_time: Some(micro_time(write.event_time)),
        series: series(write),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        action: Some(ACTION.to_owned()),
        reason: Some(write.key.reason.to_owned()),
        note: Some(write.key.note.clone()).filter(|n| !n.is_empty()),
        type_: Some("Warning".to_owned()),
        regarding: Some(reference(&write.key.regarding)),
        related: write.related.as_ref().map(reference),
        ..Event::default()
    }
}

/// Take denials until `stop` says how long to flush for; then write what
/// waits, for up to that long, and end.
pub(super) async fn run(
    sink: ApiSink,
    reporter: Reporter,
    limits: Limits,
    stats: EventStats,
    mut denials: mpsc::Receiver<Denial>,
    mut stop: oneshot::Receiver<Duration>,
) {
    let mut series = Aggregator::new(limits, Instant::now().into_std());
    let mut in_flight: Option<Pending> = None;
    // When to ask the aggregator for a write again.
    let mut wake = Instant::now();
    loop {
        let now = Instant::now();
        stats.dropped("api_unavailable", series.expire(now.into_std()));
        // Asked only when something may have come due (a new Event, a
        // write settled, the time it said): each ask scans the Events.
        if in_flight.is_none() && now >= wake {
            match series.next(now.into_std(), false) {
                Next::Write(write) => in_flight = Some(sink.write(write, &reporter, &stats)),
                Next::Wait(at) => wake = Instant::from_std(at).min(now + IDLE_TICK),
                Next::Idle => wake = now + IDLE_TICK,
            }
            stats.pending.set(series.pending() as i64);
        }
        tokio::select! {
            denial = denials.recv() => match denial {
                Some(denial) => match series.observe(denial, Instant::now().into_std()) {
                    Observed::New | Observed::Resumed => wake = Instant::now(),
                    Observed::Counted => {}
                    Observed::Dropped => stats.dropped("too_many_events", 1),
                },
                // The server is gone without a flush.
                None => return,
            },
            (write, outcome) = async { in_flight.as_mut().expect("guarded by the condition").await }, if in_flight.is_some() => {
                in_flight = None;
                stats.dropped("rejected", series.settle(&write, outcome, Instant::now().into_std()));
                wake = Instant::now();
            }
            () = tokio::time::sleep_until(wake), if in_flight.is_none() => {}
            grace = &mut stop => {
                let grace = grace.unwrap_or_default();
                flush(&sink, &reporter, &stats, &mut series, &mut denials, in_flight, Instant::now() + grace).await;
                return;
            }
        }
    }
}

/// At shutdown: the denials already queued, then every write that waits
/// (intervals no longer apply; the bucket and a backoff still do), until
/// `deadline`.
async fn flush(
    sink: &ApiSink,
    reporter: &Reporter,
    stats: &EventStats,
    series: &mut Aggregator,
    denials: &mut mpsc::Receiver<Denial>,
    mut in_flight: Option<Pending>,
    deadline: Instant,
) {
    denials.close();
    while let Ok(denial) = denials.try_recv() {
        if series.observe(denial, Instant::now().into_std()) == Observed::Dropped {
            stats.dropped("too_many_events", 1);
        }
    }
    loop {
        let pending = match in_flight.take() {
            Some(pending) => pending,
            None => match series.next(Instant::now().into_std(), true) {
                Next::Write(write) => sink.write(write, reporter, stats),
                Next::Wait(at) if Instant::from_std(at) < deadline => {
                    tokio::time::sleep_until(Instant::from_std(at)).await;
                    continue;
                }
                Next::Wait(_) | Next::Idle => break,
            },
        };
        match tokio::time::timeout_at(deadline, pending).await {
            Ok((write, outcome)) => {
                stats.dropped("rejected", series.settle(&write, outcome, Instant::now().into_std()));
            }
            Err(_) => break,
        }
    }
    let left = series.pending();
    stats.pending.set(left as i64);
    if left > 0 {
        tracing::warn!(events = left, "stopping with Events not written to the Kubernetes API");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::series::Key;

    #[test]
    fn a_created_event_has_the_shape_the_api_validates() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_800_000_000_123_456) + Duration::from_nanos(789);
        let write = Write {
            key: Key {
                regarding: Regarding {
                    api_version: "apps/v1".into(),
                    kind: "StatefulSet".into(),
                    namespace: "pulsar".into(),
                    name: "bookie".into(),
                    uid: "u-1".into(),
                },
                reason: crate::events::REASON_DENIED,
                note: "image docker.io/x is not allowed".into(),
            },
            name: "bookie.1234abcd".into(),
            related: Some(Regarding {
                api_version: "v1".into(),
                kind: "Pod".into(),
                namespace: "pulsar".into(),
                name: "bookie-0".into(),
                uid: String::new(),
            }),
            create: true,
            event_time: at,
            count: 3,
            last_observed: at + Duration::from_secs(2),
        };
        let reporter = Reporter { controller: "berth.dev/admission".into(), instance: "berth-0".into() };
        let json = serde_json::to_value(event(&write, &reporter)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "events.k8s.io/v1",
                "kind": "Event",
                "metadata": {"name": "bookie.1234abcd", "namespace": "pulsar"},
                "eventTime": "2027-01-15T08:00:00.123456Z",
                "series": {"count": 3, "lastObservedTime": "2027-01-15T08:00:02.123456Z"},
                "reportingController": "berth.dev/admission",
                "reportingInstance": "berth-0",
                "action": "Admit",
                "reason": "PolicyDenied",
                "note": "image docker.io/x is not allowed",
                "type": "Warning",
                "regarding": {"apiVersion": "apps/v1", "kind": "StatefulSet", "namespace": "pulsar", "name": "bookie", "uid": "u-1"},
                "related": {"apiVersion": "v1", "kind": "Pod", "namespace": "pulsar", "name": "bookie-0"},
            })
        );
        let single = Write { count: 1, ..write };
        assert!(event(&single, &reporter).series.is_none(), "a series starts at 2, as the API requires");
    }
}
