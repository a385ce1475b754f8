//! Warm instances (`isolation: reuse`, the default) must never let one
//! request reach another's verdict. Every fixture review goes through the
//! embedded default policy twice: once with warm instances, in an order
//! that mixes charts, kinds and endpoints and repeats every review, and
//! once with a fresh instance for every call. Every answer must be the
//! same, byte for byte.

use berth::admission::{Endpoint, admit};
use berth::cluster::Cluster;
use berth::config::{Config, Isolation};
use berth::policy::PolicySet;
use berth::review::Review;
use berth::runtime::{ArtifactCache, Runtime, RuntimeOptions};
use berth_e2e::fixtures::{self, Fixture};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn policies(runtime: &Runtime, chart: &str, isolation: Isolation) -> PolicySet {
    let mut sources = Config::embedded_default().expect("the embedded default parses");
    for spec in sources.iter_mut().flat_map(|source| &mut source.config.policies) {
        spec.isolation = isolation;
    }
    let cluster: PathBuf = fixtures::dir().join(chart).join("cluster.yaml");
    let cluster = Cluster::snapshot(&[cluster]).expect("cluster.yaml parses");
    PolicySet::load(runtime, &sources, cluster).expect("the embedded default loads")
}

/// The answer, as the apiserver reads it, and how many plugins were called.
fn answer(set: &PolicySet, endpoint: Endpoint, fixture: &Fixture) -> (String, u64) {
    let review = Review::parse(fixture.body.as_bytes()).expect("fixture reviews parse");
    let admitted = admit(set, endpoint, review);
    let calls = admitted.outcomes.len() as u64;
    (serde_json::to_string(&admitted.response.into_review()).expect("the response serializes"), calls)
}

#[test]
fn warm_instances_answer_exactly_as_fresh_ones() {
    let runtime =
        Runtime::new(RuntimeOptions { cache: ArtifactCache::at(berth_e2e::server::cache_dir()), ..Default::default() })
            .expect("runtime");
    let mut by_chart: BTreeMap<String, Vec<Fixture>> = BTreeMap::new();
    for fixture in fixtures::all() {
        by_chart.entry(fixture.chart().to_owned()).or_default().push(fixture);
    }
    let mut compared = 0;
    let mut reused = 0;
    for (chart, reviews) in &by_chart {
        let warm = policies(&runtime, chart, Isolation::Reuse);
        let fresh = policies(&runtime, chart, Isolation::Fresh);
        let expected: Vec<[String; 2]> = reviews
            .iter()
            .map(|f| [answer(&fresh, Endpoint::Mutate, f).0, answer(&fresh, Endpoint::Validate, f).0])
            .collect();
        // Forward, backward, then forward again, alternating endpoints: each
        // warm instance sees many different objects before each review.
        let order = (0..reviews.len()).chain((0..reviews.len()).rev()).chain(0..reviews.len());
        let mut calls = 0;
        for (step, i) in order.enumerate() {
            let endpoints = if step % 2 == 0 { [0, 1] } else { [1, 0] };
            for e in endpoints {
                let endpoint = [Endpoint::Mutate, Endpoint::Validate][e];
                let (got, called) = answer(&warm, endpoint, &reviews[i]);
                calls += called;
                assert_eq!(
                    got,
                    expected[i][e],
                    "{chart}/{} on {endpoint:?}: a warm instance answered differently from a fresh one",
                    reviews[i].file_name()
                );
                compared += 1;
            }
        }
        // Calls that found a warm instance: calls made minus instances made
        // (each plugin counted once, however many policies share it).
        let mut plugins: Vec<_> = warm.policies().iter().map(|p| p.plugin.clone()).collect();
        plugins.sort_by_key(std::sync::Arc::as_ptr);
        plugins.dedup_by(|a, b| std::sync::Arc::ptr_eq(a, b));
        let instances: u64 = plugins.iter().map(|p| p.instantiations()).sum();
        reused += calls.saturating_sub(instances);
    }
    assert!(compared >= 6 * 60, "compared only {compared} answers");
    assert!(reused > 0, "no warm instance was ever reused: the test compared fresh with fresh");
}
