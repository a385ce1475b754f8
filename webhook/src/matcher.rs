//! Which requests a policy sees, decided in the host before any plugin runs:
//! an object no policy matches costs no Wasm call.

use crate::config::{LabelSelector, MatchSpec, OperationMatch, SelectorOperator};
use crate::namespaces::Namespaces;
use crate::review::AdmissionRequest;
use serde_json::Value;

/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

#[derive(Debug, Clone, Default)]
pub struct Matcher {
    spec: MatchSpec,
}

impl From<MatchSpec> for Matcher {
    fn from(spec: MatchSpec) -> Self {
        Self { spec }
    }
}

impl Matcher {
    /// Whether `request` is for this policy. `namespaces` gives namespace
    /// labels when berth can read them; without it only the name label
    /// (`kubernetes.io/metadata.name`) is known, and configurations that
    /// need more are refused at load (policy.rs).
    pub fn matches(&self, request: &AdmissionRequest, namespaces: Option<&Namespaces>) -> bool {
        let spec = &self.spec;
        let namespace = request.namespace.as_deref().unwrap_or("");
        (spec.operations.is_empty() || spec.operations.iter().any(|op| op.matches(request.operation)))
            && (spec.resources.is_empty()
                || spec
                    .resources
                    .iter()
                    .any(|r| resource_matches(r, &request.resource.resource, request.sub_resource.as_deref())))
            && (spec.namespaces.is_empty() || spec.namespaces.iter().any(|n| n == namespace))
            && !spec.exclude_namespaces.iter().any(|n| n == namespace)
            && spec.namespace_selector.as_ref().is_none_or(|s| namespace_matches(s, request, namespace, namespaces))
            && spec.object_selector.as_ref().is_none_or(|s| object_matches(s, request))
    }

    pub fn operations(&self) -> &[OperationMatch] {
        &self.spec.operations
    }

    /// Label keys the namespace selector reads besides the name label.
    pub fn namespace_label_keys(&self) -> impl Iterator<Item = &str> {
        let selector = self.spec.namespace_selector.iter();
        selector
            .flat_map(|s| s.match_labels.keys().chain(s.match_expressions.iter().map(|e| &e.key)))
            .map(String::as_str)
            .filter(|key| *key != NAMESPACE_NAME_LABEL)
    }
}

/// Webhook semantics: a Namespace is matched on its own labels (the old
/// object's on DELETE; the apiserver sets `namespace` to its own name, so
/// that field does not tell); another namespaced object on its namespace's
/// labels; other cluster-scoped objects always match.
fn namespace_matches(
    selector: &LabelSelector,
    request: &AdmissionRequest,
    namespace: &str,
    namespaces: Option<&Namespaces>,
) -> bool {
    if request.resource.resource == "namespaces" && request.sub_resource.as_deref().unwrap_or("").is_empty() {
        let labels = request.labels();
        return selector_matches(selector, |key| labels.and_then(|l| l.get(key)).and_then(Value::as_str));
    }
    if namespace.is_empty() {
        return true;
    }
    let with_name = |labels: Option<&crate::namespaces::Labels>| {
        selector_matches(selector, |key| {
            if key == NAMESPACE_NAME_LABEL {
                return Some(namespace);
            }
            labels.and_then(|l| l.get(key)).map(String::as_str)
        })
    };
    match namespaces {
        Some(namespaces) => namespaces.with_labels(namespace, with_name),
        None => with_name(None),
    }
}

/// Webhook semantics: the labels of `object` or of `oldObject`, whichever
/// is present; on UPDATE either one matching is enough, so an update cannot
/// leave a policy by dropping the label the policy selects on.
fn object_matches(selector: &LabelSelector, request: &AdmissionRequest) -> bool {
    [&request.object, &request.old_object].into_iter().flatten().filter(|o| !o.is_null()).any(|object| {
        let labels = object.get("metadata").and_then(|m| m.get("labels")).and_then(Value::as_object);
        selector_matches(selector, |key| labels.and_then(|l| l.get(key)).and_then(Value::as_str))
    })
}

/// Webhook-rule semantics: `pods` is the resource only, `pods/status` one
/// subresource, `pods/*` every subresource, `*` every resource, `*/*` all.
fn resource_matches(rule: &str, resource: &str, sub: Option<&str>) -> bool {
    let sub = sub.unwrap_or("");
    match rule.split_once('/') {
        None => (rule == "*" || rule == resource) && sub.is_empty(),
        Some(("*", "*")) => true,
        Some((res, "*")) => res == resource && !sub.is_empty(),
        Some((res, s)) => (res == "*" || res == resource) && s == sub,
    }
}

/// A label selector against labels looked up by `get`.
pub fn selector_matches<'a>(selector: &LabelSelector, get: impl Fn(&str) -> Option<&'a str>) -> bool {
    selector.match_labels.iter().all(|(k, v)| get(k) == Some(v.as_str()))
        && selector.match_expressions.iter().all(|expr| {
            let value = get(&expr.key);
            match expr.operator {
                SelectorOperator::In => value.is_some_and(|v| expr.values.iter().any(|x| x == v)),
                SelectorOperator::NotIn => value.is_none_or(|v| !expr.values.iter().any(|x| x == v)),
                SelectorOperator::Exists => value.is_some(),
                SelectorOperator::DoesNotExist => value.is_none(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LabelRequirement;
    use serde_json::json;

    fn request(op: &str, resource: &str, sub: Option<&str>, labels: Value) -> AdmissionRequest {
        serde_json::from_value(json!({
            "uid": "u", "operation": op, "namespace": "ns",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "subResource": sub,
            "object": {"metadata": {"labels": labels}},
        }))
        .unwrap()
    }

    #[test]
    fn resources_follow_webhook_rule_semantics() {
        assert!(resource_matches("pods", "pods", None));
        assert!(!resource_matches("pods", "pods", Some("status")));
        assert!(resource_matches("pods/status", "pods", Some("status")));
        assert!(resource_matches("pods/*", "pods", Some("exec")));
        assert!(!resource_matches("pods/*", "pods", None));
        assert!(resource_matches("*", "persistentvolumeclaims", None));
        assert!(resource_matches("*/*", "pods", Some("status")));
    }

    #[test]
    fn selectors_and_operations() {
        let spec = MatchSpec {
            operations: vec![OperationMatch::Create],
            resources: vec!["pods".into()],
            object_selector: Some(LabelSelector {
                match_labels: [("app".to_owned(), "pulsar".to_owned())].into(),
                match_expressions: vec![LabelRequirement {
                    key: "component".into(),
                    operator: SelectorOperator::NotIn,
                    values: vec!["zookeeper".into(), "bookie".into()],
                }],
            }),
            ..Default::default()
        };
        let m = Matcher::from(spec);
        let matches = |r: AdmissionRequest| m.matches(&r, None);
        assert!(matches(request("CREATE", "pods", None, json!({"app": "pulsar", "component": "broker"}))));
        assert!(!matches(request("CREATE", "pods", None, json!({"app": "pulsar", "component": "bookie"}))));
        assert!(!matches(request("UPDATE", "pods", None, json!({"app": "pulsar"}))));
        assert!(!matches(request("CREATE", "pods", Some("status"), json!({"app": "pulsar"}))));
        assert!(!matches(request("CREATE", "pods", None, json!({"app": "kafka"}))));
    }

    #[test]
    fn an_update_matches_on_the_old_labels_or_the_new() {
        let m = Matcher::from(MatchSpec {
            object_selector: Some(LabelSelector {
                match_labels: [("app".to_owned(), "pulsar".to_owned())].into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let update = |old: Value, new: Value| -> AdmissionRequest {
            serde_json::from_value(json!({
                "uid": "u", "operation": "UPDATE", "namespace": "ns",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "object": {"metadata": {"labels": new}}, "oldObject": {"metadata": {"labels": old}},
            }))
            .unwrap()
        };
        // Dropping the label in the same update as an image change does not
        // take the pod out of the policy; adding it brings the pod in.
        assert!(m.matches(&update(json!({"app": "pulsar"}), json!({})), None));
        assert!(m.matches(&update(json!({}), json!({"app": "pulsar"})), None));
        assert!(!m.matches(&update(json!({"app": "nginx"}), json!({})), None));
        // DELETE: the old object alone.
        let delete: AdmissionRequest = serde_json::from_value(json!({
            "uid": "u", "operation": "DELETE", "namespace": "ns",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "object": null, "oldObject": {"metadata": {"labels": {"app": "pulsar"}}},
        }))
        .unwrap();
        assert!(m.matches(&delete, None));
    }

    #[test]
    fn namespace_selectors_use_the_namespace_labels() {
        let spec = MatchSpec {
            namespace_selector: Some(LabelSelector {
                match_labels: [("berth.dev/enabled".to_owned(), "true".to_owned())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = Matcher::from(spec);
        let pod = request("CREATE", "pods", None, json!({}));
        let enabled =
            Namespaces::fixed([("ns".to_owned(), [("berth.dev/enabled".to_owned(), "true".to_owned())].into())]);
        let disabled = Namespaces::fixed([("ns".to_owned(), Default::default())]);
        assert!(m.matches(&pod, Some(&enabled)));
        assert!(!m.matches(&pod, Some(&disabled)));
        assert!(!m.matches(&pod, None), "unknown labels do not match");
        assert_eq!(m.namespace_label_keys().collect::<Vec<_>>(), ["berth.dev/enabled"]);

        let by_name = Matcher::from(MatchSpec {
            namespace_selector: Some(LabelSelector {
                match_expressions: vec![LabelRequirement {
                    key: NAMESPACE_NAME_LABEL.into(),
                    operator: SelectorOperator::NotIn,
                    values: vec!["kube-system".into()],
                }],
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(by_name.matches(&pod, None), "the name label is always known");

        // A Namespace being created is matched on its own labels, not on
        // what berth has (or has not yet) seen of it.
        let mut namespace = request("CREATE", "namespaces", None, json!({"berth.dev/enabled": "true"}));
        namespace.kind.kind = "Namespace".into();
        namespace.namespace = Some("new".into());
        assert!(m.matches(&namespace, Some(&disabled)));
        assert!(m.matches(&namespace, None));
        assert_eq!(by_name.namespace_label_keys().count(), 0);
    }
}
