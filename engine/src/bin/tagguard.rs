//! `tagguard`: try out, check and list policy plugins, and verify exported
//! audit logs, from the command line. It touches no registry.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tagguard_engine::audit::{Checkpoint, CheckpointKey, read_jsonl, verify, verify_against};
use tagguard_engine::plugin::digest;
use tagguard_engine::{
    MemoryStore, Plugin, Policy, Runtime, Scope, Settings, TagGuard, built_plugin_path,
};

/// Try out, check and list tagguard policy plugins, and verify exported audit logs.
#[derive(Parser)]
#[command(
    name = "tagguard",
    version,
    about = "Try out, check and list tagguard policy plugins, and verify exported audit logs.",
    long_about = "Try out, check and list tagguard policy plugins, and verify exported audit \
                  logs. Every command runs the plugin in the same sandbox a registry does \
                  (the embedded default plugin unless --plugin names a component), and touches \
                  no registry."
)]
struct Cli {
    /// A plugin component to load instead of the embedded default plugin.
    #[arg(long, global = true)]
    plugin: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The level of a policy on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScopeArg {
    /// Every repository of the namespace.
    Namespace,
    /// One repository (needs --repository).
    Repository,
}

#[derive(Subcommand)]
enum Command {
    /// Print the plugin's name, version, contract and digest as JSON, and whether it
    /// passes the self-test a swap runs (exit 1 if not).
    Info,
    /// Validate tag patterns and say which of them fire for a tag.
    Explain {
        /// The tag name.
        tag: String,
        /// Namespace policy patterns (full match); prefix with `!` to invert.
        #[arg(long = "pattern", required = true)]
        patterns: Vec<String>,
    },
    /// Check a tag pattern as creating a policy would; print the pattern as it would be
    /// stored, or say what is wrong with it (exit 1).
    Validate {
        /// The pattern (full match).
        pattern: String,
        /// The policy fires when the pattern does not match.
        #[arg(long)]
        invert: bool,
        /// Namespace or repository level.
        #[arg(long, value_enum, default_value = "namespace")]
        scope: ScopeArg,
        /// The policy's namespace.
        #[arg(long, default_value = "org")]
        namespace: String,
        /// The policy's repository (with --scope repository).
        #[arg(long)]
        repository: Option<String>,
    },
    /// Preview a pattern over the tags a scenario file pushes: how many would become
    /// immutable, and which.
    Preview {
        /// A scenario file (see docs/scenarios.md); its `push` steps give the tags.
        scenario: PathBuf,
        /// The pattern (full match).
        #[arg(long)]
        pattern: String,
        /// The policy fires when the pattern does not match.
        #[arg(long)]
        invert: bool,
        /// A repository policy for `namespace/repository`; by default a namespace policy
        /// of the first pushed tag's namespace.
        #[arg(long, value_name = "NAMESPACE/REPOSITORY")]
        repo: Option<String>,
        /// How many of the tags to list.
        #[arg(long, default_value_t = 10)]
        sample: u32,
    },
    /// Check a plugin as a swap would: the contract, the self-test and the completeness
    /// guard. Says why it passes or fails (exit 1).
    Check {
        /// The plugin component.
        plugin: PathBuf,
    },
    /// Check the policies of a Quay registry before moving them: for each, whether the
    /// plugin accepts it as is, only the quay-compat plugin does, or neither (and why).
    /// Exit 1 if any policy is rejected.
    CheckPolicies {
        /// JSON as Quay's REST API lists policies: `{"policies": [{"uuid", "tagPattern",
        /// "tagPatternMatches"}, ...]}`, or the bare list.
        file: PathBuf,
        /// The Quay-compatible plugin to try what the plugin refuses (default: the one
        /// the build made, quay-compat).
        #[arg(long)]
        compat: Option<PathBuf>,
    },
    /// List the plugins the build made, with their paths and digests.
    Plugins,
    /// Verify the hash chain of an exported log (JSON lines, as the scenario runner's
    /// `--trail` prints them), and optionally a keyed checkpoint of its head.
    VerifyLog {
        /// The exported log.
        file: PathBuf,
        /// A checkpoint (JSON: seq, head_hash, mac) to verify the log against.
        #[arg(long, requires = "key_file")]
        checkpoint: Option<PathBuf>,
        /// The file holding the checkpoint key.
        #[arg(long, requires = "checkpoint")]
        key_file: Option<PathBuf>,
    },
}

/// A guard over mutable tags `(namespace, repository, name)` in memory (none for
/// commands that read no tags). Nothing it decides reaches a registry.
fn guard(plugin: Plugin, tags: Vec<(String, String, String)>) -> Result<TagGuard> {
    let store = Arc::new(MemoryStore::with_tags(tags));
    Ok(TagGuard::new(
        plugin,
        store.clone(),
        store,
        Settings::default(),
    )?)
}

fn policy(
    uuid: &str,
    namespace: &str,
    repository: Option<&str>,
    pattern: &str,
    fires_on_match: bool,
) -> Policy {
    Policy {
        uuid: uuid.into(),
        scope: if repository.is_some() {
            Scope::Repository
        } else {
            Scope::Namespace
        },
        namespace: namespace.into(),
        repository: repository.map(Into::into),
        tag_pattern: pattern.into(),
        tag_pattern_matches: fires_on_match,
    }
}

/// The tags a scenario file pushes, in order, as `(namespace, repository, name)`.
fn scenario_tags(path: &Path) -> Result<Vec<(String, String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let steps = value["steps"]
        .as_array()
        .with_context(|| format!("{}: no `steps` list", path.display()))?;
    let mut tags = Vec::new();
    for push in steps.iter().filter_map(|s| s.get("push")) {
        let repo = push["repo"].as_str().context("a push step has no `repo`")?;
        let (namespace, repository) = repo
            .split_once('/')
            .with_context(|| format!("repo {repo:?}: expected namespace/repository"))?;
        let names: Vec<String> = match (push["tag"].as_str(), push["prefix"].as_str()) {
            (Some(tag), _) => vec![tag.to_string()],
            (None, Some(prefix)) => {
                let count = push["count"]
                    .as_u64()
                    .context("a push with `prefix` needs `count`")?;
                (0..count).map(|i| format!("{prefix}{i}")).collect()
            }
            _ => bail!("a push step has neither `tag` nor `prefix`"),
        };
        tags.extend(
            names
                .into_iter()
                .map(|name| (namespace.to_string(), repository.to_string(), name)),
        );
    }
    Ok(tags)
}

/// One policy as Quay's REST API lists it.
struct QuayPolicy {
    uuid: String,
    pattern: Option<String>,
    matches: bool,
}

/// The policies of a file as Quay's REST API lists them (`{"policies": [...]}` or the
/// bare list); an entry without a uuid is named by its position.
fn quay_policies(path: &Path) -> Result<Vec<QuayPolicy>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let list = match &value {
        serde_json::Value::Array(list) => list,
        other => other["policies"].as_array().with_context(|| {
            format!(
                "{}: expected {{\"policies\": [...]}} or a list of policies",
                path.display()
            )
        })?,
    };
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            let uuid = p["uuid"]
                .as_str()
                .map_or_else(|| format!("#{}", i + 1), str::to_string);
            let matches = match p.get("tagPatternMatches") {
                None | Some(serde_json::Value::Null) => true,
                Some(v) => v.as_bool().with_context(|| {
                    format!("policy {uuid}: tagPatternMatches must be true or false")
                })?,
            };
            Ok(QuayPolicy {
                uuid,
                pattern: p["tagPattern"].as_str().map(str::to_string),
                matches,
            })
        })
        .collect()
}

/// Why `guard`'s plugin refuses a namespace policy with this pattern, if it does.
fn refusal(guard: &TagGuard, pattern: &str, matches: bool) -> Option<String> {
    let candidate = policy("check", "quay", None, pattern, matches);
    guard
        .validate_policy(&candidate, &[])
        .err()
        .map(|e| e.to_string())
}

fn load(runtime: &Runtime, path: Option<&Path>) -> Result<Plugin> {
    Ok(match path {
        Some(path) => Plugin::from_file(runtime, path)?,
        None => Plugin::default_plugin(runtime)?,
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    let runtime = Runtime::new()?;
    match cli.command {
        Command::Info => {
            let plugin = load(&runtime, cli.plugin.as_deref())?;
            let test = plugin.self_test();
            let info = plugin.info();
            let out = serde_json::json!({
                "name": info.name,
                "version": info.version,
                "contract": info.contract,
                "digest": plugin.stamp().digest,
                "self_test": match &test {
                    Ok(()) => "passed".to_string(),
                    Err(e) => format!("failed: {e}"),
                },
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(if test.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Explain { tag, patterns } => {
            let guard = guard(load(&runtime, cli.plugin.as_deref())?, Vec::new())?;
            let mut policies: Vec<Policy> = Vec::new();
            for (i, raw) in patterns.iter().enumerate() {
                let (pattern, matches) = match raw.strip_prefix('!') {
                    Some(rest) => (rest, false),
                    None => (raw.as_str(), true),
                };
                let candidate = policy(&format!("cli-{i}"), "cli", None, pattern, matches);
                policies.push(guard.validate_policy(&candidate, &policies)?);
            }
            let fired = guard.explain(&tag, &policies)?;
            for m in &fired {
                let bang = if m.policy.tag_pattern_matches {
                    ""
                } else {
                    "!"
                };
                println!("fires: {bang}{}", m.policy.tag_pattern);
            }
            let state = if fired.is_empty() {
                "mutable"
            } else {
                "immutable"
            };
            println!("{tag}: {state}");
        }
        Command::Validate {
            pattern,
            invert,
            scope,
            namespace,
            repository,
        } => {
            let repository = match (scope, repository) {
                (ScopeArg::Namespace, None) => None,
                (ScopeArg::Repository, Some(r)) => Some(r),
                (ScopeArg::Namespace, Some(_)) => {
                    bail!(
                        "--repository: a namespace policy names no repository (add --scope repository)"
                    )
                }
                (ScopeArg::Repository, None) => {
                    bail!("--repository: a repository policy must name its repository")
                }
            };
            let guard = guard(load(&runtime, cli.plugin.as_deref())?, Vec::new())?;
            let candidate = policy("cli", &namespace, repository.as_deref(), &pattern, !invert);
            let valid = guard.validate_policy(&candidate, &[])?;
            println!("valid: {}", valid.tag_pattern);
        }
        Command::Preview {
            scenario,
            pattern,
            invert,
            repo,
            sample,
        } => {
            let tags = scenario_tags(&scenario)?;
            let (namespace, repository) = match &repo {
                Some(r) => {
                    let (ns, repo) = r
                        .split_once('/')
                        .with_context(|| format!("--repo {r:?}: expected namespace/repository"))?;
                    (ns.to_string(), Some(repo.to_string()))
                }
                None => {
                    let first = tags
                        .first()
                        .with_context(|| format!("{} pushes no tags", scenario.display()))?;
                    (first.0.clone(), None)
                }
            };
            let in_scope = tags
                .iter()
                .filter(|(ns, repo, _)| {
                    *ns == namespace && repository.as_ref().is_none_or(|r| r == repo)
                })
                .count();
            let guard = guard(load(&runtime, cli.plugin.as_deref())?, tags)?;
            let candidate = policy(
                "preview",
                &namespace,
                repository.as_deref(),
                &pattern,
                !invert,
            );
            let report = guard.preview(&candidate, sample)?;
            let place = match &repository {
                Some(r) => format!("{namespace}/{r}"),
                None => namespace.clone(),
            };
            println!(
                "{} of {in_scope} tags in {place} would become immutable",
                report.count
            );
            for t in &report.sample {
                println!("  {}/{}:{}", t.namespace, t.repository, t.name);
            }
        }
        Command::Check { plugin } => {
            let candidate = Plugin::from_file(&runtime, &plugin)?;
            let stamp = candidate.stamp().to_string();
            match candidate.self_test() {
                Ok(()) => println!(
                    "PASS {stamp}: implements {} and passes the self-test a swap runs (validate, three pushes, explain, a retroactive run), every outcome checked by the completeness guard",
                    candidate.info().contract
                ),
                Err(e) => {
                    println!("FAIL {stamp}: a swap would refuse it: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::CheckPolicies { file, compat } => {
            let policies = quay_policies(&file)?;
            let main = guard(load(&runtime, cli.plugin.as_deref())?, Vec::new())?;
            let compat_path = compat.unwrap_or_else(|| built_plugin_path("quay-compat"));
            let compat = guard(
                Plugin::from_file(&runtime, &compat_path)
                    .with_context(|| format!("loading {}", compat_path.display()))?,
                Vec::new(),
            )?;
            let (mut as_is, mut compat_only, mut rejected) = (0, 0, 0);
            for p in &policies {
                let Some(pattern) = &p.pattern else {
                    rejected += 1;
                    println!("{}: rejected: tagPattern: missing", p.uuid);
                    continue;
                };
                let shown = format!("{}{pattern}", if p.matches { "" } else { "!" });
                match refusal(&main, pattern, p.matches) {
                    None => {
                        as_is += 1;
                        println!("{} {shown:?}: accepted as is", p.uuid);
                    }
                    Some(why) => match refusal(&compat, pattern, p.matches) {
                        None => {
                            compat_only += 1;
                            println!("{} {shown:?}: accepted by quay-compat only ({why})", p.uuid);
                        }
                        Some(compat_why) => {
                            rejected += 1;
                            println!(
                                "{} {shown:?}: rejected: {why}; quay-compat: {compat_why}",
                                p.uuid
                            );
                        }
                    },
                }
            }
            println!(
                "{} policies: {as_is} accepted as is, {compat_only} by quay-compat only, {rejected} rejected",
                policies.len()
            );
            if rejected > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Plugins => {
            let dir = built_plugin_path("tagguard-guest")
                .parent()
                .map(Path::to_path_buf)
                .context("the build's plugin directory")?;
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect();
            files.sort();
            for path in files {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let name = path.file_stem().unwrap_or_default().to_string_lossy();
                println!("{name}  {}  {}", digest(&bytes), path.display());
            }
        }
        Command::VerifyLog {
            file,
            checkpoint,
            key_file,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let entries = read_jsonl(&text)
                .with_context(|| format!("{} is not an exported log", file.display()))?;
            match (checkpoint, key_file) {
                (Some(checkpoint), Some(key_file)) => {
                    let cp: Checkpoint = serde_json::from_str(
                        &std::fs::read_to_string(&checkpoint)
                            .with_context(|| format!("reading {}", checkpoint.display()))?,
                    )
                    .with_context(|| format!("{} is not a checkpoint", checkpoint.display()))?;
                    let key = std::fs::read(&key_file)
                        .with_context(|| format!("reading {}", key_file.display()))?;
                    let key = CheckpointKey::from_bytes(&key)?;
                    let up_to = verify_against(&entries, &key, &[cp])
                        .with_context(|| format!("{} fails verification", file.display()))?;
                    println!(
                        "verified {} entries: the chain is intact and the checkpoint covers them up to seq {}; {} after it are only hash-chained",
                        up_to.last_seq,
                        up_to.covered_through.unwrap_or(0),
                        up_to.uncovered
                    );
                }
                _ => {
                    verify(&entries)
                        .with_context(|| format!("{} fails verification", file.display()))?;
                    println!(
                        "verified {} entries: the chain is intact (this finds an edited, removed, inserted or reordered entry unless the chain after it was rewritten; verify against a checkpoint to catch that)",
                        entries.len()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The error and its causes in one line, each cause once: an error whose message already
/// contains its cause's text does not repeat it.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}
