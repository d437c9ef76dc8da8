//! Tests of the plugin's decisions and records against an in-memory host.

use crate::memory_host::MemoryHost;
use crate::model::*;
use crate::plugin::PolicyPlugin;
use serde_json::Value;

fn ns_policy(uuid: &str, pattern: &str, matches: bool) -> Policy {
    Policy {
        uuid: uuid.into(),
        scope: Scope::Namespace,
        namespace: "org".into(),
        repository: None,
        tag_pattern: pattern.into(),
        tag_pattern_matches: matches,
    }
}

fn push(tag: &str, existing: Option<Tag>, policies: Vec<Policy>) -> PushRequest {
    PushRequest {
        namespace: "org".into(),
        repository: "repo".into(),
        tag_name: tag.into(),
        manifest_digest: "sha256:new".into(),
        existing,
        policies,
    }
}

fn tag(id: u64, name: &str, immutable: bool) -> Tag {
    Tag {
        id,
        namespace: "org".into(),
        repository: "repo".into(),
        name: name.into(),
        manifest_digest: "sha256:old".into(),
        immutable,
    }
}

fn meta(r: &AuditRecord, key: &str) -> Value {
    r.metadata()[key].clone()
}

#[test]
fn push_matching_a_policy_creates_immutable_with_a_complete_record() {
    let mut plugin = PolicyPlugin::new();
    let mut host = MemoryHost::default();
    let latest = ns_policy("p-latest", "^latest$", true);
    let d = plugin
        .on_push(&mut host, &push("latest", None, vec![latest.clone()]))
        .unwrap();
    assert!(
        matches!(d, PushDecision::Create { immutable: true, ref matched } if matched.len() == 1)
    );
    assert_eq!(host.staged.len(), 1);
    let r = &host.staged[0];
    assert_eq!(r.kind, RecordKind::TagMadeImmutableByPolicy);
    assert_eq!(r.tag.as_deref(), Some("latest"));
    assert_eq!(r.repository.as_deref(), Some("repo"));
    for (k, v) in [
        ("tag", "latest"),
        ("manifest_digest", "sha256:new"),
        ("trigger", "push"),
        ("policy_uuid", "p-latest"),
        ("policy_pattern", "^latest$"),
        ("policy_scope", "namespace"),
    ] {
        assert_eq!(meta(r, k), v, "{k}");
    }
    assert_eq!(meta(r, "previous_immutable"), false);
    assert_eq!(meta(r, "immutable"), true);
    assert_eq!(meta(r, "policy_pattern_matches"), true);
    assert_eq!(meta(r, "matched_policies"), serde_json::json!(["p-latest"]));
}

#[test]
fn push_not_matching_creates_mutable_and_stages_nothing() {
    let mut plugin = PolicyPlugin::new();
    let mut host = MemoryHost::default();
    let d = plugin
        .on_push(
            &mut host,
            &push("v1", None, vec![ns_policy("p", "^latest$", true)]),
        )
        .unwrap();
    assert_eq!(
        d,
        PushDecision::Create {
            immutable: false,
            matched: vec![]
        }
    );
    assert!(host.staged.is_empty());
}

#[test]
fn overwriting_an_immutable_tag_is_denied_even_with_the_same_digest() {
    let mut plugin = PolicyPlugin::new();
    let mut host = MemoryHost::default();
    let mut req = push(
        "latest",
        Some(tag(7, "latest", true)),
        vec![ns_policy("p", "^latest$", true)],
    );
    req.manifest_digest = "sha256:old".into();
    let d = plugin.on_push(&mut host, &req).unwrap();
    assert!(matches!(d, PushDecision::Deny(ref keeping) if keeping[0].policy.uuid == "p"));
    assert_eq!(host.staged.len(), 1);
    let r = &host.staged[0];
    assert_eq!(r.kind, RecordKind::TagImmutabilityDenied);
    assert_eq!(meta(r, "operation"), "push");
    assert_eq!(meta(r, "outcome"), "denied");
    assert_eq!(meta(r, "matched_policies")[0]["uuid"], "p");
}

#[test]
fn retargeting_a_mutable_tag_that_now_matches_makes_it_immutable() {
    let mut plugin = PolicyPlugin::new();
    let mut host = MemoryHost::default();
    let req = push(
        "v2",
        Some(tag(3, "v2", false)),
        vec![ns_policy("p", "v.*", true)],
    );
    let d = plugin.on_push(&mut host, &req).unwrap();
    assert!(matches!(
        d,
        PushDecision::Create {
            immutable: true,
            ..
        }
    ));
    assert_eq!(meta(&host.staged[0], "previous_immutable"), false);
}

#[test]
fn push_rejects_a_bad_tag_name_and_stages_nothing() {
    let mut plugin = PolicyPlugin::new();
    let mut host = MemoryHost::default();
    let err = plugin
        .on_push(&mut host, &push("-bad", None, vec![]))
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidTagName(ref m) if m.contains("-bad")),
        "{err:?}"
    );
    assert!(host.staged.is_empty());
}

#[test]
fn delete_expiry_and_manifest_delete_of_immutable_tags_are_denied_with_records() {
    let mut plugin = PolicyPlugin::new();
    for op in [
        DeleteOperation::DeleteTag,
        DeleteOperation::SetExpiration,
        DeleteOperation::DeleteManifest,
    ] {
        let mut host = MemoryHost::default();
        let req = DeleteRequest {
            operation: op,
            tags: vec![tag(1, "a", false), tag(2, "b", true), tag(3, "c", true)],
            policies: vec![ns_policy("p", "b", true)],
        };
        assert_eq!(
            plugin.on_delete(&mut host, &req).unwrap(),
            DeleteDecision::Deny(vec![2, 3])
        );
        assert_eq!(host.staged.len(), 2);
        assert_eq!(meta(&host.staged[0], "operation"), op.as_str());
        assert_eq!(meta(&host.staged[0], "matched_policies")[0]["uuid"], "p");
        assert_eq!(
            meta(&host.staged[1], "matched_policies"),
            serde_json::json!([])
        );
    }
    let mut host = MemoryHost::default();
    let req = DeleteRequest {
        operation: DeleteOperation::DeleteTag,
        tags: vec![tag(1, "a", false)],
        policies: vec![],
    };
    assert_eq!(
        plugin.on_delete(&mut host, &req).unwrap(),
        DeleteDecision::Allow
    );
    assert!(host.staged.is_empty());
}

#[test]
fn manual_change_records_previous_and_new_state_and_only_real_changes() {
    let mut plugin = PolicyPlugin::new();
    let mut host = MemoryHost::default();
    assert!(
        plugin
            .on_manual_change(&mut host, &tag(1, "a", true), false)
            .unwrap()
    );
    let r = &host.staged[0];
    assert_eq!(r.kind, RecordKind::ChangeTagImmutability);
    assert_eq!(meta(r, "previous_immutable"), true);
    assert_eq!(meta(r, "immutable"), false);
    assert!(
        !plugin
            .on_manual_change(&mut host, &tag(1, "a", true), true)
            .unwrap()
    );
    assert_eq!(
        host.staged.len(),
        1,
        "no record for a toggle that changes nothing"
    );
}

#[test]
fn policy_lifecycle_records() {
    let mut plugin = PolicyPlugin::new();
    let mut host = MemoryHost::default();
    let before = ns_policy("p", "^v.*$", true);
    let after = ns_policy("p", "^release-.*$", false);
    plugin.on_policy_created(&mut host, &before).unwrap();
    plugin
        .on_policy_updated(&mut host, &before, &after)
        .unwrap();
    plugin.on_policy_deleted(&mut host, &after).unwrap();
    let kinds: Vec<_> = host.staged.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            RecordKind::CreateImmutabilityPolicy,
            RecordKind::UpdateImmutabilityPolicy,
            RecordKind::DeleteImmutabilityPolicy
        ]
    );
    assert_eq!(meta(&host.staged[0], "policy")["tag_pattern"], "^v.*$");
    assert_eq!(meta(&host.staged[1], "before")["tag_pattern"], "^v.*$");
    assert_eq!(
        meta(&host.staged[1], "after")["tag_pattern"],
        "^release-.*$"
    );
    assert_eq!(meta(&host.staged[1], "after")["tag_pattern_matches"], false);
    assert_eq!(meta(&host.staged[2], "deleted_pattern"), "^release-.*$");
    let other = ns_policy("q", "x", true);
    assert!(matches!(
        plugin.on_policy_updated(&mut host, &before, &other),
        Err(Error::InvalidArgument(m)) if m.starts_with("after.uuid")
    ));
}

fn run(
    plugin: &mut PolicyPlugin,
    host: &mut MemoryHost,
    policy: &Policy,
    batch: u32,
) -> Result<RunSummary, Error> {
    let options = RunOptions {
        run_id: "run-1".into(),
        batch_size: batch,
        granularity: Granularity::PerTag,
    };
    plugin.run_retroactive(host, policy, RunTrigger::PolicyCreated, &options)
}

#[test]
fn retroactive_paging_counts_exactly_for_batch_sizes_1_3_and_500() {
    for batch in [1u32, 3, 500] {
        // 1000 tags over 3 repos; even ids are releases, 1 in 7 of those already immutable.
        let mut host = MemoryHost::with_tags(1000, &["a", "b", "c"], |i| {
            if i % 2 == 0 {
                format!("v1.{i}")
            } else {
                format!("dev-{i}")
            }
        });
        for t in host.tags.iter_mut().filter(|t| t.id % 14 == 0) {
            t.immutable = true;
        }
        let already = host.immutable_count() as u64;
        let mut plugin = PolicyPlugin::new();
        let policy = ns_policy("p", r"v1\.[0-9]+", true);
        let s = run(&mut plugin, &mut host, &policy, batch).unwrap();
        assert_eq!(s.count, 500 - already, "batch {batch}");
        assert_eq!(host.committed.len() as u64, s.count);
        assert_eq!(host.immutable_count(), 500);
        assert_eq!(
            s.batches as usize,
            1000_usize.div_ceil(batch as usize),
            "batch {batch}"
        );
        assert_eq!(
            s.sample_tags,
            [
                "v1.2", "v1.4", "v1.6", "v1.8", "v1.10", "v1.12", "v1.16", "v1.18", "v1.20",
                "v1.22"
            ]
        );
        assert!(host.scans.iter().all(|r| r.limit == batch));
        assert!(
            host.scans.windows(2).all(|w| w[1].after_id > w[0].after_id),
            "ascending pages"
        );
        let summary = host.staged.last().unwrap();
        assert_eq!(summary.kind, RecordKind::TagsMadeImmutableByPolicy);
        assert_eq!(meta(summary, "status"), "completed");
        assert_eq!(meta(summary, "count"), s.count);
        assert_eq!(meta(summary, "run_id"), "run-1");
        assert_eq!(meta(summary, "batches"), s.batches);
        assert_eq!(meta(summary, "sample_tags").as_array().unwrap().len(), 10);
        for r in &host.committed {
            assert_eq!(meta(r, "run_id"), "run-1");
            assert_eq!(meta(r, "trigger"), "policy_created");
            assert_eq!(meta(r, "policy_uuid"), "p");
        }
    }
}

#[test]
fn a_rerun_marks_nothing_and_records_nothing_new() {
    let mut host = MemoryHost::with_tags(50, &["a"], |i| format!("v{i}"));
    let mut plugin = PolicyPlugin::new();
    let policy = ns_policy("p", "v.*", true);
    assert_eq!(run(&mut plugin, &mut host, &policy, 7).unwrap().count, 50);
    let committed = host.committed.len();
    assert_eq!(run(&mut plugin, &mut host, &policy, 7).unwrap().count, 0);
    assert_eq!(host.committed.len(), committed);
}

#[test]
fn inverted_policy_marks_the_non_matching_tags_of_its_repository_only() {
    let mut host = MemoryHost::with_tags(30, &["a", "b"], |i| {
        if i % 3 == 0 {
            format!("dev-{i}")
        } else {
            format!("r{i}")
        }
    });
    let mut plugin = PolicyPlugin::new();
    let policy = Policy {
        scope: Scope::Repository,
        repository: Some("a".into()),
        ..ns_policy("p", "dev-.*", false)
    };
    host.scoped_to(&policy);
    let s = run(&mut plugin, &mut host, &policy, 4).unwrap();
    let expected = host
        .tags
        .iter()
        .filter(|t| t.repository == "a" && t.id % 3 != 0)
        .count();
    assert_eq!(s.count as usize, expected);
    assert!(
        host.tags
            .iter()
            .filter(|t| t.immutable)
            .all(|t| t.repository == "a" && !t.name.starts_with("dev-"))
    );
}

#[test]
fn a_failed_run_returns_the_error_and_stages_no_summary() {
    let mut host = MemoryHost::with_tags(100, &["a"], |i| format!("v{i}"));
    host.fail_mark_after = Some(3);
    let mut plugin = PolicyPlugin::new();
    let err = run(&mut plugin, &mut host, &ns_policy("p", "v.*", true), 10).unwrap_err();
    assert_eq!(err, Error::Store("database is down".into()));
    assert_eq!(host.immutable_count(), 30, "marks before the error stay");
    assert!(
        host.staged.is_empty(),
        "the host writes a failed run's summary"
    );
}

#[test]
fn a_page_shorter_than_the_batch_size_is_not_the_end_of_a_run() {
    let mut host = MemoryHost::with_tags(30, &["a"], |i| format!("v{i}"));
    host.max_page = Some(4);
    let mut plugin = PolicyPlugin::new();
    let s = run(&mut plugin, &mut host, &ns_policy("p", "v.*", true), 10).unwrap();
    assert_eq!(s.count, 30);
    assert_eq!(s.batches, 8);
    assert_eq!(host.immutable_count(), 30);
    let p = plugin
        .preview(&mut host, &ns_policy("q", "x.*", false), 3)
        .unwrap();
    assert_eq!(p.count, 0, "every tag is immutable now");
}

#[test]
fn run_rejects_bad_options_before_scanning() {
    let mut host = MemoryHost::with_tags(5, &["a"], |i| format!("v{i}"));
    let mut plugin = PolicyPlugin::new();
    let policy = ns_policy("p", "v.*", true);
    assert!(
        matches!(run(&mut plugin, &mut host, &policy, 0), Err(Error::InvalidArgument(m)) if m.starts_with("batch-size"))
    );
    let bad = ns_policy("p", "v[", true);
    assert!(matches!(
        run(&mut plugin, &mut host, &bad, 5),
        Err(Error::InvalidPolicy(PolicyError::InvalidPattern(_)))
    ));
    let nameless = ns_policy("", "v.*", true);
    assert_eq!(
        run(&mut plugin, &mut host, &nameless, 5),
        Err(Error::InvalidPolicy(PolicyError::MissingField(
            "uuid".into()
        )))
    );
    assert!(host.scans.is_empty() && host.staged.is_empty());
}

#[test]
fn preview_counts_without_writing() {
    let mut host = MemoryHost::with_tags(1200, &["a", "b"], |i| {
        if i % 4 == 0 {
            format!("v{i}")
        } else {
            format!("x{i}")
        }
    });
    host.tags[3].immutable = true; // id 4, a match that is already immutable
    let mut plugin = PolicyPlugin::new();
    let p = plugin
        .preview(&mut host, &ns_policy("p", "v.*", true), 5)
        .unwrap();
    assert_eq!(p.count, 299);
    assert_eq!(
        p.sample.iter().map(|t| t.id).collect::<Vec<_>>(),
        [8, 12, 16, 20, 24]
    );
    assert!(host.staged.is_empty() && host.committed.is_empty());
    assert_eq!(host.immutable_count(), 1);
}

#[test]
fn per_batch_granularity_writes_one_record_per_batch_listing_every_tag() {
    let mut host = MemoryHost::with_tags(25, &["a", "b"], |i| format!("v{i}"));
    host.tags[4].immutable = true; // id 5 is skipped
    let mut plugin = PolicyPlugin::new();
    let options = RunOptions {
        run_id: "run-b".into(),
        batch_size: 10,
        granularity: Granularity::PerBatch,
    };
    let s = plugin
        .run_retroactive(
            &mut host,
            &ns_policy("p", "v.*", true),
            RunTrigger::PolicyCreated,
            &options,
        )
        .unwrap();
    assert_eq!(s.count, 24);
    assert_eq!(host.committed.len(), 3, "one record per batch");
    let first = &host.committed[0];
    assert_eq!(first.kind, RecordKind::TagMadeImmutableByPolicy);
    assert_eq!(first.tag, None);
    let first_meta = first.metadata();
    let listed: Vec<&str> = first_meta["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        ["v1", "v2", "v3", "v4", "v6", "v7", "v8", "v9", "v10"]
    );
    assert_eq!(first.metadata()["tags"][0]["repository"], "b");
    assert_eq!(meta(first, "granularity"), "per_batch");
    assert_eq!(meta(first, "run_id"), "run-b");
    assert_eq!(meta(first, "policy_uuid"), "p");
    let summary = host.staged.last().unwrap();
    assert_eq!(meta(summary, "granularity"), "per_batch");
    assert_eq!(meta(summary, "count"), 24);
}

#[test]
fn records_carry_the_fields_quays_log_view_renders() {
    // tag_made_immutable_by_policy on push: tag, repo, namespace, immutable.
    let mut plugin = PolicyPlugin::new();
    let mut host = MemoryHost::default();
    let latest = ns_policy("p-latest", "latest", true);
    plugin
        .on_push(&mut host, &push("latest", None, vec![latest]))
        .unwrap();
    let r = &host.staged[0];
    assert_eq!(
        (
            meta(r, "tag"),
            meta(r, "repo"),
            meta(r, "namespace"),
            meta(r, "immutable")
        ),
        ("latest".into(), "repo".into(), "org".into(), true.into())
    );

    // A repository policy's run: each tag record, and a summary with namespace,
    // tag_pattern, tag_pattern_matches, count and repo.
    let mut host = MemoryHost::with_tags(6, &["a", "b"], |i| format!("r{i}"));
    let policy = Policy {
        scope: Scope::Repository,
        repository: Some("a".into()),
        ..ns_policy("p", "r[0-9]", true)
    };
    host.scoped_to(&policy);
    let s = run(&mut plugin, &mut host, &policy, 2).unwrap();
    assert!(s.count > 0);
    for r in &host.committed {
        assert_eq!(meta(r, "repo"), "a");
        assert_eq!(meta(r, "namespace"), "org");
        assert_eq!(meta(r, "tag"), r.tag.clone().unwrap().as_str());
        assert_eq!(meta(r, "immutable"), true);
    }
    let summary = host.staged.last().unwrap();
    assert_eq!(summary.kind, RecordKind::TagsMadeImmutableByPolicy);
    for (k, v) in [
        ("namespace", Value::from("org")),
        ("repo", "a".into()),
        ("tag_pattern", "r[0-9]".into()),
        ("tag_pattern_matches", true.into()),
        ("count", s.count.into()),
    ] {
        assert_eq!(meta(summary, k), v, "{k}");
    }

    // A namespace policy's summary names no repository.
    let mut host = MemoryHost::with_tags(3, &["a"], |i| format!("r{i}"));
    let policy = ns_policy("q", "r.*", false);
    host.scoped_to(&policy);
    run(&mut plugin, &mut host, &policy, 10).unwrap();
    let summary = host.staged.last().unwrap();
    assert_eq!(meta(summary, "tag_pattern_matches"), false);
    assert!(summary.metadata().get("repo").is_none());
}
