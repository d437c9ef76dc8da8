//! The per-instance host state and the imports a plugin calls: `audit-log`
//! stages records, `tag-store` scans and marks through the registry.

use crate::bindings::tag_store::{ScanRequest, TagChange};
use crate::bindings::types::{Actor, ActorKind, AuditRecord, RecordKind, Tag};
use crate::bindings::{audit_log, tag_store, types};
use crate::entry::{AuditEntry, Performer, PluginStamp};
use crate::limits::{Limits, MemoryCap};
use crate::registry::{MarkBatch, MarkImmutable, StoreError, TagRef, TagStore};
use serde_json::Value;
use std::collections::HashMap;
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
}

impl Default for RecordLimits {
    fn default() -> Self {
        RecordLimits {
            max_record_bytes: 64 * 1024,
            max_batch_record_bytes: 4 << 20,
            max_staged_records: 10_000,
            max_scan_limit: 10_000,
        }
    }
}

/// What the current call may do through the imports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// Nothing: validate, explain, info.
    #[default]
    ReadOnly,
    /// Scan only: preview.
    Scan,
    /// Stage records: decisions and policy changes.
    Stage,
    /// Scan, mark and stage: a retroactive run of one policy.
    Run {
        /// The run's id; every record must carry it.
        run_id: String,
        /// The policy applied; every record must name it.
        policy_uuid: String,
    },
}

/// A guard violation inside an import; it aborts the call with a trap the engine classifies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GuardViolation(pub String);

/// What one call did through the imports.
#[derive(Debug, Default)]
pub struct CallState {
    /// What the call may do.
    pub access: Access,
    /// Performer stamped on every record.
    pub performer: Option<Performer>,
    /// Records staged with `append`, stamped, in order.
    pub staged: Vec<AuditEntry>,
    /// Tags returned by the most recent scan, by id (a run may only mark those).
    pub scanned: HashMap<u64, Tag>,
    /// Tags that really changed through `mark-immutable`.
    pub marked: u64,
    /// Names of the first tags that changed.
    pub first_marked: Vec<String>,
    /// Set by every `tag-store` call; a run's deadline is extended while it is set.
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
    /// The call in progress.
    pub call: CallState,
}

/// How much of the guest's stderr (its panic message) is kept.
const STDERR_CAPACITY: usize = 4096;

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
            call: CallState::default(),
        }
    }

    /// What the guest wrote to stderr (a panic message, for instance).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_string()
    }

    /// Starts a call with the given access and deadline on behalf of `actor`.
    pub fn begin(&mut self, access: Access, actor: Option<&Actor>, window: std::time::Duration) {
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

    fn check_run_entry(&self, tag_id: u64, entry: &AuditEntry) -> Result<(), String> {
        let Access::Run {
            run_id,
            policy_uuid,
        } = &self.call.access
        else {
            return Err("mark-immutable is only allowed during run-retroactive".into());
        };
        let Some(tag) = self.call.scanned.get(&tag_id) else {
            return Err(format!(
                "tag id {tag_id} was not returned by the most recent scan"
            ));
        };
        let names_tag = entry.kind == RecordKind::TagMadeImmutableByPolicy.as_str()
            && entry.namespace == tag.namespace
            && entry.repository.as_deref() == Some(tag.repository.as_str())
            && entry.tag.as_deref() == Some(tag.name.as_str())
            && entry.meta_str("tag") == Some(tag.name.as_str());
        if !names_tag {
            return Err(format!(
                "the record for tag id {} ({}/{}:{}) is not a tag_made_immutable_by_policy record naming that tag",
                tag.id, tag.namespace, tag.repository, tag.name
            ));
        }
        if entry.meta_str("run_id") != Some(run_id)
            || entry.meta_str("policy_uuid") != Some(policy_uuid)
        {
            return Err(format!(
                "the record for tag {} does not carry run_id {run_id} and policy_uuid {policy_uuid}",
                tag.name
            ));
        }
        Ok(())
    }
}

impl HostState {
    fn run_ids(&self) -> Result<(&str, &str), String> {
        match &self.call.access {
            Access::Run {
                run_id,
                policy_uuid,
            } => Ok((run_id, policy_uuid)),
            _ => Err("marking tags is only allowed during run-retroactive".into()),
        }
    }

    /// Checks a per-batch entry: it lists exactly the requested tags from the last scan.
    fn check_batch(&self, tag_ids: &[u64], entry: &AuditEntry) -> Result<Vec<TagRef>, String> {
        let (run_id, policy_uuid) = self.run_ids()?;
        let mut refs = Vec::with_capacity(tag_ids.len());
        for id in tag_ids {
            let tag =
                self.call.scanned.get(id).ok_or_else(|| {
                    format!("tag id {id} was not returned by the most recent scan")
                })?;
            refs.push(TagRef {
                id: *id,
                repository: tag.repository.clone(),
                name: tag.name.clone(),
            });
        }
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
        let ok = entry.kind == RecordKind::TagMadeImmutableByPolicy.as_str()
            && entry.tag.is_none()
            && names_all
            && entry.meta_str("run_id") == Some(run_id)
            && entry.meta_str("policy_uuid") == Some(policy_uuid);
        if ok {
            Ok(refs)
        } else {
            Err(format!(
                "the batch record must be a tag_made_immutable_by_policy record listing the {} tags in request order, with run_id {run_id} and policy_uuid {policy_uuid}",
                refs.len()
            ))
        }
    }

    /// Notes what a mark call changed, or the store's failure, for the call's outcome.
    fn marked(
        &mut self,
        result: Result<Vec<u64>, StoreError>,
        names: Vec<(u64, String)>,
    ) -> Result<Vec<u64>, String> {
        match result {
            Ok(changed) => {
                self.note_marked(&changed, names.into_iter());
                Ok(changed)
            }
            Err(e) => {
                self.call.store_error = Some(e.0.clone());
                Err(e.0)
            }
        }
    }

    fn note_marked(&mut self, changed: &[u64], names: impl Iterator<Item = (u64, String)>) {
        self.call.marked += changed.len() as u64;
        let wanted = 10usize.saturating_sub(self.call.first_marked.len());
        let firsts = names.filter(|(id, _)| changed.contains(id)).take(wanted);
        self.call
            .first_marked
            .extend(firsts.map(|(_, name)| name).collect::<Vec<_>>());
        self.call.scanned.clear();
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
        if matches!(self.call.access, Access::ReadOnly | Access::Scan) {
            return Err(wasmtime::Error::new(GuardViolation(
                "a read-only call staged an audit record".into(),
            )));
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
    fn scan(&mut self, mut request: ScanRequest) -> wasmtime::Result<Result<Vec<Tag>, String>> {
        self.call.progressed = true;
        if matches!(self.call.access, Access::ReadOnly | Access::Stage) {
            return Err(wasmtime::Error::new(GuardViolation(
                "scan is only allowed in run-retroactive and preview".into(),
            )));
        }
        request.limit = request.limit.clamp(1, self.limits.max_scan_limit);
        match self.store.scan(&request) {
            Ok(tags) => {
                if matches!(self.call.access, Access::Run { .. }) {
                    self.call.scanned = tags.iter().map(|t| (t.id, t.clone())).collect();
                }
                Ok(Ok(tags))
            }
            Err(e) => {
                self.call.store_error = Some(e.0.clone());
                Ok(Err(e.0))
            }
        }
    }

    fn mark_immutable(
        &mut self,
        changes: Vec<TagChange>,
    ) -> wasmtime::Result<Result<Vec<u64>, String>> {
        self.call.progressed = true;
        let mut marks = Vec::with_capacity(changes.len());
        for TagChange { tag_id, entry } in changes {
            let entry = self
                .stamp_record(entry)
                .and_then(|e| self.check_run_entry(tag_id, &e).map(|()| e))
                .map_err(|reason| wasmtime::Error::new(GuardViolation(reason)))?;
            marks.push(MarkImmutable { tag_id, entry });
        }
        let names: Vec<(u64, String)> = if self.call.first_marked.len() < 10 {
            marks
                .iter()
                .filter_map(|m| Some((m.tag_id, m.entry.tag.clone()?)))
                .collect()
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
        self.call.progressed = true;
        let cap = self.limits.max_batch_record_bytes;
        let (tags, entry) = self
            .stamp_capped(entry, cap)
            .and_then(|e| Ok((self.check_batch(&tag_ids, &e)?, e)))
            .map_err(|r| wasmtime::Error::new(GuardViolation(r)))?;
        let names: Vec<(u64, String)> = tags.iter().map(|t| (t.id, t.name.clone())).collect();
        let result = self.store.mark_immutable_batch(MarkBatch { tags, entry });
        Ok(self.marked(result, names))
    }
}
