//! One loaded plugin: compiled once, pre-instantiated, and called in a fresh,
//! bounded store every time.

use super::berth::policy::types::Decision as WitDecision;
use super::error::{LoadError, PluginError};
use super::host::{HostState, MemoryLimitExceeded, truncate};
use super::{EPOCH_TICK, PolicyPre, Runtime};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap, UpdateDeadline};

/// Bounds on one call.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub timeout: Duration,
    pub memory: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self { timeout: Duration::from_millis(100), memory: 64 << 20 }
    }
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
    source: String,
    sha256: String,
    pre: PolicyPre<HostState>,
    engine: wasmtime::Engine,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("source", &self.source).field("sha256", &self.sha256).finish()
    }
}

impl Plugin {
    pub(super) fn load(runtime: &Runtime, source: &str, wasm: &[u8]) -> Result<Self, LoadError> {
        let sha256 = hex::encode(Sha256::digest(wasm));
        let component = runtime
            .cache()
            .component(runtime.engine(), &sha256, wasm)
            .map_err(|error| LoadError::Compile { source_name: source.to_owned(), error })?;
        let instance_pre = runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(|error| LoadError::Link { source_name: source.to_owned(), error })?;
        let pre =
            PolicyPre::new(instance_pre).map_err(|error| LoadError::Link { source_name: source.to_owned(), error })?;
        Ok(Self { source: source.to_owned(), sha256, pre, engine: runtime.engine().clone() })
    }

    /// Where the plugin came from: `builtin:<name>` or a path.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Call `validate-settings`.
    pub fn validate_settings(&self, policy: &Arc<str>, settings: &str, limits: CallLimits) -> Result<(), LoadError> {
        let (mut store, instance) = self.instantiate(policy, limits).map_err(LoadError::SettingsCall)?;
        match instance.call_validate_settings(&mut store, settings) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(LoadError::Settings { message }),
            Err(err) => Err(LoadError::SettingsCall(classify(err, &store, limits))),
        }
    }

    /// Call `evaluate` on an AdmissionRequest (JSON) in a fresh instance.
    pub fn evaluate(
        &self,
        policy: &Arc<str>,
        request: &str,
        settings: &str,
        context: &super::PluginContext,
        limits: CallLimits,
    ) -> Result<PluginVerdict, PluginError> {
        let (mut store, instance) = self.instantiate(policy, limits)?;
        let verdict = match instance.call_evaluate(&mut store, request, settings, context) {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(message)) => return Err(PluginError::Policy(message)),
            Err(err) => return Err(classify(err, &store, limits)),
        };
        let decision = match verdict.decision {
            WitDecision::Allow => PluginDecision::Allow,
            WitDecision::Deny(denial) => PluginDecision::Deny { message: denial.message, code: denial.code },
            WitDecision::Mutate(patch) => PluginDecision::Mutate(patch),
        };
        Ok(PluginVerdict { decision, warnings: verdict.warnings })
    }

    fn instantiate(
        &self,
        policy: &Arc<str>,
        limits: CallLimits,
    ) -> Result<(Store<HostState>, super::Policy), PluginError> {
        let mut store = Store::new(&self.engine, HostState::new(policy.clone(), limits.memory));
        store.limiter(|state| &mut state.limiter);
        // The deadline covers instantiation too (start functions run there).
        // Epochs only say when to look at the clock: the ticker can lag under
        // load and then catch up in a burst, so the decision is taken
        // against real time, never early and at most a tick or two late.
        let deadline = Instant::now() + limits.timeout;
        store.set_epoch_deadline(deadline_ticks(limits.timeout));
        store.epoch_deadline_callback(move |_| {
            let now = Instant::now();
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
            let mut message = store.data().last_error.clone().unwrap_or_default();
            truncate(&mut message, 1024);
            PluginError::Panic { message }
        }
        Some(trap) => PluginError::Trap { trap: *trap, detail: store.data().last_error.clone() },
        None => PluginError::Internal(err),
    }
}
