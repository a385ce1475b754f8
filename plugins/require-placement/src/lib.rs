//! # require-placement
//!
//! A validator: denies a Pod that lacks any of the required tolerations or
//! nodeSelector entries, naming everything that is missing. A toleration is
//! present when one in the Pod has the same key, operator (`Equal` when
//! empty), value and effect, as the tolerations plugin judges it;
//! `tolerationSeconds` does not matter.

use berth_sdk::pod::Pod;
use berth_sdk::pod::validate_tolerations;
use berth_sdk::{Error, Request, Settings, SettingsError, Verdict};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

pub use berth_sdk::pod::Toleration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RequirePlacementSettings {
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
}

/// `key=value:Effect`, as kubectl prints taints; `key (Exists):Effect`.
fn describe(toleration: &Toleration) -> String {
    let key = toleration.key.as_deref().unwrap_or_default();
    let mut out = if toleration.operator() == "Exists" {
        if key.is_empty() { "every taint".to_owned() } else { format!("{key} (Exists)") }
    } else {
        format!("{key}={}", toleration.value.as_deref().unwrap_or_default())
    };
    match toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        Some(effect) => {
            out.push(':');
            out.push_str(effect);
        }
        None => out.push_str(" (any effect)"),
    }
    out
}

impl Settings for RequirePlacementSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.tolerations.is_empty() && self.node_selector.is_empty() {
            return Err(SettingsError::new(".", "require at least one of tolerations and nodeSelector"));
        }
        validate_tolerations(&self.tolerations, "tolerations")?;
        for key in self.node_selector.keys() {
            if key.is_empty() {
                return Err(SettingsError::new("nodeSelector", "has an empty key"));
            }
        }
        Ok(())
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    tolerations: Option<Vec<Value>>,
    #[serde(default)]
    node_selector: Option<BTreeMap<String, String>>,
}

pub fn evaluate(request: &Request, settings: &RequirePlacementSettings) -> Result<Verdict, Error> {
    request.require_kind("Pod", "require-placement")?;
    let pod: Pod<Spec> = request.object()?;
    let tolerations = pod.spec.tolerations.unwrap_or_default();
    let node_selector = pod.spec.node_selector.unwrap_or_default();
    let mut missing = Vec::new();
    for wanted in &settings.tolerations {
        if !wanted.is_present_in(&tolerations) {
            missing.push(format!("toleration {}", describe(wanted)));
        }
    }
    for (key, value) in &settings.node_selector {
        match node_selector.get(key) {
            Some(actual) if actual == value => {}
            Some(actual) => missing.push(format!("nodeSelector {key}={value} (it is {actual:?})")),
            None => missing.push(format!("nodeSelector {key}={value}")),
        }
    }
    if missing.is_empty() {
        Ok(Verdict::allow())
    } else {
        Ok(Verdict::deny(format!("pod lacks the required {}", missing.join(", "))))
    }
}

berth_sdk::export_plugin!(RequirePlacementSettings, evaluate);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::{Decision, testing::Harness};
    use serde_json::json;

    const FIXTURES: &str = "../../tests/fixtures";
    const BOOKIE: &str = "pulsar/reviews/005-pod-pulsar-bookie-0.json";

    fn settings() -> Value {
        json!({
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "pulsar", "effect": "NoSchedule"}],
            "nodeSelector": {"node-role.kubernetes.io/pulsar": "pulsar"}
        })
    }

    fn harness() -> Harness<RequirePlacementSettings> {
        Harness::new(evaluate).settings(settings())
    }

    fn denial(verdict: &Verdict) -> String {
        match &verdict.decision {
            Decision::Deny { message, .. } => message.clone(),
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    /// The bookie fixture with `spec` fields replaced.
    fn bookie_with(fields: Value) -> Value {
        let text = std::fs::read_to_string(format!("{FIXTURES}/{BOOKIE}")).unwrap();
        let mut review: Value = serde_json::from_str(&text).unwrap();
        for (k, v) in fields.as_object().unwrap() {
            review["request"]["object"]["spec"][k] = v.clone();
        }
        review["request"].clone()
    }

    #[test]
    fn denies_the_fixture_pod_naming_what_is_missing() {
        let outcome = harness().run_file(format!("{FIXTURES}/{BOOKIE}"));
        assert_eq!(
            denial(outcome.verdict()),
            "pod lacks the required toleration dedicated=pulsar:NoSchedule, nodeSelector node-role.kubernetes.io/pulsar=pulsar"
        );
    }

    #[test]
    fn allows_a_pod_that_has_everything() {
        let mut tolerations = bookie_with(json!({}))["object"]["spec"]["tolerations"].clone();
        tolerations
            .as_array_mut()
            .unwrap()
            .push(json!({"key": "dedicated", "value": "pulsar", "effect": "NoSchedule"}));
        let request = bookie_with(json!({
            "tolerations": tolerations,
            "nodeSelector": {"node-role.kubernetes.io/pulsar": "pulsar", "other": "x"}
        }));
        assert_eq!(harness().run_request(request).verdict(), &Verdict::allow());
    }

    #[test]
    fn a_different_value_or_effect_is_not_the_toleration() {
        let request = bookie_with(json!({
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "kafka", "effect": "NoSchedule"},
                            {"key": "dedicated", "operator": "Equal", "value": "pulsar", "effect": "NoExecute"}],
            "nodeSelector": {"node-role.kubernetes.io/pulsar": "other"}
        }));
        let message = denial(harness().run_request(request).verdict());
        assert_eq!(
            message,
            r#"pod lacks the required toleration dedicated=pulsar:NoSchedule, nodeSelector node-role.kubernetes.io/pulsar=pulsar (it is "other")"#
        );
    }

    #[test]
    fn tolerations_only_or_node_selector_only() {
        let h = Harness::new(evaluate).settings(json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}));
        assert_eq!(
            denial(h.run_file(format!("{FIXTURES}/{BOOKIE}")).verdict()),
            "pod lacks the required toleration dedicated (Exists) (any effect)"
        );
        let request = bookie_with(json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}));
        assert_eq!(h.run_request(request).verdict(), &Verdict::allow());
        let h = Harness::new(evaluate).settings(json!({"nodeSelector": {"a": "b"}}));
        assert_eq!(h.run_request(bookie_with(json!({"nodeSelector": {"a": "b"}}))).verdict(), &Verdict::allow());
    }

    #[test]
    fn bad_settings_name_the_field() {
        let err = |settings: Value| {
            Harness::<RequirePlacementSettings>::new(evaluate).settings(settings).validate_settings().unwrap_err()
        };
        assert!(err(json!({})).contains("at least one"));
        let e = err(json!({"tolerations": [{"key": "k", "effect": "Sometimes"}]}));
        assert!(e.contains("tolerations[0].effect"), "{e}");
        let e = err(json!({"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}));
        assert!(e.contains("tolerations[0].value"), "{e}");
        let e = err(json!({"nodeSelector": {"a": 1}}));
        assert!(e.contains("nodeSelector"), "{e}");
        let e = err(json!({"nodeSelectors": {}}));
        assert!(e.contains("nodeSelectors"), "{e}");
    }

    #[test]
    fn pods_only() {
        let outcome =
            harness().run_file(format!("{FIXTURES}/pulsar/reviews/004-pvc-pulsar-bookie-ledgers-pulsar-bookie-0.json"));
        assert!(outcome.error().unwrap().contains("PersistentVolumeClaim"));
    }
}
