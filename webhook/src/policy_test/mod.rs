//! `berth test`: declarative test files for policies. A file names the
//! policies under test (berth.yaml files, or policies written inline as in
//! berth.yaml), the cluster they see, and cases: a review, or an object and
//! an operation, with what berth must answer. Cases run through
//! [`crate::admission::admit`], the server's own path, on the real plugins.
//!
//! This module owns the file format; `run.rs` judges cases, `report.rs`
//! prints them.

mod report;
mod run;

pub use report::{Format, Report};
pub use run::{CaseResult, FileResult, run_file};

use crate::config::{Config, PolicySpec, Source};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Test files are found by this suffix in the directories `berth test` is
/// given.
pub const SUFFIXES: [&str; 2] = [".test.yaml", ".test.yml"];

/// Why a test file, or one of its cases, cannot run. A case that cannot run
/// fails; it never passes for lack of a check.
#[derive(Debug, Error)]
pub enum TestFileError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{path}")]
    Parse {
        path: PathBuf,
        #[source]
        error: crate::yaml::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A test file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    /// berth.yaml files, relative to this file, run in order.
    #[serde(default)]
    config: OneOrMany,
    /// Policies written here, as in berth.yaml (plugin paths relative to
    /// this file); they run after those of `config`.
    #[serde(default)]
    policies: Vec<PolicySpec>,
    /// Objects that stand in for the cluster, as `berth eval --context`
    /// reads them; a case may name its own.
    #[serde(default)]
    cluster: OneOrMany,
    /// Each case is read on its own, so that one that is written wrong
    /// fails alone, named, and the others still run; its line is kept for
    /// that failure.
    #[serde(default)]
    cases: Vec<serde_saphyr::Spanned<Value>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    #[default]
    None,
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl OneOrMany {
    fn resolve(self, dir: &Path) -> Vec<PathBuf> {
        let paths = match self {
            Self::None => Vec::new(),
            Self::One(path) => vec![path],
            Self::Many(paths) => paths,
        };
        paths.into_iter().map(|path| dir.join(path)).collect()
    }
}

/// One case as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaseSpec {
    pub name: String,
    /// An AdmissionReview file, relative to the test file.
    #[serde(default)]
    pub review: Option<PathBuf>,
    /// Or the object itself; berth wraps it in a review.
    #[serde(default)]
    pub object: Option<Value>,
    /// The stored object, for UPDATE (and DELETE).
    #[serde(default)]
    pub old_object: Option<Value>,
    /// CREATE unless there is an `oldObject` (then UPDATE).
    #[serde(default)]
    pub operation: Option<String>,
    /// `ephemeralcontainers` for `kubectl debug`, `status`, ...
    #[serde(default)]
    pub sub_resource: Option<String>,
    /// The plural resource, when the kind's plural is not the obvious one.
    #[serde(default)]
    pub resource: Option<String>,
    /// This case's cluster instead of the file's.
    #[serde(default)]
    pub cluster: Option<OneOrMany>,
    #[serde(default)]
    pub endpoint: EndpointSpec,
    pub expect: Expect,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointSpec {
    #[default]
    Mutate,
    Validate,
}

/// What berth must answer. Every field given is checked; one must be.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    /// The policies that matched the request and ran, exactly and in order
    /// (`[]`: none). Without it, `allowed: true` also passes when the match
    /// never sent the object to the plugin.
    #[serde(default)]
    pub ran: Option<Vec<String>>,
    #[serde(default)]
    pub allowed: Option<bool>,
    /// Denied, with this code and a message containing this text.
    #[serde(default)]
    pub denied: Option<Denied>,
    /// Whether the answer carries a patch.
    #[serde(default)]
    pub patched: Option<bool>,
    /// The whole object after the patch.
    #[serde(default)]
    pub object: Option<Value>,
    /// Values at JSON Pointers in the object after the patch.
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
    /// JSON Pointers that must not exist in the object after the patch.
    #[serde(default)]
    pub absent: Vec<String>,
    /// The warnings, exactly and in order (`[]`: none).
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Denied {
    #[serde(default)]
    pub code: Option<u16>,
    #[serde(default)]
    pub message: Option<String>,
}

impl Expect {
    fn is_empty(&self) -> bool {
        self.ran.is_none()
            && self.allowed.is_none()
            && self.denied.is_none()
            && self.patched.is_none()
            && self.object.is_none()
            && self.values.is_empty()
            && self.absent.is_empty()
            && self.warnings.is_none()
    }

    /// Whether a check reads the object after the patch.
    fn reads_object(&self) -> bool {
        self.object.is_some() || !self.values.is_empty() || !self.absent.is_empty()
    }
}

/// A test file, read and checked: its policies' sources and its cases.
#[derive(Debug)]
pub struct TestFile {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub sources: Vec<Source>,
    pub cluster: Vec<PathBuf>,
    /// Each case, or why it cannot be read (it then fails).
    pub cases: Vec<Result<CaseSpec, BrokenCase>>,
}

/// A case that cannot be read: its name (or `case N` if it has none), and why.
#[derive(Debug)]
pub struct BrokenCase {
    pub name: String,
    pub why: String,
}

impl TestFile {
    pub fn read(path: &Path) -> Result<Self, TestFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| TestFileError::Read { path: path.into(), error })?;
        let spec: FileSpec =
            crate::yaml::from_str(&text).map_err(|error| TestFileError::Parse { path: path.into(), error })?;
        let invalid = |message: String| TestFileError::Invalid { path: path.into(), message };
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();
        let configs = spec.config.resolve(&dir);
        // No config files is no policies here (not the embedded default).
        let mut sources = if configs.is_empty() {
            Vec::new()
        } else {
            Config::read_all(&configs).map_err(|err| invalid(crate::error_chain(&err)))?
        };
        if !spec.policies.is_empty() {
            let origin = path.display().to_string();
            let config = Config { policies: spec.policies, ..Config::default() }
                .checked(&origin)
                .map_err(|err| invalid(crate::error_chain(&err)))?;
            sources.push(Source { config, base_dir: dir.clone(), origin });
        }
        if sources.iter().all(|source| source.config.policies.is_empty()) {
            return Err(invalid("names no policy: give `config:` (berth.yaml files) or `policies:`".into()));
        }
        if spec.cases.is_empty() {
            return Err(invalid("has no cases: a test file with nothing to check cannot pass".into()));
        }
        let cases = spec.cases.into_iter().enumerate().map(|(index, case)| read_case(index, case)).collect();
        Ok(Self { path: path.to_owned(), cluster: spec.cluster.resolve(&dir), dir, sources, cases })
    }
}

/// One case as written, checked; `index` counts from 0.
fn read_case(index: usize, case: serde_saphyr::Spanned<Value>) -> Result<CaseSpec, BrokenCase> {
    let line = case.referenced.line();
    let name = case.value.get("name").and_then(Value::as_str).map(str::to_owned);
    let broken = |why: String| BrokenCase { name: name.clone().unwrap_or_else(|| format!("case {}", index + 1)), why };
    // The case was read as a plain value: the line is the case's own, and
    // serde names the field.
    let spec: CaseSpec =
        serde_json::from_value(case.value).map_err(|err| broken(format!("the case at line {line}: {err}")))?;
    if spec.expect.is_empty() {
        return Err(broken(format!("the case at line {line}: expect checks nothing")));
    }
    if spec.review.is_some() == spec.object.is_some() {
        return Err(broken(format!("the case at line {line}: give exactly one of review and object")));
    }
    Ok(spec)
}

/// The test files in `path`: the file itself, or every `*.test.yaml` under
/// a directory (build output and dependencies skipped), in name order.
pub fn discover(path: &Path) -> Result<Vec<PathBuf>, TestFileError> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut found = Vec::new();
    let mut pending = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|error| TestFileError::Read { path: dir.clone(), error })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !name.starts_with('.') && !matches!(name.as_str(), "target" | "node_modules" | "__pycache__") {
                    pending.push(path);
                }
            } else if SUFFIXES.iter().any(|suffix| name.ends_with(suffix)) {
                found.push(path);
            }
        }
    }
    if found.is_empty() {
        let message = format!("no test files (*{}) here", SUFFIXES[0]);
        return Err(TestFileError::Invalid { path: path.to_owned(), message });
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_written_wrong_is_named_and_its_line_given() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("x.test.yaml");
        let text = "policies:\n  - {name: p, plugin: builtin:tolerations, mode: mutate}\ncases:\n  - name: fine\n    object: {apiVersion: v1, kind: Pod}\n    expect: {allowed: true}\n\n  - name: the typo\n    object: {apiVersion: v1, kind: Pod}\n    expct: {allowed: true}\n  - object: {apiVersion: v1, kind: Pod}\n    expect: {allowed: true}\n  - name: empty\n    object: {apiVersion: v1, kind: Pod}\n    expect: {}\n";
        std::fs::write(&path, text).expect("writing");
        let file = TestFile::read(&path).expect("the file reads");
        assert!(file.cases[0].is_ok());
        let broken = file.cases[1].as_ref().expect_err("a typo");
        assert_eq!(broken.name, "the typo");
        assert!(broken.why.starts_with("the case at line 8: unknown field `expct`"), "{}", broken.why);
        // Without a name, a case is named by its place.
        let broken = file.cases[2].as_ref().expect_err("no name");
        assert_eq!(
            (broken.name.as_str(), broken.why.as_str()),
            ("case 3", "the case at line 11: missing field `name`")
        );
        let broken = file.cases[3].as_ref().expect_err("nothing to check");
        assert_eq!(
            (broken.name.as_str(), broken.why.as_str()),
            ("empty", "the case at line 13: expect checks nothing")
        );
    }
}
