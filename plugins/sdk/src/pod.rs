//! Pieces of a Pod that several policies read or configure, typed once.
//!
//! - [`Toleration`]: a toleration as a plugin's settings give it, with the
//!   checks the apiserver would make ([`Toleration::validate`]) and the test
//!   for "does the Pod already have it" ([`Toleration::is_present_in`]).
//! - [`PodImages`]: a partial Pod with only the names and images of its
//!   containers, init containers and ephemeral containers, and
//!   [`Containers::images`] to walk the three lists with each image's place.
//!
//! These are the fast path: serde reads the named fields and skips the
//! rest of the object unparsed. They are not k8s-openapi types (see the
//! `k8s` feature for those).
//!
//! ```
//! use berth_sdk::pod::PodImages;
//!
//! let pod: PodImages = serde_json::from_str(
//!     r#"{"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}"#,
//! )
//! .unwrap();
//! let images: Vec<_> = pod.images().map(|c| (c.pointer(), c.image)).collect();
//! assert_eq!(images, [("/spec/containers/0/image".to_owned(), "nginx:1.27")]);
//! ```

use crate::SettingsError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The container lists of a Pod spec, as JSON names them, in the order
/// [`Containers::images`] visits them.
pub const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

/// A toleration, as in a Pod spec (`key`, `operator`, `value`, `effect`,
/// `tolerationSeconds`), for settings: unknown fields are refused, and it
/// serializes back to the Pod's form, leaving out the unset fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Toleration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

impl Toleration {
    /// The operator in effect: `Equal` when none (or an empty one) is set.
    pub fn operator(&self) -> &str {
        effective_operator(self.operator.as_deref().unwrap_or_default())
    }

    /// Check what serde cannot: the operator is `Equal` (the default, which
    /// needs a key) or `Exists` (which takes no value); the effect is empty,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`; `tolerationSeconds`
    /// comes only with `NoExecute`.
    ///
    /// `field` is where this toleration stands in the settings
    /// (`tolerations[0]`); an error names the field under it
    /// (`tolerations[0].effect`).
    pub fn validate(&self, field: &str) -> Result<(), SettingsError> {
        self.check().map_err(|(name, message)| {
            let field = if field.is_empty() { name.to_owned() } else { format!("{field}.{name}") };
            SettingsError::new(field, message)
        })
    }

    /// The checks of [`validate`](Self::validate): the offending field's
    /// name and the message. Names are formatted only for an error.
    fn check(&self) -> Result<(), (&'static str, String)> {
        match self.operator.as_deref() {
            None | Some("Equal") => {
                if self.key.as_deref().unwrap_or_default().is_empty() {
                    return Err(("key", "is required with operator Equal".to_owned()));
                }
            }
            Some("Exists") => {
                if self.value.as_deref().is_some_and(|v| !v.is_empty()) {
                    return Err(("value", "must be empty with operator Exists".to_owned()));
                }
            }
            Some(other) => return Err(("operator", format!("must be Equal or Exists, not {other:?}"))),
        }
        match self.effect.as_deref() {
            None | Some("" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") => {}
            Some(other) => {
                return Err(("effect", format!("must be NoSchedule, PreferNoSchedule or NoExecute, not {other:?}")));
            }
        }
        if self.toleration_seconds.is_some() && self.effect.as_deref() != Some("NoExecute") {
            return Err(("tolerationSeconds", "applies only to effect NoExecute".to_owned()));
        }
        Ok(())
    }

    /// Whether the Pod's toleration `existing` (as JSON, from
    /// `spec.tolerations`) tolerates the same taints as this one: the same
    /// key, operator (`Equal` when empty), value and effect. A different
    /// `tolerationSeconds` does not make it another toleration. A field
    /// that is missing, null or not a string counts as empty.
    pub fn matches(&self, existing: &Value) -> bool {
        let field = |name: &str| existing.get(name).and_then(Value::as_str).unwrap_or_default();
        field("key") == self.key.as_deref().unwrap_or_default()
            && effective_operator(field("operator")) == self.operator()
            && field("value") == self.value.as_deref().unwrap_or_default()
            && field("effect") == self.effect.as_deref().unwrap_or_default()
    }

    /// Whether any of the Pod's tolerations [`matches`](Self::matches) this one.
    pub fn is_present_in(&self, existing: &[Value]) -> bool {
        existing.iter().any(|t| self.matches(t))
    }
}

fn effective_operator(operator: &str) -> &str {
    if operator.is_empty() { "Equal" } else { operator }
}

/// [`Toleration::validate`] each of a settings list of tolerations; `field`
/// is the list's name (`tolerations`), and the first error names the
/// toleration by its index (`tolerations[1].key`).
pub fn validate_tolerations(tolerations: &[Toleration], field: &str) -> Result<(), SettingsError> {
    for (i, toleration) in tolerations.iter().enumerate() {
        toleration.check().map_err(|(name, message)| SettingsError::new(format!("{field}[{i}].{name}"), message))?;
    }
    Ok(())
}

/// A Pod read only for the `spec` fields `S` declares; everything else in
/// the object is skipped unparsed. Plugins name just what they read:
///
/// ```
/// #[derive(Default, serde::Deserialize)]
/// #[serde(rename_all = "camelCase")]
/// struct Spec {
///     #[serde(default)]
///     node_selector: Option<std::collections::BTreeMap<String, String>>,
/// }
/// let pod: berth_sdk::pod::Pod<Spec> = serde_json::from_str(r#"{"spec":{"nodeSelector":{"a":"b"}}}"#).unwrap();
/// assert_eq!(pod.spec.node_selector.unwrap()["a"], "b");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(bound = "S: Deserialize<'de> + Default")]
pub struct Pod<S> {
    #[serde(default)]
    pub spec: S,
}

/// A Pod read only for its containers' names and images.
pub type PodImages = Pod<Containers>;

impl PodImages {
    /// See [`Containers::images`].
    pub fn images(&self) -> impl Iterator<Item = ContainerImage<'_>> {
        self.spec.images()
    }
}

/// The three container lists of a Pod spec, each container read only for
/// its name and image. Embed it as the `spec` of a plugin's own partial Pod
/// when the plugin reads more than images (`metadata`, say).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Containers {
    #[serde(default)]
    pub init_containers: Option<Vec<Container>>,
    #[serde(default)]
    pub containers: Option<Vec<Container>>,
    #[serde(default)]
    pub ephemeral_containers: Option<Vec<Container>>,
}

/// A container's name and image; its other fields are skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: Option<String>,
}

/// One container's image, and where it stands in the Pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerImage<'a> {
    /// The list it is in, as JSON names it: one of [`CONTAINER_LISTS`].
    pub list: &'static str,
    /// Its index in that list (containers without an image count too).
    pub index: usize,
    /// The container's name.
    pub name: &'a str,
    /// The image, never empty.
    pub image: &'a str,
}

impl ContainerImage<'_> {
    /// The JSON Pointer of this image in the Pod
    /// (`/spec/initContainers/0/image`), for a patch.
    pub fn pointer(&self) -> String {
        format!("/spec/{}/{}/image", self.list, self.index)
    }
}

impl Containers {
    /// Every container that has an image, in the order of
    /// [`CONTAINER_LISTS`] (init containers, containers, ephemeral
    /// containers) and within each list in its order. A container whose
    /// image is missing or empty is passed over, but keeps its index.
    pub fn images(&self) -> impl Iterator<Item = ContainerImage<'_>> {
        let lists = [&self.init_containers, &self.containers, &self.ephemeral_containers];
        CONTAINER_LISTS.into_iter().zip(lists).flat_map(|(list, items)| {
            items.as_deref().unwrap_or_default().iter().enumerate().filter_map(move |(index, container)| {
                let image = container.image.as_deref().filter(|image| !image.is_empty())?;
                Some(ContainerImage { list, index, name: &container.name, image })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn toleration(value: Value) -> Toleration {
        serde_json::from_value(value).expect("a toleration")
    }

    fn invalid(value: Value) -> String {
        toleration(value).validate("tolerations[2]").expect_err("invalid").to_string()
    }

    #[test]
    fn valid_tolerations_pass() {
        for value in [
            json!({"key": "dedicated", "operator": "Equal", "value": "pulsar", "effect": "NoSchedule"}),
            json!({"key": "dedicated", "value": "pulsar"}),
            json!({"key": "dedicated", "operator": "Exists", "effect": ""}),
            json!({"operator": "Exists"}),
            json!({"key": "k", "operator": "Exists", "value": "", "effect": "PreferNoSchedule"}),
            json!({"key": "k", "effect": "NoExecute", "tolerationSeconds": 30}),
        ] {
            assert_eq!(toleration(value.clone()).validate("tolerations[0]"), Ok(()), "{value}");
        }
    }

    #[test]
    fn invalid_tolerations_name_the_field() {
        let cases = [
            (json!({}), "settings.tolerations[2].key: is required with operator Equal"),
            (json!({"operator": "Equal", "key": ""}), "settings.tolerations[2].key: is required with operator Equal"),
            (
                json!({"key": "k", "operator": "Exists", "value": "v"}),
                "settings.tolerations[2].value: must be empty with operator Exists",
            ),
            (
                json!({"key": "k", "operator": "In"}),
                r#"settings.tolerations[2].operator: must be Equal or Exists, not "In""#,
            ),
            (
                json!({"key": "k", "operator": ""}),
                r#"settings.tolerations[2].operator: must be Equal or Exists, not """#,
            ),
            (
                json!({"key": "k", "effect": "Sometimes"}),
                r#"settings.tolerations[2].effect: must be NoSchedule, PreferNoSchedule or NoExecute, not "Sometimes""#,
            ),
            (
                json!({"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}),
                "settings.tolerations[2].tolerationSeconds: applies only to effect NoExecute",
            ),
            (
                json!({"key": "k", "tolerationSeconds": 5}),
                "settings.tolerations[2].tolerationSeconds: applies only to effect NoExecute",
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(invalid(value.clone()), expected, "{value}");
        }
        assert_eq!(toleration(json!({})).validate("").unwrap_err().field(), "key");
    }

    #[test]
    fn a_list_is_checked_in_order_and_names_the_index() {
        let list = [
            toleration(json!({"key": "a"})),
            toleration(json!({"key": "b", "effect": "Never"})),
            toleration(json!({"operator": "Sometimes"})),
        ];
        let err = validate_tolerations(&list, "tolerations").unwrap_err();
        assert_eq!(err.field(), "tolerations[1].effect");
        assert!(err.to_string().starts_with("settings.tolerations[1].effect: must be NoSchedule"), "{err}");
        assert_eq!(validate_tolerations(&list[..1], "tolerations"), Ok(()));
        assert_eq!(validate_tolerations(&[], "tolerations"), Ok(()));
    }

    #[test]
    fn settings_refuse_unknown_fields_and_serialize_only_what_is_set() {
        let err = serde_json::from_value::<Toleration>(json!({"keys": "k"})).unwrap_err();
        assert!(err.to_string().contains("keys"), "{err}");
        let t = toleration(json!({"key": "k", "effect": "NoExecute", "tolerationSeconds": 30}));
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            json!({"key": "k", "effect": "NoExecute", "tolerationSeconds": 30})
        );
        assert_eq!(t.operator(), "Equal");
        assert_eq!(toleration(json!({"operator": "Exists"})).operator(), "Exists");
    }

    #[test]
    fn matching_ignores_seconds_and_defaults_the_operator() {
        let wanted = toleration(json!({"key": "dedicated", "value": "pulsar", "effect": "NoSchedule"}));
        assert!(wanted.matches(&json!({"key": "dedicated", "value": "pulsar", "effect": "NoSchedule"})));
        assert!(
            wanted
                .matches(&json!({"key": "dedicated", "operator": "Equal", "value": "pulsar", "effect": "NoSchedule"}))
        );
        assert!(
            wanted.matches(&json!({"key": "dedicated", "operator": "", "value": "pulsar", "effect": "NoSchedule"}))
        );
        assert!(wanted.matches(
            &json!({"key": "dedicated", "value": "pulsar", "effect": "NoSchedule", "tolerationSeconds": 9, "x": 1})
        ));
        assert!(!wanted.matches(&json!({"key": "dedicated", "value": "kafka", "effect": "NoSchedule"})));
        assert!(!wanted.matches(&json!({"key": "dedicated", "value": "pulsar", "effect": "NoExecute"})));
        assert!(!wanted.matches(&json!({"key": "dedicated", "value": "pulsar"})));
        assert!(!wanted.matches(&json!({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"})));

        let exists = toleration(json!({"key": "dedicated", "operator": "Exists"}));
        assert!(exists.matches(&json!({"key": "dedicated", "operator": "Exists"})));
        assert!(exists.matches(&json!({"key": "dedicated", "operator": "Exists", "effect": null})));
        assert!(!exists.matches(&json!({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"})));
        assert!(!exists.matches(&json!({"key": "dedicated"})));
        // Not a string is as good as empty; not an object matches nothing set.
        assert!(toleration(json!({"operator": "Exists"})).matches(&json!({"key": 1, "operator": "Exists"})));
        assert!(!wanted.matches(&json!("dedicated")));
    }

    #[test]
    fn presence_is_any_match() {
        let wanted = toleration(json!({"key": "dedicated", "value": "pulsar", "effect": "NoSchedule"}));
        let pod = [
            json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
            json!({"key": "dedicated", "operator": "Equal", "value": "pulsar", "effect": "NoSchedule"}),
        ];
        assert!(wanted.is_present_in(&pod));
        assert!(!wanted.is_present_in(&pod[..1]));
        assert!(!wanted.is_present_in(&[]));
    }

    #[test]
    fn images_walk_the_three_lists_in_order() {
        let pod: PodImages = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {
                "ephemeralContainers": [{"name": "debug", "image": "busybox", "targetContainerName": "app"}],
                "containers": [
                    {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
                    {"name": "no-image"},
                    {"name": "empty", "image": ""},
                    {"name": "sidecar", "image": "envoy:1"}
                ],
                "initContainers": [{"name": "init", "image": "alpine"}],
                "volumes": [{"name": "v", "emptyDir": {}}]
            }
        }))
        .unwrap();
        let seen: Vec<_> = pod.images().map(|c| (c.list, c.index, c.name, c.image, c.pointer())).collect();
        assert_eq!(
            seen,
            [
                ("initContainers", 0, "init", "alpine", "/spec/initContainers/0/image".to_owned()),
                ("containers", 0, "app", "nginx:1.27", "/spec/containers/0/image".to_owned()),
                ("containers", 3, "sidecar", "envoy:1", "/spec/containers/3/image".to_owned()),
                ("ephemeralContainers", 0, "debug", "busybox", "/spec/ephemeralContainers/0/image".to_owned()),
            ]
        );
    }

    #[test]
    fn missing_or_null_lists_and_specs_have_no_images() {
        for value in [
            json!({}),
            json!({"spec": {}}),
            json!({"spec": {"containers": null, "initContainers": null, "ephemeralContainers": []}}),
        ] {
            let pod: PodImages = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(pod.images().count(), 0, "{value}");
        }
        let pod: PodImages = serde_json::from_value(json!({"spec": {"containers": [{"image": "x"}]}})).unwrap();
        assert_eq!(pod.images().map(|c| c.name).collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn containers_embed_in_a_plugins_own_pod() {
        #[derive(Deserialize)]
        struct Pod {
            metadata: Value,
            spec: Containers,
        }
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}
        }))
        .unwrap();
        assert_eq!(pod.metadata["name"], "p");
        assert_eq!(pod.spec.images().map(|c| c.image).collect::<Vec<_>>(), ["nginx"]);
    }
}
