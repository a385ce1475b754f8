//! The sample policy built in each language (plugins/examples), one call
//! on the Pulsar bookie's review: with a warm instance (the default) and
//! with a fresh one (`isolation: fresh`), whose difference is what
//! instantiating costs. Run by plugins/examples/measure.sh, which builds
//! the three projects and names their berth.yaml files in
//! BERTH_BENCH_PROJECTS (`rust=DIR/berth.yaml,js=...,python=...`); without
//! it the bench has nothing to measure and says so.

use berth::cluster::Cluster;
use berth::config::{Config, Mode};
use berth::policy::PolicySet;
use berth::review::{Object, Review};
use berth::runtime::{CallLimits, Isolation, PluginRequest};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

mod common;

fn bench(c: &mut Criterion) {
    let Ok(projects) = std::env::var("BERTH_BENCH_PROJECTS") else {
        eprintln!("languages: BERTH_BENCH_PROJECTS is not set; run plugins/examples/measure.sh");
        return;
    };
    let runtime = common::runtime();
    let body = common::pulsar_review("005-pod-pulsar-bookie-0.json");
    let mut review = Review::parse(&body).expect("the bookie parses");
    let info = review.request.to_json_without_objects();
    let input = PluginRequest {
        request: &info,
        object: review.request.object.as_ref().map(Object::text),
        old_object: review.request.old_object.as_ref().map(Object::text),
    };
    let mut group = c.benchmark_group("language");
    for project in projects.split(',') {
        let (language, config) = project.split_once('=').expect("LANGUAGE=PATH");
        let source = Config::read(Path::new(config)).expect("the project's berth.yaml");
        let policies = PolicySet::load(&runtime, &[source], Cluster::none()).expect("the policy loads");
        let matched = policies.matching(Mode::Mutate, &review.request);
        let one = matched.first().expect("the sample policy matches the bookie");
        let (policy, context) = (one.policy, one.context.as_ref().expect("no context needed"));
        let warm = policy.limits;
        let fresh = CallLimits { isolation: Isolation::Fresh, ..policy.limits };
        let call = |limits: CallLimits| {
            policy.plugin.evaluate(&policy.name, input, &policy.settings, context, limits).expect("evaluates")
        };
        group.bench_function(format!("{language}/warm"), |b| b.iter(|| call(black_box(warm))));
        group.bench_function(format!("{language}/fresh"), |b| b.iter(|| call(black_box(fresh))));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
