//! Sizes and repetitions of a full run and of a smoke run.

use std::time::Duration;

/// How big and how often each section measures.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    /// A smoke run: tiny sizes, targets not judged.
    pub smoke: bool,
    /// Timed batches per latency figure.
    pub samples: usize,
    /// Calls per batch for warm and native decisions.
    pub calls: usize,
    /// Calls per batch with a fresh instance per call.
    pub fresh_calls: usize,
    /// Tags evaluated per pass against the Quay-style baseline.
    pub quay_tags: usize,
    /// Passes of the baseline and of tagguard.
    pub quay_reps: usize,
    /// Tags in a retroactive run.
    pub retro_tags: usize,
    /// Child processes per retroactive case.
    pub retro_reps: usize,
    /// Timed swaps with a warm cache.
    pub swaps: usize,
    /// Timed swaps with a cold compile.
    pub cold_swaps: usize,
    /// Throughput windows per condition (with and without swapping).
    pub windows: usize,
    /// Length of one throughput window.
    pub window: Duration,
    /// Timed loads per cache condition.
    pub loads: usize,
}

impl Mode {
    /// The full benchmark.
    pub fn full() -> Self {
        Mode {
            smoke: false,
            samples: 21,
            calls: 1_000,
            fresh_calls: 20,
            quay_tags: 200_000,
            quay_reps: 5,
            retro_tags: 1_000_000,
            retro_reps: 3,
            swaps: 20,
            cold_swaps: 3,
            windows: 6,
            window: Duration::from_secs(1),
            loads: 5,
        }
    }

    /// Every section with tiny sizes, to keep the harness working.
    pub fn smoke() -> Self {
        Mode {
            smoke: true,
            samples: 3,
            calls: 100,
            fresh_calls: 2,
            quay_tags: 2_000,
            quay_reps: 1,
            retro_tags: 20_000,
            retro_reps: 1,
            swaps: 2,
            cold_swaps: 1,
            windows: 2,
            window: Duration::from_millis(200),
            loads: 1,
        }
    }
}
