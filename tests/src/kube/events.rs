//! The one thing the stand-in lets a client write: `events.k8s.io/v1`
//! Events, created by POST and changed by a JSON merge patch, as berth's
//! Event writer does. Each is checked as kube-apiserver checks an Event
//! written through events.k8s.io/v1 (`ValidateEventCreate` and
//! `ValidateEventUpdate` in pkg/apis/core/validation/events.go), so a
//! shape the real API would refuse fails here too.

use serde_json::{Value, json};

/// Where a write may go: the Events of one namespace, or one Event.
pub const GROUP_VERSION: (&str, &str) = ("events.k8s.io", "v1");
pub const PLURAL: &str = "events";

/// Why the API refuses an Event: 422 with these messages.
pub type Invalid = Vec<String>;

/// Fields set by the API when it stores an object; the rest the client wrote.
const SERVER_SET: [&str; 4] = ["resourceVersion", "uid", "creationTimestamp", "managedFields"];
/// What an update through events.k8s.io/v1 may not change.
const IMMUTABLE: [&str; 9] = [
    "regarding",
    "related",
    "reason",
    "note",
    "type",
    "eventTime",
    "action",
    "reportingController",
    "reportingInstance",
];

fn text<'a>(event: &'a Value, field: &str) -> &'a str {
    event[field].as_str().unwrap_or("")
}

/// `2006-01-02T15:04:05.000000Z`: metav1.MicroTime's only form.
fn is_micro_time(value: &Value) -> bool {
    let Some(text) = value.as_str() else { return false };
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| range.into_iter().all(|i| bytes[i].is_ascii_digit());
    bytes.len() == 27
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && bytes[10] == b'T'
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16)
        && bytes[16] == b':'
        && digits(17..19)
        && bytes[19] == b'.'
        && digits(20..26)
        && bytes[26] == b'Z'
}

fn is_dns_subdomain(name: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 253
        && alnum(bytes[0])
        && alnum(bytes[bytes.len() - 1])
        && bytes.iter().all(|&c| alnum(c) || c == b'-' || c == b'.')
}

/// `prefix/name` or `name`, a Kubernetes qualified name.
fn is_qualified_name(text: &str) -> bool {
    let (prefix, name) = text.rsplit_once('/').map_or((None, text), |(p, n)| (Some(p), n));
    let ok_name = !name.is_empty()
        && name.len() <= 63
        && name.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    ok_name && prefix.is_none_or(is_dns_subdomain)
}

/// An Event created in `namespace`: what the API would refuse of it.
pub fn validate_create(event: &Value, namespace: &str) -> Result<(), Invalid> {
    let mut invalid = Vec::new();
    let mut require = |ok: bool, message: &str| {
        if !ok {
            invalid.push(message.to_owned());
        }
    };
    let name = event["metadata"]["name"].as_str().unwrap_or("");
    require(is_dns_subdomain(name), "metadata.name: a DNS-1123 subdomain is required");
    require(
        event["metadata"]["namespace"].as_str().is_none_or(|ns| ns == namespace),
        "metadata.namespace: does not match the namespace of the request",
    );
    require(is_micro_time(&event["eventTime"]), "eventTime: Required value (a MicroTime)");
    require(matches!(text(event, "type"), "Normal" | "Warning"), "type: must be Normal or Warning");
    let controller = text(event, "reportingController");
    require(is_qualified_name(controller), "reportingController: Required value (a qualified name)");
    for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
        let value = text(event, field);
        require(!value.is_empty() && value.len() <= limit, &format!("{field}: Required value, at most {limit} bytes"));
    }
    require(text(event, "note").len() <= 1024, "note: can have at most 1024 characters");
    let regarding_namespace = event["regarding"]["namespace"].as_str().unwrap_or("");
    require(
        !regarding_namespace.is_empty() || matches!(namespace, "default" | "kube-system"),
        "regarding.namespace: does not match event.namespace",
    );
    if !event["series"].is_null() {
        require(event["series"]["count"].as_i64().is_some_and(|c| c >= 2), "series.count: should be at least 2");
        require(is_micro_time(&event["series"]["lastObservedTime"]), "series.lastObservedTime: Required value");
    }
    for field in ["deprecatedCount", "deprecatedFirstTimestamp", "deprecatedLastTimestamp", "deprecatedSource"] {
        require(event[field].is_null(), &format!("{field}: needs to be unset"));
    }
    if invalid.is_empty() { Ok(()) } else { Err(invalid) }
}

/// `updated` replacing `stored`: what the API would refuse of it.
pub fn validate_update(stored: &Value, updated: &Value, namespace: &str) -> Result<(), Invalid> {
    let mut invalid = validate_create(updated, namespace).err().unwrap_or_default();
    for field in IMMUTABLE {
        if stored[field] != updated[field] {
            invalid.push(format!("{field}: field is immutable"));
        }
    }
    if invalid.is_empty() { Ok(()) } else { Err(invalid) }
}

/// RFC 7386: `patch` merged into `target`.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (key, value) in fields {
        if value.is_null() {
            if let Value::Object(map) = target {
                map.remove(key);
            }
        } else {
            merge(&mut target[key.as_str()], value);
        }
    }
}

/// The object as a client wrote it, without what the API sets.
pub fn as_written(object: &Value) -> Value {
    let mut written = object.clone();
    if let Some(metadata) = written["metadata"].as_object_mut() {
        for field in SERVER_SET {
            metadata.remove(field);
        }
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Value {
        json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "bookie.17f0", "namespace": "pulsar"},
            "eventTime": "2026-12-07T06:30:00.123456Z",
            "reportingController": "berth.dev/admission", "reportingInstance": "berth-0",
            "action": "Admit", "reason": "PolicyDenied", "type": "Warning", "note": "no",
            "regarding": {"apiVersion": "apps/v1", "kind": "StatefulSet", "namespace": "pulsar", "name": "bookie"},
        })
    }

    #[test]
    fn the_apis_rules_for_events() {
        assert_eq!(validate_create(&valid(), "pulsar"), Ok(()));
        let broken = |field: &str, value: Value| {
            let mut event = valid();
            event[field] = value;
            validate_create(&event, "pulsar").unwrap_err()
        };
        assert!(broken("eventTime", json!("2026-12-07T06:30:00Z"))[0].starts_with("eventTime"));
        assert!(broken("reportingController", json!("berth admission"))[0].starts_with("reportingController"));
        assert!(broken("note", json!("x".repeat(1025)))[0].starts_with("note"));
        assert!(broken("series", json!({"count": 1}))[0].starts_with("series.count"));
        assert!(broken("deprecatedCount", json!(3))[0].starts_with("deprecatedCount"));
        assert!(validate_create(&valid(), "default").is_err(), "another namespace than the path's");
        let mut patched = valid();
        merge(&mut patched, &json!({"series": {"count": 2, "lastObservedTime": "2026-12-07T06:31:00.000000Z"}}));
        assert_eq!(validate_update(&valid(), &patched, "pulsar"), Ok(()));
        merge(&mut patched, &json!({"note": "changed"}));
        assert_eq!(validate_update(&valid(), &patched, "pulsar").unwrap_err(), ["note: field is immutable"]);
    }
}
