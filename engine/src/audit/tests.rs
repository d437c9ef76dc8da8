//! Tests of the hash chain, its verification, its keyed checkpoints and its exports.

use super::*;
use crate::entry::{AuditEntry, Performer, PluginStamp};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::sync::OnceLock;

/// Length of the long chain the tampering tests work on.
const LONG: usize = 10_000;

/// Positions tampered with: the first, the second, the middle, the one before last, the last.
const POSITIONS: [usize; 5] = [0, 1, LONG / 2, LONG - 2, LONG - 1];

fn stamp() -> PluginStamp {
    PluginStamp {
        name: "tagguard-default".into(),
        version: "0.1.0".into(),
        digest: format!("sha256:{}", "ab".repeat(32)),
        generation: 1,
    }
}

fn alice() -> Performer {
    Performer {
        kind: "user",
        name: "alice".into(),
        ip: Some("192.0.2.1".into()),
        request_id: None,
    }
}

/// The `i`-th entry of a test log; every fifth carries a request id.
fn entry(i: usize) -> AuditEntry {
    let tag = format!("v1.{i}");
    let mut metadata = Map::new();
    metadata.insert("tag".into(), tag.as_str().into());
    metadata.insert("policy_uuid".into(), "0b9c6e3a-policy-release".into());
    metadata.insert("pattern".into(), "^v[0-9]+\\.".into());
    let mut performer = alice();
    if i.is_multiple_of(5) {
        performer.request_id = Some(format!("req-{i}"));
    }
    AuditEntry {
        kind: "tag_made_immutable_by_policy",
        namespace: "acme".into(),
        repository: Some("web".into()),
        tag: Some(tag),
        performer,
        time: format!(
            "2026-11-27T13:{:02}:{:02}.{:06}Z",
            i / 60_000 % 60,
            i / 1000 % 60,
            i % 1000 * 1000
        ),
        metadata,
        plugin: stamp(),
    }
}

fn chain_of(n: usize) -> AuditChain {
    let mut chain = AuditChain::new();
    for i in 0..n {
        chain.append(entry(i));
    }
    chain
}

/// A chain of [`LONG`] entries, built once and cloned by each case.
fn long_chain() -> &'static AuditChain {
    static CHAIN: OnceLock<AuditChain> = OnceLock::new();
    CHAIN.get_or_init(|| chain_of(LONG))
}

/// The long chain after `tamper`, with the result of verifying it.
fn tampered(
    tamper: impl FnOnce(&mut Vec<ChainedEntry>),
) -> (Vec<ChainedEntry>, Result<(), ChainBreak>) {
    let mut entries = long_chain().entries().to_vec();
    tamper(&mut entries);
    let result = verify(&entries);
    (entries, result)
}

fn seq(position: usize) -> u64 {
    position as u64 + 1
}

fn hash_mismatch(position: usize) -> Result<(), ChainBreak> {
    Err(ChainBreak::HashMismatch {
        position,
        seq: seq(position),
    })
}

fn prev_hash_mismatch(position: usize) -> Result<(), ChainBreak> {
    Err(ChainBreak::PrevHashMismatch {
        position,
        seq: seq(position),
    })
}

fn sequence_gap(position: usize, found: u64) -> Result<(), ChainBreak> {
    Err(ChainBreak::SequenceGap {
        position,
        expected: seq(position),
        found,
    })
}

#[test]
fn genesis_hash_is_sha256_prefix_and_64_zeros() {
    assert_eq!(GENESIS_HASH.len(), 71);
    assert_eq!(
        GENESIS_HASH.strip_prefix("sha256:"),
        Some("0".repeat(64).as_str())
    );
}

#[test]
fn append_numbers_from_one_and_links_each_entry_to_the_previous() {
    let mut chain = AuditChain::new();
    assert!(chain.is_empty());
    assert_eq!(chain.head_hash(), GENESIS_HASH);
    for i in 0..5 {
        let appended = chain.append(entry(i)).clone();
        assert_eq!(appended.seq, seq(i));
        assert_eq!(
            appended.hash,
            entry_hash(appended.seq, &appended.prev_hash, &appended.entry)
        );
        assert_eq!(chain.head_hash(), appended.hash);
    }
    let entries = chain.entries();
    assert_eq!(chain.len(), 5);
    assert_eq!(entries[0].prev_hash, GENESIS_HASH);
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    let hashes: HashSet<_> = entries.iter().map(|e| &e.hash).collect();
    assert_eq!(hashes.len(), 5, "every entry has its own hash");
}

#[test]
fn canonical_json_is_compact_with_sorted_keys_and_a_stable_hash() {
    let mut e = entry(7);
    e.performer.ip = None;
    e.metadata = Map::new();
    e.metadata
        .insert("zeta".into(), json!({"b": 1, "a": [true, null]}));
    e.metadata.insert("alpha".into(), "x".into());
    let canonical = canonical_json(3, GENESIS_HASH, &e);
    let expected = concat!(
        r#"{"entry":{"kind":"tag_made_immutable_by_policy","metadata":{"alpha":"x","zeta":{"a":[true,null],"b":1}},"#,
        r#""namespace":"acme","performer":{"ip":null,"kind":"user","name":"alice","request_id":null},"#,
        r#""plugin":{"digest":"sha256:abababababababababababababababababababababababababababababababab","generation":1,"#,
        r#""name":"tagguard-default","version":"0.1.0"},"repository":"web","tag":"v1.7","#,
        r#""time":"2026-11-27T13:00:00.007000Z"},"#,
        r#""prev_hash":"sha256:0000000000000000000000000000000000000000000000000000000000000000","seq":3}"#
    );
    assert_eq!(canonical, expected);
    // sha256 of `expected`, computed independently.
    assert_eq!(
        entry_hash(3, GENESIS_HASH, &e),
        "sha256:8bf70ef75d823ed0335b2821410bccb3fc23e2396d04c5be03a1d22f0dde5e1a"
    );
}

#[test]
fn long_chain_verifies() {
    let chain = long_chain();
    assert_eq!(chain.len(), LONG);
    assert_eq!(chain.entries()[LONG - 1].seq, seq(LONG - 1));
    assert_eq!(verify(chain.entries()), Ok(()));
    assert_eq!(verify(&[]), Ok(()));
}

#[test]
fn editing_a_metadata_field_breaks_the_hash_at_that_position() {
    for p in POSITIONS {
        let (_, result) = tampered(|es| {
            es[p]
                .entry
                .metadata
                .insert("policy_uuid".into(), "forged".into());
        });
        assert_eq!(result, hash_mismatch(p), "metadata edited at {p}");
    }
}

#[test]
fn editing_the_performer_breaks_the_hash_at_that_position() {
    for p in POSITIONS {
        let (_, result) = tampered(|es| es[p].entry.performer.name = "mallory".into());
        assert_eq!(result, hash_mismatch(p), "performer edited at {p}");
    }
}

/// One change made to a chained entry.
type Edit = fn(&mut ChainedEntry);

#[test]
fn editing_any_field_is_detected_at_that_position() {
    let content: [(&str, Edit); 13] = [
        ("kind", |e| e.entry.kind = "tag_deleted"),
        ("namespace", |e| e.entry.namespace = "other".into()),
        ("repository", |e| e.entry.repository = None),
        ("tag", |e| e.entry.tag = Some("latest".into())),
        ("performer.kind", |e| e.entry.performer.kind = "robot"),
        ("performer.name", |e| e.entry.performer.name = "bob".into()),
        ("performer.ip", |e| {
            e.entry.performer.ip = Some("198.51.100.7".into())
        }),
        ("performer.request_id", |e| {
            e.entry.performer.request_id = Some("r".into())
        }),
        ("time", |e| {
            e.entry.time = "2026-11-27T00:00:00.000000Z".into()
        }),
        ("metadata key removed", |e| {
            e.entry.metadata.remove("tag");
        }),
        ("plugin.name", |e| e.entry.plugin.name = "other".into()),
        ("plugin.version", |e| {
            e.entry.plugin.version = "9.9.9".into()
        }),
        ("plugin.digest", |e| {
            e.entry.plugin.digest = GENESIS_HASH.into()
        }),
    ];
    let p = 25;
    let link: [(&str, Edit, Result<(), ChainBreak>); 3] = [
        ("hash", |e| e.hash = GENESIS_HASH.into(), hash_mismatch(p)),
        (
            "prev_hash",
            |e| e.prev_hash = GENESIS_HASH.into(),
            prev_hash_mismatch(p),
        ),
        ("seq", |e| e.seq = 99, sequence_gap(p, 99)),
    ];
    let cases = content
        .map(|(field, edit)| (field, edit, hash_mismatch(p)))
        .into_iter()
        .chain(link);
    let chain = chain_of(50);
    for (field, edit, expected) in cases {
        let mut entries = chain.entries().to_vec();
        edit(&mut entries[p]);
        assert_eq!(verify(&entries), expected, "{field} edited");
    }
}

#[test]
fn deleting_an_entry_breaks_the_sequence_where_it_was() {
    for p in POSITIONS.into_iter().filter(|&p| p < LONG - 1) {
        let (_, result) = tampered(|es| {
            es.remove(p);
        });
        // The entry that moved up into position p carries the deleted one's successor seq.
        assert_eq!(result, sequence_gap(p, seq(p) + 1), "deleted at {p}");
    }
}

#[test]
fn inserting_a_well_formed_entry_breaks_the_sequence_of_the_entry_it_displaced() {
    for p in POSITIONS {
        let (_, result) = tampered(|es| {
            let prev_hash = if p == 0 {
                GENESIS_HASH.to_owned()
            } else {
                es[p - 1].hash.clone()
            };
            let forged = entry(LONG + 1);
            let hash = entry_hash(seq(p), &prev_hash, &forged);
            let forged = ChainedEntry {
                seq: seq(p),
                prev_hash,
                hash,
                entry: forged,
            };
            es.insert(p, forged);
        });
        // The forged entry itself is consistent with everything before it;
        // the original entry it pushed to p + 1 still carries seq p + 1.
        assert_eq!(result, sequence_gap(p + 1, seq(p)), "inserted at {p}");
    }
}

#[test]
fn swapping_two_neighbours_breaks_the_sequence_at_the_first() {
    for p in POSITIONS.into_iter().filter(|&p| p < LONG - 1) {
        let (_, result) = tampered(|es| es.swap(p, p + 1));
        assert_eq!(
            result,
            sequence_gap(p, seq(p) + 1),
            "swapped {p} and {}",
            p + 1
        );
    }
}

#[test]
fn editing_and_rehashing_an_entry_breaks_the_link_of_the_next() {
    for p in POSITIONS.into_iter().filter(|&p| p < LONG - 1) {
        let (_, result) = tampered(|es| {
            let e = &mut es[p];
            e.entry.tag = Some("latest".into());
            e.hash = entry_hash(e.seq, &e.prev_hash, &e.entry);
        });
        assert_eq!(
            result,
            prev_hash_mismatch(p + 1),
            "edited and rehashed at {p}"
        );
    }
}

/// One change made to a whole chain.
type Tamper = fn(&mut Vec<ChainedEntry>);

#[test]
fn changes_at_the_tail_verify_but_move_the_head() {
    let original = long_chain().head_hash();
    let last = LONG - 1;
    let truncated: Tamper = |es| {
        es.pop();
    };
    let rehashed: Tamper = |es| {
        let e = &mut es[LONG - 1];
        e.entry.performer.name = "mallory".into();
        e.hash = entry_hash(e.seq, &e.prev_hash, &e.entry);
    };
    let appended: Tamper = |es| {
        let mut chain = AuditChain::new();
        *chain.entries_mut() = std::mem::take(es);
        chain.append(entry(LONG + 1));
        *es = std::mem::take(chain.entries_mut());
    };
    for (case, tamper) in [
        ("truncated", truncated),
        ("rehashed", rehashed),
        ("appended", appended),
    ] {
        let (entries, result) = tampered(tamper);
        assert_eq!(
            result,
            Ok(()),
            "{case}: a consistent tail cannot be told from a real one"
        );
        let head = entries.last().map(|e| e.hash.as_str());
        assert_ne!(head, Some(original), "{case}: the head hash changed");
    }
    // The same edit one entry earlier is caught at the last position.
    let (_, result) = tampered(|es| {
        let e = &mut es[last - 1];
        e.entry.performer.name = "mallory".into();
        e.hash = entry_hash(e.seq, &e.prev_hash, &e.entry);
    });
    assert_eq!(result, prev_hash_mismatch(last));
}

#[test]
fn break_messages_name_position_seq_and_reason() {
    let hash = ChainBreak::HashMismatch {
        position: 41,
        seq: 42,
    };
    assert_eq!(
        hash.to_string(),
        "entry at position 41 (seq 42) was edited: its hash does not match its content"
    );
    let link = ChainBreak::PrevHashMismatch {
        position: 41,
        seq: 42,
    };
    assert_eq!(
        link.to_string(),
        "entry at position 41 (seq 42) is not linked to the entry before it: \
         its prev_hash differs from that entry's hash"
    );
    let gap = ChainBreak::SequenceGap {
        position: 41,
        expected: 42,
        found: 43,
    };
    assert_eq!(
        gap.to_string(),
        "entry at position 41 has seq 43 where seq 42 belongs: an entry was deleted, inserted or moved"
    );
    assert_eq!(
        [hash.position(), link.position(), gap.position()],
        [41, 41, 41]
    );
}

/// A short chain with the variations the exports must handle.
fn varied_chain() -> AuditChain {
    let mut chain = chain_of(20);
    let mut untagged_meta = entry(20);
    untagged_meta.metadata.remove("tag");
    chain.append(untagged_meta);
    let mut spoofing = entry(21);
    spoofing.metadata.insert("seq".into(), 999.into());
    spoofing
        .metadata
        .insert("plugin_digest".into(), "sha256:forged".into());
    chain.append(spoofing);
    let mut namespace_level = entry(22);
    namespace_level.kind = "immutability_policy_evaluated";
    namespace_level.repository = None;
    namespace_level.tag = None;
    namespace_level.metadata.remove("tag");
    namespace_level.performer.ip = None;
    chain.append(namespace_level);
    chain
}

fn parse_lines(jsonl: &str) -> Vec<Value> {
    assert!(jsonl.ends_with('\n'), "every line is terminated");
    jsonl
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn metadata_of(line: &Value) -> Map<String, Value> {
    let text = line["metadata_json"]
        .as_str()
        .expect("metadata_json is a string");
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        other => panic!("metadata_json is not an object: {other:?}"),
    }
}

#[test]
fn quay_lines_carry_every_field_and_the_host_metadata() {
    let chain = varied_chain();
    let lines = parse_lines(&to_quay_jsonl(chain.entries()));
    assert_eq!(lines.len(), chain.len());
    for (line, e) in lines.iter().zip(chain.entries()) {
        let object = line.as_object().expect("each line is an object");
        assert_eq!(object.len(), QUAY_FIELDS.len());
        for field in QUAY_FIELDS {
            assert!(object.contains_key(field), "seq {}: {field} missing", e.seq);
        }
        assert_eq!(line["kind"], e.entry.kind);
        assert_eq!(line["account"], "acme");
        assert_eq!(line["performer"], "alice");
        assert_eq!(line["datetime"], e.entry.time.as_str());
        let meta = metadata_of(line);
        assert_eq!(meta["plugin_digest"], e.entry.plugin.digest.as_str());
        assert_eq!(meta["plugin_name"], "tagguard-default");
        assert_eq!(meta["plugin_version"], "0.1.0");
        assert_eq!(meta["performer_kind"], "user");
        assert_eq!(meta["seq"], e.seq);
        assert_eq!(meta["hash"], e.hash.as_str());
        assert_eq!(meta["prev_hash"], e.prev_hash.as_str());
        assert_eq!(meta["policy_uuid"], "0b9c6e3a-policy-release");
        assert_eq!(
            meta.get("request_id").and_then(Value::as_str),
            e.entry.performer.request_id.as_deref()
        );
        match &e.entry.tag {
            Some(tag) => assert_eq!(meta["tag"], tag.as_str()),
            None => assert!(!meta.contains_key("tag")),
        }
    }
    assert_eq!(
        metadata_of(&lines[20])["tag"],
        "v1.20",
        "tag filled in from the entry"
    );
}

#[test]
fn quay_host_fields_replace_metadata_fields_of_the_same_name() {
    let chain = varied_chain();
    let spoofing = &chain.entries()[21];
    let meta = metadata_of(&quay_log_line(spoofing));
    assert_eq!(meta["seq"], 22);
    assert_eq!(meta["plugin_digest"], spoofing.entry.plugin.digest.as_str());
}

#[test]
fn quay_line_without_repository_or_ip_keeps_them_as_null() {
    let chain = varied_chain();
    let line = quay_log_line(&chain.entries()[22]);
    assert_eq!(line.get("repository"), Some(&Value::Null));
    assert_eq!(line.get("ip"), Some(&Value::Null));
    assert_eq!(missing_fields(&line, &QUAY_FIELDS), ["repository", "ip"]);
}

#[test]
fn missing_fields_reports_removed_and_null_fields() {
    let chain = chain_of(3);
    let mut line = quay_log_line(&chain.entries()[1]);
    assert!(missing_fields(&line, &QUAY_FIELDS).is_empty());
    let object = line.as_object_mut().expect("a Quay line is an object");
    object.remove("metadata_json");
    object.insert("account".into(), Value::Null);
    assert_eq!(
        missing_fields(&line, &QUAY_FIELDS),
        ["account", "metadata_json"]
    );
    assert_eq!(
        missing_fields(&json!("text"), &CLOUDEVENT_REQUIRED),
        CLOUDEVENT_REQUIRED
    );
}

#[test]
fn cloud_events_carry_the_required_attributes_and_unique_ids() {
    let chain = chain_of(2000);
    let source = "/registry/quay.example";
    let events = parse_lines(&to_cloudevents_jsonl(chain.entries(), source));
    assert_eq!(events.len(), chain.len());
    let mut ids = HashSet::new();
    for (event, e) in events.iter().zip(chain.entries()) {
        assert!(
            missing_fields(event, &CLOUDEVENT_REQUIRED).is_empty(),
            "seq {}",
            e.seq
        );
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], source);
        assert_eq!(event["id"], e.hash.as_str());
        assert!(
            ids.insert(event["id"].to_string()),
            "seq {}: duplicate id",
            e.seq
        );
        assert_eq!(event["time"], e.entry.time.as_str());
        assert_eq!(
            event["type"],
            "io.tagguard.audit.tag_made_immutable_by_policy"
        );
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(event["data"]["seq"], e.seq);
        assert_eq!(event["data"]["prev_hash"], e.prev_hash.as_str());
        assert_eq!(
            event["data"]["entry"]["tag"],
            e.entry.tag.as_deref().unwrap_or_default()
        );
    }
}

#[test]
fn cloud_event_subject_names_the_narrowest_object() {
    let chain = varied_chain();
    let subjects: Vec<Value> = [0, 22]
        .iter()
        .map(|&i| cloud_event(&chain.entries()[i], "/r")["subject"].clone())
        .collect();
    assert_eq!(subjects, ["acme/web:v1.0", "acme"]);
    let mut untagged = chain.entries()[0].clone();
    untagged.entry.tag = None;
    let event = cloud_event(&untagged, "/r");
    assert_eq!(event["subject"], "acme/web");
    assert_eq!(
        cloud_event(&chain.entries()[22], "/r")["type"],
        "io.tagguard.audit.immutability_policy_evaluated"
    );
}

#[test]
fn export_format_parses_the_three_names_and_rejects_others() {
    assert_eq!("json".parse(), Ok(ExportFormat::Json));
    assert_eq!("quay".parse(), Ok(ExportFormat::Quay));
    assert_eq!("cloudevents".parse(), Ok(ExportFormat::CloudEvents));
    for bad in ["xml", "JSON", "", "cloud-events"] {
        let err = bad.parse::<ExportFormat>().expect_err(bad);
        let message = err.to_string();
        assert_eq!(err.name, bad);
        assert!(message.contains(&format!("`{bad}`")), "{message}");
        for name in ["json", "quay", "cloudevents"] {
            assert!(message.contains(name), "{message} names {name}");
        }
    }
}

#[test]
fn export_writes_each_format() {
    let chain = varied_chain();
    let entries = chain.entries();
    let json_lines = parse_lines(&export(entries, ExportFormat::Json, "/r"));
    assert_eq!(json_lines.len(), entries.len());
    for (line, e) in json_lines.iter().zip(entries) {
        assert_eq!(line, &serde_json::to_value(e).expect("entry serializes"));
    }
    let first = export(entries, ExportFormat::Json, "/r");
    assert!(
        first.starts_with(r#"{"seq":1,"prev_hash":"sha256:000"#),
        "{first}"
    );
    assert_eq!(
        export(entries, ExportFormat::Quay, "/r"),
        to_quay_jsonl(entries)
    );
    assert_eq!(
        export(entries, ExportFormat::CloudEvents, "/r"),
        to_cloudevents_jsonl(entries, "/r")
    );
    assert_eq!(export(&[], ExportFormat::Json, "/r"), "");
}

#[test]
fn the_streamed_canonical_form_equals_the_sorted_value_form_of_the_whole_entry() {
    // If AuditEntry gains a field that the canonical view misses, this fails.
    for n in [0, 1, 42] {
        let mut e = entry(n);
        e.performer.request_id = Some(format!("req-{n}"));
        e.metadata.insert(
            "nested".into(),
            json!({"z": [1, {"y": 2, "x": 3}], "a": null}),
        );
        let value_form = json!({ "entry": e, "prev_hash": GENESIS_HASH, "seq": n + 1 }).to_string();
        assert_eq!(canonical_json(n as u64 + 1, GENESIS_HASH, &e), value_form);
        let expected_hash = {
            use sha2::Digest;
            let d = sha2::Sha256::digest(value_form.as_bytes());
            format!(
                "sha256:{}",
                d.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
        };
        assert_eq!(entry_hash(n as u64 + 1, GENESIS_HASH, &e), expected_hash);
    }
}

// Keyed checkpoints of the chain head.

/// The registry's checkpoint key in these tests.
fn registry_key() -> CheckpointKey {
    CheckpointKey::from_bytes(b"registry-checkpoint-key-32-bytes").expect("32 bytes")
}

/// The log the checkpoint tests start from: 20 entries, checkpointed after 12.
fn checkpointed_log() -> (Vec<ChainedEntry>, Checkpoint) {
    let key = registry_key();
    let mut chain = chain_of(12);
    let checkpoint = chain.checkpoint(&key).expect("the chain is not empty");
    for i in 12..20 {
        chain.append(entry(i));
    }
    (chain.entries().to_vec(), checkpoint)
}

/// What an attacker with write access to the log does after editing entries:
/// recompute `prev_hash` and `hash` of every entry from `position` on.
fn rehash_from(entries: &mut [ChainedEntry], position: usize) {
    for p in position..entries.len() {
        let prev_hash = match p {
            0 => GENESIS_HASH.to_owned(),
            _ => entries[p - 1].hash.clone(),
        };
        let e = &mut entries[p];
        e.prev_hash = prev_hash;
        e.hash = entry_hash(e.seq, &e.prev_hash, &e.entry);
    }
}

/// The log after editing the metadata of the entry at `position` and rehashing the rest.
fn rewritten_at(position: usize) -> Vec<ChainedEntry> {
    let (mut entries, _) = checkpointed_log();
    entries[position]
        .entry
        .metadata
        .insert("policy_uuid".into(), "forged".into());
    rehash_from(&mut entries, position);
    entries
}

fn covered(last_seq: u64, covered_through: Option<u64>) -> Result<VerifiedUpTo, CheckpointBreak> {
    Ok(VerifiedUpTo {
        last_seq,
        covered_through,
        uncovered: last_seq - covered_through.unwrap_or(0),
    })
}

#[test]
fn checkpoint_keys_shorter_than_16_bytes_are_refused() {
    assert_eq!(
        CheckpointKey::from_bytes(b"").unwrap_err(),
        CheckpointKeyError::Empty
    );
    assert_eq!(
        CheckpointKey::from_bytes(&[7; 15]).unwrap_err(),
        CheckpointKeyError::TooShort { len: 15 }
    );
    assert_eq!(
        CheckpointKeyError::TooShort { len: 15 }.to_string(),
        "checkpoint key is 15 bytes long; at least 16 are required"
    );
    assert!(CheckpointKey::from_bytes(&[7; MIN_KEY_LEN]).is_ok());
    assert!(CheckpointKey::from_bytes(&[7; 64]).is_ok());
}

#[test]
fn checkpoint_key_debug_does_not_show_the_key() {
    let key = CheckpointKey::from_bytes(b"SECRET-KEY-MATERIAL-0123456789").expect("30 bytes");
    let shown = format!("{key:?} {key:#?}");
    assert!(!shown.contains("SECRET"), "{shown}");
    assert_eq!(format!("{key:?}"), "CheckpointKey(<redacted>)");
}

#[test]
fn checkpoint_mac_is_hmac_sha256_of_the_documented_encoding() {
    let key = CheckpointKey::from_bytes(&(0..32).collect::<Vec<u8>>()).expect("32 bytes");
    let head = format!("sha256:{}", "ab".repeat(32));
    let checkpoint = key.sign(3, &head);
    assert_eq!(checkpoint.seq, 3);
    assert_eq!(checkpoint.head_hash, head);
    // HMAC-SHA256 with key 00 01 .. 1f over "tagguard-audit-checkpoint-v1" || 00
    // || u64be(3) || u64be(71) || head, computed independently.
    assert_eq!(
        checkpoint.mac,
        "hmac-sha256:9f81231a353226743d615d3b7f2c29e87286147bd0ee9d4740328c292ebccda5"
    );
    assert_eq!(CHECKPOINT_LABEL, "tagguard-audit-checkpoint-v1");
    assert!(checkpoint.mac.starts_with(MAC_PREFIX));
}

#[test]
fn chain_checkpoint_signs_the_current_head_and_round_trips_as_json() {
    let key = registry_key();
    assert_eq!(AuditChain::new().checkpoint(&key), None);
    let chain = chain_of(7);
    let checkpoint = chain.checkpoint(&key).expect("the chain is not empty");
    assert_eq!(checkpoint, key.sign(7, chain.head_hash()));
    let json = serde_json::to_string(&checkpoint).expect("a checkpoint serializes");
    assert!(
        json.starts_with(r#"{"seq":7,"head_hash":"sha256:"#),
        "{json}"
    );
    let back: Checkpoint = serde_json::from_str(&json).expect("and deserializes");
    assert_eq!(back, checkpoint);
}

#[test]
fn untouched_log_verifies_and_reports_entries_after_the_last_checkpoint() {
    let key = registry_key();
    let (entries, at_12) = checkpointed_log();
    assert_eq!(verify_against(&entries, &key, &[]), covered(20, None));
    let result = verify_against(&entries, &key, std::slice::from_ref(&at_12));
    assert_eq!(result, covered(20, Some(12)));
    assert_eq!(
        result.map(|v| v.uncovered),
        Ok(8),
        "seqs 13..=20 are only chained"
    );
    let at_20 = key.sign(20, &entries[19].hash);
    assert_eq!(
        verify_against(&entries, &key, &[at_12, at_20]),
        covered(20, Some(20))
    );
    // The empty log, checkpointed at seq 0 with the genesis hash.
    assert_eq!(
        verify_against(&[], &key, &[key.sign(0, GENESIS_HASH)]),
        covered(0, Some(0))
    );
}

#[test]
fn rewriting_an_entry_before_a_checkpoint_passes_verify_but_not_the_checkpoint() {
    let key = registry_key();
    let (_, at_12) = checkpointed_log();
    // Positions 0, 4 and 11 hold seqs 1, 5 and 12, all covered by the checkpoint at 12.
    for position in [0, 4, 11] {
        let entries = rewritten_at(position);
        assert_eq!(verify(&entries), Ok(()), "rewritten at {position}");
        assert_eq!(
            verify_against(&entries, &key, std::slice::from_ref(&at_12)),
            Err(CheckpointBreak::HeadMismatch { index: 0, seq: 12 }),
            "rewritten at {position}"
        );
    }
}

#[test]
fn a_rewrite_is_named_by_the_first_checkpoint_it_contradicts() {
    let key = registry_key();
    let (original, at_12) = checkpointed_log();
    let at_20 = key.sign(20, &original[19].hash);
    let both = [at_12, at_20];
    assert_eq!(
        verify_against(&rewritten_at(4), &key, &both),
        Err(CheckpointBreak::HeadMismatch { index: 0, seq: 12 })
    );
    assert_eq!(
        verify_against(&rewritten_at(15), &key, &both),
        Err(CheckpointBreak::HeadMismatch { index: 1, seq: 20 })
    );
}

#[test]
fn a_rewrite_after_the_last_checkpoint_is_not_detected() {
    let key = registry_key();
    let (_, at_12) = checkpointed_log();
    // Seq 16 is after the checkpoint: only the unkeyed chain covers it.
    let entries = rewritten_at(15);
    assert_eq!(
        verify_against(&entries, &key, &[at_12]),
        covered(20, Some(12))
    );
}

#[test]
fn truncating_the_log_below_a_checkpoint_is_detected() {
    let key = registry_key();
    let (entries, at_12) = checkpointed_log();
    for keep in [0, 1, 11] {
        let truncated = &entries[..keep];
        assert_eq!(verify(truncated), Ok(()), "kept {keep}");
        assert_eq!(
            verify_against(truncated, &key, std::slice::from_ref(&at_12)),
            Err(CheckpointBreak::MissingEntry {
                index: 0,
                seq: 12,
                last_seq: keep as u64,
            }),
            "kept {keep}"
        );
    }
    // Down to the checkpoint itself, a truncation leaves nothing to see.
    assert_eq!(
        verify_against(&entries[..12], &key, &[at_12]),
        covered(12, Some(12))
    );
}

#[test]
fn a_checkpoint_forged_with_another_key_is_detected() {
    let key = registry_key();
    let attacker =
        CheckpointKey::from_bytes(b"attacker-key-guessing-32-bytes!!").expect("32 bytes");
    let entries = rewritten_at(4);
    let forged = attacker.sign(12, &entries[11].hash);
    assert_eq!(
        verify_against(&entries, &key, &[forged]),
        Err(CheckpointBreak::InvalidMac { index: 0, seq: 12 })
    );
    // The attacker can verify their own checkpoint, which proves nothing to the registry.
    assert_eq!(
        verify_against(&entries, &attacker, &[attacker.sign(12, &entries[11].hash)]),
        covered(20, Some(12))
    );
}

#[test]
fn an_altered_or_malformed_checkpoint_is_detected() {
    let key = registry_key();
    let (original, at_12) = checkpointed_log();
    let rewritten = rewritten_at(4);
    let cases: [(&str, &[ChainedEntry], Checkpoint); 6] = [
        (
            "head_hash moved to the rewritten chain",
            &rewritten,
            Checkpoint {
                head_hash: rewritten[11].hash.clone(),
                ..at_12.clone()
            },
        ),
        (
            "seq moved back",
            &original,
            Checkpoint {
                seq: 11,
                head_hash: original[10].hash.clone(),
                ..at_12.clone()
            },
        ),
        (
            "mac in uppercase",
            &original,
            Checkpoint {
                mac: format!(
                    "{MAC_PREFIX}{}",
                    at_12.mac[MAC_PREFIX.len()..].to_uppercase()
                ),
                ..at_12.clone()
            },
        ),
        (
            "mac without its prefix",
            &original,
            Checkpoint {
                mac: at_12.mac[MAC_PREFIX.len()..].to_owned(),
                ..at_12.clone()
            },
        ),
        (
            "mac cut short",
            &original,
            Checkpoint {
                mac: at_12.mac[..at_12.mac.len() - 2].to_owned(),
                ..at_12.clone()
            },
        ),
        (
            "mac empty",
            &original,
            Checkpoint {
                mac: String::new(),
                ..at_12.clone()
            },
        ),
    ];
    for (case, entries, checkpoint) in cases {
        let seq = checkpoint.seq;
        assert_eq!(
            verify_against(entries, &key, &[checkpoint]),
            Err(CheckpointBreak::InvalidMac { index: 0, seq }),
            "{case}"
        );
    }
}

#[test]
fn checkpoints_must_have_strictly_increasing_seqs() {
    let key = registry_key();
    let (entries, at_12) = checkpointed_log();
    let at_20 = key.sign(20, &entries[19].hash);
    assert_eq!(
        verify_against(&entries, &key, &[at_20.clone(), at_12.clone()]),
        Err(CheckpointBreak::OutOfOrder {
            index: 1,
            seq: 12,
            previous: 20,
        })
    );
    assert_eq!(
        verify_against(&entries, &key, &[at_12.clone(), at_12]),
        Err(CheckpointBreak::OutOfOrder {
            index: 1,
            seq: 12,
            previous: 12,
        })
    );
}

#[test]
fn a_broken_chain_is_reported_before_any_checkpoint() {
    let key = registry_key();
    let (mut entries, at_12) = checkpointed_log();
    entries[4].entry.performer.name = "mallory".into();
    assert_eq!(
        verify_against(&entries, &key, &[at_12]),
        Err(CheckpointBreak::Chain(ChainBreak::HashMismatch {
            position: 4,
            seq: 5,
        }))
    );
}

#[test]
fn checkpoint_break_messages_name_the_checkpoint_and_seq() {
    let cases = [
        (
            CheckpointBreak::InvalidMac { index: 2, seq: 40 },
            "checkpoint 2 (seq 40) has an invalid MAC: \
             it was forged, altered, or signed with another key",
        ),
        (
            CheckpointBreak::OutOfOrder {
                index: 2,
                seq: 40,
                previous: 50,
            },
            "checkpoint 2 has seq 40, not after the previous checkpoint's seq 50: \
             checkpoints are out of order or duplicated",
        ),
        (
            CheckpointBreak::MissingEntry {
                index: 2,
                seq: 40,
                last_seq: 31,
            },
            "the log was truncated below checkpoint 2 (seq 40): its last entry has seq 31",
        ),
        (
            CheckpointBreak::HeadMismatch { index: 2, seq: 40 },
            "the entry at seq 40 does not match checkpoint 2: an entry at or before seq 40 \
             was edited and the chain rewritten (or the checkpoint is another log's)",
        ),
        (
            CheckpointBreak::Chain(ChainBreak::HashMismatch {
                position: 4,
                seq: 5,
            }),
            "the hash chain is broken: entry at position 4 (seq 5) was edited: \
             its hash does not match its content",
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}
