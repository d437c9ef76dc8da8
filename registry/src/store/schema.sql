-- tagguard-registry's SQLite schema. Table and column names follow Quay's
-- (data/database.py) where Quay has the concept: `tag`, `logentry3`,
-- `logentrykind`, `namespaceimmutabilitypolicy`, `repositoryimmutabilitypolicy`.
-- Every statement is idempotent: the schema is applied on every start.

CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Performers. Quay keeps accounts and namespaces in one `user` table; here an
-- account is a performer and a namespace is its own row.
CREATE TABLE IF NOT EXISTS user (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS namespace (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS repository (
    id INTEGER PRIMARY KEY,
    namespace_id INTEGER NOT NULL REFERENCES namespace(id),
    name TEXT NOT NULL,
    UNIQUE (namespace_id, name)
);

-- Blob contents live on disk, content-addressed; a row here says the file is
-- complete and verified. `repositoryblob` links a blob into a repository.
CREATE TABLE IF NOT EXISTS blob (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS repositoryblob (
    repository_id INTEGER NOT NULL REFERENCES repository(id),
    digest TEXT NOT NULL REFERENCES blob(digest),
    PRIMARY KEY (repository_id, digest)
);

CREATE TABLE IF NOT EXISTS manifest (
    id INTEGER PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repository(id),
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    manifest_bytes BLOB NOT NULL,
    subject TEXT,
    artifact_type TEXT,
    UNIQUE (repository_id, digest)
);
CREATE INDEX IF NOT EXISTS manifest_subject ON manifest (repository_id, subject);

-- Quay's tag: a move ends the alive row (lifetime_end_ms set) and inserts a
-- new one, so the table keeps each tag's history. `manifest_id` of an ended
-- row may name a manifest deleted since. Ids grow with creation order.
CREATE TABLE IF NOT EXISTS tag (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    repository_id INTEGER NOT NULL REFERENCES repository(id),
    manifest_id INTEGER NOT NULL,
    lifetime_start_ms INTEGER NOT NULL,
    lifetime_end_ms INTEGER,
    immutable INTEGER NOT NULL DEFAULT 0,
    hidden INTEGER NOT NULL DEFAULT 0,
    expiration TEXT
);
-- At most one alive row per name (Quay's unique (repository, name,
-- lifetime_end_ms) does not hold for NULL in SQL; a partial index does).
CREATE UNIQUE INDEX IF NOT EXISTS tag_alive_name ON tag (repository_id, name)
    WHERE lifetime_end_ms IS NULL;
CREATE INDEX IF NOT EXISTS tag_manifest_alive ON tag (manifest_id)
    WHERE lifetime_end_ms IS NULL;

CREATE TABLE IF NOT EXISTS logentrykind (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

-- Quay's log table, with the hash chain: `id` is the chain's seq (from 1,
-- without gaps), `entry_json` the engine's chained entry that `hash` covers.
-- The Quay columns are derived from it, and verification checks that they are.
CREATE TABLE IF NOT EXISTS logentry3 (
    id INTEGER PRIMARY KEY,
    kind_id INTEGER NOT NULL REFERENCES logentrykind(id),
    account_id INTEGER NOT NULL REFERENCES namespace(id),
    performer_id INTEGER REFERENCES user(id),
    repository_id INTEGER REFERENCES repository(id),
    datetime TEXT NOT NULL,
    ip TEXT,
    metadata_json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    entry_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logentry3_account_datetime ON logentry3 (account_id, datetime);
CREATE INDEX IF NOT EXISTS logentry3_performer_datetime ON logentry3 (performer_id, datetime);
CREATE INDEX IF NOT EXISTS logentry3_repository_datetime_kind
    ON logentry3 (repository_id, datetime, kind_id);

-- Quay's policy tables; `policy` is {"tag_pattern": ..., "tag_pattern_matches": ...}.
CREATE TABLE IF NOT EXISTS namespaceimmutabilitypolicy (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    namespace_id INTEGER NOT NULL REFERENCES namespace(id),
    policy TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS repositoryimmutabilitypolicy (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    repository_id INTEGER NOT NULL REFERENCES repository(id),
    namespace_id INTEGER NOT NULL REFERENCES namespace(id),
    policy TEXT NOT NULL
);

-- The latest keyed checkpoint of the log's head (signed after every commit).
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    head_hash TEXT NOT NULL,
    mac TEXT NOT NULL
);

-- Retroactive runs as the registry tracks them: `running` until the engine
-- returns; a run found `running` at start was cut short and becomes `incomplete`.
CREATE TABLE IF NOT EXISTS retroactiverun (
    id INTEGER PRIMARY KEY,
    policy_uuid TEXT NOT NULL,
    namespace TEXT NOT NULL,
    repository TEXT,
    trigger TEXT NOT NULL,
    performer TEXT NOT NULL,
    status TEXT NOT NULL,
    engine_run_id TEXT,
    changed INTEGER NOT NULL DEFAULT 0,
    started TEXT NOT NULL,
    finished TEXT,
    error TEXT,
    finished_by INTEGER
);

-- Plugin components by digest, and the plugin the database says serves: a
-- commit that carries a swap or rollback record updates `servedplugin` in the
-- same transaction. No row: the default plugin serves as generation 1.
CREATE TABLE IF NOT EXISTS plugincomponent (
    digest TEXT PRIMARY KEY,
    component BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS servedplugin (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL,
    digest TEXT NOT NULL,
    previous TEXT
);
