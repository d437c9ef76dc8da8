//! The shared plugin driven with the glob dialect against a small in-memory host.

use crate::glob::GlobLanguage;
use tagguard_guest::memory_host::MemoryHost;
use tagguard_guest::model::{
    Granularity, Policy, PushDecision, PushRequest, RecordKind, RunOptions, RunTrigger, Scope, Tag,
};
use tagguard_guest::plugin::PolicyPlugin;

fn glob_policy(pattern: &str) -> Policy {
    Policy {
        uuid: "p-glob".into(),
        scope: Scope::Namespace,
        namespace: "org".into(),
        repository: None,
        tag_pattern: pattern.into(),
        tag_pattern_matches: true,
    }
}

fn tag(id: u64, name: &str) -> Tag {
    Tag {
        id,
        namespace: "org".into(),
        repository: "repo".into(),
        name: name.into(),
        manifest_digest: format!("sha256:{id:064x}"),
        immutable: false,
    }
}

#[test]
fn push_under_a_glob_policy_stages_a_made_immutable_record() {
    let mut plugin = PolicyPlugin::<GlobLanguage>::default();
    let mut host = MemoryHost::default();
    let request = PushRequest {
        namespace: "org".into(),
        repository: "repo".into(),
        tag_name: "v1.2.3".into(),
        manifest_digest: "sha256:new".into(),
        existing: None,
        policies: vec![glob_policy("v*")],
    };
    let decision = plugin.on_push(&mut host, &request).unwrap();
    assert!(matches!(
        decision,
        PushDecision::Create {
            immutable: true,
            ref matched
        } if matched.len() == 1 && matched[0].pattern_matched
    ));
    assert_eq!(host.staged.len(), 1);
    let record = &host.staged[0];
    assert_eq!(record.kind, RecordKind::TagMadeImmutableByPolicy);
    assert_eq!(record.tag.as_deref(), Some("v1.2.3"));
    assert_eq!(record.metadata()["policy_pattern"], "v*");
    assert_eq!(record.metadata()["policy_uuid"], "p-glob");
    assert_eq!(record.metadata()["trigger"], "push");

    let other = PushRequest {
        tag_name: "latest".into(),
        ..request
    };
    let decision = plugin.on_push(&mut host, &other).unwrap();
    assert!(matches!(
        decision,
        PushDecision::Create {
            immutable: false,
            ..
        }
    ));
    assert_eq!(host.staged.len(), 1, "a mutable push stages nothing");
}

#[test]
fn retroactive_run_marks_exactly_the_matching_tags() {
    let names = [
        "v1.0", "latest", "v1x0", "v1.2.3", "stable", "av1.0", "v1.", "dev",
    ];
    let mut host = MemoryHost::new((1..).zip(names).map(|(id, name)| tag(id, name)).collect());
    let mut plugin = PolicyPlugin::<GlobLanguage>::default();
    let options = RunOptions {
        run_id: "run-glob".into(),
        batch_size: 3,
        granularity: Granularity::PerTag,
    };
    let summary = plugin
        .run_retroactive(
            &mut host,
            &glob_policy("{v1.*,stable}"),
            RunTrigger::PolicyCreated,
            &options,
        )
        .unwrap();
    let marked: Vec<_> = host
        .tags
        .iter()
        .filter(|t| t.immutable)
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(marked, ["v1.0", "v1.2.3", "stable", "v1."]);
    assert_eq!(summary.count, 4);
    assert_eq!(summary.sample_tags, marked);
    assert_eq!(summary.batches, 3);
    assert_eq!(host.committed.len(), 4);
    for record in &host.committed {
        assert_eq!(record.kind, RecordKind::TagMadeImmutableByPolicy);
        assert_eq!(record.metadata()["policy_pattern"], "{v1.*,stable}");
        assert_eq!(record.metadata()["run_id"], "run-glob");
    }
    let last = host.staged.last().unwrap();
    assert_eq!(last.kind, RecordKind::TagsMadeImmutableByPolicy);
    assert_eq!(last.metadata()["status"], "completed");
    assert_eq!(last.metadata()["count"], 4);
}
