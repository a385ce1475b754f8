//! A loaded policy set: each configured policy with its compiled plugin,
//! matcher and limits, checked at load so that a bad policy never reaches
//! the request path.

use crate::builtin;
use crate::config::{ConfigError, FailurePolicy, Mode, PolicySpec, Source};
use crate::matcher::Matcher;
use crate::namespaces::Namespaces;
use crate::runtime::{CallLimits, LoadError, Plugin, Runtime};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
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
        "policy {policy:?}: match.namespaceSelector uses the namespace label {key:?}, but berth cannot read Namespaces here: run it in a cluster (with list/watch on namespaces) or give --kube-api; or select by {name_label}",
        name_label = crate::matcher::NAMESPACE_NAME_LABEL
    )]
    NamespaceLabels { policy: String, key: String },
    #[error("policy {policy:?}: memoryLimit {limit} is above the runtime's maximum {max}")]
    MemoryLimit { policy: String, limit: usize, max: usize },
    #[error("policy {policy:?}: {error}")]
    Load {
        policy: String,
        #[source]
        error: LoadError,
    },
}

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
}

/// Every policy, in the order they run.
#[derive(Debug, Default)]
pub struct PolicySet {
    policies: Vec<Policy>,
    /// Namespace labels, when berth can read them (namespaceSelector).
    namespaces: Option<Namespaces>,
}

impl PolicySet {
    /// Load every policy of every source, in order. Plugins used by several
    /// policies are compiled once. Without `namespaces`, a namespaceSelector
    /// can only select by the namespace's name.
    pub fn load(runtime: &Runtime, sources: &[Source], namespaces: Option<Namespaces>) -> Result<Self, PolicySetError> {
        let mut names = HashSet::new();
        let mut plugins: HashMap<(String, std::path::PathBuf), Arc<Plugin>> = HashMap::new();
        let mut policies = Vec::new();
        for source in sources {
            for spec in &source.config.policies {
                if !names.insert(spec.name.clone()) {
                    return Err(ConfigError::DuplicateName(spec.name.clone()).into());
                }
                let matcher = Matcher::from(spec.matcher.clone());
                if namespaces.is_none()
                    && let Some(key) = matcher.namespace_label_keys().next()
                {
                    return Err(PolicySetError::NamespaceLabels { policy: spec.name.clone(), key: key.to_owned() });
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
                policies.push(prepare(runtime, spec, plugin, matcher)?);
            }
        }
        Ok(Self { policies, namespaces })
    }

    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The policies of `mode` that match `request`, in order.
    pub fn matching(&self, mode: Mode, request: &crate::review::AdmissionRequest) -> Vec<&Policy> {
        let namespaces = self.namespaces.as_ref();
        self.policies.iter().filter(|p| p.mode == mode && p.matcher.matches(request, namespaces)).collect()
    }
}

/// Whether any policy of `sources` selects namespaces by a label other than
/// their name, and so needs the namespaces' labels.
pub fn needs_namespace_labels(sources: &[Source]) -> bool {
    sources
        .iter()
        .flat_map(|source| &source.config.policies)
        .any(|spec| Matcher::from(spec.matcher.clone()).namespace_label_keys().next().is_some())
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
    let plugin =
        runtime.load(&spec.plugin, &wasm).map_err(|error| PolicySetError::Load { policy: policy.clone(), error })?;
    if let Some(expected) = &spec.sha256
        && !expected.eq_ignore_ascii_case(plugin.sha256())
    {
        let error = LoadError::Checksum {
            source_name: spec.plugin.clone(),
            expected: expected.to_lowercase(),
            actual: plugin.sha256().to_owned(),
        };
        return Err(PolicySetError::Load { policy, error });
    }
    Ok(plugin)
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
    let limits = CallLimits { timeout: spec.timeout, memory: spec.memory_limit };
    let settings = match &spec.settings {
        serde_json::Value::Null => "{}".to_owned(),
        value => value.to_string(),
    };
    plugin
        .validate_settings(&name, &settings, limits)
        .map_err(|error| PolicySetError::Load { policy: spec.name.clone(), error })?;
    Ok(Policy { name, plugin, mode: spec.mode, matcher, failure_policy: spec.failure_policy, limits, settings })
}
