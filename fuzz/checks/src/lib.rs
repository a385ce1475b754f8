//! The properties berth's fuzz targets check, one module per target. Each
//! `check(data)` takes whatever bytes the fuzzer made and panics only when
//! a property breaks, so a fuzzer's crash is a bug and a corpus file that
//! passes is a regression test: `cargo test -p berth-fuzz-checks` replays
//! every file under `fuzz/corpus/<target>/` through its check (stable
//! toolchain, no libFuzzer). `fuzz/` wraps the same functions for
//! `cargo fuzz`; fuzz/README.md says how to run them.

pub mod compose;
pub mod config;
pub mod reference;
pub mod review;
pub mod seeds;

use berth::cluster::Cluster;
use berth::config::Config;
use berth::policy::PolicySet;
use berth::runtime::{ArtifactCache, Runtime, RuntimeOptions};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The fields that identify an object, which no patch berth answers with
/// may change. Stated here again, not borrowed from patch.rs: the checks are
/// an oracle of their own.
pub const IDENTITY: [&str; 5] = ["/apiVersion", "/kind", "/metadata/name", "/metadata/namespace", "/metadata/uid"];

/// Every target, by name, with its check: the corpus of each is
/// `fuzz/corpus/<name>/`. A check returns whether the input went the whole
/// way (a review patched, a reference rewritten, a patch composed, a
/// configuration accepted), so the replay can tell a corpus that no longer
/// reaches the deep end.
pub const TARGETS: [(&str, fn(&[u8]) -> bool); 4] = [
    ("review", review::check),
    ("reference", reference::check),
    ("compose", compose::check),
    ("config", config::check),
];

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixture sets whose reviews seed the corpora, each with the
/// `cluster.yaml` that the default policy's owner matching reads.
pub fn fixture_sets() -> Vec<PathBuf> {
    let mut sets: Vec<PathBuf> = std::fs::read_dir(repo_root().join("tests/fixtures"))
        .expect("tests/fixtures is readable")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.join("reviews").is_dir())
        .collect();
    sets.sort();
    sets
}

/// The embedded default policy (deploy/policies), loaded once per process,
/// with every fixture set's cluster as the cluster it sees.
pub fn default_policies() -> &'static PolicySet {
    static SET: OnceLock<PolicySet> = OnceLock::new();
    SET.get_or_init(|| {
        let mut sources = Config::embedded_default().expect("the embedded default parses");
        // The checks are about answers, not speed: a fuzzer's instrumented
        // build on a busy machine must not turn into a timeout denial.
        for spec in sources.iter_mut().flat_map(|source| &mut source.config.policies) {
            spec.timeout = std::time::Duration::from_secs(30);
        }
        let clusters: Vec<PathBuf> =
            fixture_sets().into_iter().map(|set| set.join("cluster.yaml")).filter(|p| p.exists()).collect();
        let cluster = Cluster::snapshot(&clusters).expect("the fixtures' cluster.yaml files read");
        PolicySet::load(runtime(), &sources, cluster).expect("the default policy loads")
    })
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        // No artifact cache: one compile per process, and nothing written
        // outside the target dir.
        let options =
            RuntimeOptions { max_instances: 4, cache: ArtifactCache::disabled(), ..RuntimeOptions::default() };
        Runtime::new(options).expect("the runtime starts")
    })
}

/// The project's rule for error chains (webhook/src/lib.rs): no error's
/// message repeats the text of the cause it wraps.
pub fn assert_no_repeats(err: &(dyn std::error::Error + 'static)) {
    let mut current = err;
    while let Some(source) = current.source() {
        let (outer, inner) = (current.to_string(), source.to_string());
        assert!(
            inner.is_empty() || !outer.contains(&inner),
            "{outer:?} repeats its cause {inner:?} (chain: {})",
            berth::error_chain(err)
        );
        current = source;
    }
}
