//! Every bundled plugin of the embedded default policy, one call each, on
//! the Pulsar fixtures: in Wasm with a warm instance (the default), in Wasm
//! with a fresh instance per call (`isolation: fresh`), and the same plugin
//! code compiled natively, called through the same SDK glue (settings and
//! request as JSON text, as the component gets them).
//!
//! - mutating policies on the bookie-0 and broker-0 Pods and a bookie PVC,
//!   as they arrive;
//! - validating policies on the broker-0 Pod after the default policy's
//!   patch, the allowed case /validate sees after /mutate.
//!
//! `cargo bench -p berth --bench plugins`; the figures to read are the
//! per-call time of `wasm_warm` and its ratio to `native`.

use berth::config::Mode;
use berth::review::{Object, Review};
use berth::runtime::{CallLimits, Isolation, PluginContext, PluginRequest};
use berth_sdk::Context;
use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::HashSet;
use std::hint::black_box;
use std::time::Duration;

mod common;

const MUTATED: [&str; 3] = [
    "005-pod-pulsar-bookie-0.json",
    "012-pod-pulsar-broker-0.json",
    "003-pvc-pulsar-bookie-journal-pulsar-bookie-0.json",
];
const VALIDATED: &str = "012-pod-pulsar-broker-0.json";

/// The plugin's own code, natively, through the glue its component uses.
fn native(
    plugin: &str,
    input: PluginRequest<'_>,
    settings: &str,
    context: Context,
) -> Result<berth_sdk::Verdict, String> {
    let PluginRequest { request, object, old_object } = input;
    macro_rules! call {
        ($evaluate:path) => {
            berth_sdk::glue::evaluate($evaluate, request, object, old_object, settings, context)
        };
    }
    match plugin {
        "builtin:tolerations" => call!(berth_plugin_tolerations::evaluate),
        "builtin:node-placement" => call!(berth_plugin_node_placement::evaluate),
        "builtin:pull-secrets" => call!(berth_plugin_pull_secrets::evaluate),
        "builtin:registry-rewrite" => call!(berth_plugin_registry_rewrite::evaluate),
        "builtin:storage-class" => call!(berth_plugin_storage_class::evaluate),
        "builtin:allowed-registries" => call!(berth_plugin_allowed_registries::evaluate),
        "builtin:require-placement" => call!(berth_plugin_require_placement::evaluate),
        other => panic!("no native build of {other}"),
    }
}

fn bench(c: &mut Criterion) {
    let runtime = common::runtime();
    let policies = common::default_policy(&runtime);

    let mut cases: Vec<(Mode, Vec<u8>)> =
        MUTATED.iter().map(|file| (Mode::Mutate, common::pulsar_review(file))).collect();
    cases.push((Mode::Validate, common::mutated(&policies, &common::pulsar_review(VALIDATED))));

    let mut group = c.benchmark_group("plugin");
    let mut seen = HashSet::new();
    for (mode, body) in &cases {
        let mut review = Review::parse(body).expect("fixture reviews parse");
        let info = review.request.to_json_without_objects();
        let input = PluginRequest {
            request: &info,
            object: review.request.object.as_ref().map(Object::text),
            old_object: review.request.old_object.as_ref().map(Object::text),
        };
        for matched in policies.matching(*mode, &review.request) {
            let policy = matched.policy;
            let source = policy.plugin.source().to_owned();
            if !seen.insert(source.clone()) {
                continue;
            }
            let context: PluginContext = matched.context.expect("the cluster file answers");
            let sdk_context = Context { default_storage_class: context.default_storage_class.clone() };
            let name = source.trim_start_matches("builtin:").to_owned();
            let warm = policy.limits;
            let fresh = CallLimits { isolation: Isolation::Fresh, ..policy.limits };
            let call = |limits: CallLimits| {
                policy.plugin.evaluate(&policy.name, input, &policy.settings, &context, limits).expect("evaluates")
            };
            // Sanity: Wasm and native agree.
            let wasm = format!("{:?}", call(warm).decision);
            let native_verdict = native(&source, input, &policy.settings, sdk_context.clone()).expect("native");
            eprintln!("{name} ({}): wasm {wasm:.80}; native {:.80}", policy.name, format!("{native_verdict:?}"));

            group.bench_function(format!("{name}/wasm_warm"), |b| b.iter(|| call(black_box(warm))));
            group.bench_function(format!("{name}/wasm_fresh"), |b| b.iter(|| call(black_box(fresh))));
            group.bench_function(format!("{name}/native"), |b| {
                b.iter(|| native(&source, black_box(input), &policy.settings, sdk_context.clone()).expect("native"))
            });
        }
    }
    assert_eq!(seen.len(), 7, "every bundled plugin of the default policy is measured: {seen:?}");
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
