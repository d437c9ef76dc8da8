-- tagguard-registry's PostgreSQL schema: the same tables and columns as the
-- SQLite schema (schema.sql), with PostgreSQL's types. Every statement is
-- idempotent: the schema is applied on every start, in one transaction that
-- holds an advisory lock, so two replicas starting at once apply it in turn.
-- Names that are sorted or compared as text use the "C" collation: byte order,
-- as in SQLite.

CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- The policy-set version: a push commit reads it FOR SHARE, a policy change
-- updates it, so a push never commits against a policy set changed meanwhile.
INSERT INTO meta (key, value) VALUES ('policy_version', '0') ON CONFLICT (key) DO NOTHING;

-- Performers. Quay keeps accounts and namespaces in one `user` table; here an
-- account is a performer and a namespace is its own row. `user` is reserved
-- in PostgreSQL: the table is always written quoted, "user".
CREATE TABLE IF NOT EXISTS "user" (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS namespace (
    id BIGSERIAL PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE
);

CREATE TABLE IF NOT EXISTS repository (
    id BIGSERIAL PRIMARY KEY,
    namespace_id BIGINT NOT NULL REFERENCES namespace(id),
    name TEXT COLLATE "C" NOT NULL,
    UNIQUE (namespace_id, name)
);

-- Blob contents live on disk, content-addressed; a row here says the file is
-- complete and verified. `repositoryblob` links a blob into a repository.
CREATE TABLE IF NOT EXISTS blob (
    digest TEXT PRIMARY KEY,
    size BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS repositoryblob (
    repository_id BIGINT NOT NULL REFERENCES repository(id),
    digest TEXT NOT NULL REFERENCES blob(digest),
    PRIMARY KEY (repository_id, digest)
);

CREATE TABLE IF NOT EXISTS manifest (
    id BIGSERIAL PRIMARY KEY,
    repository_id BIGINT NOT NULL REFERENCES repository(id),
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    manifest_bytes BYTEA NOT NULL,
    subject TEXT,
    artifact_type TEXT,
    UNIQUE (repository_id, digest)
);
CREATE INDEX IF NOT EXISTS manifest_subject ON manifest (repository_id, subject);

-- Quay's tag: a move ends the alive row (lifetime_end_ms set) and inserts a
-- new one, so the table keeps each tag's history. `manifest_id` of an ended
-- row may name a manifest deleted since. Ids grow with creation order.
CREATE TABLE IF NOT EXISTS tag (
    id BIGSERIAL PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    repository_id BIGINT NOT NULL REFERENCES repository(id),
    manifest_id BIGINT NOT NULL,
    lifetime_start_ms BIGINT NOT NULL,
    lifetime_end_ms BIGINT,
    immutable BOOLEAN NOT NULL DEFAULT FALSE,
    hidden BOOLEAN NOT NULL DEFAULT FALSE,
    expiration TEXT
);
-- At most one alive row per name (Quay's unique (repository, name,
-- lifetime_end_ms) does not hold for NULL in SQL; a partial index does). Two
-- concurrent pushes of a new tag meet here: the second fails and conflicts.
CREATE UNIQUE INDEX IF NOT EXISTS tag_alive_name ON tag (repository_id, name)
    WHERE lifetime_end_ms IS NULL;
CREATE INDEX IF NOT EXISTS tag_manifest_alive ON tag (manifest_id)
    WHERE lifetime_end_ms IS NULL;

CREATE TABLE IF NOT EXISTS logentrykind (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

-- Quay's log table, with the hash chain: `id` is the chain's seq (from 1,
-- without gaps), `entry_json` the engine's chained entry that `hash` covers.
-- The Quay columns are derived from it, and verification checks that they are.
CREATE TABLE IF NOT EXISTS logentry3 (
    id BIGINT PRIMARY KEY,
    kind_id BIGINT NOT NULL REFERENCES logentrykind(id),
    account_id BIGINT NOT NULL REFERENCES namespace(id),
    performer_id BIGINT REFERENCES "user"(id),
    repository_id BIGINT REFERENCES repository(id),
    datetime TEXT COLLATE "C" NOT NULL,
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

-- The head of the audit chain, decided in the database: every transaction that
-- appends entries locks this row first (FOR UPDATE), numbers its entries on
-- from it and moves it. The row is created, at the genesis hash, by the
-- migration code.
CREATE TABLE IF NOT EXISTS chainhead (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);

-- Quay's policy tables; `policy` is {"tag_pattern": ..., "tag_pattern_matches": ...}.
CREATE TABLE IF NOT EXISTS namespaceimmutabilitypolicy (
    id BIGSERIAL PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    namespace_id BIGINT NOT NULL REFERENCES namespace(id),
    policy TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS repositoryimmutabilitypolicy (
    id BIGSERIAL PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    repository_id BIGINT NOT NULL REFERENCES repository(id),
    namespace_id BIGINT NOT NULL REFERENCES namespace(id),
    policy TEXT NOT NULL
);

-- The latest keyed checkpoint of the log's head (signed after every commit).
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    head_hash TEXT NOT NULL,
    mac TEXT NOT NULL
);

-- Retroactive runs as the registry tracks them: `running` until the engine
-- returns; a run found `running` at start was cut short and becomes `incomplete`.
CREATE TABLE IF NOT EXISTS retroactiverun (
    id BIGSERIAL PRIMARY KEY,
    policy_uuid TEXT NOT NULL,
    namespace TEXT NOT NULL,
    repository TEXT,
    trigger TEXT NOT NULL,
    performer TEXT NOT NULL,
    status TEXT NOT NULL,
    engine_run_id TEXT,
    changed BIGINT NOT NULL DEFAULT 0,
    started TEXT NOT NULL,
    finished TEXT,
    error TEXT,
    finished_by BIGINT
);

-- Plugin components by digest, and the plugin the database says serves: a
-- commit that carries a swap or rollback record updates `servedplugin` in the
-- same transaction. No row: the default plugin serves as generation 1.
CREATE TABLE IF NOT EXISTS plugincomponent (
    digest TEXT PRIMARY KEY,
    component BYTEA NOT NULL
);

CREATE TABLE IF NOT EXISTS servedplugin (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL,
    digest TEXT NOT NULL,
    previous TEXT
);
