//! Section 6: loading the default plugin with a cold compile (cache off)
//! against a precompile cache hit (a fresh cache directory, filled by one
//! untimed load first).

use crate::mode::Mode;
use crate::stats::{fmt_ns, fmt_ratio, median_of};
use crate::table::{Met, Row};
use anyhow::Result;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tagguard_engine::{Plugin, Runtime, RuntimeConfig};

/// A cache directory of this process's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        TempDir(std::env::temp_dir().join(format!(
            "tagguard-bench-cache-{}-{nanos:x}",
            std::process::id()
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn timed_load(runtime: &Runtime) -> Result<Duration> {
    let start = Instant::now();
    Plugin::default_plugin(runtime)?;
    Ok(start.elapsed())
}

const FIGURE: &str = "plugin load: precompile cache hit vs cold compile";

/// Times cold loads and cache hits in alternation; returns the row.
pub fn run(mode: &Mode) -> Result<Vec<Row>> {
    let dir = TempDir::new();
    let cold_runtime = Runtime::with_config(RuntimeConfig {
        no_cache: true,
        ..RuntimeConfig::default()
    })?;
    let hit_runtime = Runtime::with_config(RuntimeConfig {
        cache_dir: Some(dir.0.clone()),
        ..RuntimeConfig::default()
    })?;
    timed_load(&hit_runtime)?;
    let (mut cold, mut hit) = (Vec::new(), Vec::new());
    for _ in 0..mode.loads {
        cold.push(timed_load(&cold_runtime)?);
        hit.push(timed_load(&hit_runtime)?);
    }
    let stats = hit_runtime.cache_stats();
    if stats.hits != mode.loads as u64 || stats.misses != 1 {
        let why = format!(
            "the cache in {} did not serve hits: {stats:?}",
            dir.0.display()
        );
        return Ok(vec![Row::not_measured(FIGURE, &why, "—")]);
    }
    let (cold, hit) = (median_of(&cold), median_of(&hit));
    Ok(vec![Row {
        figure: FIGURE.into(),
        tagguard: format!("cache hit: {}", fmt_ns(hit)),
        comparison: format!("cold compile: {}", fmt_ns(cold)),
        ratio: format!("cold is {} slower", fmt_ratio(cold / hit)),
        target: "—".into(),
        met: Met::NoTarget,
    }])
}
