//! The two traits a registry implements to embed the engine: its tag store
//! and its audit sink.

use crate::bindings::types::{Policy, Tag};
use crate::entry::AuditEntry;
use serde_json::Value;
use std::collections::HashSet;

/// A tag store failure, with the store's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Why an audit sink refused a commit. Nothing of the commit was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The sink could not write (storage down, for instance): the engine fails closed.
    #[error("{0}")]
    Unavailable(String),
    /// The state changed since the decision (the tag moved or became immutable, the
    /// policy already exists): deciding again may succeed.
    #[error("{0}")]
    Conflict(String),
}

/// Which tags a scan returns. The engine builds it from the policy of the call, so a
/// plugin cannot scan outside that policy's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    /// The policy's namespace.
    pub namespace: String,
    /// The policy's repository, for a repository policy; every repository otherwise.
    pub repository: Option<String>,
    /// Only tags whose id is greater than this.
    pub after_id: u64,
    /// At most this many tags (1 to the engine's scan limit).
    pub limit: u32,
}

/// One tag to make immutable during a retroactive run, with its entry.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkImmutable {
    /// The tag's id.
    pub tag_id: u64,
    /// Its `tag_made_immutable_by_policy` entry, naming the same tag.
    pub entry: AuditEntry,
}

/// A tag named by a per-batch record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRef {
    /// The tag's id.
    pub id: u64,
    /// Its repository.
    pub repository: String,
    /// Its name.
    pub name: String,
}

/// Tags to make immutable during a per-batch run, with the one entry that lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkBatch {
    /// The tags, as the most recent scan returned them.
    pub tags: Vec<TagRef>,
    /// A `tag_made_immutable_by_policy` entry whose metadata `tags` lists exactly these tags.
    pub entry: AuditEntry,
}

impl MarkBatch {
    /// The entry narrowed to the tags that really changed (its `tags` list and
    /// `count`), or `None` if none did. A store commits this, never the raw entry,
    /// so the record claims no change that did not happen.
    pub fn narrowed(&self, changed: &[u64]) -> Option<AuditEntry> {
        let changed: HashSet<u64> = changed.iter().copied().collect();
        let kept: HashSet<(&str, &str)> = self
            .tags
            .iter()
            .filter(|t| changed.contains(&t.id))
            .map(|t| (t.repository.as_str(), t.name.as_str()))
            .collect();
        if kept.is_empty() {
            return None;
        }
        let mut entry = self.entry.clone();
        let listed = match entry.metadata.remove("tags") {
            Some(Value::Array(listed)) => listed,
            _ => Vec::new(),
        };
        let narrowed: Vec<Value> = listed
            .into_iter()
            .filter(|v| {
                let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
                kept.contains(&(field("repository"), field("tag")))
            })
            .collect();
        entry.metadata.insert("count".into(), narrowed.len().into());
        entry.metadata.insert("tags".into(), narrowed.into());
        Some(entry)
    }
}

/// The registry's tags, as retroactive runs and previews see them.
pub trait TagStore: Send + Sync {
    /// Alive, non-hidden tags in scope with id > `after_id`, ascending id, at most `limit`.
    fn scan(&self, request: &ScanRequest) -> Result<Vec<Tag>, StoreError>;

    /// Makes tags immutable. Each tag update and its entry are committed in one
    /// transaction; tags already immutable, deleted or hidden are skipped with their
    /// entries. Returns the ids that changed. On error nothing of this call applied.
    fn mark_immutable(&self, changes: Vec<MarkImmutable>) -> Result<Vec<u64>, StoreError>;

    /// Makes the batch's tags immutable and commits `batch.narrowed(changed)` in the same
    /// transaction. Returns the ids that changed. On error nothing of this call applied.
    fn mark_immutable_batch(&self, batch: MarkBatch) -> Result<Vec<u64>, StoreError>;
}

/// A state change the engine commits together with the entries that explain it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// Entries only (denials, run summaries, plugin swaps).
    None,
    /// Create the tag, or move the alive tag `replaces` to a new manifest.
    PutTag {
        /// Namespace.
        namespace: String,
        /// Repository.
        repository: String,
        /// Tag name.
        name: String,
        /// New manifest digest.
        manifest_digest: String,
        /// Whether the tag is immutable after the push.
        immutable: bool,
        /// Id of the alive tag being moved, if any; the commit must fail if it changed meanwhile.
        replaces: Option<u64>,
        /// The policy-set version the push was decided at (`push-request.policy-version`);
        /// the commit must fail with [`SinkError::Conflict`] if policies changed since.
        policy_version: u64,
    },
    /// Set a tag's immutability (a manual change).
    SetImmutable {
        /// Tag id.
        tag_id: u64,
        /// New state.
        immutable: bool,
    },
    /// Store a new policy.
    InsertPolicy(Policy),
    /// Replace the stored policy with the same uuid.
    UpdatePolicy(Policy),
    /// Remove the policy with this uuid.
    DeletePolicy(String),
    /// Delete these tags; the commit must fail with [`SinkError::Conflict`] if any is
    /// no longer alive or is immutable now.
    DeleteTags(Vec<u64>),
    /// Delete a manifest and every tag on it.
    DeleteManifest {
        /// Namespace.
        namespace: String,
        /// Repository.
        repository: String,
        /// Manifest digest.
        digest: String,
        /// The alive tags on the manifest when the delete was decided. The commit must fail
        /// with [`SinkError::Conflict`] if the manifest's alive tags are not exactly these,
        /// or if any of them is immutable now.
        tag_ids: Vec<u64>,
    },
    /// Set an expiration time on these tags; the commit must fail with
    /// [`SinkError::Conflict`] if any is no longer alive or is immutable now.
    SetExpiration {
        /// Tag ids.
        tag_ids: Vec<u64>,
        /// Expiry as the registry expresses it (for example a UTC time stamp).
        expires_at: String,
    },
}

/// Where audit entries go.
pub trait AuditSink: Send + Sync {
    /// Applies `change` and appends `entries` (in order) in one transaction: both or neither.
    fn commit(&self, change: Change, entries: Vec<AuditEntry>) -> Result<(), SinkError>;
}
