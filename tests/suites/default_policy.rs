//! berth's embedded default policy (deploy/policies/pulsar.yaml, then
//! kafka.yaml) on every fixture review, the `seed-` sets of the hand-made
//! install berth replaces included, through the library path the server
//! takes: `Config::embedded_default`, `Runtime`, `PolicySet::load` with the
//! set's `cluster.yaml` as the cluster (what `berth eval --context` reads),
//! `Review::parse`, `admit`. Each answer is checked as kube-apiserver would
//! (berth_e2e::admission::check applies the patch with its own applier and
//! requires a valid Pod / PersistentVolumeClaim after it), and the patched
//! object is compared, whole, with the object the policy promises.

use berth::admission::{Endpoint, admit};
use berth::cluster::Cluster;
use berth::config::Config;
use berth::policy::PolicySet;
use berth::review::Review;
use berth::runtime::{ArtifactCache, Runtime, RuntimeOptions};
use berth_e2e::admission::{Answer, check, with_object};
use berth_e2e::fixtures::{self, Fixture};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

const HARBOR: &str = "harbor.example.com/library";
const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

/// One runtime for the whole suite; compiled plugins come from the cache.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeOptions { cache: ArtifactCache::at(berth_e2e::server::cache_dir()), ..Default::default() })
            .expect("runtime")
    })
}

/// The default policy over a cluster made of these files (a fixture set's
/// cluster.yaml, and more), loaded once per set of files.
fn policies(context: &[PathBuf]) -> Arc<PolicySet> {
    static LOADED: OnceLock<Mutex<HashMap<Vec<PathBuf>, Arc<PolicySet>>>> = OnceLock::new();
    let mut loaded = LOADED.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    let set = loaded.entry(context.to_vec()).or_insert_with(|| {
        let sources = Config::embedded_default().expect("the embedded default parses");
        let cluster = Cluster::snapshot(context).expect("the cluster files parse");
        Arc::new(PolicySet::load(runtime(), &sources, cluster).expect("the embedded default loads"))
    });
    set.clone()
}

/// The cluster file of the fixture set `chart`.
fn cluster_yaml(chart: &str) -> PathBuf {
    fixtures::dir().join(chart).join("cluster.yaml")
}

/// Send `review` of the fixture set `chart` to `endpoint`, with that set's
/// cluster.yaml as the cluster, and check the answer as the apiserver would.
fn send(chart: &str, endpoint: Endpoint, review: &Value) -> Answer {
    send_with(&[cluster_yaml(chart)], endpoint, review)
}

fn send_with(context: &[PathBuf], endpoint: Endpoint, review: &Value) -> Answer {
    let body = serde_json::to_vec(review).expect("a review serializes");
    let parsed = Review::parse(&body).expect("fixture reviews parse");
    let admitted = admit(&policies(context), endpoint, parsed);
    let answer = serde_json::to_vec(&admitted.response.into_review()).expect("the response serializes");
    check(review, &answer)
}

/// The labels the chart gave an object: its own, or, for a pod that
/// carries no chart label (Pulsar 2.7's Job pods), those of its owner in
/// the set's cluster.yaml, found by uid. Independent of berth's own lookup.
fn chart_labels(chart: &str, object: &Value) -> Value {
    let labels = &object["metadata"]["labels"];
    if labels.get("app").is_some() || labels.get("app.kubernetes.io/name").is_some() {
        return labels.clone();
    }
    let Some(owner) = object["metadata"]["ownerReferences"].as_array().and_then(|refs| refs.first()) else {
        return labels.clone();
    };
    let text = std::fs::read_to_string(cluster_yaml(chart)).expect("cluster.yaml");
    for value in berth::yaml::documents::<Value>(&text).expect("cluster.yaml is YAML") {
        if value["metadata"]["uid"] == owner["uid"] {
            return value["metadata"]["labels"].clone();
        }
    }
    panic!("{chart}: the owner {owner} is not in cluster.yaml");
}

/// Which chart's policy an object falls under, by its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum App {
    /// `app: pulsar`; `pinned` unless the component is zookeeper or bookie.
    Pulsar { pinned: bool },
    /// `app.kubernetes.io/name: kafka | zookeeper`.
    Kafka,
}

impl App {
    fn of(chart: &str, object: &Value) -> Option<Self> {
        let labels = chart_labels(chart, object);
        if labels["app"] == "pulsar" {
            let component = labels["component"].as_str().unwrap_or_default();
            return Some(Self::Pulsar { pinned: !matches!(component, "zookeeper" | "bookie") });
        }
        // Both label conventions: app.kubernetes.io/name, and helm/charts'
        // app (incubator/zookeeper).
        match (labels["app.kubernetes.io/name"].as_str(), labels["app"].as_str()) {
            (Some("kafka" | "zookeeper"), _) | (_, Some("kafka" | "zookeeper")) => Some(Self::Kafka),
            _ => None,
        }
    }

    fn dedicated(self) -> &'static str {
        match self {
            Self::Pulsar { .. } => "pulsar",
            Self::Kafka => "kafka",
        }
    }
}

/// Where an image of the charts must end up: Docker Hub names, short or
/// not, under harbor.example.com/library, official images keeping their
/// library/ segment, the tag or digest as written. Written from the policy's
/// description, independently of the plugin's parser.
fn harbor(image: &str) -> String {
    let first = image.split('/').next().unwrap_or_default();
    let hub_path = if image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        image
            .strip_prefix("docker.io/")
            .or_else(|| image.strip_prefix("index.docker.io/"))
            .unwrap_or_else(|| panic!("fixture image {image} is not from Docker Hub; extend this test"))
    } else {
        image
    };
    let hub_path = if hub_path.contains('/') { hub_path.to_owned() } else { format!("library/{hub_path}") };
    format!("{HARBOR}/{hub_path}")
}

/// The Pod the default policy promises for `original`.
fn expected_pod(app: App, original: &Value) -> Value {
    let mut pod = original.clone();
    let spec = pod["spec"].as_object_mut().expect("a Pod has a spec");
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    tolerations
        .as_array_mut()
        .expect("tolerations is a list")
        .push(json!({"key": "dedicated", "operator": "Equal", "value": app.dedicated(), "effect": "NoSchedule"}));
    match app {
        App::Pulsar { pinned: false } => {}
        App::Pulsar { pinned: true } => {
            spec.insert("nodeSelector".into(), json!({"node-role.kubernetes.io/pulsar": "pulsar"}));
        }
        App::Kafka => {
            spec.insert("nodeSelector".into(), json!({"node-role.kubernetes.io/kafka": "kafka"}));
        }
    }
    spec.insert("imagePullSecrets".into(), json!([{"name": "regsecret"}]));
    for list in CONTAINER_LISTS {
        for container in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let image = container["image"].as_str().expect("every container has an image").to_owned();
            container["image"] = harbor(&image).into();
        }
    }
    pod
}

fn images(pod: &Value) -> Vec<String> {
    CONTAINER_LISTS
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().cloned().unwrap_or_default())
        .map(|c| c["image"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn assert_pod(fixture: &Fixture, answer: &Answer) {
    let name = fixture.file_name();
    let original = fixture.object();
    let app =
        App::of(fixture.chart(), original).unwrap_or_else(|| panic!("{name}: a fixture pod of none of the charts"));
    let pod = &answer.object;
    assert!(answer.patch.is_some(), "{name}: every chart pod is patched");

    // The parts the brief spells out, one by one, for readable failures.
    let tolerations = pod["spec"]["tolerations"].as_array().expect("tolerations");
    let original_tolerations = original["spec"]["tolerations"].as_array().expect("the apiserver's two tolerations");
    assert_eq!(original_tolerations.len(), 2, "{name}");
    assert_eq!(&tolerations[..2], &original_tolerations[..], "{name}: the apiserver's tolerations are kept, first");
    let dedicated: Vec<_> = tolerations.iter().filter(|t| t["key"] == "dedicated").collect();
    assert_eq!(dedicated.len(), 1, "{name}: the toleration exactly once: {tolerations:?}");
    assert_eq!(dedicated[0]["value"], app.dedicated(), "{name}");
    assert_eq!(dedicated[0]["effect"], "NoSchedule", "{name}");
    match app {
        App::Pulsar { pinned: false } => {
            assert!(pod["spec"].get("nodeSelector").is_none(), "{name}: zookeeper and bookie are not pinned")
        }
        App::Pulsar { pinned: true } => {
            assert_eq!(pod["spec"]["nodeSelector"], json!({"node-role.kubernetes.io/pulsar": "pulsar"}), "{name}")
        }
        App::Kafka => {
            assert_eq!(pod["spec"]["nodeSelector"], json!({"node-role.kubernetes.io/kafka": "kafka"}), "{name}")
        }
    }
    assert_eq!(pod["spec"]["imagePullSecrets"], json!([{"name": "regsecret"}]), "{name}: regsecret exactly once");
    let before = images(original);
    let after = images(pod);
    assert!(!before.is_empty());
    assert_eq!(after.len(), before.len(), "{name}");
    for (old, new) in before.iter().zip(&after) {
        assert!(new.starts_with(&format!("{HARBOR}/")), "{name}: {new}");
        assert_eq!(new, &harbor(old), "{name}: {old} moved with its tag");
        let tag = old.rsplit_once(':').map(|(_, tag)| tag).expect("fixture images are tagged");
        assert!(new.ends_with(&format!(":{tag}")), "{name}: {new} keeps :{tag}");
    }

    // And nothing else: the whole object, exactly.
    assert_eq!(pod, &expected_pod(app, original), "{name}: the patched Pod is exactly the promised one");
    let typed: Pod =
        serde_json::from_value(pod.clone()).unwrap_or_else(|e| panic!("{name}: not a Pod after the patch: {e}"));
    assert_eq!(typed.spec.and_then(|s| s.image_pull_secrets).map(|s| s.len()), Some(1));
}

fn assert_pvc(fixture: &Fixture, answer: &Answer) {
    let name = fixture.file_name();
    let original = fixture.object();
    assert!(App::of(fixture.chart(), original).is_some(), "{name}: a fixture claim of none of the charts");
    let mut expected = original.clone();
    match original["spec"].get("storageClassName") {
        Some(class) => {
            assert!(answer.patch.is_none(), "{name}: a claim with a class ({class}) is left alone: {:?}", answer.patch);
        }
        None => {
            assert!(answer.patch.is_some(), "{name}: a claim without a class gets one");
            expected["spec"]["storageClassName"] = "local-storage".into();
        }
    }
    assert_eq!(answer.object, expected, "{name}: the patched claim is exactly the promised one");
    let claim: PersistentVolumeClaim = serde_json::from_value(answer.object.clone())
        .unwrap_or_else(|e| panic!("{name}: not a PVC after the patch: {e}"));
    assert!(claim.spec.and_then(|s| s.storage_class_name).is_some(), "{name}: every claim ends with a class");
}

#[test]
fn the_default_policy_is_the_pulsar_file_then_the_kafka_file() {
    let set = policies(&[cluster_yaml("pulsar")]);
    let names: Vec<&str> = set.policies().iter().map(|p| &*p.name).collect();
    assert_eq!(
        names,
        [
            "pulsar-tolerations",
            "pulsar-node-placement",
            "pulsar-pull-secrets",
            "pulsar-registry",
            "pulsar-storage-class",
            "pulsar-allowed-registries",
            "pulsar-require-toleration",
            "pulsar-require-node-selector",
            "kafka-tolerations",
            "kafka-node-placement",
            "kafka-pull-secrets",
            "kafka-registry",
            "kafka-storage-class",
            "kafka-allowed-registries",
            "kafka-require-placement",
        ]
    );
}

#[test]
fn every_fixture_gets_exactly_what_the_default_policy_promises() {
    let (mut pods, mut claims, mut untouched) = (0, 0, 0);
    for fixture in fixtures::all() {
        let name = fixture.file_name();
        let chart = fixture.chart();
        let answer = send(chart, Endpoint::Mutate, &fixture.review);
        assert!(answer.allowed(), "{name}: {}", answer.message());
        if fixture.operation() != "CREATE" {
            assert!(answer.patch.is_none(), "{name}: UPDATE and DELETE get no patch");
            untouched += 1;
            continue;
        }
        match fixture.kind() {
            "Pod" => {
                assert_pod(&fixture, &answer);
                pods += 1;
            }
            "PersistentVolumeClaim" => {
                assert_pvc(&fixture, &answer);
                claims += 1;
            }
            other => panic!("{name}: unexpected kind {other}"),
        }

        // Reinvocation: the same request with berth's own output.
        let again = with_object(&fixture.review, &answer.object);
        let second = send(chart, Endpoint::Mutate, &again);
        assert!(second.allowed(), "{name}: {}", second.message());
        assert!(second.patch.is_none(), "{name}: the second pass patched again: {:?}", second.patch);

        // /validate sees the final object and lets it in.
        let validated = send(chart, Endpoint::Validate, &again);
        assert!(validated.allowed(), "{name}: the patched object is denied: {}", validated.message());
        assert!(validated.patch.is_none(), "{name}: /validate never patches");

        // And the object as the chart made it is denied.
        if fixture.kind() == "Pod" {
            let unmutated = send(chart, Endpoint::Validate, &fixture.review);
            assert!(!unmutated.allowed(), "{name}: /validate let the unmutated pod in");
        }
    }
    // Pod CREATEs with a dryRun one per set: 19+1 pulsar, 6+1 per Bitnami
    // set, 17+1 seed-pulsar, 4+1 seed-kafka; claims 10, 6, 6, 9, 4; an
    // UPDATE and a DELETE per set (tests/fixtures/README.md).
    assert_eq!((pods, claims, untouched), (57, 35, 10));
}

#[test]
fn dry_run_is_mutated_exactly_like_its_twin() {
    for (chart, real, dry) in [
        ("pulsar", "005-pod-pulsar-bookie-0.json", "030-pod-pulsar-bookie-0-dryrun.json"),
        ("kafka-kraft", "002-pod-kafka-broker-0.json", "013-pod-kafka-broker-0-dryrun.json"),
        ("kafka-zookeeper", "002-pod-kafka-zookeeper-0.json", "013-pod-kafka-zookeeper-0-dryrun.json"),
    ] {
        let (real, dry) = (fixtures::get(chart, real), fixtures::get(chart, dry));
        assert_eq!(dry.request()["dryRun"], true);
        let (real_answer, dry_answer) =
            (send(chart, Endpoint::Mutate, &real.review), send(chart, Endpoint::Mutate, &dry.review));
        assert!(real_answer.patch.is_some(), "{chart}");
        assert_eq!(real_answer.patch, dry_answer.patch, "{chart}: dryRun is mutated exactly as the real request");
    }
}

#[test]
fn validate_denies_a_pod_the_mutating_policies_did_not_see() {
    // The bookie as the chart made it: Docker Hub images, no toleration.
    let bookie = fixtures::get("pulsar", "005-pod-pulsar-bookie-0.json");
    let answer = send("pulsar", Endpoint::Validate, &bookie.review);
    assert!(!answer.allowed());
    let message = answer.message();
    // Every offending container, init containers first, in one message.
    assert!(
        message.starts_with(
            r#"pulsar-allowed-registries: container "pulsar-bookkeeper-verify-clusterid" image "docker.io/apachepulsar/pulsar-all:4.0.12" is not from an allowed registry (harbor.example.com); "#
        ),
        "{message}"
    );
    assert!(
        message.contains(
            r#"; container "pulsar-bookie" image "docker.io/apachepulsar/pulsar-all:4.0.12" is not from an allowed registry (harbor.example.com)"#
        ),
        "{message}"
    );
    assert!(
        message.contains("pulsar-require-toleration: pod lacks the required toleration dedicated=pulsar:NoSchedule"),
        "{message}"
    );
    // bookie is not pinned, so its nodeSelector is not required.
    assert!(!message.contains("pulsar-require-node-selector"), "{message}");
    assert_eq!(answer.response["status"]["code"], 403);

    let broker = fixtures::get("kafka-kraft", "002-pod-kafka-broker-0.json");
    let message = send("kafka-kraft", Endpoint::Validate, &broker.review).message().to_owned();
    assert!(
        message.starts_with(r#"kafka-allowed-registries: container "prepare-config" image "docker.io/bitnami/kafka:4.0.0-debian-12-r10""#),
        "{message}"
    );
    assert!(
        message.contains(r#"; container "kafka" image "docker.io/bitnami/kafka:4.0.0-debian-12-r10""#),
        "{message}"
    );
    assert!(
        message.contains("kafka-require-placement: pod lacks the required toleration dedicated=kafka:NoSchedule, nodeSelector node-role.kubernetes.io/kafka=kafka"),
        "{message}"
    );
}

#[test]
fn validate_denies_a_patched_pod_that_lost_its_toleration() {
    for (chart, file, policy, toleration, registries) in [
        (
            "pulsar",
            "012-pod-pulsar-broker-0.json",
            "pulsar-require-toleration",
            "dedicated=pulsar:NoSchedule",
            "pulsar-allowed-registries",
        ),
        (
            "kafka-zookeeper",
            "002-pod-kafka-zookeeper-0.json",
            "kafka-require-placement",
            "dedicated=kafka:NoSchedule",
            "kafka-allowed-registries",
        ),
    ] {
        let fixture = fixtures::get(chart, file);
        let mut pod = send(chart, Endpoint::Mutate, &fixture.review).object;
        pod["spec"]["tolerations"].as_array_mut().expect("tolerations").retain(|t| t["key"] != "dedicated");
        let answer = send(chart, Endpoint::Validate, &with_object(&fixture.review, &pod));
        assert!(!answer.allowed(), "{file}");
        assert_eq!(answer.message(), format!("{policy}: pod lacks the required toleration {toleration}"), "{file}");

        // And one whose image was put back: only the registry policy speaks.
        let mut pod = send(chart, Endpoint::Mutate, &fixture.review).object;
        let original = fixture.object()["spec"]["containers"][0].clone();
        pod["spec"]["containers"][0]["image"] = original["image"].clone();
        let answer = send(chart, Endpoint::Validate, &with_object(&fixture.review, &pod));
        let message = answer.message();
        let container = original["name"].as_str().expect("a container name");
        assert!(message.starts_with(&format!("{registries}: container {container:?}")), "{chart}: {message}");
        assert!(!message.contains("require"), "{message}");
    }
}

#[test]
fn nothing_outside_the_charts_is_touched() {
    for fixture in fixtures::all() {
        if fixture.operation() != "CREATE" {
            continue;
        }
        let name = fixture.file_name();
        let chart = fixture.chart();
        // Same object, labels of some other app.
        let mut review = fixture.review.clone();
        review["request"]["object"]["metadata"]["labels"] = json!({"app": "nginx", "app.kubernetes.io/name": "nginx"});
        let answer = send(chart, Endpoint::Mutate, &review);
        assert!(answer.allowed(), "{name}");
        assert!(answer.patch.is_none(), "{name}: an nginx object was patched: {:?}", answer.patch);
        let validated = send(chart, Endpoint::Validate, &review);
        assert!(validated.allowed(), "{name}: an nginx object was denied: {}", validated.message());
        // No labels and no owner: nothing says it is a chart's.
        let metadata = review["request"]["object"]["metadata"].as_object_mut().expect("metadata");
        metadata.remove("labels");
        metadata.remove("ownerReferences");
        assert!(send(chart, Endpoint::Mutate, &review).patch.is_none(), "{name}");
    }
}

#[test]
fn the_expected_images_helper_follows_the_policy_text() {
    assert_eq!(harbor("apachepulsar/pulsar-all:4.0.12"), "harbor.example.com/library/apachepulsar/pulsar-all:4.0.12");
    assert_eq!(harbor("docker.io/bitnami/kafka:4.0.0"), "harbor.example.com/library/bitnami/kafka:4.0.0");
    assert_eq!(harbor("busybox:1.36"), "harbor.example.com/library/library/busybox:1.36");
}

/// The seven objects the default policy missed before it could see owners
/// and the helm/charts-era labels: Pulsar 2.7's init Job pods (no chart
/// label, only an owner) and Kafka 0.21's ZooKeeper (app: zookeeper).
#[test]
fn the_hand_made_installs_hardest_objects_are_covered() {
    for (chart, file, app) in [
        ("seed-pulsar-2.7.7", "025-pod-pulsar-bookie-init.json", "pulsar"),
        ("seed-pulsar-2.7.7", "026-pod-pulsar-pulsar-init.json", "pulsar"),
        ("seed-kafka-0.21.5", "002-pod-kafka-zookeeper-0.json", "kafka"),
        ("seed-kafka-0.21.5", "004-pod-kafka-zookeeper-1.json", "kafka"),
    ] {
        let fixture = fixtures::get(chart, file);
        assert!(
            fixture.object()["metadata"]["labels"].get("app.kubernetes.io/name").is_none(),
            "{file}: the fixture is as hard as it was"
        );
        let answer = send(chart, Endpoint::Mutate, &fixture.review);
        let spec = &answer.object["spec"];
        assert!(
            spec["tolerations"].as_array().expect("tolerations").iter().any(|t| t["value"] == app),
            "{file}: {spec}"
        );
        assert_eq!(spec["nodeSelector"][format!("node-role.kubernetes.io/{app}")], app, "{file}");
        assert_eq!(spec["imagePullSecrets"], json!([{"name": "regsecret"}]), "{file}");
        assert!(images(&answer.object).iter().all(|i| i.starts_with("harbor.example.com/library/")), "{file}");
        let denied = send(chart, Endpoint::Validate, &fixture.review);
        assert!(!denied.allowed(), "{file}: /validate allowed the unmutated pod");
    }
    let zookeeper = send(
        "seed-kafka-0.21.5",
        Endpoint::Mutate,
        &fixtures::get("seed-kafka-0.21.5", "002-pod-kafka-zookeeper-0.json").review,
    );
    assert!(
        images(&zookeeper.object).contains(&"harbor.example.com/library/library/zookeeper:3.5.5".to_owned()),
        "{:?}",
        images(&zookeeper.object)
    );
    for file in ["001-pvc-data-kafka-zookeeper-0.json", "003-pvc-data-kafka-zookeeper-1.json"] {
        let answer = send("seed-kafka-0.21.5", Endpoint::Mutate, &fixtures::get("seed-kafka-0.21.5", file).review);
        assert_eq!(answer.object["spec"]["storageClassName"], "local-storage", "{file}");
    }
}

/// A job pod's owner that is not in the cluster (deleted, or never there):
/// the chain ends, nothing says the pod is Pulsar's, and it is left alone.
#[test]
fn a_pod_whose_owner_is_gone_is_not_guessed_at() {
    let fixture = fixtures::get("seed-pulsar-2.7.7", "025-pod-pulsar-bookie-init.json");
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("cluster.yaml");
    std::fs::write(&empty, "apiVersion: v1\nkind: Namespace\nmetadata: {name: pulsar}\n").expect("write");
    let answer = send_with(&[empty], Endpoint::Mutate, &fixture.review);
    assert!(answer.allowed() && answer.patch.is_none(), "{:?}", answer.patch);
}

/// On a cluster whose default StorageClass is `standard`, the apiserver
/// writes it into every claim that names none before berth sees it. The
/// Kafka claims must still end on local-storage; Pulsar's named
/// local-storage on purpose and keep it; a class a chart named that is not
/// the default is kept.
#[test]
fn the_clusters_default_storage_class_is_not_the_charts_choice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let standard = dir.path().join("standard.yaml");
    std::fs::write(
        &standard,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: standard\n  annotations:\n    storageclass.kubernetes.io/is-default-class: \"true\"\nprovisioner: kubernetes.io/no-provisioner\n",
    )
    .expect("write");
    let mut claims = 0;
    for fixture in fixtures::all() {
        if fixture.kind() != "PersistentVolumeClaim" || fixture.operation() != "CREATE" {
            continue;
        }
        let name = fixture.file_name();
        let chart = fixture.chart();
        let original = fixture.object()["spec"]["storageClassName"].clone();
        // What DefaultStorageClass does before any webhook.
        let mut review = fixture.review.clone();
        if original.is_null() {
            review["request"]["object"]["spec"]["storageClassName"] = "standard".into();
        }
        let answer = send_with(&[cluster_yaml(chart), standard.clone()], Endpoint::Mutate, &review);
        assert!(answer.allowed(), "{name}: {}", answer.message());
        let class = &answer.object["spec"]["storageClassName"];
        if App::of(chart, fixture.object()) == Some(App::Kafka) {
            assert_eq!(class, "local-storage", "{name}: a Kafka claim kept the cluster's default");
        } else {
            assert_eq!(class, &original, "{name}: the chart's own class is kept");
        }
        claims += 1;

        // A class the chart chose that is not the default: kept.
        let mut chosen = fixture.review.clone();
        chosen["request"]["object"]["spec"]["storageClassName"] = "fast-ssd".into();
        let answer = send_with(&[cluster_yaml(chart), standard.clone()], Endpoint::Mutate, &chosen);
        assert_eq!(answer.object["spec"]["storageClassName"], "fast-ssd", "{name}");
    }
    assert_eq!(claims, 35);
}
