//! The mock registry's operations. Every immutability decision goes through
//! the plugin via the engine; the registry only looks rows up and checks
//! permissions.

use crate::db::{Db, LogRow, TagRow, names_tag};
use std::sync::{Arc, Mutex, MutexGuard};
use tagguard_engine::audit::{ExportFormat, TagHistory, export, tag_history};
use tagguard_engine::{
    Actor, ActorKind, DeleteOutcome, EngineError, Plugin, Policy, PolicyOutcome, PushOutcome,
    PushRequest, Removal, RemovalAction, RunSummary, RunTrigger, Scope, Settings, TagGuard,
};

/// How many times a push is decided again when policies or the tag changed meanwhile.
pub const PUSH_ATTEMPTS: usize = 8;

/// The error code a registry answers a denied operation on an immutable tag with (HTTP 409).
pub const TAG_IMMUTABLE: &str = "TAG_IMMUTABLE";

/// What a registry operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The operation touches an immutable tag (HTTP 409, code `TAG_IMMUTABLE`).
    #[error("{code}: {operation} of {tag} denied: the tag is immutable")]
    TagImmutable {
        /// Always [`TAG_IMMUTABLE`].
        code: &'static str,
        /// The operation refused.
        operation: &'static str,
        /// The tag (or tags) that block it.
        tag: String,
    },
    /// A tag, manifest or repository does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// No policy has this uuid.
    #[error("policy {0}: no such policy")]
    UnknownPolicy(String),
    /// The performer may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// An argument is malformed: field and reason.
    #[error("invalid {0}")]
    Invalid(String),
    /// The engine or the plugin refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl RegistryError {
    /// The registry error code, for the 409 answers.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            RegistryError::TagImmutable { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A user, for tests and scenarios.
pub fn user(name: &str) -> Actor {
    Actor {
        kind: ActorKind::User,
        name: Some(name.into()),
        ip: Some("192.0.2.10".into()),
        request_id: None,
    }
}

/// The registry itself.
pub fn system() -> Actor {
    Actor {
        kind: ActorKind::System,
        name: None,
        ip: None,
        request_id: None,
    }
}

/// A mock registry: its database and the engine running one plugin.
pub struct Registry {
    db: Arc<Db>,
    guard: TagGuard,
    next_policy: std::sync::atomic::AtomicU64,
    /// Serialises policy changes (and their runs) among themselves. Pushes never wait
    /// for it: a push decided against an older policy set is refused at commit
    /// (`Conflict`) and decided again.
    policy_changes: Mutex<()>,
}

/// A policy to create: the fields a registry API takes.
#[derive(Clone, Debug, Default)]
pub struct NewPolicy {
    /// Uuid to use; generated when absent.
    pub uuid: Option<String>,
    /// Namespace.
    pub namespace: String,
    /// Repository, for a repository policy.
    pub repository: Option<String>,
    /// Pattern.
    pub pattern: String,
    /// Polarity.
    pub matches: bool,
}

impl NewPolicy {
    /// A namespace policy with a given uuid that fires when `pattern` matches.
    pub fn namespace(uuid: &str, namespace: &str, pattern: &str) -> Self {
        NewPolicy {
            uuid: Some(uuid.into()),
            namespace: namespace.into(),
            repository: None,
            pattern: pattern.into(),
            matches: true,
        }
    }

    /// The same policy at repository level.
    pub fn in_repository(self, repository: &str) -> Self {
        NewPolicy {
            repository: Some(repository.into()),
            ..self
        }
    }

    /// The same policy with the given polarity.
    pub fn matching(self, matches: bool) -> Self {
        NewPolicy { matches, ..self }
    }
}

impl Registry {
    /// A fresh registry running `plugin`. Panics on settings out of range (test setup;
    /// [`Registry::try_with_db`] reports them).
    pub fn new(plugin: Plugin, settings: Settings) -> Self {
        Self::with_db(plugin, settings, Arc::new(Db::new()))
    }

    /// A registry over an existing database (a restart after a crash, for instance).
    /// Panics on settings out of range.
    pub fn with_db(plugin: Plugin, settings: Settings, db: Arc<Db>) -> Self {
        Self::try_with_db(plugin, settings, db).expect("settings in range")
    }

    /// A registry over `db`, or the engine's error for settings out of range.
    pub fn try_with_db(
        plugin: Plugin,
        settings: Settings,
        db: Arc<Db>,
    ) -> Result<Self, EngineError> {
        let guard = TagGuard::new(plugin, db.clone(), db.clone(), settings)?;
        Ok(Registry {
            db,
            guard,
            next_policy: 1.into(),
            policy_changes: Mutex::new(()),
        })
    }

    /// The database (for assertions and fault injection).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The engine.
    pub fn guard(&self) -> &TagGuard {
        &self.guard
    }

    fn changing_policies(&self) -> MutexGuard<'_, ()> {
        self.policy_changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The alive tag `namespace/repository:name`.
    pub fn tag(&self, namespace: &str, repository: &str, name: &str) -> Option<TagRow> {
        self.db
            .with(|s| s.alive_named(namespace, repository, name).cloned())
    }

    /// Every policy of `namespace` that applies to `repository`: its own and the namespace's.
    pub fn policies_in_scope(&self, namespace: &str, repository: &str) -> Vec<Policy> {
        self.versioned_policies(namespace, repository).0
    }

    /// The policies in scope and the policy-set version they were read at, in one read.
    fn versioned_policies(&self, namespace: &str, repository: &str) -> (Vec<Policy>, u64) {
        self.db.with(|s| {
            let policies = s
                .policies
                .iter()
                .filter(|p| {
                    p.namespace == namespace
                        && p.repository.as_deref().is_none_or(|r| r == repository)
                })
                .cloned()
                .collect();
            (policies, s.policy_version)
        })
    }

    /// The policy with `uuid`.
    pub fn policy(&self, uuid: &str) -> Result<Policy, RegistryError> {
        self.db
            .with(|s| s.policies.iter().find(|p| p.uuid == uuid).cloned())
            .ok_or_else(|| RegistryError::UnknownPolicy(uuid.into()))
    }

    /// Pushes `tag` to `digest`: creates it, or moves it if it exists and is mutable.
    /// A push that conflicts with a change committed while it was decided (a policy
    /// change, the tag moved or made immutable) is decided again, up to
    /// [`PUSH_ATTEMPTS`] times.
    pub fn push(
        &self,
        actor: &Actor,
        namespace: &str,
        repository: &str,
        tag: &str,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        let mut attempt = 1;
        loop {
            let (policies, policy_version) = self.versioned_policies(namespace, repository);
            let req = PushRequest {
                actor: actor.clone(),
                namespace: namespace.into(),
                repository: repository.into(),
                tag_name: tag.into(),
                manifest_digest: digest.into(),
                existing: self.tag(namespace, repository, tag).map(|t| t.to_tag()),
                policies,
                policy_version,
            };
            match self.guard.push(&req) {
                Ok(PushOutcome::Created { immutable, .. }) => return Ok(immutable),
                Ok(PushOutcome::Denied { .. }) => {
                    return Err(RegistryError::TagImmutable {
                        code: TAG_IMMUTABLE,
                        operation: "push",
                        tag: tag.into(),
                    });
                }
                Err(EngineError::Conflict { .. }) if attempt < PUSH_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn decide_removal(
        &self,
        actor: &Actor,
        rows: Vec<TagRow>,
        action: RemovalAction,
        label: &'static str,
    ) -> Result<(), RegistryError> {
        let Some(first) = rows.first() else {
            return Err(RegistryError::NotFound("no alive tag".into()));
        };
        let removal = Removal {
            actor: actor.clone(),
            policies: self.policies_in_scope(&first.namespace, &first.repository),
            tags: rows.iter().map(TagRow::to_tag).collect(),
            action,
        };
        match self.guard.delete(&removal)? {
            DeleteOutcome::Allowed => Ok(()),
            DeleteOutcome::Denied { tag_ids } => {
                let names: Vec<_> = rows
                    .iter()
                    .filter(|t| tag_ids.contains(&t.id))
                    .map(|t| t.name.clone())
                    .collect();
                Err(RegistryError::TagImmutable {
                    code: TAG_IMMUTABLE,
                    operation: label,
                    tag: names.join(","),
                })
            }
        }
    }

    fn existing(
        &self,
        namespace: &str,
        repository: &str,
        tag: &str,
    ) -> Result<TagRow, RegistryError> {
        self.tag(namespace, repository, tag)
            .ok_or_else(|| RegistryError::NotFound(format!("tag {namespace}/{repository}:{tag}")))
    }

    /// Deletes a tag.
    pub fn delete_tag(
        &self,
        actor: &Actor,
        namespace: &str,
        repository: &str,
        tag: &str,
    ) -> Result<(), RegistryError> {
        let row = self.existing(namespace, repository, tag)?;
        self.decide_removal(actor, vec![row], RemovalAction::DeleteTags, "delete")
    }

    /// Deletes a manifest by digest, with every alive tag on it.
    pub fn delete_manifest(
        &self,
        actor: &Actor,
        namespace: &str,
        repository: &str,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let rows: Vec<TagRow> = self.db.with(|s| {
            s.tags
                .iter()
                .filter(|t| {
                    t.alive
                        && t.namespace == namespace
                        && t.repository == repository
                        && t.manifest_digest == digest
                })
                .cloned()
                .collect()
        });
        if rows.is_empty() {
            return Err(RegistryError::NotFound(format!(
                "manifest {digest} in {namespace}/{repository}"
            )));
        }
        self.decide_removal(
            actor,
            rows,
            RemovalAction::DeleteManifest,
            "delete_manifest",
        )
    }

    /// Sets an expiration on a tag.
    pub fn set_expiration(
        &self,
        actor: &Actor,
        namespace: &str,
        repository: &str,
        tag: &str,
        expires_at: &str,
    ) -> Result<(), RegistryError> {
        let row = self.existing(namespace, repository, tag)?;
        let action = RemovalAction::SetExpiration {
            expires_at: expires_at.into(),
        };
        self.decide_removal(actor, vec![row], action, "set_expiration")
    }

    /// Sets a tag's immutability by hand. Clearing it needs an admin.
    pub fn set_immutable(
        &self,
        actor: &Actor,
        admin: bool,
        namespace: &str,
        repository: &str,
        tag: &str,
        immutable: bool,
    ) -> Result<bool, RegistryError> {
        if !immutable && !admin {
            return Err(RegistryError::Forbidden(
                "clearing a tag's immutability needs an admin".into(),
            ));
        }
        let row = self.existing(namespace, repository, tag)?;
        Ok(self.guard.manual_change(actor, &row.to_tag(), immutable)?)
    }

    fn candidate(&self, new: &NewPolicy) -> Policy {
        let uuid = new.uuid.clone().unwrap_or_else(|| {
            format!(
                "policy-{:04}",
                self.next_policy
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )
        });
        Policy {
            uuid,
            scope: if new.repository.is_some() {
                Scope::Repository
            } else {
                Scope::Namespace
            },
            namespace: new.namespace.clone(),
            repository: new.repository.clone(),
            tag_pattern: new.pattern.clone(),
            tag_pattern_matches: new.matches,
        }
    }

    fn namespace_policies(&self, namespace: &str) -> Vec<Policy> {
        self.db.with(|s| {
            s.policies
                .iter()
                .filter(|p| p.namespace == namespace)
                .cloned()
                .collect()
        })
    }

    /// Creates a policy and applies it to existing tags.
    pub fn create_policy(
        &self,
        actor: &Actor,
        new: &NewPolicy,
    ) -> Result<PolicyOutcome, RegistryError> {
        let _changing = self.changing_policies();
        let candidate = self.candidate(new);
        let existing = self.namespace_policies(&new.namespace);
        if existing.iter().any(|p| p.uuid == candidate.uuid) {
            return Err(RegistryError::Invalid(format!(
                "uuid: policy {} already exists",
                candidate.uuid
            )));
        }
        Ok(self.guard.create_policy(actor, &candidate, &existing)?)
    }

    /// Changes a policy's pattern and polarity and applies the new pattern to existing tags.
    pub fn update_policy(
        &self,
        actor: &Actor,
        uuid: &str,
        pattern: &str,
        matches: bool,
    ) -> Result<PolicyOutcome, RegistryError> {
        let _changing = self.changing_policies();
        let before = self.policy(uuid)?;
        let candidate = Policy {
            tag_pattern: pattern.into(),
            tag_pattern_matches: matches,
            ..before.clone()
        };
        let existing = self.namespace_policies(&before.namespace);
        Ok(self
            .guard
            .update_policy(actor, &before, &candidate, &existing)?)
    }

    /// Applies a stored policy again (after a failed run, for example).
    pub fn reapply_policy(&self, actor: &Actor, uuid: &str) -> Result<RunSummary, RegistryError> {
        let _changing = self.changing_policies();
        let policy = self.policy(uuid)?;
        Ok(self
            .guard
            .apply_policy(actor, &policy, RunTrigger::Reapplied)?)
    }

    /// Deletes a policy. Tags stay immutable.
    pub fn delete_policy(&self, actor: &Actor, uuid: &str) -> Result<(), RegistryError> {
        let _changing = self.changing_policies();
        let policy = self.policy(uuid)?;
        Ok(self.guard.delete_policy(actor, &policy)?)
    }

    /// Hides a tag (test setup: internal tags retroactive runs must skip).
    pub fn hide(&self, namespace: &str, repository: &str, tag: &str) -> Result<(), RegistryError> {
        let row = self.existing(namespace, repository, tag)?;
        self.db.with(|s| {
            s.tags
                .iter_mut()
                .filter(|t| t.id == row.id)
                .for_each(|t| t.hidden = true)
        });
        Ok(())
    }

    /// Marks a tag expired by time (test setup: no longer alive).
    pub fn expire(
        &self,
        namespace: &str,
        repository: &str,
        tag: &str,
    ) -> Result<(), RegistryError> {
        let row = self.existing(namespace, repository, tag)?;
        self.db.with(|s| {
            s.tags
                .iter_mut()
                .filter(|t| t.id == row.id)
                .for_each(|t| t.alive = false)
        });
        Ok(())
    }

    /// Why `namespace/repository:tag` is (or is not) immutable: its full history.
    pub fn history(&self, namespace: &str, repository: &str, tag: &str) -> TagHistory {
        self.db
            .with(|s| tag_history(s.log.entries(), namespace, repository, tag))
    }

    /// The whole audit log in an export format (`source` names the registry for CloudEvents).
    pub fn export(&self, format: ExportFormat, source: &str) -> String {
        self.db.with(|s| export(s.log.entries(), format, source))
    }

    /// Audit rows matching every given filter, in sequence order.
    pub fn audit(&self, query: &AuditQuery<'_>) -> Vec<LogRow> {
        self.db.with(|s| {
            s.log
                .entries()
                .iter()
                .filter(|r| query.matches(r))
                .cloned()
                .collect()
        })
    }
}

/// A filter over the audit log; `None` fields match anything.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuditQuery<'a> {
    /// Namespace.
    pub namespace: Option<&'a str>,
    /// Repository.
    pub repository: Option<&'a str>,
    /// Tag name: the entry's tag field, or a tag a per-batch record lists.
    pub tag: Option<&'a str>,
    /// Kind.
    pub kind: Option<&'a str>,
}

impl AuditQuery<'_> {
    /// Whether `row` passes the filter.
    pub fn matches(&self, row: &LogRow) -> bool {
        let e = &row.entry;
        let place = match (self.repository, self.tag) {
            (Some(repo), Some(tag)) => names_tag(e, repo, tag),
            (None, Some(tag)) => {
                e.tag.as_deref() == Some(tag) || (e.tag.is_none() && listed_anywhere(e, tag))
            }
            (Some(repo), None) => e.repository.as_deref() == Some(repo),
            (None, None) => true,
        };
        place
            && self.namespace.is_none_or(|x| e.namespace == x)
            && self.kind.is_none_or(|x| e.kind == x)
    }
}

/// Whether a per-batch record lists a tag of this name in any repository.
fn listed_anywhere(e: &tagguard_engine::AuditEntry, tag: &str) -> bool {
    e.metadata
        .get("tags")
        .and_then(|v| v.as_array())
        .is_some_and(|tags| {
            tags.iter()
                .any(|t| t.get("tag").and_then(|v| v.as_str()) == Some(tag))
        })
}
