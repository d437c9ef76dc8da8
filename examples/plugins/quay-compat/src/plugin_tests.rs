//! The shared plugin driven with the Quay dialect: what Quay's Python `regex`
//! says for each case was checked with `regex.fullmatch`.

use crate::dialect::{QuayLanguage, refused};
use tagguard_guest::matcher::Matcher;
use tagguard_guest::memory_host::MemoryHost;
use tagguard_guest::model::{
    Granularity, Policy, PolicyError, PushDecision, PushRequest, RunOptions, RunTrigger, Scope, Tag,
};
use tagguard_guest::pattern::validate_pattern;
use tagguard_guest::plugin::PolicyPlugin;

fn policy(uuid: &str, pattern: &str, matches: bool) -> Policy {
    Policy {
        uuid: uuid.into(),
        scope: Scope::Namespace,
        namespace: "org".into(),
        repository: None,
        tag_pattern: pattern.into(),
        tag_pattern_matches: matches,
    }
}

fn fires(pattern: &str, tag: &str) -> bool {
    let mut m = Matcher::<QuayLanguage>::default();
    m.any_fires(tag, &[policy("p", pattern, true)]).unwrap()
}

/// A pattern that needs far more than the budget (`MATCH_STEP_BUDGET`) to fail on a
/// long run of `a`s:
/// an alternation under a star before a look-ahead leaves the engine no shortcut.
const EXPLOSIVE: &str = "(a|aa)*(?=c)";

#[test]
fn look_around_and_backreferences_match_as_in_quay() {
    // (pattern, tag, Python's regex.fullmatch)
    for (pattern, tag, quay) in [
        ("v(?!.*-rc).*", "v1.0", true),
        ("v(?!.*-rc).*", "v1.0-rc1", false),
        ("(?<=v)1", "v1", false),
        ("(a)b\\1", "aba", true),
        ("(?P<x>a)(?P=x)", "aa", true),
        ("(?=.*[0-9])v.*", "vx", false),
        ("(?=.*[0-9])v.*", "v1", true),
        ("a++a", "aa", false),
        ("a++", "aa", true),
        ("(?>a+)a", "aa", false),
        ("^v[0-9]+\\.[0-9]+\\.[0-9]+$", "v1.2.3", true),
    ] {
        assert_eq!(fires(pattern, tag), quay, "{pattern} on {tag}");
    }
}

#[test]
fn refuses_what_quay_reads_differently_naming_it() {
    for (pattern, starts) in [
        ("(?=v)[a-z&&b]", "class set operation `&&`"),
        ("(?=v)[a--b]", "class set operation `--`"),
        ("(?=v)[a[b]]", "nested class"),
        ("(?x)v1 # release", "verbose flag"),
        ("(?ix:v1)", "verbose flag"),
        ("[a-z~~b]", "class set operation `~~`"),
        ("\\<v1", "word-boundary assertion"),
        ("a{ 1 }", "counted repetition with spaces"),
        ("(?=a)a{1, 2}", "counted repetition with spaces"),
        ("(?=v)\\<v1", "word-boundary assertion `\\<`"),
        ("(?!x)\\h", "escape `\\h`"),
        ("(?=k)(?i)\u{212A}", "non-ASCII character"),
    ] {
        match validate_pattern::<QuayLanguage>(pattern) {
            Err(PolicyError::UnsupportedConstruct { construct, .. }) => {
                assert!(construct.starts_with(starts), "{pattern}: {construct}")
            }
            other => panic!("{pattern}: {other:?}"),
        }
    }
    for ok in [
        "[[:alpha:]-]+",
        "[a-]",
        "[]a]",
        "(?i)v1",
        "(?P<n>a)",
        "a++",
        "x(?<!y)",
    ] {
        assert_eq!(refused(ok), None, "{ok}");
        assert!(validate_pattern::<QuayLanguage>(ok).is_ok(), "{ok}");
    }
}

#[test]
fn a_match_that_exceeds_the_budget_counts_as_no_match_with_the_polarity_applied_after() {
    let tag = "a".repeat(64);
    let mut m = Matcher::<QuayLanguage>::default();
    // Matching: no match, so it does not fire, and it is reported as exceeded.
    let normal = [policy("p", EXPLOSIVE, true)];
    assert_eq!(m.firing(&tag, &normal).unwrap(), []);
    // Inverted: no match, so it fires, with the budget named.
    let inverted = [policy("p", EXPLOSIVE, false)];
    let f = m.firing(&tag, &inverted).unwrap();
    assert_eq!(f.len(), 1);
    assert!(f[0].budget_exceeded);
    // A short tag stays within the budget.
    assert!(!m.firing("aac", &inverted).unwrap()[0].budget_exceeded);
}

#[test]
fn records_say_when_the_budget_ran_out() {
    let mut plugin = PolicyPlugin::<QuayLanguage>::default();
    let mut host = MemoryHost::default();
    let tag_name = "a".repeat(64);
    let req = PushRequest {
        namespace: "org".into(),
        repository: "repo".into(),
        tag_name: tag_name.clone(),
        manifest_digest: "sha256:new".into(),
        existing: None,
        policies: vec![policy("p-inv", EXPLOSIVE, false)],
    };
    let d = plugin.on_push(&mut host, &req).unwrap();
    assert!(matches!(
        d,
        PushDecision::Create {
            immutable: true,
            ..
        }
    ));
    assert_eq!(
        host.staged[0].metadata()["match_budget_exceeded"],
        serde_json::json!(["p-inv"])
    );

    // A retroactive run too, per tag.
    let mut host = MemoryHost::new(vec![Tag {
        id: 1,
        namespace: "org".into(),
        repository: "repo".into(),
        name: tag_name,
        manifest_digest: "sha256:old".into(),
        immutable: false,
    }]);
    let p = policy("p-inv", EXPLOSIVE, false);
    let options = RunOptions {
        run_id: "run-1".into(),
        batch_size: 10,
        granularity: Granularity::PerTag,
    };
    let s = plugin
        .run_retroactive(&mut host, &p, RunTrigger::PolicyCreated, &options)
        .unwrap();
    assert_eq!(s.count, 1);
    assert_eq!(
        host.committed[0].metadata()["match_budget_exceeded"],
        serde_json::json!(["p-inv"])
    );
}
