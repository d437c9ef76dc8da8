//! An in-memory tag store and audit sink: tags in a `Vec`, committed entries in
//! a `Vec`. What a registry's tables would do, with none of a registry's
//! bookkeeping; the command line previews over it, the swap self-test runs on
//! it, and embedders can test against it.

use crate::bindings::types::Tag;
use crate::entry::AuditEntry;
use crate::registry::{
    AuditSink, Change, MarkBatch, MarkImmutable, ScanRequest, SinkError, StoreError, TagStore,
};
use std::sync::Mutex;

/// Tags in a `Vec` (ascending id) and every committed entry in a `Vec`. Commits
/// keep their entries and apply no change: it is a store to scan and mark.
pub struct MemoryStore {
    state: Mutex<State>,
}

struct State {
    tags: Vec<Tag>,
    log: Vec<AuditEntry>,
}

impl State {
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

impl MemoryStore {
    /// A store of mutable tags with ids 1.. and the given names, in one repository.
    pub fn new(namespace: &str, repository: &str, names: impl Iterator<Item = String>) -> Self {
        Self::with_tags(
            names
                .map(|name| (namespace.to_string(), repository.to_string(), name))
                .collect(),
        )
    }

    /// A store of mutable tags with ids 1.., one per `(namespace, repository, name)`.
    pub fn with_tags(names: Vec<(String, String, String)>) -> Self {
        let tags = names
            .into_iter()
            .zip(1u64..)
            .map(|((namespace, repository, name), id)| Tag {
                id,
                namespace,
                repository,
                name,
                manifest_digest: format!("sha256:{id:064x}"),
                immutable: false,
            })
            .collect();
        MemoryStore {
            state: Mutex::new(State {
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

impl TagStore for MemoryStore {
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

impl AuditSink for MemoryStore {
    fn commit(&self, _: Change, entries: Vec<AuditEntry>) -> Result<(), SinkError> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .log
            .extend(entries);
        Ok(())
    }
}
