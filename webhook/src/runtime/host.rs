//! What a plugin's store holds: a WASI context that grants nothing, the
//! memory limiter, and the `log` import.

use super::berth::policy::host::{Host, Level};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Longest panic or error message kept from a guest: room for a Python or
/// JavaScript traceback of a dozen frames.
const MAX_MESSAGE: usize = 4096;

pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    policy: Arc<str>,
    /// The last `error` log line: a panic message if a trap follows.
    pub(super) last_error: Option<String>,
    /// When the current call must end.
    pub(super) deadline: Instant,
}

impl HostState {
    pub fn new(policy: Arc<str>, memory_limit: usize) -> Self {
        Self {
            wasi: sealed_wasi(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter { limit: memory_limit, total: 0, memories: 0, exceeded: None },
            policy,
            last_error: None,
            deadline: Instant::now(),
        }
    }

    /// Ready the store for one call of `policy`: its name in the log, its
    /// memory cap, its deadline, and nothing left from the call before.
    pub(super) fn arm(&mut self, policy: &Arc<str>, limits: super::CallLimits) {
        if !Arc::ptr_eq(&self.policy, policy) {
            self.policy = policy.clone();
        }
        self.limiter.limit = limits.memory;
        self.limiter.exceeded = None;
        self.last_error = None;
        self.deadline = Instant::now() + limits.timeout;
    }
}

/// Deny by default: no preopened directories, no environment, no arguments,
/// no network, empty stdio. Clocks and randomness are fixed so std's
/// `HashMap` works and two evaluations of one input always agree.
fn sealed_wasi() -> WasiCtx {
    WasiCtxBuilder::new()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(FixedClock)
        .monotonic_clock(FixedClock)
        .secure_random(wasmtime_wasi::random::Deterministic::new(vec![0x5a; 32]))
        .insecure_random(wasmtime_wasi::random::Deterministic::new(vec![0xa5; 32]))
        .insecure_random_seed(0)
        .build()
}

struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    /// One second, not zero: Go's runtime refuses to start on a monotonic
    /// clock that reads zero (`nanotime returning zero`).
    fn now(&self) -> u64 {
        1_000_000_000
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The `types` interface has no functions; its host trait is empty.
impl super::berth::policy::types::Host for HostState {}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let policy = &*self.policy;
        match level {
            Level::Trace => tracing::trace!(policy, "{message}"),
            Level::Debug => tracing::debug!(policy, "{message}"),
            Level::Info => tracing::info!(policy, "{message}"),
            Level::Warn => tracing::warn!(policy, "{message}"),
            Level::Error => {
                tracing::error!(policy, "{message}");
                let mut message = message;
                truncate(&mut message, MAX_MESSAGE);
                self.last_error = Some(message);
            }
        }
    }
}

/// Raised from the limiter, so an out-of-memory trap is found by type.
#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded: {desired} bytes in all > {limit}")]
pub struct MemoryLimitExceeded {
    pub desired: usize,
    pub limit: usize,
}

/// The memory cap is for the whole call: a component may have several
/// linear memories, and their sizes add up.
pub struct MemoryLimiter {
    limit: usize,
    /// Bytes of linear memory in use across every memory of the instance.
    total: usize,
    /// Linear memories created (each starts with a grow from 0).
    memories: usize,
    pub(super) exceeded: Option<usize>,
}

impl MemoryLimiter {
    /// Bytes of linear memory the instance holds.
    pub(super) fn total(&self) -> usize {
        self.total
    }

    pub(super) fn memories(&self) -> usize {
        self.memories
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            self.exceeded = Some(total);
            // An error here traps the guest at once, rather than letting it
            // see a failed grow it may not handle.
            return Err(wasmtime::Error::new(MemoryLimitExceeded { desired: total, limit: self.limit }));
        }
        self.total = total;
        if current == 0 {
            self.memories += 1;
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
}
