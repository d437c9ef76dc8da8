//! One function per decision: check the registry's request, run the export on
//! a generation, check the outcome against what the host saw and the records
//! the plugin staged (the guard), and return both, ready to commit. Nothing
//! here writes to the registry.

use crate::bindings::policy_engine::{
    DeleteDecision, DeleteRequest, Guest, PreviewReport, PushDecision, RunOptions, RunSummary,
    RunTrigger,
};
use crate::bindings::types::{Actor, Error as PluginError, Policy, RecordKind, Tag};
use crate::entry::AuditEntry;
use crate::error::EngineError;
use crate::generation::{Budget, Generation};
use crate::guard;
use crate::host::{Access, CallState, HostState};
use crate::policy_set::{self, PolicyMatch};
use crate::push::{PushRequest, PushVerdict};
use crate::request;
use wasmtime::Store;

fn plugin_error(
    generation: &Generation,
    call: &'static str,
    error: PluginError,
    state: &CallState,
) -> EngineError {
    let plugin = generation.label.clone();
    match error {
        PluginError::Store(message) => EngineError::HostStore {
            plugin,
            call,
            message: state.store_error.clone().unwrap_or(message),
        },
        PluginError::Audit(reason) => EngineError::AuditMissing {
            plugin,
            call,
            reason,
        },
        error => EngineError::Plugin {
            plugin,
            call,
            error,
        },
    }
}

/// The reason an outcome was rejected for its records, as a typed error.
pub(crate) fn audit_missing(
    generation: &Generation,
    call: &'static str,
    reason: String,
) -> EngineError {
    EngineError::AuditMissing {
        plugin: generation.label.clone(),
        call,
        reason,
    }
}

/// The reason a result was rejected because it breaks the contract, as a typed error.
fn contract_violation(generation: &Generation, call: &'static str, reason: String) -> EngineError {
    EngineError::ContractViolation {
        plugin: generation.label.clone(),
        call,
        reason,
    }
}

/// Runs an export returning `result<T, error>`, flattening both error layers.
fn decide<T>(
    generation: &Generation,
    name: &'static str,
    access: Access,
    actor: Option<&Actor>,
    budget: Budget,
    f: impl FnOnce(&Guest, &mut Store<HostState>) -> wasmtime::Result<Result<T, PluginError>>,
) -> (Result<T, EngineError>, CallState) {
    let (result, state) = generation.call(name, access, actor, budget, f);
    let result = match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(plugin_error(generation, name, e, &state)),
        Err(e) => Err(e),
    };
    (result, state)
}

/// Checks a candidate policy and returns it with the pattern the plugin normalised.
/// Every field but the pattern is the host's; the pattern may only lose the white space
/// around it.
pub(crate) fn validate_policy(
    generation: &Generation,
    candidate: &Policy,
    existing: &[Policy],
) -> Result<Policy, EngineError> {
    const CALL: &str = "validate-policy";
    let invalid = |error| EngineError::InvalidPolicy {
        plugin: generation.label.clone(),
        call: CALL,
        error,
    };
    request::candidate(candidate).map_err(invalid)?;
    request::place(
        CALL,
        request::At::Part("candidate"),
        &candidate.namespace,
        candidate.repository.as_deref(),
    )?;
    request::policies(CALL, "existing", existing)?;
    let (result, _) = generation.call(CALL, Access::ReadOnly, None, Budget::Query, |g, s| {
        g.call_validate_policy(s, candidate, existing)
    });
    let pattern = result?.map_err(invalid)?;
    let trimmed = candidate.tag_pattern.trim();
    if pattern != trimmed {
        return Err(contract_violation(
            generation,
            CALL,
            format!(
                "the plugin normalised the pattern {trimmed:?} to {pattern:?}; it may only trim white space"
            ),
        ));
    }
    Ok(Policy {
        tag_pattern: pattern,
        ..candidate.clone()
    })
}

/// A staged decision on behalf of `actor`, checked by `check` against its records.
fn checked<T>(
    generation: &Generation,
    name: &'static str,
    actor: &Actor,
    call: impl FnOnce(&Guest, &mut Store<HostState>) -> wasmtime::Result<Result<T, PluginError>>,
    check: impl FnOnce(&T, &[AuditEntry]) -> Result<(), String>,
) -> Result<(T, Vec<AuditEntry>), EngineError> {
    let (result, state) = decide(
        generation,
        name,
        Access::Stage,
        Some(actor),
        Budget::Decision,
        call,
    );
    let value = result?;
    check(&value, &state.staged).map_err(|r| audit_missing(generation, name, r))?;
    Ok((value, state.staged))
}

/// Runs `f` with the instance's handle for `policies` (compiled on first use); a set the
/// plugin refuses is that call's error.
fn with_set<T>(
    g: &Guest,
    s: &mut Store<HostState>,
    policies: &[Policy],
    f: impl FnOnce(
        &Guest,
        &mut Store<HostState>,
        policy_set::Handle,
    ) -> wasmtime::Result<Result<T, PluginError>>,
) -> wasmtime::Result<Result<T, PluginError>> {
    match policy_set::handle(g, s, policies)? {
        Ok(set) => f(g, s, set),
        Err(refused) => Ok(Err(refused)),
    }
}

/// A push decision with its checked records.
pub(crate) fn push(
    generation: &Generation,
    req: &PushRequest,
) -> Result<(PushVerdict, Vec<AuditEntry>), EngineError> {
    const CALL: &str = "on-push";
    request::push(CALL, req)?;
    let asked = req.for_plugin();
    checked(
        generation,
        CALL,
        &req.actor,
        |g, s| {
            with_set(g, s, &req.policies, |g, s, set| {
                Ok(match g.call_on_push(s, &asked, set)? {
                    Ok(PushDecision::Deny(keeping)) => Ok(PushVerdict::Deny(policy_set::resolve(
                        &req.policies,
                        &keeping,
                    )?)),
                    Ok(PushDecision::Create(c)) => Ok(PushVerdict::Create {
                        immutable: c.immutable,
                        matched: policy_set::resolve(&req.policies, &c.matched)?,
                    }),
                    Err(e) => Err(e),
                })
            })
        },
        |v, staged| guard::push(req, v, staged),
    )
}

/// A delete or expiry decision under `policies` with its checked records.
pub(crate) fn delete(
    generation: &Generation,
    req: &DeleteRequest,
    policies: &[Policy],
) -> Result<(DeleteDecision, Vec<AuditEntry>), EngineError> {
    const CALL: &str = "on-delete";
    request::delete(CALL, req, policies)?;
    checked(
        generation,
        CALL,
        &req.actor,
        |g, s| with_set(g, s, policies, |g, s, set| g.call_on_delete(s, req, set)),
        |d, staged| guard::delete(req, d, staged),
    )
}

/// A manual change with its checked record (none when nothing changes).
pub(crate) fn manual_change(
    generation: &Generation,
    actor: &Actor,
    tag: &Tag,
    immutable: bool,
) -> Result<(bool, Vec<AuditEntry>), EngineError> {
    checked(
        generation,
        "on-manual-change",
        actor,
        |g, s| g.call_on_manual_change(s, actor, tag, immutable),
        |changed, staged| guard::manual_change(tag, immutable, *changed, staged),
    )
}

/// Which policy event a record is staged for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PolicyEvent<'a> {
    /// Created.
    Created,
    /// Updated from this policy.
    Updated(&'a Policy),
    /// Deleted.
    Deleted,
}

/// The record of a policy create, update or delete, checked.
pub(crate) fn policy_record(
    generation: &Generation,
    actor: &Actor,
    policy: &Policy,
    event: PolicyEvent<'_>,
) -> Result<Vec<AuditEntry>, EngineError> {
    let (call, kind): (&'static str, RecordKind) = match event {
        PolicyEvent::Created => ("on-policy-created", RecordKind::CreateImmutabilityPolicy),
        PolicyEvent::Updated(_) => ("on-policy-updated", RecordKind::UpdateImmutabilityPolicy),
        PolicyEvent::Deleted => ("on-policy-deleted", RecordKind::DeleteImmutabilityPolicy),
    };
    request::policy(call, request::At::Part("policy"), policy)?;
    if let PolicyEvent::Updated(before) = event {
        request::update(call, before, policy)?;
    }
    let record = |g: &Guest, s: &mut Store<HostState>| match event {
        PolicyEvent::Created => g.call_on_policy_created(s, actor, policy),
        PolicyEvent::Updated(before) => g.call_on_policy_updated(s, actor, before, policy),
        PolicyEvent::Deleted => g.call_on_policy_deleted(s, actor, policy),
    };
    let check = |_: &(), staged: &[AuditEntry]| guard::policy_change(kind, policy, staged);
    Ok(checked(generation, call, actor, record, check)?.1)
}

/// The name of a trigger in record metadata.
pub(crate) fn trigger_name(trigger: RunTrigger) -> &'static str {
    match trigger {
        RunTrigger::PolicyCreated => "policy_created",
        RunTrigger::PolicyUpdated => "policy_updated",
        RunTrigger::Reapplied => "reapplied",
    }
}

/// A retroactive run: its checked summary with the records to commit, or the error;
/// and what the host saw either way.
pub(crate) fn run(
    generation: &Generation,
    actor: &Actor,
    policy: &Policy,
    trigger: RunTrigger,
    options: &RunOptions,
) -> (Result<RunSummary, EngineError>, CallState) {
    const CALL: &str = "run-retroactive";
    if let Err(e) = request::policy(CALL, request::At::Part("policy"), policy) {
        return (Err(e), CallState::default());
    }
    let access = Access::Run {
        run_id: options.run_id.clone(),
        policy: policy.clone(),
    };
    let (result, state) = decide(
        generation,
        CALL,
        access,
        Some(actor),
        Budget::Run,
        |g, s| g.call_run_retroactive(s, actor, policy, trigger, options),
    );
    let checked = result.and_then(|summary| {
        guard::completed_run(&options.run_id, policy, &summary, &state, &state.staged)
            .map_err(|r| audit_missing(generation, CALL, r))?;
        Ok(summary)
    });
    (checked, state)
}

/// Every policy among `policies` that fires for `tag_name`.
pub(crate) fn explain(
    generation: &Generation,
    tag_name: &str,
    policies: &[Policy],
) -> Result<Vec<PolicyMatch>, EngineError> {
    const CALL: &str = "explain";
    request::policies(CALL, "policies", policies)?;
    decide(
        generation,
        CALL,
        Access::ReadOnly,
        None,
        Budget::Query,
        |g, s| {
            with_set(g, s, policies, |g, s, set| {
                Ok(match g.call_explain(s, tag_name, set)? {
                    Ok(fired) => Ok(policy_set::resolve(policies, &fired)?),
                    Err(e) => Err(e),
                })
            })
        },
    )
    .0
}

/// A dry run of a stored or validated policy.
pub(crate) fn preview(
    generation: &Generation,
    policy: &Policy,
    limit: u32,
) -> Result<PreviewReport, EngineError> {
    const CALL: &str = "preview";
    request::policy(CALL, request::At::Part("policy"), policy)?;
    let access = Access::Scan {
        policy: policy.clone(),
    };
    let (result, state) = decide(generation, CALL, access, None, Budget::Query, |g, s| {
        g.call_preview(s, policy, limit)
    });
    let report = result?;
    guard::preview(policy, limit, &report, &state)
        .map_err(|r| contract_violation(generation, CALL, r))?;
    Ok(report)
}
