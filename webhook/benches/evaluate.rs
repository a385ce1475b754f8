//! What one admission costs, on the Pulsar bookie Pod (005 fixture, 17 KB)
//! with the tolerations plugin:
//!
//! - `wasm_evaluate`: `Plugin::evaluate` (a warm instance, call, patch text back)
//! - `wasm_evaluate_2_threads`: the same on two threads at once, reported
//!   per call (wall time / calls): perfect scaling is half of the above
//! - `admit`: the whole chain with one policy (parse the review, match, call,
//!   apply the patch to a working copy, encode the base64 patch)
//! - `parse_review`: `Review::parse` alone, the part of `admit` before any
//!   plugin runs
//! - `native_evaluate`: the same tolerations code compiled natively, through
//!   the same steps as the component glue (parse settings, parse request,
//!   evaluate, serialize the patch)
//! - `instantiate_*`: instantiation plus the smallest call the public API
//!   offers, an upper bound on instantiation alone
//! - `default_policy_*_broker`: the embedded default on a Pulsar broker Pod:
//!   /mutate (4 mutating policies match) and /validate on the patched object
//!   (3 validators match)
//! - `native_whole_object`: the contract we did not choose, natively: the
//!   plugin parses the whole Pod into k8s-openapi types, changes it, returns
//!   the whole object, and the host diffs it against the original to get a
//!   patch. Compare with `native_evaluate` (parse what you need, return a
//!   patch).
//!
//! `cargo bench -p berth --bench evaluate` (about half a minute).

use berth::admission::{Endpoint, admit};
use berth::config::{Config, Source};
use berth::policy::PolicySet;
use berth::review::{Object, Review};
use berth::runtime::{CallLimits, PluginContext, PluginDecision, PluginRequest};

use berth_plugin_tolerations::TolerationsSettings;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod common;

const NO_CONTEXT: PluginContext = PluginContext { default_storage_class: None };

const BOOKIE: &str = "005-pod-pulsar-bookie-0.json";
const BROKER: &str = "012-pod-pulsar-broker-0.json";
const SETTINGS: &str =
    r#"{"tolerations":[{"key":"dedicated","operator":"Equal","value":"pulsar","effect":"NoSchedule"}]}"#;

fn bench(c: &mut Criterion) {
    let body = common::pulsar_review(BOOKIE);
    let mut review = Review::parse(&body).expect("a valid review");
    let info = review.request.to_json_without_objects();
    let input = PluginRequest {
        request: &info,
        object: review.request.object.as_ref().map(Object::text),
        old_object: review.request.old_object.as_ref().map(Object::text),
    };
    let runtime = common::runtime();
    let tolerations = runtime
        .load("builtin:tolerations", berth::builtin::get("tolerations").expect("tolerations is bundled"))
        .expect("tolerations loads");
    let policy: Arc<str> = "pulsar-tolerations".into();
    let limits = CallLimits::default();

    // Sanity: every variant does the same work and gets the same patch.
    let wasm_patch =
        match tolerations.evaluate(&policy, input, SETTINGS, &NO_CONTEXT, limits).expect("evaluates").decision {
            PluginDecision::Mutate(patch) => patch,
            other => panic!("expected a patch, got {other:?}"),
        };
    assert_eq!(native_evaluate(input, SETTINGS).as_deref(), Some(wasm_patch.as_str()));

    let mut group = c.benchmark_group("bookie");

    group.bench_function("wasm_evaluate", |b| {
        b.iter(|| tolerations.evaluate(&policy, black_box(input), SETTINGS, &NO_CONTEXT, limits).expect("evaluates"))
    });

    let yaml = format!(
        "policies:\n  - name: pulsar-tolerations\n    plugin: builtin:tolerations\n    mode: mutate\n    match:\n      operations: [CREATE]\n      resources: [pods]\n      objectSelector:\n        matchLabels:\n          app: pulsar\n    settings: {SETTINGS}\n"
    );
    let config = Config::parse(&yaml, "bench").expect("config parses");
    let policies = PolicySet::load(
        &runtime,
        &[Source { config, base_dir: PathBuf::new(), origin: "bench".into() }],
        berth::cluster::Cluster::none(),
    )
    .expect("policies load");
    // Both cores at once: wall time per call with two threads calling, so
    // contention in instantiation (mprotect/madvise, the pool) shows up.
    // Half of `wasm_evaluate` would be perfect scaling.
    group.bench_function("wasm_evaluate_2_threads", |b| {
        b.iter_custom(|iters| {
            let started = std::time::Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..2 {
                    scope.spawn(|| {
                        for _ in 0..iters {
                            black_box(
                                tolerations.evaluate(&policy, input, SETTINGS, &NO_CONTEXT, limits).expect("evaluates"),
                            );
                        }
                    });
                }
            });
            started.elapsed() / 2
        })
    });

    group.bench_function("admit", |b| {
        b.iter(|| {
            let review = Review::parse(black_box(&body)).expect("a valid review");
            let admitted = admit(&policies, Endpoint::Mutate, review);
            assert!(admitted.response.patch.is_some());
            admitted
        })
    });

    // The part of `admit` before any plugin runs.
    // The embedded default policy on a broker Pod: every Pulsar mutating
    // policy matches (tolerations, node placement, pull secrets, registry),
    // then /validate runs the validators on the patched object.
    let default = common::default_policy(&runtime);
    let broker = common::pulsar_review(BROKER);
    let patched_broker = patched_review(&default, &broker);
    group.bench_function("default_policy_mutate_broker", |b| {
        b.iter(|| admit(&default, Endpoint::Mutate, Review::parse(black_box(&broker)).expect("review")))
    });
    group.bench_function("default_policy_validate_broker", |b| {
        b.iter(|| admit(&default, Endpoint::Validate, Review::parse(black_box(&patched_broker)).expect("review")))
    });

    group.bench_function("parse_review", |b| b.iter(|| Review::parse(black_box(&body)).expect("a valid review")));

    group.bench_function("native_evaluate", |b| {
        b.iter(|| native_evaluate(black_box(input), SETTINGS).expect("a patch"))
    });

    let object: serde_json::Value =
        serde_json::from_slice::<serde_json::Value>(&body).expect("json")["request"]["object"].clone();
    let object_text = object.to_string();
    let whole = native_whole_object(&object_text, &object);
    let mut spurious = object.clone();
    json_patch::patch(&mut spurious, &whole).expect("diff applies");
    eprintln!(
        "whole-object contract: {} patch ops for one added toleration (patch contract: 1); the round trip changed: {}",
        whole.len(),
        whole.iter().map(|op| op.path().to_string()).collect::<Vec<_>>().join(", ")
    );
    group.bench_function("native_whole_object", |b| b.iter(|| native_whole_object(black_box(&object_text), &object)));

    group.bench_function("instantiate_validate_settings", |b| {
        b.iter(|| tolerations.validate_settings(&policy, black_box(SETTINGS), limits).expect("valid settings"))
    });

    let hostile_path = PathBuf::from(berth::builtin::TEST_PLUGIN_DIR).join("berth_plugin_hostile.wasm");
    if let Ok(wasm) = std::fs::read(&hostile_path) {
        let hostile = runtime.load(&hostile_path.display().to_string(), &wasm).expect("hostile loads");
        group.bench_function("instantiate_empty_evaluate", |b| {
            b.iter(|| {
                hostile
                    .evaluate(
                        &policy,
                        black_box(PluginRequest { request: r#"{"uid":"u"}"#, object: None, old_object: None }),
                        r#"{"behaviour":"ok"}"#,
                        &NO_CONTEXT,
                        limits,
                    )
                    .expect("allows")
            })
        });
    }

    group.finish();
}

/// The tolerations plugin natively, through the steps its component glue
/// takes: parse the settings, parse the request, evaluate, serialize the patch.
fn native_evaluate(input: PluginRequest<'_>, settings: &str) -> Option<String> {
    let settings: TolerationsSettings = serde_json::from_str(settings).expect("settings parse");
    let request = berth_sdk::Request::parse(input.request, input.object, input.old_object).expect("request parses");
    let verdict = berth_plugin_tolerations::evaluate(&request, &settings).expect("evaluates");
    verdict.patch().map(|patch| patch.to_json())
}

/// `review` with the default policy's patch applied: what /validate sees.
fn patched_review(policies: &PolicySet, review: &[u8]) -> Vec<u8> {
    let review = common::mutated(policies, review);
    let validated = admit(policies, Endpoint::Validate, Review::parse(&review).expect("review"));
    assert!(validated.response.allowed, "the patched broker passes the validators");
    review
}

/// The whole-object alternative: typed round trip in the plugin, diff in
/// the host.
fn native_whole_object(object: &str, original: &serde_json::Value) -> json_patch::Patch {
    use k8s_openapi::api::core::v1::{Pod, Toleration};
    let mut pod: Pod = serde_json::from_str(object).expect("a Pod");
    let spec = pod.spec.as_mut().expect("a spec");
    spec.tolerations.get_or_insert_with(Vec::new).push(Toleration {
        key: Some("dedicated".into()),
        operator: Some("Equal".into()),
        value: Some("pulsar".into()),
        effect: Some("NoSchedule".into()),
        toleration_seconds: None,
    });
    let returned = serde_json::to_string(&pod).expect("serializes");
    let returned: serde_json::Value = serde_json::from_str(&returned).expect("json");
    json_patch::diff(original, &returned)
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
