//! # registry-rewrite
//!
//! Moves a Pod's images to a private registry by ordered rules. Each image
//! (containers, initContainers, ephemeralContainers) is parsed and
//! normalised as Docker does (`busybox` is `docker.io/library/busybox`);
//! the first rule whose `from` prefix it is under, on whole path segments,
//! rewrites it to `<to>/<the rest of its path>`, keeping its tag and digest.
//!
//! An image already on a rule's `to` registry, or under no rule, is left
//! alone, so a rewritten image is never rewritten again and a second run
//! changes nothing. An image that is not a valid reference is a policy
//! error naming the container: the policy's failurePolicy decides.
//!
//! On UPDATE only the images the update brings are rewritten (see
//! [`berth_sdk::changes`]): a container whose image `kubectl set image`
//! changed, an ephemeral container `kubectl debug` adds. An image the Pod
//! already ran is left as it is, even one under a rule (a Pod created
//! before the policy): rewriting it would change a running container the
//! user did not touch. The patch then holds only image replacements, which
//! is all the apiserver lets an update change; on the
//! `pods/ephemeralcontainers` sub-resource `annotateOriginal` writes
//! nothing, since the apiserver keeps only `spec.ephemeralContainers` from
//! that request.

use berth_reference::{Reference, RepositoryPrefix};
use berth_sdk::changes::{Changes, EPHEMERAL_CONTAINERS};
use berth_sdk::pod::Containers;
use berth_sdk::{Error, Patch, Request, Settings, SettingsError, Verdict, pointer};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

pub use berth_reference as reference;

/// Where `annotateOriginal` records the images it replaced: a JSON object,
/// container name → original image.
pub const ORIGINAL_IMAGES_ANNOTATION: &str = "berth.dev/original-images";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryRewriteSettings {
    /// Tried in order; the first that matches wins.
    pub rules: Vec<Rule>,
    /// Record the replaced images in the `berth.dev/original-images`
    /// annotation.
    #[serde(default)]
    pub annotate_original: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A registry, or a registry and a repository path prefix.
    pub from: RepositoryPrefix,
    /// The registry (and path) the matching images move under.
    pub to: RepositoryPrefix,
}

impl Settings for RegistryRewriteSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.rules.is_empty() {
            return Err(SettingsError::new("rules", "must list at least one rule"));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let from = &rule.from;
            if let Some((j, to)) =
                self.rules.iter().enumerate().find(|(_, r)| r.to.domain().eq_ignore_ascii_case(from.domain()))
            {
                return Err(SettingsError::new(
                    format!("rules[{i}].from"),
                    format!(
                        "registry {} is rules[{j}].to's registry ({}); images there are never rewritten \
                         (that is what keeps a rewritten image from being rewritten again), so this rule would never apply",
                        from.domain(),
                        to.to
                    ),
                ));
            }
            if let Some((j, earlier)) = self.rules[..i].iter().enumerate().find(|(_, r)| covers(&r.from, from)) {
                return Err(SettingsError::new(
                    format!("rules[{i}].from"),
                    format!(
                        "never applies: rules[{j}].from ({}) already matches everything under {from}; put the more specific rule first",
                        earlier.from
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether every repository under `inner` is also under `outer`.
fn covers(outer: &RepositoryPrefix, inner: &RepositoryPrefix) -> bool {
    outer.domain().eq_ignore_ascii_case(inner.domain())
        && (outer.path().is_empty()
            || inner.path() == outer.path()
            || inner.path().strip_prefix(outer.path()).is_some_and(|rest| rest.starts_with('/')))
}

/// The image `image` becomes under `rules`, or `None` if it stays as it is.
/// An error is an image that is not a valid reference (or would not be one
/// after the rewrite), explained.
pub fn rewrite(image: &str, rules: &[Rule]) -> Result<Option<String>, String> {
    let reference = Reference::parse(image).map_err(|err| err.to_string())?;
    if rules.iter().any(|rule| rule.to.domain().eq_ignore_ascii_case(reference.domain())) {
        return Ok(None);
    }
    let Some((rule, rest)) = rules.iter().find_map(|rule| rule.from.strip(&reference).map(|rest| (rule, rest))) else {
        return Ok(None);
    };
    let to = &rule.to;
    if to.path().is_empty() && rest.is_empty() {
        return Err(format!(
            "rule from {} matches the whole repository of {image:?}, and its to ({to}) names no repository",
            rule.from
        ));
    }
    let mut rewritten = to.to_string();
    if !rest.is_empty() {
        rewritten.push('/');
        rewritten.push_str(rest);
    }
    rewritten.push_str(&reference.suffix());
    // The new name can be too long; say so rather than hand the apiserver
    // an image it cannot pull.
    let check =
        Reference::parse(&rewritten).map_err(|err| format!("rewriting {image:?} by rule from {}: {err}", rule.from))?;
    debug_assert!(check.domain().eq_ignore_ascii_case(to.domain()));
    Ok(Some(rewritten))
}

#[derive(Deserialize)]
struct Pod {
    #[serde(default)]
    metadata: Option<Box<RawValue>>,
    #[serde(default)]
    spec: Containers,
}

#[derive(Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

pub fn evaluate(request: &Request, settings: &RegistryRewriteSettings) -> Result<Verdict, Error> {
    request.require_kind("Pod", "registry-rewrite")?;
    let pod: Pod = request.object()?;
    let changes = Changes::of(request)?;
    let mut patch = Patch::new();
    let mut originals: Vec<(String, String)> = Vec::new();
    for container in changes.new_images(&pod.spec) {
        let rewritten = rewrite(container.image, &settings.rules)
            .map_err(|err| Error::msg(format!("container {:?}: {err}", container.name)))?;
        if let Some(rewritten) = rewritten {
            patch = patch.replace(container.pointer(), rewritten);
            originals.push((container.name.to_owned(), container.image.to_owned()));
        }
    }
    let mut verdict_warnings = Vec::new();
    // The ephemeralcontainers sub-resource keeps no metadata change.
    let annotate_here = request.sub_resource.as_deref() != Some(EPHEMERAL_CONTAINERS);
    if settings.annotate_original && annotate_here && !originals.is_empty() {
        let metadata: Metadata = match &pod.metadata {
            Some(raw) => serde_json::from_str(raw.get()).map_err(|err| Error::msg(format!("metadata: {err}")))?,
            None => Metadata::default(),
        };
        match annotate(metadata.annotations.as_ref(), originals) {
            Ok(op) => patch = patch.add(op.0, op.1),
            Err(warning) => verdict_warnings.push(warning),
        }
    }
    let mut verdict = Verdict::mutate(patch);
    for warning in verdict_warnings {
        verdict = verdict.with_warning(warning);
    }
    Ok(verdict)
}

/// The `add` op recording `originals` in the annotation, merged with what
/// is there (an entry for a container rewritten now is its image now).
fn annotate(
    annotations: Option<&BTreeMap<String, String>>,
    originals: Vec<(String, String)>,
) -> Result<(String, serde_json::Value), String> {
    let mut recorded: BTreeMap<String, String> = match annotations.and_then(|a| a.get(ORIGINAL_IMAGES_ANNOTATION)) {
        Some(text) => serde_json::from_str(text)
            .map_err(|_| format!("{ORIGINAL_IMAGES_ANNOTATION} is not a JSON object of images; left as it is"))?,
        None => BTreeMap::new(),
    };
    recorded.extend(originals);
    // A map of strings always serializes.
    let value = serde_json::to_string(&recorded).unwrap_or_default();
    Ok(match annotations {
        Some(_) => (pointer(["metadata", "annotations", ORIGINAL_IMAGES_ANNOTATION]), value.into()),
        None => ("/metadata/annotations".to_owned(), serde_json::json!({ ORIGINAL_IMAGES_ANNOTATION: value })),
    })
}

berth_sdk::export_plugin!(RegistryRewriteSettings, evaluate);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::apiserver::{self, PodUpdate};
    use berth_sdk::testing::Harness;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};

    const FIXTURES: &str = "../../tests/fixtures";
    const HEX64: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn fixture(path: &str) -> String {
        format!("{FIXTURES}/{path}")
    }

    fn settings() -> Value {
        json!({"rules": [
            {"from": "docker.io", "to": "harbor.example.com/library"},
            {"from": "quay.io/prometheus", "to": "harbor.example.com/quay"},
        ]})
    }

    fn harness() -> Harness<RegistryRewriteSettings> {
        Harness::new(evaluate).settings(settings())
    }

    fn rules() -> Vec<Rule> {
        serde_json::from_value::<RegistryRewriteSettings>(settings()).unwrap().rules
    }

    fn images(pod: &Pod) -> Vec<(String, String)> {
        let spec = pod.spec.as_ref().unwrap();
        let init = spec.init_containers.iter().flatten();
        init.chain(&spec.containers).map(|c| (c.name.clone(), c.image.clone().unwrap())).collect()
    }

    fn pod_request(containers: Value, annotations: Option<Value>) -> Value {
        let mut metadata = json!({"name": "p", "namespace": "ns"});
        if let Some(annotations) = annotations {
            metadata["annotations"] = annotations;
        }
        json!({
            "uid": "u", "operation": "CREATE",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": containers}
        })
    }

    #[test]
    fn rules_rewrite_the_documented_examples() {
        let rules = rules();
        let cases = [
            ("apachepulsar/pulsar-all:4.0.12", Some("harbor.example.com/library/apachepulsar/pulsar-all:4.0.12")),
            ("docker.io/bitnami/kafka:4.0.0", Some("harbor.example.com/library/bitnami/kafka:4.0.0")),
            ("index.docker.io/bitnami/kafka", Some("harbor.example.com/library/bitnami/kafka")),
            // An official image keeps its library/ segment.
            ("busybox:1.36", Some("harbor.example.com/library/library/busybox:1.36")),
            ("docker.io/library/busybox", Some("harbor.example.com/library/library/busybox")),
            ("quay.io/prometheus/node-exporter:v1.9.1", Some("harbor.example.com/quay/node-exporter:v1.9.1")),
            ("quay.io/prometheus-community/x:1", None),
            ("quay.io/other/x:1", None),
            ("registry.k8s.io/pause:3.10", None),
            ("harbor.example.com/library/busybox:1.36", None),
            ("harbor.example.com/anything/else", None),
        ];
        for (image, expected) in cases {
            assert_eq!(rewrite(image, &rules).unwrap().as_deref(), expected, "{image}");
        }
        let digest = format!("foo/bar:tag@sha256:{HEX64}");
        assert_eq!(
            rewrite(&digest, &rules).unwrap(),
            Some(format!("harbor.example.com/library/foo/bar:tag@sha256:{HEX64}"))
        );
        let digest_only = format!("busybox@sha256:{HEX64}");
        assert_eq!(
            rewrite(&digest_only, &rules).unwrap(),
            Some(format!("harbor.example.com/library/library/busybox@sha256:{HEX64}"))
        );
        assert!(rewrite("Busybox", &rules).unwrap_err().contains("must be lowercase"));
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let settings: RegistryRewriteSettings = serde_json::from_value(json!({"rules": [
            {"from": "docker.io/bitnami", "to": "harbor.example.com/bitnami"},
            {"from": "docker.io", "to": "mirror.example.com/hub"},
        ]}))
        .unwrap();
        settings.validate().unwrap();
        assert_eq!(
            rewrite("bitnami/kafka:4.0.0", &settings.rules).unwrap().as_deref(),
            Some("harbor.example.com/bitnami/kafka:4.0.0")
        );
        assert_eq!(
            rewrite("bitnamilegacy/kafka:4.0.0", &settings.rules).unwrap().as_deref(),
            Some("mirror.example.com/hub/bitnamilegacy/kafka:4.0.0")
        );
        // A rewritten image is on a `to` registry and stays there.
        assert_eq!(rewrite("mirror.example.com/hub/bitnamilegacy/kafka:4.0.0", &settings.rules).unwrap(), None);
    }

    #[test]
    fn rewrites_every_pulsar_container_and_keeps_the_tags() {
        let outcome = harness().run_file(fixture("pulsar/reviews/012-pod-pulsar-broker-0.json"));
        let pod: Pod = outcome.object();
        assert_eq!(
            images(&pod),
            [
                (
                    "wait-zookeeper-ready".to_owned(),
                    "harbor.example.com/library/apachepulsar/pulsar-all:4.0.12".to_owned()
                ),
                (
                    "wait-bookkeeper-ready".to_owned(),
                    "harbor.example.com/library/apachepulsar/pulsar-all:4.0.12".to_owned()
                ),
                ("pulsar-broker".to_owned(), "harbor.example.com/library/apachepulsar/pulsar-all:4.0.12".to_owned()),
            ]
        );
        // Nothing but images changed.
        let patch = outcome.verdict().patch().unwrap();
        assert!(
            patch
                .ops()
                .iter()
                .all(|op| matches!(op, berth_sdk::PatchOp::Replace { path, .. } if path.ends_with("/image")))
        );
    }

    #[test]
    fn rewrites_bitnami_and_job_pods() {
        let outcome = harness().run_file(fixture("kafka-kraft/reviews/002-pod-kafka-broker-0.json"));
        let expected = "harbor.example.com/library/bitnami/kafka:4.0.0-debian-12-r10";
        assert!(images(&outcome.object()).iter().all(|(_, image)| image == expected));
        let outcome = harness().run_file(fixture("pulsar/reviews/001-pod-pulsar-jwt-secret-init.json"));
        assert_eq!(
            images(&outcome.object()),
            [
                (
                    "generate-jwt-artifacts".to_owned(),
                    "harbor.example.com/library/apachepulsar/pulsar-all:4.0.12".to_owned()
                ),
                ("create-secrets".to_owned(), "harbor.example.com/library/alpine/k8s:1.32.12".to_owned()),
            ]
        );
    }

    #[test]
    fn second_run_changes_nothing() {
        for file in
            ["pulsar/reviews/005-pod-pulsar-bookie-0.json", "kafka-zookeeper/reviews/002-pod-kafka-zookeeper-0.json"]
        {
            let h = harness().settings(json!({"rules": settings()["rules"], "annotateOriginal": true}));
            let first = h.run_file(fixture(file));
            assert!(first.verdict().patch().is_some(), "{file}");
            let second = h.run_request(first.reinvocation());
            assert_eq!(second.verdict(), &Verdict::allow(), "{file}");
        }
    }

    #[test]
    fn ephemeral_containers_are_rewritten_too() {
        let request = pod_request(
            json!({"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
                   "ephemeralContainers": [{"name": "debug", "image": "busybox"}]}),
            None,
        );
        let pod = harness().run_request(request).object_value();
        assert_eq!(pod["spec"]["containers"][0]["image"], "registry.k8s.io/pause:3.10");
        assert_eq!(pod["spec"]["ephemeralContainers"][0]["image"], "harbor.example.com/library/library/busybox");
    }

    /// The bookie as the chart made it, stored (no policy ran at CREATE),
    /// and as berth's mutation left it, stored.
    fn bookie(mutated: bool) -> Value {
        let review: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture("pulsar/reviews/005-pod-pulsar-bookie-0.json")).unwrap(),
        )
        .unwrap();
        let pod = if mutated {
            harness().run_request(review["request"].clone()).object_value()
        } else {
            review["request"]["object"].clone()
        };
        apiserver::stored(&pod)
    }

    fn replaced_paths(outcome: &berth_sdk::testing::Outcome) -> Vec<String> {
        let Some(patch) = outcome.verdict().patch() else { return Vec::new() };
        patch
            .ops()
            .iter()
            .map(|op| match op {
                berth_sdk::PatchOp::Replace { path, .. } => path.clone(),
                other => panic!("an UPDATE patch only replaces images: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn kubectl_debug_rewrites_only_the_new_ephemeral_container() {
        // Also on a Pod created before the policy: its own Docker Hub images
        // stay as they run.
        for mutated in [true, false] {
            let running = bookie(mutated);
            let update = PodUpdate::debug(&running, "debugger-7xk2p", "busybox:1.36", "pulsar-bookie");
            let outcome = harness().run_request(update.request());
            assert_eq!(replaced_paths(&outcome), ["/spec/ephemeralContainers/0/image"], "mutated: {mutated}");
            let mut expected = update.new.clone();
            expected["spec"]["ephemeralContainers"][0]["image"] =
                "harbor.example.com/library/library/busybox:1.36".into();
            assert_eq!(outcome.object_value(), expected, "mutated: {mutated}");
            // Reinvocation over the rewritten container changes nothing.
            assert_eq!(harness().run_request(outcome.reinvocation()).verdict(), &Verdict::allow());
        }
        // An image no rule covers, and one already on harbor, are left alone.
        for image in ["quay.io/other/toolbox:1", "harbor.example.com/library/library/busybox:1.36"] {
            let update = PodUpdate::debug(&bookie(true), "debugger-7xk2p", image, "pulsar-bookie");
            assert_eq!(harness().run_request(update.request()).verdict(), &Verdict::allow(), "{image}");
        }
    }

    #[test]
    fn kubectl_set_image_rewrites_only_the_changed_container() {
        for mutated in [true, false] {
            let running = bookie(mutated);
            let update = PodUpdate::set_image(&running, "pulsar-bookie", "apachepulsar/pulsar-all:9.9.9");
            let outcome = harness().run_request(update.request());
            assert_eq!(replaced_paths(&outcome), ["/spec/containers/0/image"], "mutated: {mutated}");
            let pod = outcome.object_value();
            assert_eq!(
                pod["spec"]["containers"][0]["image"],
                "harbor.example.com/library/apachepulsar/pulsar-all:9.9.9"
            );
            // The init container was not part of the update.
            assert_eq!(pod["spec"]["initContainers"], running["spec"]["initContainers"], "mutated: {mutated}");
        }
    }

    #[test]
    fn a_label_update_is_left_alone_even_with_docker_hub_images() {
        let running = bookie(false);
        let h = harness().settings(json!({"rules": settings()["rules"], "annotateOriginal": true}));
        let outcome = h.run_request(PodUpdate::label(&running, "maintenance", "planned").request());
        assert_eq!(outcome.verdict(), &Verdict::allow());
    }

    #[test]
    fn annotate_original_on_update_records_only_what_the_update_changed() {
        let h = harness().settings(json!({"rules": settings()["rules"], "annotateOriginal": true}));
        let running = bookie(false);
        let update = PodUpdate::set_image(&running, "pulsar-bookie", "apachepulsar/pulsar-all:9.9.9");
        let pod = h.run_request(update.request()).object_value();
        let recorded: Value =
            serde_json::from_str(pod["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(recorded, json!({"pulsar-bookie": "apachepulsar/pulsar-all:9.9.9"}));
        // The ephemeralcontainers sub-resource keeps no metadata: only the
        // image is replaced.
        let update = PodUpdate::debug(&running, "debugger-7xk2p", "busybox:1.36", "pulsar-bookie");
        let outcome = h.run_request(update.request());
        assert_eq!(replaced_paths(&outcome), ["/spec/ephemeralContainers/0/image"]);
    }

    #[test]
    fn annotate_original_records_and_merges() {
        let h = harness().settings(json!({"rules": settings()["rules"], "annotateOriginal": true}));
        let outcome = h.run_file(fixture("pulsar/reviews/001-pod-pulsar-jwt-secret-init.json"));
        let pod = outcome.object_value();
        let recorded: Value =
            serde_json::from_str(pod["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(
            recorded,
            json!({"generate-jwt-artifacts": "apachepulsar/pulsar-all:4.0.12", "create-secrets": "alpine/k8s:1.32.12"})
        );
        // Existing annotations, and entries for other containers, are kept.
        let request = pod_request(
            json!({"containers": [{"name": "app", "image": "nginx:1.27"}]}),
            Some(json!({"team": "a", ORIGINAL_IMAGES_ANNOTATION: "{\"sidecar\":\"envoy:1\"}"})),
        );
        let pod = h.run_request(request).object_value();
        assert_eq!(pod["metadata"]["annotations"]["team"], "a");
        let recorded: Value =
            serde_json::from_str(pod["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(recorded, json!({"app": "nginx:1.27", "sidecar": "envoy:1"}));
        // Without the setting, no annotation.
        let pod = harness().run_file(fixture("pulsar/reviews/001-pod-pulsar-jwt-secret-init.json")).object_value();
        assert!(pod["metadata"].get("annotations").is_none());
    }

    #[test]
    fn an_unparsable_image_is_a_policy_error_naming_the_container() {
        let request = pod_request(json!({"containers": [{"name": "web", "image": "Nginx:latest"}]}), None);
        let outcome = harness().run_request(request);
        let err = outcome.error().unwrap();
        assert!(err.contains(r#"container "web""#) && err.contains("Nginx"), "{err}");
    }

    #[test]
    fn pods_only() {
        let outcome = harness().run_file(fixture("pulsar/reviews/003-pvc-pulsar-bookie-journal-pulsar-bookie-0.json"));
        assert!(outcome.error().unwrap().contains("PersistentVolumeClaim"));
    }

    #[test]
    fn bad_settings_name_the_field() {
        let err = |settings: Value| {
            Harness::<RegistryRewriteSettings>::new(evaluate).settings(settings).validate_settings().unwrap_err()
        };
        let e = err(json!({"rules": []}));
        assert!(e.contains("settings.rules"), "{e}");
        let e = err(json!({"rules": [{"from": "bitnami", "to": "harbor.example.com"}]}));
        assert!(e.contains("rules[0].from") && e.contains("docker.io/bitnami"), "{e}");
        let e = err(json!({"rules": [{"from": "docker.io", "to": "harbor.example.com/Library"}]}));
        assert!(e.contains("rules[0].to") && e.contains("lowercase"), "{e}");
        let e = err(json!({"rules": [{"from": "docker.io", "to": "harbor.example.com", "annotate": true}]}));
        assert!(e.contains("rules[0]") && e.contains("annotate"), "{e}");
        let e = err(json!({"rules": [
            {"from": "docker.io", "to": "harbor.example.com/hub"},
            {"from": "harbor.example.com/old", "to": "harbor.example.com/new"}]}));
        assert!(e.contains("rules[1].from") && e.contains("never"), "{e}");
        let e = err(json!({"rules": [
            {"from": "docker.io", "to": "harbor.example.com/hub"},
            {"from": "docker.io/bitnami", "to": "harbor.example.com/bitnami"}]}));
        assert!(e.contains("rules[1].from") && e.contains("more specific rule first"), "{e}");
        let e = err(json!({"rules": [{"from": "docker.io", "to": "harbor.example.com"}], "annotateOriginal": "yes"}));
        assert!(e.contains("annotateOriginal"), "{e}");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn rules() -> Vec<Rule> {
        serde_json::from_value::<RegistryRewriteSettings>(serde_json::json!({"rules": [
            {"from": "docker.io/bitnami", "to": "harbor.example.com/bitnami"},
            {"from": "docker.io", "to": "harbor.example.com/library"},
            {"from": "quay.io/prometheus", "to": "harbor.example.com/quay"},
            {"from": "localhost:5000", "to": "mirror.example.com:8443/local"},
        ]}))
        .unwrap()
        .rules
    }

    prop_compose! {
        fn reference_text()(
            domain in prop_oneof![
                Just(String::new()),
                Just("docker.io/".to_owned()),
                Just("index.docker.io/".to_owned()),
                Just("quay.io/".to_owned()),
                Just("quay.io/prometheus/".to_owned()),
                Just("localhost:5000/".to_owned()),
                Just("harbor.example.com/".to_owned()),
                Just("mirror.example.com:8443/".to_owned()),
                Just("registry.k8s.io/".to_owned()),
                Just("docker.io/bitnami/".to_owned()),
            ],
            path in prop::collection::vec("[a-z0-9]{1,5}((\\.|_|__|-{1,2})[a-z0-9]{1,5})?", 1..4),
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}"),
            digest in proptest::option::of("[a-f0-9]{64}"),
        ) -> String {
            let mut path = path;
            if domain.is_empty() && path[0].contains('.') {
                path[0] = path[0].replace('.', "-");
            }
            let mut out = format!("{domain}{}", path.join("/"));
            if let Some(tag) = tag {
                out = format!("{out}:{tag}");
            }
            if let Some(digest) = digest {
                out = format!("{out}@sha256:{digest}");
            }
            out
        }
    }

    proptest! {
        #[test]
        fn rewriting_is_idempotent(image in reference_text()) {
            let rules = rules();
            let once = rewrite(&image, &rules).map_err(TestCaseError::fail)?.unwrap_or_else(|| image.clone());
            let twice = rewrite(&once, &rules).map_err(TestCaseError::fail)?;
            prop_assert_eq!(twice, None, "{} was rewritten twice", image);
            // The tag and digest survive, and the result is a valid reference.
            let before = Reference::parse(&image).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let after = Reference::parse(&once).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(before.tag(), after.tag());
            prop_assert_eq!(before.digest(), after.digest());
        }

        #[test]
        fn parse_format_parse_round_trips(image in reference_text()) {
            let parsed = Reference::parse(&image).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let again = Reference::parse(&parsed.to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again, parsed);
        }
    }
}
