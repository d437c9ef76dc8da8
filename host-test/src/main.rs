//! `tagguard-host-test run`: run scenario files against the mock registry.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use tagguard_engine::audit::{ExportFormat, export};
use tagguard_engine::{Plugin, Runtime};

/// The CloudEvents `source` of exported trails.
const TRAIL_SOURCE: &str = "/tagguard/mock-registry";
use tagguard_host_test::scenario;

/// The tagguard scenario runner.
#[derive(Parser)]
#[command(
    version,
    about = "Runs tagguard scenario files against a mock container registry.",
    long_about = "Runs tagguard scenario files against a mock container registry.\n\n\
        Each scenario gets a fresh registry served by the plugin under test (the embedded \
        default plugin, or --plugin FILE). Every step prints PASS or FAIL; the compliance \
        invariants are checked at the end of each scenario. Every file is loaded before any \
        runs; the exit status is non-zero if a file cannot be loaded or a check fails. \
        The format is described in docs/scenarios.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenario files; prints PASS or FAIL per expectation, exits non-zero on any failure.
    Run {
        /// A plugin component to test instead of the embedded default plugin.
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Print each scenario's audit trail as JSON lines.
        #[arg(long)]
        trail: bool,
        /// Format of the printed trail: json (chained entries), quay (Quay's log rows),
        /// or cloudevents (CloudEvents 1.0). Implies --trail.
        #[arg(long, value_name = "FORMAT")]
        trail_format: Option<ExportFormat>,
        /// Scenario files (JSON).
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
}

fn main() -> Result<()> {
    let Command::Run {
        plugin,
        trail,
        trail_format,
        scenarios: paths,
    } = Cli::parse().command;
    let trail_format = trail_format.or(trail.then_some(ExportFormat::Json));
    let scenarios = match scenario::load_all(&paths) {
        Ok(scenarios) => scenarios,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            bail!(
                "{} of {} scenario {} could not be loaded; no scenario was run",
                errors.len(),
                paths.len(),
                plural(paths.len(), "file", "files")
            );
        }
    };
    let runtime = Runtime::new()?;
    let plugin = match &plugin {
        Some(path) => Plugin::from_file(&runtime, path)
            .with_context(|| format!("loading {}", path.display()))?,
        None => Plugin::default_plugin(&runtime)?,
    };
    println!("plugin {}", plugin.stamp());
    let (mut passed, mut failed) = (0usize, 0usize);
    for (path, scenario) in paths.iter().zip(&scenarios) {
        println!("\n== {} ({})", scenario.name, path.display());
        let report = scenario::run(&runtime, &plugin, scenario);
        for check in &report.checks {
            match &check.failure {
                None => {
                    passed += 1;
                    println!("  PASS step {:>3}: {}", check.step, check.what);
                }
                Some(diff) => {
                    failed += 1;
                    println!(
                        "  FAIL step {:>3}: {}\n      {diff}",
                        check.step, check.what
                    );
                }
            }
        }
        if let Some(format) = trail_format {
            let n = report.trail.len();
            println!("-- audit trail ({n} {})", plural(n, "record", "records"));
            print!("{}", export(&report.trail, format, TRAIL_SOURCE));
        }
    }
    let total = passed + failed;
    let in_scenarios = format!(
        "{} in {} {}",
        plural(total, "check", "checks"),
        scenarios.len(),
        plural(scenarios.len(), "scenario", "scenarios")
    );
    if failed == 0 {
        println!("\n{total} {in_scenarios} passed");
        Ok(())
    } else {
        println!("\n{passed} of {total} {in_scenarios} passed, {failed} failed");
        bail!("{failed} {} failed", plural(failed, "check", "checks"));
    }
}

/// `one` when `n` is 1, `many` otherwise.
fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}
