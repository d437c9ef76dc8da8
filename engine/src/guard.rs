//! The completeness guard: the engine checks every outcome against the
//! records staged with it before anything is committed (invariants 2 and 4).
//! Each check returns the reason an outcome is rejected.

use crate::bindings::policy_engine::{DeleteDecision, DeleteRequest, PreviewReport, RunSummary};
use crate::bindings::types::{Policy, RecordKind, Tag};
use crate::entry::AuditEntry;
use crate::host::CallState;
use crate::push::{PushRequest, PushVerdict};
use serde_json::Value;
use std::collections::HashSet;

/// Whether a record names this tag, in its typed fields and its metadata (Quay's
/// `tag`, and `repo` and `namespace` where it states them).
fn names(e: &AuditEntry, namespace: &str, repository: &str, tag: &str) -> bool {
    e.namespace == namespace
        && e.repository.as_deref() == Some(repository)
        && e.tag.as_deref() == Some(tag)
        && e.meta_str("tag") == Some(tag)
        && states(e, "repo", repository)
        && states(e, "namespace", namespace)
}

/// Whether the record's metadata, where it has `key`, says the string `value`.
fn states(e: &AuditEntry, key: &str, value: &str) -> bool {
    e.metadata
        .get(key)
        .is_none_or(|v| v.as_str() == Some(value))
}

fn of_kind(staged: &[AuditEntry], kind: RecordKind) -> usize {
    staged.iter().filter(|e| e.kind == kind.as_str()).count()
}

fn meta_bool(e: &AuditEntry, key: &str) -> Option<bool> {
    e.meta_bool(key)
}

/// Whether a record names `policy` truly: its `policy_uuid`, and, where the record
/// states them, the policy's pattern (`policy_pattern`, Quay's `tag_pattern`),
/// polarity (`policy_pattern_matches`, `tag_pattern_matches`), scope, namespace and,
/// for a repository policy, repository (`repo`). A record that names the right uuid
/// with another pattern would mislead whoever reads it.
pub fn names_policy(e: &AuditEntry, policy: &Policy) -> bool {
    let states_bool = |key: &str, value: bool| {
        e.metadata
            .get(key)
            .is_none_or(|v| v.as_bool() == Some(value))
    };
    e.meta_str("policy_uuid") == Some(policy.uuid.as_str())
        && states(e, "policy_pattern", &policy.tag_pattern)
        && states(e, "tag_pattern", &policy.tag_pattern)
        && states_bool("policy_pattern_matches", policy.tag_pattern_matches)
        && states_bool("tag_pattern_matches", policy.tag_pattern_matches)
        && states(e, "policy_scope", policy.scope.as_str())
        && states(e, "namespace", &policy.namespace)
        && policy
            .repository
            .as_deref()
            .is_none_or(|r| states(e, "repo", r))
}

/// Whether a record's `manifest_digest`, where it states one, is `digest`.
pub fn states_digest(e: &AuditEntry, digest: &str) -> bool {
    e.metadata
        .get("manifest_digest")
        .is_none_or(|v| v.as_str() == Some(digest))
}

/// A push outcome must carry exactly the record its decision implies, about this tag.
pub(crate) fn push(
    req: &PushRequest,
    decision: &PushVerdict,
    staged: &[AuditEntry],
) -> Result<(), String> {
    if let Some(other) = staged
        .iter()
        .find(|e| !names(e, &req.namespace, &req.repository, &req.tag_name))
    {
        return Err(format!(
            "a staged {} record does not name {}/{}:{}",
            other.kind, req.namespace, req.repository, req.tag_name
        ));
    }
    let was_immutable = req.existing.as_ref().is_some_and(|t| t.immutable);
    let made = of_kind(staged, RecordKind::TagMadeImmutableByPolicy);
    let denied = of_kind(staged, RecordKind::TagImmutabilityDenied);
    match decision {
        PushVerdict::Deny(_) => {
            if !was_immutable {
                return Err(format!(
                    "the plugin denied a push of {}, which is not immutable",
                    req.tag_name
                ));
            }
            if denied != 1 || staged.len() != 1 {
                return Err(format!(
                    "a denied push must stage exactly one tag_immutability_denied record, found {} records",
                    staged.len()
                ));
            }
        }
        PushVerdict::Create { immutable, matched } => {
            if was_immutable {
                return Err(format!(
                    "the plugin allowed overwriting the immutable tag {}",
                    req.tag_name
                ));
            }
            if *immutable {
                if made != 1 || staged.len() != 1 {
                    return Err(format!(
                        "a push that creates {} immutable must stage exactly one tag_made_immutable_by_policy record naming it, found {made} of {} records",
                        req.tag_name,
                        staged.len()
                    ));
                }
                let e = &staged[0];
                if meta_bool(e, "immutable") != Some(true)
                    || meta_bool(e, "previous_immutable") != Some(was_immutable)
                {
                    return Err("the tag_made_immutable_by_policy record misstates previous_immutable or immutable".into());
                }
                let cause = e.meta_str("policy_uuid");
                if !matched.iter().any(|m| names_policy(e, &m.policy)) {
                    return Err(format!(
                        "the tag_made_immutable_by_policy record names policy_uuid {cause:?}, which is not one of the policies that fired (or misstates its pattern, polarity or scope)"
                    ));
                }
                if !states_digest(e, &req.manifest_digest) {
                    return Err(format!(
                        "the tag_made_immutable_by_policy record misstates the manifest digest {}",
                        req.manifest_digest
                    ));
                }
            } else if !matched.is_empty() {
                return Err(format!(
                    "a push that leaves {} mutable reports {} firing policies",
                    req.tag_name,
                    matched.len()
                ));
            } else if !staged.is_empty() {
                return Err(format!(
                    "a push that leaves {} mutable must stage no record, found {}",
                    req.tag_name, staged[0].kind
                ));
            }
        }
    }
    Ok(())
}

/// A delete outcome: deny only immutable tags, one denial record each; allow only mutable tags.
pub fn delete(
    req: &DeleteRequest,
    decision: &DeleteDecision,
    staged: &[AuditEntry],
) -> Result<(), String> {
    match decision {
        DeleteDecision::Allow => {
            if let Some(t) = req.tags.iter().find(|t| t.immutable) {
                return Err(format!(
                    "the plugin allowed removing the immutable tag {}",
                    t.name
                ));
            }
            if let Some(e) = staged.first() {
                return Err(format!(
                    "an allowed delete must stage no record, found {}",
                    e.kind
                ));
            }
        }
        DeleteDecision::Deny(ids) => {
            let distinct: HashSet<u64> = ids.iter().copied().collect();
            if distinct.len() != ids.len() {
                return Err("the denial names a tag id more than once".into());
            }
            if ids.is_empty() || staged.len() != ids.len() {
                return Err(format!(
                    "a denial of {} tags staged {} records",
                    ids.len(),
                    staged.len()
                ));
            }
            for id in ids {
                let Some(tag) = req.tags.iter().find(|t| t.id == *id && t.immutable) else {
                    return Err(format!(
                        "the denial names tag id {id}, which is not an immutable tag of the request"
                    ));
                };
                let recorded = staged.iter().any(|e| {
                    e.kind == RecordKind::TagImmutabilityDenied.as_str()
                        && names(e, &tag.namespace, &tag.repository, &tag.name)
                });
                if !recorded {
                    return Err(format!(
                        "no tag_immutability_denied record names {}",
                        tag.name
                    ));
                }
            }
        }
    }
    Ok(())
}

/// A policy create, update or delete stages exactly one record of `kind` naming the policy.
pub fn policy_change(
    kind: RecordKind,
    policy: &Policy,
    staged: &[AuditEntry],
) -> Result<(), String> {
    match staged {
        [e] if e.kind == kind.as_str()
            && e.namespace == policy.namespace
            && e.repository == policy.repository
            && names_policy(e, policy) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "expected exactly one {} record naming policy {}, found {} records",
            kind.as_str(),
            policy.uuid,
            staged.len()
        )),
    }
}

/// A manual change stages one `change_tag_immutability` record exactly when the state changes.
pub fn manual_change(
    tag: &Tag,
    immutable: bool,
    changed: bool,
    staged: &[AuditEntry],
) -> Result<(), String> {
    if changed != (tag.immutable != immutable) {
        return Err(format!(
            "the plugin reports changed={changed} for {} -> {immutable}",
            tag.immutable
        ));
    }
    match (changed, staged) {
        (false, []) => Ok(()),
        (true, [e])
            if e.kind == RecordKind::ChangeTagImmutability.as_str()
                && names(e, &tag.namespace, &tag.repository, &tag.name)
                && meta_bool(e, "previous_immutable") == Some(tag.immutable)
                && meta_bool(e, "immutable") == Some(immutable) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "expected {} change_tag_immutability record for {}, found {} records",
            u8::from(changed),
            tag.name,
            staged.len()
        )),
    }
}

/// A completed run: the scan reached its end (an empty page), the plugin's summary
/// states what the host saw (count, first changed tags, pages), and exactly one staged
/// `tags_made_immutable_by_policy` record says the same, with the run id and policy.
pub fn completed_run(
    run_id: &str,
    policy: &Policy,
    summary: &RunSummary,
    state: &CallState,
    staged: &[AuditEntry],
) -> Result<(), String> {
    if !state.exhausted {
        return Err(
            "the plugin reports a completed run, but its last scan did not reach the end (an empty page)".into(),
        );
    }
    let saw = format!(
        "count {}, sample_tags {:?}, batches {}",
        state.marked, state.first_marked, state.pages
    );
    if summary.run_id != run_id
        || summary.count != state.marked
        || summary.sample_tags != state.first_marked
        || summary.batches != state.pages
    {
        return Err(format!(
            "the plugin reports run {} with count {}, sample_tags {:?}, batches {}; the host saw {saw}",
            summary.run_id, summary.count, summary.sample_tags, summary.batches
        ));
    }
    let [e] = staged else {
        return Err(format!(
            "a run must stage exactly one tags_made_immutable_by_policy summary, found {} records",
            staged.len()
        ));
    };
    let sample: Option<Vec<&str>> = e
        .metadata
        .get("sample_tags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    let ok = e.kind == RecordKind::TagsMadeImmutableByPolicy.as_str()
        && e.namespace == policy.namespace
        && e.repository == policy.repository
        && e.meta_str("run_id") == Some(run_id)
        && names_policy(e, policy)
        && e.meta_str("status") == Some("completed")
        && e.metadata.get("count").and_then(Value::as_u64) == Some(state.marked)
        && e.metadata.get("batches").and_then(Value::as_u64) == Some(u64::from(state.pages))
        && sample.is_some_and(|s| s == state.first_marked);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the run summary must be in {}/{} and carry run_id {run_id}, policy_uuid {}, status completed and {saw}",
            policy.namespace,
            policy.repository.as_deref().unwrap_or("*"),
            policy.uuid
        ))
    }
}

/// A preview scanned to the end, and reports at most `limit` sample tags, no more than
/// it counted, no more than the host let it scan, each a mutable tag in the policy's
/// scope, once.
pub fn preview(
    policy: &Policy,
    limit: u32,
    report: &PreviewReport,
    state: &CallState,
) -> Result<(), String> {
    if !state.exhausted {
        return Err(
            "the preview reports a count, but its last scan did not reach the end (an empty page)"
                .into(),
        );
    }
    let sampled = report.sample.len() as u64;
    if sampled > u64::from(limit) || sampled > report.count || report.count > state.seen {
        return Err(format!(
            "the preview reports {} tags with a sample of {sampled} (limit {limit}); the host let it scan {}",
            report.count, state.seen
        ));
    }
    let mut ids = HashSet::new();
    for t in &report.sample {
        let in_scope = t.namespace == policy.namespace
            && policy
                .repository
                .as_ref()
                .is_none_or(|r| *r == t.repository);
        if !in_scope || t.immutable || !ids.insert(t.id) || t.id > state.cursor {
            return Err(format!(
                "the preview's sample names {}/{}:{} (id {}), which is not a mutable tag it scanned in the policy's scope",
                t.namespace, t.repository, t.name, t.id
            ));
        }
    }
    Ok(())
}
