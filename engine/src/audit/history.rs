//! "Why is this tag immutable?": a tag's full immutability history from an
//! audit log: what made it immutable (which policy, when, by whom, under
//! which plugin), manual changes, and denied attempts.

use super::ChainedEntry;
use crate::entry::AuditEntry;
use serde::Serialize;
use serde_json::Value;

/// One event in a tag's immutability history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TagEvent {
    /// Sequence number of the record.
    pub seq: u64,
    /// UTC time of the record.
    pub time: String,
    /// Record kind.
    pub kind: &'static str,
    /// Who did it (account name, or `system`).
    pub performer: String,
    /// `push`, `policy_created`, `policy_updated`, `reapplied`, `manual`, or the denied operation.
    pub trigger: Option<String>,
    /// Immutability after the event, where it changed.
    pub immutable: Option<bool>,
    /// The policy that caused the change, if a policy did.
    pub policy_uuid: Option<String>,
    /// That policy's pattern.
    pub policy_pattern: Option<String>,
    /// The retroactive run, if any.
    pub run_id: Option<String>,
    /// `success` or `denied`.
    pub outcome: Option<String>,
    /// Plugin that decided: `name@version`.
    pub plugin: String,
    /// That plugin's digest.
    pub plugin_digest: String,
}

/// A tag's immutability history, oldest first, and what explains its state now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TagHistory {
    /// Namespace.
    pub namespace: String,
    /// Repository.
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// Every immutability-related event about the tag, oldest first.
    pub events: Vec<TagEvent>,
    /// The last change of its immutability: why it is (or is not) immutable now.
    pub cause: Option<TagEvent>,
}

const CHANGES: [&str; 2] = ["tag_made_immutable_by_policy", "change_tag_immutability"];
const ABOUT_TAGS: [&str; 3] = [
    "tag_made_immutable_by_policy",
    "change_tag_immutability",
    "tag_immutability_denied",
];

fn names(e: &AuditEntry, repository: &str, tag: &str) -> bool {
    if e.repository.as_deref() == Some(repository) && e.tag.as_deref() == Some(tag) {
        return true;
    }
    e.tag.is_none()
        && e.metadata
            .get("tags")
            .and_then(Value::as_array)
            .is_some_and(|tags| {
                tags.iter().any(|t| {
                    t.get("tag").and_then(Value::as_str) == Some(tag)
                        && t.get("repository").and_then(Value::as_str) == Some(repository)
                })
            })
}

fn text(e: &AuditEntry, key: &str) -> Option<String> {
    e.meta_str(key).map(str::to_string)
}

fn event(row: &ChainedEntry) -> TagEvent {
    let e = &row.entry;
    TagEvent {
        seq: row.seq,
        time: e.time.clone(),
        kind: e.kind,
        performer: e.performer.name.clone(),
        trigger: text(e, "trigger").or_else(|| text(e, "operation")),
        immutable: CHANGES
            .contains(&e.kind)
            .then(|| e.metadata.get("immutable").and_then(Value::as_bool))
            .flatten(),
        policy_uuid: text(e, "policy_uuid"),
        policy_pattern: text(e, "policy_pattern"),
        run_id: text(e, "run_id"),
        outcome: text(e, "outcome"),
        plugin: format!("{}@{}", e.plugin.name, e.plugin.version),
        plugin_digest: e.plugin.digest.clone(),
    }
}

/// The immutability history of `namespace/repository:tag` in `log`.
pub fn tag_history(
    log: &[ChainedEntry],
    namespace: &str,
    repository: &str,
    tag: &str,
) -> TagHistory {
    let events: Vec<TagEvent> = log
        .iter()
        .filter(|r| ABOUT_TAGS.contains(&r.entry.kind) && r.entry.namespace == namespace)
        .filter(|r| names(&r.entry, repository, tag))
        .map(event)
        .collect();
    let cause = events
        .iter()
        .rev()
        .find(|e| CHANGES.contains(&e.kind))
        .cloned();
    TagHistory {
        namespace: namespace.into(),
        repository: repository.into(),
        tag: tag.into(),
        events,
        cause,
    }
}
