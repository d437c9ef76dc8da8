//! Section 2: tags per second against the Quay-style Python baseline
//! (`host-test/bench/quay_style_baseline.py`), run from here in the same run
//! with the same tags and policy sets. tagguard evaluates each tag with one
//! `TagGuard::explain` call through the plugin (a warm pooled instance), the
//! closest analogue of the baseline's per-tag `evaluate(policies, tag)`. A
//! second view evaluates the same tags in pages inside the plugin
//! (`TagGuard::preview` over an in-memory store, one policy), as a
//! retroactive run scans them.

use crate::hosts::{DroppingSink, no_tags};
use crate::mode::Mode;
use crate::stats::{fmt_ns, fmt_rate, fmt_ratio, median_ns};
use crate::table::{Met, Row};
use crate::workload::{NAMESPACE, PolicySet, REPOSITORY, tag_name};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;
use tagguard_engine::MemoryStore;
use tagguard_engine::{Plugin, Settings, TagGuard};

/// The target of the single-push path (one `explain` call per tag): at least this many
/// times the baseline's tags per second.
const BAR_SINGLE: f64 = 5.0;

/// The target of the batch path (pages of tags evaluated inside the plugin, as
/// retroactive runs and previews do): at least this many times the baseline.
const BAR_BATCH: f64 = 20.0;

/// The repository root (the workspace).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The baseline script, kept in this crate.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/quay_style_baseline.py")
}

/// `$TAGGUARD_PYTHON` if set (`.ci/run` points it at a venv with `regex`), else
/// `.venv-bench/bin/python` at the repository root if it exists, else `python3`.
fn interpreter() -> PathBuf {
    if let Some(python) = std::env::var_os("TAGGUARD_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = repo_root().join(".venv-bench/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Whether `python` can import the third-party `regex` module.
fn has_regex(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import regex"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One baseline line: ns per tag and the number of tags some policy fired for.
#[derive(Clone, Copy, Debug)]
struct Line {
    ns_per_tag: f64,
    hits: u64,
}

/// Parses `<label>: <ns> ns/tag  (<rate> M tags/s, hits=<n>)`.
fn parse_line(text: &str, label: &str) -> Result<Line> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(label)?.strip_prefix(": "))
        .with_context(|| format!("baseline printed no `{label}:` line in:\n{text}"))?;
    let ns_per_tag = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no ns/tag figure in `{line}`"))?;
    let hits = line
        .split("hits=")
        .nth(1)
        .and_then(|h| h.trim_end_matches(')').trim().parse().ok())
        .with_context(|| format!("no hits= in `{line}`"))?;
    Ok(Line { ns_per_tag, hits })
}

/// Runs the baseline once over `n` tags; returns its 1-policy and 10-policy lines.
fn baseline(python: &Path, script: &Path, n: usize) -> Result<[Line; 2]> {
    let out = Command::new(python)
        .arg(script)
        .arg(n.to_string())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "the baseline failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok([
        parse_line(&text, PolicySet::One.label())?,
        parse_line(&text, PolicySet::Ten.label())?,
    ])
}

/// One pass of tagguard over every tag; returns ns per tag and the tags some policy fired for.
fn tagguard_pass(guard: &TagGuard, tags: &[String], set: PolicySet) -> Result<Line> {
    let policies = set.engine();
    let mut hits = 0u64;
    let start = Instant::now();
    for tag in tags {
        if !guard.explain(tag, &policies)?.is_empty() {
            hits += 1;
        }
    }
    let ns_per_tag = start.elapsed().as_nanos() as f64 / tags.len() as f64;
    Ok(Line { ns_per_tag, hits })
}

/// One preview over every tag of `guard`'s store; returns ns per tag and the tags it counts.
fn preview_pass(guard: &TagGuard, tags: usize) -> Result<Line> {
    let policy = PolicySet::One.engine().remove(0);
    let start = Instant::now();
    let report = guard.preview(&policy, 0)?;
    let ns_per_tag = start.elapsed().as_nanos() as f64 / tags as f64;
    Ok(Line {
        ns_per_tag,
        hits: report.count,
    })
}

fn unmeasured(why: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = [PolicySet::One, PolicySet::Ten]
        .map(|set| Row::not_measured(&figure(set), why, &target(BAR_SINGLE)))
        .to_vec();
    rows.push(Row::not_measured(PREVIEW_FIGURE, why, &target(BAR_BATCH)));
    rows
}

const PREVIEW_FIGURE: &str =
    "evaluation per tag vs Quay-style Python, batch path (preview, pages in the plugin), 1 policy";

fn figure(set: PolicySet) -> String {
    format!(
        "evaluation per tag vs Quay-style Python, single push (explain per tag), {}",
        set.label()
    )
}

fn target(bar: f64) -> String {
    format!("≥ {bar:.0}× Quay")
}

/// Runs the baseline and tagguard in alternation; returns the rows, or rows marked
/// "not measured" with a note when the baseline cannot run here.
pub fn run(mode: &Mode, plugin: &Plugin, notes: &mut Vec<String>) -> Result<Vec<Row>> {
    let script = script();
    if !script.exists() {
        notes.push(format!(
            "Quay-style baseline not measured: {} not found.",
            script.display()
        ));
        return Ok(unmeasured("baseline script not found"));
    }
    let python = interpreter();
    if !has_regex(&python) && std::env::var_os("TAGGUARD_REQUIRE_PYREGEX").is_some_and(|v| v == "1")
    {
        bail!(
            "{} cannot import the `regex` module, and TAGGUARD_REQUIRE_PYREGEX=1 asks for the \
             Quay-style rows to be measured",
            python.display()
        );
    }
    if !has_regex(&python) {
        notes.push(format!(
            "Quay-style baseline not measured: {} cannot import the `regex` module. Set it up \
             at the repository root with `python3 -m venv .venv-bench && .venv-bench/bin/pip \
             install regex`.",
            python.display()
        ));
        return Ok(unmeasured("Python `regex` module missing"));
    }
    let guard = TagGuard::new(
        plugin.clone(),
        Arc::new(no_tags()),
        Arc::new(DroppingSink::default()),
        Settings::default(),
    )?;
    let tags: Vec<String> = (0..mode.quay_tags).map(tag_name).collect();
    let store = Arc::new(MemoryStore::new(
        NAMESPACE,
        REPOSITORY,
        tags.iter().cloned(),
    ));
    let scanner = TagGuard::new(plugin.clone(), store.clone(), store, Settings::default())?;
    let sets = [PolicySet::One, PolicySet::Ten];
    tagguard_pass(&guard, &tags[..tags.len().min(1_000)], PolicySet::Ten)?;
    preview_pass(&scanner, tags.len())?;
    let mut quay: [Vec<f64>; 2] = Default::default();
    let mut ours: [Vec<f64>; 2] = Default::default();
    let mut previews = Vec::new();
    for _ in 0..mode.quay_reps {
        let lines = baseline(&python, &script, mode.quay_tags)?;
        let preview = preview_pass(&scanner, tags.len())?;
        if preview.hits != lines[0].hits {
            bail!(
                "workloads differ: preview counted {} tags, the baseline {}",
                preview.hits,
                lines[0].hits
            );
        }
        previews.push(preview.ns_per_tag);
        for (k, set) in sets.iter().enumerate() {
            let line = tagguard_pass(&guard, &tags, *set)?;
            if line.hits != lines[k].hits {
                bail!(
                    "workloads differ: {}: tagguard fired for {} tags, the baseline for {}",
                    set.label(),
                    line.hits,
                    lines[k].hits
                );
            }
            quay[k].push(lines[k].ns_per_tag);
            ours[k].push(line.ns_per_tag);
        }
    }
    notes.push(format!(
        "Quay-style baseline: {} over {} tags, {} pass(es) each, medians of the per-pass means.",
        python.display(),
        mode.quay_tags,
        mode.quay_reps
    ));
    let mut rows: Vec<Row> = sets
        .iter()
        .enumerate()
        .map(|(k, set)| {
            let (q, t) = (median_ns(&quay[k]), median_ns(&ours[k]));
            Row {
                figure: figure(*set),
                tagguard: format!("{} ({}/tag)", fmt_rate(1e9 / t, "tags/s"), fmt_ns(t)),
                comparison: format!(
                    "Quay-style: {} ({}/tag)",
                    fmt_rate(1e9 / q, "tags/s"),
                    fmt_ns(q)
                ),
                ratio: format!("{} Quay", fmt_ratio(q / t)),
                target: target(BAR_SINGLE),
                met: Met::judge(q / t >= BAR_SINGLE, mode.smoke),
            }
        })
        .collect();
    let (q, t) = (median_ns(&quay[0]), median_ns(&previews));
    rows.push(Row {
        figure: PREVIEW_FIGURE.into(),
        tagguard: format!("{} ({}/tag)", fmt_rate(1e9 / t, "tags/s"), fmt_ns(t)),
        comparison: format!(
            "Quay-style: {} ({}/tag)",
            fmt_rate(1e9 / q, "tags/s"),
            fmt_ns(q)
        ),
        ratio: format!("{} Quay", fmt_ratio(q / t)),
        target: target(BAR_BATCH),
        met: Met::judge(q / t >= BAR_BATCH, mode.smoke),
    });
    Ok(rows)
}
