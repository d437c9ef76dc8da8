//! What the REST API and the console both show and do outside the tag path: the
//! chain's verification, a tag's history, a policy preview, and plugin swaps.
//! One function each, called by both.

use crate::app::App;
use crate::errors::ApiError;
use crate::oci::route::Name;
use crate::policies::{self, Owner};
use crate::store::StorageError;
use tagguard_engine::audit::{CheckpointBreak, TagHistory, tag_history, verify_against};
use tagguard_engine::{Policy, PreviewReport, Tag};

/// The audit chain's verification status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Every entry verified.
    Verified {
        /// Entries in the log.
        entries: usize,
        /// The last entry's seq.
        last_seq: u64,
        /// The seq the latest valid checkpoint covers, if any.
        covered_through: Option<u64>,
        /// Entries after that checkpoint.
        uncovered: u64,
    },
    /// The chain is broken.
    Broken {
        /// Entries read, when the log read back.
        entries: Option<usize>,
        /// Why, in words.
        reason: String,
        /// The seq of the first broken entry, when one is to blame.
        first_broken: Option<u64>,
    },
}

/// Verifies the whole audit log against its chain and the latest checkpoint.
pub fn verification(app: &App) -> Result<Verification, ApiError> {
    let entries = match app.store.full_log() {
        Ok(e) => e,
        Err(StorageError::EditedLogRow { seq, reason }) => {
            return Ok(Verification::Broken {
                entries: None,
                reason: format!("log entry {seq}: {reason}"),
                first_broken: Some(seq),
            });
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let checkpoints = app.store.checkpoints().map_err(ApiError::internal)?;
    let key = crate::serve::checkpoint_key(&app.data).map_err(ApiError::internal)?;
    Ok(match verify_against(&entries, &key, &checkpoints) {
        Ok(up_to) => Verification::Verified {
            entries: entries.len(),
            last_seq: up_to.last_seq,
            covered_through: up_to.covered_through,
            uncovered: up_to.uncovered,
        },
        Err(e) => Verification::Broken {
            entries: Some(entries.len()),
            reason: e.to_string(),
            first_broken: match &e {
                CheckpointBreak::Chain(c) => Some(c.position() as u64 + 1),
                _ => None,
            },
        },
    })
}

/// A tag's history with its current state and the policies that fire on its name.
#[derive(Clone, Debug)]
pub struct TagReport {
    /// The events, and the one that made it immutable.
    pub history: TagHistory,
    /// The alive tag, if there is one.
    pub current: Option<Tag>,
    /// The policies in scope that fire on the tag's name.
    pub firing: Vec<Policy>,
}

/// The history of `name:tag`, read from the audit log.
pub fn tag_report(app: &App, name: &Name, tag: &str) -> Result<TagReport, ApiError> {
    let log = app
        .store
        .tag_log(&name.namespace, &name.repository, tag)
        .map_err(ApiError::internal)?;
    let history = tag_history(&log, &name.namespace, &name.repository, tag);
    let current = app
        .store
        .alive_tag(&name.namespace, &name.repository, tag)
        .map_err(ApiError::internal)?;
    let (in_scope, _) = app
        .store
        .policies_in_scope(&name.namespace, Some(&name.repository))
        .map_err(ApiError::internal)?;
    let firing = app
        .guard
        .explain(tag, &in_scope)
        .map_err(policies::engine_error)?
        .into_iter()
        .map(|m| m.policy)
        .collect();
    Ok(TagReport {
        history,
        current,
        firing,
    })
}

/// How many mutable tags a candidate pattern would make immutable, with a sample.
pub fn preview(
    app: &App,
    owner: &Owner,
    pattern: &str,
    matches: bool,
    sample_limit: u32,
) -> Result<PreviewReport, ApiError> {
    let candidate = owner.candidate("preview".into(), pattern, matches);
    app.guard
        .preview(&candidate, sample_limit.min(100))
        .map_err(policies::engine_error)
}
