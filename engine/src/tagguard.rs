//! [`TagGuard`]: the typed API a registry calls, one method per decision.
//! Every method runs the current plugin generation, checks the outcome
//! against its records, and commits both through the registry's
//! [`AuditSink`] in one transaction. Swapping the plugin publishes a new
//! generation atomically; calls in flight finish on the old one.

use crate::bindings::policy_engine::{
    DeleteDecision, Granularity, PluginInfo, PreviewReport, RunOptions, RunSummary, RunTrigger,
};
use crate::bindings::types::{Actor, Policy, RecordKind, Tag};
use crate::decide::{self, PolicyEvent};
use crate::entry::{AuditEntry, Performer, PluginStamp};
use crate::error::EngineError;
use crate::generation::Generation;
use crate::host::CallState;
use crate::plugin::Plugin;
use crate::policy_set::PolicyMatch;
use crate::push::{PushRequest, PushVerdict};
use crate::registry::{AuditSink, Change, SinkError, TagStore};
use crate::removal::Removal;
use crate::selftest;
use arc_swap::ArcSwap;
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The kind of the record a swap writes (host-authored).
pub const PLUGIN_SWAPPED: &str = "immutability_plugin_swapped";

/// Engine settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Tags per batch in retroactive runs: 1 to the runtime's scan limit
    /// (`RecordLimits::max_scan_limit`, 10,000 by default).
    pub batch_size: u32,
    /// One record per tag (default) or one per batch in retroactive runs.
    pub granularity: Granularity,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            batch_size: 500,
            granularity: Granularity::PerTag,
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

/// A swap that was published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwapOutcome {
    /// The generation now serving.
    pub generation: u64,
    /// The plugin that served before.
    pub old: PluginStamp,
    /// The plugin serving now.
    pub new: PluginStamp,
}

/// The host a registry embeds: the current plugin generation over the
/// registry's tag store and audit sink. `Send + Sync`: call it from any thread.
pub struct TagGuard {
    current: ArcSwap<Generation>,
    plugins: Mutex<PluginHistory>,
    store: Arc<dyn TagStore>,
    sink: Arc<dyn AuditSink>,
    settings: Settings,
    runs: AtomicU64,
}

/// The plugins of the current and previous generations, for swaps and rollback.
struct PluginHistory {
    current: Plugin,
    previous: Option<Plugin>,
    next_id: u64,
}

impl Settings {
    /// Checks the settings against the scan limit of the runtime they run in.
    pub fn check(&self, max_scan_limit: u32) -> Result<(), EngineError> {
        if self.batch_size == 0 || self.batch_size > max_scan_limit {
            return Err(EngineError::InvalidSettings {
                field: "batch_size",
                reason: format!(
                    "{} is outside 1..={max_scan_limit} (the scan limit: a scan never returns more)",
                    self.batch_size
                ),
            });
        }
        Ok(())
    }
}

impl TagGuard {
    /// A host for `plugin` over the registry's tag store and audit sink; fails when a
    /// setting is out of range.
    pub fn new(
        plugin: Plugin,
        store: Arc<dyn TagStore>,
        sink: Arc<dyn AuditSink>,
        settings: Settings,
    ) -> Result<Self, EngineError> {
        settings.check(plugin.limits().records.max_scan_limit)?;
        let first = Arc::new(plugin.generation(1, store.clone()));
        Ok(TagGuard {
            current: ArcSwap::new(first),
            plugins: Mutex::new(PluginHistory {
                current: plugin,
                previous: None,
                next_id: 2,
            }),
            store,
            sink,
            settings,
            runs: AtomicU64::new(0),
        })
    }

    fn generation(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// What the serving plugin reports about itself.
    pub fn info(&self) -> PluginInfo {
        self.plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .current
            .info()
            .clone()
    }

    /// Name, version and digest of the serving plugin, as stamped on records.
    pub fn stamp(&self) -> PluginStamp {
        (**self.generation().stamp()).clone()
    }

    /// The number of the serving generation (1 for the first plugin).
    pub fn generation_id(&self) -> u64 {
        self.generation().id
    }

    /// Warm instances waiting in the serving generation's pool.
    pub fn pooled_instances(&self) -> usize {
        self.generation().pooled()
    }

    fn commit(
        &self,
        generation: &Generation,
        call: &'static str,
        change: Change,
        entries: Vec<AuditEntry>,
    ) -> Result<(), EngineError> {
        self.sink.commit(change, entries).map_err(|e| {
            let (plugin, message) = (generation.label.clone(), e.to_string());
            match e {
                SinkError::Conflict(_) => EngineError::Conflict {
                    plugin,
                    call,
                    message,
                },
                _ => EngineError::HostAudit {
                    plugin,
                    call,
                    message,
                },
            }
        })
    }

    /// Checks and normalises a candidate policy against the existing ones.
    pub fn validate_policy(
        &self,
        candidate: &Policy,
        existing: &[Policy],
    ) -> Result<Policy, EngineError> {
        decide::validate_policy(&self.generation(), candidate, existing)
    }

    /// Decides a push and commits the tag together with its record.
    pub fn push(&self, req: &PushRequest) -> Result<PushOutcome, EngineError> {
        let generation = self.generation();
        let (decision, staged) = decide::push(&generation, req)?;
        match decision {
            PushVerdict::Deny(matched) => {
                self.commit(&generation, "on-push", Change::None, staged)?;
                Ok(PushOutcome::Denied { matched })
            }
            PushVerdict::Create { immutable, matched } => {
                let change = Change::PutTag {
                    namespace: req.namespace.clone(),
                    repository: req.repository.clone(),
                    name: req.tag_name.clone(),
                    manifest_digest: req.manifest_digest.clone(),
                    immutable,
                    replaces: req.existing.as_ref().map(|t| t.id),
                    policy_version: req.policy_version,
                };
                self.commit(&generation, "on-push", change, staged)?;
                Ok(PushOutcome::Created { immutable, matched })
            }
        }
    }

    /// Decides a delete or expiry; applies it when allowed, records the denial otherwise.
    /// The change committed is derived from `removal`, so it is exactly what was decided;
    /// the registry's commit refuses it ([`SinkError::Conflict`]) if a tag changed since.
    pub fn delete(&self, removal: &Removal) -> Result<DeleteOutcome, EngineError> {
        let generation = self.generation();
        match decide::delete(&generation, &removal.request(), &removal.policies)? {
            (DeleteDecision::Allow, _) => {
                self.commit(&generation, "on-delete", removal.change(), Vec::new())?;
                Ok(DeleteOutcome::Allowed)
            }
            (DeleteDecision::Deny(tag_ids), staged) => {
                self.commit(&generation, "on-delete", Change::None, staged)?;
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
        let generation = self.generation();
        let (changed, staged) = decide::manual_change(&generation, actor, tag, immutable)?;
        if changed {
            let change = Change::SetImmutable {
                tag_id: tag.id,
                immutable,
            };
            self.commit(&generation, "on-manual-change", change, staged)?;
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
        let generation = self.generation();
        let policy = decide::validate_policy(&generation, candidate, existing)?;
        let staged = decide::policy_record(&generation, actor, &policy, PolicyEvent::Created)?;
        self.commit(
            &generation,
            "on-policy-created",
            Change::InsertPolicy(policy.clone()),
            staged,
        )?;
        let run = self.run_on(&generation, actor, &policy, RunTrigger::PolicyCreated)?;
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
        let generation = self.generation();
        let after = decide::validate_policy(&generation, candidate, existing)?;
        let staged =
            decide::policy_record(&generation, actor, &after, PolicyEvent::Updated(before))?;
        self.commit(
            &generation,
            "on-policy-updated",
            Change::UpdatePolicy(after.clone()),
            staged,
        )?;
        let run = self.run_on(&generation, actor, &after, RunTrigger::PolicyUpdated)?;
        Ok(PolicyOutcome { policy: after, run })
    }

    /// Deletes a policy with its record. Tags it made immutable stay immutable.
    pub fn delete_policy(&self, actor: &Actor, policy: &Policy) -> Result<(), EngineError> {
        let generation = self.generation();
        let staged = decide::policy_record(&generation, actor, policy, PolicyEvent::Deleted)?;
        self.commit(
            &generation,
            "on-policy-deleted",
            Change::DeletePolicy(policy.uuid.clone()),
            staged,
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
        self.run_on(&self.generation(), actor, policy, trigger)
    }

    fn run_on(
        &self,
        generation: &Generation,
        actor: &Actor,
        policy: &Policy,
        trigger: RunTrigger,
    ) -> Result<RunSummary, EngineError> {
        const CALL: &str = "run-retroactive";
        let options = RunOptions {
            run_id: self.next_run_id(),
            batch_size: self.settings.batch_size,
            granularity: self.settings.granularity,
        };
        let (checked, state) = decide::run(generation, actor, policy, trigger, &options);
        match checked {
            Ok(summary) => {
                self.commit(generation, CALL, Change::None, state.staged)?;
                Ok(summary)
            }
            Err(cause) => {
                // What the failed call staged is dropped (the contract's one rule for
                // staged records); the host writes the failed summary from what it saw.
                let summary = vec![host_run_summary(
                    generation, actor, policy, trigger, &options, &state, &cause,
                )];
                // Every changed tag already carries its own record; the summary is added
                // if it can be, and the error says so if it cannot.
                let cause = match self.commit(generation, CALL, Change::None, summary) {
                    Ok(()) => cause,
                    Err(sink) => EngineError::HostAudit {
                        plugin: generation.label.clone(),
                        call: CALL,
                        message: format!(
                            "{cause}; and the failed-run summary could not be written: {sink}"
                        ),
                    },
                };
                Err(EngineError::RunIncomplete {
                    plugin: generation.label.clone(),
                    run_id: options.run_id,
                    policy_uuid: policy.uuid.clone(),
                    changed: state.marked,
                    cause: Box::new(cause),
                })
            }
        }
    }

    /// Every policy among `policies` that fires for `tag_name`.
    pub fn explain(
        &self,
        tag_name: &str,
        policies: &[Policy],
    ) -> Result<Vec<PolicyMatch>, EngineError> {
        decide::explain(&self.generation(), tag_name, policies)
    }

    /// How many mutable tags `candidate` would make immutable, with a sample. The
    /// candidate is validated first and previewed as it would be stored, so the preview
    /// agrees with creating it. Writes nothing.
    pub fn preview(
        &self,
        candidate: &Policy,
        sample_limit: u32,
    ) -> Result<PreviewReport, EngineError> {
        let generation = self.generation();
        let policy = decide::validate_policy(&generation, candidate, &[])?;
        decide::preview(&generation, &policy, sample_limit)
    }

    /// Replaces the serving plugin. The candidate must pass the self-test first; then
    /// the swap is recorded (`immutability_plugin_swapped`) and the new generation is
    /// published atomically. Calls in flight finish on the old generation. On any
    /// failure the old plugin keeps serving and nothing is recorded as swapped.
    pub fn swap(&self, actor: &Actor, candidate: Plugin) -> Result<SwapOutcome, EngineError> {
        let mut plugins = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        let rejected = |cause: EngineError, plugins: &PluginHistory| EngineError::SwapRejected {
            current: plugins.current.stamp().to_string(),
            candidate: candidate.stamp().to_string(),
            cause: Box::new(cause),
        };
        if let Err(cause) = selftest::run(&candidate) {
            return Err(rejected(cause, &plugins));
        }
        self.publish(actor, &mut plugins, candidate, "swap")
    }

    /// Returns to the plugin that served before the last swap (recorded like a swap).
    pub fn rollback(&self, actor: &Actor) -> Result<SwapOutcome, EngineError> {
        let mut plugins = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        let previous = plugins
            .previous
            .clone()
            .ok_or(EngineError::NoPreviousGeneration)?;
        self.publish(actor, &mut plugins, previous, "rollback")
    }

    /// The plugin serving now (a handle to the same compiled component).
    pub fn serving(&self) -> Plugin {
        self.plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .current
            .clone()
    }

    /// Serves `plugin` as `generation`, a swap or rollback that another host on the same
    /// audit sink already published and recorded: nothing is recorded here, and later
    /// swaps number on from `generation`. `previous` is what a rollback returns to. A
    /// generation not newer than the serving one is refused (`StaleGeneration`), so
    /// hosts that follow each other never step back.
    pub fn adopt(
        &self,
        plugin: Plugin,
        generation: u64,
        previous: Option<Plugin>,
    ) -> Result<(), EngineError> {
        let mut plugins = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        let serving = self.generation().id;
        if generation <= serving {
            return Err(EngineError::StaleGeneration {
                serving,
                offered: generation,
            });
        }
        self.current
            .store(Arc::new(plugin.generation(generation, self.store.clone())));
        plugins.next_id = generation + 1;
        plugins.previous = previous;
        plugins.current = plugin;
        Ok(())
    }

    fn publish(
        &self,
        actor: &Actor,
        plugins: &mut PluginHistory,
        next: Plugin,
        action: &str,
    ) -> Result<SwapOutcome, EngineError> {
        let generation = self.generation();
        let old = (**generation.stamp()).clone();
        let id = plugins.next_id;
        let new = PluginStamp {
            generation: id,
            ..(**next.stamp()).clone()
        };
        let record = swap_record(actor, &old, &new, id, action);
        self.commit(&generation, "swap", Change::None, vec![record])?;
        self.current
            .store(Arc::new(next.generation(id, self.store.clone())));
        plugins.next_id += 1;
        plugins.previous = Some(std::mem::replace(&mut plugins.current, next));
        Ok(SwapOutcome {
            generation: id,
            old,
            new,
        })
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The record of a swap or rollback, written by the host and stamped with the new plugin.
fn swap_record(
    actor: &Actor,
    old: &PluginStamp,
    new: &PluginStamp,
    generation: u64,
    action: &str,
) -> AuditEntry {
    let metadata = object(json!({
        "action": action,
        "generation": generation,
        "old_plugin": { "name": old.name, "version": old.version, "sha256": old.digest },
        "new_plugin": { "name": new.name, "version": new.version, "sha256": new.digest },
        "outcome": "success",
    }));
    AuditEntry::by_host(
        PLUGIN_SWAPPED,
        "",
        None,
        &Performer::of(actor),
        new,
        metadata,
    )
}

/// The failed-run summary the host writes when the plugin could not (it trapped or
/// broke the contract).
fn host_run_summary(
    generation: &Generation,
    actor: &Actor,
    policy: &Policy,
    trigger: RunTrigger,
    options: &RunOptions,
    state: &CallState,
    cause: &EngineError,
) -> AuditEntry {
    let mut metadata = object(json!({
        "namespace": policy.namespace,
        "tag_pattern": policy.tag_pattern,
        "tag_pattern_matches": policy.tag_pattern_matches,
        "run_id": options.run_id,
        "trigger": decide::trigger_name(trigger),
        "count": state.marked,
        "tags_affected_count": state.marked,
        "sample_tags": state.first_marked,
        "batches": state.pages,
        "batch_size": options.batch_size,
        "granularity": match options.granularity {
            Granularity::PerTag => "per_tag",
            Granularity::PerBatch => "per_batch",
        },
        "status": "failed",
        "outcome": "failed",
        "error": cause.to_string(),
        "written_by": "host",
        "policy_uuid": policy.uuid,
        "policy_pattern": policy.tag_pattern,
        "policy_pattern_matches": policy.tag_pattern_matches,
        "policy_scope": policy.scope.as_str(),
    }));
    if let Some(repo) = &policy.repository {
        metadata.insert("repo".into(), json!(repo));
    }
    AuditEntry::by_host(
        RecordKind::TagsMadeImmutableByPolicy.as_str(),
        &policy.namespace,
        policy.repository.as_deref(),
        &Performer::of(actor),
        generation.stamp(),
        metadata,
    )
}
