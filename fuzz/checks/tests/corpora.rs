//! Every committed corpus file (`fuzz/corpus/<target>/`), and so every
//! crash the fuzzers found, replayed through its target's check: what CI
//! runs of the fuzzers, with no nightly toolchain and no libFuzzer.

use berth_fuzz_checks::{TARGETS, repo_root};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = repo_root().join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Each file of `target`'s corpus through its check; the files that fail,
/// all of them, with why.
fn replay(target: &str) {
    let check = TARGETS.iter().find(|(name, _)| *name == target).expect("a known target").1;
    let files = corpus(target);
    assert!(files.len() >= 5, "the {target} corpus has only {} files", files.len());
    let mut failures = Vec::new();
    let mut reached_the_end = false;
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|err| panic!("{}: {err}", file.display()));
        match catch_unwind(AssertUnwindSafe(|| check(&data))) {
            Ok(deep) => reached_the_end |= deep,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                failures.push(format!("{}: {why}", file.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {target} inputs fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    assert!(reached_the_end, "no {target} input goes the whole way (see TARGETS): the corpus no longer exercises it");
}

#[test]
fn review_corpus() {
    replay("review");
}

#[test]
fn reference_corpus() {
    replay("reference");
}

#[test]
fn compose_corpus() {
    replay("compose");
}

#[test]
fn config_corpus() {
    replay("config");
}

#[test]
fn every_target_has_a_replay() {
    let names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["review", "reference", "compose", "config"]);
    let mut dirs: Vec<String> = std::fs::read_dir(repo_root().join("fuzz/corpus"))
        .expect("fuzz/corpus")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(dirs, sorted, "a corpus without a target, or a target without a corpus");
    let fuzz_manifest = std::fs::read_to_string(repo_root().join("fuzz/Cargo.toml")).expect("fuzz/Cargo.toml");
    for name in names {
        assert!(fuzz_manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml has no target {name}");
    }
}

/// Not a check: (re)writes the `seed-*` files from the fixtures, by hand,
/// after the fixtures or the default policy change.
#[test]
#[ignore = "writes fuzz/corpus/*/seed-*; run by hand"]
fn write_seeds() {
    berth_fuzz_checks::seeds::write(&repo_root().join("fuzz/corpus"));
}
