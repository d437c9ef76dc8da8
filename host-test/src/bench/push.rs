//! Section 1: push decision latency through the plugin on a warm pooled
//! instance, against the same guest logic called natively (the floor) and
//! against a fresh instance per call. The engine decides and commits to an
//! in-bench sink that counts, so the figure is the engine and plugin cost.

use crate::hosts::{DroppingSink, no_tags};
use crate::mode::Mode;
use crate::stats::{Subject, fmt_ns, fmt_ratio, interleaved};
use crate::table::{Met, Row};
use crate::workload::{PolicySet, ROTATION, engine_pushes, guest_pushes};
use anyhow::{Result, anyhow};
use std::hint::black_box;
use std::sync::Arc;
use tagguard_engine::{Plugin, Settings, TagGuard, TagStore};
use tagguard_guest::memory_host::MemoryHost;
use tagguard_guest::plugin::PolicyPlugin;
use tagguard_host_test::user;

/// Medians of one policy set, in nanoseconds per decision.
struct Latencies {
    warm: f64,
    native: f64,
    fresh: f64,
}

fn measure(mode: &Mode, plugin: &Plugin, set: PolicySet) -> Result<Latencies> {
    let actor = user("ci");
    let store: Arc<dyn TagStore> = Arc::new(no_tags());
    let sink = Arc::new(DroppingSink::default());
    let guard = TagGuard::new(
        plugin.clone(),
        store.clone(),
        sink.clone(),
        Settings::default(),
    )?;
    let requests = engine_pushes(&actor, set, 0..ROTATION);
    let native_requests = guest_pushes(set, 0..ROTATION);
    let mut native = PolicyPlugin::new();
    let mut host = MemoryHost::default();
    let mut subjects = [
        Subject::new(mode.calls, |i| {
            black_box(guard.push(&requests[i % ROTATION])?);
            Ok(())
        }),
        Subject::new(mode.calls, |i| {
            let decision = native
                .on_push(&mut host, &native_requests[i % ROTATION])
                .map_err(|e| anyhow!("native on_push: {e}"))?;
            black_box(decision);
            host.staged.clear();
            Ok(())
        }),
        Subject::new(mode.fresh_calls, |i| {
            let fresh = TagGuard::new(
                plugin.clone(),
                store.clone(),
                sink.clone(),
                Settings::default(),
            )?;
            black_box(fresh.push(&requests[i % ROTATION])?);
            Ok(())
        }),
    ];
    let medians = interleaved(mode.samples, &mut subjects)?;
    Ok(Latencies {
        warm: medians[0],
        native: medians[1],
        fresh: medians[2],
    })
}

/// The target of the 10-policy push decision: at most this factor of native.
const BAR_NATIVE: f64 = 3.0;

/// Measures both policy sets; returns their rows.
pub fn run(mode: &Mode, plugin: &Plugin) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for set in [PolicySet::One, PolicySet::Ten] {
        let l = measure(mode, plugin, set)?;
        let (target, met) = match set {
            PolicySet::One => ("—".to_string(), Met::NoTarget),
            PolicySet::Ten => (
                format!("≤ {BAR_NATIVE:.0}× native"),
                Met::judge(l.warm / l.native <= BAR_NATIVE, mode.smoke),
            ),
        };
        rows.push(Row {
            figure: format!("push decision, {} (warm pooled instance)", set.label()),
            tagguard: fmt_ns(l.warm),
            comparison: format!("same guest logic, native: {}", fmt_ns(l.native)),
            ratio: format!("{} native", fmt_ratio(l.warm / l.native)),
            target,
            met,
        });
        rows.push(Row {
            figure: format!(
                "push decision, {}: warm pool vs fresh instance",
                set.label()
            ),
            tagguard: fmt_ns(l.warm),
            comparison: format!("fresh instance per call: {}", fmt_ns(l.fresh)),
            ratio: format!("fresh is {} slower", fmt_ratio(l.fresh / l.warm)),
            target: "—".into(),
            met: Met::NoTarget,
        });
    }
    Ok(rows)
}
