//! The SQLite store against the engine's two traits: conflicts, atomic
//! commits, marks that record only real changes, and edited rows found.

use super::sqlite::SqliteStore;
use super::{ManifestRow, ServedPlugin, Storage, StorageError};
use serde_json::{Map, Value, json};
use tagguard_engine::audit::{CheckpointKey, verify_against};
use tagguard_engine::{
    AuditEntry, AuditSink, Change, MarkImmutable, Performer, PluginStamp, Policy, ScanRequest,
    Scope, SinkError, TagStore,
};

struct TempDb {
    dir: std::path::PathBuf,
    store: SqliteStore,
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn key() -> CheckpointKey {
    CheckpointKey::from_bytes(b"a test key of sufficient length").unwrap()
}

fn db(name: &str) -> TempDb {
    let dir = std::env::temp_dir().join(format!("tg-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(&dir.join("registry.db"), key()).unwrap();
    TempDb { dir, store }
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
    store: &SqliteStore,
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

#[test]
fn a_push_decided_on_stale_state_is_a_conflict_and_changes_nothing() {
    let t = db("stale");
    let s = &t.store;
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

#[test]
fn a_refused_commit_appends_no_entry() {
    let t = db("atomic");
    let s = &t.store;
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

#[test]
fn marks_record_only_tags_that_changed_and_count_run_progress() {
    let t = db("marks");
    let s = &t.store;
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

#[test]
fn an_edited_log_column_is_found_at_its_seq() {
    let t = db("edited");
    let s = &t.store;
    for tag in ["a", "b", "c"] {
        s.commit(Change::None, vec![entry(tag, "r", "p")]).unwrap();
    }
    let conn = rusqlite::Connection::open(t.dir.join("registry.db")).unwrap();
    conn.execute(
        "UPDATE logentry3 SET metadata_json = ?1 WHERE id = 2",
        [json!({"immutable": false}).to_string()],
    )
    .unwrap();
    match s.full_log() {
        Err(StorageError::EditedLogRow { seq, .. }) => assert_eq!(seq, 2),
        other => panic!("expected an edited row, got {other:?}"),
    }
}

#[test]
fn a_manifest_delete_is_refused_when_its_tags_changed_or_one_is_immutable() {
    let t = db("manifest");
    let s = &t.store;
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

#[test]
fn a_tags_log_holds_its_entries_and_not_a_longer_names() {
    let t = db("taglog");
    let s = &t.store;
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

#[test]
fn a_swap_record_publishes_the_served_plugin_only_when_its_generation_follows() {
    let t = db("served");
    let s = &t.store;
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

#[test]
fn the_policy_lock_admits_one_holder_and_the_next_when_it_drops() {
    let t = db("lock");
    let s = &t.store;
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

#[test]
fn the_log_filters_by_tag_and_performer_and_pages_both_ways() {
    let t = db("logquery");
    let s = &t.store;
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
