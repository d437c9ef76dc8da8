//! [`TagGuard`]: the typed API a registry calls, one method per decision.
//! Every method runs the plugin, checks its outcome against its records, and
//! commits both through the registry's [`AuditSink`] in one transaction.

use crate::bindings::TagPolicy;
use crate::bindings::policy_engine::{
    DeleteDecision, DeleteRequest, Guest, PluginInfo, PreviewReport, PushDecision, PushRequest,
    RunOptions, RunSummary, RunTrigger,
};
use crate::bindings::types::{Actor, Error as PluginError, Policy, PolicyMatch, RecordKind, Tag};
use crate::entry::{AuditEntry, Performer, PluginStamp};
use crate::error::EngineError;
use crate::guard;
use crate::host::{Access, CallState, GuardViolation, HostState, RecordLimits};
use crate::plugin::Plugin;
use crate::registry::{AuditSink, Change, TagStore};
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use wasmtime::Store;

/// Engine settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Tags per batch in retroactive runs.
    pub batch_size: u32,
    /// Caps on staged records.
    pub limits: RecordLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            batch_size: 500,
            limits: RecordLimits::default(),
        }
    }
}

/// The result of a push decision that was committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Refused (409 `TAG_IMMUTABLE`); the denial was recorded.
    Denied {
        /// The policies that keep the tag immutable.
        matched: Vec<PolicyMatch>,
    },
    /// The tag was created or moved.
    Created {
        /// Whether it is immutable now.
        immutable: bool,
        /// The policies that fired.
        matched: Vec<PolicyMatch>,
    },
}

/// The result of a delete or expiry decision that was committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The registry's change was applied.
    Allowed,
    /// Refused; the denial of each blocking tag was recorded.
    Denied {
        /// Ids of the immutable tags that block it.
        tag_ids: Vec<u64>,
    },
}

/// A policy stored together with its record, and its retroactive run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyOutcome {
    /// The stored (normalised) policy.
    pub policy: Policy,
    /// What the retroactive run changed.
    pub run: RunSummary,
}

struct Worker {
    store: Store<HostState>,
    instance: TagPolicy,
}

/// The host a registry embeds: one plugin, the registry's store and sink, and
/// a pool of warm instances (a `Store` is not `Sync`, so one per caller).
pub struct TagGuard {
    plugin: Plugin,
    label: String,
    store: Arc<dyn TagStore>,
    sink: Arc<dyn AuditSink>,
    settings: Settings,
    pool: Mutex<Vec<Worker>>,
    runs: AtomicU64,
}

impl TagGuard {
    /// A host for `plugin` over the registry's tag store and audit sink.
    pub fn new(
        plugin: Plugin,
        store: Arc<dyn TagStore>,
        sink: Arc<dyn AuditSink>,
        settings: Settings,
    ) -> Self {
        let label = plugin.stamp().to_string();
        TagGuard {
            plugin,
            label,
            store,
            sink,
            settings,
            pool: Mutex::new(Vec::new()),
            runs: AtomicU64::new(0),
        }
    }

    /// What the plugin reports about itself.
    pub fn info(&self) -> &PluginInfo {
        self.plugin.info()
    }

    /// Name, version and digest of the plugin, as stamped on records.
    pub fn stamp(&self) -> &PluginStamp {
        self.plugin.stamp()
    }

    fn instantiate(&self) -> Result<Worker, EngineError> {
        let state = HostState::new(
            self.store.clone(),
            self.plugin.stamp().clone(),
            self.settings.limits,
        );
        let mut store = Store::new(self.plugin.pre().engine(), state);
        let instance =
            self.plugin
                .pre()
                .instantiate(&mut store)
                .map_err(|e| EngineError::Load {
                    plugin: self.label.clone(),
                    reason: format!("instantiation failed: {e:#}"),
                })?;
        Ok(Worker { store, instance })
    }

    /// Runs one export on a pooled instance. A trapped instance is dropped, never reused.
    fn call<R>(
        &self,
        name: &'static str,
        access: Access,
        actor: Option<&Actor>,
        f: impl FnOnce(&Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> (Result<R, EngineError>, CallState) {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut worker = match pooled.map_or_else(|| self.instantiate(), Ok) {
            Ok(w) => w,
            Err(e) => return (Err(e), CallState::default()),
        };
        worker.store.data_mut().begin(access, actor);
        let result = f(
            worker.instance.tagguard_policy_policy_engine(),
            &mut worker.store,
        );
        let state = worker.store.data_mut().finish();
        match result {
            Ok(value) => {
                self.pool
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(worker);
                (Ok(value), state)
            }
            Err(trap) => (Err(self.classify(name, trap)), state),
        }
    }

    fn classify(&self, call: &'static str, err: wasmtime::Error) -> EngineError {
        if let Some(GuardViolation(reason)) = err.downcast_ref::<GuardViolation>() {
            return self.audit_missing(call, reason.clone());
        }
        EngineError::GuestTrap {
            plugin: self.label.clone(),
            call,
            message: format!("{err:#}"),
        }
    }

    fn audit_missing(&self, call: &'static str, reason: String) -> EngineError {
        EngineError::AuditMissing {
            plugin: self.label.clone(),
            call,
            reason,
        }
    }

    fn plugin_error(
        &self,
        call: &'static str,
        error: PluginError,
        state: &CallState,
    ) -> EngineError {
        let plugin = self.label.clone();
        match error {
            PluginError::Store(message) => EngineError::HostStore {
                plugin,
                call,
                message: state.store_error.clone().unwrap_or(message),
            },
            PluginError::Audit(reason) => EngineError::AuditMissing {
                plugin,
                call,
                reason,
            },
            error => EngineError::Plugin {
                plugin,
                call,
                error,
            },
        }
    }

    fn commit(
        &self,
        call: &'static str,
        change: Change,
        entries: Vec<AuditEntry>,
    ) -> Result<(), EngineError> {
        self.sink
            .commit(change, entries)
            .map_err(|e| EngineError::HostAudit {
                plugin: self.label.clone(),
                call,
                message: e.0,
            })
    }

    /// Runs a call that returns `result<T, error>` and flattens both error layers.
    fn decide<T>(
        &self,
        name: &'static str,
        access: Access,
        actor: Option<&Actor>,
        f: impl FnOnce(&Guest, &mut Store<HostState>) -> wasmtime::Result<Result<T, PluginError>>,
    ) -> (Result<T, EngineError>, CallState) {
        let (result, state) = self.call(name, access, actor, f);
        let result = match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.plugin_error(name, e, &state)),
            Err(e) => Err(e),
        };
        (result, state)
    }

    /// Checks and normalises a candidate policy against the existing ones.
    pub fn validate_policy(
        &self,
        candidate: &Policy,
        existing: &[Policy],
    ) -> Result<Policy, EngineError> {
        const CALL: &str = "validate-policy";
        let (result, _) = self.call(CALL, Access::ReadOnly, None, |g, s| {
            g.call_validate_policy(s, candidate, existing)
        });
        result?.map_err(|error| EngineError::InvalidPolicy {
            plugin: self.label.clone(),
            call: CALL,
            error,
        })
    }

    /// Decides a push and commits the tag together with its record.
    pub fn push(&self, req: &PushRequest) -> Result<PushOutcome, EngineError> {
        const CALL: &str = "on-push";
        let (result, state) = self.decide(CALL, Access::Stage, Some(&req.actor), |g, s| {
            g.call_on_push(s, req)
        });
        let decision = result?;
        guard::push(req, &decision, &state.staged).map_err(|r| self.audit_missing(CALL, r))?;
        match decision {
            PushDecision::Deny(matched) => {
                self.commit(CALL, Change::None, state.staged)?;
                Ok(PushOutcome::Denied { matched })
            }
            PushDecision::Create(c) => {
                let change = Change::PutTag {
                    namespace: req.namespace.clone(),
                    repository: req.repository.clone(),
                    name: req.tag_name.clone(),
                    manifest_digest: req.manifest_digest.clone(),
                    immutable: c.immutable,
                    replaces: req.existing.as_ref().map(|t| t.id),
                };
                self.commit(CALL, change, state.staged)?;
                Ok(PushOutcome::Created {
                    immutable: c.immutable,
                    matched: c.matched,
                })
            }
        }
    }

    /// Decides a delete or expiry; applies `then` when allowed, records the denial otherwise.
    pub fn delete(&self, req: &DeleteRequest, then: Change) -> Result<DeleteOutcome, EngineError> {
        const CALL: &str = "on-delete";
        let (result, state) = self.decide(CALL, Access::Stage, Some(&req.actor), |g, s| {
            g.call_on_delete(s, req)
        });
        let decision = result?;
        guard::delete(req, &decision, &state.staged).map_err(|r| self.audit_missing(CALL, r))?;
        match decision {
            DeleteDecision::Allow => {
                self.commit(CALL, then, Vec::new())?;
                Ok(DeleteOutcome::Allowed)
            }
            DeleteDecision::Deny(tag_ids) => {
                self.commit(CALL, Change::None, state.staged)?;
                Ok(DeleteOutcome::Denied { tag_ids })
            }
        }
    }

    /// Sets a tag's immutability by hand; returns whether it changed. The registry
    /// checks permissions (clearing needs an admin) before calling.
    pub fn manual_change(
        &self,
        actor: &Actor,
        tag: &Tag,
        immutable: bool,
    ) -> Result<bool, EngineError> {
        const CALL: &str = "on-manual-change";
        let (result, state) = self.decide(CALL, Access::Stage, Some(actor), |g, s| {
            g.call_on_manual_change(s, actor, tag, immutable)
        });
        let changed = result?;
        guard::manual_change(tag, immutable, changed, &state.staged)
            .map_err(|r| self.audit_missing(CALL, r))?;
        if changed {
            self.commit(
                CALL,
                Change::SetImmutable {
                    tag_id: tag.id,
                    immutable,
                },
                state.staged,
            )?;
        }
        Ok(changed)
    }

    /// Validates and stores a new policy with its record, then applies it to existing tags.
    /// If the run stops part way the policy stays stored and the error is `RunIncomplete`.
    pub fn create_policy(
        &self,
        actor: &Actor,
        candidate: &Policy,
        existing: &[Policy],
    ) -> Result<PolicyOutcome, EngineError> {
        const CALL: &str = "on-policy-created";
        let policy = self.validate_policy(candidate, existing)?;
        let (result, state) = self.decide(CALL, Access::Stage, Some(actor), |g, s| {
            g.call_on_policy_created(s, actor, &policy)
        });
        result?;
        guard::policy_change(RecordKind::CreateImmutabilityPolicy, &policy, &state.staged)
            .map_err(|r| self.audit_missing(CALL, r))?;
        self.commit(CALL, Change::InsertPolicy(policy.clone()), state.staged)?;
        let run = self.apply_policy(actor, &policy, RunTrigger::PolicyCreated)?;
        Ok(PolicyOutcome { policy, run })
    }

    /// Validates and stores a policy update with its record (before and after), then
    /// applies the new pattern to existing tags. Never makes a tag mutable.
    pub fn update_policy(
        &self,
        actor: &Actor,
        before: &Policy,
        candidate: &Policy,
        existing: &[Policy],
    ) -> Result<PolicyOutcome, EngineError> {
        const CALL: &str = "on-policy-updated";
        let after = self.validate_policy(candidate, existing)?;
        let (result, state) = self.decide(CALL, Access::Stage, Some(actor), |g, s| {
            g.call_on_policy_updated(s, actor, before, &after)
        });
        result?;
        guard::policy_change(RecordKind::UpdateImmutabilityPolicy, &after, &state.staged)
            .map_err(|r| self.audit_missing(CALL, r))?;
        self.commit(CALL, Change::UpdatePolicy(after.clone()), state.staged)?;
        let run = self.apply_policy(actor, &after, RunTrigger::PolicyUpdated)?;
        Ok(PolicyOutcome { policy: after, run })
    }

    /// Deletes a policy with its record. Tags it made immutable stay immutable.
    pub fn delete_policy(&self, actor: &Actor, policy: &Policy) -> Result<(), EngineError> {
        const CALL: &str = "on-policy-deleted";
        let (result, state) = self.decide(CALL, Access::Stage, Some(actor), |g, s| {
            g.call_on_policy_deleted(s, actor, policy)
        });
        result?;
        guard::policy_change(RecordKind::DeleteImmutabilityPolicy, policy, &state.staged)
            .map_err(|r| self.audit_missing(CALL, r))?;
        self.commit(
            CALL,
            Change::DeletePolicy(policy.uuid.clone()),
            state.staged,
        )
    }

    fn next_run_id(&self) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        format!("run-{nanos:x}-{n}")
    }

    /// Applies a stored policy to the existing tags in its scope (a retroactive run).
    /// Each batch commits its tags with their records; the summary is committed at
    /// the end, with status `failed` if the run stopped.
    pub fn apply_policy(
        &self,
        actor: &Actor,
        policy: &Policy,
        trigger: RunTrigger,
    ) -> Result<RunSummary, EngineError> {
        const CALL: &str = "run-retroactive";
        let options = RunOptions {
            run_id: self.next_run_id(),
            batch_size: self.settings.batch_size,
        };
        let access = Access::Run {
            run_id: options.run_id.clone(),
            policy_uuid: policy.uuid.clone(),
        };
        let (result, state) = self.decide(CALL, access, Some(actor), |g, s| {
            g.call_run_retroactive(s, actor, policy, trigger, &options)
        });
        let checked = result.and_then(|summary| {
            if summary.count != state.marked || summary.run_id != options.run_id {
                return Err(self.audit_missing(
                    CALL,
                    format!(
                        "the plugin reports {} changed tags, the host saw {}",
                        summary.count, state.marked
                    ),
                ));
            }
            guard::run_summary(
                &options.run_id,
                policy,
                "completed",
                state.marked,
                &state.staged,
            )
            .map_err(|r| self.audit_missing(CALL, r))?;
            Ok(summary)
        });
        match checked {
            Ok(summary) => {
                self.commit(CALL, Change::None, state.staged)?;
                Ok(summary)
            }
            Err(cause) => {
                let staged = guard::run_summary(
                    &options.run_id,
                    policy,
                    "failed",
                    state.marked,
                    &state.staged,
                )
                .map(|()| state.staged.clone())
                .unwrap_or_else(|_| {
                    vec![self.host_run_summary(actor, policy, trigger, &options, &state, &cause)]
                });
                // The summary is best kept even if it cannot be written: every changed tag
                // already carries its own record, committed with it.
                let cause = match self.commit(CALL, Change::None, staged) {
                    Ok(()) => cause,
                    Err(sink) => EngineError::HostAudit {
                        plugin: self.label.clone(),
                        call: CALL,
                        message: format!(
                            "{cause}; and the failed-run summary could not be written: {sink}"
                        ),
                    },
                };
                Err(EngineError::RunIncomplete {
                    plugin: self.label.clone(),
                    run_id: options.run_id,
                    policy_uuid: policy.uuid.clone(),
                    changed: state.marked,
                    cause: Box::new(cause),
                })
            }
        }
    }

    /// The failed-run summary the host writes when the plugin could not (it trapped or
    /// broke the contract).
    fn host_run_summary(
        &self,
        actor: &Actor,
        policy: &Policy,
        trigger: RunTrigger,
        options: &RunOptions,
        state: &CallState,
        cause: &EngineError,
    ) -> AuditEntry {
        let trigger = match trigger {
            RunTrigger::PolicyCreated => "policy_created",
            RunTrigger::PolicyUpdated => "policy_updated",
            RunTrigger::Reapplied => "reapplied",
        };
        let Value::Object(metadata) = json!({
            "run_id": options.run_id,
            "trigger": trigger,
            "count": state.marked,
            "tags_affected_count": state.marked,
            "sample_tags": state.first_marked,
            "batch_size": options.batch_size,
            "status": "failed",
            "outcome": "failed",
            "error": cause.to_string(),
            "written_by": "host",
            "policy_uuid": policy.uuid,
            "policy_pattern": policy.tag_pattern,
            "policy_pattern_matches": policy.tag_pattern_matches,
            "policy_scope": policy.scope.as_str(),
        }) else {
            unreachable!("json! of an object literal is an object")
        };
        AuditEntry::by_host(
            RecordKind::TagsMadeImmutableByPolicy,
            &policy.namespace,
            policy.repository.as_deref(),
            &Performer::of(actor),
            self.plugin.stamp(),
            Map::from_iter(metadata),
        )
    }

    /// Every policy among `policies` that fires for `tag_name`.
    pub fn explain(
        &self,
        tag_name: &str,
        policies: &[Policy],
    ) -> Result<Vec<PolicyMatch>, EngineError> {
        self.decide("explain", Access::ReadOnly, None, |g, s| {
            g.call_explain(s, tag_name, policies)
        })
        .0
    }

    /// How many mutable tags `policy` would make immutable, with a sample. Writes nothing.
    pub fn preview(
        &self,
        policy: &Policy,
        sample_limit: u32,
    ) -> Result<PreviewReport, EngineError> {
        self.decide("preview", Access::Scan, None, |g, s| {
            g.call_preview(s, policy, sample_limit)
        })
        .0
    }
}
