//! The sandbox against a plugin that misbehaves on purpose
//! (plugins/testing/hostile): every way a call can end badly is its own typed
//! error, and the same plugin, on the same runtime, answers the next call.

use berth::runtime::{
    ArtifactCache, CallLimits, Isolation, LoadError, Plugin, PluginContext, PluginDecision, PluginError, PluginRequest,
    PluginVerdict, Runtime, RuntimeOptions,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::Trap;

/// No cluster facts: these plugins ask for none.
const NO_CONTEXT: PluginContext = PluginContext { default_storage_class: None };

const MIB: usize = 1 << 20;

/// A request without its objects, as plugins get it; [`OBJECT`] comes apart.
fn request(uid: &str) -> String {
    json!({
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "name": "web-0",
        "namespace": "default",
        "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:statefulset-controller"},
        "dryRun": false
    })
    .to_string()
}

const OBJECT: &str = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "default"}, "spec": {"containers": []}}"#;

fn call(request: &str) -> PluginRequest<'_> {
    PluginRequest { request, object: Some(OBJECT), old_object: None }
}

fn settings(behaviour: &str) -> String {
    json!({ "behaviour": behaviour }).to_string()
}

fn limits(timeout_ms: u64, memory: usize) -> CallLimits {
    CallLimits { timeout: Duration::from_millis(timeout_ms), memory, ..CallLimits::default() }
}

fn options(max_instances: u32) -> RuntimeOptions {
    RuntimeOptions {
        max_memory: 64 * MIB,
        max_instances,
        warm_instances: 8,
        max_wasm_stack: 512 << 10,
        cache: ArtifactCache::at(Path::new(env!("CARGO_TARGET_TMPDIR")).join("berth-artifact-cache")),
    }
}

fn hostile_wasm() -> (String, Vec<u8>) {
    let path = PathBuf::from(berth::builtin::TEST_PLUGIN_DIR).join("berth_plugin_hostile.wasm");
    let wasm = std::fs::read(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    (path.display().to_string(), wasm)
}

/// One runtime and one loaded plugin for the whole suite, as in the server:
/// each test's "next call succeeds" is on the very runtime and plugin that
/// every other hostile call has also been through.
fn hostile() -> &'static Plugin {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        let runtime = RUNTIME.get_or_init(|| Runtime::new(options(16)).expect("runtime starts"));
        let (source, wasm) = hostile_wasm();
        runtime.load(&source, &wasm).expect("hostile plugin loads")
    })
}

fn policy() -> Arc<str> {
    "hostile".into()
}

fn evaluate(plugin: &Plugin, behaviour: &str, uid: &str, limits: CallLimits) -> Result<PluginVerdict, PluginError> {
    plugin.evaluate(&policy(), call(&request(uid)), &settings(behaviour), &NO_CONTEXT, limits)
}

/// After a hostile call, a well-behaved call on the same plugin works.
fn assert_recovers(plugin: &Plugin) {
    let verdict = evaluate(plugin, "ok", "after", CallLimits::default()).expect("the next call succeeds");
    assert_eq!(verdict, PluginVerdict { decision: PluginDecision::Allow, warnings: vec![] });
}

#[test]
fn well_behaved_call_allows() {
    assert_recovers(hostile());
}

#[test]
fn infinite_loop_is_stopped_within_50ms_of_its_deadline() {
    let plugin = hostile();
    let timeout = Duration::from_millis(100);
    let started = Instant::now();
    let err = evaluate(plugin, "loop", "loop", limits(100, 16 * MIB)).expect_err("a loop cannot finish");
    let elapsed = started.elapsed();
    assert!(matches!(err, PluginError::Timeout { after } if after == timeout), "{err:?}");
    assert_eq!(err.kind(), "timeout");
    assert_eq!(err.to_string(), "timed out after 100ms");
    // A correctness bound, not a benchmark: the epoch ticks every 2 ms.
    assert!(elapsed >= timeout, "stopped before its deadline: {elapsed:?}");
    assert!(elapsed < timeout + Duration::from_millis(50), "stopped {elapsed:?} after starting, deadline {timeout:?}");
    assert_recovers(plugin);
}

#[test]
fn memory_bomb_is_stopped_at_the_cap() {
    let plugin = hostile();
    for cap in [16 * MIB, 8 * MIB] {
        let err = evaluate(plugin, "memory-bomb", "bomb", limits(1000, cap)).expect_err("the bomb cannot finish");
        match err {
            PluginError::OutOfMemory { desired, limit } => {
                assert_eq!(limit, cap);
                assert!(desired > cap, "desired {desired} should exceed the cap {cap}");
            }
            other => panic!("expected OutOfMemory at {cap}, got {other:?}"),
        }
        assert_recovers(plugin);
    }
}

#[test]
fn trap_is_a_trap() {
    let plugin = hostile();
    let err = evaluate(plugin, "trap", "trap", CallLimits::default()).expect_err("traps");
    assert!(matches!(err, PluginError::Trap { trap: Trap::UnreachableCodeReached, detail: None }), "{err:?}");
    assert_eq!(err.kind(), "trap");
    assert_recovers(plugin);
}

#[test]
fn stack_overflow_is_a_stack_overflow() {
    let plugin = hostile();
    let err = evaluate(plugin, "stack-overflow", "deep", CallLimits::default()).expect_err("overflows");
    assert!(matches!(err, PluginError::StackOverflow), "{err:?}");
    assert_eq!(err.kind(), "stack_overflow");
    assert_recovers(plugin);
}

#[test]
fn panic_is_a_panic_with_its_message() {
    let plugin = hostile();
    let err = evaluate(plugin, "panic", "uid-panic", CallLimits::default()).expect_err("panics");
    match &err {
        PluginError::Panic { message } => {
            assert!(message.contains("hostile plugin panicked on purpose (request uid-panic)"), "{message}")
        }
        other => panic!("expected Panic, got {other:?}"),
    }
    assert_eq!(err.kind(), "panic");
    assert_recovers(plugin);
}

#[test]
fn an_error_returned_by_the_plugin_is_a_policy_error() {
    let plugin = hostile();
    let err = plugin
        .evaluate(&policy(), call("this is no AdmissionRequest"), &settings("ok"), &NO_CONTEXT, CallLimits::default())
        .expect_err("refused");
    assert!(matches!(&err, PluginError::Policy(message) if message.contains("invalid AdmissionRequest")), "{err:?}");
    assert!(!err.poisons_instance());
    assert_recovers(plugin);
}

/// The runtime hands bad patches through as text; the chain judges them
/// (tests/chain.rs). Here: they arrive intact.
#[test]
fn bad_outputs_reach_the_host_as_returned() {
    let plugin = hostile();
    for behaviour in ["bad-json", "not-an-array", "not-an-object", "rename"] {
        let verdict = evaluate(plugin, behaviour, "bad", CallLimits::default()).expect("returns a verdict");
        assert!(matches!(verdict.decision, PluginDecision::Mutate(_)), "{behaviour}: {verdict:?}");
    }
}

#[test]
fn settings_are_validated_with_the_field_named() {
    let plugin = hostile();
    plugin.validate_settings(&policy(), &settings("loop"), CallLimits::default()).expect("loop is a behaviour");
    let err = plugin
        .validate_settings(&policy(), &settings("explode"), CallLimits::default())
        .expect_err("unknown behaviour");
    match err {
        LoadError::Settings { message } => {
            assert!(message.starts_with("settings.behaviour: unknown behaviour \"explode\""), "{message}")
        }
        other => panic!("expected LoadError::Settings, got {other:?}"),
    }
}

/// A hostile plugin of its own: the tests below watch one plugin's warm
/// instances, which other tests' calls on the shared plugin would take.
fn own_hostile(runtime: &Runtime) -> Plugin {
    let (source, wasm) = hostile_wasm();
    runtime.load(&source, &wasm).expect("hostile plugin loads")
}

/// `isolation: fresh`: even a plugin that keeps state, against the
/// contract, sees nothing of the request before.
#[test]
fn fresh_instances_keep_requests_apart() {
    let runtime = Runtime::new(options(4)).expect("runtime starts");
    let plugin = own_hostile(&runtime);
    let fresh = CallLimits { isolation: Isolation::Fresh, ..CallLimits::default() };
    let secret = "uid-A-2f9c51e0-secret";
    let a = evaluate(&plugin, "leak", secret, fresh).expect("leak answers");
    assert_eq!(a.warnings, ["previous uid: none"]);
    let b = evaluate(&plugin, "leak", "uid-B", fresh).expect("leak answers");
    assert_eq!(b.warnings, ["previous uid: none"], "state survived between requests");
    assert!(!format!("{b:?}").contains(secret), "request B saw request A's uid: {b:?}");
}

/// By default calls reuse a warm instance, so a guest's globals do survive
/// between calls: that is why plugins must be stateless (and why one that
/// is not asks for `isolation: fresh`). An instance that failed is thrown
/// away, never reused.
#[test]
fn a_warm_instance_is_reused_until_it_fails() {
    let runtime = Runtime::new(options(4)).expect("runtime starts");
    let plugin = own_hostile(&runtime);
    let reuse = CallLimits::default();
    let a = evaluate(&plugin, "leak", "uid-A", reuse).expect("leak answers");
    assert_eq!(a.warnings, ["previous uid: none"]);
    let b = evaluate(&plugin, "leak", "uid-B", reuse).expect("leak answers");
    assert_eq!(b.warnings, ["previous uid: uid-A"], "the second call did not reuse the first's instance");
    evaluate(&plugin, "trap", "uid-T", reuse).expect_err("trap fails");
    let c = evaluate(&plugin, "leak", "uid-C", reuse).expect("leak answers");
    assert_eq!(c.warnings, ["previous uid: none"], "the instance that trapped was used again");
}

/// Traps must hand their pooled instance slot back: far more hostile calls
/// than the pool has slots, then a good one.
#[test]
fn hostile_calls_do_not_exhaust_the_instance_pool() {
    let runtime = Runtime::new(options(2)).expect("runtime starts");
    let (source, wasm) = hostile_wasm();
    let plugin = runtime.load(&source, &wasm).expect("hostile plugin loads");
    for round in 0..5 {
        for (behaviour, kind) in [
            ("trap", "trap"),
            ("panic", "panic"),
            ("stack-overflow", "stack_overflow"),
            ("memory-bomb", "out_of_memory"),
        ] {
            let err = evaluate(&plugin, behaviour, "round", limits(1000, 8 * MIB)).expect_err(behaviour);
            assert_eq!(err.kind(), kind, "round {round}: {err:?}");
        }
    }
    let err = evaluate(&plugin, "loop", "loop", limits(10, 8 * MIB)).expect_err("loop");
    assert_eq!(err.kind(), "timeout");
    assert_recovers(&plugin);
}

/// Rust keeps large locals on a shadow stack in linear memory (1 MiB, laid
/// out first, so overflowing it runs below address 0). That overflow is a
/// memory trap, not the engine's stack overflow: it is stopped all the same,
/// but reported as `trap` (out of bounds memory access), since nothing in the
/// trap tells the two apart. This pins today's classification.
#[test]
fn shadow_stack_overflow_is_stopped_as_a_memory_trap() {
    let plugin = hostile();
    let err = evaluate(plugin, "big-frames", "deep", CallLimits::default()).expect_err("overflows");
    assert!(matches!(err, PluginError::Trap { trap: Trap::MemoryOutOfBounds, detail: None }), "{err:?}");
    assert_recovers(plugin);
}

/// The artifact cache: the first load compiles and stores the component,
/// a later runtime loads it from disk, and a damaged entry is recompiled.
#[test]
fn compiled_plugins_are_cached_and_a_damaged_entry_is_recompiled() {
    let dir = tempfile::tempdir().expect("tmp");
    let options = || RuntimeOptions { cache: ArtifactCache::at(dir.path()), ..options(4) };
    let (source, wasm) = hostile_wasm();
    let entries = || std::fs::read_dir(dir.path()).expect("cache dir").flatten().map(|e| e.path()).collect::<Vec<_>>();

    let first = Runtime::new(options()).expect("runtime");
    first.load(&source, &wasm).expect("compiles");
    let cached = entries();
    assert_eq!(cached.len(), 1, "one compiled artifact: {cached:?}");
    assert!(cached[0].extension().is_some_and(|e| e == "cwasm"));
    let stored = std::fs::read(&cached[0]).expect("artifact");

    // A second runtime (a restart) uses the artifact as it is.
    let second = Runtime::new(options()).expect("runtime");
    let plugin = second.load(&source, &wasm).expect("loads from the cache");
    assert_eq!(std::fs::read(&cached[0]).expect("artifact"), stored, "a cache hit rewrites nothing");
    assert!(
        plugin.evaluate(&"p".into(), call(&request("a")), &settings("ok"), &NO_CONTEXT, limits(100, 16 * MIB)).is_ok()
    );

    // A damaged artifact fails wasmtime's checks and is compiled again.
    std::fs::write(&cached[0], b"not a compiled component").expect("damage");
    let third = Runtime::new(options()).expect("runtime");
    let plugin = third.load(&source, &wasm).expect("recompiles");
    assert!(
        plugin.evaluate(&"p".into(), call(&request("b")), &settings("ok"), &NO_CONTEXT, limits(100, 16 * MIB)).is_ok()
    );
    assert_ne!(
        std::fs::read(&cached[0]).expect("artifact"),
        b"not a compiled component",
        "the damaged entry is replaced"
    );
}

/// wasi:io/poll would block the host thread, where no deadline reaches: a
/// sleeping plugin must not hold its worker. Time does not pass for plugins,
/// so the sleep returns at once. (A correctness bound, not a benchmark.)
#[test]
fn sleeping_plugins_do_not_hold_a_worker() {
    let plugin = hostile();
    let started = Instant::now();
    let verdict = evaluate(plugin, "sleep", "sleep", limits(100, 16 * MIB)).expect("a sleep returns");
    assert_eq!(verdict.decision, PluginDecision::Allow);
    assert!(started.elapsed() < Duration::from_secs(2), "slept {:?}", started.elapsed());
}

/// `memoryLimit` is for the whole call: three memories of 62.5 MiB each are
/// 187.5 MiB, refused under 64 MiB even though each alone would fit.
#[test]
fn the_memory_limit_counts_every_memory_of_the_component() {
    let runtime = Runtime::new(RuntimeOptions { cache: ArtifactCache::disabled(), ..RuntimeOptions::default() })
        .expect("runtime");
    let wat = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wat/three-memories.wat")).expect("wat");
    let plugin = runtime.load("three-memories.wat", &wat).expect("the component compiles");
    let err = plugin
        .evaluate(&policy(), call(&request("a")), "{}", &NO_CONTEXT, limits(1000, 64 * MIB))
        .expect_err("187.5 MiB > 64 MiB");
    assert!(
        matches!(err, PluginError::OutOfMemory { limit, desired } if limit == 64 * MIB && desired > 64 * MIB),
        "{err:?}"
    );
    let verdict = plugin
        .evaluate(&policy(), call(&request("b")), "{}", &NO_CONTEXT, limits(1000, 200 * MIB))
        .expect("fits in 200 MiB");
    assert_eq!(verdict.decision, PluginDecision::Allow);
}
