//! The seed inputs of each corpus, made from the repository's own fixtures
//! and examples: `seed-*` files, written by
//! `cargo test -p berth-fuzz-checks --test corpora -- --ignored write_seeds`.
//! The fuzzers add the rest (fuzz/README.md).

use crate::{default_policies, fixture_sets, repo_root};
use berth::admission::{Endpoint, PolicyResult, admit};
use berth::review::Review;
use serde_json::{Value, json};
use std::path::Path;

/// Write every target's seeds under `corpus/<target>/`.
pub fn write(corpus: &Path) {
    let mut images = Vec::new();
    for set in fixture_sets() {
        let set_name = set.file_name().expect("a fixture set has a name").to_string_lossy().into_owned();
        let mut reviews: Vec<_> =
            std::fs::read_dir(set.join("reviews")).expect("reviews/").flatten().map(|e| e.path()).collect();
        reviews.sort();
        for path in reviews {
            let file = path.file_name().expect("a file name").to_string_lossy().into_owned();
            let body = std::fs::read(&path).expect("a fixture review");
            save(corpus, "review", &format!("seed-{set_name}-{file}"), &body);
            let value: Value = serde_json::from_slice(&body).expect("a fixture review is JSON");
            collect_images(&value, &mut images);
            if let Some(seed) = compose_seed(&body) {
                save(corpus, "compose", &format!("seed-{set_name}-{file}"), seed.to_string().as_bytes());
            }
        }
    }
    let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let tag_and_digest = format!("foo/bar:tag@sha256:{hex}");
    let short_sha384 = format!("busybox@sha384:{hex}{}", &hex[..32]);
    for extra in [
        "busybox",
        "index.docker.io/library/busybox:1.36",
        "localhost/foo",
        "localhost:5000/team/app:v1",
        "[::1]:5000/a",
        "quay.io/prometheus/node-exporter:v1.9.1",
        "quay.io/prometheus-community/x",
        "docker.io/a.b/c",
        "bitnami/Kafka",
        "my_host.com/app",
        &tag_and_digest,
        &short_sha384,
        hex,
    ] {
        images.push(extra.to_owned());
    }
    images.sort();
    images.dedup();
    for (i, image) in images.iter().enumerate() {
        save(corpus, "reference", &format!("seed-{i:03}"), image.as_bytes());
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"},
                     "spec": {"tolerations": [], "containers": [{"name": "c", "image": "busybox"}]}});
    let hand = [
        (
            "identity",
            json!([[{"op": "replace", "path": "/metadata/name", "value": "q"}],
                            [{"op": "move", "from": "/metadata/namespace", "path": "/spec/ns"}]]),
        ),
        ("whole-object", json!([[{"op": "replace", "path": "", "value": {}}]])),
        ("not-a-patch", json!(["not json", {"op": "add"}, [{"op": "remove", "path": "/spec/nothing"}]])),
        ("net-no-op", json!([[{"op": "add", "path": "/spec/x", "value": 1}], [{"op": "remove", "path": "/spec/x"}]])),
        (
            "in-order",
            json!([[{"op": "add", "path": "/spec/tolerations/-", "value": {"key": "a"}}],
                            [{"op": "copy", "from": "/spec/tolerations/0", "path": "/spec/tolerations/-"},
                             {"op": "test", "path": "/spec/tolerations/1/key", "value": "a"}]]),
        ),
    ];
    for (name, patches) in hand {
        save(
            corpus,
            "compose",
            &format!("seed-{name}"),
            json!({"object": pod, "patches": patches}).to_string().as_bytes(),
        );
    }
    let root = repo_root();
    for dir in ["deploy/policies", "deploy/examples"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir)).expect(dir).flatten().map(|e| e.path()).collect();
        files.sort();
        for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
            let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
            let text = std::fs::read(&path).expect("a policy file");
            save(corpus, "config", &format!("seed-{}-{name}", dir.replace('/', "-")), &text);
        }
    }
    // The examples in docs/CONFIG.md, each ```yaml block.
    let doc = std::fs::read_to_string(root.join("docs/CONFIG.md")).expect("docs/CONFIG.md");
    for (i, block) in doc.split("```yaml\n").skip(1).enumerate() {
        let yaml = block.split("```").next().unwrap_or_default();
        save(corpus, "config", &format!("seed-config-md-{i:02}.yaml"), yaml.as_bytes());
    }
}

fn save(corpus: &Path, target: &str, name: &str, data: &[u8]) {
    let dir = corpus.join(target);
    std::fs::create_dir_all(&dir).expect("the corpus directory");
    std::fs::write(dir.join(name), data).expect("writing a seed");
}

fn collect_images(value: &Value, images: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    Value::String(image) if key == "image" => images.push(image.clone()),
                    other => collect_images(other, images),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_images(item, images)),
        _ => {}
    }
}

/// The object of a fixture review and the patch each default policy
/// answered on /mutate, in order; `None` if no policy changed it.
fn compose_seed(body: &[u8]) -> Option<Value> {
    let review = Review::parse(body).expect("a fixture review parses");
    let object = review.request.object.clone()?;
    let admitted = admit(default_policies(), Endpoint::Mutate, review);
    let patches: Vec<Value> = admitted
        .outcomes
        .iter()
        .filter_map(|outcome| match &outcome.result {
            PolicyResult::Mutated(ops) => {
                Some(serde_json::to_value(&admitted.patch[ops.clone()]).expect("ops serialize"))
            }
            _ => None,
        })
        .collect();
    (!patches.is_empty()).then(|| json!({"object": object, "patches": patches}))
}
