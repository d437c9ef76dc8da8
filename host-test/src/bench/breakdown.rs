//! Where the time goes: the parts of a push and of a retroactive tag record,
//! each timed on its own (medians, in alternation), so a missed target can be
//! traced to a component. Printed as a second table; nothing here is judged.

use crate::hosts::{DroppingSink, no_tags};
use crate::mode::Mode;
use crate::stats::{Subject, fmt_ns, interleaved};
use crate::table::render_columns;
use crate::workload::{NAMESPACE, PolicySet, REPOSITORY, ROTATION, engine_pushes, guest_pushes};
use anyhow::{Result, anyhow};
use serde::Deserialize;
use std::borrow::Cow;
use std::cell::RefCell;
use std::hint::black_box;
use std::sync::Arc;
use tagguard_engine::audit::{AuditChain, GENESIS_HASH, canonical_json};
use tagguard_engine::bindings::types::{AuditRecord, RecordKind};
use tagguard_engine::{AuditEntry, Performer, Plugin, Settings, TagGuard};
use tagguard_guest::memory_host::MemoryHost;
use tagguard_guest::model as g;
use tagguard_guest::plugin::PolicyPlugin;
use tagguard_guest::records;
use tagguard_host_test::user;

/// A guest record as it crosses the boundary (its metadata is already JSON text).
fn to_engine(record: &g::AuditRecord) -> AuditRecord {
    AuditRecord {
        kind: RecordKind::TagMadeImmutableByPolicy,
        namespace: record.namespace.clone(),
        repository: record.repository.clone(),
        tag: record.tag.clone(),
        metadata_json: record.metadata_json.clone(),
    }
}

/// Workload tag `i` as a store holds it.
fn run_tag(i: usize) -> g::Tag {
    g::Tag {
        id: i as u64 + 1,
        namespace: NAMESPACE.into(),
        repository: REPOSITORY.into(),
        name: crate::workload::tag_name(i),
        manifest_digest: format!("sha256:{:064x}", i + 1),
        immutable: false,
    }
}

/// The record a retroactive run writes for workload tag `i`.
fn run_record(i: usize, policy: &g::Policy) -> g::AuditRecord {
    records::made_immutable_by_run(&run_tag(i), policy, "policy_created", "run-bench")
}

/// Sketch of a fix: only the metadata fields the guard checks, borrowed from the JSON.
#[derive(Deserialize)]
#[allow(dead_code)] // Read only to be parsed: the sketch times the parse.
struct Claims<'a> {
    #[serde(borrow)]
    tag: Option<Cow<'a, str>>,
    #[serde(borrow)]
    run_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    policy_uuid: Option<Cow<'a, str>>,
    immutable: Option<bool>,
    previous_immutable: Option<bool>,
}

/// Times every component; returns the table to print.
pub fn run(mode: &Mode, plugin: &Plugin) -> Result<String> {
    let actor = user("ci");
    let guard = TagGuard::new(
        plugin.clone(),
        Arc::new(no_tags()),
        Arc::new(DroppingSink::default()),
        Settings::default(),
    )?;
    let recorded = engine_pushes(&actor, PolicySet::Ten, (0..ROTATION).map(|k| 2 * k));
    let unrecorded = engine_pushes(&actor, PolicySet::Ten, (0..ROTATION).map(|k| 2 * k + 1));
    let bare: Vec<_> = unrecorded
        .iter()
        .cloned()
        .map(|mut r| {
            r.policies.clear();
            r
        })
        .collect();
    let (ten, one) = (PolicySet::Ten.engine(), PolicySet::One.engine());
    let native_recorded = guest_pushes(PolicySet::Ten, (0..ROTATION).map(|k| 2 * k));
    let native_unrecorded = guest_pushes(PolicySet::Ten, (0..ROTATION).map(|k| 2 * k + 1));
    let mut native = PolicyPlugin::new();
    let mut host = MemoryHost::default();
    let mut native_floor = PolicyPlugin::new();
    let mut floor_host = MemoryHost::default();
    // The record of a recorded push, and of a tag marked by a run, as the guest builds them.
    let push_record = {
        let mut h = MemoryHost::default();
        native
            .on_push(&mut h, &native_recorded[0])
            .map_err(|e| anyhow!("native on_push: {e}"))?;
        h.staged.pop().ok_or_else(|| anyhow!("no record staged"))?
    };
    let semver = PolicySet::One.guest().remove(0);
    let performer = Performer::of(&actor);
    let stamp = plugin.stamp().clone();
    let push_wire = to_engine(&push_record);
    let run_wire = to_engine(&run_record(0, &semver));
    let run_entry = AuditEntry::stamp(run_wire.clone(), &performer, &stamp)
        .map_err(|e| anyhow!("stamping a run record: {e}"))?;
    let chain = RefCell::new(AuditChain::new());

    let names = [
        "push, 10 policies, recorded (through the plugin)",
        "push, 10 policies, not recorded",
        "push, no policies in scope (fixed cost of a call)",
        "explain, 10 policies (no record)",
        "explain, 1 policy (no record)",
        "explain, 10 policies, one fires (one match returned)",
        "native on_push, 10 policies, recorded",
        "native on_push, 10 policies, not recorded",
        "host: stamp the push record (parse JSON, time, clones)",
        "native: build + serialize one run record",
        "host: stamp one run record",
        "mock registry: hash-chain append of one run entry",
        "mock registry: canonical JSON of one run entry",
        "reference: serialize the run entry as stored (no key order)",
        "fix sketch (host): parse only the fields the guard checks",
    ];
    let mut subjects = [
        Subject::new(mode.calls, |i| {
            black_box(guard.push(&recorded[i % ROTATION])?);
            Ok(())
        }),
        Subject::new(mode.calls, |i| {
            black_box(guard.push(&unrecorded[i % ROTATION])?);
            Ok(())
        }),
        Subject::new(mode.calls, |i| {
            black_box(guard.push(&bare[i % ROTATION])?);
            Ok(())
        }),
        Subject::new(mode.calls, |i| {
            black_box(guard.explain(&unrecorded[i % ROTATION].tag_name, &ten)?);
            Ok(())
        }),
        Subject::new(mode.calls, |i| {
            black_box(guard.explain(&unrecorded[i % ROTATION].tag_name, &one)?);
            Ok(())
        }),
        Subject::new(mode.calls, |i| {
            black_box(guard.explain(&recorded[i % ROTATION].tag_name, &ten)?);
            Ok(())
        }),
        Subject::new(mode.calls, |i| {
            let d = native
                .on_push(&mut host, &native_recorded[i % ROTATION])
                .map_err(|e| anyhow!("native on_push: {e}"))?;
            black_box(d);
            host.staged.clear();
            Ok(())
        }),
        Subject::new(mode.calls, |i| {
            let d = native_floor
                .on_push(&mut floor_host, &native_unrecorded[i % ROTATION])
                .map_err(|e| anyhow!("native on_push: {e}"))?;
            black_box(d);
            Ok(())
        }),
        Subject::new(mode.calls, |_| {
            let entry = AuditEntry::stamp(push_wire.clone(), &performer, &stamp)
                .map_err(|e| anyhow!("stamp: {e}"))?;
            black_box(entry);
            Ok(())
        }),
        Subject::new(mode.calls, |i| {
            black_box(to_engine(&run_record(i, &semver)));
            Ok(())
        }),
        Subject::new(mode.calls, |_| {
            let entry = AuditEntry::stamp(run_wire.clone(), &performer, &stamp)
                .map_err(|e| anyhow!("stamp: {e}"))?;
            black_box(entry);
            Ok(())
        }),
        Subject::new(mode.calls, |_| {
            black_box(chain.borrow_mut().append(run_entry.clone()));
            Ok(())
        })
        .between(|| *chain.borrow_mut() = AuditChain::new()),
        Subject::new(mode.calls, |i| {
            black_box(canonical_json(i as u64 + 1, GENESIS_HASH, &run_entry));
            Ok(())
        }),
        Subject::new(mode.calls, |_| {
            black_box(serde_json::to_string(&run_entry)?);
            Ok(())
        }),
        Subject::new(mode.calls, |_| {
            black_box(serde_json::from_str::<Claims<'_>>(&run_wire.metadata_json)?);
            Ok(())
        }),
    ];
    let m = interleaved(mode.samples, &mut subjects)?;
    let mut cells: Vec<Vec<String>> = names
        .iter()
        .zip(&m)
        .map(|(name, ns)| vec![name.to_string(), fmt_ns(*ns)])
        .collect();
    cells.push(vec![
        "derived: each policy in scope, per call (explain 10 vs 1, ÷ 9)".into(),
        fmt_ns((m[3] - m[4]) / 9.0),
    ]);
    cells.push(vec![
        "derived: recording on push (recorded − not recorded)".into(),
        fmt_ns(m[0] - m[1]),
    ]);
    cells.push(vec![
        "derived: building the push record, native (recorded − not recorded)".into(),
        fmt_ns(m[6] - m[7]),
    ]);
    Ok(render_columns(
        &["component (median per call)", "time"],
        &cells,
    ))
}
