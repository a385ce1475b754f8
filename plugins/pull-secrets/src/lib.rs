//! # pull-secrets
//!
//! Adds the configured Secrets to a Pod's `spec.imagePullSecrets`, creating
//! the list if there is none. Secrets already listed are kept and never
//! added twice, so a second run changes nothing.
//!
//! `imagePullSecrets` is fixed once a Pod exists: the apiserver refuses an
//! update that changes it. So an UPDATE is never patched. When the update
//! brings an image (`kubectl set image`, an ephemeral container from
//! `kubectl debug`) to a Pod that lacks a configured Secret (one created
//! before the policy), the answer carries a warning that the image may
//! not pull; the update itself is allowed.

use berth_sdk::changes::Changes;
use berth_sdk::pod::{Pod, PodImages};
use berth_sdk::{Error, Operation, Patch, Request, Settings, SettingsError, Verdict};
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
    if request.operation == Operation::Update {
        return on_update(request, &missing);
    }
    let items = missing.iter().map(|name| json!({ "name": name }));
    Ok(Verdict::mutate(Patch::new().append("/spec/imagePullSecrets", existing.len(), items)))
}

/// No patch (the apiserver would refuse the whole update); a warning when
/// the update brings images and `missing` Secrets cannot come with them.
fn on_update(request: &Request, missing: &[&String]) -> Result<Verdict, Error> {
    if missing.is_empty() {
        return Ok(Verdict::allow());
    }
    let pod: PodImages = request.object()?;
    let changes = Changes::of(request)?;
    let containers: Vec<String> = changes.new_images(&pod.spec).map(|c| format!("{:?}", c.name)).collect();
    if containers.is_empty() {
        return Ok(Verdict::allow());
    }
    let secrets: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
    Ok(Verdict::allow().with_warning(format!(
        "imagePullSecrets is fixed once a pod exists: without {}, {} may fail to pull",
        secrets.join(", "),
        containers.join(", ")
    )))
}

berth_sdk::export_plugin!(PullSecretsSettings, evaluate);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::apiserver::{self, PodUpdate};
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

    fn running(file: &str, mutated: bool) -> Value {
        let review: Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap()).unwrap();
        let pod = if mutated {
            harness().run_request(review["request"].clone()).object_value()
        } else {
            review["request"]["object"].clone()
        };
        apiserver::stored(&pod)
    }

    #[test]
    fn an_update_is_never_patched_and_warns_when_a_new_image_lacks_the_secret() {
        let file = "pulsar/reviews/005-pod-pulsar-bookie-0.json";
        // Created before the policy: no regsecret, and it cannot be added.
        let before = running(file, false);
        for update in [
            PodUpdate::debug(
                &before,
                "debugger-7xk2p",
                "harbor.example.com/library/library/busybox:1.36",
                "pulsar-bookie",
            ),
            PodUpdate::set_image(&before, "pulsar-bookie", "harbor.example.com/library/apachepulsar/pulsar-all:9.9.9"),
        ] {
            let outcome = harness().run_request(update.request());
            let verdict = outcome.verdict();
            assert_eq!(verdict.decision, berth_sdk::Decision::Allow, "no patch on UPDATE");
            let changed = update.new["spec"]["ephemeralContainers"][0]["name"].as_str().unwrap_or("pulsar-bookie");
            assert_eq!(
                verdict.warnings,
                [format!(
                    "imagePullSecrets is fixed once a pod exists: without regsecret, {changed:?} may fail to pull"
                )]
            );
        }
        // A label update brings no image: nothing to say.
        let outcome = harness().run_request(PodUpdate::label(&before, "maintenance", "planned").request());
        assert_eq!(outcome.verdict(), &Verdict::allow());
        // The pod the policy created has the secret: the new image pulls with it.
        let after = running(file, true);
        let update = PodUpdate::debug(
            &after,
            "debugger-7xk2p",
            "harbor.example.com/library/library/busybox:1.36",
            "pulsar-bookie",
        );
        assert_eq!(harness().run_request(update.request()).verdict(), &Verdict::allow());
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
