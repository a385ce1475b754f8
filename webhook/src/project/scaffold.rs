//! `berth plugin new`: a plugin project that builds with nothing but berth
//! and the language's own toolchain. The project is the sample policy of
//! `plugins/examples/<language>` under the author's name, with what it needs
//! copied in: the WIT, the language's SDK, and a test file with a real
//! fixture review (`plugins/examples/common`).

use super::{Language, check_name};
use std::path::{Path, PathBuf};
use thiserror::Error;

// `FILES`: every template file, embedded by build.rs.
include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// The name the templates are written under; `berth plugin new` replaces it
/// in file names and text, in each of its spellings.
const TEMPLATE_NAME: [&str; 3] = ["sample-policy", "sample_policy", "SamplePolicy"];

#[derive(Debug, Error)]
pub enum ScaffoldError {
    #[error("project name {name:?} {why}")]
    Name { name: String, why: &'static str },
    #[error("{0} exists and is not empty; choose another --dir")]
    NotEmpty(PathBuf),
    #[error("this berth was built without the {0} template")]
    NoTemplate(&'static str),
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
}

/// The text of an embedded file; empty if berth was built without it.
pub(super) fn text(set: &str, path: &str) -> &'static str {
    FILES
        .iter()
        .find(|(s, p, _)| *s == set && *p == path)
        .and_then(|(_, _, bytes)| std::str::from_utf8(bytes).ok())
        .unwrap_or_default()
}

fn files(set: &str) -> impl Iterator<Item = (&'static str, &'static [u8])> {
    FILES.iter().filter(move |(s, _, _)| *s == set).map(|(_, path, bytes)| (*path, *bytes))
}

/// Write a new project named `name` into `dir`; returns the files written.
pub fn scaffold(name: &str, language: Language, dir: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    check_name(name).map_err(|why| ScaffoldError::Name { name: name.to_owned(), why })?;
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ScaffoldError::NotEmpty(dir.to_owned()));
    }
    let template = format!("examples/{}", language.as_str());
    if files(&template).next().is_none() {
        return Err(ScaffoldError::NoTemplate(language.as_str()));
    }
    let names = [name.to_owned(), name.replace('-', "_"), camel_case(name)];
    let rename =
        |text: &str| TEMPLATE_NAME.iter().zip(&names).fold(text.to_owned(), |text, (from, to)| text.replace(from, to));

    let mut plan: Vec<(String, Vec<u8>)> = Vec::new();
    for (path, bytes) in files("examples/common").chain(files(&template)) {
        let bytes = match std::str::from_utf8(bytes) {
            Ok(text) => rename(text).into_bytes(),
            Err(_) => bytes.to_vec(),
        };
        plan.push((rename(path), bytes));
    }
    plan.extend(files("wit").map(|(path, bytes)| (format!("wit/{path}"), bytes.to_vec())));
    match language {
        Language::Rust => {
            plan.extend(files("sdk/src").map(|(path, bytes)| (format!("berth-sdk/src/{path}"), bytes.to_vec())));
            plan.push(("berth-sdk/Cargo.toml".to_owned(), rust_sdk_manifest().into_bytes()));
        }
        Language::Js => plan.extend(sdk_files("sdk-js")),
        Language::Python => plan.extend(sdk_files("sdk-python")),
        Language::Go => plan.extend(sdk_files("sdk-go")),
    }

    let mut written = Vec::new();
    for (path, bytes) in plan {
        let path = dir.join(path);
        let write = |error| ScaffoldError::Write { path: path.clone(), error };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write)?;
        }
        std::fs::write(&path, bytes).map_err(write)?;
        written.push(path);
    }
    Ok(written)
}

/// An SDK that a project carries beside its own code: every file of it but
/// what serves the SDK in this repository: its README, its own tests, and
/// the Go module its tests run in (the project has its own go.mod).
fn sdk_files(set: &'static str) -> impl Iterator<Item = (String, Vec<u8>)> {
    files(set).filter(|(path, _)| !repository_only(path)).map(|(path, bytes)| (path.to_owned(), bytes.to_vec()))
}

fn repository_only(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    matches!(path, "README.md" | "go.mod")
        || path.starts_with("test/")
        || path.starts_with("tests/")
        || file.ends_with("_test.go")
        || (file.starts_with("test_") && file.ends_with(".py"))
}

fn camel_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// plugins/sdk/Cargo.toml takes its versions from this repository's
/// workspace; a project on its own needs them written out. A test keeps the
/// two in step.
fn rust_sdk_manifest() -> String {
    format!(
        r#"# berth's Rust SDK, as `berth plugin new` wrote it (berth {version}).
[package]
name = "berth-sdk"
description = "Write berth admission policies in Rust: a settings struct, one evaluate function."
version = "{version}"
edition = "2024"
license = "Apache-2.0"
publish = false

[features]
default = []
k8s = ["dep:k8s-openapi"]

[dependencies]
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"
serde_path_to_error = "0.1"
k8s-openapi = {{ version = "0.29", features = ["latest"], optional = true }}

[target.'cfg(target_arch = "wasm32")'.dependencies]
wit-bindgen = "0.63"

[target.'cfg(not(target_arch = "wasm32"))'.dependencies]
json-patch = "5"

[lints.rust]
# The generated component glue needs `unsafe`; it is confined to `guest`.
unsafe_code = "deny"
"#,
        version = env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every dependency of plugins/sdk, at the version the workspace gives it.
    #[test]
    fn the_standalone_sdk_manifest_keeps_the_workspace_versions() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let sdk = std::fs::read_to_string(root.join("plugins/sdk/Cargo.toml")).unwrap();
        let manifest = rust_sdk_manifest();
        for line in sdk.lines().filter(|line| line.contains(".workspace = true") || line.contains("workspace = true")) {
            let dep = line.split(['.', ' ', '=']).next().unwrap();
            if ["version", "edition", "license"].contains(&dep) {
                continue;
            }
            let spec = workspace.lines().find(|l| l.starts_with(&format!("{dep} = "))).unwrap();
            let version = spec.split('"').nth(1).unwrap();
            let ours =
                manifest.lines().find(|l| l.starts_with(&format!("{dep} = "))).unwrap_or_else(|| panic!("{dep}"));
            assert!(ours.contains(&format!("\"{version}\"")), "{dep}: workspace {spec:?}, standalone {ours:?}");
        }
        let own =
            sdk.lines().filter(|l| l.contains(" = \"") && !l.starts_with("name") && !l.starts_with("description"));
        for line in own {
            assert!(manifest.contains(line), "{line:?} is in plugins/sdk/Cargo.toml but not the standalone one");
        }
    }

    #[test]
    fn a_project_gets_the_name_the_sdk_and_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("demo-rust");
        let written = scaffold("demo-rust", Language::Rust, &project).unwrap();
        let relative: Vec<_> =
            written.iter().map(|path| path.strip_prefix(&project).unwrap().display().to_string()).collect();
        for expected in ["Cargo.toml", "src/lib.rs", "berth.yaml", "tests/demo-rust.test.yaml", "wit/policy.wit"] {
            assert!(relative.iter().any(|path| path == expected), "{expected} in {relative:?}");
        }
        assert!(relative.iter().any(|path| path == "berth-sdk/src/lib.rs"));
        let text = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        assert!(text.contains("name = \"demo-rust\"") && !text.contains("sample"), "{text}");
        let lib = std::fs::read_to_string(project.join("src/lib.rs")).unwrap();
        assert!(lib.contains("DemoRustSettings") && !lib.contains("Sample"), "{lib}");
        assert_eq!(std::fs::read_to_string(project.join("wit/policy.wit")).unwrap(), super::super::wit());

        let again = scaffold("demo-rust", Language::Rust, &project).unwrap_err();
        assert!(matches!(again, ScaffoldError::NotEmpty(_)), "{again}");
        let bad = scaffold("Demo", Language::Rust, &dir.path().join("x")).unwrap_err();
        assert!(bad.to_string().contains("\"Demo\""), "{bad}");
    }

    /// The SDKs' own tests and README stay in this repository; the SDK
    /// itself, and the project's go.mod (not the SDK's), go to the project.
    #[test]
    fn a_project_gets_the_sdk_without_its_tests() {
        let dir = tempfile::tempdir().unwrap();
        for (language, sdk, tests) in [
            (Language::Js, "berth-sdk.js", "test/berth-sdk.test.mjs"),
            (Language::Python, "berth_sdk.py", "test_berth_sdk.py"),
            (Language::Go, "berth_sdk.go", "berth_sdk_test.go"),
        ] {
            let set = format!("sdk-{}", language.as_str());
            assert!(files(&set).any(|(path, _)| path == tests), "{set} has its tests, {tests}");
            let project = dir.path().join(language.as_str());
            let written = scaffold("demo", language, &project).unwrap();
            let relative: Vec<_> =
                written.iter().map(|path| path.strip_prefix(&project).unwrap().display().to_string()).collect();
            assert!(relative.iter().any(|path| path == sdk), "{sdk} in {relative:?}");
            assert!(!relative.contains(&tests.to_owned()), "{tests} in {relative:?}");
            for (path, _) in files(&set).filter(|(path, _)| repository_only(path)) {
                if !matches!(path, "README.md" | "go.mod") {
                    assert!(!project.join(path).exists(), "{set}'s {path} in the project");
                }
            }
        }
        let go_mod = std::fs::read_to_string(dir.path().join("go/go.mod")).unwrap();
        assert!(go_mod.starts_with("module demo\n"), "the project's own go.mod: {go_mod}");
        assert!(
            dir.path().join("go/berth_sdk_wasip1.go").is_file() && dir.path().join("go/berth_sdk_native.go").is_file()
        );
    }

    #[test]
    fn repository_only_files_are_the_readme_the_tests_and_the_sdk_module() {
        for path in ["README.md", "go.mod", "test/register.mjs", "tests/x.py", "berth_sdk_test.go", "test_berth_sdk.py"]
        {
            assert!(repository_only(path), "{path}");
        }
        for path in
            ["berth-sdk.js", "berth_sdk.go", "berth_sdk_wasip1.go", "berth_sdk.py", "componentize-go.mjs", "latest.py"]
        {
            assert!(!repository_only(path), "{path}");
        }
    }
}
