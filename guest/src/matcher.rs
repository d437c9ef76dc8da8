//! Policy evaluation: which policies fire for a tag name, in one pass.
//!
//! The patterns of a policy set are compiled into one `RegexSet` and kept in
//! a bounded cache inside the instance, keyed by the pattern texts, so a warm
//! plugin matches a tag once however many policies are in scope. The
//! pattern dialect `L` only decides how each pattern becomes regex source.

use crate::language::{CompiledSet, PatternLanguage, RegexLanguage};
use crate::model::{Policy, PolicyError, PolicyMatch};
use crate::pattern::{COMPILE_SIZE_LIMIT, checked_syntax, validate_pattern};
use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::marker::PhantomData;

/// How many compiled policy sets an instance keeps.
pub const SET_CACHE_CAPACITY: usize = 128;

struct Compiled {
    patterns: Vec<String>,
    set: Box<dyn CompiledSet>,
}

/// A policy that fires for a tag: its index, and whether its pattern ran out of
/// its matching budget (and so counted as not matched).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Firing {
    /// Index of the policy in the set.
    pub index: usize,
    /// The pattern's matching ran out of budget; the policy fires by inversion.
    pub budget_exceeded: bool,
}

/// A bounded cache of compiled policy sets of dialect `L`, evicting the oldest entry first.
pub struct Matcher<L = RegexLanguage> {
    sets: HashMap<u64, Compiled>,
    order: VecDeque<u64>,
    compiles: u64,
    language: PhantomData<fn() -> L>,
}

impl<L: PatternLanguage> Default for Matcher<L> {
    fn default() -> Self {
        Self {
            sets: HashMap::new(),
            order: VecDeque::new(),
            compiles: 0,
            language: PhantomData,
        }
    }
}

fn key_of(policies: &[Policy]) -> u64 {
    let mut h = DefaultHasher::new();
    policies.len().hash(&mut h);
    for p in policies {
        p.tag_pattern.hash(&mut h);
    }
    h.finish()
}

fn same_patterns(compiled: &[String], policies: &[Policy]) -> bool {
    compiled.len() == policies.len()
        && compiled
            .iter()
            .zip(policies)
            .all(|(c, p)| *c == p.tag_pattern)
}

impl Matcher {
    /// An empty cache for the default regex dialect.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<L: PatternLanguage> Matcher<L> {
    /// How many sets were compiled so far (cache misses).
    pub fn compiles(&self) -> u64 {
        self.compiles
    }

    /// How many sets are cached now.
    pub fn cached(&self) -> usize {
        self.sets.len()
    }

    /// The compiled set for `policies`. Each pattern is checked and trimmed exactly as
    /// `validate-policy` does, so a bad pattern fails with the same error, naming the
    /// pattern as written, and a padded pattern matches as the stored one does.
    fn set_for(&mut self, policies: &[Policy]) -> Result<&dyn CompiledSet, PolicyError> {
        let key = key_of(policies);
        let hit = self
            .sets
            .get(&key)
            .is_some_and(|c| same_patterns(&c.patterns, policies));
        if !hit {
            let sources = policies
                .iter()
                .map(|p| {
                    let trimmed = checked_syntax::<L>(&p.tag_pattern)?;
                    L::full_match_source(trimmed).map_err(PolicyError::InvalidPattern)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let limit = COMPILE_SIZE_LIMIT.saturating_mul(policies.len().max(1));
            let set = L::compile_set(sources, limit).map_err(|e| {
                // Name the pattern that fails as validation would; the set's own
                // error only if each compiles alone.
                policies
                    .iter()
                    .find_map(|p| validate_pattern::<L>(&p.tag_pattern).err())
                    .unwrap_or(PolicyError::InvalidPattern(e))
            })?;
            self.compiles += 1;
            if self.sets.remove(&key).is_none() {
                if self.order.len() >= SET_CACHE_CAPACITY
                    && let Some(old) = self.order.pop_front()
                {
                    self.sets.remove(&old);
                }
                self.order.push_back(key);
            }
            let patterns = policies.iter().map(|p| p.tag_pattern.clone()).collect();
            self.sets.insert(key, Compiled { patterns, set });
        }
        Ok(self.sets[&key].set.as_ref())
    }

    /// Compiles the set for `policies` now (a cache hit if it is already there).
    pub fn prepare(&mut self, policies: &[Policy]) -> Result<(), PolicyError> {
        self.set_for(policies).map(|_| ())
    }

    /// The policies that fire for `tag`, in policy order. A pattern that ran out of
    /// its matching budget counts as not matched, and the policy's polarity is applied
    /// afterwards, as Quay treats a match that times out.
    pub fn firing(&mut self, tag: &str, policies: &[Policy]) -> Result<Vec<Firing>, PolicyError> {
        if policies.is_empty() {
            return Ok(Vec::new());
        }
        let mut matched = Vec::with_capacity(policies.len());
        let mut exceeded = Vec::new();
        self.set_for(policies)?
            .evaluate(tag, &mut matched, &mut exceeded);
        Ok(policies
            .iter()
            .enumerate()
            .filter(|(i, p)| matched.get(*i).copied().unwrap_or(false) == p.tag_pattern_matches)
            .map(|(index, _)| Firing {
                index,
                budget_exceeded: exceeded.contains(&index),
            })
            .collect())
    }

    /// Indices of the policies that fire for `tag`, in policy order.
    pub fn firing_indices(
        &mut self,
        tag: &str,
        policies: &[Policy],
    ) -> Result<Vec<usize>, PolicyError> {
        Ok(self
            .firing(tag, policies)?
            .into_iter()
            .map(|f| f.index)
            .collect())
    }

    /// Whether any policy fires for `tag` (the tag is immutable under the set).
    pub fn any_fires(&mut self, tag: &str, policies: &[Policy]) -> Result<bool, PolicyError> {
        Ok(!self.firing_indices(tag, policies)?.is_empty())
    }

    /// Every policy that fires for `tag`, with whether its pattern matched.
    pub fn explain(
        &mut self,
        tag: &str,
        policies: &[Policy],
    ) -> Result<Vec<PolicyMatch>, PolicyError> {
        Ok(self
            .firing(tag, policies)?
            .into_iter()
            .map(|f| PolicyMatch {
                policy: policies[f.index].clone(),
                pattern_matched: policies[f.index].tag_pattern_matches,
                budget_exceeded: f.budget_exceeded,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Scope;

    pub(crate) fn policy(uuid: &str, pattern: &str, matches: bool) -> Policy {
        Policy {
            uuid: uuid.into(),
            scope: Scope::Namespace,
            namespace: "org".into(),
            repository: None,
            tag_pattern: pattern.into(),
            tag_pattern_matches: matches,
        }
    }

    #[test]
    fn quay_digits_case_normal_and_inverted() {
        let mut m = Matcher::new();
        let normal = [policy("p", "[0-9]*", true)];
        assert!(m.any_fires("123", &normal).unwrap());
        assert!(!m.any_fires("redis", &normal).unwrap());
        let inverted = [policy("p", "[0-9]*", false)];
        assert!(!m.any_fires("123", &inverted).unwrap());
        assert!(m.any_fires("redis", &inverted).unwrap());
    }

    #[test]
    fn semver_pattern() {
        let mut m = Matcher::new();
        let p = [policy("p", r"v?[0-9]+\.[0-9]+\.[0-9]+", true)];
        assert!(m.any_fires("v1.2.3", &p).unwrap());
        assert!(m.any_fires("10.20.30", &p).unwrap());
        assert!(!m.any_fires("v1.2", &p).unwrap());
        assert!(!m.any_fires("v1.2.3-rc1", &p).unwrap());
    }

    #[test]
    fn or_over_policies_with_inversion_and_explain_lists_every_firing_policy() {
        let mut m = Matcher::new();
        let ps = [
            policy("release", "release-.*", true),
            policy("not-dev", "dev-.*", false),
            policy("latest", "latest", true),
        ];
        // dev-x: release no, not-dev no (matched -> inverted -> no), latest no.
        assert!(!m.any_fires("dev-x", &ps).unwrap());
        // release-1: release yes, not-dev yes (not matched), latest no.
        let why = m.explain("release-1", &ps).unwrap();
        let uuids: Vec<_> = why.iter().map(|w| w.policy.uuid.as_str()).collect();
        assert_eq!(uuids, ["release", "not-dev"]);
        assert!(why[0].pattern_matched && !why[1].pattern_matched);
        // latest: not-dev and latest fire.
        assert_eq!(m.firing_indices("latest", &ps).unwrap(), [1, 2]);
        // no policies: nothing fires.
        assert!(!m.any_fires("latest", &[]).unwrap());
    }

    #[test]
    fn a_padded_pattern_matches_as_its_trimmed_form_does() {
        let mut m = Matcher::new();
        assert!(m.any_fires("v1", &[policy("p", " v.* ", true)]).unwrap());
        assert!(!m.any_fires("v1", &[policy("p", " v.* ", false)]).unwrap());
    }

    #[test]
    fn a_verbose_pattern_with_a_comment_compiles_and_matches_in_full() {
        let mut m = Matcher::new();
        let p = [policy("p", "(?x)v1 # the first release", true)];
        assert!(m.any_fires("v1", &p).unwrap());
        assert!(!m.any_fires("v10", &p).unwrap());
    }

    #[test]
    fn a_bad_pattern_fails_with_the_validation_error_on_the_pattern_as_written() {
        let mut m = Matcher::new();
        let err = m
            .any_fires("v1", &[policy("p", "v[0-9", true)])
            .unwrap_err();
        let PolicyError::InvalidPattern(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("v[0-9") && !msg.contains("^(?:"), "{msg}");
        assert!(matches!(
            m.any_fires("v1", &[policy("p", "a(?=b)", true)]),
            Err(PolicyError::UnsupportedConstruct { position: 1, .. })
        ));
    }

    #[test]
    fn caches_compiled_sets_by_pattern_text_and_stays_bounded() {
        let mut m = Matcher::new();
        let a = [policy("a", "x.*", true)];
        let renamed = [policy("other-uuid", "x.*", false)];
        m.any_fires("x1", &a).unwrap();
        m.any_fires("y1", &a).unwrap();
        m.any_fires("x1", &renamed).unwrap();
        assert_eq!(m.compiles(), 1, "same pattern text reuses the compiled set");
        for i in 0..(SET_CACHE_CAPACITY + 40) {
            m.any_fires("t", &[policy("p", &format!("t{i}"), true)])
                .unwrap();
        }
        assert_eq!(m.cached(), SET_CACHE_CAPACITY);
        assert_eq!(m.compiles(), 1 + SET_CACHE_CAPACITY as u64 + 40);
        // The oldest entry was evicted and is compiled again.
        m.any_fires("x1", &a).unwrap();
        assert_eq!(m.compiles(), 2 + SET_CACHE_CAPACITY as u64 + 40);
    }
}
