//! `bench`: what the plugin costs a registry, on the push path and in
//! retroactive runs. Prints one Markdown table; every figure is a median
//! over repeated runs, and every comparison is a ratio measured in the same
//! run. `--smoke` runs every section with tiny sizes to keep the harness working.

#[path = "../bench/audit.rs"]
mod audit;
#[path = "../bench/breakdown.rs"]
mod breakdown;
#[path = "../bench/during_run.rs"]
mod during_run;
#[path = "../bench/hosts.rs"]
mod hosts;
#[path = "../bench/load.rs"]
mod load;
#[path = "../bench/mode.rs"]
mod mode;
#[path = "../bench/push.rs"]
mod push;
#[path = "../bench/quay.rs"]
mod quay;
#[path = "../bench/retro.rs"]
mod retro;
#[path = "../bench/stats.rs"]
mod stats;
#[path = "../bench/swap.rs"]
mod swap;
#[path = "../bench/table.rs"]
mod table;
#[path = "../bench/workload.rs"]
mod workload;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use mode::Mode;
use std::time::Instant;
use table::Row;
use tagguard_engine::{Plugin, Runtime};

/// Benchmarks the tagguard plugin and engine against their baselines.
#[derive(Parser)]
#[command(
    about = "Benchmarks the tagguard plugin and engine against their baselines.",
    long_about = "Benchmarks the tagguard plugin and engine against their baselines.\n\n\
        Measures what the plugin costs a registry on the push path and in retroactive runs, \
        and prints one Markdown table: every figure is a median over repeated runs, and every \
        comparison is a ratio against the native floor, a fresh instance per call, or Quay's \
        matching loop, measured in the same run. A full run takes about two minutes; --smoke \
        runs every section with tiny sizes in seconds."
)]
struct Cli {
    /// Every section with tiny sizes and few repetitions (figures not judged).
    #[arg(long)]
    smoke: bool,
    /// Runs only these sections (repeatable), for profiling one of them.
    #[arg(long, value_enum)]
    only: Vec<Section>,
    #[command(subcommand)]
    command: Option<Internal>,
}

/// The sections of a run, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Section {
    /// Push decision latency: warm pool, native, fresh instance.
    Push,
    /// Tags per second against the Quay-style Python baseline.
    Quay,
    /// Retroactive runs, each case in a child process.
    Retro,
    /// Recorded against unrecorded pushes; storing against dropping sink.
    Audit,
    /// Swap latency and throughput while swapping.
    Swap,
    /// Cold compile against a precompile cache hit.
    Load,
    /// Where the time goes: the parts of a push and of a run record.
    Breakdown,
    /// Push latency while a retroactive run is in progress.
    DuringRun,
}

#[derive(Subcommand)]
enum Internal {
    /// Runs one retroactive case in this process and prints its result line.
    #[command(hide = true)]
    RetroCase {
        /// Which case.
        #[arg(long, value_enum)]
        case: retro::Case,
        /// Tags in the store.
        #[arg(long)]
        tags: usize,
    },
}

/// The first line of `path` that starts with `key`, after the key and a colon.
fn proc_field(path: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.trim_start();
        Some(rest.strip_prefix(':')?.trim().to_string())
    })
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".into());
    let memory = proc_field("/proc/meminfo", "MemTotal")
        .and_then(|m| m.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("unknown".into(), |kib| {
            format!("{:.1} GiB", kib / 1024.0 / 1024.0)
        });
    format!("{cores} cores, {model}, {memory} memory")
}

/// Runs the sections selected, reporting progress and durations on stderr.
struct Runner {
    only: Vec<Section>,
    rows: Vec<Row>,
}

impl Runner {
    fn section(
        &mut self,
        which: Section,
        name: &str,
        f: impl FnOnce() -> Result<Vec<Row>>,
    ) -> Result<()> {
        if !self.only.is_empty() && !self.only.contains(&which) {
            return Ok(());
        }
        eprintln!("== {name}");
        let start = Instant::now();
        self.rows.extend(f()?);
        eprintln!("   done in {:.1} s", start.elapsed().as_secs_f64());
        Ok(())
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Internal::RetroCase { case, tags }) = cli.command {
        return retro::child(case, tags);
    }
    let mode = if cli.smoke {
        Mode::smoke()
    } else {
        Mode::full()
    };
    let started = Instant::now();
    let runtime = Runtime::new()?;
    let plugin = Plugin::default_plugin(&runtime)?;
    let mut notes = Vec::new();
    let mut run = Runner {
        only: cli.only,
        rows: Vec::new(),
    };
    run.section(Section::Push, "push decision latency", || {
        push::run(&mode, &plugin)
    })?;
    run.section(Section::Quay, "against the Quay-style baseline", || {
        quay::run(&mode, &plugin, &mut notes)
    })?;
    run.section(Section::Retro, "retroactive runs (child processes)", || {
        retro::run(&mode, &mut notes)
    })?;
    run.section(Section::Audit, "audit overhead on push", || {
        audit::run(&mode, &plugin)
    })?;
    run.section(Section::Swap, "hot swap", || {
        swap::run(&mode, &runtime, &plugin, &mut notes)
    })?;
    run.section(Section::Load, "plugin load", || load::run(&mode))?;
    run.section(
        Section::DuringRun,
        "pushes during a retroactive run",
        || during_run::run(&mode, &plugin),
    )?;
    let mut parts = None;
    run.section(Section::Breakdown, "where the time goes", || {
        parts = Some(breakdown::run(&mode, &plugin)?);
        Ok(Vec::new())
    })?;

    println!(
        "tagguard bench{}: {}",
        if mode.smoke { " --smoke" } else { "" },
        machine()
    );
    println!("plugin {}", plugin.stamp());
    if mode.smoke {
        println!("SMOKE RUN: tiny sizes and few repetitions; the figures mean nothing.");
    }
    println!();
    if !run.rows.is_empty() {
        print!("{}", table::render(&run.rows));
        println!();
    }
    if let Some(parts) = parts {
        println!("Where the time goes (10 policies unless stated):\n");
        print!("{parts}");
        println!();
    }
    for note in &notes {
        println!("- {note}");
    }
    println!(
        "- Medians: latencies of {} batches of {} calls (fresh instance: {} calls), after one \
         warm-up batch, subjects alternating.",
        mode.samples, mode.calls, mode.fresh_calls
    );
    println!("- Whole run: {:.0} s.", started.elapsed().as_secs_f64());
    Ok(())
}
