//! `tagguard`: inspect a policy plugin from the command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use tagguard_engine::{
    AuditEntry, AuditSink, Change, MarkBatch, MarkImmutable, Plugin, Policy, Runtime, ScanRequest,
    Scope, Settings, SinkError, StoreError, Tag, TagGuard, TagStore,
};

/// Inspect and try out tagguard policy plugins.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// A plugin component to load instead of the embedded default plugin.
    #[arg(long, global = true)]
    plugin: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the plugin's name, version, contract and digest as JSON.
    Info,
    /// Validate a tag pattern and say which of the given patterns fire for a tag.
    Explain {
        /// The tag name.
        tag: String,
        /// Namespace policy patterns (full match); prefix with `!` to invert.
        #[arg(long = "pattern", required = true)]
        patterns: Vec<String>,
    },
}

/// The CLI touches no registry: an empty store and a sink that refuses writes.
struct Offline;

impl TagStore for Offline {
    fn scan(&self, _: &ScanRequest) -> Result<Vec<Tag>, StoreError> {
        Ok(Vec::new())
    }
    fn mark_immutable(&self, _: Vec<MarkImmutable>) -> Result<Vec<u64>, StoreError> {
        Err(StoreError("the command line has no tag store".into()))
    }
    fn mark_immutable_batch(&self, _: MarkBatch) -> Result<Vec<u64>, StoreError> {
        Err(StoreError("the command line has no tag store".into()))
    }
}

impl AuditSink for Offline {
    fn commit(&self, _: Change, _: Vec<AuditEntry>) -> Result<(), SinkError> {
        Err(SinkError::Unavailable(
            "the command line has no audit sink".into(),
        ))
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = Runtime::new()?;
    let plugin = match &cli.plugin {
        Some(path) => Plugin::from_file(&runtime, path)
            .with_context(|| format!("loading {}", path.display()))?,
        None => Plugin::default_plugin(&runtime)?,
    };
    match cli.command {
        Command::Info => {
            let info = plugin.info();
            let out = serde_json::json!({
                "name": info.name,
                "version": info.version,
                "contract": info.contract,
                "digest": plugin.stamp().digest,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Command::Explain { tag, patterns } => {
            let offline = Arc::new(Offline);
            let guard = TagGuard::new(plugin, offline.clone(), offline, Settings::default())?;
            let mut policies: Vec<Policy> = Vec::new();
            for (i, raw) in patterns.iter().enumerate() {
                let (pattern, matches) = match raw.strip_prefix('!') {
                    Some(rest) => (rest, false),
                    None => (raw.as_str(), true),
                };
                let candidate = Policy {
                    uuid: format!("cli-{i}"),
                    scope: Scope::Namespace,
                    namespace: "cli".into(),
                    repository: None,
                    tag_pattern: pattern.into(),
                    tag_pattern_matches: matches,
                };
                policies.push(guard.validate_policy(&candidate, &policies)?);
            }
            let fired = guard.explain(&tag, &policies)?;
            for m in &fired {
                println!(
                    "fires: {} {:?}",
                    if m.policy.tag_pattern_matches {
                        ""
                    } else {
                        "!"
                    },
                    m.policy.tag_pattern
                );
            }
            println!(
                "{tag}: {}",
                if fired.is_empty() {
                    "mutable"
                } else {
                    "immutable"
                }
            );
        }
    }
    Ok(())
}
