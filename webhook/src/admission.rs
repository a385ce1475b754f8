//! The hot path: a parsed review → the matched policies → plugin calls →
//! one JSON Patch → the response. Used by `berth serve` and `berth eval`
//! alike, so what authors try offline is what the server does.

use crate::cluster::ContextError;
use crate::config::{FailurePolicy, Mode};
use crate::patch::{PatchError, WorkingCopy};
use crate::policy::{Matched, Policy, PolicySet};
use crate::review::{AdmissionRequest, AdmissionResponse, Object, Review};
use crate::runtime::{PluginDecision, PluginError, PluginRequest};
use json_patch::PatchOperation;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// The apiserver may cut warnings longer than this.
pub const MAX_WARNING: usize = 120;
/// The apiserver drops warnings past this many bytes in total.
const MAX_WARNINGS_TOTAL: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutate => "mutate",
            Self::Validate => "validate",
        }
    }

    /// The mode of the policies this endpoint runs.
    pub fn mode(self) -> Mode {
        match self {
            Self::Mutate => Mode::Mutate,
            Self::Validate => Mode::Validate,
        }
    }
}

/// Why a policy could not give a verdict; its failurePolicy decides.
#[derive(Debug, Error)]
pub enum PolicyError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// Matching or the plugin's context needed the cluster, which did not
    /// answer.
    #[error("could not read the cluster")]
    Context(#[source] ContextError),
    /// A patch that berth could not apply through no fault of the plugin:
    /// the object is too deep to build a tree of.
    #[error("berth could not patch the object")]
    Object(#[source] PatchError),
}

impl PolicyError {
    /// A short, stable name for metrics, logs and audit records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Plugin(error) => error.kind(),
            Self::Context(_) => "context",
            Self::Object(_) => "object",
        }
    }
}

/// What one policy did with one request: for metrics, logs and the audit log.
#[derive(Debug)]
pub struct PolicyOutcome {
    pub policy: Arc<str>,
    pub plugin: Arc<str>,
    pub sha256: Arc<str>,
    pub elapsed: Duration,
    pub result: PolicyResult,
}

#[derive(Debug)]
pub enum PolicyResult {
    Allowed,
    /// The ops this policy added: where they stand in [`Admitted::patch`].
    Mutated(Range<usize>),
    Denied {
        code: u16,
        message: String,
    },
    Failed {
        error: PolicyError,
        failure_policy: FailurePolicy,
    },
}

/// The answer to one review, and how each policy got there.
#[derive(Debug)]
pub struct Admitted {
    /// The request as it arrived (for the audit log).
    pub request: AdmissionRequest,
    pub response: AdmissionResponse,
    pub outcomes: Vec<PolicyOutcome>,
    /// Every op the mutating chain applied, in order: what the response's
    /// patch encodes when they change the object, kept for the audit log
    /// (empty on /validate).
    pub patch: Vec<PatchOperation>,
}

/// Run the policies of `endpoint` on `review`.
pub fn admit(policies: &PolicySet, endpoint: Endpoint, review: Review) -> Admitted {
    let matched = policies.matching(endpoint.mode(), &review.request);
    match endpoint {
        Endpoint::Mutate => mutate(&matched, review),
        Endpoint::Validate => validate(&matched, review),
    }
}

/// Call one matched policy's plugin: its verdict, or why there is none.
/// The one step both endpoints share; what a verdict means differs.
fn judge(
    matched: &Matched<'_>,
    request: PluginRequest<'_>,
    response: &mut AdmissionResponse,
) -> (Result<PluginDecision, PolicyError>, Duration) {
    let Matched { policy, context } = matched;
    let started = Instant::now();
    let decision = match context {
        Err(err) => Err(PolicyError::Context(err.clone())),
        Ok(context) => match policy.plugin.evaluate(&policy.name, request, &policy.settings, context, policy.limits) {
            Ok(verdict) => {
                add_warnings(response, &policy.name, verdict.warnings);
                Ok(verdict.decision)
            }
            Err(err) => Err(err.into()),
        },
    };
    (decision, started.elapsed())
}

fn mutate(matched: &[Matched<'_>], review: Review) -> Admitted {
    let Review { mut request } = review;
    let mut response = AdmissionResponse::from(&request);
    let mut outcomes = Vec::with_capacity(matched.len());
    let mut working = WorkingCopy::new();
    let info = plugin_request_text(matched, &mut request);
    // The object as the next plugin sees it, serialized only after a change
    // and only when a plugin is about to read it; until then plugins get
    // the apiserver's own text.
    let mut changed_object: Option<String> = None;
    let mut mutated_by = Vec::new();

    for one in matched {
        let policy = one.policy;
        if changed_object.is_none()
            && let Some(original) = &request.object
        {
            changed_object = working.changed_text(original);
        }
        let input = PluginRequest {
            request: &info,
            object: changed_object.as_deref().or(request.object.as_ref().map(Object::text)),
            old_object: request.old_object.as_ref().map(Object::text),
        };
        let (decision, elapsed) = judge(one, input, &mut response);
        let result = match decision {
            Err(error) => failed(error, policy),
            Ok(PluginDecision::Allow) => PolicyResult::Allowed,
            Ok(PluginDecision::Deny { message, code }) => PolicyResult::Denied { code, message },
            Ok(PluginDecision::Mutate(patch)) => match &request.object {
                None => failed(PluginError::BadOutput("a patch for a request without an object".into()), policy),
                Some(original) => match working.apply(original, &patch) {
                    Ok(ops) if ops.is_empty() => PolicyResult::Allowed,
                    Ok(ops) => {
                        // Serialized again only if another policy runs.
                        changed_object = None;
                        mutated_by.push(policy.name.to_string());
                        PolicyResult::Mutated(ops)
                    }
                    Err(err @ PatchError::Unpatchable(_)) => failed(PolicyError::Object(err), policy),
                    Err(err) => failed(bad_output(err), policy),
                },
            },
        };
        let stop = settle(&mut response, policy, &result);
        outcomes.push(outcome(policy, elapsed, result));
        if stop {
            return Admitted { request, response, outcomes, patch: working.into_ops() };
        }
    }

    let changed = working.changed();
    let patch = working.into_ops();
    if changed {
        match response.with_patch(&patch) {
            Ok(()) => {
                response.audit_annotations.insert("mutated-by".to_owned(), mutated_by.join(","));
            }
            Err(err) => response.deny(500, format!("berth could not encode the patch: {err}")),
        }
    }
    Admitted { request, response, outcomes, patch }
}

fn validate(matched: &[Matched<'_>], review: Review) -> Admitted {
    let Review { mut request } = review;
    let mut response = AdmissionResponse::from(&request);
    let mut outcomes = Vec::with_capacity(matched.len());
    let mut denials: Vec<(u16, String)> = Vec::new();
    let info = plugin_request_text(matched, &mut request);
    let input = PluginRequest {
        request: &info,
        object: request.object.as_ref().map(Object::text),
        old_object: request.old_object.as_ref().map(Object::text),
    };
    for one in matched {
        let policy = one.policy;
        let (decision, elapsed) = judge(one, input, &mut response);
        let result = match decision {
            Err(error) => failed(error, policy),
            Ok(PluginDecision::Allow) => PolicyResult::Allowed,
            Ok(PluginDecision::Deny { message, code }) => PolicyResult::Denied { code, message },
            Ok(PluginDecision::Mutate(_)) => {
                // The author's fix is in their plugin's settings, not here.
                let why = "a patch from a validating policy (mode: validate may only allow or deny; plugins/README.md, \"One policy on both endpoints\")";
                failed(PluginError::BadOutput(why.into()), policy)
            }
        };
        match &result {
            PolicyResult::Denied { code, message } => denials.push((*code, format!("{}: {message}", policy.name))),
            PolicyResult::Failed { error, failure_policy: FailurePolicy::Fail } => {
                log_failure(policy, error);
                denials.push((500, failure_message(policy, error)))
            }
            other => {
                settle(&mut response, policy, other);
            }
        }
        outcomes.push(outcome(policy, elapsed, result));
    }
    if let Some((code, _)) = denials.first() {
        // Every reason, so the user fixes everything in one go.
        let message = denials.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
        response.deny(*code, message);
        let denied_by = outcomes
            .iter()
            .filter(|o| {
                matches!(
                    o.result,
                    PolicyResult::Denied { .. } | PolicyResult::Failed { failure_policy: FailurePolicy::Fail, .. }
                )
            })
            .map(|o| o.policy.to_string())
            .collect::<Vec<_>>()
            .join(",");
        response.audit_annotations.insert("denied-by".to_owned(), denied_by);
    }
    Admitted { request, response, outcomes, patch: Vec::new() }
}

/// The request without its objects, as every plugin of this review gets
/// it: serialized once, and only if a plugin runs; then, too, the objects'
/// texts are made compact (a review that matches nothing pays for neither).
fn plugin_request_text(matched: &[Matched<'_>], request: &mut AdmissionRequest) -> String {
    if matched.is_empty() {
        return String::new();
    }
    request.compact_objects();
    request.to_json_without_objects()
}

fn failed(error: impl Into<PolicyError>, policy: &Policy) -> PolicyResult {
    PolicyResult::Failed { error: error.into(), failure_policy: policy.failure_policy }
}

fn bad_output(err: PatchError) -> PluginError {
    PluginError::BadOutput(err.to_string())
}

/// The reason a user reads: the policy, the kind of failure, and the whole
/// chain of causes (a context error's cause is what says which lookup).
fn failure_message(policy: &Policy, error: &PolicyError) -> String {
    format!("policy {} failed ({}): {}", policy.name, error.kind(), crate::error_chain(error))
}

fn log_failure(policy: &Policy, error: &PolicyError) {
    tracing::error!(policy = &*policy.name, kind = error.kind(), "policy failed: {}", crate::error_chain(error));
}

/// Apply one policy's result to the response (mutate chain). Returns whether
/// the chain stops here.
fn settle(response: &mut AdmissionResponse, policy: &Policy, result: &PolicyResult) -> bool {
    match result {
        PolicyResult::Allowed | PolicyResult::Mutated(_) => false,
        PolicyResult::Denied { code, message } => {
            response.deny(*code, format!("{}: {message}", policy.name));
            response.audit_annotations.insert("denied-by".to_owned(), policy.name.to_string());
            true
        }
        PolicyResult::Failed { error, failure_policy: FailurePolicy::Fail } => {
            log_failure(policy, error);
            response.deny(500, failure_message(policy, error));
            response.audit_annotations.insert("denied-by".to_owned(), policy.name.to_string());
            true
        }
        PolicyResult::Failed { error, failure_policy: FailurePolicy::Ignore } => {
            let chain = crate::error_chain(error);
            tracing::warn!(policy = &*policy.name, kind = error.kind(), "policy failed and was ignored: {chain}");
            add_warnings(response, &policy.name, vec![format!("skipped after {}", error.kind())]);
            false
        }
    }
}

fn add_warnings(response: &mut AdmissionResponse, policy: &str, warnings: Vec<String>) {
    for warning in warnings {
        let mut text = format!("{policy}: {warning}");
        if text.chars().count() > MAX_WARNING {
            text = text.chars().take(MAX_WARNING - 1).collect::<String>() + "…";
        }
        let total: usize = response.warnings.iter().map(String::len).sum();
        if total + text.len() > MAX_WARNINGS_TOTAL {
            return;
        }
        response.warnings.push(text);
    }
}

fn outcome(policy: &Policy, elapsed: Duration, result: PolicyResult) -> PolicyOutcome {
    let (plugin, sha256) = policy.plugin.names();
    PolicyOutcome { policy: policy.name.clone(), plugin, sha256, elapsed, result }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> AdmissionResponse {
        let request: AdmissionRequest = serde_json::from_value(serde_json::json!({
            "uid": "u", "operation": "CREATE",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
        }))
        .expect("request");
        AdmissionResponse::from(&request)
    }

    #[test]
    fn warnings_are_named_and_cut_to_120_characters() {
        let mut response = response();
        add_warnings(&mut response, "policy", vec!["short".into(), "é".repeat(300)]);
        assert_eq!(response.warnings[0], "policy: short");
        assert_eq!(response.warnings[1].chars().count(), MAX_WARNING);
        assert!(response.warnings[1].starts_with("policy: éé") && response.warnings[1].ends_with('…'));
    }

    #[test]
    fn warnings_stop_at_the_apiservers_total() {
        let mut response = response();
        add_warnings(&mut response, "p", (0..100).map(|i| format!("{i:0>100}")).collect());
        let total: usize = response.warnings.iter().map(String::len).sum();
        assert!(total <= MAX_WARNINGS_TOTAL && response.warnings.len() < 100, "{total}");
    }
}
