//! The mock registry's storage: tags, policies and an append-only audit log
//! in memory, behind one lock so each commit is one transaction. It
//! implements the engine's `TagStore` and `AuditSink`, with switchable faults.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tagguard_engine::audit::{AuditChain, ChainedEntry, Checkpoint, CheckpointKey};
use tagguard_engine::{
    AuditEntry, AuditSink, Change, MarkBatch, MarkImmutable, Policy, ScanRequest, SinkError,
    StoreError, Tag, TagStore,
};

/// One tag row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagRow {
    /// Id, ascending with creation.
    pub id: u64,
    /// Namespace.
    pub namespace: String,
    /// Repository.
    pub repository: String,
    /// Name.
    pub name: String,
    /// Manifest digest.
    pub manifest_digest: String,
    /// Immutable now.
    pub immutable: bool,
    /// Hidden (an internal tag the registry does not list).
    pub hidden: bool,
    /// Alive: false once deleted, moved away from, or expired.
    pub alive: bool,
    /// Expiration set on the tag, if any.
    pub expires_at: Option<String>,
}

impl TagRow {
    /// The row as the engine sees it.
    pub fn to_tag(&self) -> Tag {
        Tag {
            id: self.id,
            namespace: self.namespace.clone(),
            repository: self.repository.clone(),
            name: self.name.clone(),
            manifest_digest: self.manifest_digest.clone(),
            immutable: self.immutable,
        }
    }
}

/// One committed audit log row: the entry, its sequence number and its hash link.
pub type LogRow = ChainedEntry;

/// A real change of a tag's immutability, and the log row committed with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The tag.
    pub tag_id: u64,
    /// State before (false for a tag created immutable).
    pub from: bool,
    /// State after.
    pub to: bool,
    /// The record committed in the same transaction that claims this change, if any.
    pub record_seq: Option<u64>,
}

/// A tag that stopped being alive (deleted, moved away from, or its manifest deleted),
/// and whether it was immutable then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The tag.
    pub tag_id: u64,
    /// Whether it was immutable when it was removed (never allowed).
    pub was_immutable: bool,
}

/// Everything the registry stores.
#[derive(Default, Debug)]
pub struct State {
    /// Tag rows, ascending id.
    pub tags: Vec<TagRow>,
    /// Policies.
    pub policies: Vec<Policy>,
    /// The policy-set version: bumped by every policy change.
    pub policy_version: u64,
    /// The audit log: append-only and hash-chained.
    pub log: AuditChain,
    /// Every real immutability change.
    pub transitions: Vec<Transition>,
    /// Every tag removal.
    pub removals: Vec<Removed>,
    /// The newest row of each tag name, by `(namespace, repository, name)`: an index
    /// that [`Db::with`] brings up to date with rows appended since (tests append too).
    by_name: HashMap<(String, String, String), usize>,
    /// Rows of `tags` the index covers.
    indexed: usize,
}

/// Injected faults: fail the k-th write from now, or every write while set.
#[derive(Default, Debug)]
pub struct Faults {
    /// Audit commits (push, policy records, summaries) fail while set.
    pub sink_down: AtomicBool,
    /// Tag-store marks fail while set.
    pub store_down: AtomicBool,
    /// Writes (commits and marks) left before the next one fails; 0 disables.
    pub fail_in: AtomicU64,
    /// Marks left before the process "crashes" (panics) before applying one; 0 disables.
    pub crash_in: AtomicU64,
}

impl Faults {
    /// Panics, as a crash between two batches would stop the process, when due.
    fn maybe_crash(&self) {
        let left = self.crash_in.load(Ordering::SeqCst);
        if left > 0 {
            self.crash_in.store(left - 1, Ordering::SeqCst);
            assert!(left != 1, "simulated crash between two batches");
        }
    }

    fn write_fails(&self, down: &AtomicBool) -> bool {
        if down.load(Ordering::SeqCst) {
            return true;
        }
        let left = self.fail_in.load(Ordering::SeqCst);
        if left == 0 {
            return false;
        }
        self.fail_in.store(left - 1, Ordering::SeqCst);
        left == 1
    }
}

/// Keyed checkpoints of the log's head, kept apart from the log under their own lock,
/// as a registry keeps them where the log writer cannot rewrite them. The latest is
/// enough: the head hash at its seq commits to every entry before it.
#[derive(Debug)]
pub struct Checkpoints {
    key: CheckpointKey,
    latest: Mutex<Option<Checkpoint>>,
}

impl Default for Checkpoints {
    /// A key of this database's own, from the process, the time and an address (a
    /// test double's key; a registry keeps a secret key apart from the log writer).
    fn default() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let marker = 0u8;
        let seed = format!("{}-{nanos}-{:p}", std::process::id(), &marker);
        let key = CheckpointKey::from_bytes(seed.as_bytes())
            .expect("the seed is longer than the minimum key length");
        Checkpoints {
            key,
            latest: Mutex::new(None),
        }
    }
}

impl Checkpoints {
    /// The key the checkpoints are signed with.
    pub fn key(&self) -> &CheckpointKey {
        &self.key
    }

    /// The latest checkpoint, if the log has entries.
    pub fn latest(&self) -> Option<Checkpoint> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Signs the head of `log`, after a commit appended to it.
    fn sign(&self, log: &AuditChain) {
        if let Some(checkpoint) = log.checkpoint(&self.key) {
            *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(checkpoint);
        }
    }
}

/// The registry database.
#[derive(Default, Debug)]
pub struct Db {
    state: Mutex<State>,
    /// Fault switches for tests.
    pub faults: Faults,
    /// Checkpoints of the log's head, signed after every commit.
    pub checkpoints: Checkpoints,
}

/// The `(repository, tag)` pairs a per-batch record lists.
fn listed_tags(entry: &AuditEntry) -> HashSet<(String, String)> {
    let field = |t: &serde_json::Value, k: &str| {
        t.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    entry
        .metadata
        .get("tags")
        .and_then(|v| v.as_array())
        .map(|tags| {
            tags.iter()
                .map(|t| (field(t, "repository"), field(t, "tag")))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a record lists `repository:tag` in its per-batch `tags` list.
pub fn lists(entry: &AuditEntry, repository: &str, tag: &str) -> bool {
    entry
        .metadata
        .get("tags")
        .and_then(|v| v.as_array())
        .is_some_and(|tags| {
            tags.iter().any(|t| {
                t.get("repository").and_then(|v| v.as_str()) == Some(repository)
                    && t.get("tag").and_then(|v| v.as_str()) == Some(tag)
            })
        })
}

/// Whether an entry names `repository:tag`: in its tag field or its per-batch list.
pub fn names_tag(entry: &AuditEntry, repository: &str, tag: &str) -> bool {
    (entry.repository.as_deref() == Some(repository) && entry.tag.as_deref() == Some(tag))
        || (entry.tag.is_none() && lists(entry, repository, tag))
}

/// Whether an entry claims that `tag` became `to`.
fn claims(entry: &AuditEntry, tag: &TagRow, to: bool) -> bool {
    matches!(
        entry.kind,
        "tag_made_immutable_by_policy" | "change_tag_immutability"
    ) && entry.namespace == tag.namespace
        && names_tag(entry, &tag.repository, &tag.name)
        && entry.metadata.get("immutable").and_then(|v| v.as_bool()) == Some(to)
}

impl State {
    fn append(&mut self, entries: Vec<AuditEntry>) -> Vec<u64> {
        entries
            .into_iter()
            .map(|entry| self.log.append(entry).seq)
            .collect()
    }

    /// Records a real transition, linked to the first record of `seqs` that claims it.
    fn transition(&mut self, tag_idx: usize, from: bool, seqs: &[u64]) {
        let tag = &self.tags[tag_idx];
        let to = tag.immutable;
        let record_seq = seqs
            .iter()
            .copied()
            .find(|s| claims(&self.log.entries()[(*s - 1) as usize].entry, tag, to));
        self.transitions.push(Transition {
            tag_id: tag.id,
            from,
            to,
            record_seq,
        });
    }

    fn alive_idx(&self, id: u64) -> Option<usize> {
        let idx = self.tags.binary_search_by_key(&id, |t| t.id).ok()?;
        self.tags[idx].alive.then_some(idx)
    }

    /// Removes the alive tag at `idx`, noting whether it was immutable.
    fn remove(&mut self, idx: usize) {
        let tag = &mut self.tags[idx];
        tag.alive = false;
        self.removals.push(Removed {
            tag_id: tag.id,
            was_immutable: tag.immutable,
        });
    }

    /// Indexes the rows appended since the last call.
    fn catch_up(&mut self) {
        for idx in self.indexed..self.tags.len() {
            let t = &self.tags[idx];
            let key = (t.namespace.clone(), t.repository.clone(), t.name.clone());
            self.by_name.insert(key, idx);
        }
        self.indexed = self.tags.len();
    }

    /// The row of the alive tag `namespace/repository:name`, if there is one.
    pub fn alive_named(&self, namespace: &str, repository: &str, name: &str) -> Option<&TagRow> {
        let key = (
            namespace.to_string(),
            repository.to_string(),
            name.to_string(),
        );
        let idx = *self.by_name.get(&key)?;
        Some(&self.tags[idx]).filter(|t| t.alive)
    }

    /// Indices of the alive tags on a manifest.
    fn on_manifest(&self, namespace: &str, repository: &str, digest: &str) -> Vec<usize> {
        (0..self.tags.len())
            .filter(|&i| {
                let t = &self.tags[i];
                t.alive
                    && t.namespace == namespace
                    && t.repository == repository
                    && t.manifest_digest == digest
            })
            .collect()
    }

    /// Checks that `change` can be applied, without applying it.
    fn check(&self, change: &Change) -> Result<(), SinkError> {
        let alive = |id: u64| {
            self.alive_idx(id)
                .ok_or_else(|| SinkError::Conflict(format!("tag id {id} is no longer alive")))
        };
        match change {
            Change::PutTag {
                namespace,
                repository,
                name,
                replaces,
                policy_version,
                ..
            } => {
                if *policy_version != self.policy_version {
                    return Err(SinkError::Conflict(format!(
                        "the push of {name} was decided at policy version {policy_version}, the policies are at version {} now",
                        self.policy_version
                    )));
                }
                let current = self.alive_named(namespace, repository, name);
                if current.map(|t| t.id) != *replaces {
                    return Err(SinkError::Conflict(format!(
                        "tag {name} changed while the push was decided"
                    )));
                }
                if current.is_some_and(|t| t.immutable) {
                    return Err(SinkError::Conflict(format!(
                        "tag {name} became immutable while the push was decided"
                    )));
                }
            }
            Change::SetImmutable { tag_id, .. } => {
                alive(*tag_id)?;
            }
            Change::DeleteTags(ids) | Change::SetExpiration { tag_ids: ids, .. } => {
                for id in ids {
                    if self.tags[alive(*id)?].immutable {
                        return Err(SinkError::Conflict(format!(
                            "tag id {id} became immutable meanwhile"
                        )));
                    }
                }
            }
            Change::DeleteManifest {
                namespace,
                repository,
                digest,
                tag_ids,
            } => {
                let now: Vec<u64> = self
                    .on_manifest(namespace, repository, digest)
                    .into_iter()
                    .map(|i| self.tags[i].id)
                    .collect();
                let mut decided = tag_ids.clone();
                decided.sort_unstable();
                if now != decided {
                    return Err(SinkError::Conflict(format!(
                        "the tags on manifest {digest} changed while its delete was decided"
                    )));
                }
                for id in tag_ids {
                    if self.tags[alive(*id)?].immutable {
                        return Err(SinkError::Conflict(format!(
                            "tag id {id} on manifest {digest} became immutable meanwhile"
                        )));
                    }
                }
            }
            Change::InsertPolicy(p) if self.policies.iter().any(|x| x.uuid == p.uuid) => {
                return Err(SinkError::Conflict(format!(
                    "policy {} already exists",
                    p.uuid
                )));
            }
            Change::UpdatePolicy(p) if !self.policies.iter().any(|x| x.uuid == p.uuid) => {
                return Err(SinkError::Conflict(format!(
                    "policy {} does not exist",
                    p.uuid
                )));
            }
            _ => {}
        }
        Ok(())
    }

    fn apply(&mut self, change: Change, seqs: &[u64]) {
        match change {
            Change::PutTag {
                namespace,
                repository,
                name,
                manifest_digest,
                immutable,
                replaces,
                ..
            } => {
                if let Some(idx) = replaces.and_then(|id| self.alive_idx(id)) {
                    self.remove(idx);
                }
                let id = self.tags.last().map_or(1, |t| t.id + 1);
                self.tags.push(TagRow {
                    id,
                    namespace,
                    repository,
                    name,
                    manifest_digest,
                    immutable,
                    hidden: false,
                    alive: true,
                    expires_at: None,
                });
                if immutable {
                    self.transition(self.tags.len() - 1, false, seqs);
                }
            }
            Change::SetImmutable { tag_id, immutable } => {
                if let Some(idx) = self.alive_idx(tag_id) {
                    let from = self.tags[idx].immutable;
                    self.tags[idx].immutable = immutable;
                    if from != immutable {
                        self.transition(idx, from, seqs);
                    }
                }
            }
            Change::DeleteTags(ids) => {
                for id in ids {
                    if let Some(idx) = self.alive_idx(id) {
                        self.remove(idx);
                    }
                }
            }
            Change::DeleteManifest {
                namespace,
                repository,
                digest,
                ..
            } => {
                for idx in self.on_manifest(&namespace, &repository, &digest) {
                    self.remove(idx);
                }
            }
            Change::SetExpiration {
                tag_ids,
                expires_at,
            } => {
                for id in tag_ids {
                    if let Some(idx) = self.alive_idx(id) {
                        self.tags[idx].expires_at = Some(expires_at.clone());
                    }
                }
            }
            Change::InsertPolicy(p) => {
                self.policies.push(p);
                self.policy_version += 1;
            }
            Change::UpdatePolicy(p) => {
                if let Some(slot) = self.policies.iter_mut().find(|x| x.uuid == p.uuid) {
                    *slot = p;
                }
                self.policy_version += 1;
            }
            Change::DeletePolicy(uuid) => {
                self.policies.retain(|p| p.uuid != uuid);
                self.policy_version += 1;
            }
            _ => {}
        }
    }
}

impl Db {
    /// An empty database with no faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds mutable tags directly (test setup for large runs); returns their ids.
    pub fn seed_tags(
        &self,
        namespace: &str,
        repository: &str,
        names: impl IntoIterator<Item = String>,
    ) -> Vec<u64> {
        self.with(|state| {
            names
                .into_iter()
                .map(|name| {
                    let id = state.tags.last().map_or(1, |t| t.id + 1);
                    state.tags.push(TagRow {
                        id,
                        namespace: namespace.into(),
                        repository: repository.into(),
                        manifest_digest: format!("sha256:{id:064x}"),
                        name,
                        immutable: false,
                        hidden: false,
                        alive: true,
                        expires_at: None,
                    });
                    id
                })
                .collect()
        })
    }

    /// Runs `f` with the state locked (reads, test setup).
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.catch_up();
        f(&mut state)
    }
}

impl AuditSink for Db {
    fn commit(&self, change: Change, entries: Vec<AuditEntry>) -> Result<(), SinkError> {
        self.with(|state| {
            state.check(&change)?;
            if self.faults.write_fails(&self.faults.sink_down) {
                return Err(SinkError::Unavailable(
                    "audit log write failed (injected fault)".into(),
                ));
            }
            let seqs = state.append(entries);
            state.apply(change, &seqs);
            self.checkpoints.sign(&state.log);
            Ok(())
        })
    }
}

impl TagStore for Db {
    fn scan(&self, r: &ScanRequest) -> Result<Vec<Tag>, StoreError> {
        self.with(|state| {
            let start = state.tags.partition_point(|t| t.id <= r.after_id);
            Ok(state.tags[start..]
                .iter()
                .filter(|t| t.alive && !t.hidden && t.namespace == r.namespace)
                .filter(|t| {
                    r.repository
                        .as_ref()
                        .is_none_or(|repo| *repo == t.repository)
                })
                .take(r.limit as usize)
                .map(TagRow::to_tag)
                .collect())
        })
    }

    fn mark_immutable(&self, changes: Vec<MarkImmutable>) -> Result<Vec<u64>, StoreError> {
        self.faults.maybe_crash();
        self.with(|state| {
            if self.faults.write_fails(&self.faults.store_down) {
                return Err(StoreError("tag store write failed (injected fault)".into()));
            }
            let mut changed = Vec::new();
            for MarkImmutable { tag_id, entry } in changes {
                let Some(idx) = state.alive_idx(tag_id) else {
                    continue;
                };
                if state.tags[idx].immutable || state.tags[idx].hidden {
                    continue;
                }
                let seqs = state.append(vec![entry]);
                state.tags[idx].immutable = true;
                state.transition(idx, false, &seqs);
                changed.push(tag_id);
            }
            self.checkpoints.sign(&state.log);
            Ok(changed)
        })
    }

    fn mark_immutable_batch(&self, batch: MarkBatch) -> Result<Vec<u64>, StoreError> {
        self.faults.maybe_crash();
        self.with(|state| {
            if self.faults.write_fails(&self.faults.store_down) {
                return Err(StoreError("tag store write failed (injected fault)".into()));
            }
            let changing: Vec<(usize, u64)> = batch
                .tags
                .iter()
                .filter_map(|t| state.alive_idx(t.id).map(|idx| (idx, t.id)))
                .filter(|(idx, _)| !state.tags[*idx].immutable && !state.tags[*idx].hidden)
                .collect();
            let changed: Vec<u64> = changing.iter().map(|(_, id)| *id).collect();
            let Some(entry) = batch.narrowed(&changed) else {
                return Ok(changed);
            };
            let listed = listed_tags(&entry);
            let seq = state.append(vec![entry])[0];
            for (idx, id) in changing {
                state.tags[idx].immutable = true;
                let tag = &state.tags[idx];
                let claimed = listed.contains(&(tag.repository.clone(), tag.name.clone()));
                state.transitions.push(Transition {
                    tag_id: id,
                    from: false,
                    to: true,
                    record_seq: claimed.then_some(seq),
                });
            }
            self.checkpoints.sign(&state.log);
            Ok(changed)
        })
    }
}
