//! Retroactive runs over 1,200 tags in several repositories of a namespace,
//! end to end through the wasm plugin, with batch sizes 3 and 500.

mod common;

use tagguard_host_test::compliance::assert_compliant;
use tagguard_host_test::{AuditQuery, NewPolicy, Registry, user};

const REPOS: [&str; 4] = ["api", "web", "db", "cli"];
const PER_REPO: usize = 300;

/// 1,200 tags: in each repository `v1.<i>` for even i and `dev-<i>` for odd i.
fn populated(batch: u32) -> Registry {
    let reg = common::registry(batch);
    let ci = user("ci");
    for repo in REPOS {
        for i in 0..PER_REPO {
            let name = if i % 2 == 0 {
                format!("v1.{i}")
            } else {
                format!("dev-{i}")
            };
            reg.push(&ci, "org", repo, &name, &format!("sha256:{repo}{i}"))
                .unwrap();
        }
    }
    // Another namespace that no policy of org may touch.
    reg.push(&ci, "other", "api", "v1.0", "sha256:x").unwrap();
    reg
}

fn policy(uuid: &str, pattern: &str, matches: bool) -> NewPolicy {
    NewPolicy::namespace(uuid, "org", pattern).matching(matches)
}

fn immutable_count(reg: &Registry) -> usize {
    reg.db()
        .with(|s| s.tags.iter().filter(|t| t.alive && t.immutable).count())
}

fn per_tag_records(reg: &Registry, run_id: &str) -> usize {
    reg.audit(&AuditQuery {
        kind: Some("tag_made_immutable_by_policy"),
        ..Default::default()
    })
    .iter()
    .filter(|r| r.entry.meta_str("run_id") == Some(run_id))
    .count()
}

#[test]
fn counts_are_exact_and_already_immutable_hidden_and_expired_tags_are_untouched() {
    for batch in [3, 500] {
        let reg = populated(batch);
        let admin = user("admin");
        // Pre-existing state: two tags already immutable by hand, one hidden, one expired.
        reg.set_immutable(&admin, true, "org", "api", "v1.0", true)
            .unwrap();
        reg.set_immutable(&admin, true, "org", "web", "v1.2", true)
            .unwrap();
        reg.hide("org", "db", "v1.4").unwrap();
        reg.expire("org", "cli", "v1.6").unwrap();

        let out = reg
            .create_policy(&admin, &policy("semver", r"v1\.[0-9]+", true))
            .unwrap();
        let matching = REPOS.len() * PER_REPO / 2;
        assert_eq!(out.run.count as usize, matching - 4, "batch {batch}");
        assert_eq!(per_tag_records(&reg, &out.run.run_id), matching - 4);
        assert_eq!(
            out.run.batches as usize,
            (REPOS.len() * PER_REPO - 2).div_ceil(batch as usize),
            "batch {batch}"
        );
        assert_eq!(
            immutable_count(&reg),
            matching - 2,
            "hidden and expired stay mutable"
        );
        let hidden = reg
            .db()
            .with(|s| {
                s.tags
                    .iter()
                    .find(|t| t.name == "v1.4" && t.repository == "db")
                    .cloned()
            })
            .unwrap();
        assert!(!hidden.immutable);
        let expired = reg
            .db()
            .with(|s| {
                s.tags
                    .iter()
                    .find(|t| t.name == "v1.6" && t.repository == "cli")
                    .cloned()
            })
            .unwrap();
        assert!(!expired.immutable);
        assert!(
            !reg.tag("other", "api", "v1.0").unwrap().immutable,
            "other namespace untouched"
        );
        // The manually marked tags keep their one manual record and get no policy record.
        let api_v10 = reg.audit(&AuditQuery {
            repository: Some("api"),
            tag: Some("v1.0"),
            ..Default::default()
        });
        assert_eq!(api_v10.len(), 1);
        assert_eq!(api_v10[0].entry.kind, "change_tag_immutability");
        assert_compliant(reg.db());
    }
}

#[test]
fn an_update_marks_only_new_matches_and_never_unmarks() {
    for batch in [3, 500] {
        let reg = populated(batch);
        let admin = user("admin");
        let first = reg
            .create_policy(&admin, &policy("p", r"v1\.[0-9]", true))
            .unwrap();
        assert_eq!(first.run.count, 4 * 5, "v1.0 .. v1.8 in each repository");
        let updated = reg.update_policy(&admin, "p", r"v1\.1[0-9]", true).unwrap();
        assert_eq!(
            updated.run.count,
            4 * 5,
            "v1.10 .. v1.18 in each repository"
        );
        assert_eq!(
            immutable_count(&reg),
            4 * 10,
            "the old matches stay immutable"
        );
        assert_eq!(per_tag_records(&reg, &updated.run.run_id), 20);
        let rec = reg.audit(&AuditQuery {
            repository: Some("web"),
            tag: Some("v1.12"),
            ..Default::default()
        });
        assert_eq!(rec.len(), 1);
        assert_eq!(rec[0].entry.meta_str("trigger"), Some("policy_updated"));
        assert_eq!(rec[0].entry.meta_str("policy_pattern"), Some(r"v1\.1[0-9]"));
        let upd = reg.audit(&AuditQuery {
            kind: Some("update_immutability_policy"),
            ..Default::default()
        });
        assert_eq!(upd.len(), 1);
        assert_eq!(upd[0].entry.metadata["before"]["tag_pattern"], r"v1\.[0-9]");
        assert_eq!(upd[0].entry.metadata["after"]["tag_pattern"], r"v1\.1[0-9]");
        assert_compliant(reg.db());
    }
}

#[test]
fn a_delete_keeps_tags_immutable_and_records_the_deleted_pattern() {
    let reg = populated(500);
    let admin = user("admin");
    reg.create_policy(&admin, &policy("p", "dev-1.*", true))
        .unwrap();
    let marked = immutable_count(&reg);
    assert!(marked > 0);
    reg.delete_policy(&admin, "p").unwrap();
    assert_eq!(immutable_count(&reg), marked);
    assert!(reg.db().with(|s| s.policies.is_empty()));
    let del = reg.audit(&AuditQuery {
        kind: Some("delete_immutability_policy"),
        ..Default::default()
    });
    assert_eq!(del.len(), 1);
    assert_eq!(del[0].entry.meta_str("deleted_pattern"), Some("dev-1.*"));
    assert_eq!(del[0].entry.meta_str("policy_uuid"), Some("p"));
    // A new push that the deleted policy would have matched stays mutable.
    assert!(
        !reg.push(&admin, "org", "api", "dev-1000", "sha256:n")
            .unwrap()
    );
    assert_compliant(reg.db());
}

#[test]
fn an_inverted_policy_marks_every_tag_that_does_not_match() {
    for batch in [3, 500] {
        let reg = populated(batch);
        let out = reg
            .create_policy(&user("admin"), &policy("not-dev", "dev-.*", false))
            .unwrap();
        assert_eq!(out.run.count as usize, REPOS.len() * PER_REPO / 2);
        let all_immutable_are_releases = reg.db().with(|s| {
            s.tags
                .iter()
                .filter(|t| t.immutable)
                .all(|t| t.name.starts_with("v1."))
        });
        assert!(all_immutable_are_releases);
        // Pushes follow the same rule.
        assert!(
            reg.push(&user("ci"), "org", "api", "release-9", "sha256:r")
                .unwrap()
        );
        assert!(
            !reg.push(&user("ci"), "org", "api", "dev-9000", "sha256:d")
                .unwrap()
        );
        assert_compliant(reg.db());
    }
}

#[test]
fn a_repository_policy_only_touches_its_repository_and_preview_writes_nothing() {
    let reg = populated(500);
    let p = policy("web-dev", "dev-.*", true).in_repository("web");
    let candidate = tagguard_engine::Policy {
        uuid: "preview".into(),
        scope: tagguard_engine::Scope::Repository,
        namespace: "org".into(),
        repository: Some("web".into()),
        tag_pattern: "dev-.*".into(),
        tag_pattern_matches: true,
    };
    let log_before = reg.audit(&AuditQuery::default()).len();
    let preview = reg.guard().preview(&candidate, 5).unwrap();
    assert_eq!(preview.count as usize, PER_REPO / 2);
    assert_eq!(preview.sample.len(), 5);
    assert!(
        preview
            .sample
            .iter()
            .all(|t| t.repository == "web" && t.name.starts_with("dev-"))
    );
    assert_eq!(
        reg.audit(&AuditQuery::default()).len(),
        log_before,
        "preview writes nothing"
    );
    assert_eq!(immutable_count(&reg), 0);

    let out = reg.create_policy(&user("admin"), &p).unwrap();
    assert_eq!(out.run.count, preview.count);
    assert!(reg.db().with(|s| {
        s.tags
            .iter()
            .filter(|t| t.immutable)
            .all(|t| t.repository == "web")
    }));
    assert_compliant(reg.db());
}
