//! Counters for Prometheus' `/metrics`, in its text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use tagguard_engine::PushOutcome;

/// The registry's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    pushes_created: AtomicU64,
    pushes_created_immutable: AtomicU64,
    pushes_denied: AtomicU64,
    deletes_allowed: AtomicU64,
    deletes_denied: AtomicU64,
    manual_changes: AtomicU64,
    policy_changes: AtomicU64,
    run_tags_marked: AtomicU64,
    failures: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// Counts a push decision.
    pub fn push(&self, outcome: &PushOutcome) {
        match outcome {
            PushOutcome::Denied { .. } => add(&self.pushes_denied, 1),
            PushOutcome::Created { immutable, .. } => {
                add(&self.pushes_created, 1);
                if *immutable {
                    add(&self.pushes_created_immutable, 1);
                }
            }
        }
    }

    /// Counts a delete decision.
    pub fn delete(&self, allowed: bool) {
        add(
            if allowed {
                &self.deletes_allowed
            } else {
                &self.deletes_denied
            },
            1,
        );
    }

    /// Counts a manual immutability change.
    pub fn manual_change(&self) {
        add(&self.manual_changes, 1);
    }

    /// Counts a policy create, update or delete.
    pub fn policy_change(&self) {
        add(&self.policy_changes, 1);
    }

    /// Counts tags a retroactive run made immutable.
    pub fn run_marked(&self, n: u64) {
        add(&self.run_tags_marked, n);
    }

    /// Counts an engine call that failed.
    pub fn failure(&self) {
        add(&self.failures, 1);
    }

    /// The text exposition, with the gauges the caller reads at scrape time.
    pub fn render(&self, generation: u64, runs_running: u64, runs_incomplete: u64) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        family(
            "tagguard_decisions_total",
            "counter",
            "Decisions committed, by call and outcome.",
            &[
                (
                    "{call=\"push\",outcome=\"created\"}",
                    get(&self.pushes_created),
                ),
                (
                    "{call=\"push\",outcome=\"denied\"}",
                    get(&self.pushes_denied),
                ),
                (
                    "{call=\"delete\",outcome=\"allowed\"}",
                    get(&self.deletes_allowed),
                ),
                (
                    "{call=\"delete\",outcome=\"denied\"}",
                    get(&self.deletes_denied),
                ),
                (
                    "{call=\"manual_change\",outcome=\"changed\"}",
                    get(&self.manual_changes),
                ),
                (
                    "{call=\"policy\",outcome=\"changed\"}",
                    get(&self.policy_changes),
                ),
            ],
        );
        family(
            "tagguard_denials_total",
            "counter",
            "Tag writes refused because a tag is immutable.",
            &[("", get(&self.pushes_denied) + get(&self.deletes_denied))],
        );
        family(
            "tagguard_tags_made_immutable_total",
            "counter",
            "Tags made immutable, on push and by retroactive runs.",
            &[
                ("{trigger=\"push\"}", get(&self.pushes_created_immutable)),
                ("{trigger=\"run\"}", get(&self.run_tags_marked)),
            ],
        );
        family(
            "tagguard_engine_failures_total",
            "counter",
            "Engine calls that failed (nothing was committed for them).",
            &[("", get(&self.failures))],
        );
        family(
            "tagguard_runs",
            "gauge",
            "Retroactive runs by status.",
            &[
                ("{status=\"running\"}", runs_running),
                ("{status=\"incomplete\"}", runs_incomplete),
            ],
        );
        family(
            "tagguard_plugin_generation",
            "gauge",
            "The serving plugin generation.",
            &[("", generation)],
        );
        out
    }
}
