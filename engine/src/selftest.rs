//! The self-test a plugin must pass before a swap publishes it: a few
//! decisions and a small retroactive run against a scratch store, each
//! checked by the completeness guard. Nothing touches the registry.

use crate::bindings::policy_engine::{Granularity, RunOptions, RunTrigger};
use crate::bindings::types::{Actor, ActorKind, Policy, Scope, Tag};
use crate::decide;
use crate::error::EngineError;
use crate::memory::MemoryStore;
use crate::plugin::Plugin;
use crate::push::{PushRequest, PushVerdict};
use std::sync::Arc;

const NAMESPACE: &str = "tagguard-self-test";

fn failed(plugin: &Plugin, what: &str) -> EngineError {
    EngineError::ContractMismatch {
        plugin: plugin.stamp().to_string(),
        reason: format!("self-test: {what}"),
    }
}

/// Runs the self-test; the first failing check is the error.
pub(crate) fn run(plugin: &Plugin) -> Result<(), EngineError> {
    let names = ["latest", "v1", "stable", "latest-old"].map(String::from);
    let scratch = Arc::new(MemoryStore::new(NAMESPACE, "repo", names.into_iter()));
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
        PushVerdict::Create {
            immutable: true, ..
        } => {}
        _ => {
            return Err(failed(
                plugin,
                "a new tag `latest` under policy `latest` must be created immutable",
            ));
        }
    }
    match decide::push(&generation, &push("v1", None))?.0 {
        PushVerdict::Create {
            immutable: false, ..
        } => {}
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
        PushVerdict::Deny(_)
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
