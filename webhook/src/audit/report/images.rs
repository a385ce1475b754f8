//! The container images an audited object names, and their registries, for
//! the report's "denied images by registry".

use berth_reference::Reference;
use serde_json::Value;

/// Where a kind keeps its pod spec: a Pod itself, a workload's template, a
/// CronJob's job template.
const POD_SPECS: [&[&str]; 3] =
    [&["spec"], &["spec", "template", "spec"], &["spec", "jobTemplate", "spec", "template", "spec"]];

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// One image, normalised as Docker does (`busybox` is
/// `docker.io/library/busybox`), with its registry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Image {
    /// `docker.io`, `harbor.example.com:5000`; `(invalid)` for a string that
    /// is not an image reference.
    pub registry: String,
    /// As `docker` prints it (`apachepulsar/pulsar-all:2.7.4`), or as
    /// written when it does not parse.
    pub image: String,
}

pub const INVALID: &str = "(invalid)";

/// The distinct images of `object`'s pod spec, wherever its kind keeps it.
pub fn images(object: &Value) -> Vec<Image> {
    let mut found = Vec::new();
    for path in POD_SPECS {
        let Some(spec) = path.iter().try_fold(object, |value, key| value.get(key)) else { continue };
        for list in CONTAINER_LISTS {
            let containers = spec.get(list).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for image in containers.iter().filter_map(|c| c.get("image")?.as_str()) {
                found.push(match Reference::parse(image) {
                    Ok(reference) => Image { registry: reference.domain().to_owned(), image: reference.familiar() },
                    Err(_) => Image { registry: INVALID.to_owned(), image: image.to_owned() },
                });
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_templates_and_cron_jobs() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "i", "image": "busybox"}],
            "containers": [{"name": "a", "image": "apachepulsar/pulsar-all:2.7.4"}, {"name": "b", "image": "busybox"}],
            "ephemeralContainers": [{"name": "e", "image": "localhost:5000/debug@sha256:".to_owned() + &"a".repeat(64)}],
        }});
        let found = images(&pod);
        let pairs: Vec<(&str, &str)> = found.iter().map(|i| (i.registry.as_str(), i.image.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("docker.io", "apachepulsar/pulsar-all:2.7.4"),
                ("docker.io", "busybox"),
                ("localhost:5000", &*format!("localhost:5000/debug@sha256:{}", "a".repeat(64))),
            ]
        );
        let deployment = json!({"spec": {"template": {"spec": {"containers": [{"image": "quay.io/x/y:1"}]}}}});
        assert_eq!(images(&deployment)[0].registry, "quay.io");
        let cron = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"image": "ghcr.io/a/b"}]}}}}}});
        assert_eq!(images(&cron)[0].image, "ghcr.io/a/b");
    }

    #[test]
    fn what_is_not_an_image_is_counted_as_invalid_not_dropped() {
        let pod = json!({"spec": {"containers": [{"image": "UPPER/Case"}, {"image": 7}, {"name": "no image"}]}});
        assert_eq!(images(&pod), [Image { registry: INVALID.into(), image: "UPPER/Case".into() }]);
        assert!(images(&json!({"data": {"k": "v"}})).is_empty());
        assert!(images(&json!("not an object")).is_empty());
    }
}
