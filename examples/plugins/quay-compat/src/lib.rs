//! An alternative tagguard plugin for policies written for Quay: its
//! `tag_pattern` is matched as Quay matches it, with look-around and
//! backreferences, by a backtracking engine (`fancy-regex`) under a step
//! budget.
//!
//! Only the dialect is defined here ([`dialect::QuayLanguage`]); everything
//! else (validation limits, duplicate and scope checks, matching with
//! inversion, decisions, audit records and retroactive runs) comes from
//! `tagguard-guest`. A pattern that runs out of its budget counts as not
//! matched, the policy's polarity is applied afterwards (as Quay treats a
//! match that times out), and the record of the change says so in
//! `match_budget_exceeded`.

pub mod dialect;

#[cfg(test)]
mod plugin_tests;

#[cfg(target_family = "wasm")]
tagguard_guest::export_policy_plugin!("../../../wit", crate::dialect::QuayLanguage);
