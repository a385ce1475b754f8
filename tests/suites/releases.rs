//! One line per release (issue 17): `policies.<app>.helmReleases` in the
//! chart, rendered by real `helm template` into berth.yaml's
//! `helmReleases`, makes a release whose labels the default rules do not
//! know Kafka's or Pulsar's, whole: its pods (Job pods through their
//! owners), its claims, its digest-only images.
//!
//! The unknown-labels releases are made here from the two seed sets, with
//! every `app` and `app.kubernetes.io/name` label renamed (kafka →
//! cp-kafka, as Confluent's cp-helm-charts label theirs; zookeeper →
//! cp-zookeeper; pulsar → sn-pulsar), in the reviews and in cluster.yaml
//! alike, and one image of each made digest-only. The rendered berth.yaml
//! is loaded as `berth eval --config FILE --context cluster.yaml` loads it
//! (`Config::parse`, `Cluster::snapshot`, `PolicySet::load`, `admit`).

use crate::deploy::{render, template};
use berth::admission::{Endpoint, admit};
use berth::cluster::Cluster;
use berth::config::{Config, Source};
use berth::policy::PolicySet;
use berth::review::Review;
use berth::runtime::{ArtifactCache, Runtime, RuntimeOptions};
use berth_e2e::admission::{Answer, check, with_object};
use berth_e2e::fixtures;
use berth_e2e::server::Server;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const HARBOR: &str = "harbor.example.com/library";
const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];
const DIGEST: &str = "sha256:0d0ae7b5bde3f2d2d0e47cf2d1b4e3d2f13f9f2c46b3e8fb2d3f6a1f9b8a7c6d";

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeOptions { cache: ArtifactCache::at(berth_e2e::server::cache_dir()), ..Default::default() })
            .expect("runtime")
    })
}

/// A label value the default rules know, renamed to one they do not.
fn renamed(value: &str) -> Option<&'static str> {
    match value {
        "kafka" => Some("cp-kafka"),
        "zookeeper" => Some("cp-zookeeper"),
        "pulsar" => Some("sn-pulsar"),
        _ => None,
    }
}

/// Rename the app labels everywhere labels are written: an object's
/// labels, selectors' matchLabels, templates' labels.
fn rename_labels(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if (key == "labels" || key == "matchLabels")
                    && let Some(labels) = child.as_object_mut()
                {
                    for key in ["app", "app.kubernetes.io/name"] {
                        if let Some(new) = labels.get(key).and_then(Value::as_str).and_then(renamed) {
                            labels.insert(key.to_owned(), new.into());
                        }
                    }
                }
                rename_labels(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rename_labels),
        _ => {}
    }
}

/// `image` without its tag, pinned by digest alone, wherever it is used.
fn digest_only(value: &mut Value, image: &str) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "image" && child.as_str() == Some(image) {
                    let repository = image.rsplit_once(':').map_or(image, |(repository, _)| repository);
                    *child = format!("{repository}@{DIGEST}").into();
                } else {
                    digest_only(child, image);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| digest_only(item, image)),
        _ => {}
    }
}

/// A fixture set with unknown labels: its reviews and its cluster, renamed.
struct Unknown {
    reviews: Vec<(String, Value)>,
    cluster: PathBuf,
    dir: tempfile::TempDir,
}

fn unknown_labels(set: &str, digest_image: &str) -> Unknown {
    let dir = tempfile::tempdir().expect("tmp");
    let source = fixtures::dir().join(set);
    let text = std::fs::read_to_string(source.join("cluster.yaml")).expect("cluster.yaml");
    let mut items = Vec::new();
    for mut value in berth::yaml::documents::<Value>(&text).expect("cluster.yaml is YAML") {
        rename_labels(&mut value);
        items.push(value);
    }
    let cluster = dir.path().join("cluster.json");
    std::fs::write(&cluster, json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()).expect("write");
    let mut reviews: Vec<(String, Value)> = std::fs::read_dir(source.join("reviews"))
        .expect("reviews")
        .flatten()
        .map(|entry| {
            let mut review: Value =
                serde_json::from_str(&std::fs::read_to_string(entry.path()).expect("review")).expect("JSON");
            rename_labels(&mut review);
            digest_only(&mut review, digest_image);
            (entry.file_name().to_string_lossy().into_owned(), review)
        })
        .collect();
    reviews.sort_by(|a, b| a.0.cmp(&b.0));
    let text = serde_json::to_string(&reviews.iter().map(|(_, r)| r).collect::<Vec<_>>()).expect("JSON");
    assert!(!text.contains(digest_image), "{set}: {digest_image} is digest-only everywhere");
    assert!(text.contains(&format!("@{DIGEST}")), "{set}: the digest-only image is used");
    Unknown { reviews, cluster, dir }
}

fn load(config: Option<&str>, cluster: &Path) -> PolicySet {
    let sources = match config {
        Some(text) => vec![Source {
            config: Config::parse(text, "berth.yaml").expect("the rendered berth.yaml parses"),
            base_dir: PathBuf::new(),
            origin: "berth.yaml".into(),
        }],
        None => Config::embedded_default().expect("the embedded default"),
    };
    let cluster = Cluster::snapshot(&[cluster.to_owned()]).expect("the cluster parses");
    PolicySet::load(runtime(), &sources, cluster).expect("the policies load")
}

fn send(set: &PolicySet, endpoint: Endpoint, review: &Value) -> Answer {
    let body = serde_json::to_vec(review).expect("serializes");
    let admitted = admit(set, endpoint, Review::parse(&body).expect("the review parses"));
    check(review, &serde_json::to_vec(&admitted.response.into_review()).expect("serializes"))
}

/// Docker Hub short names under Harbor's proxy project, official images
/// with their library/ segment; the tag or digest as written.
fn harbor(image: &str) -> String {
    let path = if image.split('/').next().is_some_and(|first| first.contains('.')) {
        panic!("{image}: the seed sets use Docker Hub short names; extend this test")
    } else if image.contains('/') {
        image.to_owned()
    } else {
        format!("library/{image}")
    };
    format!("{HARBOR}/{path}")
}

/// What the default policy gives every pod of `app`, the release's pods
/// all pinned (nothing in a release with unknown labels says which are
/// ZooKeeper or BookKeeper).
fn expected_pod(app: &str, original: &Value) -> Value {
    let mut pod = original.clone();
    let spec = pod["spec"].as_object_mut().expect("spec");
    spec.entry("tolerations")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("list")
        .push(json!({"key": "dedicated", "operator": "Equal", "value": app, "effect": "NoSchedule"}));
    spec.insert("nodeSelector".into(), json!({format!("node-role.kubernetes.io/{app}"): app}));
    spec.insert("imagePullSecrets".into(), json!([{"name": "regsecret"}]));
    for list in CONTAINER_LISTS {
        for container in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let image = container["image"].as_str().expect("image").to_owned();
            container["image"] = harbor(&image).into();
        }
    }
    pod
}

/// Every object of `unknown`, with the render that names its release:
/// exactly what the default policy gives its app's objects; and, with the
/// default policy alone, nothing (the labels are really unknown).
fn assert_release_is_covered(unknown: &Unknown, rendered: &str, app: &str) -> (usize, usize) {
    let with_release = load(Some(rendered), &unknown.cluster);
    let default = load(None, &unknown.cluster);
    let (mut pods, mut claims) = (0, 0);
    for (name, review) in &unknown.reviews {
        let request = &review["request"];
        if request["operation"] != "CREATE" {
            continue;
        }
        let original = &request["object"];
        let before = send(&default, Endpoint::Mutate, review);
        assert!(before.patch.is_none(), "{name}: the default rules know this object: {:?}", before.patch);

        let answer = send(&with_release, Endpoint::Mutate, review);
        assert!(answer.allowed(), "{name}: {}", answer.message());
        match request["kind"]["kind"].as_str() {
            Some("Pod") => {
                assert_eq!(answer.object, expected_pod(app, original), "{name}: the promised pod, exactly");
                let images: Vec<&str> = CONTAINER_LISTS
                    .iter()
                    .flat_map(|l| answer.object["spec"][l].as_array().into_iter().flatten())
                    .filter_map(|c| c["image"].as_str())
                    .collect();
                assert!(images.iter().all(|i| i.starts_with(&format!("{HARBOR}/"))), "{name}: {images:?}");
                // /validate: the chart's pod is refused, berth's admitted.
                let unmutated = send(&with_release, Endpoint::Validate, review);
                assert!(!unmutated.allowed(), "{name}: /validate let the unmutated pod in");
                assert!(unmutated.message().contains(&format!("{app}-")), "{name}: {}", unmutated.message());
                pods += 1;
            }
            Some("PersistentVolumeClaim") => {
                let mut expected = original.clone();
                if original["spec"].get("storageClassName").is_none() {
                    expected["spec"]["storageClassName"] = "local-storage".into();
                }
                assert_eq!(answer.object, expected, "{name}: the promised claim, exactly");
                assert_eq!(answer.object["spec"]["storageClassName"], "local-storage", "{name}");
                claims += 1;
            }
            other => panic!("{name}: {other:?}"),
        }
        let again = with_object(review, &answer.object);
        let second = send(&with_release, Endpoint::Mutate, &again);
        assert!(second.allowed() && second.patch.is_none(), "{name}: reinvocation patched: {:?}", second.patch);
        let validated = send(&with_release, Endpoint::Validate, &again);
        assert!(validated.allowed(), "{name}: berth's own output is refused: {}", validated.message());
    }
    (pods, claims)
}

#[test]
fn a_kafka_release_with_unknown_labels_is_kafkas_with_one_value() {
    let unknown = unknown_labels("seed-kafka-0.21.5", "zookeeper:3.5.5");
    let rendered = render(&["--set", "policies.kafka.helmReleases={default/kafka}"]).berth_yaml();
    assert!(rendered.contains("helmReleases:\n  kafka:\n  - default/kafka\n"), "{rendered}");
    // Two brokers and two ZooKeeper servers, a dry run; their four claims
    // (the brokers' by their release label, ZooKeeper's by `release`,
    // both from the StatefulSets' selectors).
    assert_eq!(assert_release_is_covered(&unknown, &rendered, "kafka"), (5, 4));

    // And through the CLI itself: berth eval --config (the render)
    // --context (the release's cluster) --apply, on a ZooKeeper pod with a
    // digest-only image and on a broker's claim.
    let config = unknown.dir.path().join("berth.yaml");
    std::fs::write(&config, &rendered).expect("write");
    for (file, pointer, expected) in [
        ("002-pod-kafka-zookeeper-0.json", "/spec/nodeSelector/node-role.kubernetes.io~1kafka", "kafka"),
        ("005-pvc-datadir-kafka-0.json", "/spec/storageClassName", "local-storage"),
    ] {
        let review = &unknown.reviews.iter().find(|(name, _)| name == file).expect(file).1;
        let path = unknown.dir.path().join(file);
        std::fs::write(&path, review.to_string()).expect("write");
        let (config, context, path) =
            (config.display().to_string(), unknown.cluster.display().to_string(), path.display().to_string());
        let (status, stdout, stderr) =
            Server::cli(&["eval", "--config", &config, "--context", &context, "--apply", &path]);
        assert!(status.success(), "{file}: {stderr}");
        let object: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{file}: {e}: {stdout}"));
        assert_eq!(object.pointer(pointer), Some(&json!(expected)), "{file}: {object}");
        let (_, stdout, _) = Server::cli(&["eval", "--context", &context, "--apply", &path]);
        let untouched: Value = serde_json::from_str(&stdout).expect("JSON");
        assert_eq!(&untouched, &review["request"]["object"], "{file}: the default alone leaves it");
    }
}

#[test]
fn a_pulsar_release_with_unknown_labels_is_pulsars_job_pods_included() {
    let unknown = unknown_labels("seed-pulsar-2.7.7", "apachepulsar/pulsar-manager:v0.2.0");
    let rendered = render(&["--set", "policies.pulsar.helmReleases={pulsar/pulsar}"]).berth_yaml();
    // The init Job pods carry no chart label: they are the release's
    // through their Job, which Helm annotated.
    let job_pod = unknown.reviews.iter().find(|(name, _)| name == "025-pod-pulsar-bookie-init.json");
    let labels = &job_pod.expect("the bookie init Job's pod").1["request"]["object"]["metadata"]["labels"];
    assert!(labels.get("release").is_none() && labels.get("app").is_none(), "{labels}");
    assert_eq!(assert_release_is_covered(&unknown, &rendered, "pulsar"), (18, 9));
}

/// The render that makes `default/kafka` Kafka's (the seed Kafka set's own
/// release, whose objects the labels already cover) and another release
/// Pulsar's answers every fixture of every set exactly as the default
/// policy does. (A Pulsar release of known labels listed by name has all
/// its pods pinned, bookies and ZooKeeper too: docs/CONFIG.md.)
#[test]
fn the_same_render_leaves_every_fixture_set_as_it_was() {
    let rendered = render(&[
        "--set",
        "policies.kafka.helmReleases={default/kafka,streaming/confluent}",
        "--set",
        "policies.pulsar.helmReleases={messaging/pulsar}",
    ])
    .berth_yaml();
    let mut compared = 0;
    let mut sets: Vec<_> = fixtures::all().into_iter().map(|f| f.chart().to_owned()).collect();
    sets.dedup();
    for set in sets {
        let cluster = fixtures::dir().join(&set).join("cluster.yaml");
        let (with_release, default) = (load(Some(&rendered), &cluster), load(None, &cluster));
        for fixture in fixtures::all().into_iter().filter(|f| f.chart() == set) {
            for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
                let (a, b) =
                    (send(&with_release, endpoint, &fixture.review), send(&default, endpoint, &fixture.review));
                let name = fixture.file_name();
                assert_eq!(a.response, b.response, "{set}/{name} {endpoint:?}: the releases changed the answer");
                compared += 1;
            }
        }
    }
    assert!(compared >= 2 * 100, "{compared}");
}

#[test]
fn a_release_listed_under_both_apps_is_refused_naming_it() {
    let err = template(&[
        "--set",
        "policies.kafka.helmReleases={default/kafka}",
        "--set",
        "policies.pulsar.helmReleases={pulsar/pulsar,default/kafka}",
    ])
    .expect_err("a release of two apps renders");
    assert!(
        err.contains(
            "helm release default/kafka is listed under policies.pulsar.helmReleases and policies.kafka.helmReleases"
        ),
        "{err}"
    );
    // berth refuses it too, for a berth.yaml written by hand.
    let mut rendered = render(&["--set", "policies.kafka.helmReleases={default/kafka}"]).berth_yaml();
    rendered = rendered.replace("helmReleases:\n", "helmReleases:\n  pulsar: [default/kafka]\n");
    let config = Config::parse(&rendered, "berth.yaml").expect("parses");
    let sources = [Source { config, base_dir: PathBuf::new(), origin: "berth.yaml".into() }];
    let err = PolicySet::load(runtime(), &sources, Cluster::missing_context()).expect_err("loads");
    let err = err.to_string();
    assert!(err.contains("default/kafka") && err.contains("helmReleases.kafka"), "{err}");
    // A list for an app that is switched off would match nothing.
    let err = template(&["--set", "policies.kafka.enabled=false", "--set", "policies.kafka.helmReleases={a/b}"])
        .expect_err("renders");
    assert!(err.contains("policies.kafka.enabled is false"), "{err}");
}
