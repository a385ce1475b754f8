//! A loaded policy set: each configured policy with its compiled plugin,
//! matcher and limits, checked at load so that a bad policy never reaches
//! the request path.

use crate::builtin;
use crate::cluster::{Cluster, ContextError, Needs};
use crate::config::{ConfigError, ContextItem, FailurePolicy, Mode, PolicySpec, Source};
use crate::matcher::{Facts, Matcher};
use crate::review::AdmissionRequest;
use crate::runtime::{CallLimits, LoadError, Plugin, PluginContext, Runtime};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PolicySetError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("policy {policy:?}: unknown builtin plugin {name:?} (bundled: {available})")]
    UnknownBuiltin { policy: String, name: String, available: String },
    #[error("policy {policy:?}: reading plugin {path}")]
    ReadPlugin {
        policy: String,
        path: String,
        #[source]
        error: std::io::Error,
    },
    #[error(
        "policy {policy:?}: match.namespaceSelector uses the namespace label {key:?}, but berth cannot read Namespaces here: give `berth eval` a --context file with the Namespace, run `berth serve` in a cluster (with list/watch on namespaces) or give it --kube-api; or select by {name_label}",
        name_label = crate::matcher::NAMESPACE_NAME_LABEL
    )]
    NamespaceLabels { policy: String, key: String },
    #[error(
        "policy {policy:?}: {what} needs the cluster's objects, and berth has none here: give `berth eval` a --context file (the owners as `kubectl get -o yaml` shows them), or run `berth serve` in a cluster or with --kube-api (RBAC: docs/CONFIG.md)"
    )]
    NoCluster { policy: String, what: &'static str },
    #[error(
        "policy {policy:?} ({origin}): plugin {plugin} has no sha256 pin, and --require-pinned refuses unpinned plugins; check that it is the plugin you mean to run, then pin it in the policy: {pin}"
    )]
    Unpinned { policy: String, origin: String, plugin: String, pin: String },
    #[error("policy {policy:?}: memoryLimit {limit} is above the runtime's maximum {max}")]
    MemoryLimit { policy: String, limit: usize, max: usize },
    #[error("policy {policy:?}")]
    Load {
        policy: String,
        #[source]
        error: LoadError,
    },
}

/// The least time `validate-settings` gets, whatever the policy's timeout.
const SETTINGS_TIMEOUT: Duration = Duration::from_secs(5);

/// One policy, ready to run.
#[derive(Debug)]
pub struct Policy {
    pub name: Arc<str>,
    pub plugin: Arc<Plugin>,
    pub mode: Mode,
    pub matcher: Matcher,
    pub failure_policy: FailurePolicy,
    pub limits: CallLimits,
    /// The settings as JSON text, serialized once.
    pub settings: String,
    /// The cluster facts the plugin asked for (`context:`).
    pub context: Vec<ContextItem>,
}

/// A policy that matched a request, with the facts of the cluster it asked
/// for; or the lookup that failed, which fails the policy.
#[derive(Debug)]
pub struct Matched<'p> {
    pub policy: &'p Policy,
    pub context: Result<PluginContext, ContextError>,
}

/// Every policy, in the order they run.
#[derive(Debug, Default)]
pub struct PolicySet {
    policies: Vec<Policy>,
    /// What berth knows of the cluster: namespace labels, owners, the
    /// default StorageClass, as far as these policies need them.
    cluster: Cluster,
}

impl PolicySet {
    /// Load every policy of every source, in order. Plugins used by several
    /// policies are compiled once. A policy that needs what `cluster` cannot
    /// tell is refused (a namespaceSelector can always select by name).
    pub fn load(runtime: &Runtime, sources: &[Source], cluster: Cluster) -> Result<Self, PolicySetError> {
        let folded = crate::config::with_app_releases(sources)?;
        let sources = &*folded;
        let provides = cluster.provides();
        let mut names = HashSet::new();
        let mut plugins: HashMap<(String, std::path::PathBuf), Arc<Plugin>> = HashMap::new();
        let mut policies = Vec::new();
        for source in sources {
            for spec in &source.config.policies {
                if !names.insert(spec.name.clone()) {
                    return Err(ConfigError::DuplicateName(spec.name.clone()).into());
                }
                let matcher = Matcher::from(spec.matcher.clone());
                let needs = matcher.needs();
                if needs.namespace_labels && !provides.namespace_labels {
                    let key = matcher.namespace_label_keys()[0].to_owned();
                    return Err(PolicySetError::NamespaceLabels { policy: spec.name.clone(), key });
                }
                if needs.owners && !provides.owners {
                    let what = "match.owner or match.helmRelease";
                    return Err(PolicySetError::NoCluster { policy: spec.name.clone(), what });
                }
                if spec.context.contains(&ContextItem::DefaultStorageClass) && !provides.default_storage_class {
                    let what = "context: [defaultStorageClass]";
                    return Err(PolicySetError::NoCluster { policy: spec.name.clone(), what });
                }
                let key = (spec.plugin.clone(), source.base_dir.clone());
                let plugin = match plugins.get(&key) {
                    Some(plugin) => plugin.clone(),
                    None => {
                        let plugin = Arc::new(load_plugin(runtime, spec, source)?);
                        plugins.insert(key, plugin.clone());
                        plugin
                    }
                };
                // Every policy's pin, also for a plugin another policy loaded.
                check_pin(spec, &plugin)?;
                policies.push(prepare(runtime, spec, plugin, matcher)?);
            }
        }
        Ok(Self { policies, cluster })
    }

    /// What this set knows of the cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The policies of `mode` that match `request`, in order, each with
    /// the context it asked for. A policy whose match could not be decided
    /// (the Kubernetes API did not answer) is returned with the error.
    pub fn matching(&self, mode: Mode, request: &AdmissionRequest) -> Vec<Matched<'_>> {
        let facts = Facts::new(request, &self.cluster);
        let mut matched = Vec::new();
        for policy in self.policies.iter().filter(|p| p.mode == mode) {
            let context = match policy.matcher.matches(&facts) {
                Ok(false) => continue,
                Ok(true) => self.context(policy),
                Err(err) => Err(err),
            };
            matched.push(Matched { policy, context });
        }
        matched
    }

    /// The caches these policies read that have not synced yet.
    pub fn unsynced(&self) -> Vec<&'static str> {
        self.cluster.unsynced()
    }

    /// The caches these policies read that have not completed a full list
    /// (`Cluster::unlisted`).
    pub fn unlisted(&self) -> Vec<&'static str> {
        self.cluster.unlisted()
    }

    fn context(&self, policy: &Policy) -> Result<PluginContext, ContextError> {
        let mut context = PluginContext { default_storage_class: None };
        for item in &policy.context {
            match item {
                ContextItem::DefaultStorageClass => {
                    context.default_storage_class = self.cluster.default_storage_class()?;
                }
            }
        }
        Ok(context)
    }
}

/// `--require-pinned`: refuse every policy whose plugin file has no
/// `sha256` pin. Bundled plugins (`builtin:`) are part of the berth binary
/// and pinned with it. The error gives the file's digest as it is now, so
/// that pinning it is one line once it has been checked.
pub fn require_pinned(sources: &[Source]) -> Result<(), PolicySetError> {
    for source in sources {
        for spec in &source.config.policies {
            if spec.sha256.is_some() || spec.plugin.starts_with(builtin::PREFIX) {
                continue;
            }
            let path = source.base_dir.join(&spec.plugin);
            let pin = match std::fs::read(&path) {
                Ok(wasm) => {
                    use sha2::Digest;
                    format!("`sha256: {}`", hex::encode(sha2::Sha256::digest(wasm)))
                }
                Err(_) => format!("`sha256:` and the digest `sha256sum {}` prints", path.display()),
            };
            return Err(PolicySetError::Unpinned {
                policy: spec.name.clone(),
                origin: source.origin.clone(),
                plugin: spec.plugin.clone(),
                pin,
            });
        }
    }
    Ok(())
}

/// What `sources` need of the cluster, all policies together.
pub fn needs(sources: &[Source]) -> Needs {
    // A configuration that does not fold is refused at load; until then it
    // needs what its policies say.
    let folded = crate::config::with_app_releases(sources);
    let sources = folded.as_deref().unwrap_or(sources);
    sources.iter().flat_map(|source| &source.config.policies).fold(Needs::default(), |needs, spec| {
        let context = Needs {
            default_storage_class: spec.context.contains(&ContextItem::DefaultStorageClass),
            ..Needs::default()
        };
        needs.union(Matcher::from(spec.matcher.clone()).needs()).union(context)
    })
}

/// The owner label keys the policies of `sources` read, all together: what
/// the owner cache keeps of each owner's labels.
pub fn owner_label_keys(sources: &[Source]) -> crate::cluster::Keep {
    let keys = sources.iter().flat_map(|source| &source.config.policies).flat_map(|spec| {
        Matcher::from(spec.matcher.clone()).owner_label_keys().into_iter().map(str::to_owned).collect::<Vec<_>>()
    });
    crate::cluster::Keep::Only(keys.collect())
}

fn load_plugin(runtime: &Runtime, spec: &PolicySpec, source: &Source) -> Result<Plugin, PolicySetError> {
    let policy = spec.name.clone();
    let wasm: std::borrow::Cow<'static, [u8]> = match spec.plugin.strip_prefix(builtin::PREFIX) {
        Some(name) => builtin::get(name).map(Into::into).ok_or_else(|| PolicySetError::UnknownBuiltin {
            policy: policy.clone(),
            name: name.to_owned(),
            available: builtin::names().collect::<Vec<_>>().join(", "),
        })?,
        None => {
            let path = source.base_dir.join(&spec.plugin);
            std::fs::read(&path)
                .map_err(|error| PolicySetError::ReadPlugin {
                    policy: policy.clone(),
                    path: path.display().to_string(),
                    error,
                })?
                .into()
        }
    };
    runtime.load(&spec.plugin, &wasm).map_err(|error| PolicySetError::Load { policy: policy.clone(), error })
}

fn check_pin(spec: &PolicySpec, plugin: &Plugin) -> Result<(), PolicySetError> {
    match &spec.sha256 {
        Some(expected) if !expected.eq_ignore_ascii_case(plugin.sha256()) => {
            let error = LoadError::Checksum {
                source_name: spec.plugin.clone(),
                expected: expected.to_lowercase(),
                actual: plugin.sha256().to_owned(),
            };
            Err(PolicySetError::Load { policy: spec.name.clone(), error })
        }
        _ => Ok(()),
    }
}

fn prepare(
    runtime: &Runtime,
    spec: &PolicySpec,
    plugin: Arc<Plugin>,
    matcher: Matcher,
) -> Result<Policy, PolicySetError> {
    if spec.memory_limit > runtime.max_memory() {
        return Err(PolicySetError::MemoryLimit {
            policy: spec.name.clone(),
            limit: spec.memory_limit,
            max: runtime.max_memory(),
        });
    }
    let name: Arc<str> = spec.name.as_str().into();
    let limits = CallLimits { timeout: spec.timeout, memory: spec.memory_limit, isolation: spec.isolation };
    let settings = match &spec.settings {
        serde_json::Value::Null => "{}".to_owned(),
        value => value.to_string(),
    };
    // Checked off the hot path, at load: a deadline missed on a busy
    // machine would refuse a good configuration (and a reload is not
    // retried until its file changes), so the check gets a generous one.
    let check = CallLimits { timeout: limits.timeout.max(SETTINGS_TIMEOUT), ..limits };
    plugin
        .validate_settings(&name, &settings, check)
        .map_err(|error| PolicySetError::Load { policy: spec.name.clone(), error })?;
    Ok(Policy {
        name,
        plugin,
        mode: spec.mode,
        matcher,
        failure_policy: spec.failure_policy,
        limits,
        settings,
        context: spec.context.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn source(yaml: &str, dir: &std::path::Path) -> Source {
        let config = Config::parse(yaml, "berth.yaml").expect("the test configuration parses");
        Source { config, base_dir: dir.to_owned(), origin: "berth.yaml".into() }
    }

    fn policy(name: &str, plugin: &str, pin: Option<&str>) -> String {
        let pin = pin.map(|sha| format!("    sha256: {sha}\n")).unwrap_or_default();
        format!("  - name: {name}\n    plugin: {plugin}\n{pin}    mode: validate\n")
    }

    #[test]
    fn require_pinned_refuses_only_unpinned_plugin_files() {
        use sha2::Digest;
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("p.wasm"), b"not really wasm").expect("write");
        let digest = hex::encode(sha2::Sha256::digest(b"not really wasm"));
        let pinned = policy("pinned", "p.wasm", Some(&digest));
        let bundled = policy("bundled", "builtin:tolerations", None);
        let ok = format!("policies:\n{pinned}{bundled}");
        require_pinned(&[source(&ok, dir.path())]).expect("pinned files and bundled plugins pass");

        let unpinned = format!("policies:\n{pinned}{}", policy("loose", "p.wasm", None));
        let err = require_pinned(&[source(&unpinned, dir.path())]).expect_err("an unpinned file");
        assert!(matches!(&err, PolicySetError::Unpinned { policy, .. } if policy == "loose"), "{err:?}");
        let text = crate::error_chain(&err);
        assert!(text.starts_with("policy \"loose\" (berth.yaml): plugin p.wasm has no sha256 pin"), "{text}");
        assert!(text.contains("--require-pinned") && text.contains(&format!("`sha256: {digest}`")), "{text}");

        // A file that is not there yet: the message says how to get the digest.
        let missing = format!("policies:\n{}", policy("later", "later.wasm", None));
        let text = crate::error_chain(&require_pinned(&[source(&missing, dir.path())]).expect_err("unpinned"));
        assert!(text.contains("sha256sum") && text.contains("later.wasm"), "{text}");
    }
}
