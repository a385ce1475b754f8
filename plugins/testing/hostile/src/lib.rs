//! # hostile: a test-only plugin that misbehaves on purpose
//!
//! Never bundled: `webhook/build.rs` builds it for wasm32-wasip2 and the test
//! suites load it from `berth::builtin::TEST_PLUGIN_DIR`. Its settings pick
//! one behaviour, `{"behaviour": "loop"}`:
//!
//! | behaviour        | what `evaluate` does                                          |
//! |------------------|---------------------------------------------------------------|
//! | `ok`             | allows                                                        |
//! | `loop`           | spins forever                                                 |
//! | `sleep`          | sleeps for an hour (through wasi:io/poll), then allows        |
//! | `memory-bomb`    | allocates and touches 1 MiB blocks until it is stopped        |
//! | `trap`           | executes `unreachable` without logging anything               |
//! | `stack-overflow` | recurses without bound                                        |
//! | `big-frames`     | recurses without bound, 64 KiB of shadow stack per frame      |
//! | `panic`          | panics with a message (reported through the host log)         |
//! | `error`          | returns an error (a policy error, not a trap)                 |
//! | `bad-json`       | mutates with a "patch" that is not JSON                       |
//! | `not-an-array`   | mutates with JSON that is not an RFC 6902 array               |
//! | `not-an-object`  | mutates with a patch replacing the whole object with `5`      |
//! | `rename`         | mutates with a patch changing `/metadata/name`                |
//! | `leak`           | remembers the previous request's uid and warns with it        |
//!
//! The component glue is written against the WIT directly (not through
//! berth-sdk, whose `Patch` only serializes valid patches), so this plugin
//! can return anything at all. What the sandbox shows a plugin is probed by
//! plugins/testing/probe.

use serde_json::Value;
use std::hint::black_box;
use std::sync::Mutex;

/// What the plugin does, chosen by `settings.behaviour`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Ok,
    Loop,
    Sleep,
    MemoryBomb,
    Trap,
    StackOverflow,
    BigFrames,
    Panic,
    Error,
    BadJson,
    NotAnArray,
    NotAnObject,
    Rename,
    Leak,
}

impl Behaviour {
    pub const ALL: &[(&str, Behaviour)] = &[
        ("ok", Self::Ok),
        ("loop", Self::Loop),
        ("sleep", Self::Sleep),
        ("memory-bomb", Self::MemoryBomb),
        ("trap", Self::Trap),
        ("stack-overflow", Self::StackOverflow),
        ("big-frames", Self::BigFrames),
        ("panic", Self::Panic),
        ("error", Self::Error),
        ("bad-json", Self::BadJson),
        ("not-an-array", Self::NotAnArray),
        ("not-an-object", Self::NotAnObject),
        ("rename", Self::Rename),
        ("leak", Self::Leak),
    ];

    /// Read the behaviour from the settings JSON; errors name the field.
    pub fn from_settings(settings: &str) -> Result<Self, String> {
        let settings: Value = serde_json::from_str(settings).map_err(|err| format!("settings: not JSON: {err}"))?;
        let Some(object) = settings.as_object() else {
            return Err("settings: must be an object like {\"behaviour\": \"loop\"}".to_owned());
        };
        if let Some(unknown) = object.keys().find(|key| *key != "behaviour") {
            return Err(format!("settings.{unknown}: unknown field; the only setting is `behaviour`"));
        }
        let Some(name) = object.get("behaviour") else {
            return Err("settings.behaviour: is required".to_owned());
        };
        let Some(name) = name.as_str() else {
            return Err(format!("settings.behaviour: must be a string, not {name}"));
        };
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, b)| *b).ok_or_else(|| {
            let known = Self::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
            format!("settings.behaviour: unknown behaviour {name:?}; expected one of {known}")
        })
    }
}

/// The verdict, in the shape of the WIT one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny {
        message: String,
        code: u16,
    },
    /// Whatever text the behaviour returns; not necessarily a patch.
    Mutate(String),
}

impl Verdict {
    fn allow() -> Self {
        Self { decision: Decision::Allow, warnings: Vec::new() }
    }

    fn mutate(text: &str) -> Self {
        Self { decision: Decision::Mutate(text.to_owned()), warnings: Vec::new() }
    }

    fn warn(warning: String) -> Self {
        Self { decision: Decision::Allow, warnings: vec![warning] }
    }
}

pub fn validate_settings(settings: &str) -> Result<(), String> {
    Behaviour::from_settings(settings).map(|_| ())
}

pub fn evaluate(request: &str, settings: &str) -> Result<Verdict, String> {
    let behaviour = Behaviour::from_settings(settings)?;
    let request: Value = serde_json::from_str(request).map_err(|err| format!("invalid AdmissionRequest: {err}"))?;
    let uid = request.get("uid").and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(match behaviour {
        Behaviour::Ok => Verdict::allow(),
        Behaviour::Loop => spin(),
        Behaviour::Sleep => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Verdict::allow()
        }
        Behaviour::MemoryBomb => hoard(),
        Behaviour::Trap => trap(),
        Behaviour::StackOverflow => {
            let depth = recurse(black_box(0));
            Verdict::warn(format!("recursion ended at {depth}?"))
        }
        Behaviour::BigFrames => {
            let sum = recurse_big(black_box(0));
            Verdict::warn(format!("recursion ended with {sum}?"))
        }
        Behaviour::Panic => panic!("hostile plugin panicked on purpose (request {uid})"),
        Behaviour::Error => return Err(format!("hostile plugin returned an error on purpose (request {uid})")),
        Behaviour::BadJson => Verdict::mutate("[{\"op\": \"add\", this is not JSON"),
        Behaviour::NotAnArray => Verdict::mutate(r#"{"op":"add","path":"/metadata/labels/x","value":"y"}"#),
        Behaviour::NotAnObject => Verdict::mutate(r#"[{"op":"replace","path":"","value":5}]"#),
        Behaviour::Rename => {
            Verdict::mutate(r#"[{"op":"replace","path":"/metadata/name","value":"renamed-by-hostile"}]"#)
        }
        Behaviour::Leak => leak(uid),
    })
}

/// Never returns; only the host's epoch deadline stops it.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocate and touch 1 MiB blocks, keeping all of them, until stopped.
fn hoard() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        // Touch every page, so the memory is really used.
        for byte in block.iter_mut().step_by(4096) {
            *byte = 0xb0;
        }
        blocks.push(black_box(block));
        black_box(&blocks);
    }
}

/// A real wasm trap: no panic, nothing logged.
fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

/// Unbounded, non-tail recursion through a pointer the optimizer cannot see
/// through, so it is neither inlined nor turned into a loop.
fn recurse(depth: u64) -> u64 {
    let next: fn(u64) -> u64 = black_box(recurse);
    next(black_box(depth) + 1).wrapping_add(depth)
}

/// The same with a 64 KiB local array per frame: it lives on the shadow
/// stack in linear memory (1 MiB for Rust on wasm32), which runs out long
/// before the engine's wasm stack does.
fn recurse_big(depth: u64) -> u64 {
    let mut frame = [0u8; 64 << 10];
    frame[(depth as usize) % frame.len()] = depth as u8;
    let frame = black_box(&mut frame);
    let next: fn(u64) -> u64 = black_box(recurse_big);
    next(depth + 1).wrapping_add(u64::from(frame[(depth as usize * 7) % frame.len()]))
}

/// State that would survive between requests if berth reused an instance.
static PREVIOUS_UID: Mutex<Option<String>> = Mutex::new(None);

fn leak(uid: String) -> Verdict {
    let mut previous = PREVIOUS_UID.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let seen = previous.replace(uid);
    Verdict::warn(format!("previous uid: {}", seen.as_deref().unwrap_or("none")))
}

/// The component glue: the only `unsafe` in the crate, all generated.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod guest {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "policy",
    });

    use self::berth::policy::host::{self, Level};
    use self::berth::policy::types::{Decision as WitDecision, Denial};

    struct Hostile;

    impl Guest for Hostile {
        fn validate_settings(settings: String) -> Result<(), String> {
            super::validate_settings(&settings)
        }

        fn evaluate(
            request: String,
            _object: Option<String>,
            _old_object: Option<String>,
            settings: String,
            _context: Context,
        ) -> Result<Verdict, String> {
            install_panic_hook();
            let verdict = super::evaluate(&request, &settings)?;
            let decision = match verdict.decision {
                super::Decision::Allow => WitDecision::Allow,
                super::Decision::Deny { message, code } => WitDecision::Deny(Denial { message, code }),
                super::Decision::Mutate(text) => WitDecision::Mutate(text),
            };
            Ok(Verdict { decision, warnings: verdict.warnings })
        }
    }

    /// As the SDK does: log the panic at `error` before the abort traps, so
    /// berth reports a panic with its message.
    fn install_panic_hook() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| host::log(Level::Error, &format!("panic: {info}"))));
        });
    }

    export!(Hostile);
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = r#"{"uid":"uid-1","object":{"metadata":{"name":"p"}}}"#;

    #[test]
    fn settings_errors_name_the_field() {
        assert_eq!(Behaviour::from_settings(r#"{"behaviour":"loop"}"#), Ok(Behaviour::Loop));
        let err = validate_settings(r#"{"behaviour":"explode"}"#).unwrap_err();
        assert!(err.starts_with("settings.behaviour: unknown behaviour \"explode\""), "{err}");
        assert!(validate_settings("{}").unwrap_err().starts_with("settings.behaviour:"));
        assert!(validate_settings(r#"{"behaviour":1}"#).unwrap_err().starts_with("settings.behaviour:"));
        assert!(validate_settings(r#"{"behavior":"ok"}"#).unwrap_err().starts_with("settings.behavior:"));
    }

    #[test]
    fn bad_outputs_are_what_they_claim() {
        let text =
            |behaviour: &str| match evaluate(REQUEST, &format!(r#"{{"behaviour":"{behaviour}"}}"#)).unwrap().decision {
                Decision::Mutate(text) => text,
                other => panic!("{behaviour}: {other:?}"),
            };
        assert!(serde_json::from_str::<Value>(&text("bad-json")).is_err());
        assert!(serde_json::from_str::<Value>(&text("not-an-array")).unwrap().is_object());
        assert_eq!(serde_json::from_str::<Value>(&text("not-an-object")).unwrap()[0]["value"], 5);
        assert_eq!(serde_json::from_str::<Value>(&text("rename")).unwrap()[0]["path"], "/metadata/name");
    }

    /// Within one instance (here: one process) `leak` does leak; only fresh
    /// instances per call keep requests apart. The runtime tests rely on it.
    #[test]
    fn leak_leaks_when_the_instance_is_reused() {
        let settings = r#"{"behaviour":"leak"}"#;
        evaluate(r#"{"uid":"first"}"#, settings).unwrap();
        let second = evaluate(r#"{"uid":"second"}"#, settings).unwrap();
        assert_eq!(second.warnings, ["previous uid: first"]);
    }
}
