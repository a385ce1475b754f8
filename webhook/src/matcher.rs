//! Which requests a policy sees, decided in the host before any plugin runs:
//! an object no policy matches costs no Wasm call. The request's own fields
//! are checked first; namespace labels and owners are read from memory
//! (cluster/) only when a policy gets that far, once per request.

use crate::cluster::{Cluster, ContextError, Needs, Owner};
use crate::config::{HelmRelease, LabelSelector, MatchSpec, OperationMatch, SelectorOperator};
use crate::review::AdmissionRequest;
use std::cell::OnceCell;
use std::sync::Arc;

/// The label every namespace carries with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The labels charts put their release name in: today's and helm/charts'.
const RELEASE_LABELS: [&str; 2] = ["app.kubernetes.io/instance", "release"];

#[derive(Debug, Clone, Default)]
pub struct Matcher {
    spec: MatchSpec,
}

impl From<MatchSpec> for Matcher {
    fn from(spec: MatchSpec) -> Self {
        Self { spec }
    }
}

/// One request, and what matching has looked up about it so far: the
/// owner chain is walked once however many policies ask.
pub struct Facts<'r> {
    request: &'r AdmissionRequest,
    cluster: &'r Cluster,
    owners: OnceCell<Result<Vec<Arc<Owner>>, ContextError>>,
}

impl<'r> Facts<'r> {
    pub fn new(request: &'r AdmissionRequest, cluster: &'r Cluster) -> Self {
        Self { request, cluster, owners: OnceCell::new() }
    }

    fn namespace(&self) -> &'r str {
        self.request.namespace.as_deref().unwrap_or("")
    }

    fn owners(&self) -> Result<&[Arc<Owner>], ContextError> {
        let chain = self.owners.get_or_init(|| {
            let first = self.request.subject().and_then(|object| object.meta().controller.clone());
            if first.is_none() {
                return Ok(Vec::new());
            }
            self.cluster.owner_chain(self.namespace(), first)
        });
        chain.as_deref().map_err(Clone::clone)
    }
}

impl Matcher {
    /// Whether the request of `facts` is for this policy; an error when a
    /// lookup it needs could not be answered.
    pub fn matches(&self, facts: &Facts<'_>) -> Result<bool, ContextError> {
        spec_matches(&self.spec, facts)
    }

    pub fn operations(&self) -> &[OperationMatch] {
        &self.spec.operations
    }

    /// Label keys the namespace selectors read besides the name label.
    pub fn namespace_label_keys(&self) -> Vec<&str> {
        let mut keys = Vec::new();
        label_keys(&self.spec, &mut keys);
        keys
    }

    /// Label keys the owner selectors read: all berth keeps of an owner's
    /// labels.
    pub fn owner_label_keys(&self) -> Vec<&str> {
        let mut keys = Vec::new();
        owner_keys(&self.spec, &mut keys);
        keys
    }

    /// What of the cluster this matcher reads.
    pub fn needs(&self) -> Needs {
        Needs {
            namespace_labels: !self.namespace_label_keys().is_empty(),
            owners: needs_owners(&self.spec),
            ..Needs::default()
        }
    }
}

fn label_keys<'a>(spec: &'a MatchSpec, keys: &mut Vec<&'a str>) {
    let selector = spec.namespace_selector.iter();
    keys.extend(
        selector
            .flat_map(|s| s.match_labels.keys().chain(s.match_expressions.iter().map(|e| &e.key)))
            .map(String::as_str)
            .filter(|key| *key != NAMESPACE_NAME_LABEL),
    );
    for alternative in &spec.any_of {
        label_keys(alternative, keys);
    }
}

fn owner_keys<'a>(spec: &'a MatchSpec, keys: &mut Vec<&'a str>) {
    let selector = spec.owner.iter();
    keys.extend(
        selector
            .flat_map(|s| s.match_labels.keys().chain(s.match_expressions.iter().map(|e| &e.key)))
            .map(String::as_str),
    );
    for alternative in &spec.any_of {
        owner_keys(alternative, keys);
    }
}

fn needs_owners(spec: &MatchSpec) -> bool {
    spec.owner.is_some() || !spec.helm_release.is_empty() || spec.any_of.iter().any(needs_owners)
}

fn spec_matches(spec: &MatchSpec, facts: &Facts<'_>) -> Result<bool, ContextError> {
    let request = facts.request;
    let namespace = facts.namespace();
    let cheap = (spec.operations.is_empty() || spec.operations.iter().any(|op| op.matches(request.operation)))
        && (spec.resources.is_empty()
            || spec
                .resources
                .iter()
                .any(|r| resource_matches(r, &request.resource.resource, request.sub_resource.as_deref())))
        && (spec.namespaces.is_empty() || spec.namespaces.iter().any(|n| n == namespace))
        && !spec.exclude_namespaces.iter().any(|n| n == namespace)
        && spec.object_selector.as_ref().is_none_or(|s| object_matches(s, request));
    if !cheap {
        return Ok(false);
    }
    if let Some(selector) = &spec.namespace_selector
        && !namespace_matches(selector, facts)?
    {
        return Ok(false);
    }
    if !spec.helm_release.is_empty() && !helm_release_matches(&spec.helm_release, facts)? {
        return Ok(false);
    }
    if let Some(selector) = &spec.owner
        && !facts.owners()?.iter().any(|owner| selector_matches(selector, |key| owner.label(key)))
    {
        return Ok(false);
    }
    if spec.any_of.is_empty() {
        return Ok(true);
    }
    // One alternative that matches is enough, even if another could not be
    // decided; an error counts only when nothing matched.
    let mut undecided = None;
    for alternative in &spec.any_of {
        match spec_matches(alternative, facts) {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(err) => undecided = undecided.or(Some(err)),
        }
    }
    undecided.map_or(Ok(false), Err)
}

/// Webhook semantics for objectSelector: the object's labels or the old
/// object's, either will do. An update that drops a chart label is still
/// judged (the old object had it), and a DELETE is matched on what it removes.
fn object_matches(selector: &LabelSelector, request: &AdmissionRequest) -> bool {
    [&request.object, &request.old_object]
        .into_iter()
        .flatten()
        .any(|object| selector_matches(selector, |key| object.meta().labels.get(key).map(String::as_str)))
}

fn object_label<'a>(request: &'a AdmissionRequest, key: &str) -> Option<&'a str> {
    request.labels()?.get(key).map(String::as_str)
}

/// The object's release labels or Helm annotations, then its owners'
/// annotations (an object a controller made carries only what its template
/// gave it; `helm install` annotates the controller).
fn helm_release_matches(releases: &[HelmRelease], facts: &Facts<'_>) -> Result<bool, ContextError> {
    let request = facts.request;
    let namespace = facts.namespace();
    let is = |ns: &str, name: &str| releases.iter().any(|r| r.namespace == ns && r.name == name);
    if RELEASE_LABELS.iter().any(|key| object_label(request, key).is_some_and(|name| is(namespace, name))) {
        return Ok(true);
    }
    let annotation = |key: &str| request.subject()?.meta().annotations.get(key).map(String::as_str);
    if let Some(name) = annotation(crate::cluster::HELM_RELEASE_NAME)
        && is(annotation(crate::cluster::HELM_RELEASE_NAMESPACE).unwrap_or(namespace), name)
    {
        return Ok(true);
    }
    Ok(facts.owners()?.iter().any(|owner| owner.helm_release().is_some_and(|(ns, name)| is(ns, name))))
}

/// Webhook semantics: a Namespace is matched on its own labels (the old
/// object's on DELETE; the apiserver sets `namespace` to its own name, so
/// that field does not tell); another namespaced object on its namespace's
/// labels; other cluster-scoped objects always match.
fn namespace_matches(selector: &LabelSelector, facts: &Facts<'_>) -> Result<bool, ContextError> {
    let request = facts.request;
    if request.resource.resource == "namespaces" && request.sub_resource.as_deref().unwrap_or("").is_empty() {
        return Ok(selector_matches(selector, |key| object_label(request, key)));
    }
    let namespace = facts.namespace();
    if namespace.is_empty() {
        return Ok(true);
    }
    let labels = facts.cluster.namespace_labels(namespace)?;
    Ok(selector_matches(selector, |key| {
        if key == NAMESPACE_NAME_LABEL {
            return Some(namespace);
        }
        labels.as_ref().and_then(|l| l.labels.get(key)).map(String::as_str)
    }))
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
    use serde_json::Value;
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

    fn matches(spec: &MatchSpec, request: &AdmissionRequest, cluster: &Cluster) -> Result<bool, ContextError> {
        Matcher::from(spec.clone()).matches(&Facts::new(request, cluster))
    }

    fn labels(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
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
        let none = Cluster::none();
        let check = |r: AdmissionRequest| matches(&spec, &r, &none).unwrap();
        assert!(check(request("CREATE", "pods", None, json!({"app": "pulsar", "component": "broker"}))));
        assert!(!check(request("CREATE", "pods", None, json!({"app": "pulsar", "component": "bookie"}))));
        assert!(!check(request("UPDATE", "pods", None, json!({"app": "pulsar"}))));
        assert!(!check(request("CREATE", "pods", Some("status"), json!({"app": "pulsar"}))));
        assert!(!check(request("CREATE", "pods", None, json!({"app": "kafka"}))));
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
        assert!(m.matches(&Facts::new(&update(json!({"app": "pulsar"}), json!({})), &Cluster::none())).unwrap());
        assert!(m.matches(&Facts::new(&update(json!({}), json!({"app": "pulsar"})), &Cluster::none())).unwrap());
        assert!(!m.matches(&Facts::new(&update(json!({"app": "nginx"}), json!({})), &Cluster::none())).unwrap());
        // DELETE: the old object alone.
        let delete: AdmissionRequest = serde_json::from_value(json!({
            "uid": "u", "operation": "DELETE", "namespace": "ns",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "object": null, "oldObject": {"metadata": {"labels": {"app": "pulsar"}}},
        }))
        .unwrap();
        assert!(m.matches(&Facts::new(&delete, &Cluster::none())).unwrap());
    }

    #[test]
    fn namespace_selectors_use_the_namespace_labels() {
        let spec =
            MatchSpec { namespace_selector: Some(labels(&[("berth.dev/enabled", "true")])), ..Default::default() };
        let pod = request("CREATE", "pods", None, json!({}));
        let enabled = Cluster::fixed_namespaces([("ns", &[("berth.dev/enabled", "true")][..])]);
        let disabled = Cluster::fixed_namespaces([("ns", &[][..])]);
        assert!(matches(&spec, &pod, &enabled).unwrap());
        assert!(!matches(&spec, &pod, &disabled).unwrap());
        assert!(!matches(&spec, &pod, &Cluster::none()).unwrap(), "unknown labels do not match");
        assert_eq!(Matcher::from(spec.clone()).namespace_label_keys(), ["berth.dev/enabled"]);
        assert!(Matcher::from(spec.clone()).needs().namespace_labels);

        let by_name = MatchSpec {
            namespace_selector: Some(LabelSelector {
                match_expressions: vec![LabelRequirement {
                    key: NAMESPACE_NAME_LABEL.into(),
                    operator: SelectorOperator::NotIn,
                    values: vec!["kube-system".into()],
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches(&by_name, &pod, &Cluster::none()).unwrap(), "the name label is always known");

        // A Namespace being created is matched on its own labels, not on
        // what berth has (or has not yet) seen of it.
        let mut namespace = request("CREATE", "namespaces", None, json!({"berth.dev/enabled": "true"}));
        namespace.kind.kind = "Namespace".into();
        namespace.namespace = Some("new".into());
        assert!(matches(&spec, &namespace, &disabled).unwrap());
        assert!(matches(&spec, &namespace, &Cluster::none()).unwrap());
        assert!(!Matcher::from(by_name).needs().any());
    }

    fn job_pod(labels: Value) -> AdmissionRequest {
        let mut pod = request("CREATE", "pods", None, labels);
        let mut object = pod.object.as_ref().unwrap().to_value().unwrap();
        object["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "init", "uid": "job-uid", "controller": true}]);
        pod.object = Some((&object).try_into().unwrap());
        pod
    }

    fn cluster_with_job(job_labels: &[(&str, &str)]) -> Cluster {
        let labels: serde_json::Map<String, Value> =
            job_labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        Cluster::fixed_objects(vec![json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {
                "name": "init", "namespace": "ns", "uid": "job-uid", "labels": labels,
                "annotations": {"meta.helm.sh/release-name": "pulsar", "meta.helm.sh/release-namespace": "ns"},
            },
        })])
    }

    #[test]
    fn owner_selectors_read_the_owners_labels() {
        let spec = MatchSpec { owner: Some(labels(&[("app", "pulsar")])), ..Default::default() };
        assert!(Matcher::from(spec.clone()).needs().owners);
        let pod = job_pod(json!({"job-name": "init"}));
        assert!(matches(&spec, &pod, &cluster_with_job(&[("app", "pulsar")])).unwrap());
        assert!(!matches(&spec, &pod, &cluster_with_job(&[("app", "kafka")])).unwrap());
        // The pod's own labels are not its owner's.
        let unowned = request("CREATE", "pods", None, json!({"app": "pulsar"}));
        assert!(!matches(&spec, &unowned, &cluster_with_job(&[("app", "pulsar")])).unwrap());
    }

    #[test]
    fn any_of_takes_the_object_or_its_owner() {
        let spec = MatchSpec {
            resources: vec!["pods".into()],
            any_of: vec![
                MatchSpec { object_selector: Some(labels(&[("app", "pulsar")])), ..Default::default() },
                MatchSpec { owner: Some(labels(&[("app", "pulsar")])), ..Default::default() },
            ],
            ..Default::default()
        };
        let cluster = cluster_with_job(&[("app", "pulsar")]);
        assert!(matches(&spec, &job_pod(json!({})), &cluster).unwrap());
        assert!(matches(&spec, &request("CREATE", "pods", None, json!({"app": "pulsar"})), &Cluster::none()).unwrap());
        assert!(!matches(&spec, &job_pod(json!({})), &cluster_with_job(&[])).unwrap());
        assert!(
            !matches(&spec, &request("CREATE", "persistentvolumeclaims", None, json!({"app": "pulsar"})), &cluster)
                .unwrap()
        );
    }

    #[test]
    fn helm_releases_by_label_annotation_or_owner() {
        let spec = MatchSpec { helm_release: vec!["ns/pulsar".parse().unwrap()], ..Default::default() };
        let cluster = cluster_with_job(&[]);
        assert!(
            matches(&spec, &request("CREATE", "pods", None, json!({"release": "pulsar"})), &Cluster::none()).unwrap()
        );
        assert!(
            matches(
                &spec,
                &request("CREATE", "pods", None, json!({"app.kubernetes.io/instance": "pulsar"})),
                &Cluster::none()
            )
            .unwrap()
        );
        assert!(
            !matches(&spec, &request("CREATE", "pods", None, json!({"release": "kafka"})), &Cluster::none()).unwrap()
        );
        assert!(matches(&spec, &job_pod(json!({})), &cluster).unwrap(), "the Job's Helm annotations");
        let other = MatchSpec { helm_release: vec!["other/pulsar".parse().unwrap()], ..Default::default() };
        assert!(!matches(&other, &job_pod(json!({"release": "pulsar"})), &cluster).unwrap(), "another namespace");
        assert!("pulsar".parse::<HelmRelease>().is_err());
    }
}
