//! The compliance checker every test calls. It holds the brief's invariants
//! against the database's ground truth: the transitions actually applied.
//!
//! 1. Every tag that is immutable got there through a change committed with
//!    a record that claims it (policy or manual), and that record names a cause.
//! 2. No record claims a change that did not happen: every claiming record is
//!    tied to exactly one real transition, and every run summary's count equals
//!    the per-tag records of its run.

use crate::db::Db;
use std::collections::{HashMap, HashSet};

const MADE: &str = "tag_made_immutable_by_policy";
const MANUAL: &str = "change_tag_immutability";
const SUMMARY: &str = "tags_made_immutable_by_policy";

/// Checks both invariants and the log's sequence; returns every violation found.
pub fn check(db: &Db) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    db.with(|s| {
        for (i, row) in s.log.iter().enumerate() {
            if row.seq != i as u64 + 1 {
                problems.push(format!(
                    "log row {i} has sequence {} (gap or reorder)",
                    row.seq
                ));
            }
        }
        let mut linked = HashSet::new();
        let mut last_to: HashMap<u64, (bool, Option<u64>)> = HashMap::new();
        for t in &s.transitions {
            match t.record_seq {
                None => problems.push(format!(
                    "tag id {} changed {} -> {} with no record",
                    t.tag_id, t.from, t.to
                )),
                Some(seq) => {
                    if !linked.insert(seq) {
                        problems.push(format!("record {seq} is claimed by two changes"));
                    }
                }
            }
            last_to.insert(t.tag_id, (t.to, t.record_seq));
        }
        for tag in s.tags.iter().filter(|t| t.immutable) {
            match last_to.get(&tag.id) {
                Some((true, Some(seq))) => {
                    let e = &s.log[(*seq - 1) as usize].entry;
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
        let mut per_run: HashMap<&str, u64> = HashMap::new();
        for row in &s.log {
            let e = &row.entry;
            if (e.kind == MADE || e.kind == MANUAL) && !linked.contains(&row.seq) {
                problems.push(format!(
                    "record {} ({} for {:?}) claims a change that did not happen",
                    row.seq, e.kind, e.tag
                ));
            }
            if e.kind == MADE
                && let Some(run) = e.meta_str("run_id")
            {
                *per_run.entry(run).or_default() += 1;
            }
        }
        for row in s.log.iter().filter(|r| r.entry.kind == SUMMARY) {
            let e = &row.entry;
            let run = e.meta_str("run_id").unwrap_or_default();
            let claimed = e.metadata.get("count").and_then(|v| v.as_u64());
            let actual = per_run.get(run).copied().unwrap_or(0);
            if claimed != Some(actual) {
                problems.push(format!(
                    "summary {} of run {run} claims {claimed:?} tags, the log has {actual}",
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
