//! The workload every section shares with the Quay-style baseline: its tag
//! names and its two policy sets, as engine and as guest values.

use tagguard_engine::{Actor, Policy, PushRequest, Scope};
use tagguard_guest::model as g;

/// Namespace of every tag and policy.
pub const NAMESPACE: &str = "org";
/// Repository of every tag.
pub const REPOSITORY: &str = "repo";
/// The pattern of the one-policy set (fires for the even-numbered tags).
pub const SEMVER: &str = r"v[0-9]+\.[0-9]+\.[0-9]+";

/// Tag `i` of the baseline's workload: `v{i%7}.{i%13}.{i}` for even i, `feature-{i}` for odd.
pub fn tag_name(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("v{}.{}.{}", i % 7, i % 13, i)
    } else {
        format!("feature-{i}")
    }
}

/// How many policies are in scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicySet {
    /// The semver policy alone.
    One,
    /// `^release-{k}-.*$` for k in 0..9, then the semver policy.
    Ten,
}

impl PolicySet {
    /// `1 policy` or `10 policies`, as the baseline prints it.
    pub fn label(self) -> &'static str {
        match self {
            PolicySet::One => "1 policy",
            PolicySet::Ten => "10 policies",
        }
    }

    /// `(uuid, pattern)` of each policy, in the baseline's order; all fire on a match.
    fn patterns(self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self == PolicySet::Ten {
            out.extend((0..9).map(|k| (format!("p-release-{k}"), format!("^release-{k}-.*$"))));
        }
        out.push(("p-semver".into(), SEMVER.into()));
        out
    }

    /// The set as engine policies.
    pub fn engine(self) -> Vec<Policy> {
        self.patterns()
            .into_iter()
            .map(|(uuid, pattern)| Policy {
                uuid,
                scope: Scope::Namespace,
                namespace: NAMESPACE.into(),
                repository: None,
                tag_pattern: pattern,
                tag_pattern_matches: true,
            })
            .collect()
    }

    /// The set as guest policies.
    pub fn guest(self) -> Vec<g::Policy> {
        self.patterns()
            .into_iter()
            .map(|(uuid, pattern)| g::Policy {
                uuid,
                scope: g::Scope::Namespace,
                namespace: NAMESPACE.into(),
                repository: None,
                tag_pattern: pattern,
                tag_pattern_matches: true,
            })
            .collect()
    }
}

/// How many distinct push requests a latency loop cycles through.
pub const ROTATION: usize = 1024;

/// Engine push requests for new tags `indices`, each with `set` in scope.
pub fn engine_pushes(
    actor: &Actor,
    set: PolicySet,
    indices: impl Iterator<Item = usize>,
) -> Vec<PushRequest> {
    let policies = set.engine();
    indices
        .map(|i| PushRequest {
            actor: actor.clone(),
            namespace: NAMESPACE.into(),
            repository: REPOSITORY.into(),
            tag_name: tag_name(i),
            manifest_digest: format!("sha256:{i:064x}"),
            existing: None,
            policies: policies.clone(),
            policy_version: 0,
        })
        .collect()
}

/// Guest push requests for new tags `indices`, each with `set` in scope.
pub fn guest_pushes(set: PolicySet, indices: impl Iterator<Item = usize>) -> Vec<g::PushRequest> {
    let policies = set.guest();
    indices
        .map(|i| g::PushRequest {
            namespace: NAMESPACE.into(),
            repository: REPOSITORY.into(),
            tag_name: tag_name(i),
            manifest_digest: format!("sha256:{i:064x}"),
            existing: None,
            policies: policies.clone(),
        })
        .collect()
}
