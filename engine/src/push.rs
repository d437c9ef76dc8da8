//! A push as the registry asks for it, and what the plugin decided about it.

use crate::bindings::policy_engine::PushRequest as PluginPushRequest;
use crate::bindings::types::{Actor, Policy, Tag};
use crate::policy_set::PolicyMatch;

/// A push of `tag_name` to `manifest_digest`, with every policy in scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushRequest {
    /// Who pushes.
    pub actor: Actor,
    /// Target namespace.
    pub namespace: String,
    /// Target repository.
    pub repository: String,
    /// The tag being created or moved.
    pub tag_name: String,
    /// The manifest the tag will point to.
    pub manifest_digest: String,
    /// The tag as it exists now, if it does (alive).
    pub existing: Option<Tag>,
    /// Every policy in scope: the repository's and the namespace's. The plugin gets them
    /// as a compiled `policy-set` its instance keeps.
    pub policies: Vec<Policy>,
    /// The version of the registry's policies that `policies` was read at. The registry
    /// refuses to commit a push decided at an older version (the push is decided again).
    pub policy_version: u64,
}

impl PushRequest {
    /// The request as the plugin gets it (the policies go as a set, the version stays here).
    pub(crate) fn for_plugin(&self) -> PluginPushRequest {
        PluginPushRequest {
            actor: self.actor.clone(),
            namespace: self.namespace.clone(),
            repository: self.repository.clone(),
            tag_name: self.tag_name.clone(),
            manifest_digest: self.manifest_digest.clone(),
            existing: self.existing.clone(),
        }
    }
}

/// A push decision, its policies resolved and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PushVerdict {
    /// Refused; the policies that keep the tag immutable.
    Deny(Vec<PolicyMatch>),
    /// Created or moved; immutable or not, and the policies that fired.
    Create {
        /// Whether the tag is immutable after the push.
        immutable: bool,
        /// The policies that fired.
        matched: Vec<PolicyMatch>,
    },
}
