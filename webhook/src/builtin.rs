//! Plugins compiled into the binary by build.rs: `builtin:<name>`.

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

pub const PREFIX: &str = "builtin:";

pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, wasm)| *wasm)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(name, _)| *name)
}

/// Where build.rs left the test-only plugins (plugins/testing/*), for the
/// test suites. Nothing in berth loads from here.
pub const TEST_PLUGIN_DIR: &str = env!("BERTH_TEST_PLUGINS");
