//! Judge a test file's cases: each through `admit`, as the server would,
//! then every expectation against the answer and the patched object.

use super::{CaseSpec, EndpointSpec, Expect, TestFile};
use crate::admission::{Endpoint, admit};
use crate::cluster::Cluster;
use crate::policy::PolicySet;
use crate::review::{AdmissionResponse, Review};
use crate::runtime::Runtime;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One file's outcome: its cases, or why none could run.
#[derive(Debug)]
pub struct FileResult {
    pub path: PathBuf,
    pub error: Option<String>,
    pub cases: Vec<CaseResult>,
}

#[derive(Debug)]
pub struct CaseResult {
    pub name: String,
    /// What did not hold; empty when the case passed.
    pub failures: Vec<String>,
    pub elapsed: Duration,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl FileResult {
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.cases.iter().all(CaseResult::passed)
    }
}

/// Read `path` and run every case in it.
pub fn run_file(runtime: &Runtime, path: &Path) -> FileResult {
    let file = match TestFile::read(path) {
        Ok(file) => file,
        Err(err) => return FileResult { path: path.into(), error: Some(crate::error_chain(&err)), cases: vec![] },
    };
    // One policy set per cluster the cases name: plugins compile once per
    // set (and are then read from the artifact cache).
    let mut sets: HashMap<Vec<PathBuf>, Result<PolicySet, String>> = HashMap::new();
    let mut cases = Vec::new();
    for (index, case) in file.cases.into_iter().enumerate() {
        let started = Instant::now();
        let case = match case {
            Ok(case) => case,
            Err(why) => {
                cases.push(CaseResult {
                    name: format!("case {}", index + 1),
                    failures: vec![why],
                    elapsed: started.elapsed(),
                });
                continue;
            }
        };
        let cluster = match &case.cluster {
            Some(paths) => paths.clone().resolve(&file.dir),
            None => file.cluster.clone(),
        };
        let policies = sets.entry(cluster).or_insert_with_key(|cluster| load(runtime, &file.sources, cluster));
        let failures = match policies {
            Ok(policies) => judge(policies, &file.dir, &case, index).unwrap_or_else(|why| vec![why]),
            Err(why) => vec![why.clone()],
        };
        cases.push(CaseResult { name: case.name, failures, elapsed: started.elapsed() });
    }
    FileResult { path: file.path, error: None, cases }
}

fn load(runtime: &Runtime, sources: &[crate::config::Source], cluster: &[PathBuf]) -> Result<PolicySet, String> {
    let cluster = if cluster.is_empty() {
        Cluster::missing_context()
    } else {
        Cluster::snapshot(cluster).map_err(|err| crate::error_chain(&err))?
    };
    PolicySet::load(runtime, sources, cluster)
        .map_err(|err| format!("loading the policies: {}", crate::error_chain(&err)))
}

/// Run one case; `Err` when it cannot run at all.
fn judge(policies: &PolicySet, dir: &Path, case: &CaseSpec, index: usize) -> Result<Vec<String>, String> {
    let body = match (&case.review, &case.object) {
        (Some(review), _) => {
            let path = dir.join(review);
            std::fs::read(&path).map_err(|err| format!("reading review {}: {err}", path.display()))?
        }
        (None, Some(object)) => review_of(case, object, index)?,
        (None, None) => return Err("give a review or an object".into()),
    };
    let review = Review::parse(&body).map_err(|err| format!("the review: {}", crate::error_chain(&err)))?;
    let object = review.request.object.as_ref().map(|object| object.to_value()).transpose();
    let object = object.map_err(|err| format!("the review's object: {err}"))?;
    let endpoint = match case.endpoint {
        EndpointSpec::Mutate => Endpoint::Mutate,
        EndpointSpec::Validate => Endpoint::Validate,
    };
    let response = admit(policies, endpoint, review).response;
    Ok(check(&case.expect, &response, object))
}

/// An AdmissionReview for `object`, as the apiserver would send it.
fn review_of(case: &CaseSpec, object: &Value, index: usize) -> Result<Vec<u8>, String> {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("/apiVersion"), text("/kind"));
    if api_version.is_empty() || kind.is_empty() {
        return Err("the object needs apiVersion and kind".into());
    }
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = case.resource.clone().unwrap_or_else(|| plural(kind));
    let operation = case
        .operation
        .clone()
        .unwrap_or_else(|| if case.old_object.is_some() { "UPDATE" } else { "CREATE" }.to_owned());
    if operation == "UPDATE" && case.old_object.is_none() {
        return Err("an UPDATE needs oldObject".into());
    }
    // A DELETE carries the stored object as oldObject and no object.
    let (object, old_object) = match operation.as_str() {
        "DELETE" => (None, Some(case.old_object.as_ref().unwrap_or(object))),
        _ => (Some(object), case.old_object.as_ref()),
    };
    let mut request = json!({
        "uid": format!("berth-test-{}", index + 1),
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": resource},
        "name": text("/metadata/name"),
        "namespace": text("/metadata/namespace"),
        "operation": operation,
        "userInfo": {"username": "berth-test"},
        "object": object,
        "oldObject": old_object,
        "dryRun": false,
    });
    if let Some(sub) = &case.sub_resource {
        request["subResource"] = json!(sub);
    }
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request});
    serde_json::to_vec(&review).map_err(|err| err.to_string())
}

/// The resource of a kind, as the apiserver names most: `pods`,
/// `persistentvolumeclaims`, `networkpolicies`, `ingresses`.
fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if let Some(stem) = lower.strip_suffix('y').filter(|stem| !stem.ends_with(['a', 'e', 'o', 'u'])) {
        format!("{stem}ies")
    } else if lower.ends_with('s') || lower.ends_with("ch") || lower.ends_with('x') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    }
}

/// Every expectation that does not hold, said so a reader sees the difference.
fn check(expect: &Expect, response: &AdmissionResponse, object: Option<Value>) -> Vec<String> {
    let mut failures = Vec::new();
    let verdict = describe(response);
    if let Some(allowed) = expect.allowed
        && allowed != response.allowed
    {
        failures.push(format!("expected {}, got {verdict}", if allowed { "allowed" } else { "denied" }));
    }
    if let Some(denied) = &expect.denied {
        match &response.status {
            Some(status) if !response.allowed => {
                if let Some(code) = denied.code
                    && code != status.code
                {
                    failures.push(format!("expected code {code}, got {} ({:?})", status.code, status.message));
                }
                if let Some(message) = &denied.message
                    && !status.message.contains(message.as_str())
                {
                    failures.push(format!("expected a message containing {message:?}, got {:?}", status.message));
                }
            }
            _ => failures.push(format!("expected denied, got {verdict}")),
        }
    }
    if let Some(patched) = expect.patched
        && patched != response.patch.is_some()
    {
        failures.push(format!("expected {}, got {verdict}", if patched { "a patch" } else { "no patch" }));
    }
    if let Some(warnings) = &expect.warnings
        && warnings != &response.warnings
    {
        failures.push(format!("expected warnings {warnings:?}, got {:?}", response.warnings));
    }
    if expect.reads_object() {
        match object.map(|object| response.apply_patch(object)) {
            Some(Ok(after)) => check_object(expect, &after, &mut failures),
            Some(Err(err)) => failures.push(crate::error_chain(&err)),
            None => failures.push("the request has no object to check".into()),
        }
    }
    failures
}

fn check_object(expect: &Expect, after: &Value, failures: &mut Vec<String>) {
    if let Some(whole) = &expect.object
        && whole != after
    {
        let diff = crate::diff::yaml(whole, after, "expected", "got");
        failures.push(format!("the object after the patch differs:\n{diff}"));
    }
    for (pointer, want) in &expect.values {
        if let Some(bad) = not_a_pointer(pointer) {
            failures.push(bad);
            continue;
        }
        match after.pointer(pointer) {
            Some(got) if got == want => {}
            Some(got) => failures.push(format!("at {pointer}: expected {want}, got {got}")),
            None => failures.push(format!("at {pointer}: expected {want}, but nothing is there")),
        }
    }
    for pointer in &expect.absent {
        // A malformed pointer finds nothing, which must not pass for absent.
        if let Some(bad) = not_a_pointer(pointer) {
            failures.push(bad);
            continue;
        }
        if let Some(got) = after.pointer(pointer) {
            failures.push(format!("at {pointer}: expected nothing, got {got}"));
        }
    }
}

/// Why `pointer` is not an RFC 6901 JSON Pointer, if it is not.
fn not_a_pointer(pointer: &str) -> Option<String> {
    (!pointer.is_empty() && !pointer.starts_with('/'))
        .then(|| format!("{pointer:?} is not a JSON Pointer (it starts with /)"))
}

fn describe(response: &AdmissionResponse) -> String {
    match (&response.status, response.allowed, &response.patch) {
        (Some(status), false, _) => format!("denied ({}: {:?})", status.code, status.message),
        (_, _, Some(_)) => "allowed with a patch".to_owned(),
        _ => "allowed without a patch".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::plural;

    #[test]
    fn plurals_of_kinds() {
        for (kind, resource) in [
            ("Pod", "pods"),
            ("PersistentVolumeClaim", "persistentvolumeclaims"),
            ("NetworkPolicy", "networkpolicies"),
            ("Ingress", "ingresses"),
            ("Gateway", "gateways"),
        ] {
            assert_eq!(plural(kind), resource);
        }
    }
}
