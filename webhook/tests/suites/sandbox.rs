//! What the sandbox shows a plugin, asked by one that tries everything
//! (plugins/testing/probe) through the real runtime: files, the environment
//! and sockets are refused (an error or a trap, never data); the clocks and
//! randomness give fixed values, the same on every call and in every
//! instance, never the host's time or entropy.

use berth::runtime::{
    ArtifactCache, CallLimits, Plugin, PluginContext, PluginDecision, PluginError, PluginRequest, Runtime,
    RuntimeOptions,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const NO_CONTEXT: PluginContext = PluginContext { default_storage_class: None };

fn options() -> RuntimeOptions {
    RuntimeOptions {
        max_memory: 64 << 20,
        max_instances: 8,
        warm_instances: 8,
        max_wasm_stack: 512 << 10,
        cache: ArtifactCache::at(Path::new(env!("CARGO_TARGET_TMPDIR")).join("berth-artifact-cache")),
    }
}

fn load_probe(runtime: &Runtime) -> Plugin {
    let path = PathBuf::from(berth::builtin::TEST_PLUGIN_DIR).join("berth_plugin_probe.wasm");
    let wasm =
        std::fs::read(&path).unwrap_or_else(|err| panic!("reading {} (built by build.rs): {err}", path.display()));
    runtime.load(&path.display().to_string(), &wasm).expect("the probe plugin loads")
}

fn probe() -> &'static Plugin {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| load_probe(RUNTIME.get_or_init(|| Runtime::new(options()).expect("runtime starts"))))
}

fn request() -> String {
    json!({
        "uid": "probe",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "operation": "CREATE",
        "userInfo": {"username": "tester"},
    })
    .to_string()
}

const OBJECT: &str = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}"#;

fn limits() -> CallLimits {
    // Generous: the probe sleeps (which returns at once) and spins a little.
    CallLimits { timeout: Duration::from_secs(2), memory: 32 << 20, ..CallLimits::default() }
}

/// The probe's report, or the error its call ended in.
fn run_on(plugin: &Plugin, settings: &Value) -> Result<Value, PluginError> {
    let settings = settings.to_string();
    plugin.validate_settings(&"probe".into(), &settings, limits()).expect("settings are valid");
    let request = request();
    let input = PluginRequest { request: &request, object: Some(OBJECT), old_object: None };
    let verdict = plugin.evaluate(&"probe".into(), input, &settings, &NO_CONTEXT, limits())?;
    match verdict.decision {
        PluginDecision::Deny { message, .. } => Ok(serde_json::from_str(&message).expect("the report is JSON")),
        other => panic!("the probe reports by denying, not {other:?}"),
    }
}

fn run(settings: Value) -> Result<Value, PluginError> {
    run_on(probe(), &settings)
}

/// A probe that must see nothing: either its call traps, or every attempt
/// it reports is an error. The report, if there is one.
fn refused(probe: &str, settings: Value, attempts: &[&str]) -> Option<Value> {
    let report = match run(settings) {
        Ok(report) => report,
        Err(err @ (PluginError::Trap { .. } | PluginError::Panic { .. })) => {
            eprintln!("the {probe} probe trapped, which refuses it too: {err}");
            return None;
        }
        Err(err) => panic!("the {probe} probe failed in an unexpected way: {err:?}"),
    };
    eprintln!("what the {probe} probe saw: {report}");
    for attempt in attempts {
        let seen = &report[probe][attempt];
        assert!(seen["error"].is_string() && seen.get("data").is_none(), "{probe}.{attempt} got data: {seen}");
    }
    Some(report)
}

#[test]
fn files_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let secret = dir.path().join("secret.txt");
    let text = "berth-sandbox-secret-7d1e";
    std::fs::write(&secret, text).expect("write the secret");
    let settings = json!({"probes": ["file"], "file": secret.display().to_string()});
    if let Some(report) = refused("file", settings, &["read", "write", "list_root"]) {
        assert_eq!(report["file"]["preopens"], json!([]), "{report}");
        // wasi-libc starts every guest in its own "/", which holds nothing;
        // the host's working directory is never given.
        let cwd = &report["file"]["cwd"];
        assert!(cwd["error"].is_string() || cwd["data"] == "/", "{report}");
        assert!(!report.to_string().contains(text), "the secret leaked: {report}");
    }
    assert!(!dir.path().join("secret.txt.written").exists(), "the probe wrote a host file");
}

#[test]
fn the_environment_is_empty() {
    // The test process has variables (cargo sets several); the plugin none.
    assert!(std::env::vars_os().count() > 0);
    if let Some(report) = refused("env", json!({"probes": ["env"]}), &["path"]) {
        let env = &report["env"];
        for empty in ["vars", "args", "environment", "arguments"] {
            assert_eq!(env[empty], json!([]), "env.{empty}: {report}");
        }
        assert_eq!(env["initial_cwd"], Value::Null, "{report}");
    }
}

#[test]
fn sockets_are_refused() {
    use std::io::ErrorKind::WouldBlock;
    // Real endpoints on the host, so that a sandbox that let the plugin out
    // would show here as well as in the report.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp listener");
    tcp.set_nonblocking(true).expect("nonblocking");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    udp.set_nonblocking(true).expect("nonblocking");
    for target in [tcp.local_addr().expect("addr"), udp.local_addr().expect("addr")] {
        let settings = json!({"probes": ["net"], "connect": target.to_string()});
        let attempts = ["tcp_connect", "tcp_listen", "udp_send", "dns", "raw_tcp_socket", "raw_udp_socket"];
        refused("net", settings, &attempts);
    }
    assert!(matches!(tcp.accept(), Err(err) if err.kind() == WouldBlock), "the plugin connected to the host");
    let mut buf = [0u8; 16];
    assert!(matches!(udp.recv_from(&mut buf), Err(err) if err.kind() == WouldBlock), "the plugin sent a datagram");
}

/// Everything the clock and random probes report, from three calls on one
/// plugin and one call on a plugin of a second runtime: all the same.
fn fixed_reports(settings: Value) -> Value {
    let first = run(settings.clone()).expect("the probe answers");
    for call in 0..2 {
        assert_eq!(run(settings.clone()).expect("the probe answers"), first, "call {call} saw something else");
    }
    let runtime = Runtime::new(options()).expect("a second runtime");
    let other = load_probe(&runtime);
    assert_eq!(run_on(&other, &settings).expect("the probe answers"), first, "another instance saw something else");
    eprintln!("what the probe saw: {first}");
    first
}

#[test]
fn clocks_are_fixed_at_the_epoch_and_stand_still() {
    let report = fixed_reports(json!({"probes": ["clock"]}));
    let clock = &report["clock"];
    // Host time is decades past the epoch; the plugin's wall clock reads 0,
    // its monotonic clock one second (not zero, which Go's runtime refuses),
    // and time passing (a busy loop, a sleep) moves neither.
    assert_eq!(clock["wall_ns"], json!(["0", "0"]), "{report}");
    assert_eq!(clock["raw_wall"], json!([[0, 0], [0, 0]]), "{report}");
    assert_eq!(clock["raw_monotonic"], json!([1_000_000_000u64, 1_000_000_000u64]), "{report}");
    assert_eq!(clock["instant_elapsed_ns"], 0, "{report}");
}

#[test]
fn randomness_is_fixed_bytes() {
    let report = fixed_reports(json!({"probes": ["random"]}));
    let random = &report["random"];
    // Within a call too: two reads give the same bytes, which host entropy
    // would not. (Not so the HashMap seeds: std derives each next one from
    // the first, so only calls and instances agree on them, as checked.)
    for reads in ["secure_bytes", "secure_u64", "insecure_bytes", "insecure_u64"] {
        assert_eq!(random[reads][0], random[reads][1], "{reads}: {report}");
    }
    // The fixed values runtime/host.rs gives.
    assert_eq!(random["secure_bytes"][0], "5a".repeat(16), "{report}");
    assert_eq!(random["insecure_bytes"][0], "a5".repeat(16), "{report}");
    assert_eq!(random["insecure_seed"], json!([0, 0]), "{report}");
}
