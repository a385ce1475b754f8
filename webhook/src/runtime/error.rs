use std::time::Duration;
use thiserror::Error;
use wasmtime::Trap;

/// The engine could not be set up.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("configuring the wasm engine")]
    Engine(#[source] wasmtime::Error),
    #[error("linking the host interfaces")]
    Link(#[source] wasmtime::Error),
    #[error("starting the epoch ticker")]
    Ticker(#[source] std::io::Error),
}

/// A plugin could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("{source_name} is not a valid policy component")]
    Compile {
        source_name: String,
        #[source]
        error: wasmtime::Error,
    },
    #[error(
        "{source_name} does not fit the berth:policy world (wrong WIT version, or an import berth does not provide)"
    )]
    Link {
        source_name: String,
        #[source]
        error: wasmtime::Error,
    },
    #[error("{source_name}: sha256 is {actual}, but the policy pins {expected}")]
    Checksum { source_name: String, expected: String, actual: String },
    #[error("rejected settings: {message}")]
    Settings { message: String },
    #[error("validating settings failed ({})", .0.kind())]
    SettingsCall(#[source] PluginError),
}

/// One plugin call failed. Each way a sandboxed call can end badly has its
/// own variant, found by type (a `Trap` code, our limiter's error), never by
/// reading error strings.
#[derive(Debug, Error)]
pub enum PluginError {
    #[error("timed out after {after:?}")]
    Timeout { after: Duration },
    #[error("ran out of memory: tried to grow to {desired} bytes in all, limit is {limit}")]
    OutOfMemory { desired: usize, limit: usize },
    #[error("overflowed its stack")]
    StackOverflow,
    /// What the guest logged at `error` before it trapped: the SDKs'
    /// panic hooks log the panic's message there (Python and JavaScript
    /// with the traceback). Shown as it is, after the kind `panic`.
    #[error("{message}")]
    Panic { message: String },
    #[error("trapped: {trap}{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Trap { trap: Trap, detail: Option<String> },
    #[error("returned an error: {0}")]
    Policy(String),
    #[error("returned bad output: {0}")]
    BadOutput(String),
    #[error("could not be run")]
    Internal(#[source] wasmtime::Error),
}

impl PluginError {
    /// A short, stable name for metrics, logs and audit records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::OutOfMemory { .. } => "out_of_memory",
            Self::StackOverflow => "stack_overflow",
            Self::Panic { .. } => "panic",
            Self::Trap { .. } => "trap",
            Self::Policy(_) => "policy_error",
            Self::BadOutput(_) => "bad_output",
            Self::Internal(_) => "internal",
        }
    }

    /// Whether the instance that produced this error must not be reused.
    pub fn poisons_instance(&self) -> bool {
        !matches!(self, Self::Policy(_) | Self::BadOutput(_))
    }
}
