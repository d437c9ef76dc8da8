//! PostgreSQL, for several registry replicas on one database. The sync
//! `postgres` client, called on blocking threads (it panics on a runtime
//! thread), through a small bounded pool of connections.
//!
//! Every `AuditSink::commit` and every mark batch is one READ COMMITTED
//! transaction that locks, explicitly, the rows its decision depends on:
//!
//! - The audit chain is decided in the database: the single row of
//!   `chainhead` holds the head's seq and hash. A transaction that appends
//!   entries locks it first (`FOR UPDATE`), numbers its entries on from it and
//!   moves it, so appends from every process form one gapless chain.
//! - The policy-set version (`meta` row `policy_version`) is read `FOR SHARE`
//!   by a push and locked `FOR UPDATE` (then incremented) by a policy change:
//!   a push waits for a policy change in flight and then sees its version.
//! - The rows a change depends on (the alive tag a push replaces, the tags a
//!   removal or a mark reads, the manifest a push points to or a delete
//!   removes) are read `FOR UPDATE` or `FOR SHARE`, so that a concurrent change
//!   is waited for and then seen.
//!
//! Lock order, the same in every transaction, so that two of them never wait on
//! each other: chain head, then the policy version, then manifest rows, then
//! tag rows (several tags in id order).

use super::{
    LogQuery, LogRow, ManifestRow, PolicyLock, RepositorySummary, RunRow, ServedPlugin, Storage,
    StorageError, entries_from, policy_from_row, policy_json,
};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, GenericClient, IsolationLevel, NoTls, Row, Statement, Transaction};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tagguard_engine::audit::{
    ChainedEntry, Checkpoint, CheckpointKey, GENESIS_HASH, entry_hash, quay_log_line,
};
use tagguard_engine::{
    AuditEntry, AuditSink, Change, MarkBatch, MarkImmutable, Policy, ScanRequest, Scope, SinkError,
    StoreError, Tag, TagStore,
};

const SCHEMA: &str = include_str!("schema_pg.sql");

/// Key of the transaction-level advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x7467_5f6d_6967_7261;

/// Key of the session-level advisory lock that policy changes and retroactive runs
/// hold ([`Storage::lock_policies`]).
const POLICY_LOCK: i64 = 0x7467_5f70_6f6c_6963;

/// How many connections a store opens at most, unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// How long a caller waits for a free connection before the store fails.
const POOL_WAIT: Duration = Duration::from_secs(30);

type PgResult<T> = Result<T, postgres::Error>;
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl From<postgres::Error> for StorageError {
    fn from(e: postgres::Error) -> Self {
        StorageError::Database(e.to_string())
    }
}

/// A bounded pool of connections: idle clients are reused, new ones are opened
/// on demand up to `max`, and a client whose connection broke is dropped.
struct Pool {
    config: Config,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Conn>,
    open: usize,
}

/// A connection and the statements prepared on it, by SQL text: a statement is parsed
/// and planned once per connection, and then each use is one round trip.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// At most this many statements are kept per connection (the store's SQL is a fixed
/// set; the bound only guards against a growing one).
const MAX_STATEMENTS: usize = 256;

/// A connection, or a transaction on one, that runs SQL through the connection's
/// prepared statements.
struct Db<'a, C: GenericClient> {
    c: &'a mut C,
    statements: &'a mut HashMap<String, Statement>,
}

/// A transaction with its connection's prepared statements.
type Tx<'a, 't> = Db<'a, Transaction<'t>>;

impl<'a> Db<'a, Client> {
    /// A pooled connection, outside any transaction.
    fn on(conn: &'a mut Conn) -> Self {
        Db {
            c: &mut conn.client,
            statements: &mut conn.statements,
        }
    }
}

impl<C: GenericClient> Db<'_, C> {
    fn prepared(&mut self, sql: &str) -> PgResult<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.c.prepare(sql)?;
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    fn query(&mut self, sql: &str, params: Params<'_>) -> PgResult<Vec<Row>> {
        let s = self.prepared(sql)?;
        self.c.query(&s, params)
    }

    fn query_one(&mut self, sql: &str, params: Params<'_>) -> PgResult<Row> {
        let s = self.prepared(sql)?;
        self.c.query_one(&s, params)
    }

    fn query_opt(&mut self, sql: &str, params: Params<'_>) -> PgResult<Option<Row>> {
        let s = self.prepared(sql)?;
        self.c.query_opt(&s, params)
    }

    fn execute(&mut self, sql: &str, params: Params<'_>) -> PgResult<u64> {
        let s = self.prepared(sql)?;
        self.c.execute(&s, params)
    }
}

/// A connection taken from the pool, returned to it on drop.
struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Pool {
    fn state(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle client, a new one if fewer than `max` are open, or the next one
    /// returned (waiting at most [`POOL_WAIT`]).
    fn take(&self) -> Result<Pooled<'_>, StorageError> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut state = self.state();
        loop {
            while let Some(client) = state.idle.pop() {
                if client.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Pooled {
                    pool: self,
                    conn: Some(client),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.config.connect(NoTls) {
                    Ok(client) => Ok(Pooled {
                        pool: self,
                        conn: Some(Conn {
                            client,
                            statements: HashMap::new(),
                        }),
                    }),
                    Err(e) => {
                        self.state().open -= 1;
                        self.freed.notify_one();
                        Err(e.into())
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StorageError::Database(format!(
                    "no database connection free within {} s ({} open)",
                    POOL_WAIT.as_secs(),
                    self.max
                )));
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.state().idle);
        off_runtime(move || drop(idle));
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(client) = self.conn.take() else {
            return;
        };
        let mut state = self.pool.state();
        if client.client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push(client);
        }
        drop(state);
        self.pool.freed.notify_one();
    }
}

impl Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a pooled client is present until dropped")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("a pooled client is present until dropped")
    }
}

/// The registry's PostgreSQL database, shared by any number of replicas.
pub struct PostgresStore {
    pool: Pool,
    key: CheckpointKey,
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

/// Whether deciding again may succeed: a serialization failure or a deadlock.
fn is_retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// A database failure as the engine sees it: a serialization failure or a
/// deadlock is a conflict (decide again), anything else makes the sink unavailable.
fn sink(e: postgres::Error) -> SinkError {
    if is_retryable(&e) {
        SinkError::Conflict(format!("database: {e}"))
    } else {
        SinkError::Unavailable(format!("database: {e}"))
    }
}

fn store_err(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("database: {e}"))
}

/// Whether `e` is a unique violation of the index `constraint`.
fn violates(e: &postgres::Error, constraint: &str) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
        && e.as_db_error().and_then(|d| d.constraint()) == Some(constraint)
}

const POLICY_SELECT: &str = "SELECT p.uuid, n.name, NULL::text, p.policy FROM namespaceimmutabilitypolicy p \
     JOIN namespace n ON n.id = p.namespace_id";
const REPO_POLICY_SELECT: &str = "SELECT p.uuid, n.name, r.name, p.policy FROM repositoryimmutabilitypolicy p \
     JOIN repository r ON r.id = p.repository_id JOIN namespace n ON n.id = r.namespace_id";

const TAG_SELECT: &str = "SELECT t.id, n.name, r.name, t.name, m.digest, t.immutable FROM tag t \
     JOIN repository r ON r.id = t.repository_id JOIN namespace n ON n.id = r.namespace_id \
     JOIN manifest m ON m.id = t.manifest_id";

const RUN_SELECT: &str = "SELECT id, policy_uuid, namespace, repository, trigger, performer, status, \
     engine_run_id, changed, started, finished, error, finished_by FROM retroactiverun";

const MANIFEST_COLUMNS: &str =
    "m.digest, m.media_type, m.manifest_bytes, m.subject, m.artifact_type";

fn tag_from_row(row: &Row) -> PgResult<Tag> {
    Ok(Tag {
        id: row.try_get::<_, i64>(0)? as u64,
        namespace: row.try_get(1)?,
        repository: row.try_get(2)?,
        name: row.try_get(3)?,
        manifest_digest: row.try_get(4)?,
        immutable: row.try_get(5)?,
    })
}

fn manifest_from_row(row: &Row) -> PgResult<ManifestRow> {
    Ok(ManifestRow {
        digest: row.try_get(0)?,
        media_type: row.try_get(1)?,
        bytes: row.try_get(2)?,
        subject: row.try_get(3)?,
        artifact_type: row.try_get(4)?,
    })
}

fn run_from_row(row: &Row) -> PgResult<RunRow> {
    Ok(RunRow {
        id: row.try_get(0)?,
        policy_uuid: row.try_get(1)?,
        namespace: row.try_get(2)?,
        repository: row.try_get(3)?,
        trigger: row.try_get(4)?,
        performer: row.try_get(5)?,
        status: row.try_get(6)?,
        engine_run_id: row.try_get(7)?,
        changed: row.try_get::<_, i64>(8)? as u64,
        started: row.try_get(9)?,
        finished: row.try_get(10)?,
        error: row.try_get(11)?,
        finished_by: row.try_get(12)?,
    })
}

fn policy_rows(rows: Vec<Row>, out: &mut Vec<Policy>) -> Result<(), StorageError> {
    for row in rows {
        let json: String = row.try_get(3)?;
        out.push(policy_from_row(
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            &json,
        )?);
    }
    Ok(())
}

/// The id `find` reads, after `insert` (`ON CONFLICT DO NOTHING`) when the row is
/// missing: read first, because the row almost always exists. `find` takes the first
/// of `params`.
fn find_or_insert(
    c: &mut Db<'_, impl GenericClient>,
    find: &str,
    insert: &str,
    params: Params<'_>,
) -> PgResult<i64> {
    if let Some(row) = c.query_opt(find, &params[..1])? {
        return row.try_get(0);
    }
    c.execute(insert, params)?;
    c.query_one(find, &params[..1])?.try_get(0)
}

/// Id of the namespace row, created if missing.
fn namespace_id(c: &mut Db<'_, impl GenericClient>, ns: &str) -> PgResult<i64> {
    find_or_insert(
        c,
        "SELECT id FROM namespace WHERE name = $1",
        "INSERT INTO namespace (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        &[&ns],
    )
}

/// Id of the repository row, created (with its namespace) if missing (read first:
/// it almost always exists).
fn repository_id(c: &mut Db<'_, impl GenericClient>, ns: &str, repo: &str) -> PgResult<i64> {
    if let Some(id) = find_repository(c, ns, repo)? {
        return Ok(id);
    }
    let ns_id = namespace_id(c, ns)?;
    c.execute(
        "INSERT INTO repository (namespace_id, name) VALUES ($1, $2) \
         ON CONFLICT (namespace_id, name) DO NOTHING",
        &[&ns_id, &repo],
    )?;
    c.query_one(
        "SELECT id FROM repository WHERE namespace_id = $1 AND name = $2",
        &[&ns_id, &repo],
    )?
    .try_get(0)
}

/// Id of an existing repository.
fn find_repository(
    c: &mut Db<'_, impl GenericClient>,
    ns: &str,
    repo: &str,
) -> PgResult<Option<i64>> {
    c.query_opt(
        "SELECT r.id FROM repository r JOIN namespace n ON n.id = r.namespace_id \
         WHERE n.name = $1 AND r.name = $2",
        &[&ns, &repo],
    )?
    .map(|r| r.try_get(0))
    .transpose()
}

/// Locks the tag rows `ids` (alive or not), in id order: the order every
/// transaction takes tag locks in.
fn lock_tags(tx: &mut Tx<'_, '_>, ids: &[u64]) -> PgResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
    tx.query(
        "SELECT id FROM tag WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&ids],
    )?;
    Ok(())
}

/// `(immutable, hidden)` of an alive tag, or `None`; the row stays locked until
/// the transaction ends.
fn alive_state(tx: &mut Tx<'_, '_>, id: u64) -> PgResult<Option<(bool, bool)>> {
    tx.query_opt(
        "SELECT immutable, hidden FROM tag WHERE id = $1 AND lifetime_end_ms IS NULL FOR UPDATE",
        &[&(id as i64)],
    )?
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .transpose()
}

fn end_tag(tx: &mut Tx<'_, '_>, id: u64) -> PgResult<()> {
    tx.execute(
        "UPDATE tag SET lifetime_end_ms = $2 WHERE id = $1 AND lifetime_end_ms IS NULL",
        &[&(id as i64), &now_ms()],
    )?;
    Ok(())
}

/// The policy-set version, read with `lock` (`FOR SHARE`, `FOR UPDATE`, or nothing).
fn policy_version(c: &mut Db<'_, impl GenericClient>, lock: &str) -> PgResult<u64> {
    let row = c.query_opt(
        &format!("SELECT value FROM meta WHERE key = 'policy_version' {lock}"),
        &[],
    )?;
    Ok(match row {
        Some(r) => r.try_get::<_, String>(0)?.parse().unwrap_or(0),
        None => 0,
    })
}

/// Locks the policy version for a policy change (which [`bump_policy_version`] ends).
fn lock_policy_version(tx: &mut Tx<'_, '_>) -> PgResult<()> {
    policy_version(tx, "FOR UPDATE").map(drop)
}

fn bump_policy_version(tx: &mut Tx<'_, '_>) -> PgResult<()> {
    let next = policy_version(tx, "FOR UPDATE")? + 1;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('policy_version', $1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&next.to_string()],
    )?;
    Ok(())
}

/// Whether every alive tag in `ids` is mutable; a conflict names the first that is not.
fn check_removable(tx: &mut Tx<'_, '_>, ids: &[u64]) -> Result<(), SinkError> {
    lock_tags(tx, ids).map_err(sink)?;
    for &id in ids {
        match alive_state(tx, id).map_err(sink)? {
            None => return Err(conflict(format!("tag id {id} is no longer alive"))),
            Some((true, _)) => {
                return Err(conflict(format!("tag id {id} became immutable meanwhile")));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Locks the chain head and reads it: the first statement of every transaction
/// that appends entries. Taking it first in all of them is the lock order that
/// rules out deadlocks between appending transactions, and it makes them append
/// one after another, each on the head the previous one left.
fn lock_head(tx: &mut Tx<'_, '_>) -> PgResult<(u64, String)> {
    let row = tx.query_one(
        "SELECT seq, hash FROM chainhead WHERE id = 1 FOR UPDATE",
        &[],
    )?;
    Ok((row.try_get::<_, i64>(0)? as u64, row.try_get(1)?))
}

/// Inserts one chained entry into `logentry3`, with its Quay columns derived from it.
fn insert_log_row(tx: &mut Tx<'_, '_>, chained: &ChainedEntry) -> PgResult<()> {
    let e = &chained.entry;
    let kind_name: &str = e.kind;
    let kind = find_or_insert(
        tx,
        "SELECT id FROM logentrykind WHERE name = $1",
        "INSERT INTO logentrykind (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
        &[&kind_name],
    )?;
    let account = namespace_id(tx, &e.namespace)?;
    let performer_kind: &str = e.performer.kind;
    let performer = find_or_insert(
        tx,
        "SELECT id FROM \"user\" WHERE username = $1",
        "INSERT INTO \"user\" (username, kind) VALUES ($1, $2) ON CONFLICT (username) DO NOTHING",
        &[&e.performer.name, &performer_kind],
    )?;
    let repository = match &e.repository {
        Some(repo) => Some(repository_id(tx, &e.namespace, repo)?),
        None => None,
    };
    let quay = quay_log_line(chained);
    // A chained entry always serialises; should it not, the row is stored empty and
    // reads back as an edited row rather than being lost silently.
    let entry_json = serde_json::to_string(chained).unwrap_or_default();
    tx.execute(
        "INSERT INTO logentry3 (id, kind_id, account_id, performer_id, repository_id, datetime, \
         ip, metadata_json, prev_hash, hash, entry_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &(chained.seq as i64),
            &kind,
            &account,
            &performer,
            &repository,
            &e.time,
            &e.performer.ip,
            &quay["metadata_json"].as_str().unwrap_or("{}"),
            &chained.prev_hash,
            &chained.hash,
            &entry_json,
        ],
    )?;
    Ok(())
}

/// The plugin the database says serves, read with `lock` (`FOR UPDATE` or nothing).
fn served_plugin(c: &mut Db<'_, impl GenericClient>, lock: &str) -> PgResult<Option<ServedPlugin>> {
    c.query_opt(
        &format!("SELECT generation, digest, previous FROM servedplugin WHERE id = 1 {lock}"),
        &[],
    )?
    .map(|r| {
        Ok(ServedPlugin {
            generation: r.try_get::<_, i64>(0)? as u64,
            digest: r.try_get(1)?,
            previous: r.try_get(2)?,
        })
    })
    .transpose()
}

/// Makes `next` the served plugin, if it follows the stored one. Only appending
/// transactions call it, after the chain head: swaps commit one at a time.
fn publish_plugin(tx: &mut Tx<'_, '_>, next: &ServedPlugin) -> Result<(), SinkError> {
    let stored = served_plugin(tx, "FOR UPDATE").map_err(sink)?;
    next.check_follows(stored.as_ref())?;
    tx.execute(
        "INSERT INTO servedplugin (id, generation, digest, previous) VALUES (1, $1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET generation = excluded.generation, \
         digest = excluded.digest, previous = excluded.previous",
        &[&(next.generation as i64), &next.digest, &next.previous],
    )
    .map_err(sink)?;
    Ok(())
}

/// Runs `f` (which uses or drops sync clients) on a thread of its own when the
/// current thread runs a tokio runtime, where the sync client would panic; returns
/// when it has run either way.
fn off_runtime(f: impl FnOnce() + Send + 'static) {
    if tokio::runtime::Handle::try_current().is_ok() {
        let _ = std::thread::spawn(f).join();
    } else {
        f();
    }
}

/// The policy lock: a session-level advisory lock on a connection of its own,
/// unlocked and closed when dropped.
struct SessionLock(Option<Client>);

impl Drop for SessionLock {
    fn drop(&mut self) {
        if let Some(mut client) = self.0.take() {
            off_runtime(move || {
                // Closing the session releases the lock too; unlocking first makes
                // it free before this returns.
                let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&POLICY_LOCK]);
            });
        }
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://USER@HOST:PORT/DB`), applies the
    /// migrations, and uses `key` to sign checkpoints of the audit log.
    pub fn connect(url: &str, key: CheckpointKey) -> Result<Self, StorageError> {
        let config: Config = url
            .parse()
            .map_err(|e| StorageError::Database(format!("database URL: {e}")))?;
        Self::open(config, key, DEFAULT_MAX_CONNECTIONS)
    }

    /// Connects with `config`, opening at most `max_connections` connections (at least
    /// one), and applies the migrations.
    pub fn open(
        config: Config,
        key: CheckpointKey,
        max_connections: usize,
    ) -> Result<Self, StorageError> {
        let store = PostgresStore {
            pool: Pool {
                config,
                max: max_connections.max(1),
                state: Mutex::new(PoolState {
                    idle: Vec::new(),
                    open: 0,
                }),
                freed: Condvar::new(),
            },
            key,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Applies the schema in one transaction that holds an advisory lock, so that
    /// replicas starting at once apply it one after another; every statement is
    /// idempotent.
    fn migrate(&self) -> Result<(), StorageError> {
        let mut pooled = self.pool.take()?;
        let mut tx = pooled.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute(SCHEMA)?;
        tx.execute(
            "INSERT INTO chainhead (id, seq, hash) VALUES (1, 0, $1) ON CONFLICT (id) DO NOTHING",
            &[&GENESIS_HASH],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Runs `f` in one READ COMMITTED transaction, committed only if it succeeds.
    fn write<T, E: From<postgres::Error> + From<StorageError>>(
        &self,
        f: impl FnOnce(&mut Tx<'_, '_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut pooled = self.pool.take()?;
        let conn = &mut *pooled;
        let mut tx = conn
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()?;
        let out = f(&mut Db {
            c: &mut tx,
            statements: &mut conn.statements,
        })?;
        tx.commit()?;
        Ok(out)
    }

    /// Appends entries to the chain after `head` (locked by [`lock_head`] at the start of
    /// the transaction), moves the head and signs it; returns their seqs.
    fn append(
        &self,
        tx: &mut Tx<'_, '_>,
        head: (u64, String),
        entries: Vec<AuditEntry>,
    ) -> PgResult<Vec<u64>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let (mut seq, mut prev) = head;
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
        tx.execute(
            "UPDATE chainhead SET seq = $1, hash = $2 WHERE id = 1",
            &[&(seq as i64), &prev],
        )?;
        let checkpoint = self.key.sign(seq, &prev);
        tx.execute(
            "INSERT INTO checkpoint (id, seq, head_hash, mac) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, head_hash = excluded.head_hash, \
             mac = excluded.mac",
            &[
                &(checkpoint.seq as i64),
                &checkpoint.head_hash,
                &checkpoint.mac,
            ],
        )?;
        Ok(seqs)
    }

    /// Applies a change; a conflict leaves the transaction to be rolled back.
    fn apply(&self, tx: &mut Tx<'_, '_>, change: Change) -> Result<(), SinkError> {
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
                // FOR SHARE: a policy change in flight holds the row FOR UPDATE, so the
                // push waits for it and then reads the version it committed.
                let now = policy_version(tx, "FOR SHARE").map_err(sink)?;
                if decided_at != now {
                    return Err(conflict(format!(
                        "the push of {name} was decided at policy version {decided_at}, the policies are at version {now} now"
                    )));
                }
                let repo = repository_id(tx, &namespace, &repository).map_err(sink)?;
                // The manifest is locked before the tag (the lock order), FOR SHARE so
                // that a manifest delete waits for this push and then sees its tag.
                let manifest: Option<i64> = tx
                    .query_opt(
                        "SELECT id FROM manifest WHERE repository_id = $1 AND digest = $2 \
                         FOR SHARE",
                        &[&repo, &manifest_digest],
                    )
                    .and_then(|r| r.map(|r| r.try_get(0)).transpose())
                    .map_err(sink)?;
                let current: Option<(i64, bool)> = tx
                    .query_opt(
                        "SELECT id, immutable FROM tag WHERE repository_id = $1 AND name = $2 \
                         AND lifetime_end_ms IS NULL FOR UPDATE",
                        &[&repo, &name],
                    )
                    .and_then(|r| r.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose())
                    .map_err(sink)?;
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
                let manifest = manifest.ok_or_else(|| {
                    conflict(format!("manifest {manifest_digest} is no longer stored"))
                })?;
                if let Some((id, _)) = current {
                    end_tag(tx, id as u64).map_err(sink)?;
                }
                tx.execute(
                    "INSERT INTO tag (name, repository_id, manifest_id, lifetime_start_ms, immutable) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&name, &repo, &manifest, &now_ms(), &immutable],
                )
                .map_err(|e| {
                    // Another push created the tag since this one read it as absent.
                    if violates(&e, "tag_alive_name") {
                        conflict(format!("tag {name} changed while the push was decided"))
                    } else {
                        sink(e)
                    }
                })?;
                Ok(())
            }
            Change::SetImmutable { tag_id, immutable } => {
                if alive_state(tx, tag_id).map_err(sink)?.is_none() {
                    return Err(conflict(format!("tag id {tag_id} is no longer alive")));
                }
                tx.execute(
                    "UPDATE tag SET immutable = $2 WHERE id = $1",
                    &[&(tag_id as i64), &immutable],
                )
                .map_err(sink)?;
                Ok(())
            }
            Change::DeleteTags(ids) => {
                check_removable(tx, &ids)?;
                for id in ids {
                    end_tag(tx, id).map_err(sink)?;
                }
                Ok(())
            }
            Change::SetExpiration {
                tag_ids,
                expires_at,
            } => {
                check_removable(tx, &tag_ids)?;
                for id in tag_ids {
                    tx.execute(
                        "UPDATE tag SET expiration = $2 WHERE id = $1",
                        &[&(id as i64), &expires_at],
                    )
                    .map_err(sink)?;
                }
                Ok(())
            }
            Change::DeleteManifest {
                namespace,
                repository,
                digest,
                tag_ids,
            } => {
                let Some(repo) = find_repository(tx, &namespace, &repository).map_err(sink)? else {
                    return Err(conflict(format!(
                        "repository {namespace}/{repository} is gone"
                    )));
                };
                // The manifest first (a push onto it holds it FOR SHARE until it commits),
                // then its alive tags, in id order.
                tx.execute(
                    "SELECT id FROM manifest WHERE repository_id = $1 AND digest = $2 FOR UPDATE",
                    &[&repo, &digest],
                )
                .map_err(sink)?;
                let now = tx
                    .query(
                        "SELECT t.id FROM tag t JOIN manifest m ON m.id = t.manifest_id \
                         WHERE m.repository_id = $1 AND m.digest = $2 \
                         AND t.lifetime_end_ms IS NULL ORDER BY t.id FOR UPDATE OF t",
                        &[&repo, &digest],
                    )
                    .map_err(sink)?;
                let mut now = now
                    .iter()
                    .map(|r| r.try_get::<_, i64>(0).map(|id| id as u64))
                    .collect::<PgResult<Vec<u64>>>()
                    .map_err(sink)?;
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
                    end_tag(tx, id).map_err(sink)?;
                }
                tx.execute(
                    "DELETE FROM manifest WHERE repository_id = $1 AND digest = $2",
                    &[&repo, &digest],
                )
                .map_err(sink)?;
                Ok(())
            }
            Change::InsertPolicy(p) => {
                // Policy changes lock the version first: one at a time, and every push
                // in flight has committed or waits for this one.
                lock_policy_version(tx).map_err(sink)?;
                let exists: bool = tx
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM namespaceimmutabilitypolicy WHERE uuid = $1) \
                         OR EXISTS (SELECT 1 FROM repositoryimmutabilitypolicy WHERE uuid = $1)",
                        &[&p.uuid],
                    )
                    .and_then(|r| r.try_get(0))
                    .map_err(sink)?;
                if exists {
                    return Err(conflict(format!("policy {} already exists", p.uuid)));
                }
                let ns = namespace_id(tx, &p.namespace).map_err(sink)?;
                match &p.repository {
                    None => tx.execute(
                        "INSERT INTO namespaceimmutabilitypolicy (uuid, namespace_id, policy) \
                         VALUES ($1, $2, $3)",
                        &[&p.uuid, &ns, &policy_json(&p)],
                    ),
                    Some(repo) => {
                        let repo = repository_id(tx, &p.namespace, repo).map_err(sink)?;
                        tx.execute(
                            "INSERT INTO repositoryimmutabilitypolicy \
                             (uuid, repository_id, namespace_id, policy) VALUES ($1, $2, $3, $4)",
                            &[&p.uuid, &repo, &ns, &policy_json(&p)],
                        )
                    }
                }
                .map_err(sink)?;
                bump_policy_version(tx).map_err(sink)
            }
            Change::UpdatePolicy(p) => {
                lock_policy_version(tx).map_err(sink)?;
                let table = match p.scope {
                    Scope::Namespace => "namespaceimmutabilitypolicy",
                    Scope::Repository => "repositoryimmutabilitypolicy",
                };
                let n = tx
                    .execute(
                        &format!("UPDATE {table} SET policy = $2 WHERE uuid = $1"),
                        &[&p.uuid, &policy_json(&p)],
                    )
                    .map_err(sink)?;
                if n == 0 {
                    return Err(conflict(format!("policy {} does not exist", p.uuid)));
                }
                bump_policy_version(tx).map_err(sink)
            }
            Change::DeletePolicy(uuid) => {
                lock_policy_version(tx).map_err(sink)?;
                let mut n = 0;
                for table in [
                    "namespaceimmutabilitypolicy",
                    "repositoryimmutabilitypolicy",
                ] {
                    n += tx
                        .execute(&format!("DELETE FROM {table} WHERE uuid = $1"), &[&uuid])
                        .map_err(sink)?;
                }
                if n == 0 {
                    return Err(conflict(format!("policy {uuid} does not exist")));
                }
                bump_policy_version(tx).map_err(sink)
            }
            other => Err(SinkError::Unavailable(format!(
                "change {other:?} is not supported by this registry"
            ))),
        }
    }

    /// Adds `n` marked tags to the progress of the running run of `entry`'s policy.
    fn note_progress(tx: &mut Tx<'_, '_>, entry: &AuditEntry, n: usize) -> PgResult<()> {
        if n == 0 {
            return Ok(());
        }
        let (Some(policy), Some(run)) = (entry.meta_str("policy_uuid"), entry.meta_str("run_id"))
        else {
            return Ok(());
        };
        let total = tx.query(
            "UPDATE retroactiverun SET changed = changed + $1, engine_run_id = $2 \
             WHERE policy_uuid = $3 AND status = 'running' RETURNING changed",
            &[&(n as i64), &run, &policy],
        )?;
        let total: Option<i64> = total.first().map(|r| r.try_get(0)).transpose()?;
        tracing::info!(
            policy,
            run,
            marked = total.unwrap_or(n as i64),
            "retroactive run progress"
        );
        Ok(())
    }

    /// Rows of one read on a pooled connection.
    fn read(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, StorageError> {
        Ok(Db::on(&mut *self.pool.take()?).query(sql, params)?)
    }

    /// At most one row of one read on a pooled connection.
    fn read_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, StorageError> {
        Ok(Db::on(&mut *self.pool.take()?).query_opt(sql, params)?)
    }

    fn tags(&self, sql: &str, params: Params<'_>) -> Result<Vec<Tag>, StorageError> {
        Ok(self
            .read(sql, params)?
            .iter()
            .map(tag_from_row)
            .collect::<PgResult<_>>()?)
    }

    fn strings(&self, sql: &str, params: Params<'_>) -> Result<Vec<String>, StorageError> {
        Ok(self
            .read(sql, params)?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<PgResult<_>>()?)
    }

    /// Chained entries from rows of `(seq, entry_json)`.
    fn entries(&self, sql: &str, params: Params<'_>) -> Result<Vec<ChainedEntry>, StorageError> {
        let rows = self
            .read(sql, params)?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<PgResult<Vec<(i64, String)>>>()?;
        entries_from(rows)
    }
}

impl AuditSink for PostgresStore {
    fn commit(&self, change: Change, entries: Vec<AuditEntry>) -> Result<(), SinkError> {
        let mut pooled = self
            .pool
            .take()
            .map_err(|e| SinkError::Unavailable(e.to_string()))?;
        let conn = &mut *pooled;
        let mut raw = conn
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .map_err(sink)?;
        let mut tx = Db {
            c: &mut raw,
            statements: &mut conn.statements,
        };
        // The chain head before anything else (see `lock_head`).
        let head = if entries.is_empty() {
            None
        } else {
            Some(lock_head(&mut tx).map_err(sink)?)
        };
        self.apply(&mut tx, change)?;
        for next in entries.iter().filter_map(ServedPlugin::published_by) {
            publish_plugin(&mut tx, &next)?;
        }
        if let Some(head) = head {
            self.append(&mut tx, head, entries).map_err(sink)?;
        }
        raw.commit().map_err(sink)
    }
}

impl TagStore for PostgresStore {
    fn scan(&self, r: &ScanRequest) -> Result<Vec<Tag>, StoreError> {
        let sql = format!(
            "{TAG_SELECT} WHERE t.lifetime_end_ms IS NULL AND NOT t.hidden AND t.id > $1 \
             AND n.name = $2 AND ($3::text IS NULL OR r.name = $3) ORDER BY t.id LIMIT $4"
        );
        self.tags(
            &sql,
            &[
                &(r.after_id as i64),
                &r.namespace,
                &r.repository,
                &i64::from(r.limit),
            ],
        )
        .map_err(store_err)
    }

    fn mark_immutable(&self, changes: Vec<MarkImmutable>) -> Result<Vec<u64>, StoreError> {
        self.write(|tx| {
            if changes.is_empty() {
                return Ok(Vec::new());
            }
            let head = lock_head(tx)?;
            let ids: Vec<u64> = changes.iter().map(|c| c.tag_id).collect();
            lock_tags(tx, &ids)?;
            let mut changed = Vec::new();
            let mut entries = Vec::new();
            for MarkImmutable { tag_id, entry } in changes {
                if alive_state(tx, tag_id)? != Some((false, false)) {
                    continue;
                }
                tx.execute(
                    "UPDATE tag SET immutable = TRUE WHERE id = $1",
                    &[&(tag_id as i64)],
                )?;
                entries.push(entry);
                changed.push(tag_id);
            }
            if let Some(entry) = entries.first() {
                Self::note_progress(tx, entry, changed.len())?;
            }
            self.append(tx, head, entries)?;
            Ok::<_, StorageError>(changed)
        })
        .map_err(store_err)
    }

    fn mark_immutable_batch(&self, batch: MarkBatch) -> Result<Vec<u64>, StoreError> {
        self.write(|tx| {
            if batch.tags.is_empty() {
                return Ok(Vec::new());
            }
            let head = lock_head(tx)?;
            let ids: Vec<u64> = batch.tags.iter().map(|t| t.id).collect();
            lock_tags(tx, &ids)?;
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
                tx.execute(
                    "UPDATE tag SET immutable = TRUE WHERE id = $1",
                    &[&(*id as i64)],
                )?;
            }
            Self::note_progress(tx, &entry, changed.len())?;
            self.append(tx, head, vec![entry])?;
            Ok::<_, StorageError>(changed)
        })
        .map_err(store_err)
    }
}

impl Storage for PostgresStore {
    fn blob_in_repository(
        &self,
        ns: &str,
        repo: &str,
        digest: &str,
    ) -> Result<Option<u64>, StorageError> {
        Ok(self
            .read_opt(
                "SELECT b.size FROM blob b JOIN repositoryblob rb ON rb.digest = b.digest \
                 JOIN repository r ON r.id = rb.repository_id JOIN namespace n ON n.id = r.namespace_id \
                 WHERE n.name = $1 AND r.name = $2 AND b.digest = $3",
                &[&ns, &repo, &digest],
            )?
            .map(|r| r.try_get::<_, i64>(0))
            .transpose()?
            .map(|s| s as u64))
    }

    fn link_blob(&self, ns: &str, repo: &str, digest: &str, size: u64) -> Result<(), StorageError> {
        self.write(|tx| {
            let repo = repository_id(tx, ns, repo)?;
            tx.execute(
                "INSERT INTO blob (digest, size) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
                &[&digest, &(size as i64)],
            )?;
            tx.execute(
                "INSERT INTO repositoryblob (repository_id, digest) VALUES ($1, $2) \
                 ON CONFLICT (repository_id, digest) DO NOTHING",
                &[&repo, &digest],
            )?;
            Ok::<_, StorageError>(())
        })
    }

    fn unlink_blob(&self, ns: &str, repo: &str, digest: &str) -> Result<bool, StorageError> {
        self.write(|tx| {
            let Some(repo) = find_repository(tx, ns, repo)? else {
                return Ok(false);
            };
            let n = tx.execute(
                "DELETE FROM repositoryblob WHERE repository_id = $1 AND digest = $2",
                &[&repo, &digest],
            )?;
            Ok::<_, StorageError>(n > 0)
        })
    }

    fn put_manifest(&self, ns: &str, repo: &str, m: &ManifestRow) -> Result<bool, StorageError> {
        self.write(|tx| {
            let repo = repository_id(tx, ns, repo)?;
            let n = tx.execute(
                "INSERT INTO manifest (repository_id, digest, media_type, manifest_bytes, \
                 subject, artifact_type) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (repository_id, digest) DO NOTHING",
                &[
                    &repo,
                    &m.digest,
                    &m.media_type,
                    &m.bytes,
                    &m.subject,
                    &m.artifact_type,
                ],
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
        Ok(self
            .read_opt(
                &format!(
                    "SELECT {MANIFEST_COLUMNS} FROM manifest m \
                     JOIN repository r ON r.id = m.repository_id \
                     JOIN namespace n ON n.id = r.namespace_id \
                     WHERE n.name = $1 AND r.name = $2 AND m.digest = $3"
                ),
                &[&ns, &repo, &digest],
            )?
            .as_ref()
            .map(manifest_from_row)
            .transpose()?)
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
            // Lock the manifest first: a push onto it holds it FOR SHARE until it
            // commits, and the next statement then sees that push's tag.
            let Some(row) = tx.query_opt(
                "SELECT id FROM manifest WHERE repository_id = $1 AND digest = $2 FOR UPDATE",
                &[&repo, &digest],
            )?
            else {
                return Ok(false);
            };
            let id: i64 = row.try_get(0)?;
            let n = tx.execute(
                "DELETE FROM manifest WHERE id = $1 AND NOT EXISTS \
                 (SELECT 1 FROM tag t WHERE t.manifest_id = $1 AND t.lifetime_end_ms IS NULL)",
                &[&id],
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
        Ok(self
            .read(
                &format!(
                    "SELECT {MANIFEST_COLUMNS} FROM manifest m \
                     JOIN repository r ON r.id = m.repository_id \
                     JOIN namespace n ON n.id = r.namespace_id \
                     WHERE n.name = $1 AND r.name = $2 AND m.subject = $3 ORDER BY m.id"
                ),
                &[&ns, &repo, &digest],
            )?
            .iter()
            .map(manifest_from_row)
            .collect::<PgResult<_>>()?)
    }

    fn alive_tag(&self, ns: &str, repo: &str, name: &str) -> Result<Option<Tag>, StorageError> {
        let sql = format!(
            "{TAG_SELECT} WHERE n.name = $1 AND r.name = $2 AND t.name = $3 \
             AND t.lifetime_end_ms IS NULL"
        );
        Ok(self
            .read_opt(&sql, &[&ns, &repo, &name])?
            .as_ref()
            .map(tag_from_row)
            .transpose()?)
    }

    fn tags_on_manifest(
        &self,
        ns: &str,
        repo: &str,
        digest: &str,
    ) -> Result<Vec<Tag>, StorageError> {
        let sql = format!(
            "{TAG_SELECT} WHERE n.name = $1 AND r.name = $2 AND m.digest = $3 \
             AND t.lifetime_end_ms IS NULL ORDER BY t.id"
        );
        self.tags(&sql, &[&ns, &repo, &digest])
    }

    fn tag_names(
        &self,
        ns: &str,
        repo: &str,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.strings(
            "SELECT t.name FROM tag t JOIN repository r ON r.id = t.repository_id \
             JOIN namespace n ON n.id = r.namespace_id \
             WHERE n.name = $1 AND r.name = $2 AND t.lifetime_end_ms IS NULL AND NOT t.hidden \
             AND ($3::text IS NULL OR t.name > $3) ORDER BY t.name LIMIT $4",
            &[&ns, &repo, &last, &(limit as i64)],
        )
    }

    fn alive_tags(&self, ns: &str, repo: &str) -> Result<Vec<Tag>, StorageError> {
        let sql = format!(
            "{TAG_SELECT} WHERE n.name = $1 AND r.name = $2 AND t.lifetime_end_ms IS NULL \
             AND NOT t.hidden ORDER BY t.name"
        );
        self.tags(&sql, &[&ns, &repo])
    }

    fn repository_exists(&self, ns: &str, repo: &str) -> Result<bool, StorageError> {
        Ok(find_repository(&mut Db::on(&mut *self.pool.take()?), ns, repo)?.is_some())
    }

    fn catalog(&self, last: Option<&str>, limit: usize) -> Result<Vec<String>, StorageError> {
        self.strings(
            "SELECT full_name FROM (SELECT (n.name || '/' || r.name) COLLATE \"C\" AS full_name \
             FROM repository r JOIN namespace n ON n.id = r.namespace_id) AS names \
             WHERE $1::text IS NULL OR full_name > $1 ORDER BY full_name LIMIT $2",
            &[&last, &(limit as i64)],
        )
    }

    fn repositories(&self) -> Result<Vec<RepositorySummary>, StorageError> {
        let rows = self.read(
            "SELECT n.name, r.name, \
             (SELECT COUNT(*) FROM tag t WHERE t.repository_id = r.id AND t.lifetime_end_ms IS NULL), \
             (SELECT COUNT(*) FROM tag t WHERE t.repository_id = r.id AND t.lifetime_end_ms IS NULL \
              AND t.immutable) \
             FROM repository r JOIN namespace n ON n.id = r.namespace_id ORDER BY n.name, r.name",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(RepositorySummary {
                    namespace: r.try_get(0)?,
                    repository: r.try_get(1)?,
                    tags: r.try_get::<_, i64>(2)? as u64,
                    immutable: r.try_get::<_, i64>(3)? as u64,
                })
            })
            .collect::<PgResult<_>>()?)
    }

    fn policies_in_scope(
        &self,
        ns: &str,
        repo: Option<&str>,
    ) -> Result<(Vec<Policy>, u64), StorageError> {
        let mut pooled = self.pool.take()?;
        let conn = &mut *pooled;
        // One snapshot for the version and the policies read with it.
        let mut raw = conn
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let mut tx = Db {
            c: &mut raw,
            statements: &mut conn.statements,
        };
        let version = policy_version(&mut tx, "")?;
        let mut policies = Vec::new();
        let rows = tx.query(
            &format!("{POLICY_SELECT} WHERE n.name = $1 ORDER BY p.id"),
            &[&ns],
        )?;
        policy_rows(rows, &mut policies)?;
        if let Some(repo) = repo {
            let rows = tx.query(
                &format!("{REPO_POLICY_SELECT} WHERE n.name = $1 AND r.name = $2 ORDER BY p.id"),
                &[&ns, &repo],
            )?;
            policy_rows(rows, &mut policies)?;
        }
        raw.commit()?;
        Ok((policies, version))
    }

    fn namespace_policies(&self, ns: &str) -> Result<Vec<Policy>, StorageError> {
        let (mut all, _) = self.policies_in_scope(ns, None)?;
        let rows = self.read(
            &format!("{REPO_POLICY_SELECT} WHERE n.name = $1 ORDER BY p.id"),
            &[&ns],
        )?;
        policy_rows(rows, &mut all)?;
        Ok(all)
    }

    fn policy(&self, uuid: &str) -> Result<Option<Policy>, StorageError> {
        for sql in [POLICY_SELECT, REPO_POLICY_SELECT] {
            let rows = self.read(&format!("{sql} WHERE p.uuid = $1"), &[&uuid])?;
            let mut found = Vec::new();
            policy_rows(rows, &mut found)?;
            if let Some(p) = found.pop() {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }

    fn log(&self, q: &LogQuery) -> Result<Vec<ChainedEntry>, StorageError> {
        // Pages newer than a seq are read oldest first, then turned around.
        let order = if q.after_seq.is_some() { "ASC" } else { "DESC" };
        let mut entries = self.entries(
            &format!(
                "SELECT l.id, l.entry_json FROM logentry3 l JOIN namespace n ON n.id = l.account_id \
                 JOIN logentrykind k ON k.id = l.kind_id \
                 LEFT JOIN repository r ON r.id = l.repository_id \
                 LEFT JOIN \"user\" u ON u.id = l.performer_id \
                 WHERE ($1::text IS NULL OR n.name = $1) AND ($2::text IS NULL OR r.name = $2) \
                 AND ($3::bigint IS NULL OR l.id < $3) AND ($4::text IS NULL OR l.datetime >= $4) \
                 AND ($5::text IS NULL OR l.datetime < $5) AND ($7::text IS NULL OR k.name = $7) \
                 AND ($8::bigint IS NULL OR l.id > $8) \
                 AND ($9::text IS NULL OR l.metadata_json::jsonb ->> 'tag' = $9) \
                 AND ($10::text IS NULL OR u.username = $10) \
                 ORDER BY l.id {order} LIMIT $6"
            ),
            &[
                &q.namespace,
                &q.repository,
                &q.before_seq.map(|s| s as i64),
                &q.start_time,
                &q.end_time,
                &(q.limit as i64),
                &q.kind,
                &q.after_seq.map(|s| s as i64),
                &q.tag,
                &q.performer,
            ],
        )?;
        if q.after_seq.is_some() {
            entries.reverse();
        }
        Ok(entries)
    }

    fn tag_log(&self, ns: &str, repo: &str, tag: &str) -> Result<Vec<ChainedEntry>, StorageError> {
        // ILIKE: SQLite's LIKE, which the embedded store uses, ignores ASCII case.
        let needle = format!("%\"tag\":{}%", serde_json::Value::from(tag));
        self.entries(
            "SELECT l.id, l.entry_json FROM logentry3 l JOIN namespace n ON n.id = l.account_id \
             LEFT JOIN repository r ON r.id = l.repository_id \
             WHERE n.name = $1 AND (r.name IS NULL OR r.name = $2) \
             AND l.metadata_json ILIKE $3 ORDER BY l.id",
            &[&ns, &repo, &needle],
        )
    }

    fn full_log(&self) -> Result<Vec<ChainedEntry>, StorageError> {
        let rows = self.read(
            "SELECT l.id, l.entry_json, k.name, n.name, l.datetime, l.ip, l.metadata_json, \
             l.prev_hash, l.hash FROM logentry3 l JOIN logentrykind k ON k.id = l.kind_id \
             JOIN namespace n ON n.id = l.account_id ORDER BY l.id",
            &[],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let stored = LogRow {
                seq: row.try_get(0)?,
                entry_json: row.try_get(1)?,
                kind: row.try_get(2)?,
                namespace: row.try_get(3)?,
                datetime: row.try_get(4)?,
                ip: row.try_get(5)?,
                metadata_json: row.try_get(6)?,
                prev_hash: row.try_get(7)?,
                hash: row.try_get(8)?,
            };
            out.push(stored.checked()?);
        }
        Ok(out)
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StorageError> {
        self.read(
            "SELECT seq, head_hash, mac FROM checkpoint WHERE id = 1",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(Checkpoint {
                seq: r.try_get::<_, i64>(0)? as u64,
                head_hash: r.try_get(1)?,
                mac: r.try_get(2)?,
            })
        })
        .collect()
    }

    fn start_run(
        &self,
        policy: &Policy,
        trigger: &str,
        performer: &str,
    ) -> Result<i64, StorageError> {
        self.write(|tx| {
            let row = tx.query_one(
                "INSERT INTO retroactiverun (policy_uuid, namespace, repository, trigger, performer, \
                 status, started) VALUES ($1, $2, $3, $4, $5, 'running', $6) RETURNING id",
                &[
                    &policy.uuid,
                    &policy.namespace,
                    &policy.repository,
                    &trigger,
                    &performer,
                    &tagguard_engine::utc::now(),
                ],
            )?;
            Ok::<_, StorageError>(row.try_get(0)?)
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
            tx.execute(
                "UPDATE retroactiverun SET status = $2, engine_run_id = COALESCE($3, engine_run_id), \
                 changed = $4, finished = $5, error = $6 WHERE id = $1",
                &[
                    &id,
                    &status,
                    &engine_run_id,
                    &(changed as i64),
                    &tagguard_engine::utc::now(),
                    &error,
                ],
            )?;
            Ok::<_, StorageError>(())
        })
    }

    fn drop_run(&self, id: i64) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.execute("DELETE FROM retroactiverun WHERE id = $1", &[&id])?;
            Ok::<_, StorageError>(())
        })
    }

    fn finish_run_by(&self, id: i64, by: i64, changed: u64) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE retroactiverun SET status = 'completed', finished_by = $2, \
                 changed = changed + $3, finished = COALESCE(finished, $4) WHERE id = $1",
                &[&id, &by, &(changed as i64), &tagguard_engine::utc::now()],
            )?;
            Ok::<_, StorageError>(())
        })
    }

    fn interrupt_runs(&self) -> Result<u64, StorageError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE retroactiverun SET status = 'incomplete', \
                 error = 'the registry stopped while the run was going' WHERE status = 'running'",
                &[],
            )?;
            Ok::<_, StorageError>(n)
        })
    }

    fn runs(&self) -> Result<Vec<RunRow>, StorageError> {
        Ok(self
            .read(&format!("{RUN_SELECT} ORDER BY id DESC"), &[])?
            .iter()
            .map(run_from_row)
            .collect::<PgResult<_>>()?)
    }

    fn run(&self, id: i64) -> Result<Option<RunRow>, StorageError> {
        Ok(self
            .read_opt(&format!("{RUN_SELECT} WHERE id = $1"), &[&id])?
            .as_ref()
            .map(run_from_row)
            .transpose()?)
    }

    fn put_plugin(&self, digest: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO plugincomponent (digest, component) VALUES ($1, $2) \
                 ON CONFLICT (digest) DO NOTHING",
                &[&digest, &bytes],
            )?;
            Ok::<_, StorageError>(())
        })
    }

    fn plugin_component(&self, digest: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .read_opt(
                "SELECT component FROM plugincomponent WHERE digest = $1",
                &[&digest],
            )?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    fn served_plugin(&self) -> Result<Option<ServedPlugin>, StorageError> {
        Ok(served_plugin(&mut Db::on(&mut *self.pool.take()?), "")?)
    }

    fn lock_policies(&self) -> Result<PolicyLock, StorageError> {
        let mut client = self.pool.config.connect(NoTls)?;
        client.execute("SELECT pg_advisory_lock($1)", &[&POLICY_LOCK])?;
        Ok(PolicyLock::new(SessionLock(Some(client))))
    }

    fn try_lock_policies(&self) -> Result<Option<PolicyLock>, StorageError> {
        let mut client = self.pool.config.connect(NoTls)?;
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&POLICY_LOCK])?
            .try_get(0)?;
        if taken {
            Ok(Some(PolicyLock::new(SessionLock(Some(client)))))
        } else {
            off_runtime(move || drop(client));
            Ok(None)
        }
    }

    fn healthy(&self) -> bool {
        self.pool
            .take()
            .is_ok_and(|mut c| c.client.query_one("SELECT 1", &[]).is_ok())
    }
}
