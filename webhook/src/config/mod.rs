//! `berth.yaml`: the ordered list of policies, and how each is matched,
//! bounded and configured. Unknown fields are errors, reported with their
//! line. docs/CONFIG.md documents every field. This module owns the whole
//! file's schema; `audit/` and the rest read it, never the reverse.

pub mod audit;
pub use crate::runtime::Isolation;
pub use audit::AuditSpec;

use crate::review::Operation;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{origin}")]
    Parse {
        origin: String,
        #[source]
        error: crate::yaml::Error,
    },
    #[error("{origin}: policy {policy:?}: {message}")]
    Invalid { origin: String, policy: String, message: String },
    #[error("policy name {0:?} is used twice")]
    DuplicateName(String),
}

/// The policy configuration: every policy, in the order they run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    #[serde(default, deserialize_with = "empty_as_default")]
    pub policies: Vec<PolicySpec>,
    /// The audit log (docs/AUDIT.md).
    #[serde(default)]
    pub audit: Option<AuditSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySpec {
    pub name: String,
    /// `builtin:<name>` or a path to a `.wasm` component (relative to the
    /// configuration file).
    pub plugin: String,
    /// Refuse to load the plugin unless its sha256 is this (hex).
    #[serde(default)]
    pub sha256: Option<String>,
    pub mode: Mode,
    #[serde(default, rename = "match", deserialize_with = "empty_as_default")]
    pub matcher: MatchSpec,
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_memory", deserialize_with = "byte_size")]
    pub memory_limit: usize,
    /// Handed to the plugin as JSON; checked by its `validate-settings`.
    #[serde(default)]
    pub settings: serde_json::Value,
    /// What the plugin is told of the cluster besides the request.
    #[serde(default, deserialize_with = "empty_as_default")]
    pub context: Vec<ContextItem>,
    /// Whether calls may reuse a warm instance of the plugin.
    #[serde(default)]
    pub isolation: Isolation,
}

/// A fact of the cluster handed to a plugin with each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContextItem {
    /// The StorageClass marked `storageclass.kubernetes.io/is-default-class`
    /// (berth needs list/watch on storageclasses).
    DefaultStorageClass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Runs on `/mutate`; may patch the object.
    Mutate,
    /// Runs on `/validate`, on the object as it arrives (after all mutation).
    Validate,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum FailurePolicy {
    /// A failing plugin denies the request.
    #[default]
    Fail,
    /// A failing plugin is skipped, with a warning.
    Ignore,
}

/// Which requests a policy sees. Every list is "any of"; the parts are
/// "all of". Empty lists match everything.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchSpec {
    #[serde(default, deserialize_with = "empty_as_default")]
    pub operations: Vec<OperationMatch>,
    /// Plural resource names as in webhook rules: `pods`, `pods/status`,
    /// `pods/*`, `*`, `*/*`.
    #[serde(default, deserialize_with = "empty_as_default")]
    pub resources: Vec<String>,
    /// Namespaces by name; empty means all.
    #[serde(default, deserialize_with = "empty_as_default")]
    pub namespaces: Vec<String>,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub exclude_namespaces: Vec<String>,
    #[serde(default)]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    pub object_selector: Option<LabelSelector>,
    /// The labels of the object's controlling owners, followed up the chain
    /// (Pod → ReplicaSet → Deployment, Pod → Job → CronJob, ...): matches
    /// if any owner matches.
    #[serde(default)]
    pub owner: Option<LabelSelector>,
    /// What one `helm install` created: `NAMESPACE/NAME`, or a list.
    #[serde(default, deserialize_with = "one_or_many")]
    pub helm_release: Vec<HelmRelease>,
    /// At least one of these must match as well; each is a whole `match`.
    #[serde(default, deserialize_with = "empty_as_default")]
    pub any_of: Vec<MatchSpec>,
}

/// A Helm release: `NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmRelease {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for HelmRelease {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self { namespace: namespace.to_owned(), name: name.to_owned() })
            }
            _ => Err(format!("helmRelease {text:?} is not NAMESPACE/NAME")),
        }
    }
}

/// An empty value (`namespaces:` and nothing) is an empty list or map, as
/// in Kubernetes manifests and as serde_yaml read it.
pub(crate) fn empty_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(de: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

fn one_or_many<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<HelmRelease>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let texts = match OneOrMany::deserialize(de)? {
        OneOrMany::One(text) => vec![text],
        OneOrMany::Many(texts) => texts,
    };
    texts.iter().map(|text| text.parse().map_err(serde::de::Error::custom)).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OperationMatch {
    #[serde(rename = "*")]
    All,
    #[serde(rename = "CREATE")]
    Create,
    #[serde(rename = "UPDATE")]
    Update,
    #[serde(rename = "DELETE")]
    Delete,
    #[serde(rename = "CONNECT")]
    Connect,
}

impl OperationMatch {
    pub fn matches(self, op: Operation) -> bool {
        matches!(
            (self, op),
            (Self::All, _)
                | (Self::Create, Operation::Create)
                | (Self::Update, Operation::Update)
                | (Self::Delete, Operation::Delete)
                | (Self::Connect, Operation::Connect)
        )
    }
}

/// A Kubernetes label selector.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, deserialize_with = "empty_as_default")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub match_expressions: Vec<LabelRequirement>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

fn default_timeout() -> Duration {
    Duration::from_millis(100)
}

fn default_memory() -> usize {
    64 << 20
}

fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    humantime::parse_duration(&text)
        .map_err(|err| serde::de::Error::custom(format!("{text:?} is not a duration ({err}); write 100ms, 2s")))
}

/// `64Mi`, `512Ki`, `1G` or a number of bytes, into whichever integer the
/// field is.
pub(crate) fn byte_size<'de, D: Deserializer<'de>, T: TryFrom<u64>>(de: D) -> Result<T, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    let (bytes, text) = match Size::deserialize(de)? {
        Size::Bytes(bytes) => (Some(bytes), bytes.to_string()),
        Size::Text(text) => (parse_byte_size(&text), text),
    };
    bytes
        .and_then(|bytes| T::try_from(bytes).ok())
        .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a size; write 64Mi, 512Ki or bytes")))
}

pub fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(scale)
}

/// The embedded default: the Pulsar and Kafka policies from deploy/policies.
pub const DEFAULT_POLICY_FILES: &[(&str, &str)] = &[
    ("deploy/policies/pulsar.yaml", include_str!("../../../deploy/policies/pulsar.yaml")),
    ("deploy/policies/kafka.yaml", include_str!("../../../deploy/policies/kafka.yaml")),
];

/// A configuration and the directory its relative plugin paths are from.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub config: Config,
    pub base_dir: PathBuf,
    pub origin: String,
}

impl Config {
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config =
            crate::yaml::from_str(text).map_err(|error| ConfigError::Parse { origin: origin.to_owned(), error })?;
        for policy in &config.policies {
            let invalid = |message: String| ConfigError::Invalid {
                origin: origin.to_owned(),
                policy: policy.name.clone(),
                message,
            };
            if policy.name.is_empty() {
                return Err(invalid("name must not be empty".into()));
            }
            if policy.timeout < Duration::from_millis(1) || policy.timeout > Duration::from_secs(30) {
                return Err(invalid("timeout must be between 1ms and 30s (the apiserver waits at most 30s)".into()));
            }
            if let Some(sha) = &policy.sha256
                && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(invalid("sha256 must be 64 hex digits".into()));
            }
        }
        Ok(config)
    }

    pub fn read(path: &Path) -> Result<Source, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
        let origin = path.display().to_string();
        let config = Self::parse(&text, &origin)?;
        let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok(Source { config, base_dir, origin })
    }

    /// The policies berth runs when given no `--config`.
    pub fn embedded_default() -> Result<Vec<Source>, ConfigError> {
        DEFAULT_POLICY_FILES
            .iter()
            .map(|(origin, text)| {
                Ok(Source {
                    config: Self::parse(text, origin)?,
                    base_dir: PathBuf::new(),
                    origin: (*origin).to_owned(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_rejected_with_their_line() {
        let text = "policies:\n  - name: a\n    plugin: builtin:tolerations\n    mode: mutate\n    tmeout: 1s\n";
        let err = crate::error_chain(&Config::parse(text, "berth.yaml").unwrap_err());
        assert!(err.starts_with("berth.yaml: ") && err.contains("tmeout") && err.contains("line 5"), "{err}");
    }

    #[test]
    fn mistakes_deep_down_name_their_line() {
        let text = "policies:\n  - name: a\n    plugin: builtin:tolerations\n    mode: mutate\n    match:\n      anyOf:\n        - namespaceSelector:\n            matchLabels: {team: data}\n            matchLabel: {}\n";
        let err = crate::error_chain(&Config::parse(text, "berth.yaml").unwrap_err());
        assert!(err.contains("matchLabel") && err.contains("line 9"), "{err}");
        let text = "policies:\n  - name: a\n    plugin: builtin:tolerations\n    mode: mutate\n    timeout: soon\n";
        let err = crate::error_chain(&Config::parse(text, "berth.yaml").unwrap_err());
        assert!(err.contains("not a duration") && err.contains("line 5"), "{err}");
    }

    #[test]
    fn a_duplicate_key_is_an_error_with_its_line() {
        for (text, line) in [
            ("policies:\n  - name: a\n    plugin: builtin:tolerations\n    mode: mutate\n    mode: validate\n", 5),
            (
                "policies:\n  - name: a\n    plugin: builtin:tolerations\n    mode: mutate\n    settings:\n      tolerations: []\n      tolerations: [{key: x}]\n",
                7,
            ),
            (
                "policies:\n  - name: a\n    plugin: builtin:tolerations\n    mode: mutate\n    match:\n      objectSelector:\n        matchLabels: {app: kafka, app: pulsar}\n",
                7,
            ),
        ] {
            let err = crate::error_chain(&Config::parse(text, "berth.yaml").unwrap_err());
            assert!(
                err.starts_with("berth.yaml: ") && err.contains("duplicate") && err.contains(&format!("line {line}")),
                "{err}"
            );
        }
    }

    #[test]
    fn an_empty_value_is_an_empty_list_or_map() {
        let config = Config::parse("policies:\n", "berth.yaml").unwrap();
        assert!(config.policies.is_empty());
        let text = "policies:\n  - name: a\n    plugin: builtin:tolerations\n    mode: mutate\n    match:\n      namespaces:\n      objectSelector:\n        matchLabels:\n";
        let policy = &Config::parse(text, "berth.yaml").unwrap().policies[0];
        assert!(policy.matcher.namespaces.is_empty());
        assert!(policy.matcher.object_selector.as_ref().unwrap().match_labels.is_empty());
        let text = "policies:\n  - name: a\n    plugin: builtin:tolerations\n    mode: mutate\n    match:\n";
        assert!(Config::parse(text, "berth.yaml").unwrap().policies[0].matcher.resources.is_empty());
    }

    #[test]
    fn defaults_and_units() {
        let text =
            "policies:\n  - name: a\n    plugin: builtin:tolerations\n    mode: validate\n    memoryLimit: 16Mi\n";
        let config = Config::parse(text, "berth.yaml").unwrap();
        let policy = &config.policies[0];
        assert_eq!(policy.timeout, Duration::from_millis(100));
        assert_eq!(policy.memory_limit, 16 << 20);
        assert_eq!(policy.failure_policy, FailurePolicy::Fail);
        assert_eq!(parse_byte_size("3Gi"), Some(3 << 30));
        assert_eq!(parse_byte_size("3Qi"), None);
    }

    #[test]
    fn timeouts_are_between_1ms_and_30s() {
        let with = |timeout: &str| {
            let text = format!(
                "policies:\n  - name: a\n    plugin: builtin:tolerations\n    mode: mutate\n    timeout: {timeout}\n"
            );
            Config::parse(&text, "berth.yaml").map(|c| c.policies[0].timeout)
        };
        assert_eq!(with("1ms").unwrap(), Duration::from_millis(1));
        assert_eq!(with("30s").unwrap(), Duration::from_secs(30));
        // Caught by the config fuzz target's property: below a millisecond
        // was accepted although the message and docs/CONFIG.md say 1ms.
        for refused in ["500us", "1ns", "0s", "31s"] {
            let err = with(refused).unwrap_err().to_string();
            assert!(err.contains("between 1ms and 30s"), "{refused}: {err}");
        }
    }

    #[test]
    fn the_embedded_default_parses() {
        let sources = Config::embedded_default().unwrap();
        assert!(sources.iter().all(|s| !s.config.policies.is_empty()));
    }
}
