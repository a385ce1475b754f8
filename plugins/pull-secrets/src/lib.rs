//! # pull-secrets
//!
//! Adds the configured Secrets to a Pod's `spec.imagePullSecrets`, creating
//! the list if there is none. Secrets already listed are kept and never
//! added twice, so a second run changes nothing.

use berth_sdk::pod::Pod;
use berth_sdk::{Error, Patch, Request, Settings, SettingsError, Verdict};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PullSecretsSettings {
    /// Names of Secrets (of type kubernetes.io/dockerconfigjson) in the
    /// Pod's namespace.
    pub secrets: Vec<String>,
}

impl Settings for PullSecretsSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.secrets.is_empty() {
            return Err(SettingsError::new("secrets", "must list at least one Secret name"));
        }
        for (i, name) in self.secrets.iter().enumerate() {
            let field = format!("secrets[{i}]");
            if let Err(reason) = berth_sdk::names::check_dns_subdomain(name) {
                return Err(SettingsError::new(field, format!("{name:?} is not a valid Secret name: {reason}")));
            }
            if self.secrets[..i].contains(name) {
                return Err(SettingsError::new(field, format!("{name:?} is listed twice")));
            }
        }
        Ok(())
    }
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    image_pull_secrets: Option<Vec<LocalObjectReference>>,
}

#[derive(Deserialize)]
struct LocalObjectReference {
    #[serde(default)]
    name: Option<String>,
}

pub fn evaluate(request: &Request, settings: &PullSecretsSettings) -> Result<Verdict, Error> {
    request.require_kind("Pod", "pull-secrets")?;
    let pod: Pod<Spec> = request.object()?;
    let existing = pod.spec.image_pull_secrets.unwrap_or_default();
    let missing: Vec<&String> = settings
        .secrets
        .iter()
        .filter(|wanted| !existing.iter().any(|s| s.name.as_deref() == Some(wanted.as_str())))
        .collect();
    let items = missing.iter().map(|name| json!({ "name": name }));
    Ok(Verdict::mutate(Patch::new().append("/spec/imagePullSecrets", existing.len(), items)))
}

berth_sdk::export_plugin!(PullSecretsSettings, evaluate);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::testing::Harness;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::Value;

    const FIXTURES: &str = "../../tests/fixtures";

    fn harness() -> Harness<PullSecretsSettings> {
        Harness::new(evaluate).settings(json!({"secrets": ["regsecret"]}))
    }

    fn names(pod: &Pod) -> Vec<String> {
        let secrets = pod.spec.as_ref().unwrap().image_pull_secrets.clone().unwrap_or_default();
        secrets.into_iter().map(|s| s.name).collect()
    }

    fn pod_request(secrets: Value) -> Value {
        json!({
            "uid": "u", "operation": "CREATE",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                       "spec": {"containers": [{"name": "c", "image": "x"}], "imagePullSecrets": secrets}}
        })
    }

    #[test]
    fn creates_the_list_on_fixture_pods() {
        for file in [
            "pulsar/reviews/005-pod-pulsar-bookie-0.json",
            "pulsar/reviews/028-pod-pulsar-pulsar-init.json",
            "kafka-kraft/reviews/008-pod-kafka-controller-0.json",
        ] {
            let outcome = harness().run_file(format!("{FIXTURES}/{file}"));
            assert_eq!(names(&outcome.object()), ["regsecret"], "{file}");
        }
    }

    #[test]
    fn second_run_changes_nothing() {
        let h = harness();
        let first = h.run_file(format!("{FIXTURES}/kafka-zookeeper/reviews/008-pod-kafka-broker-0.json"));
        assert!(first.verdict().patch().is_some());
        assert_eq!(h.run_request(first.reinvocation()).verdict(), &Verdict::allow());
    }

    #[test]
    fn appends_without_duplicates_and_keeps_what_is_there() {
        let h = Harness::new(evaluate).settings(json!({"secrets": ["regsecret", "mirror"]}));
        let pod: Value = h.run_request(pod_request(json!([{"name": "team"}, {"name": "mirror"}]))).object_value();
        assert_eq!(
            pod["spec"]["imagePullSecrets"],
            json!([{"name": "team"}, {"name": "mirror"}, {"name": "regsecret"}])
        );
        // A null list is no list.
        let pod: Value = h.run_request(pod_request(Value::Null)).object_value();
        assert_eq!(pod["spec"]["imagePullSecrets"], json!([{"name": "regsecret"}, {"name": "mirror"}]));
        let outcome = h.run_request(pod_request(json!([{"name": "mirror"}, {"name": "regsecret"}])));
        assert_eq!(outcome.verdict(), &Verdict::allow());
    }

    #[test]
    fn bad_settings_name_the_field() {
        let err = |settings: Value| {
            Harness::<PullSecretsSettings>::new(evaluate).settings(settings).validate_settings().unwrap_err()
        };
        assert!(err(json!({"secrets": []})).contains("settings.secrets"));
        let e = err(json!({"secrets": ["ok", "Reg_Secret"]}));
        assert!(e.contains("secrets[1]") && e.contains("Reg_Secret"), "{e}");
        let e = err(json!({"secrets": ["a", "a"]}));
        assert!(e.contains("secrets[1]") && e.contains("twice"), "{e}");
        let e = err(json!({"secrets": ["a"], "namespace": "x"}));
        assert!(e.contains("namespace"), "{e}");
    }

    #[test]
    fn pods_only() {
        let outcome = harness()
            .run_file(format!("{FIXTURES}/pulsar/reviews/021-pvc-pulsar-zookeeper-data-pulsar-zookeeper-0.json"));
        assert!(outcome.error().unwrap().contains("PersistentVolumeClaim"));
    }
}
