//! How much a log line matters: shared by the log facade ([`crate::log`])
//! and the sinks it writes to (the host in Wasm, the test capture natively),
//! so that neither sink depends on the facade.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}
