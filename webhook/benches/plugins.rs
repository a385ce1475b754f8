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

use base64::Engine as _;
use berth::admission::{Endpoint, admit};
use berth::cluster::Cluster;
use berth::config::{Config, Mode};
use berth::policy::PolicySet;
use berth::review::{Object, Review};
use berth::runtime::{ArtifactCache, CallLimits, Isolation, PluginContext, PluginRequest, Runtime, RuntimeOptions};
use berth_sdk::Context;
use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::HashSet;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

/// The allocator `berth` itself runs with, so figures match the binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FIXTURES: &str = "../tests/fixtures/pulsar";
const MUTATED: [&str; 3] = [
    "005-pod-pulsar-bookie-0.json",
    "012-pod-pulsar-broker-0.json",
    "003-pvc-pulsar-bookie-journal-pulsar-bookie-0.json",
];
const VALIDATED: &str = "012-pod-pulsar-broker-0.json";

fn read(file: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURES).join("reviews").join(file);
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

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

/// `review` with `policies`' mutation applied to its object.
fn mutated(policies: &PolicySet, review: &[u8]) -> Vec<u8> {
    let admitted = admit(policies, Endpoint::Mutate, Review::parse(review).expect("review"));
    let patch = admitted.response.patch.expect("the default policy patches the pod");
    let patch: json_patch::Patch =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(patch).expect("base64"))
            .expect("patch");
    let mut review: serde_json::Value = serde_json::from_slice(review).expect("json");
    json_patch::patch(&mut review["request"]["object"], &patch).expect("applies");
    review.to_string().into_bytes()
}

fn bench(c: &mut Criterion) {
    let runtime = Runtime::new(RuntimeOptions {
        cache: ArtifactCache::at(Path::new(env!("CARGO_TARGET_TMPDIR")).join("berth-artifact-cache")),
        ..RuntimeOptions::default()
    })
    .expect("runtime starts");
    let cluster = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURES).join("cluster.yaml");
    let policies = PolicySet::load(
        &runtime,
        &Config::embedded_default().expect("the default parses"),
        Cluster::snapshot(&[cluster]).expect("cluster.yaml parses"),
    )
    .expect("the default policy loads");

    let mut cases: Vec<(Mode, Vec<u8>)> = MUTATED.iter().map(|file| (Mode::Mutate, read(file))).collect();
    cases.push((Mode::Validate, mutated(&policies, &read(VALIDATED))));

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
