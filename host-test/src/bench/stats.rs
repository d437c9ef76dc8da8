//! Timing helpers: medians, batches of calls timed in alternation, and the
//! units the table prints.

use anyhow::Result;
use std::time::{Duration, Instant};

/// The median of `samples` (nanoseconds, or any unit); NaN when there are none.
pub fn median_ns(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The median of durations, in nanoseconds.
pub fn median_of(durations: &[Duration]) -> f64 {
    let ns: Vec<f64> = durations.iter().map(|d| d.as_nanos() as f64).collect();
    median_ns(&ns)
}

/// One thing to time: `calls` calls per sample; `run` gets a running call counter.
pub struct Subject<'a> {
    calls: usize,
    run: Box<dyn FnMut(usize) -> Result<()> + 'a>,
    between: Option<Box<dyn FnMut() + 'a>>,
}

impl<'a> Subject<'a> {
    /// A subject timed in batches of `calls` calls of `run`.
    pub fn new(calls: usize, run: impl FnMut(usize) -> Result<()> + 'a) -> Self {
        Subject {
            calls: calls.max(1),
            run: Box::new(run),
            between: None,
        }
    }

    /// Adds untimed work done before every batch (draining a sink, for instance).
    pub fn between(mut self, f: impl FnMut() + 'a) -> Self {
        self.between = Some(Box::new(f));
        self
    }
}

/// Times every subject in alternation: one untimed warm-up batch each, then
/// `samples` batches each, the starting subject rotating from round to round so
/// that drift on a shared machine hits all of them alike. Returns the median
/// nanoseconds per call of each subject, in order.
pub fn interleaved(samples: usize, subjects: &mut [Subject<'_>]) -> Result<Vec<f64>> {
    let count = subjects.len();
    let mut counters = vec![0usize; count];
    let mut per_call: Vec<Vec<f64>> = vec![Vec::with_capacity(samples); count];
    for round in 0..=samples {
        for step in 0..count {
            let k = (round + step) % count;
            let subject = &mut subjects[k];
            if let Some(between) = subject.between.as_mut() {
                between();
            }
            let start = Instant::now();
            for _ in 0..subject.calls {
                (subject.run)(counters[k])?;
                counters[k] += 1;
            }
            let ns = start.elapsed().as_nanos() as f64 / subject.calls as f64;
            if round > 0 {
                per_call[k].push(ns);
            }
        }
    }
    Ok(per_call.iter().map(|s| median_ns(s)).collect())
}

/// A duration in nanoseconds, in the unit that suits it.
pub fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "n/a".into()
    } else if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A rate per second, with a unit such as `tags/s`.
pub fn fmt_rate(per_second: f64, unit: &str) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M {unit}", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1} k {unit}", per_second / 1e3)
    } else {
        format!("{per_second:.1} {unit}")
    }
}

/// A ratio, with two significant decimals for small values.
pub fn fmt_ratio(ratio: f64) -> String {
    if !ratio.is_finite() {
        "n/a".into()
    } else if ratio >= 100.0 {
        format!("{ratio:.0}×")
    } else if ratio >= 10.0 {
        format!("{ratio:.1}×")
    } else {
        format!("{ratio:.2}×")
    }
}

/// Kibibytes as MiB.
pub fn fmt_kib(kib: f64) -> String {
    format!("{:.0} MiB", kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty_samples() {
        assert_eq!(median_ns(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median_ns(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median_ns(&[]).is_nan());
    }
}
