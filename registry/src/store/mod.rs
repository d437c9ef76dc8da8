//! The registry's storage behind one trait, [`Storage`]: what the handlers
//! read and write besides the engine's own [`TagStore`] and [`AuditSink`].
//! SQLite ([`sqlite::SqliteStore`]) is the embedded default, PostgreSQL
//! ([`postgres::PostgresStore`]) serves several replicas; another database
//! adds an implementation and changes no handler.

pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod tests;

use serde::Serialize;
use serde_json::{Value, json};
use tagguard_engine::audit::{ChainedEntry, Checkpoint, quay_log_line, read_jsonl};
use tagguard_engine::{
    AuditEntry, AuditSink, PLUGIN_SWAPPED, Policy, Scope, SinkError, Tag, TagStore,
};

/// A storage failure, with the database's message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The database failed.
    #[error("database: {0}")]
    Database(String),
    /// An audit row was edited: its columns differ from the entry its hash covers, or
    /// its entry does not read back.
    #[error("log entry {seq}: {reason}")]
    EditedLogRow {
        /// The row's seq.
        seq: u64,
        /// What differs.
        reason: String,
    },
    /// Stored data does not read back (for example an audit row that is not an entry).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Database(e.to_string())
    }
}

/// A stored manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRow {
    /// `sha256:` digest of the bytes.
    pub digest: String,
    /// Media type, as the client declared it.
    pub media_type: String,
    /// The manifest exactly as pushed.
    pub bytes: Vec<u8>,
    /// Digest of the manifest it refers to (`subject`), if any.
    pub subject: Option<String>,
    /// Its artifact type (`artifactType`, or the config's media type), if any.
    pub artifact_type: Option<String>,
}

/// A retroactive run as the registry tracks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunRow {
    /// The registry's run id.
    pub id: i64,
    /// The policy applied.
    pub policy_uuid: String,
    /// Its namespace.
    pub namespace: String,
    /// Its repository, for a repository policy.
    pub repository: Option<String>,
    /// `policy_created`, `policy_updated` or `reapplied`.
    pub trigger: String,
    /// Who started it.
    pub performer: String,
    /// `running`, `completed`, `failed` or `incomplete` (cut short by a stop).
    pub status: String,
    /// The engine's run id, once the run has marked a tag or finished.
    pub engine_run_id: Option<String>,
    /// Tags it made immutable so far.
    pub changed: u64,
    /// When it started (UTC, RFC 3339).
    pub started: String,
    /// When it ended.
    pub finished: Option<String>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The run that finished this one's work (an apply), if any.
    pub finished_by: Option<i64>,
}

/// Which audit rows to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this repository (of `namespace`).
    pub repository: Option<String>,
    /// Only entries of this kind.
    pub kind: Option<String>,
    /// Only entries with seq below this (pages go from newest to oldest).
    pub before_seq: Option<u64>,
    /// Only entries with seq above this; the page is then the `limit` oldest of
    /// them (still returned newest first), the page just newer than `after_seq`.
    pub after_seq: Option<u64>,
    /// Only entries at or after this time (RFC 3339).
    pub start_time: Option<String>,
    /// Only entries before this time (RFC 3339).
    pub end_time: Option<String>,
    /// Only entries about this tag (the `tag` of their Quay metadata).
    pub tag: Option<String>,
    /// Only entries by this performer (account name).
    pub performer: Option<String>,
    /// At most this many.
    pub limit: usize,
}

/// A repository with its tag counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RepositorySummary {
    /// Namespace.
    pub namespace: String,
    /// Repository.
    pub repository: String,
    /// Alive tags.
    pub tags: u64,
    /// Alive immutable tags.
    pub immutable: u64,
}

/// The policy JSON of Quay's policy tables.
pub fn policy_json(p: &Policy) -> String {
    json!({"tag_pattern": p.tag_pattern, "tag_pattern_matches": p.tag_pattern_matches}).to_string()
}

/// A policy from its row: uuid, namespace, repository (for a repository policy) and
/// Quay's policy JSON.
pub fn policy_from_row(
    uuid: String,
    ns: String,
    repo: Option<String>,
    json: &str,
) -> Result<Policy, StorageError> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| StorageError::Corrupt(format!("policy {uuid}: {e}")))?;
    let pattern = v.get("tag_pattern").and_then(Value::as_str);
    let matches = v.get("tag_pattern_matches").and_then(Value::as_bool);
    let (Some(pattern), Some(matches)) = (pattern, matches) else {
        return Err(StorageError::Corrupt(format!(
            "policy {uuid}: needs tag_pattern and tag_pattern_matches"
        )));
    };
    Ok(Policy {
        uuid,
        scope: if repo.is_some() {
            Scope::Repository
        } else {
            Scope::Namespace
        },
        namespace: ns,
        repository: repo,
        tag_pattern: pattern.into(),
        tag_pattern_matches: matches,
    })
}

/// Reads chained entries from rows of `(seq, entry_json)`.
pub fn entries_from(rows: Vec<(i64, String)>) -> Result<Vec<ChainedEntry>, StorageError> {
    let mut out = Vec::with_capacity(rows.len());
    for (seq, json) in rows {
        let edited = |reason: String| StorageError::EditedLogRow {
            seq: seq as u64,
            reason,
        };
        let mut read = read_jsonl(&json).map_err(|e| edited(e.reason))?;
        match read.pop() {
            Some(entry) if read.is_empty() => out.push(entry),
            _ => return Err(edited("not one entry".into())),
        }
    }
    Ok(out)
}

/// A `logentry3` row as stored: its seq, the entry its hash covers, and the Quay
/// columns derived from that entry.
pub struct LogRow {
    /// `id`, the chain's seq.
    pub seq: i64,
    /// The chained entry the hash covers.
    pub entry_json: String,
    /// The log kind's name.
    pub kind: String,
    /// The namespace's name.
    pub namespace: String,
    /// `datetime`.
    pub datetime: String,
    /// `ip`.
    pub ip: Option<String>,
    /// `metadata_json`.
    pub metadata_json: String,
    /// `prev_hash`.
    pub prev_hash: String,
    /// `hash`.
    pub hash: String,
}

impl LogRow {
    /// The entry, checked against the row's columns: an edited column is an
    /// [`StorageError::EditedLogRow`] at the row's seq.
    pub fn checked(self) -> Result<ChainedEntry, StorageError> {
        let seq = self.seq;
        let entry = entries_from(vec![(seq, self.entry_json)])?.remove(0);
        let quay = quay_log_line(&entry);
        let e = &entry.entry;
        let columns_agree = entry.seq == seq as u64
            && e.kind == self.kind
            && e.namespace == self.namespace
            && e.time == self.datetime
            && e.performer.ip == self.ip
            && quay["metadata_json"].as_str() == Some(self.metadata_json.as_str())
            && entry.prev_hash == self.prev_hash
            && entry.hash == self.hash;
        if !columns_agree {
            return Err(StorageError::EditedLogRow {
                seq: seq as u64,
                reason: "its columns differ from the entry its hash covers".into(),
            });
        }
        Ok(entry)
    }
}

/// The plugin the database says serves: every process on the database serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedPlugin {
    /// Its generation (1 is the default plugin, before any swap).
    pub generation: u64,
    /// `sha256:` digest of its component, stored with [`Storage::put_plugin`].
    pub digest: String,
    /// Digest of the plugin that served before it (what a rollback returns to).
    pub previous: Option<String>,
}

impl ServedPlugin {
    /// The plugin a swap or rollback record publishes, if `entry` is one.
    pub fn published_by(entry: &AuditEntry) -> Option<ServedPlugin> {
        if entry.kind != PLUGIN_SWAPPED {
            return None;
        }
        let m = &entry.metadata;
        let digest = |side: &str| {
            m.get(side)
                .and_then(|p| p.get("sha256"))
                .and_then(|d| d.as_str())
                .map(String::from)
        };
        Some(ServedPlugin {
            generation: m.get("generation")?.as_u64()?,
            digest: digest("new_plugin")?,
            previous: digest("old_plugin"),
        })
    }

    /// Whether `self` may follow `stored` (none stored: generation 1 serves). A swap
    /// decided by a process that had not yet followed the last one conflicts, and the
    /// process follows and decides again.
    pub fn check_follows(&self, stored: Option<&ServedPlugin>) -> Result<(), SinkError> {
        let serving = stored.map_or(1, |s| s.generation);
        if self.generation == serving + 1 {
            Ok(())
        } else {
            Err(SinkError::Conflict(format!(
                "plugin generation {} was published, generation {serving} serves: another process swapped the plugin meanwhile",
                self.generation
            )))
        }
    }
}

/// Held while a policy changes or a retroactive run applies: one at a time, across
/// every process on the database. Released when dropped.
pub struct PolicyLock(
    /// Whatever holds the lock until it is dropped.
    #[allow(dead_code)]
    Box<dyn Send>,
);

impl PolicyLock {
    /// A lock held for as long as `held` lives.
    pub fn new(held: impl Send + 'static) -> Self {
        PolicyLock(Box::new(held))
    }
}

/// Everything the handlers store, besides the engine's two traits.
pub trait Storage: TagStore + AuditSink + Send + Sync {
    /// Whether the blob is stored and linked into the repository; its size if so.
    fn blob_in_repository(
        &self,
        ns: &str,
        repo: &str,
        digest: &str,
    ) -> Result<Option<u64>, StorageError>;
    /// Records a verified blob and links it into the repository (created if new).
    fn link_blob(&self, ns: &str, repo: &str, digest: &str, size: u64) -> Result<(), StorageError>;
    /// Unlinks a blob from the repository; whether it was linked.
    fn unlink_blob(&self, ns: &str, repo: &str, digest: &str) -> Result<bool, StorageError>;
    /// Stores a manifest in the repository (created if new); whether it was new.
    fn put_manifest(&self, ns: &str, repo: &str, m: &ManifestRow) -> Result<bool, StorageError>;
    /// A manifest of the repository by digest.
    fn manifest(
        &self,
        ns: &str,
        repo: &str,
        digest: &str,
    ) -> Result<Option<ManifestRow>, StorageError>;
    /// Deletes a manifest that no alive tag points to; whether it was deleted.
    fn delete_untagged_manifest(
        &self,
        ns: &str,
        repo: &str,
        digest: &str,
    ) -> Result<bool, StorageError>;
    /// Manifests of the repository whose subject is `digest`.
    fn referrers(
        &self,
        ns: &str,
        repo: &str,
        digest: &str,
    ) -> Result<Vec<ManifestRow>, StorageError>;
    /// The alive tag `ns/repo:name`, if any.
    fn alive_tag(&self, ns: &str, repo: &str, name: &str) -> Result<Option<Tag>, StorageError>;
    /// The alive tags on a manifest.
    fn tags_on_manifest(
        &self,
        ns: &str,
        repo: &str,
        digest: &str,
    ) -> Result<Vec<Tag>, StorageError>;
    /// Alive, non-hidden tag names of a repository in lexical order, after `last`.
    fn tag_names(
        &self,
        ns: &str,
        repo: &str,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError>;
    /// Alive, non-hidden tags of a repository with their immutable flags, by name.
    fn alive_tags(&self, ns: &str, repo: &str) -> Result<Vec<Tag>, StorageError>;
    /// Whether the repository exists.
    fn repository_exists(&self, ns: &str, repo: &str) -> Result<bool, StorageError>;
    /// Repository names (`ns/repo`) in lexical order, after `last`.
    fn catalog(&self, last: Option<&str>, limit: usize) -> Result<Vec<String>, StorageError>;
    /// Every repository with its tag counts.
    fn repositories(&self) -> Result<Vec<RepositorySummary>, StorageError>;
    /// The policies in scope of a repository (its own and its namespace's), or of a
    /// namespace only when `repo` is `None`, with the policy-set version read with them.
    fn policies_in_scope(
        &self,
        ns: &str,
        repo: Option<&str>,
    ) -> Result<(Vec<Policy>, u64), StorageError>;
    /// Every policy of a namespace, of both scopes.
    fn namespace_policies(&self, ns: &str) -> Result<Vec<Policy>, StorageError>;
    /// A policy by uuid.
    fn policy(&self, uuid: &str) -> Result<Option<Policy>, StorageError>;
    /// Audit entries, newest first.
    fn log(&self, query: &LogQuery) -> Result<Vec<ChainedEntry>, StorageError>;
    /// The audit entries that may concern `ns/repo:tag`, oldest first: every entry of the
    /// namespace whose Quay metadata names the tag (a superset; `tag_history` filters).
    fn tag_log(&self, ns: &str, repo: &str, tag: &str) -> Result<Vec<ChainedEntry>, StorageError>;
    /// The whole audit log in chain order, each entry checked against its row's
    /// Quay columns (an edited column reads as corrupt).
    fn full_log(&self) -> Result<Vec<ChainedEntry>, StorageError>;
    /// The latest checkpoint of the log head, if any.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StorageError>;
    /// Starts tracking a run; returns its id.
    fn start_run(
        &self,
        policy: &Policy,
        trigger: &str,
        performer: &str,
    ) -> Result<i64, StorageError>;
    /// Ends a run: `completed` or `failed`, with the engine's run id and changed count.
    fn end_run(
        &self,
        id: i64,
        status: &str,
        engine_run_id: Option<&str>,
        changed: u64,
        error: Option<&str>,
    ) -> Result<(), StorageError>;
    /// Forgets a run that never started (its policy was refused).
    fn drop_run(&self, id: i64) -> Result<(), StorageError>;
    /// Marks a run's work as finished by another run.
    fn finish_run_by(&self, id: i64, by: i64, changed: u64) -> Result<(), StorageError>;
    /// Every run that was `running` becomes `incomplete`. Call it holding the policy
    /// lock: a run holds it while it runs, so a `running` row found then was cut short.
    fn interrupt_runs(&self) -> Result<u64, StorageError>;
    /// Runs, newest first.
    fn runs(&self) -> Result<Vec<RunRow>, StorageError>;
    /// A run by id.
    fn run(&self, id: i64) -> Result<Option<RunRow>, StorageError>;
    /// Stores a plugin component under its `sha256:` digest (kept once).
    fn put_plugin(&self, digest: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// A stored plugin component by digest.
    fn plugin_component(&self, digest: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// The plugin the database says serves; `None` until the first swap. A commit that
    /// carries a swap or rollback record updates it in the same transaction, and
    /// conflicts unless the record's generation follows the stored one.
    fn served_plugin(&self) -> Result<Option<ServedPlugin>, StorageError>;
    /// Waits for the lock that policy changes and retroactive runs hold.
    fn lock_policies(&self) -> Result<PolicyLock, StorageError>;
    /// The same lock, or `None` at once when another holder has it.
    fn try_lock_policies(&self) -> Result<Option<PolicyLock>, StorageError>;
    /// Whether the database answers.
    fn healthy(&self) -> bool;
}
