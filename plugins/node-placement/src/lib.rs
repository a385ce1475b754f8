//! # node-placement
//!
//! Pins Pods to nodes. Sets the configured `spec.nodeSelector` entries
//! (creating the map if the Pod has none), and optionally requires a node
//! affinity: the configured match expressions are added to the Pod's
//! `requiredDuringSchedulingIgnoredDuringExecution` as one nodeSelectorTerm,
//! or, where the Pod already has terms (which Kubernetes ORs), to each of
//! them, so that every way the Pod can be scheduled satisfies them.
//!
//! What the Pod already has is kept. Where it disagrees with the policy (a
//! nodeSelector key with another value; a term with another expression on
//! the same key), `onConflict` decides: `keep` the Pod's (with a warning),
//! `override` it with the policy's, or `deny` the Pod. An identical entry or
//! expression is never added twice, so a second run changes nothing.

use berth_sdk::pod::Pod;
use berth_sdk::{Error, Patch, Request, Settings, SettingsError, Verdict, pointer};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

const REQUIRED: &str = "requiredDuringSchedulingIgnoredDuringExecution";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodePlacementSettings {
    /// Entries every Pod's nodeSelector must have.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub on_conflict: OnConflict,
    /// Match expressions of one required nodeSelectorTerm (ANDed).
    #[serde(default)]
    pub required_node_affinity: Vec<Requirement>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnConflict {
    /// Leave the Pod's value, and warn.
    #[default]
    Keep,
    /// Replace the Pod's value with the policy's.
    Override,
    /// Refuse the Pod.
    Deny,
}

/// A node selector requirement, as in a nodeSelectorTerm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: NodeOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

impl NodeOperator {
    fn as_str(self) -> &'static str {
        match self {
            Self::In => "In",
            Self::NotIn => "NotIn",
            Self::Exists => "Exists",
            Self::DoesNotExist => "DoesNotExist",
            Self::Gt => "Gt",
            Self::Lt => "Lt",
        }
    }
}

impl Requirement {
    /// Whether the Pod's expression `e` is this one (values as a set).
    fn is(&self, e: &Expr) -> bool {
        e.key == self.key
            && e.operator == self.operator.as_str()
            && same_values(&self.values, e.values.as_deref().unwrap_or_default())
    }

    fn describe(&self) -> String {
        describe(&self.key, self.operator.as_str(), &self.values)
    }
}

fn same_values(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&String> = a.iter().collect();
    let mut b: Vec<&String> = b.iter().collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

fn describe(key: &str, operator: &str, values: &[String]) -> String {
    if values.is_empty() { format!("{key} {operator}") } else { format!("{key} {operator} [{}]", values.join(", ")) }
}

impl Settings for NodePlacementSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.node_selector.is_empty() && self.required_node_affinity.is_empty() {
            return Err(SettingsError::new(".", "set nodeSelector, requiredNodeAffinity or both"));
        }
        for (key, value) in &self.node_selector {
            check_label_key(key)
                .map_err(|reason| SettingsError::new("nodeSelector", format!("key {key:?} {reason}")))?;
            check_label_value(value).map_err(|reason| {
                SettingsError::new(format!("nodeSelector.{key}"), format!("value {value:?} {reason}"))
            })?;
        }
        for (i, r) in self.required_node_affinity.iter().enumerate() {
            let field = |name: &str| format!("requiredNodeAffinity[{i}].{name}");
            check_label_key(&r.key)
                .map_err(|reason| SettingsError::new(field("key"), format!("{:?} {reason}", r.key)))?;
            match r.operator {
                NodeOperator::In | NodeOperator::NotIn => {
                    if r.values.is_empty() {
                        return Err(SettingsError::new(
                            field("values"),
                            format!("must not be empty with operator {}", r.operator.as_str()),
                        ));
                    }
                    for value in &r.values {
                        check_label_value(value)
                            .map_err(|reason| SettingsError::new(field("values"), format!("{value:?} {reason}")))?;
                    }
                }
                NodeOperator::Exists | NodeOperator::DoesNotExist => {
                    if !r.values.is_empty() {
                        return Err(SettingsError::new(
                            field("values"),
                            format!("must be empty with operator {}", r.operator.as_str()),
                        ));
                    }
                }
                NodeOperator::Gt | NodeOperator::Lt => {
                    if r.values.len() != 1 || r.values[0].parse::<i64>().is_err() {
                        return Err(SettingsError::new(
                            field("values"),
                            format!("must be exactly one integer with operator {}", r.operator.as_str()),
                        ));
                    }
                }
            }
            if self.required_node_affinity[..i].contains(r) {
                return Err(SettingsError::new(format!("requiredNodeAffinity[{i}]"), "is listed twice"));
            }
        }
        Ok(())
    }
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name.
fn check_label_key(key: &str) -> Result<(), &'static str> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let label_ok = |l: &str| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        };
        if prefix.is_empty() || prefix.len() > 253 || !prefix.split('.').all(label_ok) {
            return Err("has a prefix that is not a lowercase DNS subdomain");
        }
    }
    if name.is_empty() {
        return Err("has an empty name");
    }
    check_label_value(name)
}

/// A label value: empty, or up to 63 of `[A-Za-z0-9._-]`, alphanumeric at
/// both ends.
fn check_label_value(value: &str) -> Result<(), &'static str> {
    let b = value.as_bytes();
    if b.is_empty() {
        return Ok(());
    }
    if b.len() > 63 {
        return Err("is longer than 63 characters");
    }
    if !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Err("must start and end with a letter or digit");
    }
    if !b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')) {
        return Err("may have only letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    node_selector: Option<BTreeMap<String, String>>,
    #[serde(default)]
    affinity: Option<Affinity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Affinity {
    #[serde(default)]
    node_affinity: Option<NodeAffinity>,
}

#[derive(Deserialize)]
struct NodeAffinity {
    #[serde(default, rename = "requiredDuringSchedulingIgnoredDuringExecution")]
    required: Option<NodeSelector>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeSelector {
    #[serde(default)]
    node_selector_terms: Option<Vec<Term>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Term {
    #[serde(default)]
    match_expressions: Option<Vec<Expr>>,
}

/// A Pod's node selector requirement, read leniently and written back as
/// it was.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Expr {
    key: String,
    operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    values: Option<Vec<String>>,
}

/// What the Pod disagrees with; with `onConflict: deny`, the reasons.
#[derive(Default)]
struct Outcome {
    patch: Patch,
    conflicts: Vec<String>,
    warnings: Vec<String>,
}

pub fn evaluate(request: &Request, settings: &NodePlacementSettings) -> Result<Verdict, Error> {
    request.require_kind("Pod", "node-placement")?;
    let pod: Pod<Spec> = request.object()?;
    let mut out = Outcome::default();
    node_selector(pod.spec.node_selector, settings, &mut out);
    if !settings.required_node_affinity.is_empty() {
        node_affinity(pod.spec.affinity, settings, &mut out)?;
    }
    if settings.on_conflict == OnConflict::Deny && !out.conflicts.is_empty() {
        return Ok(Verdict::deny(out.conflicts.join("; ")));
    }
    let mut verdict = Verdict::mutate(out.patch);
    for warning in out.warnings {
        verdict = verdict.with_warning(warning);
    }
    Ok(verdict)
}

fn node_selector(existing: Option<BTreeMap<String, String>>, settings: &NodePlacementSettings, out: &mut Outcome) {
    if settings.node_selector.is_empty() {
        return;
    }
    let Some(existing) = existing else {
        out.patch.push(add("/spec/nodeSelector".to_owned(), json!(settings.node_selector)));
        return;
    };
    for (key, wanted) in &settings.node_selector {
        let path = pointer(["spec", "nodeSelector", key]);
        match existing.get(key) {
            None => out.patch.push(add(path, json!(wanted))),
            Some(actual) if actual == wanted => {}
            Some(actual) => match settings.on_conflict {
                OnConflict::Keep => {
                    out.warnings.push(format!("kept nodeSelector {key}={actual} (the policy's is {wanted})"))
                }
                OnConflict::Override => out.patch.push(berth_sdk::PatchOp::Replace { path, value: json!(wanted) }),
                OnConflict::Deny => {
                    out.conflicts.push(format!("nodeSelector {key} is {actual:?}; this policy requires {wanted:?}"))
                }
            },
        }
    }
}

fn node_affinity(affinity: Option<Affinity>, settings: &NodePlacementSettings, out: &mut Outcome) -> Result<(), Error> {
    let ours = &settings.required_node_affinity;
    let term = json!({ "matchExpressions": ours });
    let required = json!({ "nodeSelectorTerms": [term] });
    let Some(affinity) = affinity else {
        out.patch.push(add("/spec/affinity".to_owned(), json!({ "nodeAffinity": { REQUIRED: required } })));
        return Ok(());
    };
    let Some(node_affinity) = affinity.node_affinity else {
        out.patch.push(add("/spec/affinity/nodeAffinity".to_owned(), json!({ REQUIRED: required })));
        return Ok(());
    };
    let Some(selector) = node_affinity.required else {
        out.patch.push(add(pointer(["spec", "affinity", "nodeAffinity", REQUIRED]), required));
        return Ok(());
    };
    let terms = selector.node_selector_terms.unwrap_or_default();
    if terms.is_empty() {
        out.patch
            .push(add(pointer(["spec", "affinity", "nodeAffinity", REQUIRED, "nodeSelectorTerms"]), json!([term])));
        return Ok(());
    }
    // Kubernetes ORs the terms: each must carry the requirement.
    for (i, term) in terms.into_iter().enumerate() {
        let index = i.to_string();
        let path =
            pointer(["spec", "affinity", "nodeAffinity", REQUIRED, "nodeSelectorTerms", &index, "matchExpressions"]);
        let had_list = term.match_expressions.is_some();
        let existing = term.match_expressions.unwrap_or_default();
        let mut missing: Vec<&Requirement> = Vec::new();
        let mut conflicting: Vec<&Requirement> = Vec::new();
        for wanted in ours {
            if existing.iter().any(|e| wanted.is(e)) {
                continue;
            }
            match existing.iter().find(|e| e.key == wanted.key) {
                None => missing.push(wanted),
                Some(e) => {
                    conflicting.push(wanted);
                    let theirs = describe(&e.key, &e.operator, e.values.as_deref().unwrap_or_default());
                    match settings.on_conflict {
                        OnConflict::Keep => out.warnings.push(format!(
                            "kept node affinity term {i}'s {theirs} (the policy's is {})",
                            wanted.describe()
                        )),
                        OnConflict::Deny => out.conflicts.push(format!(
                            "required node affinity term {i} has {theirs}; this policy requires {}",
                            wanted.describe()
                        )),
                        OnConflict::Override => {}
                    }
                }
            }
        }
        if settings.on_conflict == OnConflict::Override && !conflicting.is_empty() {
            // The Pod's expressions on a conflicting key give way to the
            // policy's; everything else stays, in order.
            let mut list: Vec<serde_json::Value> = existing
                .iter()
                .filter(|e| !conflicting.iter().any(|w| w.key == e.key) || ours.iter().any(|w| w.is(e)))
                .map(serde_json::to_value)
                .collect::<Result<_, _>>()?;
            for wanted in missing.iter().chain(&conflicting) {
                list.push(serde_json::to_value(wanted)?);
            }
            out.patch.push(berth_sdk::PatchOp::Replace { path, value: list.into() });
        } else if !missing.is_empty() {
            if had_list {
                for wanted in missing {
                    out.patch.push(add(format!("{path}/-"), serde_json::to_value(wanted)?));
                }
            } else {
                out.patch.push(add(path, serde_json::to_value(&missing)?));
            }
        }
    }
    Ok(())
}

fn add(path: String, value: serde_json::Value) -> berth_sdk::PatchOp {
    berth_sdk::PatchOp::Add { path, value }
}

berth_sdk::export_plugin!(NodePlacementSettings, evaluate);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::{Decision, testing::Harness};
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::Value;

    const FIXTURES: &str = "../../tests/fixtures";
    const BOOKIE: &str = "pulsar/reviews/005-pod-pulsar-bookie-0.json";
    const MANAGER: &str = "pulsar/reviews/019-pod-pulsar-pulsar-manager-0.json";
    const ROLE: &str = "node-role.kubernetes.io/pulsar";

    fn fixture(file: &str) -> String {
        format!("{FIXTURES}/{file}")
    }

    fn harness(settings: Value) -> Harness<NodePlacementSettings> {
        Harness::new(evaluate).settings(settings)
    }

    fn selector_only() -> Harness<NodePlacementSettings> {
        harness(json!({"nodeSelector": {ROLE: "pulsar"}}))
    }

    fn affinity_settings(on_conflict: &str) -> Value {
        json!({
            "onConflict": on_conflict,
            "requiredNodeAffinity": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]},
                {"key": "node.example.com/spot", "operator": "DoesNotExist"},
            ]
        })
    }

    /// A fixture request with `spec` fields replaced.
    fn with_spec(file: &str, fields: Value) -> Value {
        let review: Value = serde_json::from_str(&std::fs::read_to_string(fixture(file)).unwrap()).unwrap();
        let mut request = review["request"].clone();
        for (k, v) in fields.as_object().unwrap() {
            request["object"]["spec"][k] = v.clone();
        }
        request
    }

    fn denial(verdict: &Verdict) -> &str {
        match &verdict.decision {
            Decision::Deny { message, .. } => message,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn creates_the_node_selector() {
        let outcome = selector_only().run_file(fixture(BOOKIE));
        let pod: Pod = outcome.object();
        let selector = pod.spec.unwrap().node_selector.unwrap();
        assert_eq!(selector, [(ROLE.to_owned(), "pulsar".to_owned())].into());
        assert_eq!(selector_only().run_request(outcome.reinvocation()).verdict(), &Verdict::allow());
    }

    #[test]
    fn adds_to_an_existing_node_selector() {
        let request = with_spec(BOOKIE, json!({"nodeSelector": {"kubernetes.io/os": "linux"}}));
        let pod = selector_only().run_request(request).object_value();
        assert_eq!(pod["spec"]["nodeSelector"], json!({"kubernetes.io/os": "linux", ROLE: "pulsar"}));
    }

    #[test]
    fn conflicts_keep_override_or_deny() {
        let request = with_spec(BOOKIE, json!({"nodeSelector": {ROLE: "shared"}}));
        let keep = selector_only().run_request(request.clone());
        assert_eq!(keep.verdict().patch(), None);
        assert!(keep.verdict().is_allowed());
        assert_eq!(keep.verdict().warnings, [format!("kept nodeSelector {ROLE}=shared (the policy's is pulsar)")]);

        let h = harness(json!({"nodeSelector": {ROLE: "pulsar"}, "onConflict": "override"}));
        let outcome = h.run_request(request.clone());
        assert_eq!(outcome.object_value()["spec"]["nodeSelector"], json!({ROLE: "pulsar"}));
        assert_eq!(h.run_request(outcome.reinvocation()).verdict(), &Verdict::allow());

        let h = harness(json!({"nodeSelector": {ROLE: "pulsar"}, "onConflict": "deny"}));
        assert_eq!(
            denial(h.run_request(request).verdict()),
            format!("nodeSelector {ROLE} is \"shared\"; this policy requires \"pulsar\"")
        );
    }

    #[test]
    fn adds_a_required_term_next_to_pod_anti_affinity() {
        let h = harness(affinity_settings("keep"));
        let outcome = h.run_file(fixture(BOOKIE));
        let pod: Pod = outcome.object();
        let affinity = pod.spec.unwrap().affinity.unwrap();
        assert!(affinity.pod_anti_affinity.is_some(), "the chart's anti-affinity is kept");
        let terms = affinity
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        let exprs = terms[0].match_expressions.clone().unwrap();
        assert_eq!(exprs[0].key, "topology.kubernetes.io/zone");
        assert_eq!(exprs[0].values.as_deref(), Some(&["a".to_owned(), "b".to_owned()][..]));
        assert_eq!(exprs[1].operator, "DoesNotExist");
        assert_eq!(exprs[1].values, None);
        assert_eq!(h.run_request(outcome.reinvocation()).verdict(), &Verdict::allow());
    }

    #[test]
    fn creates_the_affinity_when_there_is_none() {
        let h = harness(affinity_settings("keep"));
        let outcome = h.run_file(fixture(MANAGER));
        let pod = outcome.object_value();
        assert_eq!(
            pod["spec"]["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"][0]["matchExpressions"][1],
            json!({"key": "node.example.com/spot", "operator": "DoesNotExist"})
        );
        let _: Pod = outcome.object();
        assert_eq!(h.run_request(outcome.reinvocation()).verdict(), &Verdict::allow());
    }

    #[test]
    fn an_identical_term_is_not_added_again() {
        let term = json!({"matchExpressions": [
            {"key": "node.example.com/spot", "operator": "DoesNotExist"},
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["b", "a"]},
        ]});
        let request =
            with_spec(MANAGER, json!({"affinity": {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [term]}}}}));
        assert_eq!(harness(affinity_settings("deny")).run_request(request).verdict(), &Verdict::allow());
    }

    #[test]
    fn every_existing_term_gets_the_requirement() {
        let terms = json!([
            {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]},
        ]);
        let request =
            with_spec(MANAGER, json!({"affinity": {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": terms}}}}));
        let h = harness(affinity_settings("keep"));
        let outcome = h.run_request(request);
        let pod = outcome.object_value();
        let terms = &pod["spec"]["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"];
        assert_eq!(terms[0]["matchExpressions"].as_array().unwrap().len(), 3);
        assert_eq!(terms[0]["matchExpressions"][0]["key"], "kubernetes.io/arch");
        assert_eq!(terms[1]["matchExpressions"].as_array().unwrap().len(), 2);
        assert_eq!(terms[1]["matchFields"][0]["key"], "metadata.name");
        let _: Pod = outcome.object();
        assert_eq!(h.run_request(outcome.reinvocation()).verdict(), &Verdict::allow());
    }

    #[test]
    fn affinity_conflicts_keep_override_or_deny() {
        let terms = json!([{"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["c"]},
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        ]}]);
        let request =
            with_spec(MANAGER, json!({"affinity": {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": terms}}}}));
        let path = format!("/spec/affinity/nodeAffinity/{REQUIRED}/nodeSelectorTerms/0/matchExpressions");

        let keep = harness(affinity_settings("keep")).run_request(request.clone());
        let pod = keep.object_value();
        let exprs = pod.pointer(&path).unwrap().as_array().unwrap();
        assert_eq!(exprs.len(), 3, "only the non-conflicting expression is added");
        assert_eq!(exprs[0]["values"], json!(["c"]));
        assert_eq!(keep.verdict().warnings.len(), 1);

        let h = harness(affinity_settings("override"));
        let outcome = h.run_request(request.clone());
        let pod = outcome.object_value();
        assert_eq!(
            pod.pointer(&path).unwrap(),
            &json!([
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                {"key": "node.example.com/spot", "operator": "DoesNotExist"},
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]},
            ])
        );
        assert_eq!(h.run_request(outcome.reinvocation()).verdict(), &Verdict::allow());

        let message = denial(harness(affinity_settings("deny")).run_request(request).verdict()).to_owned();
        assert_eq!(
            message,
            "required node affinity term 0 has topology.kubernetes.io/zone In [c]; this policy requires topology.kubernetes.io/zone In [a, b]"
        );
    }

    #[test]
    fn node_selector_and_affinity_together() {
        let mut settings = affinity_settings("keep");
        settings["nodeSelector"] = json!({ROLE: "pulsar"});
        let h = harness(settings);
        let outcome = h.run_file(fixture("pulsar/reviews/027-pod-pulsar-bookie-init.json"));
        let pod: Pod = outcome.object();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_selector.unwrap()[ROLE], "pulsar");
        assert!(spec.affinity.unwrap().node_affinity.is_some());
        assert_eq!(h.run_request(outcome.reinvocation()).verdict(), &Verdict::allow());
    }

    #[test]
    fn bad_settings_name_the_field() {
        let err = |settings: Value| harness(settings).validate_settings().unwrap_err();
        assert!(err(json!({})).contains("nodeSelector, requiredNodeAffinity"));
        let e = err(json!({"nodeSelector": {"a": "b"}, "onConflict": "replace"}));
        assert!(e.contains("onConflict") && e.contains("replace"), "{e}");
        let e = err(json!({"nodeSelector": {"a": "-b"}}));
        assert!(e.contains("nodeSelector.a"), "{e}");
        let e = err(json!({"nodeSelector": {"Bad Key": "b"}}));
        assert!(e.contains("settings.nodeSelector") && e.contains("Bad Key"), "{e}");
        let e = err(json!({"requiredNodeAffinity": [{"key": "a", "operator": "In"}]}));
        assert!(e.contains("requiredNodeAffinity[0].values"), "{e}");
        let e = err(json!({"requiredNodeAffinity": [{"key": "a", "operator": "Exists", "values": ["x"]}]}));
        assert!(e.contains("requiredNodeAffinity[0].values"), "{e}");
        let e = err(json!({"requiredNodeAffinity": [{"key": "a", "operator": "Gt", "values": ["x"]}]}));
        assert!(e.contains("requiredNodeAffinity[0].values") && e.contains("integer"), "{e}");
        let e = err(json!({"requiredNodeAffinity": [{"key": "a", "operator": "Near"}]}));
        assert!(e.contains("requiredNodeAffinity[0].operator") && e.contains("Near"), "{e}");
        let e = err(
            json!({"requiredNodeAffinity": [{"key": "a", "operator": "Exists"}, {"key": "a", "operator": "Exists"}]}),
        );
        assert!(e.contains("requiredNodeAffinity[1]"), "{e}");
        harness(json!({"requiredNodeAffinity": [{"key": "a", "operator": "Gt", "values": ["3"]}]}))
            .validate_settings()
            .unwrap();
    }

    #[test]
    fn pods_only() {
        let outcome = selector_only().run_file(fixture("kafka-kraft/reviews/001-pvc-data-kafka-broker-0.json"));
        assert!(outcome.error().unwrap().contains("PersistentVolumeClaim"));
    }
}
