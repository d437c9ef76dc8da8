//! A delete or expiry as the registry asks for it. The engine derives both the
//! plugin's request and the state change from it, so the change committed is
//! always the one that was decided.

use crate::bindings::policy_engine::{DeleteOperation, DeleteRequest};
use crate::bindings::types::{Actor, Policy, Tag};
use crate::registry::Change;

/// What a removal does to its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemovalAction {
    /// Delete the tags.
    DeleteTags,
    /// Delete the manifest the tags point to, and with it every tag on it.
    DeleteManifest,
    /// Set an expiration time on the tags.
    SetExpiration {
        /// Expiry as the registry expresses it (for example a UTC time stamp).
        expires_at: String,
    },
}

/// A request to delete or expire tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// Who asks.
    pub actor: Actor,
    /// The alive tags it removes or expires: for a manifest delete, every alive tag on
    /// the manifest, which must not be empty.
    pub tags: Vec<Tag>,
    /// Every policy in scope of the tags' repository.
    pub policies: Vec<Policy>,
    /// What it does.
    pub action: RemovalAction,
}

impl Removal {
    /// The request the plugin decides (the policies go to it as a set).
    pub(crate) fn request(&self) -> DeleteRequest {
        let operation = match self.action {
            RemovalAction::DeleteTags => DeleteOperation::DeleteTag,
            RemovalAction::DeleteManifest => DeleteOperation::DeleteManifest,
            RemovalAction::SetExpiration { .. } => DeleteOperation::SetExpiration,
        };
        DeleteRequest {
            actor: self.actor.clone(),
            operation,
            tags: self.tags.clone(),
        }
    }

    /// The change the registry commits when the plugin allows it.
    pub(crate) fn change(&self) -> Change {
        let ids = self.tags.iter().map(|t| t.id).collect();
        match (&self.action, self.tags.first()) {
            (RemovalAction::DeleteManifest, Some(first)) => Change::DeleteManifest {
                namespace: first.namespace.clone(),
                repository: first.repository.clone(),
                digest: first.manifest_digest.clone(),
                tag_ids: ids,
            },
            (RemovalAction::SetExpiration { expires_at }, _) => Change::SetExpiration {
                tag_ids: ids,
                expires_at: expires_at.clone(),
            },
            _ => Change::DeleteTags(ids),
        }
    }
}
