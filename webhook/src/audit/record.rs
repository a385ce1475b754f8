//! One audit record, and building an admission's records.

use super::redact::Redactor;
use crate::admission::{Admitted, Endpoint, PolicyOutcome, PolicyResult};
use crate::cluster::Meta;
use crate::config::FailurePolicy;
use crate::review::{AdmissionRequest, GroupVersionKind, GroupVersionResource, Operation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// Why a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// A policy denied the request.
    Denied,
    /// A policy failed (timeout, trap, bad output …); `failurePolicy` says
    /// whether that denied the request (Fail) or was skipped (Ignore).
    Error,
    /// A policy patched the object (only with `recordMutations`).
    Mutated,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Denied => "denied",
            Self::Error => "error",
            Self::Mutated => "mutated",
        }
    }
}

/// One line of the audit log. docs/AUDIT.md documents the schema; readers
/// ignore fields they do not know, so fields may be added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// When berth answered, RFC 3339 UTC with nanoseconds.
    #[serde(with = "rfc3339")]
    pub time: SystemTime,
    /// The AdmissionReview request uid.
    pub uid: String,
    pub operation: Operation,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_resource: Option<String>,
    /// Absent for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Set instead of `name` when the object had none yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// `mutate` or `validate`.
    pub endpoint: String,
    /// The policy's name; empty when berth itself denied (it could not
    /// encode the patch).
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub plugin: String,
    #[serde(default)]
    pub sha256: String,
    pub decision: Decision,
    /// The HTTP-style code of a denial (a Fail failure denies with 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For errors: timeout, out_of_memory, trap, panic, bad_output …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// For errors: Fail or Ignore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_policy: Option<String>,
    /// Whether berth's answer to the request was to allow it.
    pub allowed: bool,
    /// For a mutation: the JSON Patch ops this policy added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Value>,
    /// The object as submitted (`oldObject` on DELETE), redacted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
}

impl AuditRecord {
    /// `name`, or `generateName` followed by `*`.
    pub fn display_name(&self) -> String {
        match (&self.name, &self.generate_name) {
            (Some(name), _) => name.clone(),
            (None, Some(prefix)) => format!("{prefix}*"),
            (None, None) => String::new(),
        }
    }

    /// What `berth audit summary` groups by: the denial's message, the
    /// error's kind and message, or "mutated".
    pub fn reason(&self) -> String {
        let message = self.message.as_deref().unwrap_or_default();
        match self.decision {
            Decision::Denied if message.is_empty() => format!("denied with code {}", self.code.unwrap_or(403)),
            Decision::Denied => message.to_owned(),
            Decision::Error => format!("{}: {message}", self.error_kind.as_deref().unwrap_or("error")),
            Decision::Mutated => "mutated".to_owned(),
        }
    }
}

/// Whether `admitted` produces any record: the hot path's cheap check.
pub(crate) fn wanted(admitted: &Admitted, record_mutations: bool) -> bool {
    !admitted.response.allowed || admitted.outcomes.iter().any(|o| recorded(o, record_mutations))
}

fn recorded(outcome: &PolicyOutcome, record_mutations: bool) -> bool {
    match outcome.result {
        PolicyResult::Allowed => false,
        PolicyResult::Mutated(_) => record_mutations,
        PolicyResult::Denied { .. } | PolicyResult::Failed { .. } => true,
    }
}

/// The records of one admission: one per denying, failing or (with
/// `record_mutations`) mutating policy, plus one for a denial no policy
/// accounts for.
pub(crate) fn build(
    endpoint: Endpoint,
    request: &AdmissionRequest,
    admitted: &Admitted,
    record_mutations: bool,
    redactor: &Redactor,
    with_object: bool,
) -> Vec<AuditRecord> {
    if !wanted(admitted, record_mutations) {
        return Vec::new();
    }
    let time = SystemTime::now();
    // A tree of the object, to redact: built only for a request recorded.
    // One too deep to build is left out rather than stored unredacted.
    let object = with_object.then(|| request.subject().and_then(|o| o.to_value().ok())).flatten().map(|mut object| {
        redactor.object(&mut object);
        object
    });
    let (name, generate_name) = names(request);
    let base = AuditRecord {
        time,
        uid: request.uid.clone(),
        operation: request.operation,
        kind: request.kind.clone(),
        resource: request.resource.clone(),
        sub_resource: request.sub_resource.clone().filter(|s| !s.is_empty()),
        namespace: request.namespace.clone().filter(|s| !s.is_empty()),
        name,
        generate_name,
        user: request.user_info.username.clone(),
        groups: request.user_info.groups.clone(),
        dry_run: request.is_dry_run(),
        endpoint: endpoint.as_str().to_owned(),
        policy: String::new(),
        plugin: String::new(),
        sha256: String::new(),
        decision: Decision::Denied,
        code: None,
        message: None,
        error_kind: None,
        failure_policy: None,
        allowed: admitted.response.allowed,
        patch: None,
        object: None,
    };

    let mut records = Vec::new();
    let mut denial_explained = false;
    for outcome in admitted.outcomes.iter().filter(|o| recorded(o, record_mutations)) {
        let mut record = AuditRecord {
            policy: outcome.policy.to_string(),
            plugin: outcome.plugin.to_string(),
            sha256: outcome.sha256.to_string(),
            ..base.clone()
        };
        match &outcome.result {
            PolicyResult::Allowed => continue,
            PolicyResult::Denied { code, message } => {
                denial_explained = true;
                record.decision = Decision::Denied;
                record.code = Some(*code);
                record.message = Some(message.clone());
            }
            PolicyResult::Failed { error, failure_policy } => {
                record.decision = Decision::Error;
                record.message = Some(crate::error_chain(error));
                record.error_kind = Some(error.kind().to_owned());
                record.failure_policy = Some(
                    match failure_policy {
                        FailurePolicy::Fail => "Fail",
                        FailurePolicy::Ignore => "Ignore",
                    }
                    .to_owned(),
                );
                if *failure_policy == FailurePolicy::Fail {
                    denial_explained = true;
                    record.code = Some(500);
                }
            }
            PolicyResult::Mutated(ops) => {
                record.decision = Decision::Mutated;
                debug_assert!(ops.end <= admitted.patch.len(), "{ops:?} outside the chain's patch");
                let ops = admitted.patch.get(ops.clone()).unwrap_or_default();
                let mut patch = serde_json::to_value(ops).unwrap_or(Value::Null);
                redactor.patch(&mut patch);
                record.patch = Some(patch);
            }
        }
        record.object = object.clone();
        records.push(record);
    }
    if !admitted.response.allowed && !denial_explained {
        let status = admitted.response.status.as_ref();
        records.push(AuditRecord {
            decision: Decision::Denied,
            code: Some(status.map_or(500, |s| s.code)),
            message: status.map(|s| s.message.clone()),
            object,
            ..base
        });
    }
    records
}

/// `name`, else `generateName` (Pods from Deployments and Jobs arrive so).
fn names(request: &AdmissionRequest) -> (Option<String>, Option<String>) {
    let meta = request.subject().map(|o| o.meta());
    let field = |get: fn(&Meta) -> &String| meta.map(get).filter(|s| !s.is_empty()).cloned();
    match request.name.clone().filter(|n| !n.is_empty()).or_else(|| field(|m| &m.name)) {
        Some(name) => (Some(name), None),
        None => (None, field(|m| &m.generate_name)),
    }
}

/// RFC 3339 in UTC: `2024-05-01T12:00:00.123456789Z`; parsing also takes
/// offsets (`+02:00`), `t`/`z`, a space for `T`, and a bare date.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    let bad = || format!("{text:?} is not an RFC 3339 time (2024-05-01T12:00:00Z)");
    let mut s = text.trim().to_ascii_uppercase();
    if s.len() == 10 {
        s.push_str("T00:00:00Z");
    }
    // A numeric offset other than +00:00 is not handled by humantime.
    let mut offset: i64 = 0;
    if s.len() >= 25 {
        let b = s.as_bytes();
        let at = s.len() - 6;
        if (b[at] == b'+' || b[at] == b'-') && b[at + 3] == b':' {
            let number =
                |range: std::ops::Range<usize>| s.get(range).and_then(|n| n.parse::<i64>().ok()).ok_or_else(bad);
            let hours = number(at + 1..at + 3)?;
            let minutes = number(at + 4..at + 6)?;
            if hours > 23 || minutes > 59 {
                return Err(bad());
            }
            offset = (hours * 60 + minutes) * 60 * if b[at] == b'+' { 1 } else { -1 };
            s.truncate(at);
            s.push('Z');
        }
    }
    let local = humantime::parse_rfc3339_weak(&s).map_err(|_| bad())?;
    // local = utc + offset
    let utc = if offset >= 0 {
        local.checked_sub(Duration::from_secs(offset.unsigned_abs()))
    } else {
        local.checked_add(Duration::from_secs(offset.unsigned_abs()))
    };
    utc.ok_or_else(bad)
}

pub fn format_rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(time: &SystemTime, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(&humantime::format_rfc3339_nanos(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<SystemTime, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(de)?;
        super::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::{AdmissionResponse, Review};
    use crate::runtime::PluginError;
    use serde_json::json;
    use std::sync::Arc;

    const REQUEST: &str = r#"{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"team-a","operation":"CREATE","userInfo":{"username":"alice","groups":["dev","system:authenticated"]},"dryRun":true,"object":{"metadata":{"generateName":"web-"},"spec":{"containers":[{"name":"c","env":[{"name":"PW","value":"hunter2"}]}]}}}"#;

    fn request() -> AdmissionRequest {
        let body = format!(r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{REQUEST}}}"#);
        Review::parse(body.as_bytes()).unwrap().request
    }

    fn outcome(policy: &str, result: PolicyResult) -> PolicyOutcome {
        PolicyOutcome {
            policy: Arc::from(policy),
            plugin: format!("builtin:{policy}").into(),
            sha256: "ab".repeat(32).into(),
            elapsed: Duration::from_millis(1),
            result,
        }
    }

    fn admitted(allowed: bool, outcomes: Vec<PolicyOutcome>) -> Admitted {
        let mut response = AdmissionResponse::from(&request());
        if !allowed {
            response.deny(403, "no".into());
        }
        Admitted { request: request(), response, outcomes, patch: Vec::new() }
    }

    fn build_default(endpoint: Endpoint, admitted: &Admitted, mutations: bool) -> Vec<AuditRecord> {
        let redactor = Redactor::new(&Default::default());
        build(endpoint, &request(), admitted, mutations, &redactor, true)
    }

    #[test]
    fn a_denial_with_every_field() {
        let admitted = admitted(
            false,
            vec![
                outcome("ok", PolicyResult::Allowed),
                outcome("no-latest", PolicyResult::Denied { code: 403, message: "image tag latest".into() }),
            ],
        );
        let records = build_default(Endpoint::Validate, &admitted, false);
        assert_eq!(records.len(), 1);
        let json = serde_json::to_value(&records[0]).unwrap();
        assert_eq!(json["uid"], "u-1");
        assert_eq!(json["operation"], "CREATE");
        assert_eq!(json["kind"]["kind"], "Pod");
        assert_eq!(json["resource"]["resource"], "pods");
        assert_eq!(json["namespace"], "team-a");
        assert_eq!(json["generateName"], "web-");
        assert!(json.get("name").is_none());
        assert_eq!(json["user"], "alice");
        assert_eq!(json["groups"], json!(["dev", "system:authenticated"]));
        assert_eq!(json["dryRun"], true);
        assert_eq!(json["endpoint"], "validate");
        assert_eq!(json["policy"], "no-latest");
        assert_eq!(json["plugin"], "builtin:no-latest");
        assert_eq!(json["sha256"], "ab".repeat(32));
        assert_eq!(json["decision"], "denied");
        assert_eq!(json["code"], 403);
        assert_eq!(json["message"], "image tag latest");
        assert_eq!(json["allowed"], false);
        assert_eq!(json["object"]["spec"]["containers"][0]["env"][0]["value"], "<redacted>");
        // Nanosecond RFC 3339, and a round trip.
        let time = json["time"].as_str().unwrap();
        assert_eq!(time.len(), "2024-05-01T12:00:00.123456789Z".len(), "{time}");
        let back: AuditRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, records[0]);
        assert_eq!(back.display_name(), "web-*");
    }

    #[test]
    fn errors_mutations_and_unexplained_denials() {
        let ignored = admitted(
            true,
            vec![
                outcome(
                    "slow",
                    PolicyResult::Failed {
                        error: PluginError::Timeout { after: Duration::from_millis(100) }.into(),
                        failure_policy: FailurePolicy::Ignore,
                    },
                ),
                outcome("tolerations", PolicyResult::Mutated(0..1)),
                outcome("labels", PolicyResult::Mutated(1..3)),
            ],
        );
        let ignored = Admitted {
            patch: serde_json::from_value(json!([
                {"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "K", "value": "secret"}},
                {"op": "add", "path": "/metadata/labels/a", "value": "1"},
                {"op": "add", "path": "/metadata/labels/b", "value": "2"},
            ]))
            .unwrap(),
            ..ignored
        };
        let records = build_default(Endpoint::Mutate, &ignored, false);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].decision, Decision::Error);
        assert_eq!(records[0].error_kind.as_deref(), Some("timeout"));
        assert_eq!(records[0].failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(records[0].code, None);
        assert!(records[0].allowed);
        assert_eq!(records[0].reason(), "timeout: timed out after 100ms");

        let records = build_default(Endpoint::Mutate, &ignored, true);
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].decision, Decision::Mutated);
        assert_eq!(records[1].patch.as_ref().unwrap().as_array().unwrap().len(), 1, "the policy's own ops only");
        assert_eq!(records[1].patch.as_ref().unwrap()[0]["value"]["value"], "<redacted>");
        assert_eq!(records[1].endpoint, "mutate");
        let labels = records[2].patch.as_ref().unwrap().as_array().unwrap();
        assert_eq!((records[2].policy.as_str(), labels.len()), ("labels", 2));
        assert_eq!(labels[1]["path"], "/metadata/labels/b");

        let failed = admitted(
            false,
            vec![outcome(
                "trap",
                PolicyResult::Failed {
                    error: PluginError::Panic { message: "boom".into() }.into(),
                    failure_policy: FailurePolicy::Fail,
                },
            )],
        );
        let records = build_default(Endpoint::Validate, &failed, false);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].code, Some(500));
        assert_eq!(records[0].failure_policy.as_deref(), Some("Fail"));

        // Denied by berth itself: still recorded.
        let records = build_default(Endpoint::Mutate, &admitted(false, vec![]), false);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].policy, "");
        assert_eq!(records[0].message.as_deref(), Some("no"));

        assert!(
            build_default(Endpoint::Mutate, &admitted(true, vec![outcome("ok", PolicyResult::Allowed)]), true)
                .is_empty()
        );
    }

    #[test]
    fn delete_records_the_old_object_and_name() {
        let mut request = request();
        request.operation = Operation::Delete;
        request.object = None;
        request.name = Some("web-1".into());
        request.old_object = Some((&json!({"metadata": {"name": "web-1"}, "data": {"k": "v"}})).try_into().unwrap());
        let admitted = admitted(false, vec![outcome("p", PolicyResult::Denied { code: 403, message: "m".into() })]);
        let records = build(Endpoint::Validate, &request, &admitted, false, &Redactor::new(&Default::default()), true);
        assert_eq!(records[0].name.as_deref(), Some("web-1"));
        assert_eq!(records[0].generate_name, None);
        assert_eq!(records[0].object.as_ref().unwrap()["data"]["k"], "<redacted>");
        let without = build(Endpoint::Validate, &request, &admitted, false, &Redactor::default(), false);
        assert!(without[0].object.is_none());
    }

    #[test]
    fn times() {
        let utc = parse_rfc3339("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("2024-05-01T14:00:00+02:00").unwrap(), utc);
        assert_eq!(parse_rfc3339("2024-05-01T10:30:00.000-01:30").unwrap(), utc);
        assert_eq!(parse_rfc3339("2024-05-01t12:00:00z").unwrap(), utc);
        assert_eq!(parse_rfc3339("2024-05-01").unwrap() + Duration::from_secs(12 * 3600), utc);
        let precise = parse_rfc3339("2024-05-01T12:00:00.123456789Z").unwrap();
        assert_eq!(format_rfc3339(precise), "2024-05-01T12:00:00.123456789Z");
        assert!(parse_rfc3339("yesterday").is_err());
        assert!(parse_rfc3339("2024-05-01T12:00:00+25:00").is_err());
    }
}
