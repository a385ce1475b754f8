//! berth: a Kubernetes admission webhook whose policies are WebAssembly
//! components. docs/ARCHITECTURE.md maps the modules.

pub mod admission;
pub mod builtin;
pub mod cli;
pub mod config;
pub mod matcher;
pub mod patch;
pub mod policy;
pub mod review;
pub mod runtime;
