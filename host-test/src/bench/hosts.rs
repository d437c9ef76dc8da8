//! The trivial hosts the benchmarks run against: an engine tag store and audit
//! sinks that do the least a registry could, so figures show the engine and
//! plugin cost. Native runs use the guest's own `memory_host::MemoryHost`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tagguard_engine::{
    AuditEntry, AuditSink, Change, MarkBatch, MarkImmutable, ScanRequest, SinkError, StoreError,
    Tag, TagStore,
};

/// A tag store with no tags: pushes never scan or mark.
pub struct NoTags;

impl TagStore for NoTags {
    fn scan(&self, _: &ScanRequest) -> Result<Vec<Tag>, StoreError> {
        Ok(Vec::new())
    }

    fn mark_immutable(&self, _: Vec<MarkImmutable>) -> Result<Vec<u64>, StoreError> {
        Ok(Vec::new())
    }

    fn mark_immutable_batch(&self, _: MarkBatch) -> Result<Vec<u64>, StoreError> {
        Ok(Vec::new())
    }
}

/// An audit sink that counts commits and entries and drops them.
#[derive(Default)]
pub struct DroppingSink {
    /// Commits so far.
    pub commits: AtomicU64,
    /// Entries so far.
    pub entries: AtomicU64,
}

impl AuditSink for DroppingSink {
    fn commit(&self, _: Change, entries: Vec<AuditEntry>) -> Result<(), SinkError> {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.entries
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// An audit sink that keeps every entry in memory, like the mock registry's log.
#[derive(Default)]
pub struct StoringSink {
    log: Mutex<Vec<AuditEntry>>,
}

impl StoringSink {
    /// Drops the entries kept so far (between timed batches).
    pub fn clear(&self) {
        let drained = std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()));
        drop(drained);
    }
}

impl AuditSink for StoringSink {
    fn commit(&self, _: Change, entries: Vec<AuditEntry>) -> Result<(), SinkError> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(entries);
        Ok(())
    }
}

/// An engine tag store over tags in a `Vec`, keeping every committed entry in a
/// `Vec`: what a registry's tables would do, without the mock registry's
/// bookkeeping (its hash-chained log, transitions and compliance links).
pub struct VecStore {
    state: Mutex<VecState>,
}

struct VecState {
    tags: Vec<Tag>,
    log: Vec<AuditEntry>,
}

impl VecState {
    /// Marks `id` immutable if it is a mutable tag; returns whether it changed.
    fn mark(&mut self, id: u64) -> bool {
        match self.tags.binary_search_by_key(&id, |t| t.id) {
            Ok(idx) if !self.tags[idx].immutable => {
                self.tags[idx].immutable = true;
                true
            }
            _ => false,
        }
    }
}

impl VecStore {
    /// A store of mutable tags with ids 1.. and the given names.
    pub fn new(namespace: &str, repository: &str, names: impl Iterator<Item = String>) -> Self {
        let tags = names
            .enumerate()
            .map(|(i, name)| {
                let id = i as u64 + 1;
                Tag {
                    id,
                    namespace: namespace.into(),
                    repository: repository.into(),
                    name,
                    manifest_digest: format!("sha256:{id:064x}"),
                    immutable: false,
                }
            })
            .collect();
        VecStore {
            state: Mutex::new(VecState {
                tags,
                log: Vec::new(),
            }),
        }
    }

    /// Entries of `kind` committed so far.
    pub fn records(&self, kind: &str) -> usize {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.log.iter().filter(|e| e.kind == kind).count()
    }
}

impl TagStore for VecStore {
    fn scan(&self, r: &ScanRequest) -> Result<Vec<Tag>, StoreError> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let start = state.tags.partition_point(|t| t.id <= r.after_id);
        Ok(state.tags[start..]
            .iter()
            .filter(|t| t.namespace == r.namespace)
            .filter(|t| r.repository.as_ref().is_none_or(|x| *x == t.repository))
            .take(r.limit as usize)
            .cloned()
            .collect())
    }

    fn mark_immutable(&self, changes: Vec<MarkImmutable>) -> Result<Vec<u64>, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = Vec::with_capacity(changes.len());
        for MarkImmutable { tag_id, entry } in changes {
            if state.mark(tag_id) {
                changed.push(tag_id);
                state.log.push(entry);
            }
        }
        Ok(changed)
    }

    fn mark_immutable_batch(&self, batch: MarkBatch) -> Result<Vec<u64>, StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let changed: Vec<u64> = batch
            .tags
            .iter()
            .map(|t| t.id)
            .filter(|id| state.mark(*id))
            .collect();
        if let Some(entry) = batch.narrowed(&changed) {
            state.log.push(entry);
        }
        Ok(changed)
    }
}

impl AuditSink for VecStore {
    fn commit(&self, _: Change, entries: Vec<AuditEntry>) -> Result<(), SinkError> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .log
            .extend(entries);
        Ok(())
    }
}
