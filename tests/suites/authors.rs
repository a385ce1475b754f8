//! Policy authors: `berth plugin new`, `berth plugin build` and `berth test`
//! run as an author runs them, from a directory outside this repository,
//! in every language; the four builds of the sample policy agree; the
//! default policy passes its own test file, and a wrong expectation fails
//! it, saying where.
//!
//! The JavaScript, Python and Go toolchains are found where
//! `.ci/install-tools` installs them (or where `.ci/run`'s variables say);
//! without them those tests fail, saying so.

use berth_e2e::fixtures;
use berth_e2e::server::{Server, binary, cache_dir};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const LANGUAGES: [&str; 4] = ["rust", "js", "python", "go"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("the repository")
}

/// `berth ARGS` in `dir`, with the suites' artifact cache.
fn berth_in(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut command = Command::new(binary());
    command.current_dir(dir).args(args).env("BERTH_CACHE_DIR", cache_dir());
    // One target directory for every Rust scaffold the suites build, so
    // that their dependencies compile once.
    command.env("CARGO_TARGET_DIR", repo().join("target/scaffolds"));
    // Go's build cache and telemetry counters (under the user's config
    // directory) stay in the checkout too.
    command.env("GOCACHE", repo().join("target/go-build"));
    command.env("XDG_CONFIG_HOME", repo().join("target/xdg-config"));
    // The toolchains `.ci/install-tools` puts in the checkout, unless the
    // environment names others (`.ci/run` does, to the same ones).
    for (variable, path) in [
        ("BERTH_COMPONENTIZE_JS", ".ci/node/node_modules/.bin/componentize-js"),
        ("BERTH_COMPONENTIZE_PY", ".ci/venv/bin/componentize-py"),
        ("BERTH_GO", ".ci/venv/bin/go"),
        ("BERTH_JCO", ".ci/node/node_modules/@bytecodealliance/jco"),
    ] {
        if std::env::var_os(variable).is_none() && repo().join(path).exists() {
            command.env(variable, repo().join(path));
        }
    }
    let node = repo().join(".ci/node/bin");
    if node.is_dir() {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let paths = std::iter::once(node).chain(std::env::split_paths(&path));
        command.env("PATH", std::env::join_paths(paths).expect("PATH"));
    }
    let output = command.output().expect("berth runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

/// A project of each language, scaffolded and built once for the suite:
/// its directory and what `berth plugin build` printed, or why it failed.
fn built(language: &'static str) -> Result<&'static (PathBuf, String), String> {
    static PROJECTS: OnceLock<tempfile::TempDir> = OnceLock::new();
    static BUILT: [OnceLock<Result<(PathBuf, String), String>>; LANGUAGES.len()] =
        [const { OnceLock::new() }; LANGUAGES.len()];
    let root = PROJECTS.get_or_init(|| tempfile::tempdir().expect("a temporary directory")).path();
    assert!(!root.starts_with(repo()), "the projects are outside the repository");
    let index = LANGUAGES.iter().position(|l| *l == language).expect("a language");
    BUILT[index]
        .get_or_init(|| {
            let name = format!("demo-{language}");
            let (ok, out, err) = berth_in(root, &["plugin", "new", &name, "--lang", language]);
            if !ok {
                return Err(format!("berth plugin new {name}: {out}{err}"));
            }
            let (ok, out, err) = berth_in(root, &["plugin", "build", &name]);
            if !ok {
                let hint = "the suite uses the toolchains `bash .ci/install-tools` installs";
                return Err(format!("berth plugin build {name} ({hint}):\n{out}\n{err}"));
            }
            Ok((root.join(&name), out))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// new → build → test, for one language, as the README says.
fn scaffold_builds_and_passes_its_tests(language: &'static str) {
    let (dir, printed) = built(language).unwrap_or_else(|why| panic!("{why}"));
    let name = format!("demo-{language}");
    // What build prints: the file, its size and digest, and the pinned entry.
    let wasm = std::fs::read(dir.join(format!("{name}.wasm"))).expect("the component");
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
    assert!(printed.contains(&format!("size    {} bytes", wasm.len())), "{printed}");
    assert!(printed.contains(&format!("sha256: {sha256}")), "the pinned policies: entry\n{printed}");
    assert!(printed.contains(&format!("plugin: {name}.wasm")), "{printed}");

    let (ok, out, err) = berth_in(dir.parent().expect("the projects' root"), &["test", &name]);
    assert!(ok, "berth test {name}:\n{out}\n{err}");
    let cases = case_count(&dir.join(format!("tests/{name}.test.yaml")));
    assert!(out.contains(&format!("berth test: {cases} passed, 0 failed")), "{out}");
}

#[test]
fn a_rust_plugin_is_scaffolded_built_and_tested_outside_the_repository() {
    scaffold_builds_and_passes_its_tests("rust");
}

#[test]
fn a_javascript_plugin_is_scaffolded_built_and_tested_outside_the_repository() {
    scaffold_builds_and_passes_its_tests("js");
}

#[test]
fn a_python_plugin_is_scaffolded_built_and_tested_outside_the_repository() {
    scaffold_builds_and_passes_its_tests("python");
}

#[test]
fn a_go_plugin_is_scaffolded_built_and_tested_outside_the_repository() {
    scaffold_builds_and_passes_its_tests("go");
}

/// Every review under tests/fixtures, and variants of each Pod's that the
/// sample policy must deny or warn about: an image tagged `:latest`, an
/// init container's image with neither tag nor digest, the label already
/// there with another value.
fn agreement_reviews(dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for fixture in fixtures::all() {
        paths.push(fixture.path.clone());
        let review = &fixture.review;
        if review["request"]["kind"]["kind"] != "Pod" || review["request"]["object"].is_null() {
            continue;
        }
        let stem = fixture.path.file_stem().expect("a name").to_string_lossy().into_owned();
        let set = fixture.path.parent().and_then(Path::parent).and_then(Path::file_name).expect("a set");
        let mut variants = Vec::new();
        let mut latest = review.clone();
        if let Some(image) = latest["request"]["object"]["spec"]["containers"][0]["image"].as_str() {
            let repository = image.split(['@']).next().unwrap_or(image);
            let repository = match repository.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => repo.to_owned(),
                _ => repository.to_owned(),
            };
            latest["request"]["object"]["spec"]["containers"][0]["image"] = json!(format!("{repository}:latest"));
            variants.push(("latest", latest));
        }
        let mut untagged = review.clone();
        untagged["request"]["object"]["spec"]["initContainers"] = json!([{"name": "setup", "image": "busybox"}]);
        variants.push(("untagged", untagged));
        let mut relabelled = review.clone();
        relabelled["request"]["object"]["metadata"]["labels"]["example.com/checked"] = json!("no");
        variants.push(("relabelled", relabelled));
        let mut unlabelled = review.clone();
        unlabelled["request"]["object"]["metadata"]["labels"] = Value::Null;
        variants.push(("unlabelled", unlabelled));
        // kubectl debug: an UPDATE of pods/ephemeralcontainers that brings
        // an untagged image, and one that brings a tagged one.
        for (what, image) in [("debug-untagged", "busybox"), ("debug-tagged", "busybox:1.36")] {
            let mut debug = review.clone();
            let request = &mut debug["request"];
            request["operation"] = json!("UPDATE");
            request["subResource"] = json!("ephemeralcontainers");
            request["oldObject"] = request["object"].clone();
            request["object"]["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": image}]);
            variants.push((what, debug));
        }
        // An UPDATE without its oldObject: a policy error in every language.
        let mut orphan = review.clone();
        orphan["request"]["operation"] = json!("UPDATE");
        orphan["request"]["oldObject"] = Value::Null;
        variants.push(("no-old-object", orphan));
        for (what, variant) in variants {
            let path = dir.join(format!("{}-{stem}-{what}.json", set.to_string_lossy()));
            std::fs::write(&path, variant.to_string()).expect("writing a review");
            paths.push(path);
        }
    }
    paths
}

/// Each review's answer, as one language's build gives it: allowed, the
/// status, the patch decoded, the warnings; the policy's name (which
/// differs by project) made the same.
fn answers(language: &'static str, reviews: &[PathBuf]) -> Vec<Value> {
    let (dir, _) = built(language).unwrap_or_else(|why| panic!("{why}"));
    let config = dir.join("berth.yaml").display().to_string();
    let mut args = vec!["eval".to_owned(), "--config".to_owned(), config];
    args.extend(reviews.iter().map(|path| path.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = berth_in(dir, &args);
    assert!(ok, "berth eval with the {language} build: {err}");
    let out = out.replace(&format!("demo-{language}"), "POLICY");
    serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .map(|answer| {
            let response = &answer.expect("an AdmissionReview")["response"];
            let patch = response["patch"].as_str().map(|patch| {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD.decode(patch).expect("base64");
                serde_json::from_slice::<Value>(&bytes).expect("a JSON patch")
            });
            json!({
                "allowed": response["allowed"],
                "status": response["status"],
                "patch": patch,
                "warnings": response["warnings"],
            })
        })
        .collect()
}

#[test]
fn the_sample_policy_in_rust_javascript_python_and_go_agrees_on_every_fixture() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let reviews = agreement_reviews(dir.path());
    let rust = answers("rust", &reviews);
    assert_eq!(rust.len(), reviews.len());
    // The comparison means something only if every kind of verdict is in it.
    let denied = rust.iter().filter(|a| a["allowed"] == false).count();
    let patched = rust.iter().filter(|a| !a["patch"].is_null()).count();
    let warned = rust.iter().filter(|a| a["warnings"].as_array().is_some_and(|w| !w.is_empty())).count();
    let unchanged = rust.iter().filter(|a| a["allowed"] == true && a["patch"].is_null()).count();
    let failed = rust.iter().filter(|a| a["status"]["code"] == 500).count();
    assert!(
        denied > 0 && patched > 0 && warned > 0 && unchanged > 0 && failed > 0,
        "{denied} {patched} {warned} {unchanged} {failed}"
    );
    for language in ["js", "python", "go"] {
        let theirs = answers(language, &reviews);
        assert_eq!(theirs.len(), reviews.len(), "{language}");
        for ((review, ours), theirs) in reviews.iter().zip(&rust).zip(&theirs) {
            assert_eq!(ours, theirs, "{language} differs from rust on {}", review.display());
        }
    }
}

/// The cases a test file declares.
fn case_count(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).expect("the test file");
    let file: Value = berth::yaml::from_str(&text).expect("YAML");
    file["cases"].as_array().map_or(0, Vec::len)
}

#[test]
fn the_default_policy_passes_its_test_file() {
    let file = repo().join("deploy/policies/default.test.yaml");
    let (ok, out, err) = berth_in(&repo(), &["test", "deploy/policies"]);
    assert!(ok, "{out}\n{err}");
    let cases = case_count(&file);
    assert!(cases >= 15, "{cases}");
    assert!(out.contains(&format!("berth test: {cases} passed, 0 failed")), "{out}");
}

/// A test file in a temporary directory, on the default policy, with
/// absolute paths into the repository.
fn write_test_file(dir: &Path, body: &str) -> PathBuf {
    let policies = repo().join("deploy/policies");
    let head = format!(
        "config: [{p}/pulsar.yaml, {p}/kafka.yaml]\ncluster: {f}/seed-pulsar-2.7.7/cluster.yaml\n",
        p = policies.display(),
        f = repo().join("tests/fixtures").display()
    );
    let path = dir.join("default.test.yaml");
    std::fs::write(&path, head + body).expect("writing the test file");
    path
}

#[test]
fn a_wrong_expectation_fails_naming_the_case_and_the_difference() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let bookie = repo().join("tests/fixtures/seed-pulsar-2.7.7/reviews/004-pod-pulsar-bookie-0.json");
    let body = format!(
        r#"cases:
  - name: right
    review: {bookie}
    expect:
      values: {{/spec/imagePullSecrets: [{{name: regsecret}}]}}
  - name: the bookie is pinned to pulsar nodes (it is not)
    review: {bookie}
    expect:
      allowed: true
      values:
        /spec/nodeSelector: {{node-role.kubernetes.io/pulsar: pulsar}}
        /spec/containers/0/image: docker.io/apachepulsar/pulsar-all:2.7.4
"#,
        bookie = bookie.display()
    );
    let file = write_test_file(dir.path(), &body);
    let (ok, out, _) = berth_in(dir.path(), &["test", &file.display().to_string()]);
    assert!(!ok, "a failing case fails the run\n{out}");
    assert!(out.contains("ok    right"), "{out}");
    assert!(out.contains("FAIL  the bookie is pinned to pulsar nodes (it is not)"), "{out}");
    assert!(
        out.contains(
            r#"at /spec/nodeSelector: expected {"node-role.kubernetes.io/pulsar":"pulsar"}, but nothing is there"#
        ),
        "{out}"
    );
    assert!(
        out.contains(r#"at /spec/containers/0/image: expected "docker.io/apachepulsar/pulsar-all:2.7.4", got "harbor.example.com/library/apachepulsar/pulsar-all:2.7.4""#),
        "{out}"
    );
    assert!(out.trim_end().ends_with("berth test: 1 passed, 1 failed"), "{out}");

    // The same for CI, as JSON.
    let (ok, out, _) = berth_in(dir.path(), &["test", "--output", "json", &file.display().to_string()]);
    assert!(!ok);
    let report: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!((report["passed"].as_u64(), report["failed"].as_u64()), (Some(1), Some(1)), "{report}");
    let case = &report["files"][0]["cases"][1];
    assert_eq!(case["passed"], false);
    assert_eq!(case["failures"].as_array().map(Vec::len), Some(2), "{case}");
}

#[test]
fn a_whole_object_that_differs_is_shown_as_a_diff() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let body = r#"cases:
  - name: a claim with no class
    object:
      apiVersion: v1
      kind: PersistentVolumeClaim
      metadata: {name: data, namespace: pulsar, labels: {app: pulsar}}
      spec: {accessModes: [ReadWriteOnce]}
    expect:
      object:
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {name: data, namespace: pulsar, labels: {app: pulsar}}
        spec: {accessModes: [ReadWriteOnce], storageClassName: fast}
"#;
    let file = write_test_file(dir.path(), body);
    let (ok, out, _) = berth_in(dir.path(), &["test", &file.display().to_string()]);
    assert!(!ok, "{out}");
    assert!(out.contains("--- expected") && out.contains("+++ got"), "{out}");
    assert!(out.contains("-  storageClassName: fast") && out.contains("+  storageClassName: local-storage"), "{out}");
}

#[test]
fn a_test_that_cannot_check_anything_fails_and_says_why() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let run = |body: &str| {
        let file = write_test_file(dir.path(), body);
        let (ok, out, err) = berth_in(dir.path(), &["test", &file.display().to_string()]);
        assert!(!ok, "must fail:\n{body}\n{out}");
        out + &err
    };
    let out = run("cases: []\n");
    assert!(out.contains("has no cases"), "{out}");
    let out = run("cases:\n  - name: typo\n    review: r.json\n    expct: {allowed: true}\n");
    assert!(out.contains("FAIL  typo") && out.contains("the case at line 4: unknown field `expct`"), "{out}");
    let out = run("cases:\n  - name: nothing checked\n    review: r.json\n    expect: {}\n");
    assert!(
        out.contains("FAIL  nothing checked") && out.contains("the case at line 4: expect checks nothing"),
        "{out}"
    );
    let out = run("cases:\n  - name: gone\n    review: missing.json\n    expect: {allowed: true}\n");
    assert!(out.contains("FAIL  gone") && out.contains("missing.json"), "{out}");
    let bookie = repo().join("tests/fixtures/seed-pulsar-2.7.7/reviews/004-pod-pulsar-bookie-0.json");
    let out = run(&format!(
        "cases:\n  - name: no slash\n    review: {}\n    expect: {{values: {{spec/nodeName: x}}}}\n",
        bookie.display()
    ));
    assert!(out.contains("\"spec/nodeName\" is not a JSON Pointer"), "{out}");
    // Nothing is found at a malformed pointer: that must not pass for absent.
    let out = run(&format!(
        "cases:\n  - name: absent, no slash\n    review: {}\n    expect: {{absent: [spec/nodeSelector]}}\n",
        bookie.display()
    ));
    assert!(out.contains("\"spec/nodeSelector\" is not a JSON Pointer"), "{out}");
    // A directory without test files is an error, not an empty success.
    let empty = tempfile::tempdir().expect("a temporary directory");
    let (ok, out, err) = berth_in(empty.path(), &["test", "."]);
    assert!(!ok && err.contains("no test files"), "{out}{err}");
}

#[test]
fn eval_diff_shows_each_policy_and_the_change_on_the_seed_bookie() {
    let seed = repo().join("tests/fixtures/seed-pulsar-2.7.7");
    let bookie = seed.join("reviews/004-pod-pulsar-bookie-0.json").display().to_string();
    let context = seed.join("cluster.yaml").display().to_string();
    let cache = cache_dir().display().to_string();
    let (status, out, err) = Server::cli(&["eval", "--cache-dir", &cache, "--diff", "--context", &context, &bookie]);
    assert!(status.success(), "{err}");
    let order: Vec<usize> = ["1. pulsar-tolerations", "2. pulsar-pull-secrets", "3. pulsar-registry"]
        .iter()
        .map(|line| out.find(line).unwrap_or_else(|| panic!("{line} in\n{out}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
    for line in [
        r#"add /spec/tolerations/- {"effect":"NoSchedule","key":"dedicated","operator":"Equal","value":"pulsar"}"#,
        r#"add /spec/imagePullSecrets [{"name":"regsecret"}]"#,
        r#"replace /spec/containers/0/image "harbor.example.com/library/apachepulsar/pulsar-all:2.7.4""#,
        "did not match: pulsar-node-placement, pulsar-storage-class",
        "answer: allowed, with a patch of 4 op(s)",
        "--- pulsar/pulsar-bookie-0 (as sent)",
        "-    image: apachepulsar/pulsar-all:2.7.4",
        "+    image: harbor.example.com/library/apachepulsar/pulsar-all:2.7.4",
        "+  - name: regsecret",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }
}

/// Run an SDK's own unit tests natively in `plugins/<sdk>`: `program` is the
/// toolchain's path, `what` how to get it when it is missing. Returns
/// stdout and stderr together, after asserting success.
fn sdk_unit_tests(sdk: &str, program: &Path, args: &[&str], envs: &[(&str, PathBuf)], what: &str) -> String {
    let dir = repo().join("plugins").join(sdk);
    let mut command = Command::new(program);
    command.current_dir(&dir).args(args);
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{} for {sdk}'s unit tests: {error} ({what})", program.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{} {args:?} in {}:\n{text}", program.display(), dir.display());
    text
}

/// A toolchain `.ci/install-tools` puts in the checkout, or a variable's.
fn ci_tool(variable: Option<&str>, path: &str) -> PathBuf {
    variable.and_then(std::env::var_os).map(PathBuf::from).unwrap_or_else(|| repo().join(path))
}

const INSTALL: &str = "`bash .ci/install-tools` installs it into the checkout";

#[test]
fn the_javascript_sdk_passes_its_unit_tests() {
    let node = repo().join(".ci/node/bin/node");
    let node = if node.exists() { node } else { PathBuf::from("node") };
    let args = ["--import", "./test/register.mjs", "--test", "test/berth-sdk.test.mjs"];
    let out = sdk_unit_tests("sdk-js", &node, &args, &[], &format!("Node.js 20.12 or newer on PATH; {INSTALL}"));
    let count = |label: &str| out.lines().find_map(|line| line.strip_prefix(label)?.trim().parse::<usize>().ok());
    assert!(count("# pass ").is_some_and(|n| n > 0) && count("# fail ") == Some(0), "{out}");
}

#[test]
fn the_python_sdk_passes_its_unit_tests() {
    let python = ci_tool(None, ".ci/venv/bin/python3");
    // -B: no __pycache__ written into the checkout.
    let out = sdk_unit_tests("sdk-python", &python, &["-B", "-m", "unittest", "-v"], &[], INSTALL);
    let ran = out.lines().find_map(|line| line.strip_prefix("Ran ")?.split(' ').next()?.parse::<usize>().ok());
    assert!(ran.is_some_and(|n| n > 0) && out.trim_end().ends_with("OK"), "{out}");
}

#[test]
fn the_go_sdk_passes_its_unit_tests() {
    let go = ci_tool(Some("BERTH_GO"), ".ci/venv/bin/go");
    let envs = [
        ("GOCACHE", repo().join("target/go-build")),
        ("XDG_CONFIG_HOME", repo().join("target/xdg-config")),
        ("GOFLAGS", PathBuf::from("-mod=mod")),
        ("GOPROXY", PathBuf::from("off")),
        ("GOTOOLCHAIN", PathBuf::from("local")),
    ];
    let out =
        sdk_unit_tests("sdk-go", &go, &["test", "-count=1", "-v", "."], &envs, &format!("Go 1.24 or newer; {INSTALL}"));
    assert!(
        out.contains("--- PASS: TestNamesAsTheRustSDK") && !out.contains("--- FAIL") && out.contains("ok  \tberth-sdk"),
        "{out}"
    );
}
