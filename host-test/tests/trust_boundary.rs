//! The host trusts nothing a plugin says. One hostile component, the `liar`
//! variant of examples/plugins/hostile, tells one lie per call, chosen by the
//! policy uuid or tag name it is given. Each test tries one escape and shows
//! it fails closed: a typed error, nothing committed beyond what the records
//! explain, the registry keeps serving, and the log still verifies.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};
use tagguard_engine::{
    EngineError, Granularity, Limits, Plugin, Policy, Removal, RemovalAction, Runtime,
    RuntimeConfig, Scope, Settings, TagGuard, built_plugin_path,
};
use tagguard_host_test::compliance::{assert_compliant, check};
use tagguard_host_test::db::{Db, Removed};
use tagguard_host_test::{AuditQuery, NewPolicy, Registry, RegistryError, user};

fn liar_on(runtime: &Runtime) -> Plugin {
    Plugin::from_file(runtime, built_plugin_path("hostile-plugin-liar")).expect("liar loads")
}

fn liar() -> Plugin {
    liar_on(common::runtime())
}

/// A registry running the liar over `db`.
fn lying(db: &Arc<Db>, granularity: Granularity) -> Registry {
    let settings = Settings {
        batch_size: 2,
        granularity,
    };
    Registry::with_db(liar(), settings, db.clone())
}

/// A database with five mutable tags `v1`..`v5` in org/app and one in other/secret.
fn seeded() -> Arc<Db> {
    let db = Arc::new(Db::new());
    db.seed_tags("org", "app", (1..=5).map(|i| format!("v{i}")));
    db.seed_tags("other", "secret", ["v1".to_string()]);
    db
}

fn engine_error(err: RegistryError) -> EngineError {
    match err {
        RegistryError::Engine(e) => e,
        other => panic!("expected an engine error, got {other}"),
    }
}

/// The cause of a stopped run.
fn run_cause(err: RegistryError) -> EngineError {
    match engine_error(err) {
        EngineError::RunIncomplete { cause, .. } => *cause,
        other => panic!("expected RunIncomplete, got {other}"),
    }
}

fn immutable_tags(db: &Db) -> usize {
    db.with(|s| s.tags.iter().filter(|t| t.immutable).count())
}

/// The log holds, for the policy's run, only the policy record and the host's failed summary.
fn only_a_failed_summary(reg: &Registry) {
    let summaries = reg.audit(&AuditQuery {
        kind: Some("tags_made_immutable_by_policy"),
        ..AuditQuery::default()
    });
    assert_eq!(summaries.len(), 1, "one summary for the stopped run");
    let e = &summaries[0].entry;
    assert_eq!(e.meta_str("status"), Some("failed"));
    assert_eq!(e.meta_str("written_by"), Some("host"));
}

/// Creates, in a seeded registry running the liar, a policy whose uuid names the lie;
/// returns the registry, its database and why the run stopped, after checking that
/// the run's only summary is the host's failed one.
fn stopped_run(
    uuid: &str,
    pattern: &str,
    granularity: Granularity,
) -> (Registry, Arc<Db>, EngineError) {
    let db = seeded();
    let reg = lying(&db, granularity);
    let policy = NewPolicy::namespace(uuid, "org", pattern);
    let cause = run_cause(reg.create_policy(&user("admin"), &policy).unwrap_err());
    only_a_failed_summary(&reg);
    (reg, db, cause)
}

/// The registry keeps serving after a refused lie: an honest push still works.
fn still_serving(reg: &Registry) {
    assert!(
        !reg.push(&user("ci"), "org", "app", "fresh", "sha256:f")
            .unwrap()
    );
    assert_compliant(reg.db());
}

// Hole 1: validate-policy's result was stored as is.

#[test]
fn validate_policy_may_only_trim_the_pattern_and_the_host_keeps_every_other_field() {
    let db = seeded();
    let reg = lying(&db, Granularity::PerTag);
    let err = engine_error(
        reg.create_policy(
            &user("admin"),
            &NewPolicy::namespace("rewrite", "org", "v1"),
        )
        .unwrap_err(),
    );
    assert!(
        matches!(&err, EngineError::ContractViolation { call: "validate-policy", reason, .. } if reason.contains("\".*\"")),
        "{err}"
    );
    assert!(reg.policy("rewrite").is_err(), "nothing stored");
    assert!(reg.audit(&AuditQuery::default()).is_empty());
    assert_eq!(immutable_tags(&db), 0);
    // The default plugin: the stored policy is the candidate with its pattern trimmed.
    let good = common::registry(500);
    let new = NewPolicy::namespace("keep", "org", "  v1  ").in_repository("app");
    let stored = good.create_policy(&user("admin"), &new).unwrap().policy;
    assert_eq!(
        stored,
        Policy {
            uuid: "keep".into(),
            scope: Scope::Repository,
            namespace: "org".into(),
            repository: Some("app".into()),
            tag_pattern: "v1".into(),
            tag_pattern_matches: true,
        }
    );
    still_serving(&reg);
}

// Hole 2: scans and marks were not confined to the policy's scope.

#[test]
fn a_run_marks_only_tags_its_scans_returned_in_the_policys_scope() {
    let (reg, db, err) = stopped_run("foreign-mark", "v1", Granularity::PerTag);
    assert!(
        matches!(&err, EngineError::AuditMissing { reason, .. } if reason.contains("not returned by the most recent scan")),
        "{err}"
    );
    assert_eq!(immutable_tags(&db), 0);
    // An honest run and preview of an `org` policy never see `other`'s tags.
    let good = Registry::with_db(common::default_plugin(), Settings::default(), db.clone());
    let candidate = Policy {
        uuid: "peek".into(),
        scope: Scope::Namespace,
        namespace: "org".into(),
        repository: None,
        tag_pattern: "v1".into(),
        tag_pattern_matches: true,
    };
    let preview = good.guard().preview(&candidate, 10).unwrap();
    assert_eq!(preview.count, 1);
    assert!(preview.sample.iter().all(|t| t.namespace == "org"));
    let ran = good
        .create_policy(
            &user("admin"),
            &NewPolicy::namespace("all-v1", "org", "v[1]"),
        )
        .unwrap();
    assert_eq!(ran.run.count, 1);
    assert!(!good.tag("other", "secret", "v1").unwrap().immutable);
    // A lying preview that reports another namespace's tag is refused.
    let err = reg
        .guard()
        .preview(
            &Policy {
                uuid: "preview-lie".into(),
                ..candidate
            },
            10,
        )
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::ContractViolation { call: "preview", reason, .. } if reason.contains("other/secret:leaked")),
        "{err}"
    );
    still_serving(&reg);
}

// Hole 3: any tag-store call counted as progress.

#[test]
fn a_run_that_rescans_from_the_start_breaks_the_contract() {
    let (reg, _, err) = stopped_run("rescan", "v1", Granularity::PerTag);
    assert!(
        matches!(&err, EngineError::ContractViolation { reason, .. } if reason.contains("scans go page by page")),
        "{err}"
    );
    // Jumping past every tag to an empty page cannot make a run look complete either.
    let (_, db, err) = stopped_run("skip-ahead", "v1", Granularity::PerTag);
    assert!(
        matches!(&err, EngineError::ContractViolation { reason, .. } if reason.contains("after-id 1000000 is not 0")),
        "{err}"
    );
    assert_eq!(immutable_tags(&db), 0);
    still_serving(&reg);
}

#[test]
fn a_run_that_scans_past_the_end_forever_times_out_while_pushes_go_on() {
    let runtime = Runtime::with_config(RuntimeConfig {
        limits: Limits {
            run_progress_window: Duration::from_secs(2),
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap();
    let db = seeded();
    let settings = Settings {
        batch_size: 2,
        granularity: Granularity::PerTag,
    };
    let reg = Arc::new(Registry::with_db(liar_on(&runtime), settings, db.clone()));
    let running = {
        let reg = reg.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let err = reg
                .create_policy(&user("admin"), &NewPolicy::namespace("stuck", "org", "v1"))
                .unwrap_err();
            (err, started.elapsed())
        })
    };
    // Pushes are decided and committed while the run spins: none waits for it.
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..20 {
        let started = Instant::now();
        reg.push(&user("ci"), "org", "app", &format!("p{i}"), "sha256:p")
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a push waited {:?} for the run",
            started.elapsed()
        );
    }
    let (err, elapsed) = running.join().unwrap();
    assert!(
        matches!(run_cause(err), EngineError::Timeout { .. }),
        "the run stops when its scans bring nothing new"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "stopped after {elapsed:?}"
    );
    only_a_failed_summary(&reg);
    assert_compliant(&db);
}

// Hole 4: deletes could commit with no record.

#[test]
fn a_delete_decided_on_a_stale_view_is_refused_at_commit() {
    let reg = common::registry(500);
    let admin = user("admin");
    for tag in ["keep", "other"] {
        reg.push(&admin, "org", "app", tag, "sha256:m").unwrap();
    }
    let stale: Vec<_> = ["keep", "other"]
        .iter()
        .map(|t| reg.tag("org", "app", t).unwrap().to_tag())
        .collect();
    // A run marks `keep` after the registry read the manifest's tags.
    reg.create_policy(&admin, &NewPolicy::namespace("p", "org", "keep"))
        .unwrap();
    let removal = Removal {
        actor: admin.clone(),
        tags: stale,
        policies: vec![],
        action: RemovalAction::DeleteManifest,
    };
    let err = reg.guard().delete(&removal).unwrap_err();
    assert!(matches!(err, EngineError::Conflict { .. }), "{err}");
    assert!(reg.tag("org", "app", "keep").unwrap().immutable);
    assert!(reg.tag("org", "app", "other").is_some(), "nothing deleted");
    // Decided again on a fresh view, the delete is denied with a record.
    let err = reg
        .delete_manifest(&admin, "org", "app", "sha256:m")
        .unwrap_err();
    assert_eq!(err.code(), Some("TAG_IMMUTABLE"));
    assert_eq!(
        reg.audit(&AuditQuery {
            kind: Some("tag_immutability_denied"),
            ..AuditQuery::default()
        })
        .len(),
        1
    );
    assert_compliant(reg.db());
}

#[test]
fn the_compliance_checker_reports_an_immutable_tag_that_was_removed() {
    let reg = common::registry(500);
    reg.create_policy(&user("admin"), &NewPolicy::namespace("p", "org", "v1"))
        .unwrap();
    reg.push(&user("ci"), "org", "app", "v1", "sha256:a")
        .unwrap();
    assert_compliant(reg.db());
    // A registry bug that bypasses the engine and deletes the immutable tag.
    reg.db().with(|s| {
        let tag = s.tags.iter_mut().find(|t| t.name == "v1").unwrap();
        tag.alive = false;
        s.removals.push(Removed {
            tag_id: tag.id,
            was_immutable: true,
        });
    });
    let problems = check(reg.db()).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("removed while it was immutable")),
        "{problems:?}"
    );
}

// Hole 5: the guard let false records through.

#[test]
fn a_denial_that_names_a_tag_twice_is_refused() {
    let db = seeded();
    let reg = lying(&db, Granularity::PerTag);
    reg.create_policy(
        &user("admin"),
        &NewPolicy::namespace("p", "org", "dup-deny"),
    )
    .unwrap();
    assert!(
        reg.push(&user("ci"), "org", "app", "dup-deny", "sha256:d")
            .unwrap()
    );
    let before = reg.audit(&AuditQuery::default()).len();
    let err = engine_error(
        reg.delete_tag(&user("ci"), "org", "app", "dup-deny")
            .unwrap_err(),
    );
    assert!(
        matches!(&err, EngineError::AuditMissing { reason, .. } if reason.contains("more than once")),
        "{err}"
    );
    assert_eq!(reg.audit(&AuditQuery::default()).len(), before);
    assert!(reg.tag("org", "app", "dup-deny").is_some());
    still_serving(&reg);
}

#[test]
fn a_push_record_must_name_a_policy_that_fired_and_matches_must_be_given_policies() {
    let db = seeded();
    let reg = lying(&db, Granularity::PerTag);
    for (uuid, tag) in [
        ("a", "wrong-cause"),
        ("b", "phantom"),
        ("c", "wrong-pattern"),
        ("d", "wrong-repo"),
    ] {
        reg.create_policy(&user("admin"), &NewPolicy::namespace(uuid, "org", tag))
            .unwrap();
    }
    let before = reg.audit(&AuditQuery::default()).len();
    for (tag, needle) in [
        ("wrong-cause", "not-a-policy"),
        ("wrong-pattern", "misstates its pattern"),
        ("wrong-repo", "does not name org/app:wrong-repo"),
    ] {
        let err = engine_error(
            reg.push(&user("ci"), "org", "app", tag, "sha256:p")
                .unwrap_err(),
        );
        assert!(
            matches!(&err, EngineError::AuditMissing { reason, .. } if reason.contains(needle)),
            "{tag}: {err}"
        );
    }
    // A match is an index into the policy set the host compiled: one past its end names
    // no policy the plugin was given.
    let err = engine_error(
        reg.push(&user("ci"), "org", "app", "phantom", "sha256:p")
            .unwrap_err(),
    );
    assert!(
        matches!(&err, EngineError::ContractViolation { call: "on-push", reason, .. } if reason.contains("policy index 4, but the set has 4 policies")),
        "{err}"
    );
    let policies = reg.policies_in_scope("org", "app");
    let err = reg.guard().explain("phantom", &policies).unwrap_err();
    assert!(
        matches!(
            &err,
            EngineError::ContractViolation {
                call: "explain",
                reason,
                ..
            } if reason.contains("policy index")
        ),
        "{err}"
    );
    // Indices must ascend: a policy named twice, or out of the set's order, is refused.
    let err = reg.guard().explain("unsorted", &policies).unwrap_err();
    assert!(
        matches!(
            &err,
            EngineError::ContractViolation {
                call: "explain",
                reason,
                ..
            } if reason.contains("must ascend")
        ),
        "{err}"
    );
    assert_eq!(reg.audit(&AuditQuery::default()).len(), before);
    assert!(reg.tag("org", "app", "wrong-cause").is_none());
    still_serving(&reg);
}

#[test]
fn run_records_must_state_the_change_and_sit_in_the_policys_scope() {
    for (uuid, granularity, needle) in [
        (
            "flip-record",
            Granularity::PerTag,
            "previous_immutable false",
        ),
        ("batch-elsewhere", Granularity::PerBatch, "in org/*"),
    ] {
        let (reg, db, err) = stopped_run(uuid, "v1", granularity);
        assert!(
            matches!(&err, EngineError::AuditMissing { reason, .. } if reason.contains(needle)),
            "{uuid}: {err}"
        );
        assert_eq!(immutable_tags(&db), 0, "{uuid}");
        still_serving(&reg);
    }
}

#[test]
fn a_run_summary_must_state_what_the_host_saw() {
    for uuid in ["forged-sample", "forged-batches"] {
        let (reg, db, err) = stopped_run(uuid, "v1", Granularity::PerTag);
        assert!(
            matches!(&err, EngineError::AuditMissing { reason, .. } if reason.contains("the host saw")),
            "{uuid}: {err}"
        );
        // The tag it really marked keeps its record; the summary is the host's.
        assert_eq!(immutable_tags(&db), 1, "{uuid}");
        let summary = reg.audit(&AuditQuery {
            kind: Some("tags_made_immutable_by_policy"),
            ..AuditQuery::default()
        });
        let meta = &summary[0].entry.metadata;
        assert_eq!(meta["count"], 1);
        assert_eq!(meta["sample_tags"], serde_json::json!(["v1"]));
        assert_eq!(meta["batches"], 3);
        still_serving(&reg);
    }
}

// Hole 6: a run ended on the first short page, and batch_size was not checked.

#[test]
fn a_run_that_stops_before_the_end_cannot_claim_completion() {
    let (_, db, err) = stopped_run("short-page", "v5", Granularity::PerTag);
    assert!(
        matches!(&err, EngineError::AuditMissing { reason, .. } if reason.contains("did not reach the end")),
        "{err}"
    );
    assert_eq!(immutable_tags(&db), 0, "v5 is on the third page");
}

#[test]
fn a_batch_size_above_the_scan_limit_is_refused_by_name() {
    let db = Arc::new(Db::new());
    let err = TagGuard::new(
        common::default_plugin(),
        db.clone(),
        db,
        Settings {
            batch_size: 20_000,
            granularity: Granularity::PerTag,
        },
    )
    .err()
    .expect("refused");
    assert!(
        matches!(&err, EngineError::InvalidSettings { field: "batch_size", reason } if reason.contains("1..=10000")),
        "{err}"
    );
}

// Hole 7: exports other than validate-policy accepted any policy.

#[test]
fn every_export_checks_its_policies_as_validation_does() {
    let reg = common::registry(500);
    for tag in ["v1", "v2", "x"] {
        reg.push(&user("ci"), "org", "app", tag, "sha256:a")
            .unwrap();
    }
    let padded = Policy {
        uuid: "p".into(),
        scope: Scope::Namespace,
        namespace: "org".into(),
        repository: None,
        tag_pattern: " v.* ".into(),
        tag_pattern_matches: true,
    };
    let preview = reg.guard().preview(&padded, 10).unwrap();
    let inverted = reg
        .guard()
        .preview(
            &Policy {
                tag_pattern_matches: false,
                ..padded.clone()
            },
            10,
        )
        .unwrap();
    let created = reg
        .create_policy(&user("admin"), &NewPolicy::namespace("p", "org", " v.* "))
        .unwrap();
    assert_eq!(
        preview.count, created.run.count,
        "preview agrees with create"
    );
    assert_eq!((preview.count, inverted.count), (2, 1));
    // A stored policy whose pattern was never validated is the registry's error.
    let err = reg
        .guard()
        .explain("v1", std::slice::from_ref(&padded))
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::InvalidRequest { field, .. } if field == "policies[0].tag-pattern"),
        "{err}"
    );
    let orphan = Policy {
        scope: Scope::Repository,
        tag_pattern: "v.*".into(),
        ..padded.clone()
    };
    let err = reg.guard().explain("v1", &[orphan]).unwrap_err();
    assert!(
        matches!(&err, EngineError::InvalidRequest { field, .. } if field == "policies[0].repository"),
        "{err}"
    );
    let nameless = Policy {
        uuid: String::new(),
        tag_pattern: "v.*".into(),
        ..padded.clone()
    };
    let err = reg.guard().preview(&nameless, 10).unwrap_err();
    assert!(
        matches!(&err, EngineError::InvalidPolicy { error: tagguard_engine::PolicyError::MissingField(f), .. } if f == "uuid"),
        "{err}"
    );
    // A bad pattern's error shows the pattern as written, not an internal wrapper.
    let bad = Policy {
        tag_pattern: "v[0-9".into(),
        ..padded.clone()
    };
    let err = reg.guard().validate_policy(&bad, &[]).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("v[0-9") && !message.contains("^(?:"),
        "{message}"
    );
    // A verbose pattern with a comment is valid and matches in full.
    let verbose = Policy {
        uuid: "x".into(),
        tag_pattern: "(?x)v1 # the first release".into(),
        ..padded
    };
    let stored = reg.guard().validate_policy(&verbose, &[]).unwrap();
    let fired = reg
        .guard()
        .explain("v1", std::slice::from_ref(&stored))
        .unwrap();
    assert_eq!(fired.len(), 1);
    assert!(reg.guard().explain("v10", &[stored]).unwrap().is_empty());
}

// Hole 8: what happens to a failed run's staged summary is stated once.

#[test]
fn what_a_failed_run_staged_is_dropped_and_the_host_writes_its_summary() {
    let (_, db, err) = stopped_run("summary-then-error", "v2", Granularity::PerTag);
    assert!(matches!(err, EngineError::Plugin { .. }), "{err}");
    // The tag it marked keeps its own record.
    assert_eq!(immutable_tags(&db), 1);
    assert_compliant(&db);
}

// Hole 10: memory looser than documented (the memory and table caps are unit tests of
// engine/src/limits.rs; the call byte budget is in sandbox.rs).

#[test]
fn the_instance_pool_keeps_at_most_its_bound() {
    let runtime = Runtime::with_config(RuntimeConfig {
        limits: Limits {
            max_pooled_instances: 2,
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap();
    let reg = Registry::new(
        Plugin::default_plugin(&runtime).unwrap(),
        Settings::default(),
    );
    std::thread::scope(|s| {
        for t in 0..8 {
            let reg = &reg;
            s.spawn(move || {
                for i in 0..5 {
                    reg.push(&user("ci"), "org", "app", &format!("t{t}-{i}"), "sha256:a")
                        .unwrap();
                }
            });
        }
    });
    let pooled = reg.guard().pooled_instances();
    assert!((1..=2).contains(&pooled), "{pooled} pooled");
    assert_compliant(reg.db());
}

// A push decided against an older policy set is refused at commit and decided again.

#[test]
fn a_push_decided_before_a_policy_change_conflicts_and_is_decided_again() {
    let reg = common::registry(500);
    let admin = user("admin");
    let (policies, version) = (
        reg.policies_in_scope("org", "app"),
        reg.db().with(|s| s.policy_version),
    );
    let stale = tagguard_engine::PushRequest {
        actor: user("ci"),
        namespace: "org".into(),
        repository: "app".into(),
        tag_name: "v1".into(),
        manifest_digest: "sha256:a".into(),
        existing: None,
        policies,
        policy_version: version,
    };
    // The policy is committed while the push is being decided.
    reg.create_policy(&admin, &NewPolicy::namespace("p", "org", "v1"))
        .unwrap();
    let err = reg.guard().push(&stale).unwrap_err();
    assert!(
        matches!(&err, EngineError::Conflict { message, .. } if message.contains("policy version")),
        "{err}"
    );
    assert!(reg.tag("org", "app", "v1").is_none(), "nothing committed");
    // The registry decides it again under the new policy set: created immutable.
    assert!(
        reg.push(&user("ci"), "org", "app", "v1", "sha256:a")
            .unwrap()
    );
    assert_compliant(reg.db());
}

// Hole 11: the hash chain could be rewritten (engine/src/audit/tests.rs tries it on the
// chain alone; here the registry's own checkpoints catch it).

#[test]
fn a_rewritten_log_passes_the_chain_check_but_not_the_registrys_checkpoint() {
    let reg = common::registry(500);
    reg.create_policy(&user("admin"), &NewPolicy::namespace("p", "org", "v1"))
        .unwrap();
    reg.push(&user("ci"), "org", "app", "v1", "sha256:a")
        .unwrap();
    assert_compliant(reg.db());
    // The log's writer edits the first record and rehashes the chain after it.
    reg.db().with(|s| {
        let entries = s.log.entries_mut();
        entries[0].entry.performer.name = "someone-else".into();
        let mut prev = tagguard_engine::audit::GENESIS_HASH.to_string();
        for e in entries.iter_mut() {
            e.prev_hash = prev.clone();
            e.hash = tagguard_engine::audit::entry_hash(e.seq, &e.prev_hash, &e.entry);
            prev = e.hash.clone();
        }
        assert!(tagguard_engine::audit::verify(s.log.entries()).is_ok());
    });
    let problems = check(reg.db()).unwrap_err();
    assert!(
        problems.iter().any(|p| p.contains("fails verification")),
        "{problems:?}"
    );
}
