//! Kubernetes Events for denials: `kubectl describe statefulset web` says
//! why its pods are missing. docs/AUDIT.md ("Kubernetes Events") is the
//! user's side.
//!
//! - this file: the handle the server holds, and what a denial's Event is
//!   about ([`Denial`]), built on the admission path from memory alone;
//! - [`series`]: aggregation into one Event per (object, reason, message) with a
//!   series count, and the limits on writes (a token bucket overall, one
//!   write per Event per interval);
//! - [`writer`]: the background task that writes to the API (create, or a
//!   merge patch of the series) and retries what fails.
//!
//! kube-rs has a recorder (`kube::runtime::events::Recorder`), which makes
//! series too, but sends a PATCH for every repeat (1,000 denials a second
//! would be 1,000 writes), limits nothing, and keys Events without their
//! note, which a patch may not change: so berth has its own, small one.
//!
//! The admission path only hands a [`Denial`] to a bounded channel; a full
//! channel drops it (counted). Nothing here can delay or change an answer,
//! and the audit log, written before, holds every denial whatever happens
//! to its Event.

mod series;
mod writer;

pub use series::Limits;

use crate::cluster::{Cluster, OwnerKind, OwnerRef};
use crate::review::{AdmissionRequest, AdmissionResponse, Operation};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// `reportingController`: a qualified name, as the API requires.
pub const REPORTING_CONTROLLER: &str = "berth.dev/admission";
/// `reason` of a denial's Event: a policy said no ...
pub const REASON_DENIED: &str = "PolicyDenied";
/// ... or none did, and a failure refused the object (a policy's under
/// `failurePolicy: Fail`, or berth's own, as an audit log it cannot write).
pub const REASON_FAILED: &str = "PolicyError";
/// `action`: what failed regarding the object.
pub const ACTION: &str = "Admit";
/// The API refuses a note longer than this many bytes.
pub const NOTE_LIMIT: usize = 1024;
/// ... and a reportingInstance longer than this.
const INSTANCE_LIMIT: usize = 128;
/// Denials waiting for the writer task; past it they are dropped. The task
/// takes one in about a microsecond (a map update), so this fills only if
/// the task is starved.
const QUEUE: usize = 4096;

/// What an Event is about (`regarding`, or `related`): an ObjectReference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Regarding {
    pub api_version: String,
    pub kind: String,
    /// Empty for a cluster-scoped object.
    pub namespace: String,
    /// Empty for an object created with only a generateName (and no owner).
    pub name: String,
    /// Empty for an object that was never stored.
    pub uid: String,
}

impl Regarding {
    /// The namespace an Event about it goes in: its own, or `default` for
    /// a cluster-scoped object (the API allows only default or kube-system).
    pub fn event_namespace(&self) -> &str {
        if self.namespace.is_empty() { "default" } else { &self.namespace }
    }
}

/// One denial, on its way to becoming an Event or a count in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub regarding: Regarding,
    /// The denied object itself, when the Event regards its owner.
    pub related: Option<Regarding>,
    /// [`REASON_DENIED`] or [`REASON_FAILED`].
    pub reason: &'static str,
    /// berth's message, cut to [`NOTE_LIMIT`].
    pub note: String,
    /// For the Event's name when `regarding` has no name.
    pub name_hint: String,
    pub at: SystemTime,
}

impl Denial {
    /// The Event for a denial of `request` with `message`. A created object
    /// that was refused is never stored, so the Event regards its
    /// controller (a StatefulSet's or Job's pod: the StatefulSet or Job;
    /// a Deployment's pod: the Deployment when memory holds its ReplicaSet,
    /// else the ReplicaSet), where `kubectl describe` finds it. Anything
    /// else regards the object. `cluster` is read from memory only.
    pub fn new(request: &AdmissionRequest, failed: bool, message: &str, cluster: Option<&Cluster>) -> Self {
        let meta = request.subject().map(|object| object.meta());
        // A Namespace's review names the namespace itself, which a refused
        // one never becomes: it is cluster-scoped.
        let namespace = match (request.kind.group.as_str(), request.kind.kind.as_str()) {
            ("", "Namespace") => String::new(),
            _ => request.namespace.clone().unwrap_or_default(),
        };
        let name = request.name.clone().filter(|n| !n.is_empty()).or_else(|| meta.map(|m| m.name.clone()));
        let object = Regarding {
            api_version: api_version(&request.kind.group, &request.kind.version),
            kind: request.kind.kind.clone(),
            namespace: namespace.clone(),
            name: name.unwrap_or_default(),
            // A refused creation never exists: the uid the apiserver gave
            // this attempt before validation names nothing, and the next
            // attempt's differs.
            uid: match request.operation {
                Operation::Create => String::new(),
                _ => meta.map(|m| m.uid.clone()).unwrap_or_default(),
            },
        };
        let name_hint = meta.map(|m| m.generate_name.trim_end_matches(['-', '.']).to_owned()).unwrap_or_default();
        let owner = (request.operation == Operation::Create)
            .then(|| meta.and_then(|m| m.controller.as_ref()))
            .flatten()
            .map(|owner| controller_of(owner, &namespace, cluster));
        let (regarding, related) = match owner {
            Some(owner) => (owner, Some(object).filter(|o| !o.name.is_empty())),
            None => (object, None),
        };
        let reason = if failed { REASON_FAILED } else { REASON_DENIED };
        Self { regarding, related, reason, note: bounded_note(message), name_hint, at: SystemTime::now() }
    }
}

/// What to regard for an object whose controller is `owner`: the owner,
/// or for a ReplicaSet the Deployment memory says controls it (people
/// describe Deployments; ReplicaSets are its machinery).
fn controller_of(owner: &OwnerRef, namespace: &str, cluster: Option<&Cluster>) -> Regarding {
    let direct = Regarding {
        api_version: owner.api_version.clone(),
        kind: owner.kind.clone(),
        namespace: namespace.to_owned(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
    };
    if OwnerKind::from_reference(&owner.api_version, &owner.kind) != Some(OwnerKind::ReplicaSet) {
        return direct;
    }
    match cluster.and_then(|cluster| cluster.cached_controller(namespace, owner)) {
        Some(up) if up.kind == OwnerKind::Deployment => Regarding {
            api_version: api_version(up.kind.group(), "v1"),
            kind: up.kind.kind().to_owned(),
            namespace: namespace.to_owned(),
            name: up.name.to_string(),
            uid: up.uid.to_string(),
        },
        _ => direct,
    }
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") }
}

/// `message` within the API's note limit, cut at a character boundary.
fn bounded_note(message: &str) -> String {
    if message.len() <= NOTE_LIMIT {
        return message.to_owned();
    }
    const MORE: &str = "...";
    let mut end = NOTE_LIMIT - MORE.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MORE}", &message[..end])
}

/// Who reports the Events: berth, and this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reporter {
    pub controller: String,
    /// The pod's name (a pod's hostname is its name), within the API's limit.
    pub instance: String,
}

impl Reporter {
    /// berth, on this host.
    pub fn this_host() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "berth".to_owned());
        let mut end = host.len().min(INSTANCE_LIMIT);
        while !host.is_char_boundary(end) {
            end -= 1;
        }
        Self { controller: REPORTING_CONTROLLER.to_owned(), instance: host[..end].to_owned() }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// create, patch
    pub verb: &'static str,
    /// ok, error
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// queue_full, too_many_events, rejected, api_unavailable
    pub reason: &'static str,
}

/// The Events' metrics, registered with the server's.
#[derive(Debug, Clone, Default)]
pub struct EventStats {
    pub writes: Family<WriteLabels, Counter>,
    /// Denials whose Event (or whose count in one) was not written.
    pub dropped: Family<DropLabels, Counter>,
    /// Events with denials not written yet.
    pub pending: Gauge,
}

impl EventStats {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "event_writes",
            "Writes of Events to the Kubernetes API, by verb and result",
            self.writes.clone(),
        );
        registry.register(
            "events_dropped",
            "Denials whose Event, or whose count in one, was never written, by reason",
            self.dropped.clone(),
        );
        registry.register("events_pending", "Events with denials not yet written to the API", self.pending.clone());
    }

    fn dropped(&self, reason: &'static str, denials: u64) {
        if denials > 0 {
            self.dropped.get_or_create(&DropLabels { reason }).inc_by(denials);
        }
    }
}

/// The server's handle: cheap to clone, never blocks.
#[derive(Debug, Clone, Default)]
pub struct Events {
    queue: Option<mpsc::Sender<Denial>>,
    stats: EventStats,
}

/// The writer task, for a last flush at shutdown.
pub struct EventTask {
    stop: oneshot::Sender<Duration>,
    done: tokio::task::JoinHandle<()>,
}

impl Events {
    /// No Events (`--no-events`, or no Kubernetes API).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Start the writer task on the current runtime, writing through
    /// `client` as `reporter`.
    pub fn start(client: kube::Client, reporter: Reporter, limits: Limits, stats: EventStats) -> (Self, EventTask) {
        let (queue, denials) = mpsc::channel(QUEUE);
        let (stop, stopped) = oneshot::channel();
        let sink = writer::ApiSink::new(client);
        let done = tokio::spawn(writer::run(sink, reporter, limits, stats.clone(), denials, stopped));
        (Self { queue: Some(queue), stats }, EventTask { stop, done })
    }

    pub fn is_enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Record the denial `response` gave `request`, if it is one berth
    /// reports: a denial of a real request (a dry run changes nothing, so
    /// there is nothing to explain). Never waits: with the queue full the
    /// denial is dropped and counted.
    /// `failed`: no policy said no; a failure refused the object.
    pub fn denied(
        &self,
        request: &AdmissionRequest,
        response: &AdmissionResponse,
        failed: bool,
        cluster: Option<&Cluster>,
    ) {
        let Some(queue) = &self.queue else { return };
        if response.allowed || request.is_dry_run() {
            return;
        }
        let message = response.status.as_ref().map_or("", |status| status.message.as_str());
        if queue.try_send(Denial::new(request, failed, message, cluster)).is_err() {
            self.stats.dropped("queue_full", 1);
        }
    }
}

impl EventTask {
    /// Stop taking denials, write what is pending for up to `grace`, and end.
    pub async fn finish(self, grace: Duration) {
        let _ = self.stop.send(grace);
        if tokio::time::timeout(grace + Duration::from_secs(1), self.done).await.is_err() {
            tracing::warn!("the Event writer did not finish within {grace:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(operation: &str, object: serde_json::Value) -> AdmissionRequest {
        serde_json::from_value(json!({
            "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "pulsar", "operation": operation, "userInfo": {},
            "object": object,
        }))
        .unwrap()
    }

    fn pod(name: &str, owner: Option<(&str, &str, &str)>) -> serde_json::Value {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "pulsar"}});
        if let Some((api_version, kind, owner)) = owner {
            pod["metadata"]["ownerReferences"] = json!([
                {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "n-uid"},
                {"apiVersion": api_version, "kind": kind, "name": owner, "uid": format!("{owner}-uid"), "controller": true},
            ]);
        }
        pod
    }

    #[test]
    fn a_refused_pod_of_a_statefulset_regards_the_statefulset() {
        let mut object = pod("bookie-0", Some(("apps/v1", "StatefulSet", "bookie")));
        // As validating webhooks see a creation: with the uid it never keeps.
        object["metadata"]["uid"] = json!("attempt-uid");
        let denial = Denial::new(&request("CREATE", object), false, "no", None);
        let expected = Regarding {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            namespace: "pulsar".into(),
            name: "bookie".into(),
            uid: "bookie-uid".into(),
        };
        assert_eq!(denial.regarding, expected);
        let related = denial.related.unwrap();
        assert_eq!((related.kind.as_str(), related.name.as_str(), related.uid.as_str()), ("Pod", "bookie-0", ""));
        assert_eq!(denial.regarding.event_namespace(), "pulsar");
    }

    #[test]
    fn a_jobs_pod_with_only_a_generate_name_regards_the_job_and_relates_to_nothing() {
        let mut object = pod("", Some(("batch/v1", "Job", "init")));
        object["metadata"]["generateName"] = json!("init-");
        let denial = Denial::new(&request("CREATE", object), false, "no", None);
        assert_eq!((denial.regarding.kind.as_str(), denial.regarding.name.as_str()), ("Job", "init"));
        assert!(denial.related.is_none());
    }

    #[test]
    fn a_deployments_pod_regards_the_deployment_only_when_memory_knows_it() {
        let object = pod("", Some(("apps/v1", "ReplicaSet", "web-5d4f")));
        let alone = Denial::new(&request("CREATE", object.clone()), false, "no", None);
        assert_eq!((alone.regarding.kind.as_str(), alone.regarding.name.as_str()), ("ReplicaSet", "web-5d4f"));
        let cluster = Cluster::fixed_objects(vec![json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-5d4f", "namespace": "pulsar", "uid": "web-5d4f-uid", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "web-uid", "controller": true},
            ]},
        })]);
        let known = Denial::new(&request("CREATE", object), false, "no", Some(&cluster));
        let regarding = &known.regarding;
        assert_eq!(
            (regarding.api_version.as_str(), regarding.kind.as_str(), regarding.name.as_str(), regarding.uid.as_str()),
            ("apps/v1", "Deployment", "web", "web-uid")
        );
    }

    #[test]
    fn an_object_that_exists_or_has_no_owner_regards_itself() {
        let mut stored = pod("bookie-0", Some(("apps/v1", "StatefulSet", "bookie")));
        stored["metadata"]["uid"] = json!("pod-uid");
        let update = Denial::new(&request("UPDATE", stored), false, "no", None);
        assert_eq!((update.regarding.kind.as_str(), update.regarding.uid.as_str()), ("Pod", "pod-uid"));
        assert!(update.related.is_none());
        let mut attempt = pod("debug", None);
        attempt["metadata"]["uid"] = json!("attempt-uid");
        let bare = Denial::new(&request("CREATE", attempt), false, "no", None);
        assert_eq!((bare.regarding.name.as_str(), bare.regarding.namespace.as_str()), ("debug", "pulsar"));
        assert_eq!(bare.regarding.uid, "", "a refused creation's uid names nothing");
    }

    #[test]
    fn a_failure_refusing_the_object_is_a_policy_error() {
        let object = pod("bookie-0", Some(("apps/v1", "StatefulSet", "bookie")));
        assert_eq!(Denial::new(&request("CREATE", object.clone()), false, "no", None).reason, REASON_DENIED);
        assert_eq!(
            Denial::new(&request("CREATE", object), true, "policy p failed (timeout)", None).reason,
            REASON_FAILED
        );
    }

    #[test]
    fn a_cluster_scoped_objects_event_goes_in_default() {
        let mut request =
            request("CREATE", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}));
        // As the apiserver sends it: the namespace's own name.
        request.namespace = Some("x".into());
        request.kind.kind = "Namespace".into();
        assert_eq!(Denial::new(&request, false, "no", None).regarding.event_namespace(), "default");
    }

    #[test]
    fn the_note_is_cut_to_the_apis_limit_at_a_character() {
        assert_eq!(bounded_note("short"), "short");
        let long = "é".repeat(NOTE_LIMIT);
        let note = bounded_note(&long);
        assert!(note.len() <= NOTE_LIMIT && note.ends_with("..."), "{}", note.len());
        assert!(note.len() > NOTE_LIMIT - 8);
    }

    #[test]
    fn dry_runs_and_answers_that_allow_are_not_reported() {
        let (queue, mut denials) = mpsc::channel(1);
        let events = Events { queue: Some(queue), stats: EventStats::default() };
        let mut request = request("CREATE", pod("p", None));
        let mut response = AdmissionResponse::from(&request);
        events.denied(&request, &response, false, None);
        response.deny(403, "no".into());
        request.dry_run = Some(true);
        events.denied(&request, &response, false, None);
        assert!(denials.try_recv().is_err(), "neither an allowed request nor a dry run makes an Event");
        request.dry_run = None;
        events.denied(&request, &response, false, None);
        assert_eq!(denials.try_recv().unwrap().note, "no");
        events.denied(&request, &response, false, None);
        events.denied(&request, &response, false, None);
        let dropped = events.stats.dropped.get_or_create(&DropLabels { reason: "queue_full" }).get();
        assert_eq!(dropped, 1, "a full queue drops, and counts, rather than waits");
    }
}
