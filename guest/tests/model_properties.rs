//! Property tests: the default plugin's native logic checked against a small
//! reference model written in this file, which uses neither the `regex` crate
//! nor the plugin's matcher.
//!
//! # The model
//!
//! * **Patterns** come from a tiny grammar, [`Pat`]: `L`, `L.*`, `.*L`,
//!   `L1|L2`, `(L1|L2).*`, `[0-9]+`, `[0-9]*`, `L[0-9]+` and `[0-9]+L`, where
//!   every literal `L` is drawn from `[a-c0-9]` (short, so literals, tag names
//!   and patterns collide often). Literals hold no regex metacharacters, so the
//!   text given to the plugin needs no escaping. The text may be padded with
//!   spaces, tabs and newlines, which the plugin trims. [`Pat::matches`] is the
//!   full-match semantics of each form, computed with plain string operations.
//! * **Tag names** are `[a-c0-9]{1,6}`, valid OCI tag names.
//! * **Firing** follows Quay: a policy fires for a tag when "the pattern
//!   matches the whole name" equals its `tag_pattern_matches`, so an inverted
//!   policy fires on the names its pattern does not match. A tag is immutable
//!   under a policy set when ANY policy in scope fires.
//! * **Scope**: two namespaces with two repositories each; a namespace policy
//!   covers every repository of its namespace, a repository policy its own.
//! * **State** ([`Model`]): the alive tags (id ascending with creation,
//!   repository, name, immutability) and the policies created so far. A push
//!   over an immutable tag is denied; any other push replaces the tag by a new
//!   one (a new id) that is immutable iff a policy in scope fires. A delete or
//!   manifest delete touching an immutable tag is denied as a whole, otherwise
//!   it removes the tags; an expiry never removes anything here. Creating a
//!   policy runs it retroactively: every mutable tag in its scope it fires for
//!   becomes immutable. A manual change makes a tag immutable. Nothing ever
//!   makes a tag mutable again.
//!
//! The plugin runs against a [`MemoryHost`] whose tags the test keeps in sync
//! from the plugin's own decisions, and the host's tags are compared with the
//! model's after every step.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;
use std::collections::BTreeSet;
use tagguard_guest::memory_host::MemoryHost;
use tagguard_guest::model::{
    AuditRecord, DeleteDecision, DeleteOperation, DeleteRequest, Granularity, Policy, PolicyError,
    PolicyMatch, PushDecision, PushRequest, RecordKind, RunOptions, RunTrigger, Scope, Tag,
};
use tagguard_guest::plugin::PolicyPlugin;

// ---------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------

/// Characters of literals and tag names.
const ALPHABET: &[char] = &[
    'a', 'b', 'c', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9',
];

/// White space a pattern may be padded with.
const PADDING: &[char] = &[' ', '\t', '\n'];

/// Namespace and repository of each place a tag can live.
const SLOTS: [(&str, &str); 4] = [("org", "r1"), ("org", "r2"), ("lab", "r1"), ("lab", "r2")];

/// Namespace and repository (none: namespace-wide) of each policy scope.
const SCOPES: [(&str, Option<&str>); 6] = [
    ("org", None),
    ("org", Some("r1")),
    ("org", Some("r2")),
    ("lab", None),
    ("lab", Some("r1")),
    ("lab", Some("r2")),
];

/// Scopes that cover `SLOTS[0]` (org/r1), for the single-push properties.
const ORG_R1_SCOPES: &[usize] = &[0, 1];

const ALL_SCOPES: &[usize] = &[0, 1, 2, 3, 4, 5];

const DELETE_OPERATIONS: &[DeleteOperation] = &[
    DeleteOperation::DeleteTag,
    DeleteOperation::DeleteManifest,
    DeleteOperation::SetExpiration,
];

const GRANULARITIES: &[Granularity] = &[Granularity::PerTag, Granularity::PerBatch];

/// A pattern of the tiny grammar; literals are from [`ALPHABET`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pat {
    /// `L`: exactly L.
    Lit(String),
    /// `L.*`: starts with L (L may be empty, giving `.*`).
    Prefix(String),
    /// `.*L`: ends with L (L may be empty, giving `.*`).
    Suffix(String),
    /// `L1|L2`: exactly L1 or exactly L2 (the alternation spans the whole pattern).
    Alt(String, String),
    /// `(L1|L2).*`: starts with L1 or with L2.
    AltPrefix(String, String),
    /// `[0-9]+`: one or more ASCII digits, nothing else.
    Digits,
    /// `[0-9]*`: only ASCII digits (Quay's example; no tag name is empty).
    DigitsOrEmpty,
    /// `L[0-9]+`: L, then one or more digits.
    LitDigits(String),
    /// `[0-9]+L`: one or more digits, then L.
    DigitsLit(String),
}

fn all_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

impl Pat {
    /// The pattern text in the plugin's dialect.
    fn render(&self) -> String {
        match self {
            Pat::Lit(l) => l.clone(),
            Pat::Prefix(l) => format!("{l}.*"),
            Pat::Suffix(l) => format!(".*{l}"),
            Pat::Alt(a, b) => format!("{a}|{b}"),
            Pat::AltPrefix(a, b) => format!("({a}|{b}).*"),
            Pat::Digits => "[0-9]+".into(),
            Pat::DigitsOrEmpty => "[0-9]*".into(),
            Pat::LitDigits(l) => format!("{l}[0-9]+"),
            Pat::DigitsLit(l) => format!("[0-9]+{l}"),
        }
    }

    /// Whether the pattern matches the whole of `tag`.
    fn matches(&self, tag: &str) -> bool {
        let digits_plus = |s: &str| !s.is_empty() && all_digits(s);
        match self {
            Pat::Lit(l) => tag == l,
            Pat::Prefix(l) => tag.starts_with(l.as_str()),
            Pat::Suffix(l) => tag.ends_with(l.as_str()),
            Pat::Alt(a, b) => tag == a || tag == b,
            Pat::AltPrefix(a, b) => tag.starts_with(a.as_str()) || tag.starts_with(b.as_str()),
            Pat::Digits => digits_plus(tag),
            Pat::DigitsOrEmpty => all_digits(tag),
            Pat::LitDigits(l) => tag.strip_prefix(l.as_str()).is_some_and(digits_plus),
            Pat::DigitsLit(l) => tag.strip_suffix(l.as_str()).is_some_and(digits_plus),
        }
    }
}

/// A generated policy: scope, pattern, padding and polarity.
#[derive(Clone, Debug)]
struct Spec {
    scope: usize,
    pat: Pat,
    lead: String,
    trail: String,
    matches: bool,
}

impl Spec {
    /// The policy as a caller hands it to the plugin (pattern still padded).
    fn policy(&self, uuid: String) -> Policy {
        let (namespace, repository) = SCOPES[self.scope];
        Policy {
            uuid,
            scope: if repository.is_some() {
                Scope::Repository
            } else {
                Scope::Namespace
            },
            namespace: namespace.into(),
            repository: repository.map(Into::into),
            tag_pattern: format!("{}{}{}", self.lead, self.pat.render(), self.trail),
            tag_pattern_matches: self.matches,
        }
    }

    /// The policy with the model's pattern beside it.
    fn model(&self, uuid: String) -> ModelPolicy {
        ModelPolicy {
            policy: self.policy(uuid),
            pat: self.pat.clone(),
        }
    }
}

/// A policy and the grammar term its pattern came from.
#[derive(Clone, Debug)]
struct ModelPolicy {
    policy: Policy,
    pat: Pat,
}

impl ModelPolicy {
    /// Quay's rule: fires when "matched" equals the polarity.
    fn fires(&self, tag: &str) -> bool {
        self.pat.matches(tag) == self.policy.tag_pattern_matches
    }

    /// Whether the policy governs tags of `slot`.
    fn covers(&self, slot: usize) -> bool {
        let (namespace, repository) = SLOTS[slot];
        self.policy.namespace == namespace
            && self
                .policy
                .repository
                .as_deref()
                .is_none_or(|r| r == repository)
    }

    fn same_scope(&self, other: &Policy) -> bool {
        self.policy.scope == other.scope
            && self.policy.namespace == other.namespace
            && self.policy.repository == other.repository
    }
}

/// The policies of `set` that fire for `tag`, in order, as `explain` reports them.
fn model_explain<'a>(
    tag: &str,
    set: impl IntoIterator<Item = &'a ModelPolicy>,
) -> Vec<PolicyMatch> {
    set.into_iter()
        .filter(|p| p.fires(tag))
        .map(|p| PolicyMatch {
            policy: p.policy.clone(),
            pattern_matched: p.policy.tag_pattern_matches,
            budget_exceeded: false,
        })
        .collect()
}

/// A tag of the model.
#[derive(Clone, Debug)]
struct ModelTag {
    id: u64,
    slot: usize,
    name: String,
    immutable: bool,
}

/// Alive tags (ascending ids) and the policies created so far, in creation order.
#[derive(Debug, Default)]
struct Model {
    tags: Vec<ModelTag>,
    policies: Vec<ModelPolicy>,
    last_id: u64,
}

impl Model {
    fn find(&self, slot: usize, name: &str) -> Option<&ModelTag> {
        self.tags.iter().find(|t| t.slot == slot && t.name == name)
    }

    /// Every policy in scope of `slot` that fires for `name`, in order.
    fn firing(&self, slot: usize, name: &str) -> Vec<PolicyMatch> {
        model_explain(name, self.policies.iter().filter(|p| p.covers(slot)))
    }

    /// A push: `None` when denied, else the new tag's immutability (the tag is replaced).
    fn push(&mut self, slot: usize, name: &str) -> Option<bool> {
        if self.find(slot, name).is_some_and(|t| t.immutable) {
            return None;
        }
        let immutable = !self.firing(slot, name).is_empty();
        self.tags.retain(|t| !(t.slot == slot && t.name == name));
        self.last_id += 1;
        self.tags.push(ModelTag {
            id: self.last_id,
            slot,
            name: name.into(),
            immutable,
        });
        Some(immutable)
    }

    /// A delete of `ids`: the immutable ones, in order, which deny it; else the tags
    /// go when the operation removes them.
    fn delete(&mut self, ids: &[u64], operation: DeleteOperation) -> Vec<u64> {
        let blocking: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| self.tags.iter().any(|t| t.id == *id && t.immutable))
            .collect();
        if blocking.is_empty() && operation != DeleteOperation::SetExpiration {
            self.tags.retain(|t| !ids.contains(&t.id));
        }
        blocking
    }

    /// The tags `policy` would newly make immutable: mutable, in scope, firing; by id.
    fn newly(&self, policy: &ModelPolicy) -> Vec<ModelTag> {
        self.tags
            .iter()
            .filter(|t| !t.immutable && policy.covers(t.slot) && policy.fires(&t.name))
            .cloned()
            .collect()
    }

    fn mark(&mut self, ids: &[u64]) {
        for t in self.tags.iter_mut().filter(|t| ids.contains(&t.id)) {
            t.immutable = true;
        }
    }

    /// The existing policy a candidate duplicates: same scope, same trimmed pattern.
    fn duplicate_of(&self, candidate: &Policy) -> Option<&ModelPolicy> {
        self.policies.iter().find(|p| {
            p.policy.uuid != candidate.uuid
                && p.same_scope(candidate)
                && p.policy.tag_pattern == candidate.tag_pattern.trim()
        })
    }

    /// (id, namespace, repository, name, immutable) of every alive tag.
    fn view(&self) -> Vec<(u64, String, String, String, bool)> {
        self.tags
            .iter()
            .map(|t| {
                let (ns, repo) = SLOTS[t.slot];
                (t.id, ns.into(), repo.into(), t.name.clone(), t.immutable)
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn word(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    vec(select(ALPHABET), len).prop_map(|cs| cs.into_iter().collect())
}

fn tag_name() -> impl Strategy<Value = String> {
    word(1..=6)
}

fn pat() -> impl Strategy<Value = Pat> {
    prop_oneof![
        word(1..=2).prop_map(Pat::Lit),
        word(0..=2).prop_map(Pat::Prefix),
        word(0..=2).prop_map(Pat::Suffix),
        (word(1..=2), word(1..=2)).prop_map(|(a, b)| Pat::Alt(a, b)),
        (word(1..=2), word(1..=2)).prop_map(|(a, b)| Pat::AltPrefix(a, b)),
        Just(Pat::Digits),
        Just(Pat::DigitsOrEmpty),
        word(1..=2).prop_map(Pat::LitDigits),
        word(1..=2).prop_map(Pat::DigitsLit),
    ]
}

fn padding() -> impl Strategy<Value = String> {
    vec(select(PADDING), 0..=2).prop_map(|cs| cs.into_iter().collect())
}

fn spec(scopes: &'static [usize]) -> impl Strategy<Value = Spec> {
    (select(scopes), pat(), padding(), padding(), any::<bool>()).prop_map(
        |(scope, pat, lead, trail, matches)| Spec {
            scope,
            pat,
            lead,
            trail,
            matches,
        },
    )
}

/// Policies p0, p1, … from `specs`.
fn model_policies(specs: &[Spec]) -> Vec<ModelPolicy> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| s.model(format!("p{i}")))
        .collect()
}

fn plain(set: &[ModelPolicy]) -> Vec<Policy> {
    set.iter().map(|p| p.policy.clone()).collect()
}

fn uuids(matches: &[PolicyMatch]) -> Vec<String> {
    matches.iter().map(|m| m.policy.uuid.clone()).collect()
}

// ---------------------------------------------------------------------------
// Checks shared by the properties
// ---------------------------------------------------------------------------

fn meta(r: &AuditRecord, key: &str) -> Value {
    r.metadata()[key].clone()
}

/// The uuids a denial record lists in `matched_policies`.
fn listed_uuids(r: &AuditRecord) -> Vec<String> {
    meta(r, "matched_policies")
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["uuid"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn request(
    slot: usize,
    name: &str,
    digest: &str,
    existing: Option<Tag>,
    set: &[Policy],
) -> PushRequest {
    let (namespace, repository) = SLOTS[slot];
    PushRequest {
        namespace: namespace.into(),
        repository: repository.into(),
        tag_name: name.into(),
        manifest_digest: digest.into(),
        existing,
        policies: set.to_vec(),
    }
}

/// A push the model allows: the decision, and the one record iff the tag is immutable.
fn check_allowed_push(
    decision: &PushDecision,
    staged: &[AuditRecord],
    req: &PushRequest,
    expected: &[PolicyMatch],
) -> Result<(), TestCaseError> {
    let immutable = !expected.is_empty();
    prop_assert_eq!(
        decision,
        &PushDecision::Create {
            immutable,
            matched: expected.to_vec()
        }
    );
    if !immutable {
        prop_assert!(
            staged.is_empty(),
            "a mutable push stages nothing: {staged:?}"
        );
        return Ok(());
    }
    prop_assert_eq!(staged.len(), 1, "one record: {:?}", staged);
    let r = &staged[0];
    prop_assert_eq!(r.kind, RecordKind::TagMadeImmutableByPolicy);
    prop_assert_eq!(r.tag.as_deref(), Some(req.tag_name.as_str()));
    prop_assert_eq!(&r.namespace, &req.namespace);
    prop_assert_eq!(r.repository.as_deref(), Some(req.repository.as_str()));
    prop_assert_eq!(meta(r, "tag"), Value::from(req.tag_name.as_str()));
    prop_assert_eq!(meta(r, "previous_immutable"), Value::from(false));
    prop_assert_eq!(meta(r, "immutable"), Value::from(true));
    let firing = uuids(expected);
    let cause = meta(r, "policy_uuid");
    prop_assert!(
        firing.iter().any(|u| cause.as_str() == Some(u.as_str())),
        "policy_uuid {cause} is not one of the firing policies {firing:?}"
    );
    prop_assert_eq!(meta(r, "matched_policies"), Value::from(firing));
    Ok(())
}

/// A push over an immutable tag: denied with exactly one denial record.
fn check_denied_push(
    decision: &PushDecision,
    staged: &[AuditRecord],
    req: &PushRequest,
    expected: &[PolicyMatch],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(decision, &PushDecision::Deny(expected.to_vec()));
    prop_assert_eq!(staged.len(), 1, "one denial record: {:?}", staged);
    let r = &staged[0];
    prop_assert_eq!(r.kind, RecordKind::TagImmutabilityDenied);
    prop_assert_eq!(r.tag.as_deref(), Some(req.tag_name.as_str()));
    prop_assert_eq!(meta(r, "operation"), Value::from("push"));
    prop_assert_eq!(meta(r, "outcome"), Value::from("denied"));
    prop_assert_eq!(
        meta(r, "attempted_manifest_digest"),
        Value::from(req.manifest_digest.as_str())
    );
    prop_assert_eq!(listed_uuids(r), uuids(expected));
    Ok(())
}

// ---------------------------------------------------------------------------
// Operation sequences
// ---------------------------------------------------------------------------

/// One step of a random history. `pick`s index the alive tags (modulo their count).
#[derive(Clone, Debug)]
enum Op {
    /// Push `name` into a slot (a re-push when that tag is alive there).
    Push { slot: usize, name: String },
    /// Push again to an alive tag.
    Repush { pick: usize },
    /// Delete or expire an alive tag and possibly more of its repository.
    Delete {
        pick: usize,
        more: Vec<usize>,
        operation: DeleteOperation,
    },
    /// Validate a policy; when accepted, create it and run it retroactively.
    CreatePolicy {
        spec: Spec,
        batch_size: u32,
        granularity: Granularity,
    },
    /// Run an existing policy again.
    Reapply {
        pick: usize,
        batch_size: u32,
        granularity: Granularity,
    },
    /// Preview a candidate policy (writes nothing).
    Preview { spec: Spec, sample_limit: u32 },
    /// Make an alive tag immutable by hand.
    MakeImmutable { pick: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..SLOTS.len(), tag_name()).prop_map(|(slot, name)| Op::Push { slot, name }),
        2 => any::<usize>().prop_map(|pick| Op::Repush { pick }),
        2 => (any::<usize>(), vec(any::<usize>(), 0..=2), select(DELETE_OPERATIONS))
            .prop_map(|(pick, more, operation)| Op::Delete { pick, more, operation }),
        3 => (spec(ALL_SCOPES), 1..=7u32, select(GRANULARITIES)).prop_map(
            |(spec, batch_size, granularity)| Op::CreatePolicy { spec, batch_size, granularity }
        ),
        1 => (any::<usize>(), 1..=7u32, select(GRANULARITIES)).prop_map(
            |(pick, batch_size, granularity)| Op::Reapply { pick, batch_size, granularity }
        ),
        1 => (spec(ALL_SCOPES), 0..=4u32)
            .prop_map(|(spec, sample_limit)| Op::Preview { spec, sample_limit }),
        1 => any::<usize>().prop_map(|pick| Op::MakeImmutable { pick }),
    ]
}

/// The plugin, its host (tags kept in sync from the plugin's decisions) and the model.
struct World {
    plugin: PolicyPlugin,
    host: MemoryHost,
    host_last_id: u64,
    model: Model,
    attempts: usize,
}

fn slot_of(t: &Tag) -> usize {
    SLOTS
        .iter()
        .position(|(ns, repo)| t.namespace == *ns && t.repository == *repo)
        .expect("tags live in a slot")
}

impl World {
    fn new() -> Self {
        World {
            plugin: PolicyPlugin::new(),
            host: MemoryHost::default(),
            host_last_id: 0,
            model: Model::default(),
            attempts: 0,
        }
    }

    fn host_view(&self) -> Vec<(u64, String, String, String, bool)> {
        self.host
            .tags
            .iter()
            .map(|t| {
                (
                    t.id,
                    t.namespace.clone(),
                    t.repository.clone(),
                    t.name.clone(),
                    t.immutable,
                )
            })
            .collect()
    }

    fn immutable_ids(&self) -> BTreeSet<u64> {
        self.host
            .tags
            .iter()
            .filter(|t| t.immutable)
            .map(|t| t.id)
            .collect()
    }

    fn pick(&self, pick: usize) -> Option<Tag> {
        let n = self.host.tags.len();
        (n > 0).then(|| self.host.tags[pick % n].clone())
    }

    fn in_scope(&self, slot: usize) -> Vec<Policy> {
        self.model
            .policies
            .iter()
            .filter(|p| p.covers(slot))
            .map(|p| p.policy.clone())
            .collect()
    }

    fn apply(&mut self, step: usize, op: &Op) -> Result<(), TestCaseError> {
        self.host.staged.clear();
        self.host.committed.clear();
        match op {
            Op::Push { slot, name } => self.push(step, *slot, name),
            Op::Repush { pick } => match self.pick(*pick) {
                Some(t) => self.push(step, slot_of(&t), &t.name),
                None => Ok(()),
            },
            Op::Delete {
                pick,
                more,
                operation,
            } => self.delete(*pick, more, *operation),
            Op::CreatePolicy {
                spec,
                batch_size,
                granularity,
            } => self.create_policy(step, spec, *batch_size, *granularity),
            Op::Reapply {
                pick,
                batch_size,
                granularity,
            } => {
                if self.model.policies.is_empty() {
                    return Ok(());
                }
                let policy = self.model.policies[pick % self.model.policies.len()].clone();
                let options = RunOptions {
                    run_id: format!("run-{step}"),
                    batch_size: *batch_size,
                    granularity: *granularity,
                };
                self.run(&policy, RunTrigger::Reapplied, &options)
            }
            Op::Preview { spec, sample_limit } => self.preview(spec, *sample_limit),
            Op::MakeImmutable { pick } => self.make_immutable(*pick),
        }
    }

    fn push(&mut self, step: usize, slot: usize, name: &str) -> Result<(), TestCaseError> {
        let (ns, repo) = SLOTS[slot];
        let existing = self
            .host
            .tags
            .iter()
            .find(|t| t.namespace == ns && t.repository == repo && t.name == name)
            .cloned();
        let digest = format!("sha256:{step:064x}");
        let req = request(slot, name, &digest, existing, &self.in_scope(slot));
        let expected = self.model.firing(slot, name);
        let decision = self
            .plugin
            .on_push(&mut self.host, &req)
            .map_err(|e| TestCaseError::fail(format!("on_push failed: {e}")))?;
        match self.model.push(slot, name) {
            None => check_denied_push(&decision, &self.host.staged, &req, &expected)?,
            Some(_) => check_allowed_push(&decision, &self.host.staged, &req, &expected)?,
        }
        prop_assert!(self.host.committed.is_empty());
        // Keep the host in sync with what the plugin decided.
        if let PushDecision::Create { immutable, .. } = decision {
            self.host
                .tags
                .retain(|t| !(t.namespace == ns && t.repository == repo && t.name == name));
            self.host_last_id += 1;
            self.host.tags.push(Tag {
                id: self.host_last_id,
                namespace: ns.into(),
                repository: repo.into(),
                name: name.into(),
                manifest_digest: digest,
                immutable,
            });
        }
        Ok(())
    }

    fn delete(
        &mut self,
        pick: usize,
        more: &[usize],
        operation: DeleteOperation,
    ) -> Result<(), TestCaseError> {
        let Some(first) = self.pick(pick) else {
            return Ok(());
        };
        let slot = slot_of(&first);
        let same_repo: Vec<Tag> = self
            .host
            .tags
            .iter()
            .filter(|t| slot_of(t) == slot)
            .cloned()
            .collect();
        let mut tags = vec![first];
        for m in more {
            let t = &same_repo[m % same_repo.len()];
            if tags.iter().all(|x| x.id != t.id) {
                tags.push(t.clone());
            }
        }
        let ids: Vec<u64> = tags.iter().map(|t| t.id).collect();
        let req = DeleteRequest {
            operation,
            tags: tags.clone(),
            policies: self.in_scope(slot),
        };
        let decision = self
            .plugin
            .on_delete(&mut self.host, &req)
            .map_err(|e| TestCaseError::fail(format!("on_delete failed: {e}")))?;
        let blocking = self.model.delete(&ids, operation);
        if blocking.is_empty() {
            prop_assert_eq!(&decision, &DeleteDecision::Allow);
            prop_assert!(self.host.staged.is_empty(), "{:?}", self.host.staged);
        } else {
            prop_assert_eq!(&decision, &DeleteDecision::Deny(blocking.clone()));
            prop_assert_eq!(
                self.host.staged.len(),
                blocking.len(),
                "one denial per immutable tag"
            );
            for (r, id) in self.host.staged.iter().zip(&blocking) {
                let t = tags.iter().find(|t| t.id == *id).expect("a requested tag");
                prop_assert_eq!(r.kind, RecordKind::TagImmutabilityDenied);
                prop_assert_eq!(r.tag.as_deref(), Some(t.name.as_str()));
                prop_assert_eq!(meta(r, "operation"), Value::from(operation.as_str()));
                prop_assert_eq!(listed_uuids(r), uuids(&self.model.firing(slot, &t.name)));
            }
        }
        if decision == DeleteDecision::Allow && operation != DeleteOperation::SetExpiration {
            self.host.tags.retain(|t| !ids.contains(&t.id));
        }
        Ok(())
    }

    fn create_policy(
        &mut self,
        step: usize,
        spec: &Spec,
        batch_size: u32,
        granularity: Granularity,
    ) -> Result<(), TestCaseError> {
        self.attempts += 1;
        let candidate = spec.policy(format!("p{}", self.attempts));
        let existing = plain(&self.model.policies);
        let validated = self.plugin.validate_policy(&candidate, &existing);
        if let Some(dup) = self.model.duplicate_of(&candidate) {
            prop_assert_eq!(
                validated,
                Err(PolicyError::DuplicatePattern(dup.policy.uuid.clone()))
            );
            return Ok(());
        }
        let normalised = Policy {
            tag_pattern: spec.pat.render(),
            ..candidate
        };
        prop_assert_eq!(validated, Ok(normalised.clone()));
        self.plugin
            .on_policy_created(&mut self.host, &normalised)
            .map_err(|e| TestCaseError::fail(format!("on_policy_created failed: {e}")))?;
        prop_assert_eq!(self.host.staged.len(), 1);
        prop_assert_eq!(
            self.host.staged[0].kind,
            RecordKind::CreateImmutabilityPolicy
        );
        self.host.staged.clear();
        let policy = ModelPolicy {
            policy: normalised,
            pat: spec.pat.clone(),
        };
        self.model.policies.push(policy.clone());
        let options = RunOptions {
            run_id: format!("run-{step}"),
            batch_size,
            granularity,
        };
        self.run(&policy, RunTrigger::PolicyCreated, &options)
    }

    fn run(
        &mut self,
        policy: &ModelPolicy,
        trigger: RunTrigger,
        options: &RunOptions,
    ) -> Result<(), TestCaseError> {
        let newly = self.model.newly(policy);
        let in_scope = self
            .model
            .tags
            .iter()
            .filter(|t| policy.covers(t.slot))
            .count();
        self.host.scoped_to(&policy.policy);
        let summary = self
            .plugin
            .run_retroactive(&mut self.host, &policy.policy, trigger, options)
            .map_err(|e| TestCaseError::fail(format!("run_retroactive failed: {e}")))?;
        prop_assert_eq!(summary.count, newly.len() as u64, "count");
        prop_assert_eq!(
            summary.batches as usize,
            in_scope.div_ceil(options.batch_size as usize),
            "one batch per page of in-scope tags"
        );
        let sample: Vec<String> = newly.iter().take(10).map(|t| t.name.clone()).collect();
        prop_assert_eq!(&summary.sample_tags, &sample);
        prop_assert_eq!(self.host.staged.len(), 1, "only the run summary is staged");
        let s = &self.host.staged[0];
        prop_assert_eq!(s.kind, RecordKind::TagsMadeImmutableByPolicy);
        prop_assert_eq!(meta(s, "count"), Value::from(newly.len()));

        // Every newly immutable tag is named by exactly one committed record.
        let mut expected: Vec<(String, String, String)> = newly
            .iter()
            .map(|t| {
                let (ns, repo) = SLOTS[t.slot];
                (ns.to_string(), repo.to_string(), t.name.clone())
            })
            .collect();
        expected.sort();
        let mut named = Vec::new();
        for r in &self.host.committed {
            prop_assert_eq!(r.kind, RecordKind::TagMadeImmutableByPolicy);
            prop_assert_eq!(meta(r, "run_id"), Value::from(options.run_id.as_str()));
            prop_assert_eq!(meta(r, "trigger"), Value::from(trigger.as_str()));
            prop_assert_eq!(
                meta(r, "policy_uuid"),
                Value::from(policy.policy.uuid.as_str())
            );
            match options.granularity {
                Granularity::PerTag => {
                    let tag = r.tag.clone().unwrap_or_default();
                    let repo = r.repository.clone().unwrap_or_default();
                    named.push((r.namespace.clone(), repo, tag));
                }
                Granularity::PerBatch => {
                    prop_assert_eq!(r.tag.as_deref(), None);
                    let listed = meta(r, "tags");
                    let listed = listed.as_array().cloned().unwrap_or_default();
                    prop_assert!(!listed.is_empty(), "a batch record lists its tags");
                    for t in listed {
                        let repo = t["repository"].as_str().unwrap_or_default().to_string();
                        let tag = t["tag"].as_str().unwrap_or_default().to_string();
                        named.push((r.namespace.clone(), repo, tag));
                    }
                }
            }
        }
        if options.granularity == Granularity::PerBatch {
            prop_assert!(self.host.committed.len() <= summary.batches as usize);
        }
        named.sort();
        prop_assert_eq!(
            named,
            expected,
            "committed records name the newly immutable tags once"
        );
        let ids: Vec<u64> = newly.iter().map(|t| t.id).collect();
        self.model.mark(&ids);
        Ok(())
    }

    fn preview(&mut self, spec: &Spec, sample_limit: u32) -> Result<(), TestCaseError> {
        let candidate = spec.model("preview".into());
        let newly = self.model.newly(&candidate);
        let before = self.host_view();
        self.host.scoped_to(&candidate.policy);
        let preview = self
            .plugin
            .preview(&mut self.host, &candidate.policy, sample_limit)
            .map_err(|e| TestCaseError::fail(format!("preview failed: {e}")))?;
        prop_assert_eq!(preview.count, newly.len() as u64);
        let sample: Vec<u64> = preview.sample.iter().map(|t| t.id).collect();
        let expected: Vec<u64> = newly
            .iter()
            .take(sample_limit as usize)
            .map(|t| t.id)
            .collect();
        prop_assert_eq!(sample, expected);
        prop_assert!(self.host.staged.is_empty() && self.host.committed.is_empty());
        prop_assert_eq!(self.host_view(), before, "a preview changes nothing");
        Ok(())
    }

    fn make_immutable(&mut self, pick: usize) -> Result<(), TestCaseError> {
        let Some(tag) = self.pick(pick) else {
            return Ok(());
        };
        let changes = !tag.immutable;
        let changed = self
            .plugin
            .on_manual_change(&mut self.host, &tag, true)
            .map_err(|e| TestCaseError::fail(format!("on_manual_change failed: {e}")))?;
        prop_assert_eq!(changed, changes);
        prop_assert_eq!(self.host.staged.len(), usize::from(changes));
        if changes {
            let r = &self.host.staged[0];
            prop_assert_eq!(r.kind, RecordKind::ChangeTagImmutability);
            prop_assert_eq!(r.tag.as_deref(), Some(tag.name.as_str()));
            prop_assert_eq!(meta(r, "previous_immutable"), Value::from(false));
            prop_assert_eq!(meta(r, "immutable"), Value::from(true));
            for t in self.host.tags.iter_mut().filter(|t| t.id == tag.id) {
                t.immutable = true;
            }
        }
        self.model.mark(&[tag.id]);
        Ok(())
    }

    /// Checks after every step: the host's tags are the model's, nothing became
    /// mutable again, and every tag a policy in scope fires for is immutable.
    fn check(&self, immutable_before: &BTreeSet<u64>) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            self.host_view(),
            self.model.view(),
            "host tags == model tags"
        );
        let after = self.immutable_ids();
        prop_assert!(
            immutable_before.is_subset(&after),
            "no tag goes from immutable to mutable: before {immutable_before:?}, after {after:?}"
        );
        for t in &self.host.tags {
            let slot = slot_of(t);
            let fires = self
                .model
                .policies
                .iter()
                .any(|p| p.covers(slot) && p.fires(&t.name));
            prop_assert!(
                !fires || t.immutable,
                "tag {t:?} is mutable though a policy in scope fires for it"
            );
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

#[test]
fn model_matches_hand_checked_examples() {
    let cases: &[(Pat, &str, bool)] = &[
        (Pat::Lit("a1".into()), "a1", true),
        (Pat::Lit("a1".into()), "a10", false),
        (Pat::Prefix("a".into()), "abc", true),
        (Pat::Prefix(String::new()), "9", true),
        (Pat::Suffix("c".into()), "abc", true),
        (Pat::Suffix("c".into()), "ca", false),
        (Pat::Alt("a".into(), "b".into()), "ab", false),
        (Pat::Alt("a".into(), "b".into()), "b", true),
        (Pat::AltPrefix("a".into(), "b".into()), "b12", true),
        (Pat::Digits, "123", true),
        (Pat::Digits, "12a", false),
        (Pat::DigitsOrEmpty, "7", true),
        (Pat::LitDigits("c".into()), "c", false),
        (Pat::LitDigits("c".into()), "c07", true),
        (Pat::DigitsLit("1".into()), "111", true),
        (Pat::DigitsLit("1".into()), "a1", false),
    ];
    for (pat, tag, expected) in cases {
        assert_eq!(pat.matches(tag), *expected, "{} on {tag}", pat.render());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Property 1.
    #[test]
    fn explain_returns_exactly_the_models_firing_policies_in_order(
        tags in vec(tag_name(), 1..=4),
        specs in vec(spec(ALL_SCOPES), 0..=6),
    ) {
        let set = model_policies(&specs);
        let policies = plain(&set);
        let mut plugin = PolicyPlugin::new();
        for tag in &tags {
            let got = plugin.explain(tag, &policies).expect("explain");
            let expected = model_explain(tag, &set);
            prop_assert_eq!(&got, &expected, "tag {}", tag);
            for m in &got {
                prop_assert_eq!(m.pattern_matched, m.policy.tag_pattern_matches);
            }
        }
    }

    /// Property 2, new and mutable tags.
    #[test]
    fn push_of_a_new_or_mutable_tag_is_immutable_iff_a_policy_fires_with_one_record(
        name in tag_name(),
        specs in vec(spec(ORG_R1_SCOPES), 0..=5),
        exists in any::<bool>(),
    ) {
        let set = model_policies(&specs);
        let existing = exists.then(|| Tag {
            id: 1,
            namespace: "org".into(),
            repository: "r1".into(),
            name: name.clone(),
            manifest_digest: "sha256:old".into(),
            immutable: false,
        });
        let req = request(0, &name, "sha256:new", existing, &plain(&set));
        let mut host = MemoryHost::default();
        let decision = PolicyPlugin::new().on_push(&mut host, &req).expect("on_push");
        check_allowed_push(&decision, &host.staged, &req, &model_explain(&name, &set))?;
        prop_assert!(host.committed.is_empty());
    }

    /// Property 2, immutable tags.
    #[test]
    fn push_over_an_immutable_tag_is_always_denied_with_one_denial_record(
        name in tag_name(),
        specs in vec(spec(ORG_R1_SCOPES), 0..=5),
        same_digest in any::<bool>(),
    ) {
        let set = model_policies(&specs);
        let existing = Tag {
            id: 1,
            namespace: "org".into(),
            repository: "r1".into(),
            name: name.clone(),
            manifest_digest: "sha256:old".into(),
            immutable: true,
        };
        let digest = if same_digest { "sha256:old" } else { "sha256:new" };
        let req = request(0, &name, digest, Some(existing), &plain(&set));
        let mut host = MemoryHost::default();
        let decision = PolicyPlugin::new().on_push(&mut host, &req).expect("on_push");
        check_denied_push(&decision, &host.staged, &req, &model_explain(&name, &set))?;
        prop_assert!(host.committed.is_empty());
    }

    /// Property 3.
    #[test]
    fn random_operation_sequences_keep_immutable_tags_equal_to_the_model_and_never_unmark(
        seed in vec((0..SLOTS.len(), tag_name()), 0..=10),
        ops in vec(op(), 1..=40),
    ) {
        // Seed tags are pushed (through the plugin) before any policy exists, so
        // the first retroactive runs have mutable tags to mark.
        let seed = seed.into_iter().map(|(slot, name)| Op::Push { slot, name });
        let mut world = World::new();
        for (step, op) in seed.chain(ops).enumerate() {
            let before = world.immutable_ids();
            world.apply(step, &op)?;
            world.check(&before)?;
        }
    }

    /// Property 4.
    #[test]
    fn validate_policy_accepts_and_trims_every_pattern_and_rejects_same_scope_duplicates(
        specs in vec(spec(ALL_SCOPES), 1..=8),
        repad in (padding(), padding(), any::<bool>(), any::<usize>()),
    ) {
        let mut plugin = PolicyPlugin::new();
        let mut model = Model::default();
        for (i, spec) in specs.iter().enumerate() {
            let candidate = spec.policy(format!("p{i}"));
            let got = plugin.validate_policy(&candidate, &plain(&model.policies));
            match model.duplicate_of(&candidate) {
                Some(dup) => prop_assert_eq!(
                    got,
                    Err(PolicyError::DuplicatePattern(dup.policy.uuid.clone()))
                ),
                None => {
                    let trimmed = Policy { tag_pattern: spec.pat.render(), ..candidate };
                    prop_assert_eq!(got, Ok(trimmed.clone()));
                    model.policies.push(ModelPolicy { policy: trimmed, pat: spec.pat.clone() });
                }
            }
        }
        // An accepted pattern padded anew, with either polarity: a duplicate under a new
        // uuid, and an update of the stored policy under its own uuid.
        let (lead, trail, matches, pick) = repad;
        let stored = &model.policies[pick % model.policies.len()].policy;
        let again = Policy {
            uuid: "again".into(),
            tag_pattern: format!("{lead}{}{trail}", stored.tag_pattern),
            tag_pattern_matches: matches,
            ..stored.clone()
        };
        let existing = plain(&model.policies);
        let first_in_scope = model
            .duplicate_of(&again)
            .map(|p| p.policy.uuid.clone())
            .expect("the stored policy itself");
        prop_assert_eq!(
            plugin.validate_policy(&again, &existing),
            Err(PolicyError::DuplicatePattern(first_in_scope))
        );
        let update = Policy { uuid: stored.uuid.clone(), ..again };
        prop_assert_eq!(
            plugin.validate_policy(&update, &existing),
            Ok(Policy { tag_pattern: stored.tag_pattern.clone(), ..update.clone() })
        );
    }
}
