//! Sandbox limits: per-call deadlines, the memory cap, and the typed errors
//! that a limit raises inside the guest so the engine can classify a trap
//! by type, never by message text.

use crate::host::RecordLimits;
use std::time::Duration;

/// Limits applied to every plugin instance and call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deadline of a decision: push, delete, manual change, policy record.
    pub decision_deadline: Duration,
    /// Deadline of a query: validate, explain, info, and each page of a preview.
    pub query_deadline: Duration,
    /// A retroactive run may run as long as it makes progress: this window is
    /// granted again each time the plugin calls back into `tag-store`.
    pub run_progress_window: Duration,
    /// Linear memory an instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Calls an instance serves before it is recycled (bounds memory growth).
    pub max_calls_per_instance: u64,
    /// Warm instances a generation keeps; more concurrent calls instantiate, and their
    /// instances are dropped afterwards (bounds idle memory to this many caps).
    pub max_pooled_instances: usize,
    /// Caps on staged records.
    pub records: RecordLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            decision_deadline: Duration::from_millis(100),
            query_deadline: Duration::from_millis(1_000),
            run_progress_window: Duration::from_secs(2),
            memory_bytes: 64 << 20,
            max_calls_per_instance: 10_000,
            max_pooled_instances: 16,
            records: RecordLimits::default(),
        }
    }
}

/// How often the engine's epoch advances; deadlines are rounded up to it.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// A duration in epoch ticks, at least one.
pub fn ticks(d: Duration) -> u64 {
    (d.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
}

/// Raised inside the guest when a call passes its deadline without progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline of {0:?} passed without progress")]
pub struct DeadlineExceeded(pub Duration);

/// Raised inside the guest when it tries to grow memory past the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("memory would grow to {desired} bytes, over the cap of {cap} bytes")]
pub struct MemoryLimitExceeded {
    /// Requested size.
    pub desired: usize,
    /// The cap.
    pub cap: usize,
}

/// Most elements one table may have.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Most tables an instance may have (a Rust component has a few, for indirect calls
/// and its adapter shims).
pub const MAX_TABLES: usize = 8;

/// Most core instances a component may create (its module and adapter shims).
pub const MAX_CORE_INSTANCES: usize = 16;

/// The memory cap of one store; growth past it traps with [`MemoryLimitExceeded`].
#[derive(Debug, Clone, Copy)]
pub struct MemoryCap {
    cap: usize,
}

impl MemoryCap {
    /// A cap of `cap` bytes.
    pub fn new(cap: usize) -> Self {
        MemoryCap { cap }
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                desired,
                cap: self.cap,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    /// One linear memory per instance, so the cap bounds all of its memory.
    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module with two one-page memories, in the binary format.
    const TWO_MEMORIES: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
        0x05, 0x05, 0x02, 0x00, 0x01, 0x00, 0x01, // memory section: 2 x {min 1}
    ];

    fn instantiate(bytes: &[u8]) -> wasmtime::Result<()> {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, bytes)?;
        let mut store = wasmtime::Store::new(&engine, MemoryCap::new(64 << 20));
        store.limiter(|cap| cap);
        wasmtime::Instance::new(&mut store, &module, &[]).map(drop)
    }

    #[test]
    fn an_instance_may_have_one_memory_only() {
        let err = instantiate(TWO_MEMORIES).unwrap_err();
        assert!(format!("{err:#}").contains("memor"), "{err:#}");
        // The same module with one memory instantiates.
        let one = [&TWO_MEMORIES[..8], &[0x05, 0x03, 0x01, 0x00, 0x01]].concat();
        instantiate(&one).unwrap();
    }

    #[test]
    fn a_memory_may_not_start_or_grow_past_the_cap() {
        let mut cap = MemoryCap::new(1 << 20);
        assert!(wasmtime::ResourceLimiter::memory_growing(&mut cap, 0, 1 << 20, None).unwrap());
        let err =
            wasmtime::ResourceLimiter::memory_growing(&mut cap, 0, 2 << 20, None).unwrap_err();
        assert!(err.downcast_ref::<MemoryLimitExceeded>().is_some());
        assert!(
            !wasmtime::ResourceLimiter::table_growing(&mut cap, 0, MAX_TABLE_ELEMENTS + 1, None)
                .unwrap()
        );
    }
}
