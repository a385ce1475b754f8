//! # allowed-registries
//!
//! A validator: denies a Pod any of whose images (containers,
//! initContainers, ephemeralContainers) is not from one of the listed
//! registries. Images are normalised as Docker does, so `busybox` is from
//! `docker.io`. The denial names every offending container and its image.
//!
//! On UPDATE only the images the update brings are judged (see
//! [`berth_sdk::changes`]): a changed container image, a new ephemeral
//! container. Images the Pod already ran are not: a `kubectl label` of a
//! Pod created before the policy, still on its old images, must pass, and
//! denying it would not stop those containers anyway.

use berth_reference::{Reference, RepositoryPrefix};
use berth_sdk::changes::Changes;
use berth_sdk::pod::PodImages;
use berth_sdk::{Error, Request, Settings, SettingsError, Verdict};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AllowedRegistriesSettings {
    /// Registries (`harbor.example.com`, `localhost:5000`), each optionally
    /// narrowed to a repository path prefix (`harbor.example.com/library`).
    pub registries: Vec<RepositoryPrefix>,
}

impl Settings for AllowedRegistriesSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.registries.is_empty() {
            return Err(SettingsError::new("registries", "must list at least one registry"));
        }
        for (i, entry) in self.registries.iter().enumerate() {
            if self.registries[..i].contains(entry) {
                return Err(SettingsError::new(format!("registries[{i}]"), format!("{entry} is listed twice")));
            }
        }
        Ok(())
    }
}

pub fn evaluate(request: &Request, settings: &AllowedRegistriesSettings) -> Result<Verdict, Error> {
    request.require_kind("Pod", "allowed-registries")?;
    let pod: PodImages = request.object()?;
    let changes = Changes::of(request)?;
    let mut offences = Vec::new();
    for container in changes.new_images(&pod.spec) {
        match Reference::parse(container.image) {
            Ok(reference) if settings.registries.iter().any(|allowed| allowed.contains(&reference)) => {}
            Ok(reference) => offences.push(format!(
                "container {:?} image {:?} is not from an allowed registry ({})",
                container.name,
                reference.to_string(),
                allowed_list(settings)
            )),
            Err(err) => offences.push(format!(
                "container {:?} image {:?} is not a valid image reference: {}",
                container.name,
                container.image,
                err.kind()
            )),
        }
    }
    if offences.is_empty() { Ok(Verdict::allow()) } else { Ok(Verdict::deny(offences.join("; "))) }
}

fn allowed_list(settings: &AllowedRegistriesSettings) -> String {
    settings.registries.iter().map(RepositoryPrefix::to_string).collect::<Vec<_>>().join(", ")
}

berth_sdk::export_plugin!(AllowedRegistriesSettings, evaluate);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::apiserver::{self, PodUpdate};
    use berth_sdk::{Decision, testing::Harness};
    use serde_json::{Value, json};

    const FIXTURES: &str = "../../tests/fixtures";

    fn harness() -> Harness<AllowedRegistriesSettings> {
        Harness::new(evaluate).settings(json!({"registries": ["harbor.example.com"]}))
    }

    fn denial(verdict: &Verdict) -> &str {
        match &verdict.decision {
            Decision::Deny { message, code } => {
                assert_eq!(*code, 403);
                message
            }
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    fn pod_request(spec: Value) -> Value {
        json!({
            "uid": "u", "operation": "CREATE",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}
        })
    }

    #[test]
    fn denies_docker_hub_images_naming_every_container() {
        let outcome = harness().run_file(format!("{FIXTURES}/pulsar/reviews/005-pod-pulsar-bookie-0.json"));
        assert_eq!(
            denial(outcome.verdict()),
            "container \"pulsar-bookkeeper-verify-clusterid\" image \"docker.io/apachepulsar/pulsar-all:4.0.12\" is not from an allowed registry (harbor.example.com); \
             container \"pulsar-bookie\" image \"docker.io/apachepulsar/pulsar-all:4.0.12\" is not from an allowed registry (harbor.example.com)"
        );
        let outcome = harness().run_file(format!("{FIXTURES}/kafka-zookeeper/reviews/002-pod-kafka-zookeeper-0.json"));
        assert!(
            denial(outcome.verdict())
                .contains(r#"container "zookeeper" image "docker.io/bitnami/zookeeper:3.9.3-debian-12-r8""#)
        );
    }

    #[test]
    fn allows_images_from_the_listed_registries() {
        let request = pod_request(json!({
            "initContainers": [{"name": "init", "image": "harbor.example.com/library/library/busybox:1.36"}],
            "containers": [{"name": "app", "image": "HARBOR.example.com/team/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}],
        }));
        assert_eq!(harness().run_request(request).verdict(), &Verdict::allow());
    }

    #[test]
    fn short_names_count_as_docker_hub() {
        let h = Harness::new(evaluate).settings(json!({"registries": ["docker.io"]}));
        let request = pod_request(
            json!({"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "index.docker.io/x/y"}]}),
        );
        assert_eq!(h.run_request(request).verdict(), &Verdict::allow());
        let h = Harness::new(evaluate).settings(json!({"registries": ["docker.io/library"]}));
        let request = pod_request(
            json!({"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "bitnami/kafka"}]}),
        );
        let outcome = h.run_request(request);
        let message = denial(outcome.verdict());
        assert!(
            !message.contains(r#""a""#) && message.contains(r#"container "b" image "docker.io/bitnami/kafka""#),
            "{message}"
        );
    }

    #[test]
    fn ephemeral_containers_and_bad_images_are_checked() {
        let request = pod_request(json!({
            "containers": [{"name": "app", "image": "harbor.example.com/a"}],
            "ephemeralContainers": [{"name": "debug", "image": "Busybox"}],
        }));
        let outcome = harness().run_request(request);
        let message = denial(outcome.verdict());
        assert!(message.contains(r#"container "debug" image "Busybox" is not a valid image reference"#), "{message}");
        assert!(!message.contains("\"app\""), "{message}");
    }

    #[test]
    fn registries_match_whole_hosts() {
        let request = pod_request(json!({"containers": [{"name": "app", "image": "harbor.example.com.evil.io/a"}]}));
        assert!(!harness().run_request(request).verdict().is_allowed());
        let request = pod_request(json!({"containers": [{"name": "app", "image": "harbor.example.com:5000/a"}]}));
        assert!(!harness().run_request(request).verdict().is_allowed());
    }

    /// A Pulsar bookie as it runs: created before the policy (Docker Hub
    /// images), or with its images already moved to harbor.
    fn running_bookie(on_harbor: bool) -> Value {
        let text = std::fs::read_to_string(format!("{FIXTURES}/pulsar/reviews/005-pod-pulsar-bookie-0.json")).unwrap();
        let review: Value = serde_json::from_str(&text).unwrap();
        let mut pod = review["request"]["object"].clone();
        if on_harbor {
            for list in ["initContainers", "containers"] {
                for c in pod["spec"][list].as_array_mut().unwrap() {
                    let image = c["image"].as_str().unwrap().to_owned();
                    c["image"] = format!("harbor.example.com/library/{image}").into();
                }
            }
        }
        apiserver::stored(&pod)
    }

    #[test]
    fn an_update_is_judged_on_the_images_it_brings() {
        for on_harbor in [true, false] {
            let running = running_bookie(on_harbor);
            // kubectl debug with an image from a registry not allowed.
            let update = PodUpdate::debug(&running, "debugger-7xk2p", "quay.io/other/toolbox:1", "pulsar-bookie");
            let outcome = harness().run_request(update.request());
            assert_eq!(
                denial(outcome.verdict()),
                r#"container "debugger-7xk2p" image "quay.io/other/toolbox:1" is not from an allowed registry (harbor.example.com)"#,
                "on harbor: {on_harbor}"
            );
            // The same container from harbor passes, whatever the Pod ran before.
            let update = PodUpdate::debug(
                &running,
                "debugger-7xk2p",
                "harbor.example.com/library/library/busybox:1.36",
                "pulsar-bookie",
            );
            assert_eq!(harness().run_request(update.request()).verdict(), &Verdict::allow(), "on harbor: {on_harbor}");
            // kubectl set image to Docker Hub, not rewritten: denied, naming only that container.
            let update = PodUpdate::set_image(&running, "pulsar-bookie", "apachepulsar/pulsar-all:9.9.9");
            let outcome = harness().run_request(update.request());
            assert_eq!(
                denial(outcome.verdict()),
                r#"container "pulsar-bookie" image "docker.io/apachepulsar/pulsar-all:9.9.9" is not from an allowed registry (harbor.example.com)"#
            );
        }
    }

    #[test]
    fn a_label_update_of_a_pod_created_before_the_policy_passes() {
        let running = running_bookie(false);
        let outcome = harness().run_request(PodUpdate::label(&running, "maintenance", "planned").request());
        assert_eq!(outcome.verdict(), &Verdict::allow());
        // The fixture's own label UPDATE, as the apiserver sent it.
        let outcome = harness().run_file(format!("{FIXTURES}/pulsar/reviews/031-pod-pulsar-bookie-0-update.json"));
        assert_eq!(outcome.verdict(), &Verdict::allow());
        // The same Pod on CREATE is denied: what passes above is the update rule.
        let outcome = harness().run_file(format!("{FIXTURES}/pulsar/reviews/005-pod-pulsar-bookie-0.json"));
        assert!(!outcome.verdict().is_allowed());
    }

    #[test]
    fn bad_settings_name_the_field() {
        let err = |settings: Value| {
            Harness::<AllowedRegistriesSettings>::new(evaluate).settings(settings).validate_settings().unwrap_err()
        };
        assert!(err(json!({"registries": []})).contains("settings.registries"));
        let e = err(json!({"registries": ["harbor.example.com", "bitnami"]}));
        assert!(e.contains("registries[1]") && e.contains("not a registry host"), "{e}");
        let e = err(json!({"registries": ["harbor.example.com", "harbor.example.com"]}));
        assert!(e.contains("registries[1]") && e.contains("twice"), "{e}");
        let e = err(json!({"registry": ["harbor.example.com"]}));
        assert!(e.contains("registry"), "{e}");
    }

    #[test]
    fn pods_only() {
        let outcome = harness().run_file(format!("{FIXTURES}/kafka-kraft/reviews/001-pvc-data-kafka-broker-0.json"));
        assert!(outcome.error().unwrap().contains("PersistentVolumeClaim"));
    }
}
