//! The sandboxed Wasm runtime: one `Engine`, plugins compiled once and kept
//! pre-instantiated, and every call bounded by time, memory and stack.

mod cache;
mod error;
mod host;
mod plugin;

/// The cluster facts a plugin is handed with each request (WIT `context`).
pub use self::berth::policy::types::Context as PluginContext;
pub use cache::{ArtifactCache, DEFAULT_SIZE_LIMIT as DEFAULT_CACHE_SIZE_LIMIT, dir_usage as cache_dir_usage};
pub use error::{LoadError, PluginError, RuntimeError};
pub use plugin::{CallLimits, Isolation, Plugin, PluginDecision, PluginRequest, PluginVerdict};

use host::HostState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

wasmtime::component::bindgen!({
    path: "../plugins/wit",
    world: "policy",
});

/// How often the epoch advances; timeouts are rounded up to this.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Engine-wide settings. Per-call limits are in [`CallLimits`].
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The most memory any one plugin instance may be given; per-policy
    /// limits must not exceed it (it sizes the pooling allocator's slots).
    pub max_memory: usize,
    /// Instances alive at once: the cap on concurrent evaluations.
    pub max_instances: u32,
    /// Idle instances kept warm for reuse, all plugins together. Their pool
    /// slots come on top of `max_instances`, so calls never wait for them.
    pub warm_instances: u32,
    /// Maximum wasm stack per call.
    pub max_wasm_stack: usize,
    /// Where compiled plugins are kept between restarts; `None` disables it.
    pub cache: ArtifactCache,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            max_memory: 256 << 20,
            max_instances: 64,
            warm_instances: 32,
            max_wasm_stack: 512 << 10,
            cache: ArtifactCache::from_env(),
        }
    }
}

/// The engine and everything plugins share. Cheap to share behind an `Arc`;
/// policy sets come and go on reload, the runtime stays.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ArtifactCache,
    max_memory: usize,
    warm_budget: Arc<WarmBudget>,
    ticker: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Runtime {
    pub fn new(options: RuntimeOptions) -> Result<Self, RuntimeError> {
        let instances = options.max_instances + options.warm_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 4)
            .total_memories(instances)
            .total_tables(instances * 4)
            .max_memory_size(options.max_memory)
            // Bounded per component, so that one plugin cannot take many
            // pool slots; room for the few memories of JS or Python guests.
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_core_instances_per_component(64)
            // Keeping a slot's pages resident avoids the madvise/mprotect
            // that made two threads slower than one (see ARCHITECTURE.md).
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(options.max_wasm_stack)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(RuntimeError::Engine)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(RuntimeError::Link)?;
        make_every_pollable_ready(&mut linker).map_err(RuntimeError::Link)?;
        Policy::add_to_linker::<_, wasmtime::component::HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(RuntimeError::Link)?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("berth-epoch".into())
                .spawn(move || {
                    // Count ticks from elapsed time, not from sleeps: a sleep
                    // overshoots under load, and counting sleeps would
                    // stretch every deadline by the sum of the overshoots.
                    let start = std::time::Instant::now();
                    let mut ticks: u128 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        let due = start.elapsed().as_nanos() / EPOCH_TICK.as_nanos();
                        while ticks < due {
                            engine.increment_epoch();
                            ticks += 1;
                        }
                    }
                })
                .map_err(RuntimeError::Ticker)?
        };

        Ok(Self {
            engine,
            linker,
            cache: options.cache,
            max_memory: options.max_memory,
            warm_budget: Arc::new(WarmBudget { idle: AtomicU32::new(0), max: options.warm_instances }),
            ticker: Some(ticker),
            stop,
        })
    }

    /// Compile (or load from the cache) and pre-instantiate a plugin.
    pub fn load(&self, source: &str, wasm: &[u8]) -> Result<Plugin, LoadError> {
        Plugin::load(self, source, wasm)
    }

    pub fn max_memory(&self) -> usize {
        self.max_memory
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    pub(crate) fn cache(&self) -> &ArtifactCache {
        &self.cache
    }

    pub(crate) fn warm_budget(&self) -> &Arc<WarmBudget> {
        &self.warm_budget
    }
}

/// Counts the idle warm instances of every plugin against
/// `RuntimeOptions::warm_instances`.
pub(crate) struct WarmBudget {
    idle: AtomicU32,
    max: u32,
}

impl WarmBudget {
    /// Take a slot for one more idle instance, if there is one.
    fn acquire(&self) -> bool {
        self.idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |idle| (idle < self.max).then_some(idle + 1))
            .is_ok()
    }

    /// An idle instance was taken for a call, or dropped.
    fn release(&self) {
        self.idle.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Guests built with a standard library sleep (and wait on streams) through
/// `wasi:io/poll`. wasmtime-wasi would block the host thread there, where the
/// epoch deadline cannot reach: a plugin sleeping for an hour would hold its
/// worker for an hour. Time does not pass for plugins (their clocks are
/// fixed), so every pollable is ready at once and a sleep returns at once.
fn make_every_pollable_ready(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime::component::Val;
    // A host function that receives borrowed handles must release them.
    fn release(mut store: wasmtime::StoreContextMut<'_, HostState>, values: &[Val]) -> wasmtime::Result<()> {
        for value in values {
            match value {
                Val::Resource(handle) => handle.resource_drop(&mut store)?,
                Val::List(items) => {
                    for item in items {
                        if let Val::Resource(handle) = item {
                            handle.resource_drop(&mut store)?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
    linker.allow_shadowing(true);
    // The interface version wasmtime-wasi 48 defines; guests importing any
    // 0.2.x version resolve to it. `sleeping_plugins_do_not_hold_a_worker`
    // (webhook/tests/runtime.rs) fails if an upgrade changes it.
    let mut poll = linker.instance("wasi:io/poll@0.2.12")?;
    poll.func_new("poll", |store, _, params, results| {
        let count = match params.first() {
            Some(Val::List(pollables)) => pollables.len(),
            _ => 0,
        };
        results[0] = Val::List((0..count).map(|i| Val::U32(i as u32)).collect());
        release(store, params)
    })?;
    poll.func_new("[method]pollable.block", |store, _, params, _| release(store, params))?;
    poll.func_new("[method]pollable.ready", |store, _, params, results| {
        results[0] = Val::Bool(true);
        release(store, params)
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}
