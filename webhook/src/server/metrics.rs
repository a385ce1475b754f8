//! Prometheus metrics, served on their own plain-HTTP listener.

use crate::admission::{Admitted, Endpoint, PolicyResult};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    /// allowed, mutated, denied, bad_request, forbidden, unavailable, error
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

/// A denial: the policy, and the namespace of the object it refused ("" for
/// a cluster-scoped one). Namespaces are the cluster's own, so the series
/// stay as few as policies times namespaces that saw a denial. Not
/// `namespace`: Prometheus gives every scraped series that label, berth's
/// own namespace, and would rename this one.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    pub policy: String,
    pub resource_namespace: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyErrorLabels {
    pub policy: String,
    pub kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    /// handshake_failed (a client certificate of another CA among them),
    /// handshake_timeout
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub denials: Family<DenialLabels, Counter>,
    pub policy_errors: Family<PolicyErrorLabels, Counter>,
    pub timeouts: Family<PolicyLabels, Counter>,
    pub policy_duration: Family<PolicyLabels, Histogram>,
    pub request_duration: Family<RequestLabels, Histogram>,
    pub audit_failures: Counter,
    pub reloads: Family<ReloadLabels, Counter>,
    pub policies_loaded: Gauge,
    pub connections_open: Gauge,
    pub connections_waited: Counter,
    pub connections_refused: Family<RefusedLabels, Counter>,
    pub owner_cache: crate::cluster::CacheStats,
    pub events: crate::events::EventStats,
}

fn latency_buckets() -> Histogram {
    // 10 µs to ~5 s.
    Histogram::new(exponential_buckets(0.000_01, 2.5, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::default();
        let denials = Family::default();
        let policy_errors = Family::default();
        let timeouts = Family::default();
        let policy_duration =
            Family::<PolicyLabels, Histogram>::new_with_constructor(latency_buckets as fn() -> Histogram);
        let request_duration =
            Family::<RequestLabels, Histogram>::new_with_constructor(latency_buckets as fn() -> Histogram);
        let audit_failures = Counter::default();
        let reloads = Family::default();
        let policies_loaded = Gauge::default();
        let connections_open = Gauge::default();
        let connections_waited = Counter::default();
        let connections_refused = Family::default();
        let owner_cache = crate::cluster::CacheStats::default();
        owner_cache.register(&mut registry);
        let events = crate::events::EventStats::default();
        events.register(&mut registry);
        registry.register("admission_requests", "Admission reviews by endpoint and outcome", requests.clone());
        registry.register("denials", "Denials by policy and the object's namespace", denials.clone());
        registry.register("policy_errors", "Policy failures by policy and kind", policy_errors.clone());
        registry.register("policy_timeouts", "Policy calls stopped at their deadline", timeouts.clone());
        registry.register("policy_duration_seconds", "Time in one policy's plugin call", policy_duration.clone());
        registry.register("admission_duration_seconds", "Time to answer one review", request_duration.clone());
        registry.register("audit_failures", "Audit records that could not be written", audit_failures.clone());
        registry.register("config_reloads", "Configuration reloads by result", reloads.clone());
        registry.register("policies_loaded", "Policies in the active configuration", policies_loaded.clone());
        registry.register("connections_open", "Admission connections open", connections_open.clone());
        registry.register(
            "connections_waited",
            "Times the listener stopped accepting at --max-connections until a connection closed",
            connections_waited.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed before HTTP, by reason",
            connections_refused.clone(),
        );
        Self {
            registry,
            requests,
            denials,
            policy_errors,
            timeouts,
            policy_duration,
            request_duration,
            audit_failures,
            reloads,
            policies_loaded,
            connections_open,
            connections_waited,
            connections_refused,
            owner_cache,
            events,
        }
    }
}

impl Metrics {
    pub fn request(&self, endpoint: Endpoint, outcome: &'static str, elapsed: Duration) {
        let labels = RequestLabels { endpoint: endpoint.as_str(), outcome };
        self.requests.get_or_create(&labels).inc();
        self.request_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    pub fn refused(&self, reason: &'static str) {
        self.connections_refused.get_or_create(&RefusedLabels { reason }).inc();
    }

    pub fn admitted(&self, admitted: &Admitted) {
        for outcome in &admitted.outcomes {
            let policy = PolicyLabels { policy: outcome.policy.to_string() };
            self.policy_duration.get_or_create(&policy).observe(outcome.elapsed.as_secs_f64());
            match &outcome.result {
                PolicyResult::Denied { .. } => {
                    let resource_namespace = admitted.request.namespace.clone().unwrap_or_default();
                    self.denials.get_or_create(&DenialLabels { policy: policy.policy, resource_namespace }).inc();
                }
                PolicyResult::Failed { error, .. } => {
                    let kind = error.kind();
                    if kind == "timeout" {
                        self.timeouts.get_or_create(&policy).inc();
                    }
                    self.policy_errors.get_or_create(&PolicyErrorLabels { policy: policy.policy, kind }).inc();
                }
                PolicyResult::Allowed | PolicyResult::Mutated(_) => {}
            }
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
