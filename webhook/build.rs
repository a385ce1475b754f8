//! Builds every plugin crate under `plugins/` for wasm32-wasip2 and embeds the
//! bundled ones, so that `builtin:<name>` resolves and one `cargo build` is
//! all a newcomer needs. Test-only plugins (plugins/testing/*) are built too
//! and handed to tests by path, but never embedded.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("webhook/ lives in the workspace").to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));

    println!("cargo:rerun-if-changed={}", root.join("plugins").display());
    println!("cargo:rerun-if-changed={}", root.join("Cargo.lock").display());
    // The plugins' profile ([profile.plugin]) lives in the root manifest.
    println!("cargo:rerun-if-changed={}", root.join("Cargo.toml").display());

    let bundled = plugin_crates(&root.join("plugins"));
    let testing = plugin_crates(&root.join("plugins/testing"));

    ensure_target();
    // A separate target dir: the outer cargo holds the lock on target/<profile>.
    let target_dir = root.join("target/plugins");
    let mut cargo = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(&root)
        .args(["build", "--target", TARGET, "--profile", PROFILE])
        .arg("--target-dir")
        .arg(&target_dir);
    for (_, package) in bundled.iter().chain(&testing) {
        cargo.args(["-p", package]);
    }
    // Flags meant for the host build (coverage, sanitizers) must not leak into
    // the wasm build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cargo.env_remove(var);
    }
    let status = cargo.status().expect("running cargo to build the plugins");
    assert!(status.success(), "building the plugins for {TARGET} failed");

    let artifacts = target_dir.join(TARGET).join(PROFILE);
    let mut table = String::from(
        "/// Plugins bundled in the binary: `builtin:<name>`.\npub static BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    for (name, package) in &bundled {
        let wasm = artifacts.join(format!("{}.wasm", package.replace('-', "_")));
        let copy = out_dir.join(format!("{name}.wasm"));
        fs::copy(&wasm, &copy).unwrap_or_else(|err| panic!("copying {}: {err}", wasm.display()));
        writeln!(table, "    ({name:?}, include_bytes!({:?})),", copy.display().to_string())
            .expect("writing to a String");
    }
    table.push_str("];\n");
    fs::write(out_dir.join("builtins.rs"), table).expect("writing builtins.rs");

    // Tests find the test-only plugins here.
    println!("cargo:rustc-env=BERTH_TEST_PLUGINS={}", artifacts.display());

    embed_templates(&root.join("plugins"), &out_dir);
}

/// What `berth plugin new` writes, embedded so that the binary alone can
/// start a project anywhere: `(set, path in the set, bytes)`, where a set is
/// a folder under plugins/ (`examples/rust`, `sdk/src`, `wit`, ...).
fn embed_templates(plugins: &Path, out_dir: &Path) {
    const SETS: [&str; 10] = [
        "examples/common",
        "examples/rust",
        "examples/js",
        "examples/python",
        "examples/go",
        "sdk/src",
        "sdk-js",
        "sdk-python",
        "sdk-go",
        "wit",
    ];
    let mut table = String::from("pub static FILES: &[(&str, &str, &[u8])] = &[\n");
    for set in SETS {
        let base = plugins.join(set);
        let mut files = Vec::new();
        collect_files(&base, &mut files);
        files.sort();
        for file in files {
            let relative = file.strip_prefix(&base).expect("under its base").to_string_lossy().replace('\\', "/");
            writeln!(table, "    ({set:?}, {relative:?}, include_bytes!({:?})),", file.display().to_string())
                .expect("writing to a String");
        }
    }
    table.push_str("];\n");
    fs::write(out_dir.join("templates.rs"), table).expect("writing templates.rs");
}

/// Every file under `dir`, without build output, dependencies or caches.
fn collect_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let skipped = matches!(name.as_str(), "target" | "node_modules" | "__pycache__" | "Cargo.lock")
            || name.ends_with(".wasm")
            || (name.starts_with('.') && name != ".gitignore");
        if skipped {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, into);
        } else {
            into.push(path);
        }
    }
}

/// `(name, package)` for each plugin crate directly under `dir`.
fn plugin_crates(dir: &Path) -> Vec<(String, String)> {
    let mut crates = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return crates };
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&manifest) else { continue };
        let Some(package) =
            text.lines().find_map(|line| line.trim().strip_prefix("name = \"")?.strip_suffix('"').map(str::to_owned))
        else {
            continue;
        };
        let Some(name) = package.strip_prefix("berth-plugin-") else { continue };
        crates.push((name.to_owned(), package.clone()));
    }
    crates.sort();
    crates
}

/// Machines here set RUSTUP_AUTO_INSTALL=0, so add the target if it is missing.
fn ensure_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc).args(["--print", "sysroot"]).output().expect("running rustc");
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(TARGET).exists() {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup");
    let status = Command::new("rustup").args(["target", "add", TARGET]).status();
    assert!(matches!(status, Ok(s) if s.success()), "`rustup target add {TARGET}` failed; run it by hand");
}
