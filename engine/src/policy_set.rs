//! Policies across the boundary: each pooled instance keeps the policy sets it
//! compiled (`policy-set` resources), found again by their content, so a
//! decision sends a handle instead of the policies; and the plugin's answers,
//! indices into a set, become [`PolicyMatch`]es only after the host checked them.

use crate::bindings::policy_engine::{Guest, PolicySet};
use crate::bindings::types::{Error as PluginError, Policy};
use crate::host::{HostState, breach};
use wasmtime::Store;

/// The handle of a compiled set, valid in the instance that compiled it.
pub(crate) type Handle = PolicySet;

/// A policy that fires for a tag, as decisions and `explain` report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyMatch {
    /// The firing policy.
    pub policy: Policy,
    /// Whether the pattern itself matched: a policy fires when this equals its
    /// `tag_pattern_matches`, so for a firing policy it always does.
    pub pattern_matched: bool,
}

/// How many compiled sets an instance keeps (the distinct scopes a registry decides in
/// between two policy changes); the least recently used one is dropped first.
pub const SETS_PER_INSTANCE: usize = 16;

/// The policy sets one instance compiled, most recently used last.
#[derive(Default)]
pub struct PolicySets {
    sets: Vec<(Vec<Policy>, PolicySet)>,
}

impl PolicySets {
    /// The handle of the set compiled from exactly `policies`, if the instance has one.
    fn find(&mut self, policies: &[Policy]) -> Option<PolicySet> {
        let at = self.sets.iter().position(|(p, _)| p == policies)?;
        let hit = self.sets.remove(at);
        let handle = hit.1;
        self.sets.push(hit);
        Some(handle)
    }

    /// Keeps `handle` for `policies`; returns the handle it evicts, if any.
    fn insert(&mut self, policies: &[Policy], handle: PolicySet) -> Option<PolicySet> {
        let evicted = (self.sets.len() >= SETS_PER_INSTANCE).then(|| self.sets.remove(0).1);
        self.sets.push((policies.to_vec(), handle));
        evicted
    }

    /// How many sets the instance keeps now.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// Whether the instance keeps none.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

/// The instance's handle for `policies`, compiled by the plugin on first use; the
/// plugin's error when it refuses them (an invalid policy).
pub(crate) fn handle(
    guest: &Guest,
    store: &mut Store<HostState>,
    policies: &[Policy],
) -> wasmtime::Result<Result<PolicySet, PluginError>> {
    if let Some(handle) = store.data_mut().sets.find(policies) {
        return Ok(Ok(handle));
    }
    let handle = match guest.policy_set().call_compile(&mut *store, policies)? {
        Ok(handle) => handle,
        Err(refused) => return Ok(Err(refused)),
    };
    if let Some(evicted) = store.data_mut().sets.insert(policies, handle) {
        evicted.resource_drop(&mut *store)?;
    }
    Ok(Ok(handle))
}

/// The policies the plugin named by index, checked: each index is in the set and
/// they ascend (so each policy is named once, in the set's order). A bad index breaks
/// the contract: the call traps and nothing is committed.
pub(crate) fn resolve(policies: &[Policy], indices: &[u32]) -> wasmtime::Result<Vec<PolicyMatch>> {
    let mut previous: Option<u32> = None;
    indices
        .iter()
        .map(|&i| {
            let Some(policy) = policies.get(i as usize) else {
                return Err(breach(format!(
                    "the plugin names policy index {i}, but the set has {} policies",
                    policies.len()
                )));
            };
            if previous.is_some_and(|p| p >= i) {
                return Err(breach(format!(
                    "the plugin names policy indices out of order or twice ({} then {i}); they must ascend",
                    previous.unwrap_or_default()
                )));
            }
            previous = Some(i);
            Ok(PolicyMatch {
                policy: policy.clone(),
                pattern_matched: policy.tag_pattern_matches,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::Scope;

    fn policy(uuid: &str, matches: bool) -> Policy {
        Policy {
            uuid: uuid.into(),
            scope: Scope::Namespace,
            namespace: "org".into(),
            repository: None,
            tag_pattern: "v.*".into(),
            tag_pattern_matches: matches,
        }
    }

    #[test]
    fn indices_in_range_and_ascending_resolve_to_their_policies() {
        let set = [policy("a", true), policy("b", false), policy("c", true)];
        let matched = resolve(&set, &[0, 1]).unwrap();
        assert_eq!(matched.len(), 2);
        assert_eq!(matched[0].policy.uuid, "a");
        assert!(matched[0].pattern_matched);
        assert_eq!(matched[1].policy.uuid, "b");
        assert!(!matched[1].pattern_matched);
        assert!(resolve(&set, &[]).unwrap().is_empty());
    }

    #[test]
    fn an_index_out_of_range_or_out_of_order_is_a_breach() {
        let set = [policy("a", true), policy("b", true)];
        for bad in [&[2u32][..], &[1, 0], &[0, 0], &[u32::MAX]] {
            let err = resolve(&set, bad).unwrap_err();
            assert!(
                err.downcast_ref::<crate::host::ContractBreach>().is_some(),
                "{bad:?}"
            );
        }
    }
}
