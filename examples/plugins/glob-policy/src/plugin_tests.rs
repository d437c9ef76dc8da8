//! The shared plugin driven with the glob dialect against a small in-memory host.

use crate::glob::GlobLanguage;
use tagguard_guest::model::{
    AuditRecord, Granularity, Policy, PushDecision, PushRequest, RecordKind, RunOptions,
    RunTrigger, ScanRequest, Scope, Tag, TagChange,
};
use tagguard_guest::plugin::{Host, PolicyPlugin};

/// An in-memory tag store and audit log.
#[derive(Default)]
struct FakeHost {
    tags: Vec<Tag>,
    staged: Vec<AuditRecord>,
    committed: Vec<AuditRecord>,
}

impl Host for FakeHost {
    fn append(&mut self, record: AuditRecord) -> Result<(), String> {
        self.staged.push(record);
        Ok(())
    }

    fn scan(&mut self, r: &ScanRequest) -> Result<Vec<Tag>, String> {
        Ok(self
            .tags
            .iter()
            .filter(|t| t.namespace == r.namespace && t.id > r.after_id)
            .filter(|t| r.repository.as_ref().is_none_or(|x| *x == t.repository))
            .take(r.limit as usize)
            .cloned()
            .collect())
    }

    fn mark_immutable(&mut self, changes: Vec<TagChange>) -> Result<Vec<u64>, String> {
        let mut changed = Vec::new();
        for c in changes {
            let tag = self.tags.iter_mut().find(|t| t.id == c.tag_id).unwrap();
            assert_eq!(c.record.tag.as_deref(), Some(tag.name.as_str()));
            if !tag.immutable {
                tag.immutable = true;
                changed.push(c.tag_id);
                self.committed.push(c.record);
            }
        }
        Ok(changed)
    }

    fn mark_immutable_batch(
        &mut self,
        tag_ids: Vec<u64>,
        record: AuditRecord,
    ) -> Result<Vec<u64>, String> {
        let listed = record.metadata["tags"].as_array().map_or(0, Vec::len);
        assert_eq!(listed, tag_ids.len(), "the batch record lists every tag");
        let mut changed = Vec::new();
        for id in tag_ids {
            let tag = self.tags.iter_mut().find(|t| t.id == id).unwrap();
            if !tag.immutable {
                tag.immutable = true;
                changed.push(id);
            }
        }
        self.committed.push(record);
        Ok(changed)
    }
}

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
    let mut host = FakeHost::default();
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
    assert_eq!(record.metadata["policy_pattern"], "v*");
    assert_eq!(record.metadata["policy_uuid"], "p-glob");
    assert_eq!(record.metadata["trigger"], "push");

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
    let mut host = FakeHost {
        tags: (1..).zip(names).map(|(id, name)| tag(id, name)).collect(),
        ..FakeHost::default()
    };
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
        assert_eq!(record.metadata["policy_pattern"], "{v1.*,stable}");
        assert_eq!(record.metadata["run_id"], "run-glob");
    }
    let last = host.staged.last().unwrap();
    assert_eq!(last.kind, RecordKind::TagsMadeImmutableByPolicy);
    assert_eq!(last.metadata["status"], "completed");
    assert_eq!(last.metadata["count"], 4);
}
