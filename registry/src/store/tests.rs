//! Both stores against the engine's two traits: conflicts, atomic commits,
//! marks that record only real changes, and edited rows found. Every test runs
//! on SQLite and on PostgreSQL; the PostgreSQL half needs a server URL in
//! `TAGGUARD_TEST_POSTGRES` (see `.ci/postgres`) and is skipped without one,
//! unless `TAGGUARD_REQUIRE_CLIENTS=1`. Each PostgreSQL test creates its own
//! database and drops it afterwards. The PostgreSQL-only tests at the end run
//! two stores (two replicas) on one database at once.

use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::{ManifestRow, ServedPlugin, Storage, StorageError};
use serde_json::{Map, Value, json};
use tagguard_engine::audit::{CheckpointKey, verify_against};
use tagguard_engine::{
    AuditEntry, Change, MarkBatch, MarkImmutable, Performer, PluginStamp, Policy, ScanRequest,
    Scope, SinkError, TagRef, TagStore,
};

/// The environment variable naming the PostgreSQL server the tests use.
const POSTGRES_ENV: &str = "TAGGUARD_TEST_POSTGRES";

/// A store under test on its own fresh database, removed on drop.
struct TestDb {
    store: Option<Box<dyn Storage>>,
    backend: Backend,
}

enum Backend {
    Sqlite(std::path::PathBuf),
    Postgres {
        server: Box<::postgres::Config>,
        db: Box<::postgres::Config>,
        name: String,
    },
}

impl TestDb {
    fn store(&self) -> &dyn Storage {
        self.store.as_deref().expect("the store lives until drop")
    }

    /// Runs SQL on the database behind the store's back (to edit a row, say).
    fn execute(&self, sql: &str) {
        match &self.backend {
            Backend::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.join("registry.db")).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Backend::Postgres { db, .. } => {
                let mut client = db.connect(::postgres::NoTls).unwrap();
                client.batch_execute(sql).unwrap();
            }
        }
    }

    /// A second store on the same PostgreSQL database: another replica.
    fn replica(&self) -> PostgresStore {
        let Backend::Postgres { db, .. } = &self.backend else {
            panic!("replicas need PostgreSQL");
        };
        PostgresStore::open((**db).clone(), key(), 8).unwrap()
    }

    /// A raw connection to the PostgreSQL database, for transactions held open.
    fn raw(&self) -> ::postgres::Client {
        let Backend::Postgres { db, .. } = &self.backend else {
            panic!("raw connections need PostgreSQL");
        };
        db.connect(::postgres::NoTls).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        drop(self.store.take());
        match &self.backend {
            Backend::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Backend::Postgres { server, name, .. } => {
                if let Ok(mut c) = server.connect(::postgres::NoTls) {
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
                }
            }
        }
    }
}

fn sqlite_db(name: &str) -> TestDb {
    let dir = std::env::temp_dir().join(format!("tg-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir.join("registry.db"), key()).unwrap();
    TestDb {
        store: Some(Box::new(store)),
        backend: Backend::Sqlite(dir),
    }
}

/// A fresh PostgreSQL database `tg_<test>_<pid>` with a store on it, or `None` (with
/// a note) when no server is configured; with `TAGGUARD_REQUIRE_CLIENTS=1` a missing
/// server fails the test.
fn postgres_db(test: &str) -> Option<TestDb> {
    let Ok(url) = std::env::var(POSTGRES_ENV) else {
        let required = std::env::var("TAGGUARD_REQUIRE_CLIENTS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{POSTGRES_ENV} is not set (TAGGUARD_REQUIRE_CLIENTS=1): start a server with .ci/postgres"
        );
        eprintln!("skipped on PostgreSQL: {POSTGRES_ENV} is not set (see .ci/postgres)");
        return None;
    };
    let server: ::postgres::Config = url.parse().expect("a postgres:// URL");
    // Database names stop at 63 bytes: a prefix of the test's name and a hash of all of it.
    let hash = test.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let name = format!(
        "tg_{}_{:08x}_{}",
        &test[..test.len().min(32)],
        hash as u32,
        std::process::id()
    );
    let mut admin = server
        .connect(::postgres::NoTls)
        .expect("the test server answers");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .unwrap();
    let mut db = server.clone();
    db.dbname(&name);
    let store = PostgresStore::open(db.clone(), key(), 8).unwrap();
    Some(TestDb {
        store: Some(Box::new(store)),
        backend: Backend::Postgres {
            server: Box::new(server),
            db: Box::new(db),
            name,
        },
    })
}

/// Runs a test body, `fn name(t: &TestDb)`, as two tests: `name::sqlite` and
/// `name::postgres`.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&super::sqlite_db(stringify!($name)));
            }

            #[test]
            fn postgres() {
                if let Some(t) = super::postgres_db(stringify!($name)) {
                    super::$name(&t);
                }
            }
        }
    };
}

/// Runs a PostgreSQL-only test body, `fn name(t: &TestDb)`, when a server is configured.
macro_rules! postgres_only {
    ($name:ident) => {
        mod $name {
            #[test]
            fn postgres() {
                if let Some(t) = super::postgres_db(stringify!($name)) {
                    super::$name(&t);
                }
            }
        }
    };
}

fn key() -> CheckpointKey {
    CheckpointKey::from_bytes(b"a test key of sufficient length").unwrap()
}

fn entry(tag: &str, run: &str, policy: &str) -> AuditEntry {
    let mut metadata = Map::new();
    metadata.insert("immutable".into(), true.into());
    metadata.insert("run_id".into(), run.into());
    metadata.insert("policy_uuid".into(), policy.into());
    let mut e = AuditEntry::by_host(
        "tag_made_immutable_by_policy",
        "org",
        Some("app"),
        &Performer {
            kind: "user",
            name: "alice".into(),
            ip: Some("127.0.0.1".into()),
            request_id: None,
        },
        &PluginStamp {
            name: "p".into(),
            version: "1".into(),
            digest: "sha256:00".into(),
            generation: 1,
        },
        metadata,
    );
    e.tag = Some(tag.into());
    e
}

fn manifest(n: u8) -> ManifestRow {
    let bytes = format!("{{\"n\":{n}}}").into_bytes();
    ManifestRow {
        digest: crate::digest::Digest::of(&bytes).to_string(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        bytes,
        subject: None,
        artifact_type: None,
    }
}

fn put(
    store: &dyn Storage,
    tag: &str,
    m: &ManifestRow,
    replaces: Option<u64>,
    version: u64,
) -> Result<(), SinkError> {
    store.put_manifest("org", "app", m).unwrap();
    store.commit(
        Change::PutTag {
            namespace: "org".into(),
            repository: "app".into(),
            name: tag.into(),
            manifest_digest: m.digest.clone(),
            immutable: false,
            replaces,
            policy_version: version,
        },
        vec![],
    )
}

fn policy(uuid: &str) -> Policy {
    Policy {
        uuid: uuid.into(),
        scope: Scope::Namespace,
        namespace: "org".into(),
        repository: None,
        tag_pattern: "v.*".into(),
        tag_pattern_matches: true,
    }
}

both!(a_push_decided_on_stale_state_is_a_conflict_and_changes_nothing);
fn a_push_decided_on_stale_state_is_a_conflict_and_changes_nothing(t: &TestDb) {
    let s = t.store();
    put(s, "v1", &manifest(1), None, 0).unwrap();
    let id = s.alive_tag("org", "app", "v1").unwrap().unwrap().id;
    // The tag exists, so a push that thinks it does not is stale.
    assert!(matches!(
        put(s, "v1", &manifest(2), None, 0),
        Err(SinkError::Conflict(_))
    ));
    // A policy change moves the version: a push decided at 0 is stale.
    s.commit(
        Change::InsertPolicy(policy("p1")),
        vec![entry("x", "r", "p1")],
    )
    .unwrap();
    let err = put(s, "v1", &manifest(2), Some(id), 0).unwrap_err();
    assert!(err.to_string().contains("policy version 0"), "{err}");
    assert_eq!(s.alive_tag("org", "app", "v1").unwrap().unwrap().id, id);
    let (_, version) = s.policies_in_scope("org", Some("app")).unwrap();
    assert_eq!(version, 1);
    put(s, "v1", &manifest(2), Some(id), 1).unwrap();
    let moved = s.alive_tag("org", "app", "v1").unwrap().unwrap();
    assert!(moved.id > id, "a move ends the row and inserts a new one");
    assert_eq!(moved.manifest_digest, manifest(2).digest);
}

both!(a_refused_commit_appends_no_entry);
fn a_refused_commit_appends_no_entry(t: &TestDb) {
    let s = t.store();
    s.commit(
        Change::InsertPolicy(policy("p1")),
        vec![entry("a", "r", "p1")],
    )
    .unwrap();
    let again = s.commit(
        Change::InsertPolicy(policy("p1")),
        vec![entry("b", "r", "p1")],
    );
    assert!(matches!(again, Err(SinkError::Conflict(_))));
    assert_eq!(s.full_log().unwrap().len(), 1);
}

both!(marks_record_only_tags_that_changed_and_count_run_progress);
fn marks_record_only_tags_that_changed_and_count_run_progress(t: &TestDb) {
    let s = t.store();
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        put(s, name, &manifest(i as u8), None, 0).unwrap();
    }
    let p = policy("p1");
    let run = s.start_run(&p, "policy_created", "alice").unwrap();
    let tags = s
        .scan(&ScanRequest {
            namespace: "org".into(),
            repository: None,
            after_id: 0,
            limit: 10,
        })
        .unwrap();
    assert_eq!(tags.len(), 3);
    let b = tags[1].id;
    s.commit(
        Change::SetImmutable {
            tag_id: b,
            immutable: true,
        },
        vec![entry("b", "manual", "p1")],
    )
    .unwrap();
    let changes = tags
        .iter()
        .map(|t| MarkImmutable {
            tag_id: t.id,
            entry: entry(&t.name, "run-1", "p1"),
        })
        .collect();
    let changed = s.mark_immutable(changes).unwrap();
    assert_eq!(changed, vec![tags[0].id, tags[2].id]);
    let log = s.full_log().unwrap();
    assert_eq!(
        log.len(),
        3,
        "the manual record and one record per changed tag"
    );
    verify_against(&log, &key(), &s.checkpoints().unwrap()).unwrap();
    let row = s.run(run).unwrap().unwrap();
    assert_eq!(
        (row.changed, row.engine_run_id.as_deref()),
        (2, Some("run-1"))
    );
    assert_eq!(s.interrupt_runs().unwrap(), 1);
    assert_eq!(s.run(run).unwrap().unwrap().status, "incomplete");
}

both!(an_edited_log_column_is_found_at_its_seq);
fn an_edited_log_column_is_found_at_its_seq(t: &TestDb) {
    let s = t.store();
    for tag in ["a", "b", "c"] {
        s.commit(Change::None, vec![entry(tag, "r", "p")]).unwrap();
    }
    t.execute(&format!(
        "UPDATE logentry3 SET metadata_json = '{}' WHERE id = 2",
        json!({"immutable": false})
    ));
    match s.full_log() {
        Err(StorageError::EditedLogRow { seq, .. }) => assert_eq!(seq, 2),
        other => panic!("expected an edited row, got {other:?}"),
    }
}

both!(a_manifest_delete_is_refused_when_its_tags_changed_or_one_is_immutable);
fn a_manifest_delete_is_refused_when_its_tags_changed_or_one_is_immutable(t: &TestDb) {
    let s = t.store();
    let m = manifest(1);
    put(s, "a", &m, None, 0).unwrap();
    put(s, "b", &m, None, 0).unwrap();
    let tags = s.tags_on_manifest("org", "app", &m.digest).unwrap();
    let delete = |ids: Vec<u64>| {
        s.commit(
            Change::DeleteManifest {
                namespace: "org".into(),
                repository: "app".into(),
                digest: m.digest.clone(),
                tag_ids: ids,
            },
            vec![],
        )
    };
    assert!(matches!(
        delete(vec![tags[0].id]),
        Err(SinkError::Conflict(_))
    ));
    s.commit(
        Change::SetImmutable {
            tag_id: tags[1].id,
            immutable: true,
        },
        vec![],
    )
    .unwrap();
    let ids: Vec<u64> = tags.iter().map(|t| t.id).collect();
    assert!(matches!(delete(ids.clone()), Err(SinkError::Conflict(_))));
    assert!(s.manifest("org", "app", &m.digest).unwrap().is_some());
    s.commit(
        Change::SetImmutable {
            tag_id: tags[1].id,
            immutable: false,
        },
        vec![],
    )
    .unwrap();
    delete(ids).unwrap();
    assert!(s.manifest("org", "app", &m.digest).unwrap().is_none());
    assert!(
        s.tags_on_manifest("org", "app", &m.digest)
            .unwrap()
            .is_empty()
    );
}

both!(a_tags_log_holds_its_entries_and_not_a_longer_names);
fn a_tags_log_holds_its_entries_and_not_a_longer_names(t: &TestDb) {
    let s = t.store();
    for tag in ["a", "ab", "a"] {
        s.commit(Change::None, vec![entry(tag, "r", "p")]).unwrap();
    }
    let log = s.tag_log("org", "app", "a").unwrap();
    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 3]);
    assert!(s.tag_log("org", "other", "a").unwrap().is_empty());
}

fn swap_record(generation: u64, old: &str, new: &str) -> AuditEntry {
    let metadata = json!({
        "action": "swap",
        "generation": generation,
        "old_plugin": {"name": "p", "version": "1", "sha256": old},
        "new_plugin": {"name": "p", "version": "2", "sha256": new},
        "outcome": "success",
    });
    let Value::Object(metadata) = metadata else {
        unreachable!()
    };
    AuditEntry::by_host(
        tagguard_engine::PLUGIN_SWAPPED,
        "",
        None,
        &Performer {
            kind: "user",
            name: "admin".into(),
            ip: None,
            request_id: None,
        },
        &PluginStamp {
            name: "p".into(),
            version: "2".into(),
            digest: new.into(),
            generation,
        },
        metadata,
    )
}

both!(a_swap_record_publishes_the_served_plugin_only_when_its_generation_follows);
fn a_swap_record_publishes_the_served_plugin_only_when_its_generation_follows(t: &TestDb) {
    let s = t.store();
    s.put_plugin("sha256:aa", b"component a").unwrap();
    s.put_plugin("sha256:aa", b"component a").unwrap();
    assert_eq!(
        s.plugin_component("sha256:aa").unwrap().as_deref(),
        Some(&b"component a"[..])
    );
    assert_eq!(s.plugin_component("sha256:bb").unwrap(), None);
    assert_eq!(s.served_plugin().unwrap(), None);

    // Generation 1 serves before any swap: a record of generation 3 does not follow.
    let skipped = s.commit(Change::None, vec![swap_record(3, "sha256:aa", "sha256:bb")]);
    assert!(
        matches!(skipped, Err(SinkError::Conflict(_))),
        "{skipped:?}"
    );
    assert!(
        s.full_log().unwrap().is_empty(),
        "a refused swap leaves no record"
    );

    s.commit(Change::None, vec![swap_record(2, "sha256:aa", "sha256:bb")])
        .unwrap();
    let served = ServedPlugin {
        generation: 2,
        digest: "sha256:bb".into(),
        previous: Some("sha256:aa".into()),
    };
    assert_eq!(s.served_plugin().unwrap(), Some(served.clone()));

    // A process that had not followed generation 2 swaps as 2 again: refused.
    let stale = s.commit(Change::None, vec![swap_record(2, "sha256:aa", "sha256:cc")]);
    assert!(matches!(stale, Err(SinkError::Conflict(_))), "{stale:?}");
    assert_eq!(s.served_plugin().unwrap(), Some(served));
    assert_eq!(s.full_log().unwrap().len(), 1);

    // Records of other kinds leave the served plugin alone.
    s.commit(
        Change::InsertPolicy(policy("p1")),
        vec![entry("x", "r", "p1")],
    )
    .unwrap();
    assert_eq!(s.served_plugin().unwrap().unwrap().generation, 2);
}

both!(the_policy_lock_admits_one_holder_and_the_next_when_it_drops);
fn the_policy_lock_admits_one_holder_and_the_next_when_it_drops(t: &TestDb) {
    let s = t.store();
    let held = s.lock_policies().unwrap();
    assert!(s.try_lock_policies().unwrap().is_none());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let _second = s.lock_policies().unwrap();
            tx.send(()).unwrap();
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "a second holder waits"
        );
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("the waiter gets the lock once it is dropped");
    });
    assert!(s.try_lock_policies().unwrap().is_some());
}

both!(the_log_filters_by_tag_and_performer_and_pages_both_ways);
fn the_log_filters_by_tag_and_performer_and_pages_both_ways(t: &TestDb) {
    let s = t.store();
    for (i, tag) in ["a", "b", "a", "a", "ab", "a"].iter().enumerate() {
        let mut e = entry(tag, "r", "p");
        if i == 3 {
            e.performer.name = "bob".into();
        }
        s.commit(Change::None, vec![e]).unwrap();
    }
    let seqs = |q: super::LogQuery| -> Vec<u64> {
        s.log(&super::LogQuery { limit: 10, ..q })
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    let tag = |t: &str| Some(t.to_string());
    assert_eq!(
        seqs(super::LogQuery {
            tag: tag("a"),
            ..Default::default()
        }),
        vec![6, 4, 3, 1]
    );
    assert_eq!(
        seqs(super::LogQuery {
            tag: tag("a"),
            performer: tag("alice"),
            ..Default::default()
        }),
        vec![6, 3, 1]
    );
    assert_eq!(
        seqs(super::LogQuery {
            performer: tag("bob"),
            ..Default::default()
        }),
        vec![4]
    );
    // Older than 6, two at a time; then the page just newer than 1.
    assert_eq!(
        s.log(&super::LogQuery {
            tag: tag("a"),
            before_seq: Some(6),
            limit: 2,
            ..Default::default()
        })
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect::<Vec<_>>(),
        vec![4, 3]
    );
    assert_eq!(
        s.log(&super::LogQuery {
            tag: tag("a"),
            after_seq: Some(1),
            limit: 2,
            ..Default::default()
        })
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect::<Vec<_>>(),
        vec![4, 3]
    );
}

// PostgreSQL only: two stores on one database, as two registry replicas are.

/// A per-batch mark of `tags` (as a scan returned them), with its entry listing them.
fn batch(tags: &[tagguard_engine::Tag]) -> MarkBatch {
    let mut e = entry("", "run-1", "p1");
    e.tag = None;
    let listed: Vec<_> = tags
        .iter()
        .map(|t| json!({"repository": t.repository, "tag": t.name}))
        .collect();
    e.metadata.insert("count".into(), tags.len().into());
    e.metadata.insert("tags".into(), listed.into());
    MarkBatch {
        tags: tags
            .iter()
            .map(|t| TagRef {
                id: t.id,
                repository: t.repository.clone(),
                name: t.name.clone(),
            })
            .collect(),
        entry: e,
    }
}

/// How many tag rows are both ended and immutable (a record-less state the locks rule out).
fn ended_immutable(t: &TestDb) -> i64 {
    t.raw()
        .query_one(
            "SELECT COUNT(*) FROM tag WHERE immutable AND lifetime_end_ms IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Waits for a thread's answer: `None` if none came within `ms` milliseconds.
fn answer<T>(rx: &std::sync::mpsc::Receiver<T>, ms: u64) -> Option<T> {
    rx.recv_timeout(std::time::Duration::from_millis(ms)).ok()
}

postgres_only!(replicas_starting_at_once_apply_the_migrations_once);
fn replicas_starting_at_once_apply_the_migrations_once(t: &TestDb) {
    t.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    std::thread::scope(|sc| {
        let starts: Vec<_> = (0..4).map(|_| sc.spawn(|| t.replica())).collect();
        for s in starts {
            assert!(s.join().unwrap().healthy());
        }
    });
    let mut raw = t.raw();
    let head = raw.query("SELECT seq, hash FROM chainhead", &[]).unwrap();
    assert_eq!(head.len(), 1);
    assert_eq!(head[0].get::<_, i64>(0), 0);
    assert_eq!(
        head[0].get::<_, String>(1),
        tagguard_engine::audit::GENESIS_HASH
    );
    let version: String = raw
        .query_one("SELECT value FROM meta WHERE key = 'policy_version'", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, "0");
}

postgres_only!(two_replicas_committing_at_once_keep_one_gapless_chain);
fn two_replicas_committing_at_once_keep_one_gapless_chain(t: &TestDb) {
    let a = t.store();
    let b = t.replica();
    for i in 0..24u8 {
        put(a, &format!("m{i}"), &manifest(i), None, 0).unwrap();
    }
    let tags = a
        .scan(&ScanRequest {
            namespace: "org".into(),
            repository: None,
            after_id: 0,
            limit: 100,
        })
        .unwrap();
    let stores: [&dyn Storage; 2] = [a, &b];
    let (appended, marked) = std::thread::scope(|sc| {
        let threads: Vec<_> = (0..6usize)
            .map(|thread| {
                let store = stores[thread % 2];
                let tags = &tags;
                sc.spawn(move || {
                    let mut appended = 0;
                    let mut marked = Vec::new();
                    for i in 0..12usize {
                        // Threads overlap on tags: each tag is marked once, whoever wins.
                        let some = [&tags[(thread + i) % 24], &tags[(thread + 2 * i) % 24]];
                        match i % 4 {
                            0 => {
                                store
                                    .commit(
                                        Change::None,
                                        vec![entry("x", "r", "p"), entry("y", "r", "p")],
                                    )
                                    .unwrap();
                                appended += 2;
                            }
                            1 => {
                                let uuid = format!("p-{thread}-{i}");
                                store
                                    .commit(
                                        Change::InsertPolicy(policy(&uuid)),
                                        vec![entry("x", "r", &uuid)],
                                    )
                                    .unwrap();
                                appended += 1;
                            }
                            2 => {
                                let changes = some
                                    .iter()
                                    .map(|t| MarkImmutable {
                                        tag_id: t.id,
                                        entry: entry(&t.name, "run-1", "p1"),
                                    })
                                    .collect();
                                let changed = store.mark_immutable(changes).unwrap();
                                appended += changed.len();
                                marked.extend(changed);
                            }
                            _ => {
                                let some: Vec<_> = some.into_iter().cloned().collect();
                                let changed = store.mark_immutable_batch(batch(&some)).unwrap();
                                appended += usize::from(!changed.is_empty());
                                marked.extend(changed);
                            }
                        }
                    }
                    (appended, marked)
                })
            })
            .collect();
        threads.into_iter().map(|h| h.join().unwrap()).fold(
            (0, Vec::new()),
            |(n, mut all), (k, m)| {
                all.extend(m);
                (n + k, all)
            },
        )
    });
    let log = b.full_log().unwrap();
    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=appended as u64).collect::<Vec<_>>());
    verify_against(&log, &key(), &a.checkpoints().unwrap()).unwrap();
    let mut once = marked.clone();
    once.sort_unstable();
    once.dedup();
    assert_eq!(once.len(), marked.len(), "a tag was marked twice");
    let immutable = a
        .alive_tags("org", "app")
        .unwrap()
        .into_iter()
        .filter(|t| t.immutable)
        .count();
    assert_eq!(immutable, marked.len());
}

postgres_only!(a_push_waits_for_a_policy_change_in_flight_and_then_conflicts);
fn a_push_waits_for_a_policy_change_in_flight_and_then_conflicts(t: &TestDb) {
    let a = t.store();
    let b = t.replica();
    let m = manifest(1);
    let (_, decided_at) = b.policies_in_scope("org", Some("app")).unwrap();
    assert_eq!(decided_at, 0);
    // A policy change in flight: it has moved the version and not committed yet.
    let mut raw = t.raw();
    let mut tx = raw.transaction().unwrap();
    tx.execute(
        "UPDATE meta SET value = '1' WHERE key = 'policy_version'",
        &[],
    )
    .unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::scope(|sc| {
        let b = &b;
        sc.spawn(move || send.send(put(b, "v1", &m, None, decided_at)).unwrap());
        assert!(
            answer(&receive, 500).is_none(),
            "the push waits for the policy change"
        );
        tx.commit().unwrap();
        let err = answer(&receive, 10_000)
            .expect("the push ends")
            .unwrap_err();
        assert!(
            matches!(&err, SinkError::Conflict(m) if m.contains("policy version 0")),
            "{err:?}"
        );
    });
    assert!(a.alive_tag("org", "app", "v1").unwrap().is_none());
    // Decided again at the new version, it commits.
    put(&b, "v1", &manifest(1), None, 1).unwrap();
    let id = a.alive_tag("org", "app", "v1").unwrap().unwrap().id;
    // A policy committed on one replica makes the other's push decided before it stale.
    a.commit(
        Change::InsertPolicy(policy("p1")),
        vec![entry("x", "r", "p1")],
    )
    .unwrap();
    assert!(matches!(
        put(&b, "v1", &manifest(2), Some(id), 1),
        Err(SinkError::Conflict(_))
    ));
    put(&b, "v1", &manifest(2), Some(id), 2).unwrap();
}

postgres_only!(two_pushes_of_one_new_tag_at_once_give_one_success_and_one_conflict);
fn two_pushes_of_one_new_tag_at_once_give_one_success_and_one_conflict(t: &TestDb) {
    let a = t.store();
    let b = t.replica();
    let (m1, m2) = (manifest(1), manifest(2));
    a.put_manifest("org", "app", &m1).unwrap();
    a.put_manifest("org", "app", &m2).unwrap();
    // Held: another push has inserted the alive row and not committed. This push read
    // the tag as absent, waits on the alive-name index, and then conflicts.
    let mut raw = t.raw();
    let mut tx = raw.transaction().unwrap();
    tx.execute(
        "INSERT INTO tag (name, repository_id, manifest_id, lifetime_start_ms) \
         SELECT 'held', repository_id, id, 0 FROM manifest WHERE digest = $1",
        &[&m1.digest],
    )
    .unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::scope(|sc| {
        let b = &b;
        let m2 = &m2;
        sc.spawn(move || send.send(put(b, "held", m2, None, 0)).unwrap());
        assert!(answer(&receive, 500).is_none(), "the push waits");
        tx.commit().unwrap();
        let err = answer(&receive, 10_000)
            .expect("the push ends")
            .unwrap_err();
        assert!(
            matches!(&err, SinkError::Conflict(m) if m.contains("changed while the push")),
            "{err:?}"
        );
    });
    // Raced: two replicas push the same new tag at once, 20 times.
    for round in 0..20 {
        let name = format!("new{round}");
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|sc| {
            let pushes: Vec<_> = [(a, &m1), (&b as &dyn Storage, &m2)]
                .into_iter()
                .map(|(store, m)| {
                    let (barrier, name) = (&barrier, &name);
                    sc.spawn(move || {
                        barrier.wait();
                        put(store, name, m, None, 0)
                    })
                })
                .collect();
            pushes.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let conflicts = results
            .iter()
            .filter(|r| matches!(r, Err(SinkError::Conflict(_))))
            .count();
        assert_eq!((ok, conflicts), (1, 1), "round {round}: {results:?}");
    }
}

postgres_only!(a_mark_and_a_push_at_once_never_leave_an_ended_immutable_tag);
fn a_mark_and_a_push_at_once_never_leave_an_ended_immutable_tag(t: &TestDb) {
    let a = t.store();
    let b = t.replica();
    put(a, "v1", &manifest(1), None, 0).unwrap();
    a.put_manifest("org", "app", &manifest(2)).unwrap();
    let old = a.alive_tag("org", "app", "v1").unwrap().unwrap();
    // Held: a push in flight has ended the row. The mark waits for it, then skips it.
    let mut raw = t.raw();
    let mut tx = raw.transaction().unwrap();
    tx.execute(
        "UPDATE tag SET lifetime_end_ms = 1 WHERE id = $1",
        &[&(old.id as i64)],
    )
    .unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::scope(|sc| {
        let (b, old) = (&b, &old);
        sc.spawn(move || {
            send.send(b.mark_immutable_batch(batch(std::slice::from_ref(old))))
                .unwrap()
        });
        assert!(answer(&receive, 500).is_none(), "the mark waits");
        tx.commit().unwrap();
        let changed = answer(&receive, 10_000).expect("the mark ends").unwrap();
        assert!(changed.is_empty(), "an ended tag was marked");
    });
    assert_eq!(ended_immutable(t), 0);
    // Held: a mark in flight. The push waits for it, then conflicts.
    put(a, "v2", &manifest(1), None, 0).unwrap();
    let v2 = a.alive_tag("org", "app", "v2").unwrap().unwrap();
    let mut tx = raw.transaction().unwrap();
    tx.execute(
        "UPDATE tag SET immutable = TRUE WHERE id = $1",
        &[&(v2.id as i64)],
    )
    .unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::scope(|sc| {
        let b = &b;
        sc.spawn(move || {
            send.send(put(b, "v2", &manifest(2), Some(v2.id), 0))
                .unwrap()
        });
        assert!(answer(&receive, 500).is_none(), "the push waits");
        tx.commit().unwrap();
        let err = answer(&receive, 10_000)
            .expect("the push ends")
            .unwrap_err();
        assert!(
            matches!(&err, SinkError::Conflict(m) if m.contains("became immutable")),
            "{err:?}"
        );
    });
    // Raced: a mark on one replica and a push on the other, 20 times.
    let before = a.full_log().unwrap().len();
    let mut marks = 0;
    for round in 0..20u8 {
        let name = format!("r{round}");
        put(a, &name, &manifest(1), None, 0).unwrap();
        let tag = a.alive_tag("org", "app", &name).unwrap().unwrap();
        let barrier = std::sync::Barrier::new(2);
        let (marked, pushed) = std::thread::scope(|sc| {
            let mark = sc.spawn(|| {
                barrier.wait();
                a.mark_immutable_batch(batch(std::slice::from_ref(&tag)))
                    .unwrap()
            });
            let push = sc.spawn(|| {
                barrier.wait();
                put(&b, &name, &manifest(2), Some(tag.id), 0)
            });
            (mark.join().unwrap(), push.join().unwrap())
        });
        match (&marked[..], &pushed) {
            ([id], Err(SinkError::Conflict(_))) if *id == tag.id => marks += 1,
            ([], Ok(())) => {}
            other => panic!("round {round}: {other:?}"),
        }
        assert_eq!(ended_immutable(t), 0, "round {round}");
    }
    assert_eq!(a.full_log().unwrap().len(), before + marks);
}

#[test]
fn a_bad_postgres_url_is_a_database_error() {
    match PostgresStore::connect("postgres://tg@[bad/x", key()) {
        Err(StorageError::Database(m)) => assert!(m.contains("database URL"), "{m}"),
        Err(other) => panic!("expected a database error, got {other:?}"),
        Ok(_) => panic!("a bad URL connected"),
    }
}

postgres_only!(the_policy_lock_is_one_across_replicas_and_frees_when_dropped_on_a_runtime);
fn the_policy_lock_is_one_across_replicas_and_frees_when_dropped_on_a_runtime(t: &TestDb) {
    let a = t.store();
    let b = t.replica();
    let held = a.lock_policies().unwrap();
    assert!(b.try_lock_policies().unwrap().is_none());
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::scope(|sc| {
        let b = &b;
        sc.spawn(move || send.send(b.lock_policies().unwrap()).unwrap());
        assert!(answer(&receive, 300).is_none(), "the other replica waits");
        // Dropped on a runtime thread, as an async handler might: no panic, and freed.
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async move { drop(held) });
        let second = answer(&receive, 5_000).expect("the waiter gets the lock");
        assert!(a.try_lock_policies().unwrap().is_none());
        drop(second);
    });
    assert!(a.try_lock_policies().unwrap().is_some());
}

postgres_only!(two_replicas_swapping_at_once_publish_one_generation);
fn two_replicas_swapping_at_once_publish_one_generation(t: &TestDb) {
    let a = t.store();
    let b = t.replica();
    a.put_plugin("sha256:bb", b"component b").unwrap();
    assert_eq!(
        b.plugin_component("sha256:bb").unwrap().as_deref(),
        Some(&b"component b"[..])
    );
    for generation in 2..8u64 {
        let barrier = std::sync::Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|sc| {
            let swaps: Vec<_> = [(a, "sha256:aa"), (&b as &dyn Storage, "sha256:cc")]
                .into_iter()
                .map(|(store, new)| {
                    let barrier = &barrier;
                    sc.spawn(move || {
                        barrier.wait();
                        store.commit(
                            Change::None,
                            vec![swap_record(generation, "sha256:bb", new)],
                        )
                    })
                })
                .collect();
            swaps.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let conflicts = results
            .iter()
            .filter(|r| matches!(r, Err(SinkError::Conflict(_))))
            .count();
        assert_eq!(
            (ok, conflicts),
            (1, 1),
            "generation {generation}: {results:?}"
        );
        let served = a.served_plugin().unwrap().unwrap();
        assert_eq!(served.generation, generation);
        assert_eq!(b.served_plugin().unwrap(), Some(served));
    }
    let log = b.full_log().unwrap();
    assert_eq!(log.len(), 6, "one record per published generation");
    verify_against(&log, &key(), &a.checkpoints().unwrap()).unwrap();
}
