//! What a policy author reads, run as the author runs it: the embedded
//! default plus their own policy (`include: [builtin:default]`), a test
//! case that requires its policy to have run, a Python bug named by file
//! and line, and the CLI's edges (a user error without a Rust backtrace,
//! a reader that goes away, several reviews named).
//!
//! The Python tests build the scaffold with the componentize-py that
//! `BERTH_COMPONENTIZE_PY` names, as the project README says to set it:
//! `.ci/run` names the one `.ci/install-tools` installs, and so does this
//! suite when nothing does; without it they fail, saying so.

use berth_e2e::fixtures;
use berth_e2e::server::{binary, cache_dir};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("the repository")
}

/// `berth ARGS` in `dir`, with the suites' artifact cache.
fn berth_in(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(binary());
    command.current_dir(dir).args(args).env("BERTH_CACHE_DIR", cache_dir());
    if std::env::var_os("BERTH_COMPONENTIZE_PY").is_none() {
        command.env("BERTH_COMPONENTIZE_PY", repo().join(".ci/venv/bin/componentize-py"));
    }
    let output = command.output().expect("berth runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

fn seed(review: &str) -> PathBuf {
    fixtures::dir().join("seed-pulsar-2.7.7").join(review)
}

/// A Python project, scaffolded (not built) in a fresh directory outside
/// the repository.
fn python_project(name: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().expect("a temporary directory");
    assert!(!root.path().starts_with(repo()), "the project is outside the repository");
    let (ok, out, err) = berth_in(root.path(), &["plugin", "new", name, "--lang", "python"]);
    assert!(ok, "berth plugin new:\n{out}\n{err}");
    let dir = root.path().join(name);
    (root, dir)
}

fn build(dir: &Path) {
    let (ok, out, err) = berth_in(dir.parent().expect("the root"), &["plugin", "build", &file_name(dir)]);
    let hint = "BERTH_COMPONENTIZE_PY names componentize-py; `bash .ci/install-tools` installs it at .ci/venv";
    assert!(ok, "berth plugin build ({hint}):\n{out}\n{err}");
}

fn file_name(path: &Path) -> String {
    path.file_name().expect("a name").to_string_lossy().into_owned()
}

#[test]
fn the_default_plus_your_own_policy_makes_both_changes_to_the_bookie() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("berth.yaml");
    std::fs::write(
        &config,
        "include: [builtin:default]\n\
         policies:\n\
         \x20 - name: team-toleration\n\
         \x20   plugin: builtin:tolerations\n\
         \x20   mode: mutate\n\
         \x20   match: {operations: [CREATE], resources: [pods]}\n\
         \x20   settings:\n\
         \x20     tolerations: [{key: team, operator: Equal, value: data, effect: NoSchedule}]\n",
    )
    .expect("writing berth.yaml");
    let bookie = seed("reviews/004-pod-pulsar-bookie-0.json").display().to_string();
    let context = seed("cluster.yaml").display().to_string();
    let cache = cache_dir().display().to_string();
    let apply = |config: Option<&Path>| {
        let mut args = vec!["eval".to_owned(), "--cache-dir".into(), cache.clone(), "--apply".into()];
        if let Some(config) = config {
            args.extend(["--config".to_owned(), config.display().to_string()]);
        }
        args.extend(["--context".to_owned(), context.clone(), bookie.clone()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = berth_in(dir.path(), &args);
        assert!(ok, "berth {args:?}:\n{out}\n{err}");
        serde_json::from_str::<Value>(&out).expect("the object, as JSON")
    };
    let default_only = apply(None);
    let with_ours = apply(Some(&config));
    // The default changed the bookie: its registry, pull secret, toleration.
    let original: Value = serde_json::from_slice::<Value>(&std::fs::read(&bookie).expect("the review")).expect("JSON")
        ["request"]["object"]
        .clone();
    assert_ne!(default_only, original);
    assert_eq!(default_only["spec"]["imagePullSecrets"], json!([{"name": "regsecret"}]));
    assert!(default_only["spec"]["containers"][0]["image"].as_str().is_some_and(|i| i.starts_with("harbor.example")));
    // Ours: all of that, and our toleration after the default's.
    let mut expected = default_only.clone();
    expected["spec"]["tolerations"]
        .as_array_mut()
        .expect("tolerations")
        .push(json!({"key": "team", "operator": "Equal", "value": "data", "effect": "NoSchedule"}));
    assert_eq!(with_ours, expected);

    // --diff lists the default's policies, then ours, in the order they ran.
    let args = ["eval", "--cache-dir", &cache, "--diff", "--config", "berth.yaml", "--context", &context, &bookie];
    let (ok, out, err) = berth_in(dir.path(), &args);
    assert!(ok, "{out}\n{err}");
    let ran: Vec<&str> = out
        .lines()
        .filter_map(|line| line.trim_start().split_once(". ").filter(|(n, _)| n.parse::<u32>().is_ok()))
        .map(|(_, rest)| rest.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(ran.last(), Some(&"team-toleration"), "{out}");
    assert!(ran.len() > 2 && ran[..ran.len() - 1].iter().all(|p| p.starts_with("pulsar-")), "{out}");
}

#[test]
fn config_default_prints_the_embedded_files_and_an_unknown_include_is_named() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ok, out, err) = berth_in(dir.path(), &["config", "default"]);
    assert!(ok, "{err}");
    for (path, text) in berth::config::DEFAULT_POLICY_FILES {
        assert!(out.contains(&format!("# {path}\n{text}")), "{path} in\n{out}");
    }
    let documents: Vec<berth::config::Config> = berth::yaml::documents(&out).expect("YAML documents");
    assert_eq!(documents.len(), berth::config::DEFAULT_POLICY_FILES.len());

    std::fs::write(dir.path().join("berth.yaml"), "include: [builtin:defualt]\npolicies: []\n").expect("writing");
    let bookie = seed("reviews/004-pod-pulsar-bookie-0.json").display().to_string();
    let (ok, _, err) = berth_in(dir.path(), &["eval", "--config", "berth.yaml", &bookie]);
    assert!(!ok);
    assert!(err.contains(r#"berth.yaml: include "builtin:defualt" is not a configuration berth embeds"#), "{err}");
    assert!(err.contains("builtin:default"), "{err}");
}

#[test]
fn berth_test_requires_the_build_and_that_the_policy_ran() {
    let (_root, dir) = python_project("ran");
    // Before the first build: the hint, not only "No such file".
    let (ok, out, _) = berth_in(dir.parent().expect("root"), &["test", "ran"]);
    assert!(!ok, "{out}");
    assert!(out.contains("build the plugin first: berth plugin build"), "{out}");

    build(&dir);
    let test_file = dir.join("tests/ran.test.yaml");
    let text = std::fs::read_to_string(&test_file).expect("the scaffold's test file");
    // The scaffold's own cases say which policy must run.
    assert!(text.contains("ran: [ran]") && text.contains("ran: []"), "{text}");
    let (ok, out, err) = berth_in(&dir, &["test"]);
    assert!(ok, "the scaffold passes its own cases:\n{out}\n{err}");

    // A case the match never sends to the plugin: `allowed: true` alone
    // passes; with `ran:` it fails, and says why.
    let case = "
  - name: a Secret never reaches the plugin
    object: {apiVersion: v1, kind: Secret, metadata: {name: s, namespace: demo}}
    expect:
      allowed: true
      patched: false
";
    std::fs::write(&test_file, format!("{text}{case}")).expect("writing");
    let (ok, out, err) = berth_in(&dir, &["test"]);
    assert!(ok, "without ran: it passes\n{out}\n{err}");
    let ran = case.replace("      allowed: true", "      ran: [ran]\n      allowed: true");
    std::fs::write(&test_file, format!("{text}{ran}")).expect("writing");
    let (ok, out, _) = berth_in(&dir, &["test"]);
    assert!(!ok, "{out}");
    assert!(out.contains("FAIL  a Secret never reaches the plugin"), "{out}");
    assert!(
        out.contains(
            r#"expected the policies ["ran"] to run, in this order; none ran: no mutate policy matched the request"#
        ),
        "{out}"
    );
    assert!(out.trim_end().ends_with(", 1 failed"), "{out}");
}

#[test]
fn a_python_bug_is_reported_once_with_its_file_and_line() {
    let (_root, dir) = python_project("buggy");
    let policy = dir.join("policy.py");
    let text = std::fs::read_to_string(&policy).expect("policy.py");
    // The new author's typo, on the path of every denial.
    let right = "problems.append(f\"{what} {quote(name)}";
    assert!(text.contains(right), "{text}");
    let text = text.replace(right, "problems.append(f\"{what} {qoute(name)}");
    std::fs::write(&policy, &text).expect("writing policy.py");
    let line = text.lines().position(|l| l.contains("qoute(name)")).expect("the typo") + 1;
    build(&dir);

    let (ok, out, err) = berth_in(&dir, &["test"]);
    assert!(!ok, "{out}\n{err}");
    let failure = "policy buggy failed (panic): NameError: name 'qoute' is not defined";
    assert!(out.contains(failure), "{out}");
    // Where: on the message's first line, and in the traceback.
    assert!(out.contains(&format!("policy.py, line {line}, in image_problems)")), "{out}");
    assert!(out.contains("Traceback (most recent call last):"), "{out}");
    assert!(out.contains(&format!("File \"policy.py\", line {line}, in image_problems")), "{out}");
    // The files as the project names them, not where the component keeps them.
    assert!(!out.contains("/0/"), "{out}");
    // The traceback once per case, though both its code and message are wrong.
    let case = out.split("FAIL  denies :latest").nth(1).and_then(|rest| rest.split("FAIL ").next()).unwrap_or_default();
    assert_eq!(case.matches("Traceback (most recent call last):").count(), 1, "{case}");
    // Said once: no "panicked: panic:".
    assert!(!out.contains("panicked") && !out.contains("panic: "), "{out}");
}

#[test]
fn a_user_error_has_no_rust_backtrace_even_with_rust_backtrace_set() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bookie = seed("reviews/004-pod-pulsar-bookie-0.json").display().to_string();
    let output = Command::new(binary())
        .current_dir(dir.path())
        .args(["eval", "--config", "missing.yaml", &bookie])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("berth runs");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        ["Error: reading missing.yaml: No such file or directory (os error 2)"]
    );
}

#[test]
fn a_reader_that_goes_away_ends_berth_quietly() {
    // `berth test --output json | head`: the reader is gone before berth
    // writes (the pipe's read end is closed at once).
    let file = repo().join("deploy/policies/default.test.yaml").display().to_string();
    let cache = cache_dir().display().to_string();
    let mut child = Command::new(binary())
        .args(["test", "--cache-dir", &cache, "--output", "json", &file])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("berth runs");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("berth ends");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{err}");
    assert_eq!(err, "");
}

#[test]
fn eval_over_several_reviews_names_each_file() {
    let reviews =
        ["reviews/004-pod-pulsar-bookie-0.json", "reviews/002-pvc-pulsar-bookie-journal-pulsar-bookie-0.json"]
            .map(|review| seed(review).display().to_string());
    let cache = cache_dir().display().to_string();
    let context = seed("cluster.yaml").display().to_string();
    let dir = repo();
    let args = ["eval", "--cache-dir", &cache, "--context", &context, &reviews[0], &reviews[1]];
    let (ok, out, err) = berth_in(&dir, &args);
    assert!(ok, "{err}");
    assert_eq!(err.lines().collect::<Vec<_>>(), [format!("== {}", reviews[0]), format!("== {}", reviews[1])]);
    // stdout stays a stream of JSON documents, one per review.
    let answers: Vec<Value> =
        serde_json::Deserializer::from_str(&out).into_iter().collect::<Result<_, _>>().expect("JSON");
    assert_eq!(answers.len(), 2);
}
