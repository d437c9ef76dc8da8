//! Section 3: a retroactive run over many tags, half of them matching one
//! policy, in the mock registry through the plugin, against the same guest
//! logic run natively over tags in a `Vec`; and, to tell the engine's cost
//! from the mock registry's, the engine over an in-memory `Vec` store. Each
//! case runs in a child process (this binary, hidden subcommand
//! `retro-case`) so that each has its own peak memory, read from
//! `/proc/self/status` at its end.

use crate::mode::Mode;
use crate::stats::{fmt_kib, fmt_rate, fmt_ratio, median_ns};
use crate::table::{Met, Row};
use crate::workload::{NAMESPACE, PolicySet, REPOSITORY, SEMVER, tag_name};
use anyhow::{Context, Result, anyhow, bail};
use clap::ValueEnum;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;
use tagguard_engine::MemoryStore;
use tagguard_engine::{Granularity, Plugin, RunTrigger, Runtime, Settings, TagGuard};
use tagguard_guest::memory_host::MemoryHost;
use tagguard_guest::model as g;
use tagguard_guest::plugin::PolicyPlugin;
use tagguard_host_test::{AuditQuery, NewPolicy, Registry, user};

/// Tags per batch in every case.
pub const BATCH: u32 = 500;

/// The target for a million-tag run with per-tag records: at most this factor of native.
const BAR_PER_TAG: f64 = 2.5;
/// The target for a million-tag run with per-batch records: at most this factor of native.
const BAR_PER_BATCH: f64 = 1.5;
/// The target for the peak memory of either run: at most this factor of native.
const BAR_MEMORY: f64 = 1.5;

/// One retroactive case, run in its own process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum Case {
    /// The guest logic natively, one record per tag.
    NativePerTag,
    /// The mock registry through the plugin, one record per tag.
    RegistryPerTag,
    /// The guest logic natively, one record per batch.
    NativePerBatch,
    /// The mock registry through the plugin, one record per batch.
    RegistryPerBatch,
    /// The engine and plugin over a `Vec` store, one record per tag.
    EnginePerTag,
    /// The engine and plugin over a `Vec` store, one record per batch.
    EnginePerBatch,
}

impl Case {
    fn arg(self) -> &'static str {
        match self {
            Case::NativePerTag => "native-per-tag",
            Case::RegistryPerTag => "registry-per-tag",
            Case::NativePerBatch => "native-per-batch",
            Case::RegistryPerBatch => "registry-per-batch",
            Case::EnginePerTag => "engine-per-tag",
            Case::EnginePerBatch => "engine-per-batch",
        }
    }
}

/// Per-tag or per-batch records.
fn granularity(case: Case) -> Granularity {
    match case {
        Case::NativePerTag | Case::RegistryPerTag | Case::EnginePerTag => Granularity::PerTag,
        Case::NativePerBatch | Case::RegistryPerBatch | Case::EnginePerBatch => {
            Granularity::PerBatch
        }
    }
}

/// Engine settings of a case run through the plugin.
fn settings(case: Case) -> Settings {
    Settings {
        batch_size: BATCH,
        granularity: granularity(case),
    }
}

/// Guest run options of a native case.
fn guest_options(case: Case) -> g::RunOptions {
    g::RunOptions {
        run_id: "run-native".into(),
        batch_size: BATCH,
        granularity: match granularity(case) {
            Granularity::PerTag => g::Granularity::PerTag,
            Granularity::PerBatch => g::Granularity::PerBatch,
        },
    }
}

/// A `Vm*` field of `/proc/self/status`, in KiB.
fn vm_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/self/status"))
}

/// What one case printed.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    secs: f64,
    records: u64,
    seeded_kib: u64,
    peak_kib: u64,
}

/// The hidden subcommand: runs one case over `tags` tags and prints one result line.
pub fn child(case: Case, tags: usize) -> Result<()> {
    let expected = tags.div_ceil(2) as u64;
    let names = (0..tags).map(tag_name);
    let (secs, count, seeded_kib, peak_kib, records) = match case {
        Case::NativePerTag | Case::NativePerBatch => {
            let mut host = MemoryHost::new(
                names
                    .enumerate()
                    .map(|(i, name)| g::Tag {
                        id: i as u64 + 1,
                        namespace: NAMESPACE.into(),
                        repository: REPOSITORY.into(),
                        name,
                        manifest_digest: format!("sha256:{:064x}", i + 1),
                        immutable: false,
                    })
                    .collect(),
            );
            let seeded = vm_kib("VmRSS")?;
            let policy = PolicySet::One.guest().remove(0);
            let options = guest_options(case);
            let mut plugin = PolicyPlugin::new();
            let start = Instant::now();
            let summary = plugin
                .run_retroactive(&mut host, &policy, g::RunTrigger::PolicyCreated, &options)
                .map_err(|e| anyhow!("native run: {e}"))?;
            let secs = start.elapsed().as_secs_f64();
            let peak = vm_kib("VmHWM")?;
            (secs, summary.count, seeded, peak, host.committed.len())
        }
        Case::RegistryPerTag | Case::RegistryPerBatch => {
            let runtime = Runtime::new()?;
            let plugin = Plugin::default_plugin(&runtime)?;
            let registry = Registry::new(plugin, settings(case));
            registry.db().seed_tags(NAMESPACE, REPOSITORY, names);
            let seeded = vm_kib("VmRSS")?;
            let policy = NewPolicy {
                uuid: Some("p-semver".into()),
                namespace: NAMESPACE.into(),
                repository: None,
                pattern: SEMVER.into(),
                matches: true,
            };
            let start = Instant::now();
            let outcome = registry.create_policy(&user("admin"), &policy)?;
            let secs = start.elapsed().as_secs_f64();
            let peak = vm_kib("VmHWM")?;
            let records = registry
                .audit(&AuditQuery {
                    kind: Some("tag_made_immutable_by_policy"),
                    ..AuditQuery::default()
                })
                .len();
            (secs, outcome.run.count, seeded, peak, records)
        }
        Case::EnginePerTag | Case::EnginePerBatch => {
            let runtime = Runtime::new()?;
            let plugin = Plugin::default_plugin(&runtime)?;
            let store = Arc::new(MemoryStore::new(NAMESPACE, REPOSITORY, names));
            let guard = TagGuard::new(plugin, store.clone(), store.clone(), settings(case))?;
            let seeded = vm_kib("VmRSS")?;
            let policy = PolicySet::One.engine().remove(0);
            let start = Instant::now();
            let summary = guard.apply_policy(&user("admin"), &policy, RunTrigger::PolicyCreated)?;
            let secs = start.elapsed().as_secs_f64();
            let peak = vm_kib("VmHWM")?;
            let records = store.records("tag_made_immutable_by_policy");
            (secs, summary.count, seeded, peak, records)
        }
    };
    if count != expected {
        bail!(
            "{}: the run made {count} tags immutable, expected {expected}",
            case.arg()
        );
    }
    println!(
        "retro-case secs={secs} count={count} records={records} seeded_kib={seeded_kib} peak_kib={peak_kib}"
    );
    Ok(())
}

/// Runs one case in a child process and parses its line.
fn spawn(case: Case, tags: usize) -> Result<Outcome> {
    // `/proc/self/exe` runs this very image even if a build replaces the file meanwhile.
    let exe = match std::path::Path::new("/proc/self/exe") {
        p if p.exists() => p.to_path_buf(),
        _ => std::env::current_exe().context("locating the bench binary")?,
    };
    let out = Command::new(exe)
        .args(["retro-case", "--case", case.arg(), "--tags"])
        .arg(tags.to_string())
        .stderr(Stdio::inherit())
        .output()
        .context("running a retroactive case")?;
    if !out.status.success() {
        bail!("retroactive case {} failed ({})", case.arg(), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("retro-case "))
        .with_context(|| format!("case {} printed no result: {text}", case.arg()))?;
    let fields: HashMap<&str, &str> = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let num = |key: &str| -> Result<f64> {
        fields
            .get(key)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("case {}: no {key} in `{line}`", case.arg()))
    };
    Ok(Outcome {
        secs: num("secs")?,
        records: num("records")? as u64,
        seeded_kib: num("seeded_kib")? as u64,
        peak_kib: num("peak_kib")? as u64,
    })
}

/// A count with thousands separators.
fn fmt_count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Medians of a case over its repetitions.
struct Medians {
    secs: f64,
    peak_kib: f64,
    seeded_kib: f64,
    records: u64,
}

fn medians(outcomes: &[Outcome]) -> Medians {
    let of = |f: fn(&Outcome) -> f64| median_ns(&outcomes.iter().map(f).collect::<Vec<_>>());
    Medians {
        secs: of(|o| o.secs),
        peak_kib: of(|o| o.peak_kib as f64),
        seeded_kib: of(|o| o.seeded_kib as f64),
        records: outcomes.first().map_or(0, |o| o.records),
    }
}

/// A time row: `ours` against the native run of the same logic.
fn time_row(figure: String, n: usize, ours: &Medians, native: &Medians) -> Row {
    Row {
        figure,
        tagguard: format!(
            "{:.2} s ({})",
            ours.secs,
            fmt_rate(n as f64 / ours.secs, "tags/s")
        ),
        comparison: format!(
            "native: {:.2} s ({})",
            native.secs,
            fmt_rate(n as f64 / native.secs, "tags/s")
        ),
        ratio: format!("{} native", fmt_ratio(ours.secs / native.secs)),
        target: "—".into(),
        met: Met::NoTarget,
    }
}

/// Runs every case `retro_reps` times, interleaved; returns the rows.
pub fn run(mode: &Mode, notes: &mut Vec<String>) -> Result<Vec<Row>> {
    let n = mode.retro_tags;
    let cases = [
        Case::NativePerTag,
        Case::RegistryPerTag,
        Case::EnginePerTag,
        Case::NativePerBatch,
        Case::RegistryPerBatch,
        Case::EnginePerBatch,
    ];
    let mut results: HashMap<Case, Vec<Outcome>> = HashMap::new();
    for _ in 0..mode.retro_reps {
        for case in cases {
            eprintln!("    {} over {} tags", case.arg(), fmt_count(n));
            results.entry(case).or_default().push(spawn(case, n)?);
        }
    }
    let mut rows = Vec::new();
    for (granularity, native, registry, engine) in [
        (
            "per-tag",
            Case::NativePerTag,
            Case::RegistryPerTag,
            Case::EnginePerTag,
        ),
        (
            "per-batch",
            Case::NativePerBatch,
            Case::RegistryPerBatch,
            Case::EnginePerBatch,
        ),
    ] {
        let nat = medians(&results[&native]);
        let ours = medians(&results[&registry]);
        let bare = medians(&results[&engine]);
        let mut row = time_row(
            format!(
                "retroactive run, {} tags, {granularity} records (mock registry)",
                fmt_count(n)
            ),
            n,
            &ours,
            &nat,
        );
        let bar = if granularity == "per-tag" {
            BAR_PER_TAG
        } else {
            BAR_PER_BATCH
        };
        // Judged only at the size the targets name.
        let unjudged = mode.smoke || n != 1_000_000;
        row.target = format!("≤ {bar}× native");
        row.met = Met::judge(ours.secs / nat.secs <= bar, unjudged);
        rows.push(row);
        rows.push(time_row(
            format!("same, {granularity}, engine over a Vec store (no mock registry)"),
            n,
            &bare,
            &nat,
        ));
        rows.push(Row {
            figure: format!("peak memory, {granularity} run (mock registry)"),
            tagguard: fmt_kib(ours.peak_kib),
            comparison: format!("native: {}", fmt_kib(nat.peak_kib)),
            ratio: format!("{} native", fmt_ratio(ours.peak_kib / nat.peak_kib)),
            target: format!("≤ {BAR_MEMORY}× native"),
            met: Met::judge(ours.peak_kib / nat.peak_kib <= BAR_MEMORY, unjudged),
        });
        notes.push(format!(
            "Retroactive {granularity}: {} tag records (mock registry; {} over the Vec store, {} \
             natively). Peak memory over the Vec store {}. Resident after seeding the tags, \
             before the run: mock registry {}, Vec store {}, native {}.",
            fmt_count(ours.records as usize),
            fmt_count(bare.records as usize),
            fmt_count(nat.records as usize),
            fmt_kib(bare.peak_kib),
            fmt_kib(ours.seeded_kib),
            fmt_kib(bare.seeded_kib),
            fmt_kib(nat.seeded_kib),
        ));
    }
    Ok(rows)
}
