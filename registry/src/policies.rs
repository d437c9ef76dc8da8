//! Policy changes and the retroactive runs they start, tracked as runs the
//! registry can report on and finish: one path for the REST API and the
//! tagguard API alike.

use crate::app::{App, Caller};
use crate::errors::ApiError;
use crate::store::{PolicyLock, RunRow};
use axum::http::StatusCode;
use std::ops::Range;
use tagguard_engine::{EngineError, Policy, PolicyOutcome, RunTrigger, Scope};

/// Where a policy lives: a namespace, or a repository in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The namespace.
    pub namespace: String,
    /// The repository, for a repository policy.
    pub repository: Option<String>,
}

impl Owner {
    /// Whether `p` belongs here.
    pub fn owns(&self, p: &Policy) -> bool {
        p.namespace == self.namespace && p.repository == self.repository
    }

    /// A candidate policy of this owner.
    pub fn candidate(&self, uuid: String, pattern: &str, matches: bool) -> Policy {
        Policy {
            uuid,
            scope: if self.repository.is_some() {
                Scope::Repository
            } else {
                Scope::Namespace
            },
            namespace: self.namespace.clone(),
            repository: self.repository.clone(),
            tag_pattern: pattern.into(),
            tag_pattern_matches: matches,
        }
    }
}

/// A new policy's id: a random UUID (version 4).
pub fn new_uuid() -> Result<String, ApiError> {
    let hex = crate::accounts::random_hex(16).map_err(ApiError::internal)?;
    let mut b: Vec<char> = hex.chars().collect();
    b[12] = '4';
    b[16] = ['8', '9', 'a', 'b'][b[16].to_digit(16).unwrap_or(0) as usize % 4];
    let s: String = b.into_iter().collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    ))
}

/// The REST error for an engine failure.
pub fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::InvalidPolicy { .. } | EngineError::InvalidRequest { .. } => {
            ApiError::invalid(e.to_string())
        }
        EngineError::RunIncomplete { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "run_incomplete",
            e.to_string(),
        ),
        other => ApiError::internal(other),
    }
}

/// Where in `pattern` an engine error about it points, as a range of characters
/// of the pattern trimmed (as the engine checks it): the carets of a regex parse
/// error under its copy of the pattern, or an unsupported construct's "at
/// position N" (one character). `None` when the message points nowhere in it.
pub fn pattern_error_span(pattern: &str, message: &str) -> Option<Range<usize>> {
    let pattern: Vec<char> = pattern.trim().chars().collect();
    if pattern.is_empty() {
        return None;
    }
    let text: String = pattern.iter().collect();
    let lines: Vec<&str> = message.lines().collect();
    for pair in lines.windows(2) {
        let (copy, marks) = (pair[0], pair[1]);
        if !copy.ends_with(&text)
            || !marks.contains('^')
            || !marks.chars().all(|c| c == ' ' || c == '^')
        {
            continue;
        }
        let indent = copy.chars().count() - pattern.len();
        let marks: Vec<char> = marks.chars().collect();
        let first = marks.iter().position(|&c| c == '^')?.checked_sub(indent)?;
        let last = marks.iter().rposition(|&c| c == '^')?.checked_sub(indent)?;
        return Some(first.min(pattern.len())..(last + 1).min(pattern.len()).max(first));
    }
    let (_, after) = message.split_once(" at position ")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let at = digits.parse::<usize>().ok()?.min(pattern.len());
    Some(at..(at + 1).min(pattern.len()))
}

/// A policy stored, with the run that applied it.
#[derive(Debug)]
pub struct Applied {
    /// The stored policy.
    pub policy: Policy,
    /// The run, as tracked.
    pub run: RunRow,
}

/// What a tracked run ended with.
fn ended(
    app: &App,
    run: i64,
    result: Result<PolicyOutcome, EngineError>,
) -> Result<Applied, ApiError> {
    match result {
        Ok(outcome) => {
            app.metrics.policy_change();
            app.metrics.run_marked(outcome.run.count);
            app.store
                .end_run(
                    run,
                    "completed",
                    Some(&outcome.run.run_id),
                    outcome.run.count,
                    None,
                )
                .map_err(ApiError::internal)?;
            let row = app
                .store
                .run(run)
                .map_err(ApiError::internal)?
                .ok_or_else(|| ApiError::internal("the run row vanished"))?;
            Ok(Applied {
                policy: outcome.policy,
                run: row,
            })
        }
        Err(EngineError::RunIncomplete {
            run_id,
            changed,
            cause,
            ..
        }) => {
            app.metrics.policy_change();
            app.metrics.run_marked(changed);
            let reason = cause.to_string();
            app.store
                .end_run(run, "failed", Some(&run_id), changed, Some(&reason))
                .map_err(ApiError::internal)?;
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "run_incomplete",
                format!(
                    "the policy is stored, but its run {run} stopped after {changed} tags: {reason}; \
                     POST /api/v1/tagguard/runs/{run}/apply finishes it"
                ),
            ))
        }
        Err(e) => {
            app.metrics.failure();
            app.store.drop_run(run).map_err(ApiError::internal)?;
            Err(engine_error(e))
        }
    }
}

/// The lock every policy change and run holds, across every registry process on the
/// database: a candidate is validated against the policies that exist when it is
/// stored, and one run applies at a time.
fn policy_lock(app: &App) -> Result<PolicyLock, ApiError> {
    app.store.lock_policies().map_err(ApiError::internal)
}

/// `policy` as stored now (read under the policy lock): another request may have
/// changed or deleted it since the caller read it.
fn still_stored(app: &App, policy: &Policy) -> Result<Policy, ApiError> {
    app.store
        .policy(&policy.uuid)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("immutability policy not found"))
}

/// Validates `candidate` against the namespace's other policies, tracks a run for it,
/// and lets `store` store it and run it (the engine's create or update). The caller
/// holds the policy lock.
fn tracked(
    app: &App,
    caller: &Caller,
    candidate: &Policy,
    trigger: &str,
    store: impl FnOnce(&[Policy]) -> Result<PolicyOutcome, EngineError>,
) -> Result<Applied, ApiError> {
    let existing: Vec<Policy> = app
        .store
        .namespace_policies(&candidate.namespace)
        .map_err(ApiError::internal)?
        .into_iter()
        .filter(|p| p.uuid != candidate.uuid)
        .collect();
    let checked = app
        .guard
        .validate_policy(candidate, &existing)
        .map_err(engine_error)?;
    let run = app
        .store
        .start_run(&checked, trigger, &caller.account.name)
        .map_err(ApiError::internal)?;
    ended(app, run, store(&existing))
}

/// Validates and stores a new policy, then applies it to existing tags.
pub fn create(
    app: &App,
    caller: &Caller,
    owner: &Owner,
    pattern: &str,
    matches: bool,
) -> Result<Applied, ApiError> {
    let candidate = owner.candidate(new_uuid()?, pattern, matches);
    let _serial = policy_lock(app)?;
    tracked(app, caller, &candidate, "policy_created", |existing| {
        app.guard
            .create_policy(&caller.actor(), &candidate, existing)
    })
}

/// Validates and stores a new pattern for a policy, then applies it.
pub fn update(
    app: &App,
    caller: &Caller,
    before: &Policy,
    pattern: &str,
    matches: bool,
) -> Result<Applied, ApiError> {
    let _serial = policy_lock(app)?;
    let before = &still_stored(app, before)?;
    let candidate = Policy {
        tag_pattern: pattern.into(),
        tag_pattern_matches: matches,
        ..before.clone()
    };
    tracked(app, caller, &candidate, "policy_updated", |existing| {
        app.guard
            .update_policy(&caller.actor(), before, &candidate, existing)
    })
}

/// Deletes a policy with its record.
pub fn delete(app: &App, caller: &Caller, policy: &Policy) -> Result<(), ApiError> {
    let _serial = policy_lock(app)?;
    let policy = &still_stored(app, policy)?;
    app.guard
        .delete_policy(&caller.actor(), policy)
        .map_err(engine_error)?;
    app.metrics.policy_change();
    Ok(())
}

/// Finishes a run that stopped: applies its policy again, and marks the old run as
/// finished by the new one. Returns the old run, updated.
pub fn finish(app: &App, caller: &Caller, id: i64) -> Result<RunRow, ApiError> {
    let _serial = policy_lock(app)?;
    let old = app
        .store
        .run(id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("run {id} does not exist")))?;
    if !matches!(old.status.as_str(), "incomplete" | "failed") {
        return Err(ApiError::invalid(format!(
            "run {id} is {}: only an incomplete or failed run can be finished",
            old.status
        )));
    }
    let policy = app
        .store
        .policy(&old.policy_uuid)
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "run {id}: its policy {} was deleted; there is nothing to apply",
                old.policy_uuid
            ))
        })?;
    let run = app
        .store
        .start_run(&policy, "reapplied", &caller.account.name)
        .map_err(ApiError::internal)?;
    let result = app
        .guard
        .apply_policy(&caller.actor(), &policy, RunTrigger::Reapplied)
        .map(|run| PolicyOutcome {
            policy: policy.clone(),
            run,
        });
    let applied = ended(app, run, result)?;
    app.store
        .finish_run_by(id, run, applied.run.changed)
        .map_err(ApiError::internal)?;
    app.store
        .run(id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("the run row vanished"))
}

#[cfg(test)]
mod tests {
    use super::pattern_error_span;

    #[test]
    fn a_regex_parse_errors_carets_mark_the_span_in_the_trimmed_pattern() {
        let message = "plugin p, call validate-policy: invalid policy: tag-pattern: does not \
                       compile: regex parse error:\n    v1.(\n       ^\nerror: unclosed group";
        assert_eq!(pattern_error_span("v1.(", message), Some(3..4));
        assert_eq!(pattern_error_span("  v1.(  ", message), Some(3..4));
        let wide = "regex parse error:\n    a{2,1}\n     ^^^^^\nerror: invalid repetition";
        assert_eq!(pattern_error_span("a{2,1}", wide), Some(1..6));
        let non_ascii = "regex parse error:\n    é(\n     ^\nerror: unclosed group";
        assert_eq!(pattern_error_span("é(", non_ascii), Some(1..2));
    }

    #[test]
    fn an_unsupported_constructs_position_marks_one_character() {
        let message = "invalid policy: tag-pattern: look-around at position 2 is not supported";
        assert_eq!(pattern_error_span("ab(?=x)", message), Some(2..3));
        let at_end = "tag-pattern: something at position 9 is not supported";
        assert_eq!(pattern_error_span("abc", at_end), Some(3..3));
    }

    #[test]
    fn a_message_without_a_position_marks_nothing() {
        assert_eq!(
            pattern_error_span("v1", "tag-pattern: duplicates policy x in the same scope"),
            None
        );
        assert_eq!(
            pattern_error_span("other", "regex parse error:\n    v1.(\n       ^\n"),
            None
        );
        assert_eq!(pattern_error_span("  ", "at position 0"), None);
    }
}
