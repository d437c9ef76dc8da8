//! Section 4: what recording costs on the push path. A push whose outcome is
//! recorded (the tag is made immutable: one record staged by the plugin,
//! stamped, checked by the guard and committed) against a push of a tag no
//! policy matches (no record), same plugin and policy set; and, as a second
//! view, the commit alone: a sink that stores the entries against one that
//! drops them.

use crate::hosts::{DroppingSink, StoringSink, no_tags};
use crate::mode::Mode;
use crate::stats::{Subject, fmt_ns, fmt_ratio, interleaved};
use crate::table::{Met, Row};
use crate::workload::{PolicySet, ROTATION, engine_pushes};
use anyhow::{Result, bail};
use std::sync::Arc;
use tagguard_engine::{Plugin, PushOutcome, PushRequest, Settings, TagGuard, TagStore};
use tagguard_host_test::user;

/// The target: recording may cost at most this factor.
const BAR: f64 = 1.25;

fn push_expecting(guard: &TagGuard, req: &PushRequest, immutable: bool) -> Result<()> {
    match guard.push(req)? {
        PushOutcome::Created { immutable: got, .. } if got == immutable => Ok(()),
        other => bail!(
            "push of {} expected immutable={immutable}, got {other:?}",
            req.tag_name
        ),
    }
}

/// Measures the three push paths in alternation; returns the rows.
pub fn run(mode: &Mode, plugin: &Plugin) -> Result<Vec<Row>> {
    let set = PolicySet::Ten;
    let actor = user("ci");
    let store: Arc<dyn TagStore> = Arc::new(no_tags());
    let storing = Arc::new(StoringSink::default());
    let dropping = Arc::new(DroppingSink::default());
    let stored = TagGuard::new(
        plugin.clone(),
        store.clone(),
        storing.clone(),
        Settings::default(),
    )?;
    let dropped = TagGuard::new(plugin.clone(), store, dropping, Settings::default())?;
    // Even tags of the workload match the semver policy; odd ones match none.
    let recorded = engine_pushes(&actor, set, (0..ROTATION).map(|k| 2 * k));
    let unrecorded = engine_pushes(&actor, set, (0..ROTATION).map(|k| 2 * k + 1));
    let mut subjects = [
        Subject::new(mode.calls, |i| {
            push_expecting(&stored, &recorded[i % ROTATION], true)
        })
        .between(|| storing.clear()),
        Subject::new(mode.calls, |i| {
            push_expecting(&stored, &unrecorded[i % ROTATION], false)
        })
        .between(|| storing.clear()),
        Subject::new(mode.calls, |i| {
            push_expecting(&dropped, &recorded[i % ROTATION], true)
        }),
    ];
    let m = interleaved(mode.samples, &mut subjects)?;
    let (with_record, without_record, record_dropped) = (m[0], m[1], m[2]);
    let overhead = with_record / without_record;
    Ok(vec![
        Row {
            figure: format!(
                "audit overhead on push, {}: recorded vs unrecorded",
                set.label()
            ),
            tagguard: format!("recorded push: {}", fmt_ns(with_record)),
            comparison: format!("push with no record: {}", fmt_ns(without_record)),
            ratio: fmt_ratio(overhead),
            target: format!("≤ {BAR:.2}×"),
            met: Met::judge(overhead <= BAR, mode.smoke),
        },
        Row {
            figure: "commit alone: sink stores entries vs drops them".into(),
            tagguard: format!("storing sink: {}", fmt_ns(with_record)),
            comparison: format!("dropping sink: {}", fmt_ns(record_dropped)),
            ratio: fmt_ratio(with_record / record_dropped),
            target: "—".into(),
            met: Met::NoTarget,
        },
    ])
}
