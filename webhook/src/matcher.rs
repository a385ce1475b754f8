//! Which requests a policy sees, decided in the host before any plugin runs:
//! an object no policy matches costs no Wasm call.

use crate::config::{LabelSelector, MatchSpec, OperationMatch, SelectorOperator};
use crate::review::AdmissionRequest;
use serde_json::{Map, Value};

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
    pub fn matches(&self, request: &AdmissionRequest) -> bool {
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
            && spec.namespace_selector.as_ref().is_none_or(|s| {
                let mut labels = Map::new();
                labels.insert(NAMESPACE_NAME_LABEL.into(), Value::String(namespace.into()));
                selector_matches(s, Some(&labels))
            })
            && spec.object_selector.as_ref().is_none_or(|s| selector_matches(s, request.labels()))
    }

    pub fn operations(&self) -> &[OperationMatch] {
        &self.spec.operations
    }
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

pub fn selector_matches(selector: &LabelSelector, labels: Option<&Map<String, Value>>) -> bool {
    let get = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
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
        assert!(m.matches(&request("CREATE", "pods", None, json!({"app": "pulsar", "component": "broker"}))));
        assert!(!m.matches(&request("CREATE", "pods", None, json!({"app": "pulsar", "component": "bookie"}))));
        assert!(!m.matches(&request("UPDATE", "pods", None, json!({"app": "pulsar"}))));
        assert!(!m.matches(&request("CREATE", "pods", Some("status"), json!({"app": "pulsar"}))));
        assert!(!m.matches(&request("CREATE", "pods", None, json!({"app": "kafka"}))));
    }
}
