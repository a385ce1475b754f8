//! berth's library driven through its public API, with real plugins: the
//! chain, the runtime, the sandbox and the audit log. One module each, in one
//! test binary, because every test binary links wasmtime.

mod audit;
mod chain;
mod runtime;
mod sandbox;
