//! The audit trail as an auditor needs it: findable per tag at any
//! granularity, tamper-evident, exportable, explainable, and complete under
//! injected faults and crashes.

mod common;

use proptest::prelude::*;
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tagguard_engine::audit::{self, CLOUDEVENT_REQUIRED, ExportFormat};
use tagguard_engine::{EngineError, Granularity, Settings};
use tagguard_host_test::compliance::{assert_compliant, check};
use tagguard_host_test::db::Db;
use tagguard_host_test::{AuditQuery, NewPolicy, Registry, RegistryError, user};

const REPOS: [&str; 4] = ["api", "web", "db", "cli"];

fn policy(uuid: &str, pattern: &str) -> NewPolicy {
    NewPolicy::namespace(uuid, "org", pattern)
}

/// `n` tags spread over four repositories; in each, every other tag is a release.
fn seed(db: &Db, n: usize) {
    let per_repo = n / REPOS.len();
    for (r, repo) in REPOS.iter().enumerate() {
        let names = (0..per_repo).map(|j| {
            let i = j * REPOS.len() + r;
            if j % 2 == 0 {
                format!("v{i}")
            } else {
                format!("dev-{i}")
            }
        });
        db.seed_tags("org", repo, names);
    }
}

fn made_records_for(reg: &Registry, repo: &str, tag: &str) -> usize {
    let q = AuditQuery {
        repository: Some(repo),
        tag: Some(tag),
        kind: Some("tag_made_immutable_by_policy"),
        ..Default::default()
    };
    reg.audit(&q).len()
}

#[test]
fn a_per_batch_run_over_100000_tags_lets_every_tag_be_found_by_name() {
    let reg = Registry::new(
        common::default_plugin(),
        Settings {
            batch_size: 1000,
            granularity: Granularity::PerBatch,
        },
    );
    seed(reg.db(), 100_000);
    let out = reg
        .create_policy(&user("admin"), &policy("p", "v[0-9]+"))
        .unwrap();
    assert_eq!(out.run.count, 50_000);
    let made = reg.audit(&AuditQuery {
        kind: Some("tag_made_immutable_by_policy"),
        ..Default::default()
    });
    assert_eq!(
        made.len(),
        100,
        "one record per batch of 1,000 scanned tags"
    );
    let summary = &reg.audit(&AuditQuery {
        kind: Some("tags_made_immutable_by_policy"),
        ..Default::default()
    })[0];
    assert_eq!(summary.entry.meta_str("granularity"), Some("per_batch"));
    assert_eq!(summary.entry.metadata["count"], 50_000);
    // Every immutable tag is named by exactly one record, and no mutable tag is.
    let mut named: HashMap<(String, String), usize> = HashMap::new();
    for row in &made {
        assert_eq!(row.entry.meta_str("policy_uuid"), Some("p"));
        for t in row.entry.metadata["tags"].as_array().unwrap() {
            let key = (
                t["repository"].as_str().unwrap().to_string(),
                t["tag"].as_str().unwrap().to_string(),
            );
            *named.entry(key).or_default() += 1;
        }
    }
    let tags = reg.db().with(|s| s.tags.clone());
    for t in &tags {
        let n = named
            .get(&(t.repository.clone(), t.name.clone()))
            .copied()
            .unwrap_or(0);
        assert_eq!(n, usize::from(t.immutable), "{}:{}", t.repository, t.name);
    }
    // And the registry's query by name finds them (a sample across the whole run).
    for t in tags.iter().step_by(499) {
        assert_eq!(
            made_records_for(&reg, &t.repository, &t.name),
            usize::from(t.immutable),
            "{}",
            t.name
        );
    }
    let history = reg.history("org", "web", "v1");
    let cause = history.cause.expect("v1 has a cause");
    assert_eq!(cause.policy_uuid.as_deref(), Some("p"));
    assert_compliant(reg.db());
}

#[test]
fn a_crash_between_batches_leaves_only_whole_recorded_batches_and_a_restart_finishes() {
    let db = Arc::new(Db::new());
    seed(&db, 2_000);
    let reg = Registry::with_db(
        common::default_plugin(),
        Settings {
            batch_size: 100,
            ..Settings::default()
        },
        db.clone(),
    );
    reg.create_policy(&user("admin"), &policy("p", "x.*"))
        .unwrap();
    db.faults.crash_in.store(4, Ordering::SeqCst);
    let crashed = catch_unwind(AssertUnwindSafe(|| {
        reg.update_policy(&user("admin"), "p", "v[0-9]+", true)
    }));
    assert!(crashed.is_err(), "the run was interrupted");
    drop(reg);
    // Three batches of 100 scanned tags (50 matching each) were committed, each with its records.
    assert_eq!(
        db.with(|s| s.tags.iter().filter(|t| t.immutable).count()),
        150
    );
    assert_compliant(&db);
    assert!(db.with(|s| s.log.entries().iter().all(|r| {
        r.entry
            .meta_str("status")
            .is_none_or(|st| st == "completed")
    })));

    let restarted = Registry::with_db(
        common::default_plugin(),
        Settings {
            batch_size: 100,
            ..Settings::default()
        },
        db.clone(),
    );
    let rerun = restarted.reapply_policy(&user("admin"), "p").unwrap();
    assert_eq!(rerun.count, 850);
    assert_eq!(
        db.with(|s| s.tags.iter().filter(|t| t.immutable).count()),
        1_000
    );
    for t in db.with(|s| s.tags.clone()).iter().filter(|t| t.immutable) {
        assert_eq!(
            made_records_for(&restarted, &t.repository, &t.name),
            1,
            "{} has exactly one record",
            t.name
        );
    }
    assert_compliant(&db);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// The run writes 22 times: the policy record, 20 batches, the summary.
    /// For any k, failing the k-th write (the policy record, a batch, or the summary)
    /// leaves the invariants intact, a failed summary with the exact count, and a
    /// rerun that finishes with no duplicate record.
    #[test]
    fn any_single_failed_write_during_a_10000_tag_run_keeps_the_trail_complete(k in 1u64..=22, per_batch in any::<bool>()) {
        let granularity = if per_batch { Granularity::PerBatch } else { Granularity::PerTag };
        let reg = Registry::new(common::default_plugin(), Settings { batch_size: 500, granularity });
        seed(reg.db(), 10_000);
        let admin = user("admin");
        reg.db().faults.fail_in.store(k, Ordering::SeqCst);
        let result = reg.create_policy(&admin, &policy("p", "v[0-9]+"));
        prop_assert!(check(reg.db()).is_ok(), "{:?}", check(reg.db()));
        let changed = reg.db().with(|s| s.tags.iter().filter(|t| t.immutable).count() as u64);
        match &result {
            Ok(out) => prop_assert_eq!(out.run.count, 5_000),
            Err(RegistryError::Engine(EngineError::RunIncomplete { changed: c, .. })) => {
                prop_assert_eq!(*c, changed);
                let summaries = reg.audit(&AuditQuery { kind: Some("tags_made_immutable_by_policy"), ..Default::default() });
                prop_assert_eq!(summaries.len(), 1);
                prop_assert_eq!(summaries[0].entry.meta_str("status"), Some("failed"));
                prop_assert_eq!(summaries[0].entry.metadata["count"].as_u64(), Some(changed));
            }
            Err(RegistryError::Engine(EngineError::HostAudit { .. })) => {
                // The policy record (k = 1) or the completed summary (the last write) failed.
                prop_assert!(changed == 0 || changed == 5_000, "changed {}", changed);
            }
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
        prop_assert_eq!(reg.db().faults.fail_in.load(Ordering::SeqCst), 0, "the k-th write of the run failed");
        let rerun = if reg.db().with(|s| s.policies.is_empty()) {
            reg.create_policy(&admin, &policy("p", "v[0-9]+")).map(|o| o.run)
        } else {
            reg.reapply_policy(&admin, "p")
        };
        prop_assert!(rerun.is_ok(), "{:?}", rerun.err().map(|e| e.to_string()));
        prop_assert!(check(reg.db()).is_ok(), "{:?}", check(reg.db()));
        let tags = reg.db().with(|s| s.tags.clone());
        prop_assert_eq!(tags.iter().filter(|t| t.immutable).count(), 5_000);
        for t in tags.iter().filter(|t| t.immutable).step_by(97) {
            prop_assert_eq!(made_records_for(&reg, &t.repository, &t.name), 1);
        }
    }
}

#[test]
fn editing_the_registrys_log_is_detected_at_the_right_entry() {
    let reg = common::registry(500);
    let alice = user("alice");
    reg.create_policy(&alice, &policy("p", "v.*")).unwrap();
    for i in 0..20 {
        reg.push(&alice, "org", "repo", &format!("v{i}"), "sha256:a")
            .unwrap();
    }
    assert_compliant(reg.db());
    reg.db().with(|s| {
        s.log.entries_mut()[7].entry.performer.name = "mallory".into();
    });
    let problems = check(reg.db()).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("fails verification") && p.contains("position 7")),
        "{problems:?}"
    );
}

#[test]
fn exports_carry_every_required_field() {
    let reg = common::registry(500);
    let alice = user("alice");
    reg.create_policy(&alice, &policy("p", "latest")).unwrap();
    reg.push(&alice, "org", "repo", "latest", "sha256:a")
        .unwrap();
    assert!(
        reg.push(&alice, "org", "repo", "latest", "sha256:b")
            .is_err()
    );
    let quay = reg.export(ExportFormat::Quay, "/registry/test");
    let rows: Vec<serde_json::Value> = quay
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    for row in &rows {
        for field in ["kind", "account", "performer", "metadata_json", "datetime"] {
            assert!(!row[field].is_null(), "{field} missing in {row}");
        }
        let meta: serde_json::Value =
            serde_json::from_str(row["metadata_json"].as_str().unwrap()).unwrap();
        assert!(
            meta["plugin_digest"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert!(meta["hash"].as_str().unwrap().starts_with("sha256:"));
    }
    assert_eq!(rows[2]["kind"], "tag_made_immutable_by_policy");
    assert_eq!(rows[2]["repository"], "repo");
    let events = reg.export(ExportFormat::CloudEvents, "/registry/test");
    for line in events.lines() {
        let ev: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            audit::missing_fields(&ev, &CLOUDEVENT_REQUIRED).is_empty(),
            "{ev}"
        );
        assert_eq!(ev["specversion"], "1.0");
        assert!(ev["time"].as_str().unwrap().ends_with('Z'));
        assert!(
            ev["type"]
                .as_str()
                .unwrap()
                .starts_with("io.tagguard.audit.")
        );
    }
}

#[test]
fn the_history_of_a_tag_says_why_it_is_immutable() {
    let reg = common::registry(500);
    let (alice, admin) = (user("alice"), user("admin"));
    reg.push(&alice, "org", "repo", "v1", "sha256:a").unwrap();
    reg.create_policy(&admin, &policy("p", "v.*")).unwrap();
    assert!(reg.push(&alice, "org", "repo", "v1", "sha256:b").is_err());
    assert!(reg.delete_tag(&alice, "org", "repo", "v1").is_err());
    let h = reg.history("org", "repo", "v1");
    let kinds: Vec<&str> = h.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            "tag_made_immutable_by_policy",
            "tag_immutability_denied",
            "tag_immutability_denied"
        ]
    );
    let cause = h.cause.clone().unwrap();
    assert_eq!(cause.policy_uuid.as_deref(), Some("p"));
    assert_eq!(cause.trigger.as_deref(), Some("policy_created"));
    assert_eq!(cause.performer, "admin");
    assert!(cause.plugin.starts_with("tagguard-default@"));
    assert!(cause.run_id.is_some());
    assert_eq!(h.events[1].trigger.as_deref(), Some("push"));
    assert_eq!(h.events[2].trigger.as_deref(), Some("delete_tag"));
    // A manual clear becomes the cause.
    reg.set_immutable(&admin, true, "org", "repo", "v1", false)
        .unwrap();
    let cause = reg.history("org", "repo", "v1").cause.unwrap();
    assert_eq!(
        (cause.kind, cause.immutable),
        ("change_tag_immutability", Some(false))
    );
    assert!(reg.history("org", "repo", "nope").events.is_empty());
    assert_compliant(reg.db());
}
