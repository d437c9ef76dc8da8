//! The self-test a plugin must pass before a swap publishes it: a few
//! decisions and a small retroactive run against a scratch store, each
//! checked by the completeness guard. Nothing touches the registry.

use crate::bindings::policy_engine::{
    Granularity, PushDecision, PushRequest, RunOptions, RunTrigger,
};
use crate::bindings::types::{Actor, ActorKind, Policy, Scope, Tag};
use crate::decide;
use crate::error::EngineError;
use crate::plugin::Plugin;
use crate::registry::{MarkBatch, MarkImmutable, ScanRequest, StoreError, TagStore};
use std::sync::{Arc, Mutex};

const NAMESPACE: &str = "tagguard-self-test";

/// A few tags in memory that a self-test run may mark.
struct Scratch {
    tags: Mutex<Vec<Tag>>,
}

impl Scratch {
    fn new(names: &[&str]) -> Self {
        let tags = names
            .iter()
            .enumerate()
            .map(|(i, name)| Tag {
                id: i as u64 + 1,
                namespace: NAMESPACE.into(),
                repository: "repo".into(),
                name: (*name).into(),
                manifest_digest: format!("sha256:{:064x}", i + 1),
                immutable: false,
            })
            .collect();
        Scratch {
            tags: Mutex::new(tags),
        }
    }
}

impl Scratch {
    fn mark(&self, ids: impl Iterator<Item = u64>) -> Vec<u64> {
        let mut tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
        ids.filter(|id| {
            tags.iter_mut()
                .find(|t| t.id == *id && !t.immutable)
                .map(|t| t.immutable = true)
                .is_some()
        })
        .collect()
    }
}

impl TagStore for Scratch {
    fn scan(&self, r: &ScanRequest) -> Result<Vec<Tag>, StoreError> {
        let tags = self.tags.lock().unwrap_or_else(|p| p.into_inner());
        Ok(tags
            .iter()
            .filter(|t| t.id > r.after_id)
            .take(r.limit as usize)
            .cloned()
            .collect())
    }

    fn mark_immutable(&self, changes: Vec<MarkImmutable>) -> Result<Vec<u64>, StoreError> {
        Ok(self.mark(changes.iter().map(|c| c.tag_id)))
    }

    fn mark_immutable_batch(&self, batch: MarkBatch) -> Result<Vec<u64>, StoreError> {
        Ok(self.mark(batch.tags.iter().map(|t| t.id)))
    }
}

fn failed(plugin: &Plugin, what: &str) -> EngineError {
    EngineError::ContractMismatch {
        plugin: plugin.stamp().to_string(),
        reason: format!("self-test: {what}"),
    }
}

/// Runs the self-test; the first failing check is the error.
pub(crate) fn run(plugin: &Plugin) -> Result<(), EngineError> {
    let scratch = Arc::new(Scratch::new(&["latest", "v1", "stable", "latest-old"]));
    let generation = plugin.generation(0, scratch);
    let actor = Actor {
        kind: ActorKind::System,
        name: Some("tagguard-self-test".into()),
        ip: None,
        request_id: None,
    };
    let candidate = Policy {
        uuid: "self-test".into(),
        scope: Scope::Namespace,
        namespace: NAMESPACE.into(),
        repository: None,
        tag_pattern: "latest".into(),
        tag_pattern_matches: true,
    };
    let policy = decide::validate_policy(&generation, &candidate, &[])?;
    let push = |tag: &str, existing: Option<Tag>| PushRequest {
        actor: actor.clone(),
        namespace: NAMESPACE.into(),
        repository: "repo".into(),
        tag_name: tag.into(),
        manifest_digest: format!("sha256:{:064x}", 99),
        existing,
        policies: vec![policy.clone()],
        policy_version: 1,
    };
    match decide::push(&generation, &push("latest", None))?.0 {
        PushDecision::Create(c) if c.immutable => {}
        _ => {
            return Err(failed(
                plugin,
                "a new tag `latest` under policy `latest` must be created immutable",
            ));
        }
    }
    match decide::push(&generation, &push("v1", None))?.0 {
        PushDecision::Create(c) if !c.immutable => {}
        _ => {
            return Err(failed(
                plugin,
                "a new tag `v1` under policy `latest` must be created mutable",
            ));
        }
    }
    let existing = Tag {
        id: 1,
        namespace: NAMESPACE.into(),
        repository: "repo".into(),
        name: "latest".into(),
        manifest_digest: format!("sha256:{:064x}", 1),
        immutable: true,
    };
    if !matches!(
        decide::push(&generation, &push("latest", Some(existing)))?.0,
        PushDecision::Deny(_)
    ) {
        return Err(failed(
            plugin,
            "overwriting an immutable tag must be denied",
        ));
    }
    if decide::explain(&generation, "latest", std::slice::from_ref(&policy))?.len() != 1 {
        return Err(failed(
            plugin,
            "explain must report the policy that fires for `latest`",
        ));
    }
    let options = RunOptions {
        run_id: "self-test".into(),
        batch_size: 3,
        granularity: Granularity::PerTag,
    };
    let summary = decide::run(
        &generation,
        &actor,
        &policy,
        RunTrigger::PolicyCreated,
        &options,
    )
    .0?;
    if summary.count != 1 {
        return Err(failed(
            plugin,
            &format!(
                "a run of policy `latest` over 4 tags must mark 1, it marked {}",
                summary.count
            ),
        ));
    }
    Ok(())
}
