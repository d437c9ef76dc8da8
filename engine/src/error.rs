//! Typed engine errors. Each names the plugin, the call and the reason.

use crate::bindings::types::{Error as PluginError, PolicyError};
use std::path::PathBuf;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A plugin file could not be read.
    #[error("reading plugin {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a loadable component, or the engine could not be set up.
    #[error("plugin {plugin}: cannot be loaded: {reason}")]
    Load {
        /// Plugin digest or name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// The precompile cache directory is not one the engine can trust: it must be a real
    /// directory (not a symlink), owned by the process's effective uid, with mode 0700.
    #[error("cache directory {dir} {reason}")]
    UnsafeCache {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it, worded to follow the path ("is writable by group or others
        /// (mode 0777); ...").
        reason: String,
    },
    /// The component does not implement `tagguard:policy/tag-policy@0.3.x`.
    #[error("plugin {plugin}: does not implement tagguard:policy/tag-policy@0.3.x: {reason}")]
    ContractMismatch {
        /// Plugin digest or name.
        plugin: String,
        /// Why.
        reason: String,
    },
    /// The guest trapped (a panic, an unreachable, an out-of-bounds access).
    #[error("plugin {plugin}, call {call}: the plugin trapped: {message}")]
    GuestTrap {
        /// Plugin identity.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// The trap and the guest's message.
        message: String,
    },
    /// The call passed its deadline (a run: its progress window) and was stopped.
    #[error("plugin {plugin}, call {call}: stopped after {after:?} without progress")]
    Timeout {
        /// Plugin identity.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// The deadline or progress window that passed.
        after: std::time::Duration,
    },
    /// The plugin tried to grow its memory past the cap and was stopped.
    #[error(
        "plugin {plugin}, call {call}: memory limit of {limit_bytes} bytes exceeded (asked for {requested_bytes})"
    )]
    MemoryLimit {
        /// Plugin identity.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// The cap.
        limit_bytes: usize,
        /// The size the plugin asked for.
        requested_bytes: usize,
    },
    /// The plugin refused the call with a typed error (bad input, for example).
    #[error("plugin {plugin}, call {call}: {}", .error.message())]
    Plugin {
        /// Plugin identity.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// The plugin's error.
        error: PluginError,
    },
    /// The plugin rejected a candidate policy.
    #[error("plugin {plugin}, call {call}: invalid policy: {}", .error.message())]
    InvalidPolicy {
        /// Plugin identity.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// Why the policy is invalid.
        error: PolicyError,
    },
    /// The outcome lacks the audit record that must explain it, or carries a record that
    /// claims something that did not happen. Nothing was committed.
    #[error("plugin {plugin}, call {call}: outcome rejected, nothing committed: {reason}")]
    AuditMissing {
        /// Plugin identity.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// What is missing or wrong.
        reason: String,
    },
    /// The plugin did or returned something the contract forbids: a rewritten policy, a
    /// scan that skips or repeats a page or happens outside a run, a result that disagrees with what the
    /// host saw. Nothing was committed.
    #[error("plugin {plugin}, call {call}: broke the contract, nothing committed: {reason}")]
    ContractViolation {
        /// Plugin identity.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// What it did.
        reason: String,
    },
    /// The registry's request is malformed (before the plugin was asked): the field and why.
    #[error("call {call}: invalid request: {field}: {reason}")]
    InvalidRequest {
        /// The decision asked for.
        call: &'static str,
        /// The offending field.
        field: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A setting is out of range: the field and why.
    #[error("invalid setting {field}: {reason}")]
    InvalidSettings {
        /// The offending setting.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The registry's tag store failed.
    #[error("plugin {plugin}, call {call}: tag store failed: {message}")]
    HostStore {
        /// Plugin identity.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// The store's message.
        message: String,
    },
    /// The registry's audit sink failed; the change it would have recorded was not applied.
    #[error("plugin {plugin}, call {call}: audit sink failed, change not applied: {message}")]
    HostAudit {
        /// Plugin identity.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// The sink's message.
        message: String,
    },
    /// A hot swap was refused: the new plugin failed validation. The old one keeps serving.
    #[error("swap from {current} to {candidate} refused, {current} keeps serving: {cause}")]
    SwapRejected {
        /// The plugin that keeps serving.
        current: String,
        /// The plugin that was refused.
        candidate: String,
        /// Why.
        #[source]
        cause: Box<EngineError>,
    },
    /// A plugin generation to adopt is not newer than the one serving.
    #[error("plugin generation {offered} is not newer than generation {serving}, which serves")]
    StaleGeneration {
        /// The generation serving.
        serving: u64,
        /// The generation offered.
        offered: u64,
    },
    /// There is no previous generation to roll back to.
    #[error("no previous plugin generation to roll back to")]
    NoPreviousGeneration,
    /// The registry's state changed while the plugin decided (the tag moved or became
    /// immutable meanwhile); nothing was applied, and deciding again may succeed.
    #[error(
        "plugin {plugin}, call {call}: state changed while deciding, nothing applied: {message}"
    )]
    Conflict {
        /// Plugin identity.
        plugin: String,
        /// The export called.
        call: &'static str,
        /// The sink's message.
        message: String,
    },
    /// A retroactive run stopped part way. Every tag it changed carries its record; the
    /// run's summary says `failed`. Running the policy again finishes the work.
    #[error(
        "plugin {plugin}: retroactive run {run_id} of policy {policy_uuid} stopped after {changed} tags: {cause}"
    )]
    RunIncomplete {
        /// Plugin identity.
        plugin: String,
        /// The run.
        run_id: String,
        /// The policy applied.
        policy_uuid: String,
        /// Tags that changed (each with its record).
        changed: u64,
        /// Why it stopped.
        #[source]
        cause: Box<EngineError>,
    },
}
