//! # tolerations
//!
//! Appends the configured tolerations to a Pod's `spec.tolerations`.
//! Tolerations already there (such as the two `not-ready`/`unreachable` ones
//! the apiserver adds) are kept, and one that is already present is never
//! added again, so a second run changes nothing.

use berth_sdk::pod::Pod;
use berth_sdk::pod::validate_tolerations;
use berth_sdk::{Error, Patch, Request, Settings, SettingsError, Verdict};
use serde::Deserialize;
use serde_json::Value;

pub use berth_sdk::pod::Toleration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TolerationsSettings {
    pub tolerations: Vec<Toleration>,
}

impl Settings for TolerationsSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.tolerations.is_empty() {
            return Err(SettingsError::new("tolerations", "must list at least one toleration"));
        }
        validate_tolerations(&self.tolerations, "tolerations")
    }
}

#[derive(Default, Deserialize)]
struct PodSpec {
    #[serde(default)]
    tolerations: Option<Vec<Value>>,
}

pub fn evaluate(request: &Request, settings: &TolerationsSettings) -> Result<Verdict, Error> {
    request.require_kind("Pod", "tolerations")?;
    let pod: Pod<PodSpec> = request.object()?;
    let existing = pod.spec.tolerations.unwrap_or_default();
    let mut missing: Vec<&Toleration> = Vec::new();
    for wanted in &settings.tolerations {
        let present = wanted.is_present_in(&existing) || missing.contains(&wanted);
        if !present {
            missing.push(wanted);
        }
    }
    let items = missing.into_iter().map(serde_json::to_value).collect::<Result<Vec<_>, _>>()?;
    Ok(Verdict::mutate(Patch::new().append("/spec/tolerations", existing.len(), items)))
}

berth_sdk::export_plugin!(TolerationsSettings, evaluate);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::testing::Harness;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    const BOOKIE: &str = "../../tests/fixtures/pulsar/reviews/005-pod-pulsar-bookie-0.json";

    fn harness() -> Harness<TolerationsSettings> {
        Harness::new(evaluate).settings(json!({
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "pulsar", "effect": "NoSchedule"}]
        }))
    }

    #[test]
    fn appends_next_to_the_apiserver_tolerations() {
        let outcome = harness().run_file(BOOKIE);
        let pod: Pod = outcome.object();
        let tolerations = pod.spec.unwrap().tolerations.unwrap();
        let keys: Vec<_> = tolerations.iter().map(|t| t.key.clone().unwrap()).collect();
        assert_eq!(keys, ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable", "dedicated"]);
        assert_eq!(tolerations[2].value.as_deref(), Some("pulsar"));
        assert_eq!(tolerations[2].effect.as_deref(), Some("NoSchedule"));
    }

    #[test]
    fn second_run_changes_nothing() {
        let h = harness();
        let first = h.run_file(BOOKIE);
        assert!(first.verdict().patch().is_some());
        let second = h.run_request(first.reinvocation());
        assert_eq!(second.verdict(), &Verdict::allow());
    }

    #[test]
    fn creates_the_list_when_the_pod_has_none() {
        let request = json!({
            "uid": "u", "operation": "CREATE",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}
        });
        let pod: serde_json::Value = harness().run_request(request).object_value();
        assert_eq!(pod["spec"]["tolerations"][0]["key"], "dedicated");
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn bad_settings_name_the_field() {
        let h = Harness::<TolerationsSettings>::new(evaluate)
            .settings(json!({"tolerations": [{"key": "k", "effect": "Sometimes"}]}));
        let err = h.validate_settings().unwrap_err();
        assert!(err.contains("tolerations[0].effect"), "{err}");
        let h = Harness::<TolerationsSettings>::new(evaluate).settings(json!({"tolerations": [{"keys": "k"}]}));
        let err = h.validate_settings().unwrap_err();
        assert!(err.contains("tolerations[0]") && err.contains("keys"), "{err}");
    }
}
