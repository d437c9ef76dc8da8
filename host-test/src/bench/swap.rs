//! Section 5: hot swap. Swap latency between the default plugin and the
//! glob plugin with a warm precompile cache (loading the candidate, its
//! self-test and publishing), against the same with a cold compile; and push
//! throughput while another thread swaps ten times a second, against none.

use crate::hosts::{DroppingSink, no_tags};
use crate::mode::Mode;
use crate::stats::{fmt_ns, fmt_rate, fmt_ratio, median_ns, median_of};
use crate::table::{Met, Row};
use crate::workload::{PolicySet, ROTATION, engine_pushes};
use anyhow::{Result, anyhow};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use tagguard_engine::{
    Plugin, PushRequest, Runtime, RuntimeConfig, Settings, TagGuard, built_plugin_path,
};
use tagguard_host_test::user;

/// The target for a swap with a warm cache.
const BAR_SWAP_NS: f64 = 10e6;
/// The target for throughput while swapping, as a share of throughput without.
const BAR_THROUGHPUT: f64 = 0.95;
/// How often the swapping thread swaps.
const SWAP_EVERY: Duration = Duration::from_millis(100);

fn guard_for(plugin: Plugin) -> Result<TagGuard> {
    TagGuard::new(
        plugin,
        Arc::new(no_tags()),
        Arc::new(DroppingSink::default()),
        Settings::default(),
    )
    .map_err(Into::into)
}

/// Loads the `i`-th candidate (glob plugin on even `i`, default plugin on odd) and swaps
/// it in; returns the time of the whole and of the swap alone.
fn load_and_swap(
    guard: &TagGuard,
    runtime: &Runtime,
    glob: &Path,
    i: usize,
) -> Result<(Duration, Duration)> {
    let actor = user("operator");
    let start = Instant::now();
    let candidate = if i.is_multiple_of(2) {
        Plugin::from_file(runtime, glob)?
    } else {
        Plugin::default_plugin(runtime)?
    };
    let loaded = Instant::now();
    guard.swap(&actor, candidate)?;
    let done = Instant::now();
    Ok((done - start, done - loaded))
}

/// Pushes for `window`; with `swapping`, another thread swaps every [`SWAP_EVERY`].
/// Returns pushes per second and the swaps made.
fn window(
    guard: &TagGuard,
    plugin: &Plugin,
    requests: &[PushRequest],
    window: Duration,
    swapping: bool,
) -> Result<(f64, u64)> {
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let swapper = swapping.then(|| {
            s.spawn(|| -> Result<u64> {
                let actor = user("operator");
                let mut next = Instant::now();
                let mut swaps = 0;
                loop {
                    thread::sleep(next.saturating_duration_since(Instant::now()));
                    if stop.load(Ordering::Relaxed) {
                        return Ok(swaps);
                    }
                    guard.swap(&actor, plugin.clone())?;
                    swaps += 1;
                    next += SWAP_EVERY;
                }
            })
        });
        let start = Instant::now();
        let mut pushes = 0usize;
        let pushed = (|| -> Result<()> {
            while start.elapsed() < window {
                for _ in 0..32 {
                    guard.push(&requests[pushes % requests.len()])?;
                    pushes += 1;
                }
            }
            Ok(())
        })();
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        let swaps = match swapper {
            Some(handle) => handle
                .join()
                .map_err(|_| anyhow!("the swapping thread panicked"))??,
            None => 0,
        };
        pushed?;
        Ok((pushes as f64 / elapsed.as_secs_f64(), swaps))
    })
}

/// Measures swap latency and throughput under swapping; returns the rows.
pub fn run(
    mode: &Mode,
    runtime: &Runtime,
    plugin: &Plugin,
    notes: &mut Vec<String>,
) -> Result<Vec<Row>> {
    let glob = built_plugin_path("glob-policy");
    // Warm the precompile cache for both plugins.
    Plugin::from_file(runtime, &glob)?;
    Plugin::default_plugin(runtime)?;
    let cold_runtime = Runtime::with_config(RuntimeConfig {
        no_cache: true,
        ..RuntimeConfig::default()
    })?;
    let warm_guard = guard_for(plugin.clone())?;
    let cold_guard = guard_for(Plugin::default_plugin(&cold_runtime)?)?;
    let (mut total, mut alone, mut cold) = (Vec::new(), Vec::new(), Vec::new());
    let cold_every = (mode.swaps / mode.cold_swaps.max(1)).max(1);
    for i in 0..mode.swaps {
        let (whole, swap) = load_and_swap(&warm_guard, runtime, &glob, i)?;
        total.push(whole);
        alone.push(swap);
        if i % cold_every == 0 && cold.len() < mode.cold_swaps {
            cold.push(load_and_swap(&cold_guard, &cold_runtime, &glob, cold.len())?.0);
        }
    }
    let (total, alone, cold) = (median_of(&total), median_of(&alone), median_of(&cold));

    let requests = engine_pushes(&user("ci"), PolicySet::Ten, 0..ROTATION);
    let tp_guard = guard_for(plugin.clone())?;
    window(&tp_guard, plugin, &requests, mode.window / 4, false)?;
    let (mut quiet, mut busy, mut swaps) = (Vec::new(), Vec::new(), 0u64);
    for w in 0..2 * mode.windows {
        let swapping = w % 2 == 1;
        let (rate, made) = window(&tp_guard, plugin, &requests, mode.window, swapping)?;
        if swapping {
            busy.push(rate);
            swaps += made;
        } else {
            quiet.push(rate);
        }
    }
    let (quiet, busy) = (median_ns(&quiet), median_ns(&busy));
    let swapping_secs = mode.window.as_secs_f64() * mode.windows as f64;
    notes.push(format!(
        "Swap: {} warm and {} cold swaps alternating glob-policy and the default plugin; \
         throughput: one pushing thread, 10 policies, {} windows of {:?} per condition, \
         {:.1} swaps/s made while swapping (the default plugin swapped for itself, so every \
         generation decides alike).",
        mode.swaps,
        mode.cold_swaps,
        mode.windows,
        mode.window,
        swaps as f64 / swapping_secs
    ));
    let share = busy / quiet;
    Ok(vec![
        Row {
            figure: "swap latency, warm cache (load + self-test + publish)".into(),
            tagguard: fmt_ns(total),
            comparison: format!("cold compile + swap: {}", fmt_ns(cold)),
            ratio: format!("cold is {} slower", fmt_ratio(cold / total)),
            target: "≤ 10 ms".into(),
            met: Met::judge(total <= BAR_SWAP_NS, mode.smoke),
        },
        Row {
            figure: "swap alone, plugin already loaded (self-test + publish)".into(),
            tagguard: fmt_ns(alone),
            comparison: format!("load from warm cache + swap: {}", fmt_ns(total)),
            ratio: format!("{} of it", fmt_ratio(alone / total)),
            target: "—".into(),
            met: Met::NoTarget,
        },
        Row {
            figure: "push throughput while swapping 10×/s, 10 policies".into(),
            tagguard: fmt_rate(busy, "pushes/s"),
            comparison: format!("no swapping: {}", fmt_rate(quiet, "pushes/s")),
            ratio: fmt_ratio(share),
            target: format!("≥ {BAR_THROUGHPUT:.2}×"),
            met: Met::judge(share >= BAR_THROUGHPUT, mode.smoke),
        },
    ])
}
