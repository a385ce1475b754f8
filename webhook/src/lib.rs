//! berth: a Kubernetes admission webhook whose policies are WebAssembly
//! components. docs/ARCHITECTURE.md maps the modules.

pub mod admission;
pub mod audit;
pub mod builtin;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod matcher;
pub mod patch;
pub mod policy;
pub mod review;
pub mod runtime;
pub mod server;

/// An error and its sources on one line, for logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
