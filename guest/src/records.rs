//! Builders for every audit record the plugin stages, one function per event
//! of the record table. Metadata is serialized with serde_json, never by
//! formatting: the records a push or a retroactive run writes for each tag go
//! through a typed struct straight to text; the rare ones through a value.

use crate::model::{AuditRecord, Policy, PolicyMatch, RecordKind, Tag};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// The metadata of a `tag_made_immutable_by_policy` record about one tag (the hot path).
#[derive(Serialize)]
struct TagMade<'a> {
    tag: &'a str,
    /// Quay's name for the repository in this record's metadata.
    repo: &'a str,
    namespace: &'a str,
    manifest_digest: &'a str,
    previous_immutable: bool,
    immutable: bool,
    trigger: &'a str,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<&'a str>,
    matched_policies: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_uuid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_pattern: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_pattern_matches: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_scope: Option<&'static str>,
    /// Policies whose pattern ran out of its matching budget (counted as not matched).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    match_budget_exceeded: Vec<&'a str>,
}

impl<'a> TagMade<'a> {
    fn caused_by(mut self, cause: Option<&'a Policy>) -> Self {
        if let Some(p) = cause {
            self.policy_uuid = Some(&p.uuid);
            self.policy_pattern = Some(&p.tag_pattern);
            self.policy_pattern_matches = Some(p.tag_pattern_matches);
            self.policy_scope = Some(p.scope.as_str());
        }
        self
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// How many tag names a run summary lists.
pub const SAMPLE_TAGS: usize = 10;

/// One policy as a JSON object.
pub fn policy_json(p: &Policy) -> Value {
    json!({
        "uuid": p.uuid,
        "scope": p.scope.as_str(),
        "namespace": p.namespace,
        "repository": p.repository,
        "tag_pattern": p.tag_pattern,
        "tag_pattern_matches": p.tag_pattern_matches,
    })
}

/// The `policy_*` fields that name the policy causing a change.
fn cause_fields(meta: &mut Map<String, Value>, p: &Policy) {
    meta.insert("policy_uuid".into(), json!(p.uuid));
    meta.insert("policy_pattern".into(), json!(p.tag_pattern));
    meta.insert(
        "policy_pattern_matches".into(),
        json!(p.tag_pattern_matches),
    );
    meta.insert("policy_scope".into(), json!(p.scope.as_str()));
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `tag_made_immutable_by_policy` for a push that creates or moves `tag` to `digest`.
/// The first firing policy is the cause; all of them are listed.
pub fn made_immutable_on_push(
    namespace: &str,
    repository: &str,
    tag: &str,
    digest: &str,
    previous_immutable: bool,
    matched: &[PolicyMatch],
) -> AuditRecord {
    let meta = TagMade {
        tag,
        repo: repository,
        namespace,
        manifest_digest: digest,
        previous_immutable,
        immutable: true,
        trigger: "push",
        outcome: "success",
        run_id: None,
        matched_policies: matched.iter().map(|m| m.policy.uuid.as_str()).collect(),
        policy_uuid: None,
        policy_pattern: None,
        policy_pattern_matches: None,
        policy_scope: None,
        match_budget_exceeded: budget_exceeded(matched),
    }
    .caused_by(matched.first().map(|m| &m.policy));
    AuditRecord {
        kind: RecordKind::TagMadeImmutableByPolicy,
        namespace: namespace.into(),
        repository: Some(repository.into()),
        tag: Some(tag.into()),
        metadata_json: meta.to_json(),
    }
}

/// The uuids of the matches whose pattern ran out of its matching budget.
fn budget_exceeded(matched: &[PolicyMatch]) -> Vec<&str> {
    matched
        .iter()
        .filter(|m| m.budget_exceeded)
        .map(|m| m.policy.uuid.as_str())
        .collect()
}

/// `tag_made_immutable_by_policy` for a tag marked by a retroactive run.
pub fn made_immutable_by_run(
    tag: &Tag,
    policy: &Policy,
    trigger: &str,
    run_id: &str,
) -> AuditRecord {
    made_immutable_by_run_with(tag, policy, trigger, run_id, false)
}

/// As [`made_immutable_by_run`]; `budget_exceeded` says the policy fired because its
/// pattern ran out of matching budget and counted as not matched.
pub fn made_immutable_by_run_with(
    tag: &Tag,
    policy: &Policy,
    trigger: &str,
    run_id: &str,
    budget_exceeded: bool,
) -> AuditRecord {
    let meta = TagMade {
        tag: &tag.name,
        repo: &tag.repository,
        namespace: &tag.namespace,
        manifest_digest: &tag.manifest_digest,
        previous_immutable: false,
        immutable: true,
        trigger,
        outcome: "success",
        run_id: Some(run_id),
        matched_policies: vec![policy.uuid.as_str()],
        policy_uuid: None,
        policy_pattern: None,
        policy_pattern_matches: None,
        policy_scope: None,
        match_budget_exceeded: if budget_exceeded {
            vec![policy.uuid.as_str()]
        } else {
            Vec::new()
        },
    }
    .caused_by(Some(policy));
    AuditRecord {
        kind: RecordKind::TagMadeImmutableByPolicy,
        namespace: tag.namespace.clone(),
        repository: Some(tag.repository.clone()),
        tag: Some(tag.name.clone()),
        metadata_json: meta.to_json(),
    }
}

/// `tag_made_immutable_by_policy` for a whole batch of a retroactive run: one record
/// that lists every tag by repository and name (per-batch granularity). A tag for
/// which the policy fired because its pattern ran out of matching budget says so.
pub fn batch_made_immutable(
    tags: &[(&Tag, bool)],
    policy: &Policy,
    trigger: &str,
    run_id: &str,
) -> AuditRecord {
    let listed: Vec<Value> = tags
        .iter()
        .map(|(t, exceeded)| {
            let mut entry = object(json!({ "repository": t.repository, "tag": t.name, "manifest_digest": t.manifest_digest }));
            if *exceeded {
                entry.insert("match_budget_exceeded".into(), json!(true));
            }
            Value::Object(entry)
        })
        .collect();
    let mut meta = object(json!({
        "namespace": policy.namespace,
        "tags": listed,
        "count": tags.len(),
        "previous_immutable": false,
        "immutable": true,
        "trigger": trigger,
        "outcome": "success",
        "run_id": run_id,
        "granularity": "per_batch",
        "matched_policies": [policy.uuid],
    }));
    if let Some(repo) = &policy.repository {
        meta.insert("repo".into(), json!(repo));
    }
    cause_fields(&mut meta, policy);
    AuditRecord {
        kind: RecordKind::TagMadeImmutableByPolicy,
        namespace: policy.namespace.clone(),
        repository: policy.repository.clone(),
        tag: None,
        metadata_json: Value::Object(meta).to_string(),
    }
}

/// Progress of a retroactive run, as its summary reports it.
pub struct RunProgress<'a> {
    /// Run id.
    pub run_id: &'a str,
    /// `policy_created` or `policy_updated`.
    pub trigger: &'a str,
    /// Tags changed.
    pub count: u64,
    /// First changed tag names.
    pub sample_tags: &'a [String],
    /// Batches processed.
    pub batches: u32,
    /// Batch size used.
    pub batch_size: u32,
    /// `per_tag` or `per_batch`.
    pub granularity: &'a str,
}

/// `tags_made_immutable_by_policy`: the summary of a completed run (the host writes
/// the summary of a failed one).
pub fn run_summary(policy: &Policy, progress: &RunProgress<'_>) -> AuditRecord {
    let status = "completed";
    let mut meta = object(json!({
        "namespace": policy.namespace,
        "tag_pattern": policy.tag_pattern,
        "tag_pattern_matches": policy.tag_pattern_matches,
        "run_id": progress.run_id,
        "trigger": progress.trigger,
        "count": progress.count,
        "tags_affected_count": progress.count,
        "sample_tags": progress.sample_tags,
        "batches": progress.batches,
        "batch_size": progress.batch_size,
        "granularity": progress.granularity,
        "status": status,
        "outcome": status,
    }));
    if let Some(repo) = &policy.repository {
        meta.insert("repo".into(), json!(repo));
    }
    cause_fields(&mut meta, policy);
    AuditRecord {
        kind: RecordKind::TagsMadeImmutableByPolicy,
        namespace: policy.namespace.clone(),
        repository: policy.repository.clone(),
        tag: None,
        metadata_json: Value::Object(meta).to_string(),
    }
}

fn policy_record(kind: RecordKind, policy: &Policy, extra: Value) -> AuditRecord {
    let mut meta = object(extra);
    cause_fields(&mut meta, policy);
    meta.insert("outcome".into(), json!("success"));
    AuditRecord {
        kind,
        namespace: policy.namespace.clone(),
        repository: policy.repository.clone(),
        tag: None,
        metadata_json: Value::Object(meta).to_string(),
    }
}

/// `create_immutability_policy`.
pub fn policy_created(policy: &Policy) -> AuditRecord {
    policy_record(
        RecordKind::CreateImmutabilityPolicy,
        policy,
        json!({ "policy": policy_json(policy) }),
    )
}

/// `update_immutability_policy`, with the policy before and after.
pub fn policy_updated(before: &Policy, after: &Policy) -> AuditRecord {
    policy_record(
        RecordKind::UpdateImmutabilityPolicy,
        after,
        json!({ "before": policy_json(before), "after": policy_json(after) }),
    )
}

/// `delete_immutability_policy`, carrying the deleted pattern.
pub fn policy_deleted(policy: &Policy) -> AuditRecord {
    policy_record(
        RecordKind::DeleteImmutabilityPolicy,
        policy,
        json!({ "policy": policy_json(policy), "deleted_pattern": policy.tag_pattern }),
    )
}

/// `change_tag_immutability`: a manual toggle.
pub fn manual_change(tag: &Tag, immutable: bool) -> AuditRecord {
    AuditRecord {
        kind: RecordKind::ChangeTagImmutability,
        namespace: tag.namespace.clone(),
        repository: Some(tag.repository.clone()),
        tag: Some(tag.name.clone()),
        metadata_json: json!({
            "tag": tag.name,
            "manifest_digest": tag.manifest_digest,
            "previous_immutable": tag.immutable,
            "immutable": immutable,
            "trigger": "manual",
            "outcome": "success",
        })
        .to_string(),
    }
}

/// `tag_immutability_denied`: an operation refused on an immutable tag.
/// `attempted_digest` is the digest a refused push wanted to point the tag to.
pub fn denied(
    tag: &Tag,
    operation: &str,
    attempted_digest: Option<&str>,
    keeping: &[PolicyMatch],
) -> AuditRecord {
    let mut meta = object(json!({
        "tag": tag.name,
        "manifest_digest": tag.manifest_digest,
        "operation": operation,
        "immutable": true,
        "outcome": "denied",
        "reason": "TAG_IMMUTABLE",
        "matched_policies": keeping.iter().map(|m| policy_json(&m.policy)).collect::<Vec<_>>(),
    }));
    if let Some(d) = attempted_digest {
        meta.insert("attempted_manifest_digest".into(), json!(d));
    }
    let exceeded = budget_exceeded(keeping);
    if !exceeded.is_empty() {
        meta.insert("match_budget_exceeded".into(), json!(exceeded));
    }
    AuditRecord {
        kind: RecordKind::TagImmutabilityDenied,
        namespace: tag.namespace.clone(),
        repository: Some(tag.repository.clone()),
        tag: Some(tag.name.clone()),
        metadata_json: Value::Object(meta).to_string(),
    }
}
