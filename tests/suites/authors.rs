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

/// A new author's machine: a home of their own (so that Go's, npm's and
/// berth's caches start empty, and stay out of the checkout), the Rust
/// toolchain rustup installed, `berth` and Node.js on PATH, and the
/// toolchain variables the authors' guide documents. Nothing else: no
/// CARGO_TARGET_DIR, no cache shared with the other suites.
struct Author {
    home: tempfile::TempDir,
    bin: tempfile::TempDir,
}

fn author() -> &'static Author {
    static AUTHOR: OnceLock<Author> = OnceLock::new();
    AUTHOR.get_or_init(|| {
        let home = tempfile::tempdir().expect("a home");
        let bin = tempfile::tempdir().expect("a bin directory");
        std::os::unix::fs::symlink(binary(), bin.path().join("berth")).expect("berth on PATH");
        Author { home, bin }
    })
}

impl Author {
    /// `sh -c SCRIPT` in `dir`, as this author: success, stdout, stderr.
    fn run(&self, dir: &Path, script: &str) -> (bool, String, String) {
        assert!(!dir.starts_with(repo()), "authors work outside the repository");
        let mut command = Command::new("sh");
        command.current_dir(dir).args(["-c", script]).env_clear();
        let real_home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        command.env("HOME", self.home.path());
        // Where rustup put Rust: the author's own, not a fresh home's.
        for (variable, default) in [("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")] {
            command.env(variable, std::env::var_os(variable).map_or_else(|| real_home.join(default), PathBuf::from));
        }
        if let Some(tmp) = std::env::var_os("TMPDIR") {
            command.env("TMPDIR", tmp);
        }
        // The toolchains `.ci/install-tools` puts in the checkout, named by
        // the variables the guide tells authors to set (`.ci/run` sets them
        // to the same paths).
        for (variable, path) in [
            ("BERTH_COMPONENTIZE_JS", ".ci/node/node_modules/.bin/componentize-js"),
            ("BERTH_COMPONENTIZE_PY", ".ci/venv/bin/componentize-py"),
            ("BERTH_GO", ".ci/venv/bin/go"),
            ("BERTH_JCO", ".ci/node/node_modules/@bytecodealliance/jco"),
        ] {
            let value = std::env::var_os(variable).map(PathBuf::from).unwrap_or_else(|| repo().join(path));
            if value.exists() {
                command.env(variable, value);
            }
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let node = repo().join(".ci/node/bin");
        let first = std::iter::once(self.bin.path().to_owned()).chain(node.is_dir().then_some(node));
        command.env("PATH", std::env::join_paths(first.chain(std::env::split_paths(&path))).expect("PATH"));
        let output = command.output().expect("sh runs");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.success(), text(&output.stdout), text(&output.stderr))
    }
}

/// `berth ARGS` in `dir`, as the author.
fn berth_in(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let quoted: Vec<String> = args.iter().map(|arg| format!("'{}'", arg.replace('\'', r"'\''"))).collect();
    author().run(dir, &format!("berth {}", quoted.join(" ")))
}

/// The README's commands for a language, exactly, in a fresh directory.
const README: &str = "berth plugin new demo --lang {L} && berth plugin build demo && berth test demo";

/// A project of each language, made with the README's commands once for
/// the suite in a directory of its own: the project's directory and what
/// the commands printed, or why they failed.
fn built(language: &'static str) -> Result<&'static (PathBuf, String), String> {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    static BUILT: [OnceLock<Result<(PathBuf, String), String>>; LANGUAGES.len()] =
        [const { OnceLock::new() }; LANGUAGES.len()];
    let root = ROOT.get_or_init(|| tempfile::tempdir().expect("a temporary directory")).path();
    let index = LANGUAGES.iter().position(|l| *l == language).expect("a language");
    BUILT[index]
        .get_or_init(|| {
            let dir = root.join(language);
            std::fs::create_dir(&dir).expect("a directory for the language");
            let script = README.replace("{L}", language);
            let (ok, out, err) = author().run(&dir, &script);
            if !ok {
                let hint = "the suite uses the toolchains `bash .ci/install-tools` installs";
                return Err(format!("{script} ({hint}):\n{out}\n{err}"));
            }
            Ok((dir.join("demo"), out))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// new → build → test, for one language, as the README says.
fn scaffold_builds_and_passes_its_tests(language: &'static str) {
    let (dir, printed) = built(language).unwrap_or_else(|why| panic!("{why}"));
    // What build prints: the file, its size and digest, and the pinned entry.
    let wasm = std::fs::read(dir.join("demo.wasm")).expect("the component");
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
    assert!(printed.contains(&format!("size    {} bytes", wasm.len())), "{printed}");
    assert!(printed.contains(&format!("sha256: {sha256}")), "the pinned policies: entry\n{printed}");
    assert!(printed.contains("plugin: demo.wasm"), "{printed}");
    // What test prints.
    let cases = case_count(&dir.join("tests/demo.test.yaml"));
    assert!(printed.contains(&format!("berth test: {cases} passed, 0 failed")), "{printed}");
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

/// The sha256 of a project's component, as `berth plugin build` wrote it.
fn component_sha256(project: &Path) -> String {
    let wasm = std::fs::read(project.join("demo.wasm")).expect("the component");
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm))
}

/// The scaffold of `language` built as the README says, once more, in
/// another fresh directory: that directory (kept while the caller uses the
/// project) and the first build's project and this one's.
fn build_again(language: &'static str) -> (tempfile::TempDir, &'static Path, PathBuf) {
    let (first, _) = built(language).unwrap_or_else(|why| panic!("{why}"));
    let other = tempfile::tempdir().expect("a temporary directory");
    let script = format!("berth plugin new demo --lang {language} && berth plugin build demo");
    let (ok, out, err) = author().run(other.path(), &script);
    assert!(ok, "{script}:\n{out}\n{err}");
    let again = other.path().join("demo");
    assert_ne!(first.parent(), again.parent());
    (other, first, again)
}

/// The same source and toolchains give the same bytes, in any directory
/// (plugins/README.md, Reproducible builds, says which toolchains do).
fn builds_reproducibly(language: &'static str) {
    let (_other, first, again) = build_again(language);
    let sha256 = component_sha256(first);
    println!("{language}: sha256 {sha256} in {} and in {}", first.display(), again.display());
    assert_eq!(
        sha256,
        component_sha256(&again),
        "{language}: two builds of the same source differ ({} and {})",
        first.display(),
        again.display()
    );
}

/// A section of a component, or of a core module inside it, in the order
/// the binary has them: its core module's ordinal (`None` for the
/// component's own sections), its id and its contents.
#[derive(Debug)]
struct Section<'a> {
    module: Option<usize>,
    id: u8,
    body: &'a [u8],
}

/// Every section of `wasm`, nested core modules' and components' included.
fn sections(wasm: &[u8]) -> Vec<Section<'_>> {
    fn uleb(bytes: &[u8]) -> (usize, usize) {
        let mut value = 0;
        for (at, byte) in bytes.iter().enumerate().take(5) {
            value |= usize::from(byte & 0x7f) << (7 * at);
            if byte & 0x80 == 0 {
                return (value, at + 1);
            }
        }
        panic!("a malformed LEB128 size");
    }
    fn walk<'a>(wasm: &'a [u8], module: Option<usize>, modules: &mut usize, out: &mut Vec<Section<'a>>) {
        assert!(wasm.len() >= 8 && wasm.starts_with(b"\0asm"), "not WebAssembly");
        // The layer: 1 for a component, 0 for a core module.
        let component = wasm[6..8] == [1, 0];
        let mut at = 8;
        while at < wasm.len() {
            let id = wasm[at];
            let (size, read) = uleb(&wasm[at + 1..]);
            let body = &wasm[at + 1 + read..at + 1 + read + size];
            at += 1 + read + size;
            match (component, id) {
                // A core module, or a nested component: walked into.
                (true, 1) => {
                    *modules += 1;
                    walk(body, Some(*modules - 1), modules, out);
                }
                (true, 4) => walk(body, None, modules, out),
                _ => out.push(Section { module, id, body }),
            }
        }
    }
    let mut out = Vec::new();
    walk(wasm, None, &mut 0, &mut out);
    out
}

/// Not reproducible, for the reason plugins/README.md gives: the toolchain
/// pre-initializes its interpreter and ships the heap it leaves, which
/// depends on randomness the toolchain draws. So two builds of the same
/// source, in two directories, may differ only there: in core modules'
/// data (the heap snapshot), data count and globals (addresses into it).
/// Every other section, the code included, is the same.
fn builds_differ_only_in_the_heap_snapshot(language: &'static str) {
    let (_other, first, again) = build_again(language);
    let one = std::fs::read(first.join("demo.wasm")).expect("the component");
    let two = std::fs::read(again.join("demo.wasm")).expect("the component");
    let (a, b) = (sections(&one), sections(&two));
    assert_eq!(a.len(), b.len(), "{language}: the two builds have different sections");
    let mut differing = Vec::new();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.module, x.id), (y.module, y.id), "{language}: the two builds' sections are in another order");
        if x.body != y.body {
            differing.push(format!(
                "core module {:?} section {} ({} and {} bytes)",
                x.module,
                x.id,
                x.body.len(),
                y.body.len()
            ));
            // Global (6), data (11), data count (12), in a core module.
            assert!(
                x.module.is_some() && matches!(x.id, 6 | 11 | 12),
                "{language}: a section other than the heap snapshot differs: {}",
                differing.last().expect("just pushed")
            );
        }
    }
    println!(
        "{language}: sha256 {} ({} bytes) and {} ({} bytes); differing: {differing:?}",
        component_sha256(first),
        one.len(),
        component_sha256(&again),
        two.len()
    );
}

#[test]
fn a_rust_plugin_builds_to_the_same_bytes_in_another_directory() {
    builds_reproducibly("rust");
}

#[test]
fn a_go_plugin_builds_to_the_same_bytes_in_another_directory() {
    builds_reproducibly("go");
}

#[test]
fn javascript_builds_differ_only_in_the_pre_initialized_heap() {
    builds_differ_only_in_the_heap_snapshot("js");
}

#[test]
fn python_builds_differ_only_in_the_pre_initialized_heap() {
    builds_differ_only_in_the_heap_snapshot("python");
}

#[test]
fn build_with_pin_updates_the_pin_in_place_and_the_policy_loads() {
    let (project, _) = built("go").unwrap_or_else(|why| panic!("{why}"));
    // A copy of the project, whose berth.yaml pins a build that is gone.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let copy = dir.path().join("demo");
    copy_dir(project, &copy);
    let config = copy.join("berth.yaml");
    let stale = "0".repeat(64);
    let text = std::fs::read_to_string(&config).expect("berth.yaml");
    let text = text.replace("    plugin: demo.wasm\n", &format!("    plugin: demo.wasm\n    sha256: {stale}\n"));
    std::fs::write(&config, &text).expect("berth.yaml");
    let (ok, out, err) = author().run(dir.path(), "berth test demo");
    assert!(!ok && (out.clone() + &err).contains(&stale), "the stale pin is refused:\n{out}\n{err}");

    let (ok, out, err) = author().run(dir.path(), "berth plugin build demo --pin demo/berth.yaml");
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("pinned 1 policy in demo/berth.yaml"), "{out}");
    let pinned = std::fs::read_to_string(&config).expect("berth.yaml");
    let sha256 = component_sha256(&copy);
    assert_eq!(pinned, text.replace(&stale, &sha256), "only the pin changed, the comments stayed");
    let (ok, out, err) = author().run(dir.path(), "berth test demo");
    assert!(ok, "{out}\n{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("a directory");
    for entry in std::fs::read_dir(from).expect("a directory") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("a copy");
        }
    }
}

/// `wasm` with a custom section added: another component, to wasmtime and
/// to the cache, that does what `wasm` does.
fn with_custom_section(wasm: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = wasm.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend(body);
    out
}

#[test]
fn ten_hot_reloads_of_a_changed_javascript_policy_keep_the_compile_cache_under_its_limit() {
    let (project, _) = built("js").unwrap_or_else(|why| panic!("{why}"));
    let wasm = std::fs::read(project.join("demo.wasm")).expect("the component");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cache = dir.path().join("cache");
    let config = dir.path().join("berth.yaml");
    let project_config = std::fs::read_to_string(project.join("berth.yaml")).expect("berth.yaml");
    // Each revision is the built component with its revision number in a
    // custom section: new bytes, so a new compile and a new cache entry of
    // the size a rebuilt policy has, without ten runs of componentize-js
    // (which would give new bytes for the same source anyway: plugins/README.md,
    // Reproducible builds).
    let install = |revision: usize| {
        let wasm = with_custom_section(&wasm, "berth-test-revision", revision.to_string().as_bytes());
        let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
        let name = format!("demo-{revision}.wasm");
        std::fs::write(dir.path().join(&name), &wasm).expect("the component");
        let text = project_config.replace("plugin: demo.wasm", &format!("plugin: {name}\n    sha256: {sha256}"));
        std::fs::write(dir.path().join("berth.yaml.tmp"), text).expect("berth.yaml");
        std::fs::rename(dir.path().join("berth.yaml.tmp"), &config).expect("berth.yaml");
    };
    install(0);
    // berth's default limit: the chart's cache volume.
    let limit: u64 = 256 << 20;
    // Compiling a JavaScript component takes tens of seconds of CPU (35 s
    // here, in the suites' build), beyond what `spawn` waits for: the first
    // load, as each reload, gets as long as it needs.
    let patience = std::time::Duration::from_secs(180);
    let server = Server::builder().config(&config).cache_dir(cache.clone()).spawn_listening();
    server.wait_for_log("ready", patience);
    let entry = std::fs::metadata(
        std::fs::read_dir(&cache).expect("the cache").next().expect("an entry").expect("an entry").path(),
    )
    .expect("an entry")
    .len();
    assert!(entry * 10 > limit, "ten entries of {entry} bytes must not fit, or this test shows nothing");
    let reloaded =
        |server: &Server| server.logs().iter().filter(|e| e["fields"]["message"] == "configuration reloaded").count();
    let mut largest = 0;
    for revision in 1..=10 {
        install(revision);
        let deadline = std::time::Instant::now() + patience;
        while reloaded(&server) < revision {
            assert!(std::time::Instant::now() < deadline, "reload {revision} did not happen: {:#?}", server.logs());
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let used = berth::runtime::cache_dir_usage(&cache).expect("the cache's size");
        largest = largest.max(used);
        assert!(used <= limit, "after reload {revision} the cache holds {used} bytes, over its {limit}");
    }
    // The cache still does its work: it holds as many revisions as fit.
    let entries = std::fs::read_dir(&cache).expect("the cache").count() as u64;
    assert!(entries >= 2 && entries <= limit / entry, "{entries} entries of {entry} bytes under {limit}");
    println!("cache after 10 reloads: {largest} bytes at most, {entries} entries of {entry} bytes, limit {limit}");
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
    let elsewhere = tempfile::tempdir().expect("a temporary directory");
    let policies = repo().join("deploy/policies").display().to_string();
    let (ok, out, err) = berth_in(elsewhere.path(), &["test", &policies]);
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
