//! # probe: a test-only plugin that reports what its sandbox lets it see
//!
//! Never bundled: `webhook/build.rs` builds it for wasm32-wasip2 and the test
//! suites load it from `berth::builtin::TEST_PLUGIN_DIR`. `evaluate` tries to
//! read a file, read the environment, open sockets, read the clocks and read
//! randomness, then denies with a JSON report of what it saw as the denial
//! message: `{"file": {"read": {"error": "..."}, ...}, "clock": ...}`. Every
//! attempt is reported as `{"data": ...}` (it got something) or
//! `{"error": "..."}` (it was refused); readings that cannot fail (clocks,
//! random bytes) are reported as plain values.
//!
//! Settings, all optional:
//!
//! | field     | meaning                                                        |
//! |-----------|----------------------------------------------------------------|
//! | `probes`  | which of `file`, `env`, `net`, `clock`, `random` to run (all)  |
//! | `file`    | a host file to read; `<file>.written` is what it tries to write |
//! | `connect` | a host `ip:port` to connect and send to                        |
//!
//! Each probe goes through std, as a plugin author's code would, and where
//! std hides the host's answer (the clock readings, the random bytes), also
//! through the raw WASI 0.2 interfaces.

use serde_json::{Map, Value, json};
use std::fmt::Display;
use std::hint::black_box;

pub const PROBES: &[&str] = &["file", "env", "net", "clock", "random"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub probes: Vec<String>,
    pub file: String,
    pub connect: String,
}

impl Settings {
    /// Read the settings JSON; errors name the field.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|err| format!("settings: not JSON: {err}"))?;
        let Some(object) = value.as_object() else {
            return Err("settings: must be an object".to_owned());
        };
        let mut settings = Self {
            probes: PROBES.iter().map(|p| (*p).to_owned()).collect(),
            file: "/etc/hostname".into(),
            connect: "127.0.0.1:80".into(),
        };
        for (key, value) in object {
            match key.as_str() {
                "probes" => {
                    let names = value.as_array().ok_or("settings.probes: must be a list")?;
                    settings.probes = names
                        .iter()
                        .map(|name| match name.as_str() {
                            Some(name) if PROBES.contains(&name) => Ok(name.to_owned()),
                            _ => Err(format!("settings.probes: unknown probe {name}; expected {}", PROBES.join(", "))),
                        })
                        .collect::<Result<_, _>>()?;
                }
                "file" => settings.file = value.as_str().ok_or("settings.file: must be a string")?.to_owned(),
                "connect" => settings.connect = value.as_str().ok_or("settings.connect: must be a string")?.to_owned(),
                other => return Err(format!("settings.{other}: unknown field; expected probes, file or connect")),
            }
        }
        Ok(settings)
    }
}

pub fn validate_settings(settings: &str) -> Result<(), String> {
    Settings::parse(settings).map(|_| ())
}

/// Run the probes the settings name; the report, as JSON text.
pub fn evaluate(settings: &str) -> Result<String, String> {
    let settings = Settings::parse(settings)?;
    let mut report = Map::new();
    for probe in &settings.probes {
        let seen = match probe.as_str() {
            "file" => file(&settings.file),
            "env" => env(),
            "net" => net(&settings.connect),
            "clock" => clock(),
            _ => random(),
        };
        report.insert(probe.clone(), seen);
    }
    Ok(Value::Object(report).to_string())
}

/// `{"data": ...}` if the sandbox gave something, `{"error": ...}` if not.
fn outcome<T, E: Display>(result: Result<T, E>, data: impl FnOnce(T) -> Value) -> Value {
    match result {
        Ok(value) => json!({ "data": data(value) }),
        Err(err) => json!({ "error": err.to_string() }),
    }
}

fn file(path: &str) -> Value {
    #[cfg_attr(not(target_arch = "wasm32"), allow(unused_mut))] // the raw WASI readings add to it
    let mut seen = json!({
        "read": outcome(std::fs::read_to_string(path), Value::from),
        "write": outcome(std::fs::write(format!("{path}.written"), b"written by the probe plugin"), |()| json!("written")),
        "list_root": outcome(std::fs::read_dir("/"), |entries| {
            entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>().into()
        }),
        "cwd": outcome(std::env::current_dir(), |dir| dir.display().to_string().into()),
    });
    #[cfg(target_arch = "wasm32")]
    {
        let preopens: Vec<String> =
            wasip2::filesystem::preopens::get_directories().into_iter().map(|(_, name)| name).collect();
        seen["preopens"] = preopens.into();
    }
    seen
}

fn env() -> Value {
    #[cfg_attr(not(target_arch = "wasm32"), allow(unused_mut))] // the raw WASI readings add to it
    let mut seen = json!({
        "vars": std::env::vars_os().map(|(name, _)| name.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        "args": std::env::args_os().map(|arg| arg.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        "path": outcome(std::env::var("PATH"), Value::from),
    });
    #[cfg(target_arch = "wasm32")]
    {
        use wasip2::cli::environment;
        let names: Vec<String> = environment::get_environment().into_iter().map(|(name, _)| name).collect();
        seen["environment"] = names.into();
        seen["arguments"] = environment::get_arguments().into();
        seen["initial_cwd"] = environment::initial_cwd().into();
    }
    seen
}

fn net(connect: &str) -> Value {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
    #[cfg_attr(not(target_arch = "wasm32"), allow(unused_mut))] // the raw WASI readings add to it
    let mut seen = json!({
        "tcp_connect": outcome(TcpStream::connect(connect), |mut stream| {
            let wrote = stream.write_all(b"probe").is_ok();
            json!(format!("connected (wrote: {wrote})"))
        }),
        "tcp_listen": outcome(TcpListener::bind("127.0.0.1:0"), |listener| {
            json!(format!("listening on {:?}", listener.local_addr().ok()))
        }),
        "udp_send": outcome(UdpSocket::bind("0.0.0.0:0").and_then(|socket| socket.send_to(b"probe", connect)), |sent| {
            json!(format!("sent {sent} bytes"))
        }),
        "dns": outcome(("localhost", 80).to_socket_addrs(), |addrs| {
            addrs.map(|addr| addr.to_string()).collect::<Vec<_>>().into()
        }),
    });
    #[cfg(target_arch = "wasm32")]
    {
        use wasip2::sockets::{network::IpAddressFamily, tcp_create_socket, udp_create_socket};
        seen["raw_tcp_socket"] =
            outcome(tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4), |_| json!("created"));
        seen["raw_udp_socket"] =
            outcome(udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4), |_| json!("created"));
    }
    seen
}

/// Some work between two readings, so that a clock that runs shows it.
fn pass_time() {
    let mut n: u64 = 0;
    for i in 0..200_000u64 {
        n = black_box(n.wrapping_add(i));
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
}

fn clock() -> Value {
    use std::time::{Instant, SystemTime, UNIX_EPOCH};
    let wall = || match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    };
    let first = wall();
    let started = Instant::now();
    pass_time();
    let elapsed = started.elapsed().as_nanos() as u64;
    let second = wall();
    #[cfg_attr(not(target_arch = "wasm32"), allow(unused_mut))] // the raw WASI readings add to it
    let mut seen = json!({
        "wall_ns": [first.to_string(), second.to_string()],
        "instant_elapsed_ns": elapsed,
    });
    #[cfg(target_arch = "wasm32")]
    {
        use wasip2::clocks::{monotonic_clock, wall_clock};
        let raw_wall = |time: wall_clock::Datetime| json!([time.seconds, time.nanoseconds]);
        let (mono_first, wall_first) = (monotonic_clock::now(), wall_clock::now());
        pass_time();
        let (mono_second, wall_second) = (monotonic_clock::now(), wall_clock::now());
        seen["raw_wall"] = json!([raw_wall(wall_first), raw_wall(wall_second)]);
        seen["raw_wall_resolution"] = raw_wall(wall_clock::resolution());
        seen["raw_monotonic"] = json!([mono_first, mono_second]);
        seen["raw_monotonic_resolution"] = monotonic_clock::resolution().into();
    }
    seen
}

fn random() -> Value {
    use std::hash::BuildHasher;
    // std seeds every HashMap from the host's randomness.
    let hash = || std::collections::hash_map::RandomState::new().hash_one("berth").to_string();
    #[cfg_attr(not(target_arch = "wasm32"), allow(unused_mut))] // the raw WASI readings add to it
    let mut seen = json!({ "hashmap_seed": [hash(), hash()] });
    #[cfg(target_arch = "wasm32")]
    {
        use wasip2::random::{insecure, insecure_seed, random};
        let hex = |bytes: Vec<u8>| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        seen["secure_bytes"] = json!([hex(random::get_random_bytes(16)), hex(random::get_random_bytes(16))]);
        seen["secure_u64"] = json!([random::get_random_u64(), random::get_random_u64()]);
        seen["insecure_bytes"] =
            json!([hex(insecure::get_insecure_random_bytes(16)), hex(insecure::get_insecure_random_bytes(16))]);
        seen["insecure_u64"] = json!([insecure::get_insecure_random_u64(), insecure::get_insecure_random_u64()]);
        let (low, high) = insecure_seed::insecure_seed();
        seen["insecure_seed"] = json!([low, high]);
    }
    seen
}

/// The component glue: the only `unsafe` in the crate, all generated.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod guest {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "policy",
    });

    use self::berth::policy::types::{Decision, Denial};

    struct Probe;

    impl Guest for Probe {
        fn validate_settings(settings: String) -> Result<(), String> {
            super::validate_settings(&settings)
        }

        /// The report is the denial's message: denials reach the caller
        /// whole, where warnings are cut to 120 characters.
        fn evaluate(
            _request: String,
            _object: Option<String>,
            _old_object: Option<String>,
            settings: String,
            _context: Context,
        ) -> Result<Verdict, String> {
            let message = super::evaluate(&settings)?;
            Ok(Verdict { decision: Decision::Deny(Denial { message, code: 403 }), warnings: Vec::new() })
        }
    }

    export!(Probe);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_errors_name_the_field() {
        assert_eq!(Settings::parse("{}").expect("defaults").probes.len(), PROBES.len());
        let only = Settings::parse(r#"{"probes":["clock"],"connect":"127.0.0.1:9"}"#).expect("valid");
        assert_eq!((only.probes, only.connect.as_str()), (vec!["clock".to_owned()], "127.0.0.1:9"));
        assert!(validate_settings(r#"{"probes":["disk"]}"#).unwrap_err().starts_with("settings.probes: unknown probe"));
        assert!(validate_settings(r#"{"file":1}"#).unwrap_err().starts_with("settings.file:"));
        assert!(validate_settings(r#"{"fil":"x"}"#).unwrap_err().starts_with("settings.fil: unknown field"));
    }

    /// Natively nothing is sandboxed: the probe must see the real clock
    /// and environment, or its reports in the sandbox would prove nothing.
    #[test]
    fn outside_a_sandbox_the_probe_sees_the_host() {
        let report: Value =
            serde_json::from_str(&evaluate(r#"{"probes":["env","clock"]}"#).expect("runs")).expect("JSON");
        assert!(report["env"]["path"]["data"].is_string(), "{report}");
        let wall: i128 = report["clock"]["wall_ns"][0].as_str().and_then(|s| s.parse().ok()).expect("a reading");
        assert!(wall > 1_600_000_000 * 1_000_000_000, "{report}");
        assert!(report["clock"]["instant_elapsed_ns"].as_u64().is_some_and(|ns| ns > 0), "{report}");
    }
}
