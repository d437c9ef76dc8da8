//! The seed report's two scenarios, end to end through the wasm plugin.

mod common;

use std::path::Path;
use tagguard_host_test::compliance::assert_compliant;
use tagguard_host_test::{AuditQuery, NewPolicy, TAG_IMMUTABLE, scenario, user};

fn ns_policy(uuid: &str, pattern: &str) -> NewPolicy {
    NewPolicy::namespace(uuid, "org", pattern)
}

#[test]
fn scenario_1_push_of_latest_is_immutable_with_one_record_and_overwrite_is_denied() {
    let reg = common::registry(500);
    let alice = user("alice");
    reg.create_policy(&user("orgadmin"), &ns_policy("p-latest", "^latest$"))
        .unwrap();

    assert!(
        reg.push(&alice, "org", "repo", "latest", "sha256:aaa")
            .unwrap()
    );
    let latest = reg.tag("org", "repo", "latest").unwrap();
    assert!(latest.immutable);
    let made = reg.audit(&AuditQuery {
        kind: Some("tag_made_immutable_by_policy"),
        ..Default::default()
    });
    assert_eq!(made.len(), 1);
    let e = &made[0].entry;
    assert_eq!(
        (
            e.namespace.as_str(),
            e.repository.as_deref(),
            e.tag.as_deref()
        ),
        ("org", Some("repo"), Some("latest"))
    );
    assert_eq!(e.meta_str("policy_uuid"), Some("p-latest"));
    assert_eq!(e.meta_str("policy_pattern"), Some("^latest$"));
    assert_eq!(e.meta_str("policy_scope"), Some("namespace"));
    assert_eq!(e.meta_str("trigger"), Some("push"));
    assert_eq!(e.meta_str("manifest_digest"), Some("sha256:aaa"));
    assert_eq!(e.performer.name, "alice");
    assert_eq!(e.performer.kind, "user");
    assert_eq!(e.plugin.name, "tagguard-default");
    assert!(e.time.ends_with('Z'));

    assert!(!reg.push(&alice, "org", "repo", "v1", "sha256:bbb").unwrap());
    assert!(!reg.tag("org", "repo", "v1").unwrap().immutable);
    let about_v1 = reg.audit(&AuditQuery {
        tag: Some("v1"),
        ..Default::default()
    });
    assert!(about_v1.is_empty(), "{about_v1:?}");

    let before = reg.audit(&AuditQuery::default()).len();
    let err = reg
        .push(&alice, "org", "repo", "latest", "sha256:ccc")
        .unwrap_err();
    assert_eq!(err.code(), Some(TAG_IMMUTABLE));
    let after = reg.tag("org", "repo", "latest").unwrap();
    assert_eq!(after, latest, "the denied push leaves the tag unchanged");
    let denied = reg.audit(&AuditQuery {
        kind: Some("tag_immutability_denied"),
        ..Default::default()
    });
    assert_eq!(denied.len(), 1);
    assert_eq!(
        denied[0].entry.meta_str("attempted_manifest_digest"),
        Some("sha256:ccc")
    );
    assert_eq!(reg.audit(&AuditQuery::default()).len(), before + 1);
    assert_compliant(reg.db());
}

#[test]
fn scenario_2_policy_over_100_existing_tags_writes_100_records_and_one_summary() {
    let reg = common::registry(500);
    let ci = user("ci-bot");
    for i in 0..100 {
        reg.push(
            &ci,
            "org",
            "repo",
            &format!("v1.0.{i}"),
            &format!("sha256:{i:04}"),
        )
        .unwrap();
    }
    let admin = user("orgadmin");
    let policy = ns_policy("p-v", "^v.*$").in_repository("repo");
    let outcome = reg.create_policy(&admin, &policy).unwrap();
    assert_eq!(outcome.run.count, 100);

    let made = reg.audit(&AuditQuery {
        kind: Some("tag_made_immutable_by_policy"),
        ..Default::default()
    });
    assert_eq!(made.len(), 100);
    let run_id = outcome.run.run_id.as_str();
    assert!(
        made.iter()
            .all(|r| r.entry.meta_str("run_id") == Some(run_id))
    );
    assert!(
        made.iter()
            .all(|r| r.entry.meta_str("trigger") == Some("policy_created"))
    );
    let summaries = reg.audit(&AuditQuery {
        kind: Some("tags_made_immutable_by_policy"),
        ..Default::default()
    });
    assert_eq!(summaries.len(), 1);
    let s = &summaries[0].entry;
    assert_eq!(s.meta_str("run_id"), Some(run_id));
    assert_eq!(s.metadata["count"], 100);
    assert_eq!(s.metadata["sample_tags"].as_array().unwrap().len(), 10);
    assert_eq!(s.meta_str("status"), Some("completed"));
    let created = reg.audit(&AuditQuery {
        kind: Some("create_immutability_policy"),
        ..Default::default()
    });
    assert_eq!(created.len(), 1);
    assert!(
        created[0].seq < made[0].seq,
        "the policy's record precedes the tags it marked"
    );

    let v100 = reg.audit(&AuditQuery {
        tag: Some("v1.0.0"),
        ..Default::default()
    });
    assert_eq!(v100.len(), 1);
    assert_eq!(v100[0].entry.meta_str("policy_uuid"), Some("p-v"));
    assert_eq!(v100[0].entry.performer.name, "orgadmin");
    assert_compliant(reg.db());
}

#[test]
fn the_example_scenario_files_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scenarios");
    let mut ran = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let sc = scenario::load(&path).unwrap();
            let report = scenario::run(common::runtime(), &common::default_plugin(), &sc);
            let failed: Vec<_> = report
                .checks
                .iter()
                .filter(|c| c.failure.is_some())
                .collect();
            assert!(failed.is_empty(), "{}: {failed:#?}", path.display());
            ran += 1;
        }
    }
    assert!(ran >= 2);
}

#[test]
fn the_scenario_runner_reports_a_failing_expectation() {
    let sc: scenario::Scenario = serde_json::from_str(
        r#"{"name": "wrong on purpose", "steps": [
            {"push": {"repo": "org/r", "tag": "latest"}},
            {"expect_tag": {"repo": "org/r", "tag": "latest", "immutable": true}},
            {"expect_audit": {"kind": "tag_made_immutable_by_policy", "count": 1}}
        ]}"#,
    )
    .unwrap();
    let report = scenario::run(common::runtime(), &common::default_plugin(), &sc);
    assert!(!report.passed());
    let failures: Vec<_> = report
        .checks
        .iter()
        .filter_map(|c| c.failure.clone())
        .collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures[0].contains("expected org/r:latest to be immutable, but it is mutable"),
        "{}",
        failures[0]
    );
    assert!(
        failures[1].contains("expected 1 matching record(s), found 0"),
        "{}",
        failures[1]
    );
}
