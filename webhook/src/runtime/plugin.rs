//! One loaded plugin: compiled once, pre-instantiated, and called in a
//! bounded store: a warm instance reused by one call at a time, or a fresh
//! one for policies that ask for `isolation: fresh`.

use super::berth::policy::types::Decision as WitDecision;
use super::error::{LoadError, PluginError};
use super::host::{HostState, MemoryLimitExceeded};
use super::{EPOCH_TICK, PolicyPre, Runtime};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap, UpdateDeadline};

/// Bounds on one call.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub timeout: Duration,
    pub memory: usize,
    pub isolation: Isolation,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self { timeout: Duration::from_millis(100), memory: 64 << 20, isolation: Isolation::Reuse }
    }
}

/// How much one call of a plugin is kept apart from the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A warm instance, used by one call at a time and thrown away after
    /// any failure or 1,000 calls. Plugins are stateless by contract.
    #[default]
    Reuse,
    /// A new instance for every call: for a plugin that keeps state.
    Fresh,
}

/// A warm instance serves this many calls, then is thrown away: whatever a
/// guest accumulates despite the stateless contract lives that long at most.
const MAX_CALLS: u32 = 1000;

/// A warm instance whose memories grew past this is not kept: one huge
/// object must not pin its memory for good.
const MAX_WARM_MEMORY: usize = 8 << 20;

/// An instance between calls. Only one call uses it at a time.
struct Warm {
    store: Store<HostState>,
    instance: super::Policy,
    calls: u32,
}

/// One admission request as a plugin gets it (WIT `evaluate`): the
/// AdmissionRequest JSON without its objects, and each object's JSON text.
#[derive(Debug, Clone, Copy)]
pub struct PluginRequest<'a> {
    pub request: &'a str,
    pub object: Option<&'a str>,
    pub old_object: Option<&'a str>,
}

/// What a plugin decided, as the host sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginVerdict {
    pub decision: PluginDecision,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PluginDecision {
    Allow,
    Deny {
        message: String,
        code: u16,
    },
    /// An RFC 6902 patch, as JSON text (checked by the caller).
    Mutate(String),
}

pub struct Plugin {
    /// Shared, not copied, by the outcome of every call (the audit log's).
    source: Arc<str>,
    sha256: Arc<str>,
    pre: PolicyPre<HostState>,
    engine: wasmtime::Engine,
    /// Idle warm instances; shared by every policy using this plugin (the
    /// store is re-armed with the policy's name and limits on each call).
    warm: Mutex<Vec<Warm>>,
    budget: Arc<super::WarmBudget>,
    instantiations: AtomicU64,
    /// Keeps the compiled artifact's cache entry among those in use (evicted
    /// last) while this plugin is loaded.
    _cached: Option<super::cache::InUse>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("source", &self.source).field("sha256", &self.sha256).finish()
    }
}

impl Plugin {
    pub(super) fn load(runtime: &Runtime, source: &str, wasm: &[u8]) -> Result<Self, LoadError> {
        let sha256: Arc<str> = hex::encode(Sha256::digest(wasm)).into();
        let (component, cached) = runtime
            .cache()
            .component(runtime.engine(), &sha256, wasm)
            .map_err(|error| LoadError::Compile { source_name: source.to_owned(), error })?;
        let instance_pre = runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(|error| LoadError::Link { source_name: source.to_owned(), error })?;
        let pre =
            PolicyPre::new(instance_pre).map_err(|error| LoadError::Link { source_name: source.to_owned(), error })?;
        Ok(Self {
            source: source.into(),
            sha256,
            pre,
            engine: runtime.engine().clone(),
            warm: Mutex::new(Vec::new()),
            budget: runtime.warm_budget().clone(),
            instantiations: AtomicU64::new(0),
            _cached: cached,
        })
    }

    /// Where the plugin came from: `builtin:<name>` or a path.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// [`Plugin::source`] and [`Plugin::sha256`], to keep without copying.
    pub fn names(&self) -> (Arc<str>, Arc<str>) {
        (self.source.clone(), self.sha256.clone())
    }

    /// Instances made so far (warm ones are reused, not counted again).
    pub fn instantiations(&self) -> u64 {
        self.instantiations.load(Ordering::Relaxed)
    }

    /// Call `validate-settings`.
    pub fn validate_settings(&self, policy: &Arc<str>, settings: &str, limits: CallLimits) -> Result<(), LoadError> {
        let (mut store, instance) = self.instantiate(policy, limits).map_err(LoadError::SettingsCall)?;
        match instance.call_validate_settings(&mut store, settings) {
            Ok(Ok(())) => {
                // Warm for the first request.
                if limits.isolation == Isolation::Reuse {
                    self.keep_warm(Warm { store, instance, calls: 1 });
                }
                Ok(())
            }
            Ok(Err(message)) => Err(LoadError::Settings { message }),
            Err(err) => Err(LoadError::SettingsCall(classify(err, &store, limits))),
        }
    }

    /// Call `evaluate` on one admission request: in a warm instance,
    /// unless the policy asks for a fresh one. An instance that a trap, a
    /// timeout or a memory error ended is never used again.
    pub fn evaluate(
        &self,
        policy: &Arc<str>,
        request: PluginRequest<'_>,
        settings: &str,
        context: &super::PluginContext,
        limits: CallLimits,
    ) -> Result<PluginVerdict, PluginError> {
        let warm = match limits.isolation {
            Isolation::Reuse => self.take_warm(),
            Isolation::Fresh => None,
        };
        // Another policy's instance may have grown past this one's cap.
        let mut warm = match warm.filter(|warm| warm.store.data().limiter.total() <= limits.memory) {
            Some(mut warm) => {
                warm.store.data_mut().arm(policy, limits);
                warm.store.set_epoch_deadline(deadline_ticks(limits.timeout));
                warm
            }
            // Armed before instantiation: its deadline covers the start
            // functions and the call together.
            None => {
                let (store, instance) = self.instantiate(policy, limits)?;
                Warm { store, instance, calls: 0 }
            }
        };
        warm.calls += 1;
        let PluginRequest { request, object, old_object } = request;
        let result = match warm.instance.call_evaluate(&mut warm.store, request, object, old_object, settings, context)
        {
            Ok(Ok(verdict)) => Ok(verdict),
            Ok(Err(message)) => Err(PluginError::Policy(message)),
            Err(err) => Err(classify(err, &warm.store, limits)),
        };
        // A trap, a timeout or a memory error may have left the instance
        // anywhere; an error the plugin returned did not.
        if limits.isolation == Isolation::Reuse && result.as_ref().err().is_none_or(|err| !err.poisons_instance()) {
            self.keep_warm(warm);
        }
        let verdict = result?;
        let decision = match verdict.decision {
            WitDecision::Allow => PluginDecision::Allow,
            WitDecision::Deny(denial) => PluginDecision::Deny { message: denial.message, code: denial.code },
            WitDecision::Mutate(patch) => PluginDecision::Mutate(patch),
        };
        Ok(PluginVerdict { decision, warnings: verdict.warnings })
    }

    fn take_warm(&self) -> Option<Warm> {
        let warm = self.warm.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop()?;
        self.budget.release();
        Some(warm)
    }

    /// Keep an instance for the next call, if it is still worth keeping and
    /// the runtime has a slot to spare for it.
    fn keep_warm(&self, warm: Warm) {
        let state = warm.store.data();
        // The budget counts instances; the pool's slots are per memory, so
        // only single-memory components stay warm (JS or Python guests
        // with several memories are instantiated per call).
        if warm.calls >= MAX_CALLS || state.limiter.total() > MAX_WARM_MEMORY || state.limiter.memories() > 1 {
            return;
        }
        if self.budget.acquire() {
            self.warm.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(warm);
        }
    }

    fn instantiate(
        &self,
        policy: &Arc<str>,
        limits: CallLimits,
    ) -> Result<(Store<HostState>, super::Policy), PluginError> {
        self.instantiations.fetch_add(1, Ordering::Relaxed);
        let mut store = Store::new(&self.engine, HostState::new(policy.clone(), limits.memory));
        store.limiter(|state| &mut state.limiter);
        // The deadline covers instantiation too (start functions run there).
        // Epochs only say when to look at the clock: the ticker can lag under
        // load and then catch up in a burst, so the decision is taken
        // against real time, never early and at most a tick or two late.
        store.data_mut().arm(policy, limits);
        store.set_epoch_deadline(deadline_ticks(limits.timeout));
        store.epoch_deadline_callback(|store| {
            let now = Instant::now();
            let deadline = store.data().deadline;
            if now >= deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Continue(deadline_ticks(deadline - now)))
        });
        match self.pre.instantiate(&mut store) {
            Ok(instance) => Ok((store, instance)),
            Err(err) => Err(classify(err, &store, limits)),
        }
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let warm = self.warm.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        for _ in warm.drain(..) {
            self.budget.release();
        }
    }
}

fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    // Round up, plus one: the current tick may be nearly over.
    (timeout.as_nanos().div_ceil(tick) as u64).max(1) + 1
}

/// Turn a failed call into its typed error, by the error's type.
fn classify(err: wasmtime::Error, store: &Store<HostState>, limits: CallLimits) -> PluginError {
    if let Some(exceeded) = err.downcast_ref::<MemoryLimitExceeded>() {
        return PluginError::OutOfMemory { desired: exceeded.desired, limit: exceeded.limit };
    }
    if let Some(desired) = store.data().limiter.exceeded {
        return PluginError::OutOfMemory { desired, limit: limits.memory };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Timeout { after: limits.timeout },
        Some(Trap::StackOverflow) => PluginError::StackOverflow,
        Some(Trap::UnreachableCodeReached) if store.data().last_error.is_some() => {
            let logged = store.data().last_error.as_deref().unwrap_or_default();
            // The SDKs log `panic: ` before the message; the error's kind
            // says so already.
            let message = logged.strip_prefix("panic: ").unwrap_or(logged).to_owned();
            PluginError::Panic { message }
        }
        Some(trap) => PluginError::Trap { trap: *trap, detail: store.data().last_error.clone() },
        None => PluginError::Internal(err),
    }
}
