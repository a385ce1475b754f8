//! `berth.yaml`: the ordered list of policies, and how each is matched,
//! bounded and configured. Unknown fields are errors, reported with their
//! line. docs/CONFIG.md documents every field. This module owns the whole
//! file's schema; `audit/` and the rest read it, never the reverse.

pub mod audit;
pub use crate::runtime::Isolation;
pub use audit::AuditSpec;

use crate::review::Operation;
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
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
    #[error(
        "helm release {release} is listed under helmReleases.{first} and helmReleases.{second}: one release is one application's; keep it under one"
    )]
    ReleaseOfTwoApps { release: String, first: String, second: String },
    #[error("{origin}: helmReleases.{app}: no policy has `app: {app}`, so these releases would change nothing")]
    UnknownApp { origin: String, app: String },
    #[error("{origin}: include {name:?} is not a configuration berth embeds (there is one: {:?})", DEFAULT_INCLUDE)]
    UnknownInclude { origin: String, name: String },
}

/// The policy configuration: every policy, in the order they run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Configurations berth embeds, by name, whose policies run before this
    /// file's own: `[builtin:default]` (`berth config default` prints it).
    #[serde(default, deserialize_with = "empty_as_default")]
    pub include: Vec<String>,
    #[serde(default, deserialize_with = "empty_as_default")]
    pub policies: Vec<PolicySpec>,
    /// The audit log (docs/AUDIT.md).
    #[serde(default)]
    pub audit: Option<AuditSpec>,
    /// Helm releases that belong to an application, by its name: every
    /// policy with that `app` also matches everything they created
    /// (`with_app_releases`).
    #[serde(default, deserialize_with = "releases_by_app")]
    pub helm_releases: BTreeMap<String, Vec<HelmRelease>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySpec {
    pub name: String,
    /// The application this policy is for (`pulsar`, `kafka`): the
    /// top-level `helmReleases` of that name widen its match.
    #[serde(default)]
    pub app: Option<String>,
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
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HelmRelease {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for HelmRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
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

fn releases_by_app<'de, D: Deserializer<'de>>(de: D) -> Result<BTreeMap<String, Vec<HelmRelease>>, D::Error> {
    let texts = BTreeMap::<String, Vec<String>>::deserialize(de)?;
    texts
        .into_iter()
        .map(|(app, releases)| {
            let releases = releases.iter().map(|text| text.parse().map_err(serde::de::Error::custom));
            Ok((app, releases.collect::<Result<_, _>>()?))
        })
        .collect()
}

impl MatchSpec {
    /// This match, or (with the same operations, resources and namespaces)
    /// whatever one of `releases` created. A match that selects nothing
    /// beyond those filters already takes every object, and is kept.
    pub fn or_releases(&self, releases: &[HelmRelease]) -> MatchSpec {
        let selects = self.object_selector.is_some()
            || self.owner.is_some()
            || !self.helm_release.is_empty()
            || !self.any_of.is_empty();
        if !selects || releases.is_empty() {
            return self.clone();
        }
        let release = MatchSpec { helm_release: releases.to_vec(), ..MatchSpec::default() };
        let mut widened = self.clone();
        if self.object_selector.is_none() && self.owner.is_none() && self.helm_release.is_empty() {
            widened.any_of.push(release);
            return widened;
        }
        // The selecting parts move into one alternative beside the release.
        let own = MatchSpec {
            object_selector: widened.object_selector.take(),
            owner: widened.owner.take(),
            helm_release: std::mem::take(&mut widened.helm_release),
            any_of: std::mem::take(&mut widened.any_of),
            ..MatchSpec::default()
        };
        widened.any_of = vec![own, release];
        widened
    }
}

/// The sources with every top-level `helmReleases` folded into the match of
/// the policies of its app, across all files (the chart's ConfigMap, or
/// `--config pulsar.yaml --config kafka.yaml --config releases.yaml`), so
/// the policy files stay as they are. A release under two apps, or an app
/// no policy has, is an error.
pub fn with_app_releases(sources: &[Source]) -> Result<Cow<'_, [Source]>, ConfigError> {
    let mut apps: BTreeMap<&str, Vec<HelmRelease>> = BTreeMap::new();
    let mut owner: BTreeMap<&HelmRelease, &str> = BTreeMap::new();
    for source in sources {
        for (app, releases) in &source.config.helm_releases {
            for release in releases {
                match owner.insert(release, app) {
                    Some(first) if first != app => {
                        return Err(ConfigError::ReleaseOfTwoApps {
                            release: release.to_string(),
                            first: first.to_owned(),
                            second: app.clone(),
                        });
                    }
                    _ => {}
                }
                let list = apps.entry(app).or_default();
                if !list.contains(release) {
                    list.push(release.clone());
                }
            }
        }
    }
    if apps.is_empty() {
        return Ok(Cow::Borrowed(sources));
    }
    let has_app = |app: &str| sources.iter().flat_map(|s| &s.config.policies).any(|p| p.app.as_deref() == Some(app));
    for source in sources {
        if let Some(app) = source.config.helm_releases.keys().find(|app| !has_app(app)) {
            return Err(ConfigError::UnknownApp { origin: source.origin.clone(), app: app.clone() });
        }
    }
    let mut folded = sources.to_vec();
    for policy in folded.iter_mut().flat_map(|s| &mut s.config.policies) {
        if let Some(releases) = policy.app.as_deref().and_then(|app| apps.get(app)) {
            policy.matcher = policy.matcher.or_releases(releases);
        }
    }
    Ok(Cow::Owned(folded))
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

/// A Kubernetes quantity of bytes (`64Mi`, `1.5Gi`, `500M`, `4096`), a
/// fraction of a byte rounded up as Kubernetes rounds it.
pub fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let scale: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return None,
    };
    let part = match fraction {
        "" => 0,
        digits => {
            let numerator: u128 = digits.parse().ok()?;
            let denominator = 10_u128.checked_pow(u32::try_from(digits.len()).ok()?)?;
            u64::try_from(numerator.checked_mul(u128::from(scale))?.div_ceil(denominator)).ok()?
        }
    };
    whole.checked_mul(scale)?.checked_add(part)
}

/// What a berth.yaml names in `include:` to run the embedded default
/// before its own policies.
pub const DEFAULT_INCLUDE: &str = "builtin:default";

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
        config.checked(origin)
    }

    /// Check what the schema cannot: names, timeouts, pins. `origin` names
    /// the file in errors.
    pub fn checked(self, origin: &str) -> Result<Self, ConfigError> {
        if let Some(name) = self.include.iter().find(|name| *name != DEFAULT_INCLUDE) {
            return Err(ConfigError::UnknownInclude { origin: origin.to_owned(), name: name.clone() });
        }
        for policy in &self.policies {
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
        Ok(self)
    }

    pub fn read(path: &Path) -> Result<Source, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
        let origin = path.display().to_string();
        let config = Self::parse(&text, &origin)?;
        let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok(Source { config, base_dir, origin })
    }

    /// The sources of the files given, in order, each preceded by what it
    /// includes; a configuration included twice (by two files) runs once,
    /// where it was first included. No files: the embedded default.
    pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Source>, ConfigError> {
        if paths.is_empty() {
            return Self::embedded_default();
        }
        let mut sources = Vec::new();
        let mut included = false;
        for path in paths {
            let source = Self::read(path)?;
            // `checked` let no other name through.
            if !source.config.include.is_empty() && !included {
                sources.extend(Self::embedded_default()?);
                included = true;
            }
            sources.push(source);
        }
        Ok(sources)
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
        assert_eq!(parse_byte_size("1Ti"), Some(1 << 40));
        assert_eq!(parse_byte_size("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_byte_size(".5Ki"), Some(512));
        assert_eq!(parse_byte_size("0.001"), Some(1), "a fraction of a byte rounds up");
        for bad in ["", ".", "1.2.3Mi", "Mi", "-1Mi", "1e9", "0.9999999999999999999999999999999999999Ti"] {
            assert_eq!(parse_byte_size(bad), None, "{bad}");
        }
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

    fn source(text: &str, origin: &str) -> Source {
        Source { config: Config::parse(text, origin).unwrap(), base_dir: PathBuf::new(), origin: origin.into() }
    }

    #[test]
    fn helm_releases_widen_the_policies_of_their_app_only() {
        let policies = source(
            "policies:\n\
             - {name: a, app: kafka, plugin: builtin:tolerations, mode: mutate,\n\
                match: {resources: [pods], anyOf: [{objectSelector: {matchLabels: {app: kafka}}}]}}\n\
             - {name: b, app: kafka, plugin: builtin:tolerations, mode: mutate,\n\
                match: {resources: [pods], objectSelector: {matchLabels: {app: kafka}}}}\n\
             - {name: c, app: kafka, plugin: builtin:tolerations, mode: mutate, match: {resources: [pods]}}\n\
             - {name: d, app: pulsar, plugin: builtin:tolerations, mode: mutate,\n\
                match: {objectSelector: {matchLabels: {app: pulsar}}}}\n",
            "policies.yaml",
        );
        let releases = source("helmReleases: {kafka: [streaming/confluent, default/kafka]}\n", "releases.yaml");
        let both = [policies.clone(), releases];
        let folded = with_app_releases(&both).unwrap();
        let m = |i: usize| &folded[0].config.policies[i].matcher;
        let confluent = vec!["streaming/confluent".parse().unwrap(), "default/kafka".parse().unwrap()];
        // An anyOf gains the releases as one more alternative.
        assert_eq!(m(0).any_of.len(), 2);
        assert_eq!(m(0).any_of[1].helm_release, confluent);
        assert_eq!(m(0).resources, ["pods"], "the filters stay");
        // An objectSelector moves into an alternative beside them.
        assert!(m(1).object_selector.is_none());
        assert!(m(1).any_of[0].object_selector.is_some());
        assert_eq!(m(1).any_of[1].helm_release, confluent);
        // A match that takes every pod already is kept; another app's too.
        assert!(m(2).any_of.is_empty() && m(2).helm_release.is_empty());
        assert!(m(3).any_of.is_empty() && m(3).object_selector.is_some());
        // Without helmReleases nothing changes.
        let same = with_app_releases(std::slice::from_ref(&policies)).unwrap();
        assert!(same[0].config.policies[1].matcher.any_of.is_empty());
    }

    #[test]
    fn a_release_of_two_apps_or_of_no_app_is_refused_by_name() {
        let policies = source(
            "policies:\n- {name: a, app: kafka, plugin: builtin:tolerations, mode: mutate}\n\
             - {name: b, app: pulsar, plugin: builtin:tolerations, mode: mutate}\n",
            "p.yaml",
        );
        let both = source("helmReleases: {kafka: [ns/x], pulsar: [ns/y, ns/x]}\n", "r.yaml");
        let err = with_app_releases(&[policies.clone(), both]).unwrap_err().to_string();
        assert!(
            err.contains("ns/x") && err.contains("helmReleases.kafka") && err.contains("helmReleases.pulsar"),
            "{err}"
        );
        let typo = source("helmReleases: {kakfa: [ns/x]}\n", "r.yaml");
        let err = with_app_releases(&[policies, typo]).unwrap_err().to_string();
        assert!(err.contains("r.yaml: helmReleases.kakfa: no policy has `app: kakfa`"), "{err}");
        let err = Config::parse("helmReleases: {kafka: [confluent]}\n", "r.yaml").unwrap_err();
        assert!(crate::error_chain(&err).contains("not NAMESPACE/NAME"), "{}", crate::error_chain(&err));
    }

    #[test]
    fn include_puts_the_embedded_default_first_and_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("writing");
            path
        };
        let own = "- {name: own, plugin: builtin:tolerations, mode: mutate}";
        let a = write("a.yaml", "policies:\n- {name: a, plugin: builtin:tolerations, mode: mutate}\n");
        let b = write("b.yaml", &format!("include: [builtin:default]\npolicies:\n{own}\n"));
        let c = write("c.yaml", "include: [builtin:default]\n");
        let default = Config::embedded_default().expect("the default");
        let names = |sources: &[Source]| -> Vec<String> {
            sources.iter().flat_map(|s| &s.config.policies).map(|p| p.name.clone()).collect()
        };
        let sources = Config::read_all(&[a.clone(), b, c]).expect("they read");
        let mut expected = vec!["a".to_owned()];
        expected.extend(names(&default));
        expected.push("own".into());
        assert_eq!(names(&sources), expected, "a, then the default where b includes it, then b; c adds nothing");
        // Without include, a file is only itself.
        assert_eq!(names(&Config::read_all(&[a]).expect("reads")), ["a"]);

        let err = Config::parse("include: [builtin:defualt]\n", "x.yaml").unwrap_err().to_string();
        assert_eq!(
            err,
            r#"x.yaml: include "builtin:defualt" is not a configuration berth embeds (there is one: "builtin:default")"#
        );
    }

    #[test]
    fn the_embedded_default_parses() {
        let sources = Config::embedded_default().unwrap();
        assert!(sources.iter().all(|s| !s.config.policies.is_empty()));
    }
}
