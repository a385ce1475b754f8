//! `berth eval`: the policy author's loop. Same loading, matching and
//! admission code as the server; the only difference is where reviews come
//! from.

use super::RuntimeArgs;
use crate::admission::{Admitted, Endpoint, PolicyResult, admit};
use crate::cluster::Cluster;
use crate::config::{Config, FailurePolicy};
use crate::policy::PolicySet;
use crate::review::{Object, Review};
use anyhow::Context;
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
    #[arg(long, conflicts_with = "diff")]
    apply: bool,
    /// Print, per review, what each matched policy did (its verdict, or
    /// the patch ops it added) and the object's change as a unified diff of
    /// YAML, instead of the AdmissionReview response.
    #[arg(long)]
    diff: bool,
    /// Kubernetes objects that stand in for the cluster (multi-document
    /// YAML or JSON; repeatable): the Namespaces, owners (Jobs, ReplicaSets,
    /// Deployments, StatefulSets, ...) and StorageClasses policies look up.
    #[arg(long, value_name = "FILE")]
    context: Vec<PathBuf>,
    /// AdmissionReview request files. With several, each answer follows a
    /// line `== FILE` on stderr (stdout stays JSON; --diff names them in
    /// its own output).
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
        let sources = Config::read_all(&self.config)?;
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
            // --apply and --diff show the object as patched: a tree of it is needed.
            let object = match review.request.object.as_ref().filter(|_| self.apply || self.diff).map(Object::to_value)
            {
                None => None,
                Some(Ok(object)) => Some(object),
                Some(Err(err)) => {
                    eprintln!("{}: the object cannot be built to apply the patch to: {err}", path.display());
                    status = ExitCode::FAILURE;
                    continue;
                }
            };
            let admitted = admit(&policies, endpoint, review);
            if self.diff {
                match explain(path, &policies, endpoint, object, &admitted) {
                    Ok(text) => write!(out, "{text}")?,
                    // One review's trouble is reported, and the others still run.
                    Err(err) => {
                        eprintln!("{}: {err:#}", path.display());
                        status = ExitCode::FAILURE;
                    }
                }
                continue;
            }
            // Several reviews: each answer under its file's name. On stderr,
            // so that stdout stays a stream of JSON documents for jq.
            if self.reviews.len() > 1 {
                out.flush()?;
                eprintln!("== {}", path.display());
            }
            let json = if self.apply {
                serde_json::to_string_pretty(&admitted.response.apply_patch(object.unwrap_or_default())?)?
            } else {
                serde_json::to_string_pretty(&admitted.response.into_review())?
            };
            writeln!(out, "{json}")?;
        }
        Ok(status)
    }
}

/// What `--diff` shows of one review: the policies that ran, in order, and
/// what each did; the answer; the object's change.
fn explain(
    path: &std::path::Path,
    policies: &PolicySet,
    endpoint: Endpoint,
    object: Option<serde_json::Value>,
    admitted: &Admitted,
) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let request = &admitted.request;
    let mut text = String::new();
    let name = match &request.namespace {
        Some(namespace) if !namespace.is_empty() => format!("{namespace}/{}", request.name.as_deref().unwrap_or("")),
        _ => request.name.clone().unwrap_or_default(),
    };
    writeln!(
        text,
        "== {}: {} {} {name}, /{}",
        path.display(),
        request.operation.as_str(),
        request.kind.kind,
        endpoint.as_str()
    )?;
    // The policies that matched, in order, and what each did; then those
    // that did not, so an author sees their match rules at work too.
    let mut stopped_at: Option<&str> = None;
    let mut unmatched = Vec::new();
    let mut order = 0;
    for policy in policies.policies().iter().filter(|policy| policy.mode == endpoint.mode()) {
        let Some(outcome) = admitted.outcomes.iter().find(|outcome| outcome.policy == policy.name) else {
            match stopped_at {
                None => unmatched.push(&*policy.name),
                Some(stop) => writeln!(text, "  -  {}  not run: the chain stopped at {stop}", policy.name)?,
            }
            continue;
        };
        order += 1;
        let did = match &outcome.result {
            PolicyResult::Allowed => "allowed, no change".to_owned(),
            PolicyResult::Mutated(ops) => format!("mutated, {} op(s):", ops.len()),
            PolicyResult::Denied { code, message } => format!("denied ({code}): {message}"),
            PolicyResult::Failed { error, failure_policy } => {
                format!("failed ({}, failurePolicy {failure_policy:?}): {}", error.kind(), crate::error_chain(error))
            }
        };
        writeln!(text, "{order:>3}. {}  {did}", policy.name)?;
        match &outcome.result {
            PolicyResult::Mutated(ops) => {
                for op in &admitted.patch[ops.clone()] {
                    writeln!(text, "       {}", describe_op(op))?;
                }
            }
            PolicyResult::Denied { .. } | PolicyResult::Failed { failure_policy: FailurePolicy::Fail, .. }
                if endpoint == Endpoint::Mutate =>
            {
                stopped_at = Some(&policy.name);
            }
            _ => {}
        }
    }
    if order == 0 {
        writeln!(text, "no {} policy matched", endpoint.as_str())?;
    }
    if !unmatched.is_empty() {
        writeln!(text, "did not match: {}", unmatched.join(", "))?;
    }
    let response = &admitted.response;
    for warning in &response.warnings {
        writeln!(text, "warning: {warning}")?;
    }
    match &response.status {
        Some(status) if !response.allowed => writeln!(text, "answer: denied ({}): {}", status.code, status.message)?,
        _ if response.patch.is_some() => {
            writeln!(text, "answer: allowed, with a patch of {} op(s)", admitted.patch.len())?
        }
        _ => writeln!(text, "answer: allowed, unchanged")?,
    }
    if let (Some(before), Some(_)) = (&object, &response.patch) {
        let after = response.apply_patch(before.clone())?;
        text.push_str(&crate::diff::yaml(
            before,
            &after,
            &format!("{name} (as sent)"),
            &format!("{name} (as admitted)"),
        ));
    }
    writeln!(text)?;
    Ok(text)
}

/// One patch op on a line: `add /spec/tolerations/- {"key":"dedicated",...}`.
fn describe_op(op: &json_patch::PatchOperation) -> String {
    let value = serde_json::to_value(op).unwrap_or_default();
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let mut line = format!("{} {}", field("op"), field("path"));
    if let Some(from) = value.get("from").and_then(|v| v.as_str()) {
        line = format!("{line} from {from}");
    }
    if let Some(v) = value.get("value") {
        line = format!("{line} {v}");
    }
    line
}
