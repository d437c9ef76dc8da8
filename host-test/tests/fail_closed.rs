//! Fail closed: when the audit sink or the tag store fails, nothing changes
//! without its record, and a retry after recovery leaves no duplicate.

mod common;

use std::sync::atomic::Ordering;
use tagguard_engine::EngineError;
use tagguard_host_test::compliance::assert_compliant;
use tagguard_host_test::{AuditQuery, NewPolicy, RegistryError, user};

fn policy(uuid: &str, pattern: &str) -> NewPolicy {
    NewPolicy::namespace(uuid, "org", pattern)
}

fn records_for(reg: &tagguard_host_test::Registry, tag: &str) -> usize {
    reg.audit(&AuditQuery {
        tag: Some(tag),
        ..Default::default()
    })
    .len()
}

#[test]
fn a_push_fails_closed_while_the_audit_sink_is_down_and_a_retry_records_once() {
    let reg = common::registry(500);
    let alice = user("alice");
    reg.create_policy(&alice, &policy("p", "^latest$")).unwrap();
    reg.db().faults.sink_down.store(true, Ordering::SeqCst);
    let err = reg
        .push(&alice, "org", "repo", "latest", "sha256:a")
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Engine(EngineError::HostAudit {
                call: "on-push",
                ..
            })
        ),
        "{err}"
    );
    assert!(
        reg.tag("org", "repo", "latest").is_none(),
        "no tag without its record"
    );
    assert_eq!(records_for(&reg, "latest"), 0);
    // A mutable push has no record to write, but still goes through the sink's transaction.
    assert!(reg.push(&alice, "org", "repo", "v1", "sha256:b").is_err());
    assert_compliant(reg.db());

    reg.db().faults.sink_down.store(false, Ordering::SeqCst);
    assert!(
        reg.push(&alice, "org", "repo", "latest", "sha256:a")
            .unwrap()
    );
    assert_eq!(records_for(&reg, "latest"), 1);
    assert_compliant(reg.db());
}

#[test]
fn a_denial_that_cannot_be_recorded_is_an_error_not_a_silent_denial() {
    let reg = common::registry(500);
    let alice = user("alice");
    reg.create_policy(&alice, &policy("p", "^latest$")).unwrap();
    reg.push(&alice, "org", "repo", "latest", "sha256:a")
        .unwrap();
    reg.db().faults.sink_down.store(true, Ordering::SeqCst);
    let err = reg
        .push(&alice, "org", "repo", "latest", "sha256:b")
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Engine(EngineError::HostAudit { .. })),
        "{err}"
    );
    assert_eq!(
        reg.tag("org", "repo", "latest").unwrap().manifest_digest,
        "sha256:a"
    );
    assert!(reg.delete_tag(&alice, "org", "repo", "latest").is_err());
    assert!(reg.tag("org", "repo", "latest").is_some());
    assert_compliant(reg.db());
}

#[test]
fn a_policy_is_not_created_when_its_record_cannot_be_written() {
    let reg = common::registry(500);
    let alice = user("alice");
    reg.push(&alice, "org", "repo", "v1", "sha256:a").unwrap();
    reg.db().faults.sink_down.store(true, Ordering::SeqCst);
    let err = reg.create_policy(&alice, &policy("p", "v.*")).unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Engine(EngineError::HostAudit {
                call: "on-policy-created",
                ..
            })
        ),
        "{err}"
    );
    assert!(reg.db().with(|s| s.policies.is_empty() && s.log.is_empty()));
    assert!(!reg.tag("org", "repo", "v1").unwrap().immutable);
    reg.db().faults.sink_down.store(false, Ordering::SeqCst);
    assert_eq!(
        reg.create_policy(&alice, &policy("p", "v.*"))
            .unwrap()
            .run
            .count,
        1
    );
    assert_compliant(reg.db());
}

#[test]
fn a_run_whose_store_fails_mid_way_records_a_failed_summary_and_a_rerun_finishes_without_duplicates()
 {
    let reg = common::registry(3);
    let alice = user("alice");
    for i in 0..20 {
        reg.push(
            &alice,
            "org",
            "repo",
            &format!("v{i}"),
            &format!("sha256:{i}"),
        )
        .unwrap();
    }
    // Writes from now: 1 = the policy's record, 2 and 3 = the first two batches, 4 fails.
    reg.db().faults.fail_in.store(4, Ordering::SeqCst);
    let err = reg.create_policy(&alice, &policy("p", "v.*")).unwrap_err();
    let RegistryError::Engine(EngineError::RunIncomplete { changed, cause, .. }) = &err else {
        panic!("{err}")
    };
    assert_eq!(*changed, 6);
    assert!(matches!(**cause, EngineError::HostStore { .. }), "{cause}");
    let summary = reg.audit(&AuditQuery {
        kind: Some("tags_made_immutable_by_policy"),
        ..Default::default()
    });
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].entry.meta_str("status"), Some("failed"));
    assert_eq!(summary[0].entry.metadata["count"], 6);
    assert!(
        reg.db().with(|s| s.policies.len() == 1),
        "the policy itself was stored with its record"
    );
    assert_compliant(reg.db());

    let rerun = reg.reapply_policy(&alice, "p").unwrap();
    assert_eq!(rerun.count, 14);
    for i in 0..20 {
        assert_eq!(
            records_for(&reg, &format!("v{i}")),
            1,
            "v{i} has exactly one record"
        );
        assert!(reg.tag("org", "repo", &format!("v{i}")).unwrap().immutable);
    }
    assert_compliant(reg.db());
}

#[test]
fn when_the_failed_summary_cannot_be_written_either_the_error_says_so() {
    let reg = common::registry(3);
    let alice = user("alice");
    for i in 0..9 {
        reg.push(
            &alice,
            "org",
            "repo",
            &format!("v{i}"),
            &format!("sha256:{i}"),
        )
        .unwrap();
    }
    reg.create_policy(&alice, &policy("p", "x.*")).unwrap();
    // Marks fail; of the sink's writes the first (the update record) succeeds, the second
    // (the failed-run summary) fails.
    reg.db().faults.store_down.store(true, Ordering::SeqCst);
    reg.db().faults.fail_in.store(2, Ordering::SeqCst);
    let err = reg.update_policy(&alice, "p", "v.*", true).unwrap_err();
    let RegistryError::Engine(EngineError::RunIncomplete {
        cause, changed: 0, ..
    }) = &err
    else {
        panic!("{err}")
    };
    let EngineError::HostAudit { message, .. } = &**cause else {
        panic!("{cause}")
    };
    assert!(
        message.contains("tag store") && message.contains("summary could not be written"),
        "{message}"
    );
    let kinds: Vec<String> = reg
        .audit(&AuditQuery::default())
        .iter()
        .map(|r| r.entry.kind.to_string())
        .collect();
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("update_immutability_policy")
    );
    assert!(reg.db().with(|s| s.tags.iter().all(|t| !t.immutable)));
    assert_compliant(reg.db());
}

#[test]
fn a_decision_made_against_a_state_that_changed_meanwhile_is_a_conflict_and_changes_nothing() {
    let reg = common::registry(500);
    let alice = user("alice");
    reg.create_policy(&alice, &policy("p", "^latest$")).unwrap();
    reg.push(&alice, "org", "repo", "latest", "sha256:a")
        .unwrap();
    let before = reg.db().with(|s| (s.tags.clone(), s.log.len()));
    // As if a concurrent push created the tag after this request read the registry.
    let stale = tagguard_engine::PushRequest {
        actor: alice.clone(),
        namespace: "org".into(),
        repository: "repo".into(),
        tag_name: "latest".into(),
        manifest_digest: "sha256:b".into(),
        existing: None,
        policies: reg.policies_in_scope("org", "repo"),
        policy_version: reg.db().with(|s| s.policy_version),
    };
    let err = reg.guard().push(&stale).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Conflict {
                call: "on-push",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        reg.db().with(|s| (s.tags.clone(), s.log.len())),
        before,
        "nothing applied"
    );
    assert_compliant(reg.db());
}
