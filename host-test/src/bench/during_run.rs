//! Section 8: push latency while a retroactive run is in progress, against the
//! same pushes with no run, both through the mock registry. The run commits
//! batch by batch and holds no lock that pushes wait for; a push may still
//! wait for one batch's commit, which the p99 shows.

use crate::mode::Mode;
use crate::stats::{fmt_ns, fmt_ratio, median_of};
use crate::table::{Met, Row};
use anyhow::{Result, anyhow};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tagguard_engine::{Plugin, Settings};
use tagguard_host_test::{NewPolicy, Registry, user};

/// The `q`-quantile of durations (nearest rank), in nanoseconds.
fn quantile(durations: &[Duration], q: f64) -> f64 {
    let mut sorted: Vec<Duration> = durations.to_vec();
    sorted.sort();
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[rank.min(last)].as_nanos() as f64
}

fn timed_push(reg: &Registry, name: &str) -> Result<Duration> {
    let start = Instant::now();
    reg.push(&user("ci"), "org", "app", name, "sha256:push")?;
    Ok(start.elapsed())
}

/// Pushes until `done`; returns their latencies.
fn pushes_until(reg: &Registry, done: &AtomicBool) -> Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    while !done.load(Ordering::Acquire) {
        latencies.push(timed_push(reg, &format!("during-{}", latencies.len()))?);
    }
    Ok(latencies)
}

/// Times pushes during a run over `mode.retro_tags` tags and the same number without.
pub fn run(mode: &Mode, plugin: &Plugin) -> Result<Vec<Row>> {
    let tags = mode.retro_tags;
    let reg = Registry::new(plugin.clone(), Settings::default());
    reg.db()
        .seed_tags("org", "big", (0..tags).map(|i| format!("v{i}")));
    let done = AtomicBool::new(false);
    let policy = NewPolicy::namespace("all", "org", "v[0-9]+").in_repository("big");
    let (run, during) = std::thread::scope(|s| {
        let running = s.spawn(|| {
            let out = reg.create_policy(&user("admin"), &policy);
            done.store(true, Ordering::Release);
            out
        });
        let during = pushes_until(&reg, &done);
        (running.join(), during)
    });
    let marked = run
        .map_err(|_| anyhow!("the run's thread panicked"))??
        .run
        .count;
    let during = during?;
    let idle = (0..during.len().max(1))
        .map(|i| timed_push(&reg, &format!("idle-{i}")))
        .collect::<Result<Vec<_>>>()?;
    let n = during.len();
    let row = |what: &str, busy: f64, calm: f64| Row {
        figure: format!("push {what} during a {tags}-tag run ({n} pushes)"),
        tagguard: fmt_ns(busy),
        comparison: format!("no run: {}", fmt_ns(calm)),
        ratio: fmt_ratio(busy / calm),
        target: "—".into(),
        met: if mode.smoke {
            Met::Smoke
        } else {
            Met::NoTarget
        },
    };
    anyhow::ensure!(marked == tags as u64, "the run marked {marked} of {tags}");
    Ok(vec![
        row("median", median_of(&during), median_of(&idle)),
        row("p99", quantile(&during, 0.99), quantile(&idle, 0.99)),
    ])
}
