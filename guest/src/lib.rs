//! The default tagguard policy plugin.
//!
//! The logic lives in plain modules that build and test natively; `glue` is
//! the only wasm-specific part and just converts between the generated
//! bindings and these modules.

pub mod matcher;
pub mod model;
pub mod pattern;
pub mod plugin;
pub mod policies;
pub mod records;

#[cfg(test)]
mod plugin_tests;

#[cfg(target_family = "wasm")]
mod glue;
