//! `berth eval`: the policy author's loop. Same loading, matching and
//! admission code as the server; the only difference is where reviews come
//! from.

use super::RuntimeArgs;
use crate::admission::{Endpoint, admit};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::policy::PolicySet;
use crate::review::{Object, Review};
use anyhow::Context;
use base64::Engine as _;
use clap::ValueEnum;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Policy configuration (berth.yaml); repeat to combine. Default: the
    /// embedded Pulsar/Kafka policy.
    #[arg(long, short)]
    config: Vec<PathBuf>,
    /// Which endpoint to act as.
    #[arg(long, value_enum, default_value_t = EndpointArg::Mutate)]
    endpoint: EndpointArg,
    /// Print the resulting object instead of the AdmissionReview response.
    #[arg(long)]
    apply: bool,
    /// Kubernetes objects that stand in for the cluster (multi-document
    /// YAML or JSON; repeatable): the Namespaces, owners (Jobs, ReplicaSets,
    /// Deployments, StatefulSets, ...) and StorageClasses policies look up.
    #[arg(long, value_name = "FILE")]
    context: Vec<PathBuf>,
    /// AdmissionReview request files.
    #[arg(required = true)]
    reviews: Vec<PathBuf>,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EndpointArg {
    Mutate,
    Validate,
}

impl EvalArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let sources = if self.config.is_empty() {
            Config::embedded_default()?
        } else {
            self.config.iter().map(|path| Config::read(path)).collect::<Result<_, _>>()?
        };
        if self.runtime.require_pinned {
            crate::policy::require_pinned(&sources)?;
        }
        let runtime = self.runtime.runtime()?;
        // Without --context, a request that needs a lookup fails its policy,
        // naming --context; with it, lookups read the files.
        let cluster =
            if self.context.is_empty() { Cluster::missing_context() } else { Cluster::snapshot(&self.context)? };
        let policies = PolicySet::load(&runtime, &sources, cluster)?;
        let endpoint = match self.endpoint {
            EndpointArg::Mutate => Endpoint::Mutate,
            EndpointArg::Validate => Endpoint::Validate,
        };
        let mut status = ExitCode::SUCCESS;
        let mut out = std::io::stdout().lock();
        for path in &self.reviews {
            let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let review = match Review::parse(&body) {
                Ok(review) => review,
                Err(err) => {
                    eprintln!("{}: {}", path.display(), crate::error_chain(&err));
                    status = ExitCode::FAILURE;
                    continue;
                }
            };
            // --apply prints the object as patched: a tree of it is needed.
            let object = match review.request.object.as_ref().filter(|_| self.apply).map(Object::to_value) {
                None => None,
                Some(Ok(object)) => Some(object),
                Some(Err(err)) => {
                    eprintln!("{}: the object cannot be built to apply the patch to: {err}", path.display());
                    status = ExitCode::FAILURE;
                    continue;
                }
            };
            let admitted = admit(&policies, endpoint, review);
            let json = if self.apply {
                serde_json::to_string_pretty(&applied(object, &admitted.response)?)?
            } else {
                serde_json::to_string_pretty(&admitted.response.into_review())?
            };
            writeln!(out, "{json}")?;
        }
        Ok(status)
    }
}

/// The object after the response's patch, as the apiserver would store it.
fn applied(
    object: Option<serde_json::Value>,
    response: &crate::review::AdmissionResponse,
) -> anyhow::Result<serde_json::Value> {
    let mut object = object.unwrap_or_default();
    if let Some(patch) = &response.patch {
        let bytes = base64::engine::general_purpose::STANDARD.decode(patch)?;
        let patch: json_patch::Patch = serde_json::from_slice(&bytes)?;
        json_patch::patch(&mut object, &patch)?;
    }
    Ok(object)
}
