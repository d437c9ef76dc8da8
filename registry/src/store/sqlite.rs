//! The embedded default: SQLite in WAL mode. One connection behind a lock;
//! every commit and every mark batch is one `BEGIN IMMEDIATE` transaction that
//! applies the change, appends its entries to the hash chain and signs the new
//! head, or does none of it.

use super::{
    LogQuery, LogRow, ManifestRow, PolicyLock, RepositorySummary, RunRow, ServedPlugin, Storage,
    StorageError, entries_from, policy_from_row, policy_json,
};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tagguard_engine::audit::{
    ChainedEntry, Checkpoint, CheckpointKey, GENESIS_HASH, entry_hash, quay_log_line,
};
use tagguard_engine::{
    AuditEntry, AuditSink, Change, MarkBatch, MarkImmutable, Policy, ScanRequest, Scope, SinkError,
    StoreError, Tag, TagStore,
};

const SCHEMA: &str = include_str!("schema.sql");

/// The registry's SQLite database. One process serves it, so its policy lock is the
/// process's own.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    key: CheckpointKey,
    policies: Arc<LocalLock>,
}

/// A lock of one process that a guard may hold beyond any borrow: a flag and a
/// condition variable.
#[derive(Default)]
struct LocalLock {
    held: Mutex<bool>,
    freed: Condvar,
}

/// Holds a [`LocalLock`] until dropped.
struct LocalHold(Arc<LocalLock>);

impl LocalLock {
    fn take(lock: &Arc<LocalLock>, wait: bool) -> Option<PolicyLock> {
        let mut held = lock.held.lock().unwrap_or_else(|p| p.into_inner());
        while *held {
            if !wait {
                return None;
            }
            held = lock.freed.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        *held = true;
        Some(PolicyLock::new(LocalHold(lock.clone())))
    }
}

impl Drop for LocalHold {
    fn drop(&mut self) {
        *self.0.held.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.0.freed.notify_one();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A conflict: the state changed since the decision.
fn conflict(msg: impl Into<String>) -> SinkError {
    SinkError::Conflict(msg.into())
}

fn unavailable(e: impl std::fmt::Display) -> SinkError {
    SinkError::Unavailable(format!("database: {e}"))
}

const POLICY_SELECT: &str = "SELECT p.uuid, n.name, NULL, p.policy FROM namespaceimmutabilitypolicy p \
     JOIN namespace n ON n.id = p.namespace_id";
const REPO_POLICY_SELECT: &str = "SELECT p.uuid, n.name, r.name, p.policy FROM repositoryimmutabilitypolicy p \
     JOIN repository r ON r.id = p.repository_id JOIN namespace n ON n.id = r.namespace_id";

const TAG_SELECT: &str = "SELECT t.id, n.name, r.name, t.name, m.digest, t.immutable FROM tag t \
     JOIN repository r ON r.id = t.repository_id JOIN namespace n ON n.id = r.namespace_id \
     JOIN manifest m ON m.id = t.manifest_id";

fn tag_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Tag> {
    Ok(Tag {
        id: row.get::<_, i64>(0)? as u64,
        namespace: row.get(1)?,
        repository: row.get(2)?,
        name: row.get(3)?,
        manifest_digest: row.get(4)?,
        immutable: row.get(5)?,
    })
}

fn manifest_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ManifestRow> {
    Ok(ManifestRow {
        digest: row.get(0)?,
        media_type: row.get(1)?,
        bytes: row.get(2)?,
        subject: row.get(3)?,
        artifact_type: row.get(4)?,
    })
}

fn run_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: row.get(0)?,
        policy_uuid: row.get(1)?,
        namespace: row.get(2)?,
        repository: row.get(3)?,
        trigger: row.get(4)?,
        performer: row.get(5)?,
        status: row.get(6)?,
        engine_run_id: row.get(7)?,
        changed: row.get::<_, i64>(8)? as u64,
        started: row.get(9)?,
        finished: row.get(10)?,
        error: row.get(11)?,
        finished_by: row.get(12)?,
    })
}

const RUN_SELECT: &str = "SELECT id, policy_uuid, namespace, repository, trigger, performer, status, \
     engine_run_id, changed, started, finished, error, finished_by FROM retroactiverun";

/// Runs a statement through the connection's cache of prepared statements.
fn exec(c: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql)?.execute(p)
}

/// Reads one row through the connection's cache of prepared statements.
fn one<T>(
    c: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(p, f)
}

/// Id of the namespace row, created if missing.
fn namespace_id(tx: &Connection, ns: &str) -> rusqlite::Result<i64> {
    exec(
        tx,
        "INSERT OR IGNORE INTO namespace (name) VALUES (?1)",
        [ns],
    )?;
    one(tx, "SELECT id FROM namespace WHERE name = ?1", [ns], |r| {
        r.get(0)
    })
}

/// Id of the repository row, created (with its namespace) if missing.
fn repository_id(tx: &Connection, ns: &str, repo: &str) -> rusqlite::Result<i64> {
    let ns_id = namespace_id(tx, ns)?;
    exec(
        tx,
        "INSERT OR IGNORE INTO repository (namespace_id, name) VALUES (?1, ?2)",
        params![ns_id, repo],
    )?;
    one(
        tx,
        "SELECT id FROM repository WHERE namespace_id = ?1 AND name = ?2",
        params![ns_id, repo],
        |r| r.get(0),
    )
}

/// Id of an existing repository.
fn find_repository(tx: &Connection, ns: &str, repo: &str) -> rusqlite::Result<Option<i64>> {
    one(
        tx,
        "SELECT r.id FROM repository r JOIN namespace n ON n.id = r.namespace_id \
         WHERE n.name = ?1 AND r.name = ?2",
        params![ns, repo],
        |r| r.get(0),
    )
    .optional()
}

/// `(immutable, hidden)` of an alive tag, or `None`.
fn alive_state(tx: &Connection, id: u64) -> rusqlite::Result<Option<(bool, bool)>> {
    one(
        tx,
        "SELECT immutable, hidden FROM tag WHERE id = ?1 AND lifetime_end_ms IS NULL",
        [id as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

fn end_tag(tx: &Connection, id: u64) -> rusqlite::Result<()> {
    exec(
        tx,
        "UPDATE tag SET lifetime_end_ms = ?2 WHERE id = ?1 AND lifetime_end_ms IS NULL",
        params![id as i64, now_ms()],
    )?;
    Ok(())
}

fn policy_version(tx: &Connection) -> rusqlite::Result<u64> {
    Ok(tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'policy_version'",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

fn bump_policy_version(tx: &Connection) -> rusqlite::Result<()> {
    let next = policy_version(tx)? + 1;
    exec(
        tx,
        "INSERT INTO meta (key, value) VALUES ('policy_version', ?1) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [next.to_string()],
    )?;
    Ok(())
}

/// Whether every alive tag in `ids` is mutable; a conflict names the first that is not.
fn check_removable(tx: &Connection, ids: &[u64]) -> Result<(), SinkError> {
    for &id in ids {
        match alive_state(tx, id).map_err(unavailable)? {
            None => return Err(conflict(format!("tag id {id} is no longer alive"))),
            Some((true, _)) => {
                return Err(conflict(format!("tag id {id} became immutable meanwhile")));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, applies the schema, and uses
    /// `key` to sign checkpoints of the audit log.
    pub fn open(path: &Path, key: CheckpointKey) -> Result<Self, StorageError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(64);
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            key,
            policies: Arc::default(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction, committed only if it succeeds.
    fn write<T, E: From<rusqlite::Error>>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Appends entries to the chain and signs the new head; returns their seqs.
    fn append(&self, tx: &Connection, entries: Vec<AuditEntry>) -> rusqlite::Result<Vec<u64>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let (mut seq, mut prev): (u64, String) = tx
            .query_row(
                "SELECT id, hash FROM logentry3 ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .optional()?
            .unwrap_or((0, GENESIS_HASH.to_string()));
        let mut seqs = Vec::with_capacity(entries.len());
        for entry in entries {
            seq += 1;
            let hash = entry_hash(seq, &prev, &entry);
            let chained = ChainedEntry {
                seq,
                prev_hash: prev,
                hash,
                entry,
            };
            insert_log_row(tx, &chained)?;
            prev = chained.hash;
            seqs.push(seq);
        }
        let checkpoint = self.key.sign(seq, &prev);
        exec(
            tx,
            "INSERT INTO checkpoint (id, seq, head_hash, mac) VALUES (1, ?1, ?2, ?3) \
             ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, head_hash = excluded.head_hash, \
             mac = excluded.mac",
            params![checkpoint.seq as i64, checkpoint.head_hash, checkpoint.mac],
        )?;
        Ok(seqs)
    }

    /// Applies a change; a conflict leaves the transaction to be rolled back.
    fn apply(&self, tx: &Connection, change: Change) -> Result<(), SinkError> {
        match change {
            Change::None => Ok(()),
            Change::PutTag {
                namespace,
                repository,
                name,
                manifest_digest,
                immutable,
                replaces,
                policy_version: decided_at,
            } => {
                let now = policy_version(tx).map_err(unavailable)?;
                if decided_at != now {
                    return Err(conflict(format!(
                        "the push of {name} was decided at policy version {decided_at}, the policies are at version {now} now"
                    )));
                }
                let repo = repository_id(tx, &namespace, &repository).map_err(unavailable)?;
                let current: Option<(i64, bool)> = tx
                    .query_row(
                        "SELECT id, immutable FROM tag WHERE repository_id = ?1 AND name = ?2 \
                         AND lifetime_end_ms IS NULL",
                        params![repo, name],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(unavailable)?;
                if current.map(|c| c.0 as u64) != replaces {
                    return Err(conflict(format!(
                        "tag {name} changed while the push was decided"
                    )));
                }
                if current.is_some_and(|c| c.1) {
                    return Err(conflict(format!(
                        "tag {name} became immutable while the push was decided"
                    )));
                }
                let manifest: i64 = tx
                    .query_row(
                        "SELECT id FROM manifest WHERE repository_id = ?1 AND digest = ?2",
                        params![repo, manifest_digest],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(unavailable)?
                    .ok_or_else(|| {
                        conflict(format!("manifest {manifest_digest} is no longer stored"))
                    })?;
                if let Some((id, _)) = current {
                    end_tag(tx, id as u64).map_err(unavailable)?;
                }
                exec(tx,
                    "INSERT INTO tag (name, repository_id, manifest_id, lifetime_start_ms, immutable) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![name, repo, manifest, now_ms(), immutable],
                )
                .map_err(unavailable)?;
                Ok(())
            }
            Change::SetImmutable { tag_id, immutable } => {
                if alive_state(tx, tag_id).map_err(unavailable)?.is_none() {
                    return Err(conflict(format!("tag id {tag_id} is no longer alive")));
                }
                exec(
                    tx,
                    "UPDATE tag SET immutable = ?2 WHERE id = ?1",
                    params![tag_id as i64, immutable],
                )
                .map_err(unavailable)?;
                Ok(())
            }
            Change::DeleteTags(ids) => {
                check_removable(tx, &ids)?;
                for id in ids {
                    end_tag(tx, id).map_err(unavailable)?;
                }
                Ok(())
            }
            Change::SetExpiration {
                tag_ids,
                expires_at,
            } => {
                check_removable(tx, &tag_ids)?;
                for id in tag_ids {
                    exec(
                        tx,
                        "UPDATE tag SET expiration = ?2 WHERE id = ?1",
                        params![id as i64, expires_at],
                    )
                    .map_err(unavailable)?;
                }
                Ok(())
            }
            Change::DeleteManifest {
                namespace,
                repository,
                digest,
                tag_ids,
            } => {
                let Some(repo) =
                    find_repository(tx, &namespace, &repository).map_err(unavailable)?
                else {
                    return Err(conflict(format!(
                        "repository {namespace}/{repository} is gone"
                    )));
                };
                let mut now: Vec<u64> = tx
                    .prepare(
                        "SELECT t.id FROM tag t JOIN manifest m ON m.id = t.manifest_id \
                         WHERE m.repository_id = ?1 AND m.digest = ?2 AND t.lifetime_end_ms IS NULL",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![repo, digest], |r| r.get::<_, i64>(0))?
                            .map(|r| r.map(|id| id as u64))
                            .collect::<rusqlite::Result<Vec<u64>>>()
                    })
                    .map_err(unavailable)?;
                now.sort_unstable();
                let mut decided = tag_ids.clone();
                decided.sort_unstable();
                if now != decided {
                    return Err(conflict(format!(
                        "the tags on manifest {digest} changed while its delete was decided"
                    )));
                }
                check_removable(tx, &tag_ids)?;
                for id in tag_ids {
                    end_tag(tx, id).map_err(unavailable)?;
                }
                exec(
                    tx,
                    "DELETE FROM manifest WHERE repository_id = ?1 AND digest = ?2",
                    params![repo, digest],
                )
                .map_err(unavailable)?;
                Ok(())
            }
            Change::InsertPolicy(p) => {
                let exists: bool = tx
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM namespaceimmutabilitypolicy WHERE uuid = ?1) \
                         OR EXISTS (SELECT 1 FROM repositoryimmutabilitypolicy WHERE uuid = ?1)",
                        [&p.uuid],
                        |r| r.get(0),
                    )
                    .map_err(unavailable)?;
                if exists {
                    return Err(conflict(format!("policy {} already exists", p.uuid)));
                }
                let ns = namespace_id(tx, &p.namespace).map_err(unavailable)?;
                match &p.repository {
                    None => exec(
                        tx,
                        "INSERT INTO namespaceimmutabilitypolicy (uuid, namespace_id, policy) \
                         VALUES (?1, ?2, ?3)",
                        params![p.uuid, ns, policy_json(&p)],
                    ),
                    Some(repo) => {
                        let repo = repository_id(tx, &p.namespace, repo).map_err(unavailable)?;
                        exec(
                            tx,
                            "INSERT INTO repositoryimmutabilitypolicy \
                             (uuid, repository_id, namespace_id, policy) VALUES (?1, ?2, ?3, ?4)",
                            params![p.uuid, repo, ns, policy_json(&p)],
                        )
                    }
                }
                .map_err(unavailable)?;
                bump_policy_version(tx).map_err(unavailable)
            }
            Change::UpdatePolicy(p) => {
                let table = match p.scope {
                    Scope::Namespace => "namespaceimmutabilitypolicy",
                    Scope::Repository => "repositoryimmutabilitypolicy",
                };
                let n = tx
                    .execute(
                        &format!("UPDATE {table} SET policy = ?2 WHERE uuid = ?1"),
                        params![p.uuid, policy_json(&p)],
                    )
                    .map_err(unavailable)?;
                if n == 0 {
                    return Err(conflict(format!("policy {} does not exist", p.uuid)));
                }
                bump_policy_version(tx).map_err(unavailable)
            }
            Change::DeletePolicy(uuid) => {
                let mut n = 0;
                for table in [
                    "namespaceimmutabilitypolicy",
                    "repositoryimmutabilitypolicy",
                ] {
                    n += tx
                        .execute(&format!("DELETE FROM {table} WHERE uuid = ?1"), [&uuid])
                        .map_err(unavailable)?;
                }
                if n == 0 {
                    return Err(conflict(format!("policy {uuid} does not exist")));
                }
                bump_policy_version(tx).map_err(unavailable)
            }
            other => Err(SinkError::Unavailable(format!(
                "change {other:?} is not supported by this registry"
            ))),
        }
    }

    /// Adds `n` marked tags to the progress of the running run of `entry`'s policy.
    fn note_progress(tx: &Connection, entry: &AuditEntry, n: usize) -> rusqlite::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let (Some(policy), Some(run)) = (entry.meta_str("policy_uuid"), entry.meta_str("run_id"))
        else {
            return Ok(());
        };
        exec(
            tx,
            "UPDATE retroactiverun SET changed = changed + ?1, engine_run_id = ?2 \
             WHERE policy_uuid = ?3 AND status = 'running'",
            params![n as i64, run, policy],
        )?;
        let total: Option<i64> = tx
            .query_row(
                "SELECT changed FROM retroactiverun WHERE policy_uuid = ?1 AND status = 'running'",
                [policy],
                |r| r.get(0),
            )
            .optional()?;
        tracing::info!(
            policy,
            run,
            marked = total.unwrap_or(n as i64),
            "retroactive run progress"
        );
        Ok(())
    }
}

/// Inserts one chained entry into `logentry3`, with its Quay columns derived from it.
fn insert_log_row(tx: &Connection, chained: &ChainedEntry) -> rusqlite::Result<()> {
    let e = &chained.entry;
    exec(
        tx,
        "INSERT OR IGNORE INTO logentrykind (name) VALUES (?1)",
        [e.kind],
    )?;
    let kind: i64 = one(
        tx,
        "SELECT id FROM logentrykind WHERE name = ?1",
        [e.kind],
        |r| r.get(0),
    )?;
    let account = namespace_id(tx, &e.namespace)?;
    exec(
        tx,
        "INSERT OR IGNORE INTO user (username, kind) VALUES (?1, ?2)",
        params![e.performer.name, e.performer.kind],
    )?;
    let performer: i64 = one(
        tx,
        "SELECT id FROM user WHERE username = ?1",
        [&e.performer.name],
        |r| r.get(0),
    )?;
    let repository = match &e.repository {
        Some(repo) => Some(repository_id(tx, &e.namespace, repo)?),
        None => None,
    };
    let quay = quay_log_line(chained);
    let entry_json = serde_json::to_string(chained)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    exec(
        tx,
        "INSERT INTO logentry3 (id, kind_id, account_id, performer_id, repository_id, datetime, \
         ip, metadata_json, prev_hash, hash, entry_json) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            chained.seq as i64,
            kind,
            account,
            performer,
            repository,
            e.time,
            e.performer.ip,
            quay["metadata_json"].as_str().unwrap_or("{}"),
            chained.prev_hash,
            chained.hash,
            entry_json,
        ],
    )?;
    Ok(())
}

fn served_plugin(c: &Connection) -> rusqlite::Result<Option<ServedPlugin>> {
    one(
        c,
        "SELECT generation, digest, previous FROM servedplugin WHERE id = 1",
        [],
        |r| {
            Ok(ServedPlugin {
                generation: r.get::<_, i64>(0)? as u64,
                digest: r.get(1)?,
                previous: r.get(2)?,
            })
        },
    )
    .optional()
}

/// Makes `next` the served plugin, if it follows the stored one.
fn publish_plugin(tx: &Connection, next: &ServedPlugin) -> Result<(), SinkError> {
    let stored = served_plugin(tx).map_err(unavailable)?;
    next.check_follows(stored.as_ref())?;
    exec(
        tx,
        "INSERT INTO servedplugin (id, generation, digest, previous) VALUES (1, ?1, ?2, ?3) \
         ON CONFLICT(id) DO UPDATE SET generation = excluded.generation, \
         digest = excluded.digest, previous = excluded.previous",
        params![next.generation as i64, next.digest, next.previous],
    )
    .map_err(unavailable)?;
    Ok(())
}

impl AuditSink for SqliteStore {
    fn commit(&self, change: Change, entries: Vec<AuditEntry>) -> Result<(), SinkError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        self.apply(&tx, change)?;
        for next in entries.iter().filter_map(ServedPlugin::published_by) {
            publish_plugin(&tx, &next)?;
        }
        self.append(&tx, entries).map_err(unavailable)?;
        tx.commit().map_err(unavailable)
    }
}

impl TagStore for SqliteStore {
    fn scan(&self, r: &ScanRequest) -> Result<Vec<Tag>, StoreError> {
        let conn = self.conn();
        let sql = format!(
            "{TAG_SELECT} WHERE t.lifetime_end_ms IS NULL AND t.hidden = 0 AND t.id > ?1 \
             AND n.name = ?2 AND (?3 IS NULL OR r.name = ?3) ORDER BY t.id LIMIT ?4"
        );
        conn.prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_map(
                    params![r.after_id as i64, r.namespace, r.repository, r.limit],
                    tag_from_row,
                )?
                .collect()
            })
            .map_err(|e| StoreError(format!("database: {e}")))
    }

    fn mark_immutable(&self, changes: Vec<MarkImmutable>) -> Result<Vec<u64>, StoreError> {
        self.write(|tx| {
            let mut changed = Vec::new();
            let mut entries = Vec::new();
            for MarkImmutable { tag_id, entry } in changes {
                if alive_state(tx, tag_id)? != Some((false, false)) {
                    continue;
                }
                exec(
                    tx,
                    "UPDATE tag SET immutable = 1 WHERE id = ?1",
                    [tag_id as i64],
                )?;
                entries.push(entry);
                changed.push(tag_id);
            }
            if let Some(entry) = entries.first() {
                Self::note_progress(tx, entry, changed.len())?;
            }
            self.append(tx, entries)?;
            Ok::<_, rusqlite::Error>(changed)
        })
        .map_err(|e| StoreError(format!("database: {e}")))
    }

    fn mark_immutable_batch(&self, batch: MarkBatch) -> Result<Vec<u64>, StoreError> {
        self.write(|tx| {
            let mut changed = Vec::new();
            for t in &batch.tags {
                if alive_state(tx, t.id)? == Some((false, false)) {
                    changed.push(t.id);
                }
            }
            let Some(entry) = batch.narrowed(&changed) else {
                return Ok(changed);
            };
            for id in &changed {
                exec(
                    tx,
                    "UPDATE tag SET immutable = 1 WHERE id = ?1",
                    [*id as i64],
                )?;
            }
            Self::note_progress(tx, &entry, changed.len())?;
            self.append(tx, vec![entry])?;
            Ok::<_, rusqlite::Error>(changed)
        })
        .map_err(|e| StoreError(format!("database: {e}")))
    }
}

impl Storage for SqliteStore {
    fn blob_in_repository(
        &self,
        ns: &str,
        repo: &str,
        digest: &str,
    ) -> Result<Option<u64>, StorageError> {
        Ok(one(
                &self.conn(),
                "SELECT b.size FROM blob b JOIN repositoryblob rb ON rb.digest = b.digest \
                 JOIN repository r ON r.id = rb.repository_id JOIN namespace n ON n.id = r.namespace_id \
                 WHERE n.name = ?1 AND r.name = ?2 AND b.digest = ?3",
                params![ns, repo, digest],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|s| s as u64))
    }

    fn link_blob(&self, ns: &str, repo: &str, digest: &str, size: u64) -> Result<(), StorageError> {
        self.write(|tx| {
            let repo = repository_id(tx, ns, repo)?;
            exec(
                tx,
                "INSERT OR IGNORE INTO blob (digest, size) VALUES (?1, ?2)",
                params![digest, size as i64],
            )?;
            exec(
                tx,
                "INSERT OR IGNORE INTO repositoryblob (repository_id, digest) VALUES (?1, ?2)",
                params![repo, digest],
            )?;
            Ok::<_, StorageError>(())
        })
    }

    fn unlink_blob(&self, ns: &str, repo: &str, digest: &str) -> Result<bool, StorageError> {
        self.write(|tx| {
            let Some(repo) = find_repository(tx, ns, repo)? else {
                return Ok(false);
            };
            let n = exec(
                tx,
                "DELETE FROM repositoryblob WHERE repository_id = ?1 AND digest = ?2",
                params![repo, digest],
            )?;
            Ok::<_, StorageError>(n > 0)
        })
    }

    fn put_manifest(&self, ns: &str, repo: &str, m: &ManifestRow) -> Result<bool, StorageError> {
        self.write(|tx| {
            let repo = repository_id(tx, ns, repo)?;
            let n = exec(tx,
                "INSERT OR IGNORE INTO manifest (repository_id, digest, media_type, manifest_bytes, \
                 subject, artifact_type) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![repo, m.digest, m.media_type, m.bytes, m.subject, m.artifact_type],
            )?;
            Ok::<_, StorageError>(n > 0)
        })
    }

    fn manifest(
        &self,
        ns: &str,
        repo: &str,
        digest: &str,
    ) -> Result<Option<ManifestRow>, StorageError> {
        Ok(one(
            &self.conn(),
            "SELECT m.digest, m.media_type, m.manifest_bytes, m.subject, m.artifact_type \
                 FROM manifest m JOIN repository r ON r.id = m.repository_id \
                 JOIN namespace n ON n.id = r.namespace_id \
                 WHERE n.name = ?1 AND r.name = ?2 AND m.digest = ?3",
            params![ns, repo, digest],
            manifest_from_row,
        )
        .optional()?)
    }

    fn delete_untagged_manifest(
        &self,
        ns: &str,
        repo: &str,
        digest: &str,
    ) -> Result<bool, StorageError> {
        self.write(|tx| {
            let Some(repo) = find_repository(tx, ns, repo)? else {
                return Ok(false);
            };
            let n = exec(tx,
                "DELETE FROM manifest WHERE repository_id = ?1 AND digest = ?2 AND NOT EXISTS \
                 (SELECT 1 FROM tag t WHERE t.manifest_id = manifest.id AND t.lifetime_end_ms IS NULL)",
                params![repo, digest],
            )?;
            Ok::<_, StorageError>(n > 0)
        })
    }

    fn referrers(
        &self,
        ns: &str,
        repo: &str,
        digest: &str,
    ) -> Result<Vec<ManifestRow>, StorageError> {
        let conn = self.conn();
        let mut s = conn.prepare(
            "SELECT m.digest, m.media_type, m.manifest_bytes, m.subject, m.artifact_type \
             FROM manifest m JOIN repository r ON r.id = m.repository_id \
             JOIN namespace n ON n.id = r.namespace_id \
             WHERE n.name = ?1 AND r.name = ?2 AND m.subject = ?3 ORDER BY m.id",
        )?;
        let rows = s
            .query_map(params![ns, repo, digest], manifest_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn alive_tag(&self, ns: &str, repo: &str, name: &str) -> Result<Option<Tag>, StorageError> {
        let sql = format!(
            "{TAG_SELECT} WHERE n.name = ?1 AND r.name = ?2 AND t.name = ?3 \
             AND t.lifetime_end_ms IS NULL"
        );
        Ok(one(&self.conn(), &sql, params![ns, repo, name], tag_from_row).optional()?)
    }

    fn tags_on_manifest(
        &self,
        ns: &str,
        repo: &str,
        digest: &str,
    ) -> Result<Vec<Tag>, StorageError> {
        let sql = format!(
            "{TAG_SELECT} WHERE n.name = ?1 AND r.name = ?2 AND m.digest = ?3 \
             AND t.lifetime_end_ms IS NULL ORDER BY t.id"
        );
        let conn = self.conn();
        let mut s = conn.prepare(&sql)?;
        let rows = s
            .query_map(params![ns, repo, digest], tag_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn tag_names(
        &self,
        ns: &str,
        repo: &str,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(
            "SELECT t.name FROM tag t JOIN repository r ON r.id = t.repository_id \
             JOIN namespace n ON n.id = r.namespace_id \
             WHERE n.name = ?1 AND r.name = ?2 AND t.lifetime_end_ms IS NULL AND t.hidden = 0 \
             AND (?3 IS NULL OR t.name > ?3) ORDER BY t.name LIMIT ?4",
        )?;
        let rows = s
            .query_map(params![ns, repo, last, limit as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(rows)
    }

    fn alive_tags(&self, ns: &str, repo: &str) -> Result<Vec<Tag>, StorageError> {
        let sql = format!(
            "{TAG_SELECT} WHERE n.name = ?1 AND r.name = ?2 AND t.lifetime_end_ms IS NULL \
             AND t.hidden = 0 ORDER BY t.name"
        );
        let conn = self.conn();
        let mut s = conn.prepare_cached(&sql)?;
        let rows = s
            .query_map(params![ns, repo], tag_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn repository_exists(&self, ns: &str, repo: &str) -> Result<bool, StorageError> {
        Ok(find_repository(&self.conn(), ns, repo)?.is_some())
    }

    fn catalog(&self, last: Option<&str>, limit: usize) -> Result<Vec<String>, StorageError> {
        let conn = self.conn();
        let mut s = conn.prepare(
            "SELECT full FROM (SELECT n.name || '/' || r.name AS full FROM repository r \
             JOIN namespace n ON n.id = r.namespace_id) \
             WHERE ?1 IS NULL OR full > ?1 ORDER BY full LIMIT ?2",
        )?;
        let rows = s
            .query_map(params![last, limit as i64], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(rows)
    }

    fn repositories(&self) -> Result<Vec<RepositorySummary>, StorageError> {
        let conn = self.conn();
        let mut s = conn.prepare(
            "SELECT n.name, r.name, \
             (SELECT COUNT(*) FROM tag t WHERE t.repository_id = r.id AND t.lifetime_end_ms IS NULL), \
             (SELECT COUNT(*) FROM tag t WHERE t.repository_id = r.id AND t.lifetime_end_ms IS NULL \
              AND t.immutable = 1) \
             FROM repository r JOIN namespace n ON n.id = r.namespace_id ORDER BY n.name, r.name",
        )?;
        let rows = s
            .query_map([], |r| {
                Ok(RepositorySummary {
                    namespace: r.get(0)?,
                    repository: r.get(1)?,
                    tags: r.get::<_, i64>(2)? as u64,
                    immutable: r.get::<_, i64>(3)? as u64,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn policies_in_scope(
        &self,
        ns: &str,
        repo: Option<&str>,
    ) -> Result<(Vec<Policy>, u64), StorageError> {
        let conn = self.conn();
        let version = policy_version(&conn)?;
        let mut policies = Vec::new();
        let mut read = |sql: String, args: &[&dyn rusqlite::ToSql]| -> Result<(), StorageError> {
            let mut s = conn.prepare_cached(&sql)?;
            let rows = s
                .query_map(args, |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?))
                })?
                .collect::<rusqlite::Result<Vec<(String, String, Option<String>, String)>>>()?;
            for (uuid, n, r, json) in rows {
                policies.push(policy_from_row(uuid, n, r, &json)?);
            }
            Ok(())
        };
        read(
            format!("{POLICY_SELECT} WHERE n.name = ?1 ORDER BY p.id"),
            &[&ns],
        )?;
        if let Some(repo) = repo {
            read(
                format!("{REPO_POLICY_SELECT} WHERE n.name = ?1 AND r.name = ?2 ORDER BY p.id"),
                &[&ns, &repo],
            )?;
        }
        Ok((policies, version))
    }

    fn namespace_policies(&self, ns: &str) -> Result<Vec<Policy>, StorageError> {
        let (mut all, _) = self.policies_in_scope(ns, None)?;
        let conn = self.conn();
        let mut s = conn.prepare(&format!(
            "{REPO_POLICY_SELECT} WHERE n.name = ?1 ORDER BY p.id"
        ))?;
        let rows = s
            .query_map([ns], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?))
            })?
            .collect::<rusqlite::Result<Vec<(String, String, Option<String>, String)>>>()?;
        for (uuid, n, r, json) in rows {
            all.push(policy_from_row(uuid, n, r, &json)?);
        }
        Ok(all)
    }

    fn policy(&self, uuid: &str) -> Result<Option<Policy>, StorageError> {
        let conn = self.conn();
        for sql in [POLICY_SELECT, REPO_POLICY_SELECT] {
            let row = conn
                .query_row(&format!("{sql} WHERE p.uuid = ?1"), [uuid], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?))
                })
                .optional()?;
            if let Some((uuid, n, r, json)) = row {
                return policy_from_row(uuid, n, r, &json).map(Some);
            }
        }
        Ok(None)
    }

    fn log(&self, q: &LogQuery) -> Result<Vec<ChainedEntry>, StorageError> {
        let conn = self.conn();
        // Pages newer than a seq are read oldest first, then turned around.
        let order = if q.after_seq.is_some() { "ASC" } else { "DESC" };
        let mut s = conn.prepare_cached(&format!(
            "SELECT l.id, l.entry_json FROM logentry3 l JOIN namespace n ON n.id = l.account_id \
             JOIN logentrykind k ON k.id = l.kind_id \
             LEFT JOIN repository r ON r.id = l.repository_id \
             LEFT JOIN user u ON u.id = l.performer_id \
             WHERE (?1 IS NULL OR n.name = ?1) AND (?2 IS NULL OR r.name = ?2) \
             AND (?3 IS NULL OR l.id < ?3) AND (?4 IS NULL OR l.datetime >= ?4) \
             AND (?5 IS NULL OR l.datetime < ?5) AND (?7 IS NULL OR k.name = ?7) \
             AND (?8 IS NULL OR l.id > ?8) \
             AND (?9 IS NULL OR json_extract(l.metadata_json, '$.tag') = ?9) \
             AND (?10 IS NULL OR u.username = ?10) \
             ORDER BY l.id {order} LIMIT ?6"
        ))?;
        let mut rows = s
            .query_map(
                params![
                    q.namespace,
                    q.repository,
                    q.before_seq.map(|s| s as i64),
                    q.start_time,
                    q.end_time,
                    q.limit as i64,
                    q.kind,
                    q.after_seq.map(|s| s as i64),
                    q.tag,
                    q.performer
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<rusqlite::Result<Vec<(i64, String)>>>()?;
        drop(s);
        drop(conn);
        if q.after_seq.is_some() {
            rows.reverse();
        }
        entries_from(rows)
    }

    fn tag_log(&self, ns: &str, repo: &str, tag: &str) -> Result<Vec<ChainedEntry>, StorageError> {
        let conn = self.conn();
        let mut s = conn.prepare_cached(
            "SELECT l.id, l.entry_json FROM logentry3 l JOIN namespace n ON n.id = l.account_id \
             LEFT JOIN repository r ON r.id = l.repository_id \
             WHERE n.name = ?1 AND (r.name IS NULL OR r.name = ?2) \
             AND l.metadata_json LIKE ?3 ORDER BY l.id",
        )?;
        let needle = format!("%\"tag\":{}%", serde_json::Value::from(tag));
        let rows = s
            .query_map(params![ns, repo, needle], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<(i64, String)>>>()?;
        drop(s);
        drop(conn);
        entries_from(rows)
    }

    fn full_log(&self) -> Result<Vec<ChainedEntry>, StorageError> {
        let conn = self.conn();
        let mut s = conn.prepare(
            "SELECT l.id, l.entry_json, k.name, n.name, l.datetime, l.ip, l.metadata_json, \
             l.prev_hash, l.hash FROM logentry3 l JOIN logentrykind k ON k.id = l.kind_id \
             JOIN namespace n ON n.id = l.account_id ORDER BY l.id",
        )?;
        type Row = (
            i64,
            String,
            String,
            String,
            String,
            Option<String>,
            String,
            String,
            String,
        );
        let rows = s
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<Row>>>()?;
        drop(s);
        drop(conn);
        rows.into_iter()
            .map(
                |(
                    seq,
                    entry_json,
                    kind,
                    namespace,
                    datetime,
                    ip,
                    metadata_json,
                    prev_hash,
                    hash,
                )| {
                    LogRow {
                        seq,
                        entry_json,
                        kind,
                        namespace,
                        datetime,
                        ip,
                        metadata_json,
                        prev_hash,
                        hash,
                    }
                    .checked()
                },
            )
            .collect()
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StorageError> {
        Ok(one(
            &self.conn(),
            "SELECT seq, head_hash, mac FROM checkpoint WHERE id = 1",
            [],
            |r| {
                Ok(Checkpoint {
                    seq: r.get::<_, i64>(0)? as u64,
                    head_hash: r.get(1)?,
                    mac: r.get(2)?,
                })
            },
        )
        .optional()?
        .into_iter()
        .collect())
    }

    fn start_run(
        &self,
        policy: &Policy,
        trigger: &str,
        performer: &str,
    ) -> Result<i64, StorageError> {
        self.write(|tx| {
            exec(tx,
                "INSERT INTO retroactiverun (policy_uuid, namespace, repository, trigger, performer, \
                 status, started) VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
                params![
                    policy.uuid,
                    policy.namespace,
                    policy.repository,
                    trigger,
                    performer,
                    tagguard_engine::utc::now()
                ],
            )?;
            Ok::<_, StorageError>(tx.last_insert_rowid())
        })
    }

    fn end_run(
        &self,
        id: i64,
        status: &str,
        engine_run_id: Option<&str>,
        changed: u64,
        error: Option<&str>,
    ) -> Result<(), StorageError> {
        self.write(|tx| {
            exec(tx,
                "UPDATE retroactiverun SET status = ?2, engine_run_id = COALESCE(?3, engine_run_id), \
                 changed = ?4, finished = ?5, error = ?6 WHERE id = ?1",
                params![
                    id,
                    status,
                    engine_run_id,
                    changed as i64,
                    tagguard_engine::utc::now(),
                    error
                ],
            )?;
            Ok::<_, StorageError>(())
        })
    }

    fn drop_run(&self, id: i64) -> Result<(), StorageError> {
        self.write(|tx| {
            exec(tx, "DELETE FROM retroactiverun WHERE id = ?1", [id])?;
            Ok::<_, StorageError>(())
        })
    }

    fn finish_run_by(&self, id: i64, by: i64, changed: u64) -> Result<(), StorageError> {
        self.write(|tx| {
            exec(
                tx,
                "UPDATE retroactiverun SET status = 'completed', finished_by = ?2, \
                 changed = changed + ?3, finished = COALESCE(finished, ?4) WHERE id = ?1",
                params![id, by, changed as i64, tagguard_engine::utc::now()],
            )?;
            Ok::<_, StorageError>(())
        })
    }

    fn interrupt_runs(&self) -> Result<u64, StorageError> {
        self.write(|tx| {
            let n = exec(
                tx,
                "UPDATE retroactiverun SET status = 'incomplete', \
                 error = 'the registry stopped while the run was going' WHERE status = 'running'",
                [],
            )?;
            Ok::<_, StorageError>(n as u64)
        })
    }

    fn runs(&self) -> Result<Vec<RunRow>, StorageError> {
        let conn = self.conn();
        let mut s = conn.prepare(&format!("{RUN_SELECT} ORDER BY id DESC"))?;
        let rows = s
            .query_map([], run_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn run(&self, id: i64) -> Result<Option<RunRow>, StorageError> {
        Ok(one(
            &self.conn(),
            &format!("{RUN_SELECT} WHERE id = ?1"),
            [id],
            run_from_row,
        )
        .optional()?)
    }

    fn put_plugin(&self, digest: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.write(|tx| {
            exec(
                tx,
                "INSERT OR IGNORE INTO plugincomponent (digest, component) VALUES (?1, ?2)",
                params![digest, bytes],
            )?;
            Ok::<_, StorageError>(())
        })
    }

    fn plugin_component(&self, digest: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(one(
            &self.conn(),
            "SELECT component FROM plugincomponent WHERE digest = ?1",
            [digest],
            |r| r.get(0),
        )
        .optional()?)
    }

    fn served_plugin(&self) -> Result<Option<ServedPlugin>, StorageError> {
        Ok(served_plugin(&self.conn())?)
    }

    fn lock_policies(&self) -> Result<PolicyLock, StorageError> {
        LocalLock::take(&self.policies, true)
            .ok_or_else(|| StorageError::Database("the policy lock was not taken".into()))
    }

    fn try_lock_policies(&self) -> Result<Option<PolicyLock>, StorageError> {
        Ok(LocalLock::take(&self.policies, false))
    }

    fn healthy(&self) -> bool {
        one(&self.conn(), "SELECT 1", [], |r| r.get::<_, i64>(0)).is_ok()
    }
}
