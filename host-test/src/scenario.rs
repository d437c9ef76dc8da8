//! Scenario files: JSON lists of registry steps and expectations, run
//! against a fresh mock registry. See `docs/scenarios.md` for the format.

use crate::compliance;
use crate::registry::{AuditQuery, NewPolicy, Registry, RegistryError, system, user};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::fmt;
use std::path::{Path, PathBuf};
use tagguard_engine::audit::ChainedEntry;
use tagguard_engine::{Actor, EngineError, Plugin, Runtime, Settings, built_plugin_path};

/// A scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario shows.
    pub name: String,
    /// Tags per retroactive batch (default 500).
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The directory of the scenario file, set by [`load`]: relative `swap` paths resolve
    /// against it (against the working directory when `None`).
    #[serde(skip)]
    pub dir: Option<PathBuf>,
}

/// Who performs a step (default: user `alice`, not an admin).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct As {
    /// User name; `system` for the registry itself.
    #[serde(rename = "as", default)]
    pub name: Option<String>,
    /// Whether the user is an admin.
    #[serde(default)]
    pub admin: bool,
}

/// `namespace/repository`, split.
fn split_repo(repo: &str) -> Result<(&str, &str), String> {
    repo.split_once('/')
        .filter(|(n, r)| !n.is_empty() && !r.is_empty())
        .ok_or_else(|| format!("repo \"{repo}\": expected namespace/repository"))
}

/// What an action step expects (default: success).
#[derive(Debug, Default, Deserialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The step succeeds.
    #[default]
    Ok,
    /// The step is denied with `TAG_IMMUTABLE`.
    Denied,
    /// The step fails with any other error.
    Error,
}

/// One step of a scenario.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Create a policy.
    CreatePolicy {
        /// Uuid of the policy (referenced as `$id` in expectations).
        id: String,
        /// Namespace.
        namespace: String,
        /// Repository, for a repository policy.
        #[serde(default)]
        repository: Option<String>,
        /// Pattern.
        pattern: String,
        /// Polarity (default true).
        #[serde(default = "yes")]
        matches: bool,
        /// Who.
        #[serde(flatten)]
        actor: As,
        /// Expected outcome.
        #[serde(default)]
        expect: Outcome,
    },
    /// Update a policy's pattern and polarity.
    UpdatePolicy {
        /// Uuid.
        id: String,
        /// New pattern.
        pattern: String,
        /// New polarity (default true).
        #[serde(default = "yes")]
        matches: bool,
        /// Who.
        #[serde(flatten)]
        actor: As,
        /// Expected outcome.
        #[serde(default)]
        expect: Outcome,
    },
    /// Delete a policy.
    DeletePolicy {
        /// Uuid.
        id: String,
        /// Who.
        #[serde(flatten)]
        actor: As,
        /// Expected outcome.
        #[serde(default)]
        expect: Outcome,
    },
    /// Push tags (`tag`, or `count` tags named `prefix0`, `prefix1`, ...).
    Push {
        /// `namespace/repository`.
        repo: String,
        /// One tag.
        #[serde(default)]
        tag: Option<String>,
        /// Prefix of a series of tags.
        #[serde(default)]
        prefix: Option<String>,
        /// Length of the series.
        #[serde(default)]
        count: Option<u32>,
        /// Manifest digest (default derived from the tag name).
        #[serde(default)]
        digest: Option<String>,
        /// Who.
        #[serde(flatten)]
        actor: As,
        /// Expected outcome.
        #[serde(default)]
        expect: Outcome,
    },
    /// Delete a tag.
    DeleteTag {
        /// `namespace/repository`.
        repo: String,
        /// Tag.
        tag: String,
        /// Who.
        #[serde(flatten)]
        actor: As,
        /// Expected outcome.
        #[serde(default)]
        expect: Outcome,
    },
    /// Delete a manifest by digest.
    DeleteManifest {
        /// `namespace/repository`.
        repo: String,
        /// Digest.
        digest: String,
        /// Who.
        #[serde(flatten)]
        actor: As,
        /// Expected outcome.
        #[serde(default)]
        expect: Outcome,
    },
    /// Set an expiration on a tag.
    SetExpiration {
        /// `namespace/repository`.
        repo: String,
        /// Tag.
        tag: String,
        /// When (free text, for the record).
        expires_at: String,
        /// Who.
        #[serde(flatten)]
        actor: As,
        /// Expected outcome.
        #[serde(default)]
        expect: Outcome,
    },
    /// Set a tag's immutability by hand (clearing needs `"admin": true`).
    Toggle {
        /// `namespace/repository`.
        repo: String,
        /// Tag.
        tag: String,
        /// New state.
        immutable: bool,
        /// Who.
        #[serde(flatten)]
        actor: As,
        /// Expected outcome.
        #[serde(default)]
        expect: Outcome,
    },
    /// Swap the serving plugin: `default`, a plugin the build made (`glob-policy`), or a file path.
    Swap {
        /// Which plugin.
        plugin: String,
        /// Who.
        #[serde(flatten)]
        actor: As,
        /// Expected outcome.
        #[serde(default)]
        expect: Outcome,
    },
    /// Return to the plugin that served before the last swap.
    Rollback {
        /// Who.
        #[serde(flatten)]
        actor: As,
        /// Expected outcome.
        #[serde(default)]
        expect: Outcome,
    },
    /// Ask why a tag is (or is not) immutable, and check the answer.
    Explain {
        /// `namespace/repository`.
        repo: String,
        /// Tag.
        tag: String,
        /// Fields the cause (the last immutability change) must have: `kind`, `trigger`,
        /// `policy_uuid` (`$id` allowed), `performer`, `plugin` (name), `immutable`;
        /// `null` expects no cause at all.
        #[serde(default)]
        cause: Option<Map<String, Value>>,
        /// Exact number of events in the history (changes and denials).
        #[serde(default)]
        events: Option<usize>,
    },
    /// Expect a tag's state.
    ExpectTag {
        /// `namespace/repository`.
        repo: String,
        /// Tag.
        tag: String,
        /// Expected immutability; `null` expects the tag not to exist.
        immutable: Option<bool>,
    },
    /// Expect audit records.
    ExpectAudit {
        /// Kind.
        kind: String,
        /// `namespace/repository`, or a namespace alone.
        #[serde(default)]
        repo: Option<String>,
        /// Tag.
        #[serde(default)]
        tag: Option<String>,
        /// Fields every matching record's metadata must have (`$id` names a policy uuid).
        #[serde(default)]
        metadata: Map<String, Value>,
        /// Performer name the records must carry.
        #[serde(default)]
        performer: Option<String>,
        /// Name of the plugin that must have decided (from its `info`).
        #[serde(default)]
        plugin: Option<String>,
        /// Exact number of matching records (default: at least one).
        #[serde(default)]
        count: Option<usize>,
    },
}

fn yes() -> bool {
    true
}

/// The result of one expectation or action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Step number, from 1.
    pub step: usize,
    /// What was checked.
    pub what: String,
    /// `None` when it passed; the difference otherwise.
    pub failure: Option<String>,
}

/// A finished scenario.
#[derive(Debug)]
pub struct Report {
    /// Scenario name.
    pub name: String,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// The audit trail, hash-chained, in sequence order.
    pub trail: Vec<ChainedEntry>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.failure.is_none())
    }
}

/// Loads a scenario file; the error names the file.
pub fn load(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut scenario: Scenario =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    scenario.dir = Some(match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    });
    Ok(scenario)
}

/// Loads every scenario file before any runs: all of them, or the error of each that failed.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, Vec<String>> {
    let (mut loaded, mut errors) = (Vec::new(), Vec::new());
    for path in paths {
        match load(path) {
            Ok(scenario) => loaded.push(scenario),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

fn actor_of(a: &As) -> Actor {
    match a.name.as_deref() {
        Some("system") => system(),
        Some(name) => user(name),
        None => user("alice"),
    }
}

impl Outcome {
    /// The expectation as a present-tense verb phrase: "succeeds", "is denied", "fails".
    fn verb(self) -> &'static str {
        match self {
            Outcome::Ok => "succeeds",
            Outcome::Denied => "is denied",
            Outcome::Error => "fails",
        }
    }

    /// The expectation as "should ...", for a check that failed.
    fn should(self) -> &'static str {
        match self {
            Outcome::Ok => "should succeed",
            Outcome::Denied => "should be denied",
            Outcome::Error => "should fail",
        }
    }
}

/// What a step did: its outcome and, for an error, its kind and message.
struct Happened {
    /// Success, denial or other error.
    outcome: Outcome,
    /// The error, when there was one.
    error: Option<ErrorReport>,
}

/// An error as the runner prints it: `KIND: message`.
struct ErrorReport {
    /// The `RegistryError` or `EngineError` variant, or the registry code (`TAG_IMMUTABLE`).
    kind: String,
    /// The error's message.
    message: String,
}

impl fmt::Display for ErrorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl fmt::Display for Happened {
    /// "it succeeded", "it was denied with KIND: message", "it failed with KIND: message".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.outcome, &self.error) {
            (Outcome::Denied, Some(e)) => write!(f, "it was denied with {e}"),
            (_, Some(e)) => write!(f, "it failed with {e}"),
            (_, None) => write!(f, "it succeeded"),
        }
    }
}

/// The name of an engine error's variant; a swap or run that stopped names its cause too.
fn engine_error_kind(e: &EngineError) -> String {
    let kind = match e {
        EngineError::Io { .. } => "Io",
        EngineError::Load { .. } => "Load",
        EngineError::UnsafeCache { .. } => "UnsafeCache",
        EngineError::ContractMismatch { .. } => "ContractMismatch",
        EngineError::GuestTrap { .. } => "GuestTrap",
        EngineError::Timeout { .. } => "Timeout",
        EngineError::MemoryLimit { .. } => "MemoryLimit",
        EngineError::Plugin { .. } => "Plugin",
        EngineError::InvalidPolicy { .. } => "InvalidPolicy",
        EngineError::AuditMissing { .. } => "AuditMissing",
        EngineError::ContractViolation { .. } => "ContractViolation",
        EngineError::InvalidRequest { .. } => "InvalidRequest",
        EngineError::InvalidSettings { .. } => "InvalidSettings",
        EngineError::HostStore { .. } => "HostStore",
        EngineError::HostAudit { .. } => "HostAudit",
        EngineError::NoPreviousGeneration => "NoPreviousGeneration",
        EngineError::StaleGeneration { .. } => "StaleGeneration",
        EngineError::Conflict { .. } => "Conflict",
        EngineError::SwapRejected { cause, .. } => {
            return format!("SwapRejected ({})", engine_error_kind(cause));
        }
        EngineError::RunIncomplete { cause, .. } => {
            return format!("RunIncomplete ({})", engine_error_kind(cause));
        }
        _ => "EngineError",
    };
    kind.to_string()
}

/// The kind and message of a registry error.
fn error_report(e: &RegistryError) -> ErrorReport {
    let (kind, message) = match e {
        RegistryError::TagImmutable {
            code,
            operation,
            tag,
        } => (
            code.to_string(),
            format!("{operation} of {tag} denied: the tag is immutable"),
        ),
        RegistryError::NotFound(what) => ("NotFound".into(), what.clone()),
        RegistryError::UnknownPolicy(id) => ("UnknownPolicy".into(), format!("no policy {id}")),
        RegistryError::Forbidden(why) => ("Forbidden".into(), why.clone()),
        RegistryError::Invalid(what) => ("Invalid".into(), what.clone()),
        RegistryError::Engine(e) => (engine_error_kind(e), e.to_string()),
    };
    ErrorReport { kind, message }
}

fn outcome_of<T>(result: &Result<T, RegistryError>) -> Happened {
    match result {
        Ok(_) => Happened {
            outcome: Outcome::Ok,
            error: None,
        },
        Err(e) => Happened {
            outcome: if e.code().is_some() {
                Outcome::Denied
            } else {
                Outcome::Error
            },
            error: Some(error_report(e)),
        },
    }
}

/// Replaces `"$id"` strings with `id` (the policy uuid equals the scenario id).
fn resolve(v: &Value) -> Value {
    match v {
        Value::String(s) => json!(s.strip_prefix('$').unwrap_or(s)),
        other => other.clone(),
    }
}

struct Runner<'a> {
    registry: &'a Registry,
    runtime: &'a Runtime,
    /// The scenario file's directory, for relative `swap` paths.
    dir: Option<&'a Path>,
    checks: Vec<Check>,
    step: usize,
}

impl Runner<'_> {
    fn record(&mut self, what: String, failure: Option<String>) {
        self.checks.push(Check {
            step: self.step,
            what,
            failure,
        });
    }

    /// Records an action: passed with what happened (its error, if one was expected), or
    /// failed with what happened instead.
    fn action<T>(&mut self, what: String, expect: Outcome, result: Result<T, RegistryError>) {
        let happened = outcome_of(&result);
        if happened.outcome == expect {
            let line = match &happened.error {
                Some(e) => format!("{what} {} with {e}", expect.verb()),
                None => format!("{what} {}", expect.verb()),
            };
            self.record(line, None);
        } else {
            self.record(
                format!("{what} {}", expect.should()),
                Some(format!("but {happened}")),
            );
        }
    }

    fn run_step(&mut self, step: &Step) -> Result<(), String> {
        let r = self.registry;
        match step {
            Step::CreatePolicy {
                id,
                namespace,
                repository,
                pattern,
                matches,
                actor,
                expect,
            } => {
                let new = NewPolicy {
                    uuid: Some(id.clone()),
                    namespace: namespace.clone(),
                    repository: repository.clone(),
                    pattern: pattern.clone(),
                    matches: *matches,
                };
                self.action(
                    format!("create policy {id} {}", pattern_phrase(pattern, *matches)),
                    *expect,
                    r.create_policy(&actor_of(actor), &new),
                );
            }
            Step::UpdatePolicy {
                id,
                pattern,
                matches,
                actor,
                expect,
            } => {
                let res = r.update_policy(&actor_of(actor), id, pattern, *matches);
                let what = format!(
                    "update policy {id} to {}",
                    pattern_phrase(pattern, *matches)
                );
                self.action(what, *expect, res);
            }
            Step::DeletePolicy { id, actor, expect } => {
                self.action(
                    format!("delete policy {id}"),
                    *expect,
                    r.delete_policy(&actor_of(actor), id),
                );
            }
            Step::Push {
                repo,
                tag,
                prefix,
                count,
                digest,
                actor,
                expect,
            } => {
                let (ns, name) = split_repo(repo)?;
                let tags: Vec<String> = match (tag, prefix, count) {
                    (Some(t), None, None) => vec![t.clone()],
                    (None, Some(p), Some(n)) => (0..*n).map(|i| format!("{p}{i}")).collect(),
                    _ => return Err("push: give either tag, or prefix and count".into()),
                };
                let who = actor_of(actor);
                let mut wrong = Vec::new();
                let mut errors = Vec::new();
                for t in &tags {
                    let d = digest
                        .clone()
                        .unwrap_or_else(|| tagguard_engine::plugin::digest(t.as_bytes()));
                    let happened = outcome_of(&r.push(&who, ns, name, t, &d));
                    if happened.outcome != *expect {
                        wrong.push((t, happened.to_string()));
                    } else if let Some(e) = happened.error {
                        errors.push(e);
                    }
                }
                let what = match tags.as_slice() {
                    [one] => format!("push {repo}:{one}"),
                    many => format!(
                        "push of {} tags {repo}:{}..{}",
                        many.len(),
                        many[0],
                        many[many.len() - 1]
                    ),
                };
                if wrong.is_empty() {
                    let line = match errors.as_slice() {
                        [] => format!("{what} {}", expect.verb()),
                        [e] => format!("{what} {} with {e}", expect.verb()),
                        [e, more @ ..] => format!(
                            "{what} {} with {e} (and {} more)",
                            expect.verb(),
                            more.len()
                        ),
                    };
                    self.record(line, None);
                } else {
                    let failure = match (tags.len(), wrong.as_slice()) {
                        (1, [(_, happened)]) => format!("but {happened}"),
                        _ => wrong
                            .iter()
                            .map(|(t, happened)| format!("{t}: {happened}"))
                            .collect::<Vec<_>>()
                            .join("\n      "),
                    };
                    self.record(format!("{what} {}", expect.should()), Some(failure));
                }
            }
            Step::DeleteTag {
                repo,
                tag,
                actor,
                expect,
            } => {
                let (ns, name) = split_repo(repo)?;
                self.action(
                    format!("delete {repo}:{tag}"),
                    *expect,
                    r.delete_tag(&actor_of(actor), ns, name, tag),
                );
            }
            Step::DeleteManifest {
                repo,
                digest,
                actor,
                expect,
            } => {
                let (ns, name) = split_repo(repo)?;
                let res = r.delete_manifest(&actor_of(actor), ns, name, digest);
                self.action(format!("delete manifest {repo}@{digest}"), *expect, res);
            }
            Step::SetExpiration {
                repo,
                tag,
                expires_at,
                actor,
                expect,
            } => {
                let (ns, name) = split_repo(repo)?;
                let res = r.set_expiration(&actor_of(actor), ns, name, tag, expires_at);
                self.action(format!("expire {repo}:{tag} at {expires_at}"), *expect, res);
            }
            Step::Toggle {
                repo,
                tag,
                immutable,
                actor,
                expect,
            } => {
                let (ns, name) = split_repo(repo)?;
                let res = r.set_immutable(&actor_of(actor), actor.admin, ns, name, tag, *immutable);
                let state = if *immutable { "immutable" } else { "mutable" };
                self.action(format!("make {repo}:{tag} {state}"), *expect, res);
            }
            Step::Swap {
                plugin,
                actor,
                expect,
            } => {
                let res = load_plugin(self.runtime, plugin, self.dir).and_then(|p| {
                    r.guard()
                        .swap(&actor_of(actor), p)
                        .map_err(RegistryError::Engine)
                });
                self.action(format!("swap to {plugin}"), *expect, res);
            }
            Step::Rollback { actor, expect } => {
                let res = r
                    .guard()
                    .rollback(&actor_of(actor))
                    .map_err(RegistryError::Engine);
                self.action("rollback".into(), *expect, res);
            }
            Step::Explain {
                repo,
                tag,
                cause,
                events,
            } => {
                let (ns, name) = split_repo(repo)?;
                let history = r.history(ns, name, tag);
                let mut wrong = Vec::new();
                if let Some(n) = events
                    && history.events.len() != *n
                {
                    wrong.push(format!(
                        "expected {n} events, found {}",
                        history.events.len()
                    ));
                }
                match (cause, &history.cause) {
                    (None, _) => {}
                    (Some(want), Some(got)) => {
                        let got = serde_json::to_value(got).unwrap_or(Value::Null);
                        for (k, v) in want {
                            let actual = match k.as_str() {
                                "plugin" => got
                                    .get("plugin")
                                    .and_then(Value::as_str)
                                    .and_then(|p| p.split('@').next())
                                    .map(|p| json!(p)),
                                _ => got.get(k).cloned(),
                            };
                            if actual.as_ref() != Some(&resolve(v)) {
                                wrong.push(format!(
                                    "cause.{k}: expected {}, got {}",
                                    resolve(v),
                                    actual.unwrap_or(Value::Null)
                                ));
                            }
                        }
                    }
                    (Some(want), None) if !want.is_empty() => {
                        wrong.push("expected a cause, the tag has no immutability change".into())
                    }
                    (Some(_), None) => {}
                }
                let summary =
                    history
                        .cause
                        .as_ref()
                        .map_or("no change recorded".to_string(), |c| {
                            format!(
                                "{} by {} (seq {}, {})",
                                c.kind,
                                c.performer,
                                c.seq,
                                c.policy_uuid.as_deref().unwrap_or("manual")
                            )
                        });
                let failure = (!wrong.is_empty()).then(|| wrong.join("\n      "));
                self.record(format!("explain {repo}:{tag}: {summary}"), failure);
            }
            Step::ExpectTag {
                repo,
                tag,
                immutable,
            } => {
                let (ns, name) = split_repo(repo)?;
                let got = r.tag(ns, name, tag).map(|t| t.immutable);
                let failure = (got != *immutable).then(|| {
                    format!(
                        "expected {repo}:{tag} to {}, but it {}",
                        tag_state(*immutable, "be immutable", "be mutable", "not exist"),
                        tag_state(got, "is immutable", "is mutable", "does not exist"),
                    )
                });
                let state = tag_state(*immutable, "is immutable", "is mutable", "does not exist");
                self.record(format!("{repo}:{tag} {state}"), failure);
            }
            Step::ExpectAudit {
                kind,
                repo,
                tag,
                metadata,
                performer,
                count,
                plugin,
            } => {
                let (namespace, repository) = match repo.as_deref().map(|x| x.split_once('/')) {
                    Some(Some((n, r))) => (Some(n), Some(r)),
                    Some(None) => (repo.as_deref(), None),
                    None => (None, None),
                };
                let query = AuditQuery {
                    namespace,
                    repository,
                    tag: tag.as_deref(),
                    kind: Some(kind),
                };
                let rows = r.audit(&query);
                let mut mismatches = Vec::new();
                let matching = rows
                    .iter()
                    .filter(|row| {
                        let bad: Vec<String> = metadata
                            .iter()
                            .filter(|(k, v)| row.entry.metadata.get(*k) != Some(&resolve(v)))
                            .map(|(k, v)| {
                                format!(
                                    "{k}: expected {}, got {}",
                                    resolve(v),
                                    row.entry.metadata.get(k).unwrap_or(&Value::Null)
                                )
                            })
                            .chain(
                                performer
                                    .iter()
                                    .filter(|p| row.entry.performer.name != **p)
                                    .map(|p| {
                                        format!(
                                            "performer: expected {p}, got {}",
                                            row.entry.performer.name
                                        )
                                    }),
                            )
                            .chain(plugin.iter().filter(|p| row.entry.plugin.name != **p).map(
                                |p| format!("plugin: expected {p}, got {}", row.entry.plugin.name),
                            ))
                            .collect();
                        if !bad.is_empty() {
                            mismatches.push(format!("record {}: {}", row.seq, bad.join("; ")));
                        }
                        bad.is_empty()
                    })
                    .count();
                let ok = count.map_or(matching >= 1, |n| matching == n);
                let failure = (!ok).then(|| {
                    let want = count.map_or("at least 1".to_string(), |n| n.to_string());
                    let mut msg = format!(
                        "expected {want} matching record(s), found {matching} of {} {kind} records",
                        rows.len()
                    );
                    for m in mismatches.iter().take(3) {
                        msg.push_str("\n      ");
                        msg.push_str(m);
                    }
                    msg
                });
                let target = match (repo.as_deref(), tag.as_deref()) {
                    (Some(repo), Some(tag)) => format!(" for {repo}:{tag}"),
                    (Some(repo), None) => format!(" for {repo}"),
                    (None, Some(tag)) => format!(" for tag {tag}"),
                    (None, None) => String::new(),
                };
                let records = match count {
                    Some(1) => "1 record".to_string(),
                    Some(n) => format!("{n} records"),
                    None => "at least 1 record".to_string(),
                };
                self.record(format!("audit {kind}{target}: {records}"), failure);
            }
        }
        Ok(())
    }
}

/// `matching "P"`, or `not matching "P"` for an inverted policy.
fn pattern_phrase(pattern: &str, matches: bool) -> String {
    let not = if matches { "" } else { "not " };
    format!("{not}matching \"{pattern}\"")
}

/// One of three words for a tag's state: immutable, mutable, or no alive tag.
fn tag_state<'a>(
    state: Option<bool>,
    immutable: &'a str,
    mutable: &'a str,
    none: &'a str,
) -> &'a str {
    match state {
        Some(true) => immutable,
        Some(false) => mutable,
        None => none,
    }
}

/// Loads `default` (the embedded plugin), a component file (a relative path resolves against
/// `base`, the scenario's directory), or a plugin the build made, by package name.
pub fn load_plugin(
    runtime: &Runtime,
    name: &str,
    base: Option<&Path>,
) -> Result<Plugin, RegistryError> {
    if name == "default" {
        return Ok(Plugin::default_plugin(runtime)?);
    }
    let path = match base {
        Some(base) if Path::new(name).is_relative() => base.join(name),
        _ => PathBuf::from(name),
    };
    if path.is_file() {
        return Ok(Plugin::from_file(runtime, &path)?);
    }
    let looks_like_path = name.ends_with(".wasm") || name.contains('/') || name.contains('\\');
    if looks_like_path {
        return Err(RegistryError::NotFound(format!(
            "plugin file {} does not exist",
            path.display()
        )));
    }
    let built = built_plugin_path(name);
    if built.is_file() {
        return Ok(Plugin::from_file(runtime, &built)?);
    }
    Err(RegistryError::NotFound(format!(
        "no plugin named \"{name}\" and no file {}; give a component file or one of: {}",
        path.display(),
        plugin_names().join(", ")
    )))
}

/// The names a `swap` step accepts besides a file: `default` and every plugin the build made.
pub fn plugin_names() -> Vec<String> {
    let probe = built_plugin_path("x");
    let mut names: Vec<String> = probe
        .parent()
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let stem = path.file_stem()?.to_str()?;
            (path.extension()? == "wasm").then(|| stem.replace('_', "-"))
        })
        .collect();
    names.sort();
    names.insert(0, "default".to_string());
    names
}

/// Runs `scenario` against a fresh registry with `plugin`; ends with the compliance check.
/// `runtime` loads the plugins of `swap` steps.
pub fn run(runtime: &Runtime, plugin: &Plugin, scenario: &Scenario) -> Report {
    let mut settings = Settings::default();
    if let Some(b) = scenario.batch_size {
        settings.batch_size = b;
    }
    let registry = Registry::new(plugin.clone(), settings);
    let mut runner = Runner {
        registry: &registry,
        runtime,
        dir: scenario.dir.as_deref(),
        checks: Vec::new(),
        step: 0,
    };
    for (i, step) in scenario.steps.iter().enumerate() {
        runner.step = i + 1;
        if let Err(e) = runner.run_step(step) {
            runner.record("malformed step".into(), Some(e));
        }
    }
    runner.step = scenario.steps.len() + 1;
    let compliance = compliance::check(registry.db())
        .err()
        .map(|p| p.join("\n      "));
    runner.record("compliance invariants 1 to 3".into(), compliance);
    let trail = registry.db().with(|s| s.log.entries().to_vec());
    Report {
        name: scenario.name.clone(),
        checks: runner.checks,
        trail,
    }
}
