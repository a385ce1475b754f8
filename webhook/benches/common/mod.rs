//! What every bench sets up the same way: berth's allocator, a runtime
//! with an artifact cache, the embedded default policy with the Pulsar
//! fixture's cluster, and a review as /validate sees it after /mutate.

#![allow(dead_code)] // each bench uses its own part of this

use base64::Engine as _;
use berth::admission::{Endpoint, admit};
use berth::cluster::Cluster;
use berth::config::Config;
use berth::policy::PolicySet;
use berth::review::Review;
use berth::runtime::{ArtifactCache, Runtime, RuntimeOptions};
use std::path::Path;

/// The allocator `berth` itself runs with, so figures match the binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub const PULSAR: &str = "../tests/fixtures/pulsar";

/// A Pulsar fixture review, by file name.
pub fn pulsar_review(file: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(PULSAR).join("reviews").join(file);
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Compiled components kept between runs, so a bench measures calls, not
/// compilation.
pub fn cache() -> ArtifactCache {
    ArtifactCache::at(Path::new(env!("CARGO_TARGET_TMPDIR")).join("berth-artifact-cache"))
}

pub fn runtime() -> Runtime {
    Runtime::new(RuntimeOptions { cache: cache(), ..RuntimeOptions::default() }).expect("runtime starts")
}

/// The embedded default policy. It matches on owners and Helm releases, so
/// it gets what the cluster stores: the Pulsar fixture's `cluster.yaml`.
pub fn default_policy(runtime: &Runtime) -> PolicySet {
    let cluster = Path::new(env!("CARGO_MANIFEST_DIR")).join(PULSAR).join("cluster.yaml");
    let cluster = Cluster::snapshot(&[cluster]).expect("cluster.yaml parses");
    PolicySet::load(runtime, &Config::embedded_default().expect("the default parses"), cluster)
        .expect("the default policy loads")
}

/// `review` with `policies`' patch applied to its object: what /validate
/// sees after /mutate, as the apiserver calls them.
pub fn mutated(policies: &PolicySet, review: &[u8]) -> Vec<u8> {
    let admitted = admit(policies, Endpoint::Mutate, Review::parse(review).expect("review"));
    let patch = admitted.response.patch.expect("the policies patch the review");
    let patch: json_patch::Patch =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(patch).expect("base64"))
            .expect("a JSON patch");
    let mut review: serde_json::Value = serde_json::from_slice(review).expect("json");
    json_patch::patch(&mut review["request"]["object"], &patch).expect("the patch applies");
    review.to_string().into_bytes()
}
