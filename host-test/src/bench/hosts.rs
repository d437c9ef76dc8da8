//! The trivial hosts the benchmarks run against: an engine tag store and audit
//! sinks that do the least a registry could, so figures show the engine and
//! plugin cost. Native runs use the guest's own `memory_host::MemoryHost`; runs
//! over a store use the engine's `memory::MemoryStore`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tagguard_engine::{AuditEntry, AuditSink, Change, MemoryStore, SinkError};

/// A tag store with no tags: pushes never scan or mark.
pub fn no_tags() -> MemoryStore {
    MemoryStore::with_tags(Vec::new())
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
