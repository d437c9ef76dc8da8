//! The completeness guard: the engine checks every outcome against the
//! records staged with it before anything is committed (invariants 2 and 4).
//! Each check returns the reason an outcome is rejected.

use crate::bindings::policy_engine::{DeleteDecision, DeleteRequest, PushDecision, PushRequest};
use crate::bindings::types::{Policy, RecordKind, Tag};
use crate::entry::AuditEntry;
use serde_json::Value;

fn names(e: &AuditEntry, namespace: &str, repository: &str, tag: &str) -> bool {
    e.namespace == namespace
        && e.repository.as_deref() == Some(repository)
        && e.tag.as_deref() == Some(tag)
        && e.meta_str("tag") == Some(tag)
}

fn of_kind(staged: &[AuditEntry], kind: RecordKind) -> usize {
    staged.iter().filter(|e| e.kind == kind.as_str()).count()
}

fn meta_bool(e: &AuditEntry, key: &str) -> Option<bool> {
    e.metadata.get(key).and_then(Value::as_bool)
}

/// A push outcome must carry exactly the record its decision implies, about this tag.
pub fn push(
    req: &PushRequest,
    decision: &PushDecision,
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
        PushDecision::Deny(_) => {
            if denied != 1 || staged.len() != 1 {
                return Err(format!(
                    "a denied push must stage exactly one tag_immutability_denied record, found {} records",
                    staged.len()
                ));
            }
        }
        PushDecision::Create(c) => {
            if was_immutable {
                return Err(format!(
                    "the plugin allowed overwriting the immutable tag {}",
                    req.tag_name
                ));
            }
            if c.immutable {
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
                if e.meta_str("policy_uuid").is_none() {
                    return Err(
                        "the tag_made_immutable_by_policy record names no policy_uuid".into(),
                    );
                }
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
            && e.meta_str("policy_uuid") == Some(policy.uuid.as_str()) =>
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

/// A retroactive run stages exactly one summary carrying the run id, the policy, the
/// status and the count of tags that the host saw change.
pub fn run_summary(
    run_id: &str,
    policy: &Policy,
    status: &str,
    changed: u64,
    staged: &[AuditEntry],
) -> Result<(), String> {
    let [e] = staged else {
        return Err(format!(
            "a run must stage exactly one tags_made_immutable_by_policy summary, found {} records",
            staged.len()
        ));
    };
    let ok = e.kind == RecordKind::TagsMadeImmutableByPolicy.as_str()
        && e.meta_str("run_id") == Some(run_id)
        && e.meta_str("policy_uuid") == Some(policy.uuid.as_str())
        && e.meta_str("status") == Some(status)
        && e.metadata.get("count").and_then(Value::as_u64) == Some(changed);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the run summary must carry run_id {run_id}, policy_uuid {}, status {status} and count {changed}",
            policy.uuid
        ))
    }
}
