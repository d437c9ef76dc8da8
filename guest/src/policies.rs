//! Validation of a candidate policy against the policies that already exist.

use crate::language::PatternLanguage;
use crate::model::{Policy, PolicyError, Scope};
use crate::pattern::validate_pattern;

/// Whether two policies govern the same scope (same level, namespace and repository).
fn same_scope(a: &Policy, b: &Policy) -> bool {
    a.scope == b.scope && a.namespace == b.namespace && a.repository == b.repository
}

/// Checks the fields of a policy other than its pattern: uuid, namespace, and that
/// scope and repository agree. Every export checks every policy it is given with this.
pub fn check_fields(candidate: &Policy) -> Result<(), PolicyError> {
    if candidate.uuid.trim().is_empty() {
        return Err(PolicyError::MissingField("uuid".into()));
    }
    if candidate.namespace.trim().is_empty() {
        return Err(PolicyError::MissingField("namespace".into()));
    }
    match (candidate.scope, candidate.repository.as_deref()) {
        (Scope::Repository, None) => {
            return Err(PolicyError::ScopeMismatch(
                "repository: a repository policy must name its repository".into(),
            ));
        }
        (Scope::Repository, Some(r)) if r.trim().is_empty() => {
            return Err(PolicyError::MissingField("repository".into()));
        }
        (Scope::Namespace, Some(_)) => {
            return Err(PolicyError::ScopeMismatch(
                "repository: a namespace policy must not name a repository".into(),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Checks `candidate`, whose pattern is of dialect `L`, and returns it normalised (pattern trimmed).
/// `existing` may contain the candidate itself (an update); it is skipped by uuid.
pub fn validate_policy<L: PatternLanguage>(
    candidate: &Policy,
    existing: &[Policy],
) -> Result<Policy, PolicyError> {
    check_fields(candidate)?;
    let pattern = validate_pattern::<L>(&candidate.tag_pattern)?;
    let normalised = Policy {
        tag_pattern: pattern,
        ..candidate.clone()
    };
    if let Some(dup) = existing.iter().find(|p| {
        p.uuid != normalised.uuid
            && same_scope(p, &normalised)
            && p.tag_pattern.trim() == normalised.tag_pattern
    }) {
        return Err(PolicyError::DuplicatePattern(dup.uuid.clone()));
    }
    Ok(normalised)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::language::RegexLanguage;

    fn validate_policy(candidate: &Policy, existing: &[Policy]) -> Result<Policy, PolicyError> {
        super::validate_policy::<RegexLanguage>(candidate, existing)
    }

    fn ns(uuid: &str, pattern: &str, matches: bool) -> Policy {
        Policy {
            uuid: uuid.into(),
            scope: Scope::Namespace,
            namespace: "org".into(),
            repository: None,
            tag_pattern: pattern.into(),
            tag_pattern_matches: matches,
        }
    }

    fn repo(uuid: &str, repository: &str, pattern: &str) -> Policy {
        Policy {
            scope: Scope::Repository,
            repository: Some(repository.into()),
            ..ns(uuid, pattern, true)
        }
    }

    #[test]
    fn returns_the_policy_with_a_trimmed_pattern() {
        let p = validate_policy(&ns("a", "  ^latest$  ", true), &[]).unwrap();
        assert_eq!(p.tag_pattern, "^latest$");
        assert_eq!(p.uuid, "a");
    }

    #[test]
    fn duplicate_in_same_scope_whatever_the_flag() {
        let existing = [ns("old", "^v.*$", true)];
        assert_eq!(
            validate_policy(&ns("new", " ^v.*$ ", false), &existing),
            Err(PolicyError::DuplicatePattern("old".into()))
        );
        assert_eq!(
            validate_policy(&ns("new", "^v.*$", true), &existing),
            Err(PolicyError::DuplicatePattern("old".into()))
        );
    }

    #[test]
    fn same_pattern_in_another_scope_is_not_a_duplicate() {
        let existing = [ns("old", "^v.*$", true), repo("r1", "app", "^v.*$")];
        assert!(validate_policy(&repo("new", "web", "^v.*$"), &existing).is_ok());
        assert_eq!(
            validate_policy(&repo("new", "app", "^v.*$"), &existing),
            Err(PolicyError::DuplicatePattern("r1".into()))
        );
    }

    #[test]
    fn an_update_does_not_collide_with_itself() {
        let existing = [ns("a", "^v.*$", true)];
        assert!(validate_policy(&ns("a", "^v.*$", false), &existing).is_ok());
    }

    #[test]
    fn scope_must_be_consistent() {
        let mut p = repo("a", "app", "x");
        p.repository = None;
        assert!(
            matches!(validate_policy(&p, &[]), Err(PolicyError::ScopeMismatch(m)) if m.starts_with("repository"))
        );
        let mut q = ns("a", "x", true);
        q.repository = Some("app".into());
        assert!(matches!(
            validate_policy(&q, &[]),
            Err(PolicyError::ScopeMismatch(_))
        ));
        let mut r = repo("a", "app", "x");
        r.repository = Some(" ".into());
        assert_eq!(
            validate_policy(&r, &[]),
            Err(PolicyError::MissingField("repository".into()))
        );
    }

    #[test]
    fn required_fields() {
        assert_eq!(
            validate_policy(&ns("", "x", true), &[]),
            Err(PolicyError::MissingField("uuid".into()))
        );
        let mut p = ns("a", "x", true);
        p.namespace = String::new();
        assert_eq!(
            validate_policy(&p, &[]),
            Err(PolicyError::MissingField("namespace".into()))
        );
    }

    #[test]
    fn pattern_errors_pass_through() {
        assert_eq!(
            validate_policy(&ns("a", "   ", true), &[]),
            Err(PolicyError::EmptyPattern)
        );
        assert!(matches!(
            validate_policy(&ns("a", "x(?=y)", true), &[]),
            Err(PolicyError::UnsupportedConstruct { position: 1, .. })
        ));
    }
}
