//! Judge a test file's cases: each through `admit`, as the server would,
//! then every expectation against the answer and the patched object.

use super::{CaseSpec, EndpointSpec, Expect, TestFile};
use crate::admission::{Admitted, Endpoint, admit};
use crate::cluster::Cluster;
use crate::policy::{PolicySet, PolicySetError};
use crate::review::{AdmissionResponse, Review};
use crate::runtime::Runtime;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt::Write as _;
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
            Err(broken) => {
                cases.push(CaseResult { name: broken.name, failures: vec![broken.why], elapsed: started.elapsed() });
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
    PolicySet::load(runtime, sources, cluster).map_err(|err| {
        let mut why = format!("loading the policies: {}", crate::error_chain(&err));
        // A project's tests run before its first build find no component.
        if let PolicySetError::ReadPlugin { path, error, .. } = &err
            && error.kind() == std::io::ErrorKind::NotFound
            && path.ends_with(".wasm")
        {
            let dir = Path::new(path).parent().map(lexically_normal).unwrap_or_default();
            let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
            let _ = write!(why, "; build the plugin first: berth plugin build {}", dir.display());
        }
        why
    })
}

/// `demo/tests/..` as `demo`, without asking the file system: the path as
/// the author would type it.
fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if matches!(normal.components().next_back(), Some(Component::Normal(_))) => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
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
    let admitted = admit(policies, endpoint, review);
    let mut failures = check_ran(&case.expect, policies, endpoint, &admitted);
    failures.extend(check(&case.expect, &admitted.response, object));
    Ok(failures)
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

/// Whether the policies named in `ran` ran, and no others, in that order.
fn check_ran(expect: &Expect, policies: &PolicySet, endpoint: Endpoint, admitted: &Admitted) -> Vec<String> {
    let Some(want) = &expect.ran else { return Vec::new() };
    let ran: Vec<&str> = admitted.outcomes.iter().map(|outcome| &*outcome.policy).collect();
    if ran == *want {
        return Vec::new();
    }
    let mut failure = format!("expected the policies {want:?} to run, in this order; ");
    if ran.is_empty() {
        let _ = write!(failure, "none ran: no {} policy matched the request", endpoint.as_str());
    } else {
        let _ = write!(failure, "ran {ran:?}");
    }
    let loaded: Vec<&str> = policies.policies().iter().map(|policy| &*policy.name).collect();
    let unknown: Vec<&str> = want.iter().map(String::as_str).filter(|name| !loaded.contains(name)).collect();
    if !unknown.is_empty() {
        let _ = write!(failure, " ({unknown:?}: no such policy; loaded are {loaded:?})");
    }
    let other_mode: Vec<&str> = policies
        .policies()
        .iter()
        .filter(|policy| policy.mode != endpoint.mode() && want.iter().any(|name| **name == *policy.name))
        .map(|policy| &*policy.name)
        .collect();
    if !other_mode.is_empty() {
        let _ = write!(failure, " ({other_mode:?} run on the other endpoint: set the case's `endpoint`)");
    }
    vec![failure]
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
                let wrong_code = denied.code.filter(|code| *code != status.code);
                if let Some(code) = wrong_code {
                    failures.push(format!(
                        "expected code {code}, got {}, with {}",
                        status.code,
                        shown(&status.message)
                    ));
                }
                if let Some(message) = &denied.message
                    && !status.message.contains(message.as_str())
                {
                    // A traceback is long: say it once.
                    let got =
                        if wrong_code.is_some() { "the message above".to_owned() } else { shown(&status.message) };
                    failures.push(format!("expected a message containing {message:?}, got {got}"));
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
            None => failures.push(format!(
                "at {pointer}: expected {want}, but nothing is there{}",
                unescaped_slash(after, pointer).map(|hint| format!(" ({hint})")).unwrap_or_default()
            )),
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
        } else if let Some(hint) = unescaped_slash(after, pointer) {
            // Absent only because the key was spelt wrong: that proves nothing.
            failures.push(format!("at {pointer}: nothing is there, but {hint}"));
        }
    }
}

/// When `pointer` finds nothing because a key with `/` in it was not
/// written with `~1` (`/metadata/labels/example.com/checked`), the pointer
/// that finds it.
fn unescaped_slash(object: &Value, pointer: &str) -> Option<String> {
    let segments: Vec<&str> = pointer.split('/').skip(1).collect();
    let mut node = object;
    for (at, segment) in segments.iter().enumerate() {
        let next = match node {
            Value::Object(map) => map.get(&unescape(segment)),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|index| items.get(index)),
            _ => None,
        };
        if let Some(next) = next {
            node = next;
            continue;
        }
        let map = node.as_object()?;
        let key = |end: usize| segments[at..end].iter().map(|segment| unescape(segment)).collect::<Vec<_>>().join("/");
        // The longest run of the segments from here that is one key.
        let end = (at + 2..=segments.len()).rev().find(|end| map.contains_key(&key(*end)))?;
        let escaped = key(end).replace('~', "~0").replace('/', "~1");
        let fixed = segments[..at].iter().copied().chain([escaped.as_str()]).chain(segments[end..].iter().copied());
        let fixed: String = fixed.map(|segment| format!("/{segment}")).collect();
        return Some(format!("a / inside a key is written ~1 in a JSON Pointer: did you mean {fixed}?"));
    }
    None
}

/// A JSON Pointer's segment as the key it names (RFC 6901).
fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// Why `pointer` is not an RFC 6901 JSON Pointer, if it is not.
fn not_a_pointer(pointer: &str) -> Option<String> {
    (!pointer.is_empty() && !pointer.starts_with('/'))
        .then(|| format!("{pointer:?} is not a JSON Pointer (it starts with /)"))
}

fn describe(response: &AdmissionResponse) -> String {
    match (&response.status, response.allowed, &response.patch) {
        (Some(status), false, _) => format!("denied ({}), with {}", status.code, shown(&status.message)),
        (_, _, Some(_)) => "allowed with a patch".to_owned(),
        _ => "allowed without a patch".to_owned(),
    }
}

/// A response's message for a failure: quoted when it is one line; else
/// (a plugin's traceback) as an indented block whose lines read as written.
fn shown(message: &str) -> String {
    if !message.contains('\n') {
        return format!("{message:?}");
    }
    let block: String = message.lines().map(|line| format!("\n    {line}")).collect();
    format!("this message:{block}")
}

#[cfg(test)]
mod tests {
    use super::{plural, shown, unescaped_slash};

    #[test]
    fn a_traceback_is_shown_as_lines_and_one_line_quoted() {
        assert_eq!(shown("no \"latest\""), r#""no \"latest\"""#);
        assert_eq!(
            shown("NameError: x (policy.py, line 3)\n  File \"policy.py\", line 3"),
            "this message:\n    NameError: x (policy.py, line 3)\n      File \"policy.py\", line 3"
        );
    }
    use serde_json::json;

    #[test]
    fn paths_are_normalised_as_typed() {
        use std::path::Path;
        for (path, normal) in
            [("demo/tests/..", "demo"), ("./demo", "demo"), ("../a/b/../c", "../a/c"), ("/x/y/..", "/x")]
        {
            assert_eq!(super::lexically_normal(Path::new(path)), Path::new(normal), "{path}");
        }
    }

    #[test]
    fn a_key_with_a_slash_written_without_its_escape_gets_the_pointer_that_finds_it() {
        let object = json!({"metadata": {"labels": {"example.com/checked": "true", "a/b/c": "x"}}, "spec": {"containers": [{"name": "app"}]}});
        let hint = unescaped_slash(&object, "/metadata/labels/example.com/checked").expect("a hint");
        assert!(hint.ends_with("did you mean /metadata/labels/example.com~1checked?"), "{hint}");
        let hint = unescaped_slash(&object, "/metadata/labels/a/b/c").expect("a hint");
        assert!(hint.ends_with("did you mean /metadata/labels/a~1b~1c?"), "{hint}");
        // Nothing to suggest: the key is not there either way.
        assert_eq!(unescaped_slash(&object, "/metadata/labels/example.com/other"), None);
        assert_eq!(unescaped_slash(&object, "/spec/containers/1/name"), None);
        assert_eq!(unescaped_slash(&object, "/metadata/labels/example.com~1checked"), None);
    }

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
