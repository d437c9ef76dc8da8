//! The compliance checker every test calls. It holds the brief's invariants
//! against the database's ground truth: the transitions actually applied.
//!
//! 1. Every tag that is immutable got there through a change committed with
//!    a record that claims it (policy or manual), and that record names a cause.
//! 2. No record claims a change that did not happen: every claiming record is
//!    tied to exactly the real transitions it names (one, or each tag of a
//!    per-batch record), and every run summary's count equals the tags its
//!    run's records name.
//!
//! 3. No immutable tag is ever removed: deleted, moved away from, or deleted
//!    with its manifest.
//!
//! It also checks the log is gap-free, its hash chain intact, and its head
//! still the one the latest keyed checkpoint signed (so a rewritten chain is
//! caught, not only a broken one).

use crate::db::{Db, LogRow};
use std::collections::HashMap;
use tagguard_engine::audit;

const MADE: &str = "tag_made_immutable_by_policy";
const MANUAL: &str = "change_tag_immutability";
const SUMMARY: &str = "tags_made_immutable_by_policy";

/// How many tag changes a record claims: one, or each tag of a per-batch record.
fn claimed(row: &LogRow) -> usize {
    let e = &row.entry;
    match (e.kind, &e.tag) {
        (MADE | MANUAL, Some(_)) => 1,
        (MADE, None) => e
            .metadata
            .get("tags")
            .and_then(|t| t.as_array())
            .map_or(0, Vec::len),
        _ => 0,
    }
}

/// Checks the three invariants, the sequence and the chain; returns every violation found.
pub fn check(db: &Db) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    db.with(|s| {
        let log = s.log.entries();
        let checkpoints: Vec<_> = db.checkpoints.latest().into_iter().collect();
        if let Err(broken) = audit::verify_against(log, db.checkpoints.key(), &checkpoints) {
            problems.push(format!("audit log fails verification: {broken}"));
        }
        let mut links: HashMap<u64, usize> = HashMap::new();
        let mut last_to: HashMap<u64, (bool, Option<u64>)> = HashMap::new();
        for t in &s.transitions {
            match t.record_seq {
                None => problems.push(format!(
                    "tag id {} changed {} -> {} with no record",
                    t.tag_id, t.from, t.to
                )),
                Some(seq) => *links.entry(seq).or_default() += 1,
            }
            last_to.insert(t.tag_id, (t.to, t.record_seq));
        }
        for tag in s.tags.iter().filter(|t| t.immutable) {
            match last_to.get(&tag.id) {
                Some((true, Some(seq))) => {
                    let e = &log[(*seq - 1) as usize].entry;
                    let has_cause = match e.kind {
                        MADE => {
                            e.meta_str("policy_uuid").is_some() && e.meta_str("trigger").is_some()
                        }
                        MANUAL => e.meta_str("trigger") == Some("manual"),
                        _ => false,
                    };
                    if !has_cause {
                        problems.push(format!(
                            "record {seq} for immutable tag {} names no cause",
                            tag.name
                        ));
                    }
                }
                _ => problems.push(format!(
                    "tag {}/{}:{} (id {}) is immutable with no record of the change",
                    tag.namespace, tag.repository, tag.name, tag.id
                )),
            }
        }
        for r in s.removals.iter().filter(|r| r.was_immutable) {
            problems.push(format!(
                "tag id {} was removed while it was immutable",
                r.tag_id
            ));
        }
        let mut per_run: HashMap<&str, usize> = HashMap::new();
        for row in log {
            let claims = claimed(row);
            let linked = links.get(&row.seq).copied().unwrap_or(0);
            if claims != linked {
                problems.push(format!(
                    "record {} ({} for {:?}) claims {claims} changes, {linked} happened",
                    row.seq, row.entry.kind, row.entry.tag
                ));
            }
            if row.entry.kind == MADE
                && let Some(run) = row.entry.meta_str("run_id")
            {
                *per_run.entry(run).or_default() += claims;
            }
        }
        for row in log.iter().filter(|r| r.entry.kind == SUMMARY) {
            let e = &row.entry;
            let run = e.meta_str("run_id").unwrap_or_default();
            let count = e.metadata.get("count").and_then(|v| v.as_u64());
            let actual = per_run.get(run).copied().unwrap_or(0) as u64;
            if count != Some(actual) {
                problems.push(format!(
                    "summary {} of run {run} claims {count:?} tags, the log has {actual}",
                    row.seq
                ));
            }
        }
    });
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Panics with every violation if the invariants do not hold.
pub fn assert_compliant(db: &Db) {
    if let Err(problems) = check(db) {
        panic!(
            "compliance invariants violated:\n  {}",
            problems.join("\n  ")
        );
    }
}
