//! Bad input gets a clear typed error naming the field, and changes nothing.

mod common;

use tagguard_engine::{EngineError, PolicyError};
use tagguard_host_test::compliance::assert_compliant;
use tagguard_host_test::{NewPolicy, Registry, RegistryError, user};

fn policy(pattern: &str) -> NewPolicy {
    NewPolicy::namespace("p", "org", pattern)
}

fn seeded() -> Registry {
    let reg = common::registry(500);
    reg.push(&user("ci"), "org", "repo", "v1", "sha256:a")
        .unwrap();
    reg
}

fn snapshot(reg: &Registry) -> (usize, usize, usize) {
    reg.db()
        .with(|s| (s.tags.len(), s.policies.len(), s.log.len()))
}

fn policy_error(err: RegistryError) -> (PolicyError, String) {
    let text = err.to_string();
    match err {
        RegistryError::Engine(EngineError::InvalidPolicy { error, .. }) => (error, text),
        other => panic!("expected an invalid-policy error, got {other}"),
    }
}

#[test]
fn invalid_patterns_are_rejected_with_the_field_and_reason() {
    let reg = seeded();
    let before = snapshot(&reg);
    let admin = user("admin");

    let (e, text) = policy_error(reg.create_policy(&admin, &policy("v[0-9")).unwrap_err());
    assert!(matches!(e, PolicyError::InvalidPattern(_)), "{e:?}");
    assert!(text.contains("tag-pattern: does not compile"), "{text}");

    let (e, text) = policy_error(
        reg.create_policy(&admin, &policy(&"a".repeat(257)))
            .unwrap_err(),
    );
    assert_eq!(e, PolicyError::PatternTooLong(257));
    assert!(
        text.contains("tag-pattern: 257 characters, at most 256"),
        "{text}"
    );

    let (e, text) = policy_error(reg.create_policy(&admin, &policy("v1(?!-rc)")).unwrap_err());
    let PolicyError::UnsupportedConstruct(c) = &e else {
        panic!("{e:?}")
    };
    assert_eq!((c.construct.as_str(), c.position), ("look-around", 2));
    assert!(text.contains("look-around at position 2"), "{text}");

    let (e, _) = policy_error(reg.create_policy(&admin, &policy("   ")).unwrap_err());
    assert_eq!(e, PolicyError::EmptyPattern);

    // A repository policy that names no repository (the registry API cannot build one).
    let candidate = tagguard_engine::Policy {
        uuid: "q".into(),
        scope: tagguard_engine::Scope::Repository,
        namespace: "org".into(),
        repository: None,
        tag_pattern: "x".into(),
        tag_pattern_matches: true,
    };
    let err = reg.guard().validate_policy(&candidate, &[]).unwrap_err();
    let EngineError::InvalidPolicy {
        error: PolicyError::ScopeMismatch(msg),
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(msg.starts_with("repository:"), "{msg}");

    assert_eq!(snapshot(&reg), before, "nothing changed");
    assert_compliant(reg.db());
}

#[test]
fn a_duplicate_pattern_in_the_same_scope_is_rejected_whatever_its_flag() {
    let reg = seeded();
    let admin = user("admin");
    reg.create_policy(&admin, &policy("^v.*$")).unwrap();
    let before = snapshot(&reg);
    let dup = NewPolicy {
        uuid: Some("q".into()),
        matches: false,
        ..policy(" ^v.*$ ")
    };
    let (e, text) = policy_error(reg.create_policy(&admin, &dup).unwrap_err());
    assert_eq!(e, PolicyError::DuplicatePattern("p".into()));
    assert!(text.contains("duplicates policy p"), "{text}");
    assert_eq!(snapshot(&reg), before);
}

#[test]
fn a_bad_tag_name_is_rejected_and_nothing_is_pushed() {
    let reg = seeded();
    let before = snapshot(&reg);
    for bad in ["-leading-dash", "has space", "", &"a".repeat(129)] {
        let err = reg
            .push(&user("ci"), "org", "repo", bad, "sha256:b")
            .unwrap_err();
        let RegistryError::Engine(EngineError::Plugin {
            error,
            call: "on-push",
            ..
        }) = &err
        else {
            panic!("{err}")
        };
        assert!(
            matches!(error, tagguard_engine::bindings::types::Error::InvalidTagName(m) if m.starts_with("tag name")),
            "{error:?}"
        );
        assert!(err.to_string().contains("invalid tag name"), "{err}");
    }
    assert_eq!(snapshot(&reg), before);
}

#[test]
fn an_unknown_policy_uuid_is_a_typed_error() {
    let reg = seeded();
    let before = snapshot(&reg);
    let admin = user("admin");
    for err in [
        reg.update_policy(&admin, "nope", "x", true).unwrap_err(),
        reg.delete_policy(&admin, "nope").unwrap_err(),
        reg.reapply_policy(&admin, "nope").unwrap_err(),
    ] {
        assert!(
            matches!(&err, RegistryError::UnknownPolicy(u) if u == "nope"),
            "{err}"
        );
        assert!(err.to_string().contains("policy nope: no such policy"));
    }
    assert_eq!(snapshot(&reg), before);
}

#[test]
fn clearing_immutability_needs_an_admin_and_unknown_tags_are_not_found() {
    let reg = seeded();
    let admin = user("admin");
    reg.set_immutable(&admin, false, "org", "repo", "v1", true)
        .unwrap();
    let before = snapshot(&reg);
    let err = reg
        .set_immutable(&user("bob"), false, "org", "repo", "v1", false)
        .unwrap_err();
    assert!(matches!(err, RegistryError::Forbidden(_)), "{err}");
    let err = reg.delete_tag(&admin, "org", "repo", "nope").unwrap_err();
    assert!(matches!(err, RegistryError::NotFound(_)), "{err}");
    assert_eq!(snapshot(&reg), before);
    assert!(
        reg.set_immutable(&admin, true, "org", "repo", "v1", false)
            .unwrap()
    );
    assert_compliant(reg.db());
}

#[test]
fn namespace_and_repository_names_follow_the_oci_rule() {
    let reg = seeded();
    let before = snapshot(&reg);
    for (namespace, repository, field) in [
        ("Org", "app", "namespace"),
        ("org", "App", "repository"),
        ("org", "team//app", "repository"),
        ("org_", "app", "namespace"),
    ] {
        let err = reg
            .push(&user("ci"), namespace, repository, "v1", "sha256:a")
            .unwrap_err();
        let RegistryError::Engine(EngineError::InvalidRequest {
            field: f, reason, ..
        }) = &err
        else {
            panic!("{namespace}/{repository}: {err}")
        };
        assert_eq!(f, field, "{namespace}/{repository}");
        assert!(reason.contains("OCI name rule"), "{reason}");
    }
    // Names of any depth are fine.
    reg.push(&user("ci"), "org", "team/app", "v1", "sha256:a")
        .unwrap();
    assert_ne!(snapshot(&reg), before);
    assert_compliant(reg.db());
}
