//! A plugin generation: one loaded plugin, its pool of warm instances, and
//! the call path that enforces deadlines and the memory cap and classifies
//! every failure by type.

use crate::bindings::policy_engine::Guest;
use crate::bindings::types::Actor;
use crate::bindings::{TagPolicy, TagPolicyPre};
use crate::entry::PluginStamp;
use crate::error::EngineError;
use crate::host::{Access, CallState, ContractBreach, GuardViolation, HostState};
use crate::limits::{DeadlineExceeded, Limits, MemoryLimitExceeded, ticks};
use crate::registry::TagStore;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::{Store, UpdateDeadline};

struct Worker {
    store: Store<HostState>,
    instance: TagPolicy,
    calls: u64,
}

/// Which deadline a call runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Budget {
    /// Push, delete, manual change, policy record.
    Decision,
    /// Validate, explain, info, preview (extended per scan).
    Query,
    /// A retroactive run (extended per `tag-store` call).
    Run,
}

/// One plugin generation with its instance pool.
pub(crate) struct Generation {
    /// Generation number, from 1.
    pub id: u64,
    pre: TagPolicyPre<HostState>,
    stamp: Arc<PluginStamp>,
    /// `name@version (sha256:...)`, for error messages.
    pub label: String,
    limits: Limits,
    store: Arc<dyn TagStore>,
    pool: Mutex<Vec<Worker>>,
}

impl Generation {
    /// A generation of the pre-instantiated plugin over `store`.
    pub fn new(
        id: u64,
        pre: TagPolicyPre<HostState>,
        stamp: Arc<PluginStamp>,
        limits: Limits,
        store: Arc<dyn TagStore>,
    ) -> Self {
        let stamp = Arc::new(PluginStamp {
            generation: id,
            ..(*stamp).clone()
        });
        let label = stamp.to_string();
        Generation {
            id,
            pre,
            stamp,
            label,
            limits,
            store,
            pool: Mutex::new(Vec::new()),
        }
    }

    /// Name, version and digest of the plugin.
    pub fn stamp(&self) -> &Arc<PluginStamp> {
        &self.stamp
    }

    fn window(&self, budget: Budget) -> Duration {
        match budget {
            Budget::Decision => self.limits.decision_deadline,
            Budget::Query => self.limits.query_deadline,
            Budget::Run => self.limits.run_progress_window,
        }
    }

    fn instantiate(&self) -> Result<Worker, EngineError> {
        let state = HostState::new(self.store.clone(), self.stamp.clone(), &self.limits);
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.memory);
        // No import call may carry more than this from the plugin: the lift traps before
        // the host copies more, so a record cannot make the host allocate past the cap.
        store.set_hostcall_fuel(
            self.limits
                .records
                .max_call_bytes
                .min(self.limits.memory_bytes),
        );
        store.epoch_deadline_callback(|mut ctx| {
            let call = &mut ctx.data_mut().call;
            if std::mem::take(&mut call.progressed) {
                Ok(UpdateDeadline::Continue(ticks(call.window)))
            } else {
                Err(wasmtime::Error::new(DeadlineExceeded(call.window)))
            }
        });
        store
            .data_mut()
            .begin(Access::ReadOnly, None, self.limits.query_deadline);
        store.set_epoch_deadline(ticks(self.limits.query_deadline));
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.classify("instantiate", e, &store))?;
        Ok(Worker {
            store,
            instance,
            calls: 0,
        })
    }

    fn take_worker(&self) -> Result<Worker, EngineError> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        pooled.map_or_else(|| self.instantiate(), Ok)
    }

    /// Runs one export on a pooled instance under `budget`. An instance that
    /// trapped is dropped (its store is poisoned); one that served
    /// `max_calls_per_instance` calls, filled half its stderr, or finds the pool
    /// full (`max_pooled_instances`) is dropped too.
    pub fn call<R>(
        &self,
        name: &'static str,
        access: Access,
        actor: Option<&Actor>,
        budget: Budget,
        f: impl FnOnce(&Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> (Result<R, EngineError>, CallState) {
        let mut worker = match self.take_worker() {
            Ok(w) => w,
            Err(e) => return (Err(e), CallState::default()),
        };
        let window = self.window(budget);
        worker.store.data_mut().begin(access, actor, window);
        worker.store.set_epoch_deadline(ticks(window));
        let result = f(
            worker.instance.tagguard_policy_policy_engine(),
            &mut worker.store,
        );
        worker.calls += 1;
        match result {
            Ok(value) => {
                let state = worker.store.data_mut().finish();
                let reusable = worker.calls < self.limits.max_calls_per_instance
                    && !worker.store.data().stderr_crowded();
                if reusable {
                    let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                    if pool.len() < self.limits.max_pooled_instances {
                        pool.push(worker);
                    }
                }
                (Ok(value), state)
            }
            Err(trap) => {
                let error = self.classify(name, trap, &worker.store);
                (Err(error), worker.store.data_mut().finish())
            }
        }
    }

    /// Instances waiting in the pool.
    pub fn pooled(&self) -> usize {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Turns a trap into a typed error by the type of its cause.
    fn classify(
        &self,
        call: &'static str,
        err: wasmtime::Error,
        store: &Store<HostState>,
    ) -> EngineError {
        let plugin = self.label.clone();
        if let Some(GuardViolation(reason)) = err.downcast_ref::<GuardViolation>() {
            return EngineError::AuditMissing {
                plugin,
                call,
                reason: reason.clone(),
            };
        }
        if let Some(ContractBreach(reason)) = err.downcast_ref::<ContractBreach>() {
            return EngineError::ContractViolation {
                plugin,
                call,
                reason: reason.clone(),
            };
        }
        if let Some(DeadlineExceeded(after)) = err.downcast_ref::<DeadlineExceeded>() {
            return EngineError::Timeout {
                plugin,
                call,
                after: *after,
            };
        }
        if let Some(m) = err.downcast_ref::<MemoryLimitExceeded>() {
            return EngineError::MemoryLimit {
                plugin,
                call,
                limit_bytes: m.cap,
                requested_bytes: m.desired,
            };
        }
        let trap = err.downcast_ref::<wasmtime::Trap>().map(|t| t.to_string());
        let stderr = store.data().stderr_text();
        let mut message = trap.unwrap_or_else(|| format!("{err:#}"));
        if !stderr.is_empty() {
            message = format!("{message}; plugin said: {stderr}");
        }
        EngineError::GuestTrap {
            plugin,
            call,
            message,
        }
    }
}
