//! Invariant 4: the engine does not trust the plugin for completeness. A
//! plugin that makes tags immutable without the records that explain it is
//! rejected, and nothing is committed.

mod common;

use tagguard_engine::{EngineError, Settings};
use tagguard_host_test::compliance::assert_compliant;
use tagguard_host_test::{AuditQuery, NewPolicy, Registry, RegistryError, user};

fn forgetful() -> Registry {
    Registry::new(
        common::built_plugin("missing-record-plugin"),
        Settings::default(),
    )
}

#[test]
fn create_immutable_without_a_record_is_rejected_and_nothing_is_committed() {
    let reg = forgetful();
    let err = reg
        .push(&user("alice"), "org", "repo", "latest", "sha256:a")
        .unwrap_err();
    let RegistryError::Engine(EngineError::AuditMissing {
        call,
        reason,
        plugin,
    }) = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*call, "on-push");
    assert!(plugin.starts_with("missing-record@"), "{plugin}");
    assert!(reason.contains("tag_made_immutable_by_policy"), "{reason}");
    assert!(reg.tag("org", "repo", "latest").is_none());
    assert!(reg.audit(&AuditQuery::default()).is_empty());
    assert_compliant(reg.db());
}

#[test]
fn a_mark_whose_record_names_another_tag_is_rejected_before_the_store_sees_it() {
    // Tags are pushed through the default plugin, then the policy runs through the hostile one.
    let good = common::registry(500);
    for i in 0..5 {
        good.push(&user("ci"), "org", "repo", &format!("v{i}"), "sha256:a")
            .unwrap();
    }
    let reg = forgetful();
    for i in 0..5 {
        // The hostile plugin's pushes are rejected, so seed the store directly.
        let tag = good.tag("org", "repo", &format!("v{i}")).unwrap();
        reg.db().with(|s| s.tags.push(tag));
    }
    let policy = NewPolicy::namespace("p", "org", "v.*");
    let err = reg.create_policy(&user("admin"), &policy).unwrap_err();
    // The forgetful plugin also stages no creation record, which the guard rejects first.
    assert!(
        matches!(
            err,
            RegistryError::Engine(EngineError::AuditMissing {
                call: "on-policy-created",
                ..
            })
        ),
        "{err}"
    );
    assert!(reg.db().with(|s| s.policies.is_empty()));

    // Run it directly on a stored policy: the marks carry records naming other tags.
    let stored = tagguard_engine::Policy {
        uuid: "p".into(),
        scope: tagguard_engine::Scope::Namespace,
        namespace: "org".into(),
        repository: None,
        tag_pattern: "v.*".into(),
        tag_pattern_matches: true,
    };
    let err = reg
        .guard()
        .apply_policy(
            &user("admin"),
            &stored,
            tagguard_engine::RunTrigger::Reapplied,
        )
        .unwrap_err();
    let EngineError::RunIncomplete {
        changed: 0, cause, ..
    } = &err
    else {
        panic!("{err}")
    };
    let EngineError::AuditMissing { reason, .. } = &**cause else {
        panic!("{cause}")
    };
    assert!(reason.contains("naming that tag"), "{reason}");
    assert!(
        reg.db().with(|s| s.tags.iter().all(|t| !t.immutable)),
        "no tag changed"
    );
    // The host wrote the failed run's summary itself, since the plugin could not.
    let summary = reg.audit(&AuditQuery {
        kind: Some("tags_made_immutable_by_policy"),
        ..Default::default()
    });
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].entry.meta_str("status"), Some("failed"));
    assert_eq!(summary[0].entry.meta_str("written_by"), Some("host"));
    assert_eq!(summary[0].entry.metadata["count"], 0);
    assert_compliant(reg.db());
}
