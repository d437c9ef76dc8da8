//! An alternative tagguard plugin: policies whose `tag_pattern` is a
//! Harbor-style tag glob instead of a regular expression.
//!
//! Only the dialect is defined here ([`glob::GlobLanguage`]); validation
//! limits, duplicate and scope checks, matching with inversion, decisions,
//! audit records and retroactive runs all come from `tagguard-guest`, whose
//! component glue is invoked below with this dialect.

pub mod glob;

#[cfg(test)]
mod plugin_tests;

#[cfg(target_family = "wasm")]
tagguard_guest::export_policy_plugin!("../../../wit", crate::glob::GlobLanguage);
