//! The default tagguard policy plugin, and the shared core of every plugin
//! built on it.
//!
//! The logic lives in plain modules that build and test natively, generic
//! over the pattern dialect ([`language::PatternLanguage`]). `glue` holds the
//! only wasm-specific part, the [`export_policy_plugin!`] macro, which the
//! default plugin invokes with the regex dialect when the `component`
//! feature is on, and other plugin crates invoke with their own dialect.

pub mod fidelity;
pub mod language;
pub mod matcher;
pub mod memory_host;
pub mod model;
pub mod pattern;
pub mod plugin;
pub mod policies;
pub mod records;

mod glue;

#[cfg(test)]
mod plugin_tests;

#[cfg(all(target_family = "wasm", feature = "component"))]
export_policy_plugin!("../wit", crate::language::RegexLanguage);
