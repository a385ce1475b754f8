//! # sample-policy
//!
//! Labels every object it is given, and refuses Pods whose images float:
//! an image tagged `:latest`, or with neither a tag nor a digest, on any
//! container, init container or ephemeral container. On UPDATE only the
//! images the update brings are judged, so relabelling an old Pod passes.
//!
//! Build with `berth plugin build .`, test with `berth test .`.

use berth_sdk::names::{check_label_key, check_label_value};
use berth_sdk::pod::Containers;
use berth_sdk::{Error, Operation, Patch, Request, Settings, SettingsError, Verdict, log, pointer};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The policy's `settings` in berth.yaml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplePolicySettings {
    /// The label every object gets.
    pub label: Label,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    pub key: String,
    pub value: String,
}

impl Settings for SamplePolicySettings {
    fn validate(&self) -> Result<(), SettingsError> {
        check_label_key(&self.label.key).map_err(|why| SettingsError::new("label.key", why))?;
        check_label_value(&self.label.value).map_err(|why| SettingsError::new("label.value", why))
    }
}

/// The parts of an object this policy reads; serde skips the rest unparsed.
#[derive(Deserialize)]
struct Object {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: Containers,
}

#[derive(Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

pub fn evaluate(request: &Request, settings: &SamplePolicySettings) -> Result<Verdict, Error> {
    if !request.has_object() {
        return Ok(Verdict::allow());
    }
    let object: Object = request.object()?;

    if request.kind.kind == "Pod" {
        let problems = image_problems(request, &object.spec)?;
        if !problems.is_empty() {
            return Ok(Verdict::deny(problems.join("; ")));
        }
    }

    let Label { key, value } = &settings.label;
    let Some(labels) = object.metadata.labels else {
        let labels = BTreeMap::from([(key.clone(), value.clone())]);
        return Ok(Verdict::mutate(Patch::new().add("/metadata/labels", serde_json::to_value(labels)?)));
    };
    let path = pointer(["metadata", "labels", key.as_str()]);
    Ok(match labels.get(key) {
        None => Verdict::mutate(Patch::new().add(path, value.as_str())),
        Some(old) if old == value => Verdict::allow(),
        Some(old) => Verdict::mutate(Patch::new().replace(path, value.as_str()))
            .with_warning(format!("label {key:?} was {old:?}, now {value:?}")),
    })
}

/// One message per floating image, in the order the Pod lists them. On
/// UPDATE, an image the stored Pod already runs was admitted before and is
/// not judged again.
fn image_problems(request: &Request, spec: &Containers) -> Result<Vec<String>, Error> {
    let admitted: Vec<String> = match request.operation {
        Operation::Update => {
            let old: Object = request.old_object()?;
            old.spec.images().map(|image| image.image.to_owned()).collect()
        }
        _ => Vec::new(),
    };
    let mut problems = Vec::new();
    let mut judged = 0;
    for container in spec.images().filter(|c| !admitted.iter().any(|image| image == c.image)) {
        judged += 1;
        let what = match container.list {
            "initContainers" => "init container",
            "ephemeralContainers" => "ephemeral container",
            _ => "container",
        };
        if let Some(why) = floats(container.image) {
            problems.push(format!("{what} {:?}: image {:?} {why}", container.name, container.image));
        }
    }
    log::debug(&format!("judged {judged} images"));
    Ok(problems)
}

/// Why an image reference does not pin what runs, if it does not. A digest
/// pins it whatever its tag; the tag is what follows `:` in the last path
/// segment (a registry's port is in the first).
fn floats(image: &str) -> Option<&'static str> {
    if image.contains('@') {
        return None;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => Some("has neither tag nor digest"),
        Some((_, "latest")) => Some("is tagged :latest"),
        Some(_) => None,
    }
}

berth_sdk::export_plugin!(SamplePolicySettings, evaluate);

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sdk::testing::Harness;
    use serde_json::json;

    fn harness() -> Harness<SamplePolicySettings> {
        Harness::new(evaluate).settings(json!({"label": {"key": "example.com/checked", "value": "true"}}))
    }

    #[test]
    fn images_that_float() {
        assert_eq!(floats("busybox"), Some("has neither tag nor digest"));
        assert_eq!(floats("registry:5000/busybox"), Some("has neither tag nor digest"));
        assert_eq!(floats("busybox:latest"), Some("is tagged :latest"));
        assert_eq!(floats("registry:5000/busybox:1.36"), None);
        assert_eq!(floats("busybox:latest@sha256:0123"), None);
    }

    #[test]
    fn labels_the_bookie() {
        let pod: serde_json::Value = harness().run_file("tests/reviews/bookie.json").object_value();
        assert_eq!(pod["metadata"]["labels"]["example.com/checked"], "true");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let h = Harness::<SamplePolicySettings>::new(evaluate).settings(json!({"label": {"key": "", "value": "x"}}));
        assert!(h.validate_settings().unwrap_err().contains("settings.label.key"));
    }
}
