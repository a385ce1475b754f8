//! Component glue for wasm32: the wit-bindgen bindings and the conversions
//! between the SDK's types and the WIT ones.

wit_bindgen::generate!({
    path: "../wit",
    world: "policy",
    pub_export_macro: true,
    default_bindings_module: "berth_sdk::guest",
});

use self::berth::policy::host;
pub use self::berth::policy::types::{Context as WitContext, Verdict as WitVerdict};
use self::berth::policy::types::{Decision as WitDecision, Denial};
use crate::{Context as SdkContext, Decision, Verdict as SdkVerdict, level::Level};

pub fn from_wit(context: WitContext) -> SdkContext {
    SdkContext { default_storage_class: context.default_storage_class }
}

pub fn into_wit(verdict: SdkVerdict) -> WitVerdict {
    let decision = match verdict.decision {
        Decision::Allow => WitDecision::Allow,
        Decision::Deny { message, code } => WitDecision::Deny(Denial { message, code }),
        Decision::Mutate(patch) => WitDecision::Mutate(patch.to_json()),
    };
    WitVerdict { decision, warnings: verdict.warnings }
}

pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => host::Level::Trace,
        Level::Debug => host::Level::Debug,
        Level::Info => host::Level::Info,
        Level::Warn => host::Level::Warn,
        Level::Error => host::Level::Error,
    };
    host::log(level, message);
}

/// Report a panic through the host log before the component aborts, so
/// berth can tell a panic (and its message) from any other trap.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            log(Level::Error, &format!("panic: {info}"));
        }));
    });
}
