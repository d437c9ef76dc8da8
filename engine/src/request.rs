//! Checks of what the registry asks the engine to decide, before a plugin sees
//! it: the policies' fields, that they are in the request's scope, and that a
//! request's tags belong together. A malformed request is the registry's
//! error, named by field, never a plugin's.

use crate::bindings::policy_engine::{DeleteOperation, DeleteRequest};
use crate::bindings::types::{Policy, PolicyError, Scope};
use crate::error::EngineError;
use crate::names::{check_namespace, check_repository};
use crate::push::PushRequest;
use std::collections::HashSet;

/// Where a checked value sits in the request, e.g. `policies[3]`; spelled out only when
/// a check fails, so a request that passes costs no formatting.
#[derive(Clone, Copy)]
pub(crate) enum At<'a> {
    /// The request itself (`namespace`, `repository`).
    Top,
    /// A named part (`candidate`, `policy`).
    Part(&'a str),
    /// An element of a named list (`policies[3]`).
    Item(&'a str, usize),
}

impl At<'_> {
    /// The full name of `field` here.
    fn field(self, field: &str) -> String {
        match self {
            At::Top => field.to_string(),
            At::Part(part) => format!("{part}.{field}"),
            At::Item(list, i) => format!("{list}[{i}].{field}"),
        }
    }
}

fn invalid(call: &'static str, field: String, reason: impl Into<String>) -> EngineError {
    EngineError::InvalidRequest {
        call,
        field,
        reason: reason.into(),
    }
}

/// A namespace and, if given, a repository, named by the OCI rule.
pub(crate) fn place(
    call: &'static str,
    at: At<'_>,
    namespace: &str,
    repository: Option<&str>,
) -> Result<(), EngineError> {
    check_namespace(namespace).map_err(|r| invalid(call, at.field("namespace"), r))?;
    match repository {
        Some(r) => check_repository(r).map_err(|e| invalid(call, at.field("repository"), e)),
        None => Ok(()),
    }
}

/// The fields of a policy other than its pattern, as `validate-policy` checks them,
/// as a request error naming `name`'s field; and its names, by the OCI rule.
fn fields(call: &'static str, at: At<'_>, p: &Policy) -> Result<(), EngineError> {
    candidate(p).map_err(|e| {
        let (field, reason) = match e {
            PolicyError::MissingField(field) => (field, "must not be empty".to_string()),
            PolicyError::ScopeMismatch(m) => (
                "repository".to_string(),
                m.strip_prefix("repository: ").unwrap_or(&m).to_string(),
            ),
            other => ("tag-pattern".to_string(), other.message()),
        };
        invalid(call, at.field(&field), reason)
    })?;
    place(call, at, &p.namespace, p.repository.as_deref())
}

/// A candidate policy's fields, as `validate-policy` checks them and with the same
/// errors (the pattern is the plugin's to check and trim): a candidate is user input,
/// so its errors are policy errors, whichever plugin serves.
pub(crate) fn candidate(p: &Policy) -> Result<(), PolicyError> {
    if p.uuid.trim().is_empty() {
        return Err(PolicyError::MissingField("uuid".into()));
    }
    if p.namespace.trim().is_empty() {
        return Err(PolicyError::MissingField("namespace".into()));
    }
    match (p.scope, p.repository.as_deref()) {
        (Scope::Repository, None) => Err(PolicyError::ScopeMismatch(
            "repository: a repository policy must name its repository".into(),
        )),
        (Scope::Repository, Some(r)) if r.trim().is_empty() => {
            Err(PolicyError::MissingField("repository".into()))
        }
        (Scope::Namespace, Some(_)) => Err(PolicyError::ScopeMismatch(
            "repository: a namespace policy must not name a repository".into(),
        )),
        _ => Ok(()),
    }
}

/// A stored policy: its fields, and a pattern that validation normalised (not empty,
/// no white space around it).
pub(crate) fn policy(call: &'static str, at: At<'_>, p: &Policy) -> Result<(), EngineError> {
    fields(call, at, p)?;
    let pattern = &p.tag_pattern;
    if pattern.trim().is_empty() || pattern.trim() != pattern {
        return Err(invalid(
            call,
            at.field("tag-pattern"),
            format!("{pattern:?} is not a validated pattern (empty, or white space around it)"),
        ));
    }
    Ok(())
}

/// Stored policies, each checked as [`policy`], with distinct uuids.
pub(crate) fn policies(call: &'static str, name: &str, ps: &[Policy]) -> Result<(), EngineError> {
    for (i, p) in ps.iter().enumerate() {
        policy(call, At::Item(name, i), p)?;
        if ps[..i].iter().any(|q| q.uuid == p.uuid) {
            return Err(invalid(
                call,
                At::Item(name, i).field("uuid"),
                format!("{} appears twice", p.uuid),
            ));
        }
    }
    Ok(())
}

/// Policies in scope of `namespace/repository`: the namespace's and the repository's.
fn in_scope(
    call: &'static str,
    ps: &[Policy],
    namespace: &str,
    repository: &str,
) -> Result<(), EngineError> {
    policies(call, "policies", ps)?;
    for (i, p) in ps.iter().enumerate() {
        let applies =
            p.namespace == namespace && p.repository.as_deref().is_none_or(|r| r == repository);
        if !applies {
            return Err(invalid(
                call,
                format!("policies[{i}]"),
                format!(
                    "policy {} of {}/{} does not apply to {namespace}/{repository}",
                    p.uuid,
                    p.namespace,
                    p.repository.as_deref().unwrap_or("*")
                ),
            ));
        }
    }
    Ok(())
}

/// A push: its policies apply to its repository, and `existing` is the pushed tag.
pub(crate) fn push(call: &'static str, req: &PushRequest) -> Result<(), EngineError> {
    place(call, At::Top, &req.namespace, Some(&req.repository))?;
    in_scope(call, &req.policies, &req.namespace, &req.repository)?;
    if let Some(t) = &req.existing {
        let same = t.namespace == req.namespace
            && t.repository == req.repository
            && t.name == req.tag_name;
        if !same {
            return Err(invalid(
                call,
                "existing".into(),
                format!(
                    "{}/{}:{} is not the pushed tag {}/{}:{}",
                    t.namespace, t.repository, t.name, req.namespace, req.repository, req.tag_name
                ),
            ));
        }
    }
    Ok(())
}

/// A delete or expiry: at least one tag, each once, all in one repository (and on one
/// manifest for a manifest delete), with policies that apply to it.
pub(crate) fn delete(
    call: &'static str,
    req: &DeleteRequest,
    policies: &[Policy],
) -> Result<(), EngineError> {
    let Some(first) = req.tags.first() else {
        return Err(invalid(call, "tags".into(), "must not be empty"));
    };
    place(
        call,
        At::Item("tags", 0),
        &first.namespace,
        Some(&first.repository),
    )?;
    let mut ids = HashSet::new();
    for (i, t) in req.tags.iter().enumerate() {
        if !ids.insert(t.id) {
            return Err(invalid(
                call,
                format!("tags[{i}].id"),
                format!("{} appears twice", t.id),
            ));
        }
        let together = t.namespace == first.namespace
            && t.repository == first.repository
            && (req.operation != DeleteOperation::DeleteManifest
                || t.manifest_digest == first.manifest_digest);
        if !together {
            return Err(invalid(
                call,
                format!("tags[{i}]"),
                "every tag of one request must be in the same repository (and on the same manifest for a manifest delete)",
            ));
        }
    }
    in_scope(call, policies, &first.namespace, &first.repository)
}

/// An update keeps the policy's uuid, namespace, scope and repository.
pub(crate) fn update(
    call: &'static str,
    before: &Policy,
    after: &Policy,
) -> Result<(), EngineError> {
    let same = before.uuid == after.uuid
        && before.namespace == after.namespace
        && before.scope == after.scope
        && before.repository == after.repository;
    if same {
        Ok(())
    } else {
        Err(invalid(
            call,
            "candidate".into(),
            format!(
                "an update of policy {} may change only its pattern and polarity",
                before.uuid
            ),
        ))
    }
}
