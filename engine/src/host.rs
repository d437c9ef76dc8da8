//! The per-instance host state and the imports a plugin calls: `audit-log`
//! stages records, `tag-store` scans and marks through the registry.

use crate::bindings::tag_store::{self as wit_store, TagChange};
use crate::bindings::types::{Actor, ActorKind, AuditRecord, Policy, RecordKind, Tag};
use crate::bindings::{audit_log, tag_store, types};
use crate::entry::{AuditEntry, Performer, PluginStamp};
use crate::limits::{Limits, MemoryCap};
use crate::policy_set::PolicySets;
use crate::registry::{MarkBatch, MarkImmutable, ScanRequest, StoreError, TagRef, TagStore};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Size and count caps on what a plugin may stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLimits {
    /// Largest `metadata-json` accepted, in bytes.
    pub max_record_bytes: usize,
    /// Largest per-batch record (it lists every tag of its batch), in bytes.
    pub max_batch_record_bytes: usize,
    /// Most records one call may stage with `append`.
    pub max_staged_records: usize,
    /// Largest scan page the host serves.
    pub max_scan_limit: u32,
    /// Most bytes one import call may carry from the plugin to the host (its records
    /// and lists). The call traps before the host copies more; keep it below the
    /// memory cap.
    pub max_call_bytes: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            max_record_bytes: 64 * 1024,
            max_batch_record_bytes: 4 << 20,
            max_staged_records: 10_000,
            max_scan_limit: 10_000,
            max_call_bytes: 16 << 20,
        }
    }
}

/// What the current call may do through the imports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// Nothing: validate, explain, info.
    #[default]
    ReadOnly,
    /// Scan the scope of one policy: preview.
    Scan {
        /// The policy previewed; scans see only its scope.
        policy: Policy,
    },
    /// Stage records: decisions and policy changes.
    Stage,
    /// Scan and mark the scope of one policy, and stage: a retroactive run.
    Run {
        /// The run's id; every record must carry it.
        run_id: String,
        /// The policy applied; scans see only its scope, and every record must name it.
        policy: Policy,
    },
}

impl Access {
    /// The policy whose scope the call may scan, if it may scan.
    fn scan_scope(&self) -> Option<&Policy> {
        match self {
            Access::Scan { policy } | Access::Run { policy, .. } => Some(policy),
            Access::ReadOnly | Access::Stage => None,
        }
    }
}

/// A record that claims something that did not happen, inside an import; it aborts the
/// call with a trap the engine classifies as `AuditMissing`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GuardViolation(pub String);

/// A use of an import that the contract forbids (a scan that skips or repeats a page, a mark
/// outside a run); it aborts the call with a trap the engine classifies as
/// `ContractViolation`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ContractBreach(pub String);

/// A contract breach as the trap that aborts the call.
pub(crate) fn breach(reason: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::new(ContractBreach(reason.into()))
}

fn violation(reason: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::new(GuardViolation(reason.into()))
}

/// What one call did through the imports.
#[derive(Debug, Default)]
pub struct CallState {
    /// What the call may do.
    pub access: Access,
    /// Performer stamped on every record.
    pub performer: Option<Performer>,
    /// Records staged with `append`, stamped, in order.
    pub staged: Vec<AuditEntry>,
    /// Tags returned by the most recent scan, by id (a run may only mark those, once).
    pub scanned: HashMap<u64, Tag>,
    /// Tags scanned in this call (a preview's sample may only name those).
    pub seen: u64,
    /// The id of the last tag any scan of this call returned: each scan continues from it.
    pub cursor: u64,
    /// Scan pages that returned tags.
    pub pages: u32,
    /// Whether the most recent scan returned no tags: the end of the scan.
    pub exhausted: bool,
    /// Tags that really changed through `mark-immutable`.
    pub marked: u64,
    /// Names of the first tags that changed, in the order they changed.
    pub first_marked: Vec<String>,
    /// Set by real progress: a scan that returns new tags, or a mark of scanned tags.
    /// A run's deadline is extended while it is set.
    pub progressed: bool,
    /// The call's deadline, granted again after each progress.
    pub window: std::time::Duration,
    /// The last tag store failure, to classify the call's error.
    pub store_error: Option<String>,
}

/// The data of one wasmtime store: an empty WASI context, the memory cap, the
/// guest's captured stderr, and the current call.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    store: Arc<dyn TagStore>,
    stamp: Arc<PluginStamp>,
    limits: RecordLimits,
    /// The memory cap the store's limiter enforces.
    pub memory: MemoryCap,
    stderr: MemoryOutputPipe,
    /// How much of `stderr` earlier calls wrote; the current call's output follows it.
    stderr_mark: usize,
    /// The call in progress.
    pub call: CallState,
    /// The policy sets this instance compiled, by content.
    pub sets: PolicySets,
}

/// How many changed tag names a run summary carries.
pub const SAMPLE_TAGS: usize = 10;

/// How much of the guest's stderr (its panic message) is kept.
const STDERR_CAPACITY: usize = 8192;

impl HostState {
    /// A state with no ambient capability: no files, environment, arguments or
    /// network; stdout is discarded and stderr kept (bounded) for trap messages.
    pub fn new(store: Arc<dyn TagStore>, stamp: Arc<PluginStamp>, limits: &Limits) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            store,
            stamp,
            limits: limits.records,
            memory: MemoryCap::new(limits.memory_bytes),
            stderr,
            stderr_mark: 0,
            call: CallState::default(),
            sets: PolicySets::default(),
        }
    }

    /// What the guest wrote to stderr during the current call (a panic message, for instance).
    /// Rust's hint to rerun with `RUST_BACKTRACE=1` is dropped: no environment reaches
    /// the sandbox, so it cannot apply.
    pub fn stderr_text(&self) -> String {
        let written = self.stderr.contents();
        let current = written.get(self.stderr_mark..).unwrap_or_default();
        String::from_utf8_lossy(current)
            .lines()
            .filter(|l| !l.starts_with("note: run with `RUST_BACKTRACE=1`"))
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string()
    }

    /// Whether earlier calls filled so much of the bounded stderr pipe that a panic
    /// message might not fit: such an instance is not pooled again.
    pub fn stderr_crowded(&self) -> bool {
        self.stderr.contents().len() > STDERR_CAPACITY / 2
    }

    /// Starts a call with the given access and deadline on behalf of `actor`. What the
    /// guest wrote to stderr in earlier calls is forgotten.
    pub fn begin(&mut self, access: Access, actor: Option<&Actor>, window: std::time::Duration) {
        self.stderr_mark = self.stderr.contents().len();
        self.call = CallState {
            access,
            window,
            performer: actor.map(Performer::of),
            ..CallState::default()
        };
    }

    /// Ends the call and returns what it did.
    pub fn finish(&mut self) -> CallState {
        std::mem::take(&mut self.call)
    }

    fn performer(&self) -> Performer {
        self.call.performer.clone().unwrap_or_else(|| {
            Performer::of(&Actor {
                kind: ActorKind::System,
                name: None,
                ip: None,
                request_id: None,
            })
        })
    }

    fn stamp_record(&self, record: AuditRecord) -> Result<AuditEntry, String> {
        self.stamp_capped(record, self.limits.max_record_bytes)
    }

    fn stamp_capped(&self, record: AuditRecord, cap: usize) -> Result<AuditEntry, String> {
        if record.metadata_json.len() > cap {
            return Err(format!(
                "metadata-json: {} bytes, at most {cap} allowed",
                record.metadata_json.len()
            ));
        }
        if record.namespace.is_empty() {
            return Err("namespace: must not be empty".into());
        }
        AuditEntry::stamp(record, &self.performer(), &self.stamp)
    }

    /// The run's id and policy, or a breach if the call is not a run.
    fn run(&self) -> Result<(&str, &Policy), wasmtime::Error> {
        match &self.call.access {
            Access::Run { run_id, policy } => Ok((run_id, policy)),
            _ => Err(breach(
                "marking tags is only allowed during run-retroactive",
            )),
        }
    }

    /// Takes the tags to mark out of the most recent scan: each must come from it, once.
    fn take_scanned(&mut self, ids: impl Iterator<Item = u64>) -> Result<Vec<Tag>, String> {
        let mut seen = HashSet::new();
        let mut tags = Vec::new();
        for id in ids {
            if !seen.insert(id) {
                return Err(format!("tag id {id} is marked twice in one call"));
            }
            let tag =
                self.call.scanned.get(&id).ok_or_else(|| {
                    format!("tag id {id} was not returned by the most recent scan")
                })?;
            tags.push(tag.clone());
        }
        Ok(tags)
    }
}

/// Whether a record states the change a run makes: `previous_immutable` false, `immutable`
/// true, and the run's id and policy.
fn states_run_change(entry: &AuditEntry, run_id: &str, policy: &Policy) -> bool {
    entry.kind == RecordKind::TagMadeImmutableByPolicy.as_str()
        && entry.meta_bool("previous_immutable") == Some(false)
        && entry.meta_bool("immutable") == Some(true)
        && entry.meta_str("run_id") == Some(run_id)
        && crate::guard::names_policy(entry, policy)
}

/// Checks a per-tag run record: it names exactly `tag` and states the run's change.
fn check_run_entry(
    tag: &Tag,
    entry: &AuditEntry,
    run_id: &str,
    policy: &Policy,
) -> Result<(), String> {
    let names_tag = entry.namespace == tag.namespace
        && entry.repository.as_deref() == Some(tag.repository.as_str())
        && entry.tag.as_deref() == Some(tag.name.as_str())
        && entry.meta_str("tag") == Some(tag.name.as_str())
        && crate::guard::states_digest(entry, &tag.manifest_digest);
    if names_tag && states_run_change(entry, run_id, policy) {
        return Ok(());
    }
    Err(format!(
        "the record for tag id {} ({}/{}:{}) must be a tag_made_immutable_by_policy record naming that tag, with previous_immutable false, immutable true, run_id {run_id} and policy_uuid {}",
        tag.id, tag.namespace, tag.repository, tag.name, policy.uuid
    ))
}

/// Checks a per-batch record: it lists exactly `refs` in order, in the policy's namespace
/// and repository, and states the run's change.
fn check_batch_entry(
    refs: &[TagRef],
    entry: &AuditEntry,
    run_id: &str,
    policy: &Policy,
) -> Result<(), String> {
    let listed = entry
        .metadata
        .get("tags")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let names_all = listed.len() == refs.len()
        && refs.iter().zip(listed).all(|(r, v)| {
            v.get("repository").and_then(Value::as_str) == Some(r.repository.as_str())
                && v.get("tag").and_then(Value::as_str) == Some(r.name.as_str())
        });
    let placed = entry.namespace == policy.namespace && entry.repository == policy.repository;
    if names_all && placed && entry.tag.is_none() && states_run_change(entry, run_id, policy) {
        return Ok(());
    }
    Err(format!(
        "the batch record must be a tag_made_immutable_by_policy record in {}/{}, listing the {} tags in request order, with previous_immutable false, immutable true, run_id {run_id} and policy_uuid {}",
        policy.namespace,
        policy.repository.as_deref().unwrap_or("*"),
        refs.len(),
        policy.uuid
    ))
}

impl HostState {
    /// Notes what a mark call changed, or the store's failure, for the call's outcome.
    fn marked(
        &mut self,
        result: Result<Vec<u64>, StoreError>,
        names: Vec<(u64, String)>,
    ) -> Result<Vec<u64>, String> {
        match result {
            Ok(changed) => {
                self.note_marked(&changed, names);
                Ok(changed)
            }
            Err(e) => {
                self.call.store_error = Some(e.0.clone());
                Err(e.0)
            }
        }
    }

    fn note_marked(&mut self, changed: &[u64], names: Vec<(u64, String)>) {
        self.call.marked += changed.len() as u64;
        let wanted = SAMPLE_TAGS.saturating_sub(self.call.first_marked.len());
        let firsts = changed
            .iter()
            .filter_map(|id| names.iter().find(|(n, _)| n == id))
            .take(wanted)
            .map(|(_, name)| name.clone());
        self.call.first_marked.extend(firsts.collect::<Vec<_>>());
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl audit_log::Host for HostState {
    fn append(&mut self, entry: AuditRecord) -> wasmtime::Result<Result<(), String>> {
        if matches!(self.call.access, Access::ReadOnly | Access::Scan { .. }) {
            return Err(breach("a read-only call staged an audit record"));
        }
        if self.call.staged.len() >= self.limits.max_staged_records {
            return Ok(Err(format!(
                "at most {} records may be staged in one call",
                self.limits.max_staged_records
            )));
        }
        Ok(self.stamp_record(entry).map(|e| self.call.staged.push(e)))
    }
}

impl tag_store::Host for HostState {
    fn scan(
        &mut self,
        request: wit_store::ScanRequest,
    ) -> wasmtime::Result<Result<Vec<Tag>, String>> {
        let Some(policy) = self.call.access.scan_scope() else {
            return Err(breach(
                "scan is only allowed in run-retroactive and preview",
            ));
        };
        if request.after_id != self.call.cursor {
            return Err(breach(format!(
                "scans go page by page: after-id {} is not {}, the last id already returned (0 before the first page)",
                request.after_id, self.call.cursor
            )));
        }
        let scoped = ScanRequest {
            namespace: policy.namespace.clone(),
            repository: policy.repository.clone(),
            after_id: request.after_id,
            limit: request.limit.clamp(1, self.limits.max_scan_limit),
        };
        let tags = match self.store.scan(&scoped) {
            Ok(tags) => tags,
            Err(e) => {
                self.call.store_error = Some(e.0.clone());
                return Ok(Err(e.0));
            }
        };
        self.call.exhausted = tags.is_empty();
        if let Some(last) = tags.last() {
            self.call.cursor = last.id;
            self.call.pages += 1;
            self.call.seen += tags.len() as u64;
            self.call.progressed = true;
        }
        if matches!(self.call.access, Access::Run { .. }) {
            self.call.scanned = tags.iter().map(|t| (t.id, t.clone())).collect();
        }
        Ok(Ok(tags))
    }

    fn mark_immutable(
        &mut self,
        changes: Vec<TagChange>,
    ) -> wasmtime::Result<Result<Vec<u64>, String>> {
        let (run_id, policy) = self.run().map(|(r, p)| (r.to_string(), p.clone()))?;
        let tags = self
            .take_scanned(changes.iter().map(|c| c.tag_id))
            .map_err(violation)?;
        let mut marks = Vec::with_capacity(changes.len());
        for (TagChange { tag_id, entry }, tag) in changes.into_iter().zip(&tags) {
            let entry = self
                .stamp_record(entry)
                .and_then(|e| check_run_entry(tag, &e, &run_id, &policy).map(|()| e))
                .map_err(violation)?;
            marks.push(MarkImmutable { tag_id, entry });
        }
        if marks.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        self.call.scanned.clear();
        self.call.progressed = true;
        let names = if self.call.first_marked.len() < SAMPLE_TAGS {
            tags.into_iter().map(|t| (t.id, t.name)).collect()
        } else {
            Vec::new()
        };
        let result = self.store.mark_immutable(marks);
        Ok(self.marked(result, names))
    }

    fn mark_immutable_batch(
        &mut self,
        tag_ids: Vec<u64>,
        entry: AuditRecord,
    ) -> wasmtime::Result<Result<Vec<u64>, String>> {
        let (run_id, policy) = self.run().map(|(r, p)| (r.to_string(), p.clone()))?;
        let tags = self
            .take_scanned(tag_ids.iter().copied())
            .map_err(violation)?;
        let refs: Vec<TagRef> = tags
            .into_iter()
            .map(|t| TagRef {
                id: t.id,
                repository: t.repository,
                name: t.name,
            })
            .collect();
        let entry = self
            .stamp_capped(entry, self.limits.max_batch_record_bytes)
            .and_then(|e| check_batch_entry(&refs, &e, &run_id, &policy).map(|()| e))
            .map_err(violation)?;
        if refs.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        self.call.scanned.clear();
        self.call.progressed = true;
        let names = refs.iter().map(|t| (t.id, t.name.clone())).collect();
        let result = self
            .store
            .mark_immutable_batch(MarkBatch { tags: refs, entry });
        Ok(self.marked(result, names))
    }
}
