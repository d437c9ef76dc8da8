//! Tamper-evident, exportable audit logs.
//!
//! An [`AuditChain`] links every [`AuditEntry`](crate::entry::AuditEntry) to
//! the one before it by a SHA-256 hash, so [`verify`] finds the first entry
//! that was edited, removed, inserted or moved, unless whoever changed it also
//! recomputed every hash after it. A [`Checkpoint`], a keyed MAC of the chain
//! head kept apart from the log, makes such a rewrite of the entries it covers
//! detectable too ([`verify_against`]). [`export`] writes a chain as
//! JSON Lines in the engine's own shape, in Quay's log shape, or as
//! CloudEvents 1.0. [`tag_history`] answers "why is this tag immutable?".

mod chain;
mod checkpoint;
mod export;
mod history;
mod import;
#[cfg(test)]
mod tests;

pub use chain::{
    AuditChain, ChainBreak, ChainedEntry, GENESIS_HASH, canonical_json, entry_hash, verify,
};
pub use checkpoint::{
    CHECKPOINT_LABEL, Checkpoint, CheckpointBreak, CheckpointKey, CheckpointKeyError, MAC_PREFIX,
    MIN_KEY_LEN, VerifiedUpTo, verify_against,
};
pub use export::{
    CLOUDEVENT_REQUIRED, ExportFormat, QUAY_FIELDS, UnknownExportFormat, cloud_event, export,
    missing_fields, quay_log_line, to_cloudevents_jsonl, to_quay_jsonl,
};
pub use history::{TagEvent, TagHistory, tag_history};
pub use import::{ImportError, read_jsonl};

use serde::Serialize;
use serde_json::Value;

/// Why serializing this module's values cannot fail.
///
/// Only [`ChainedEntry`] and the chain's private link record are passed to
/// [`to_value`] and [`to_line`]. Their `Serialize` impls are derived over
/// strings, integers, options and string-keyed `serde_json` maps; serde_json
/// fails only on a non-string map key or an error raised by a custom
/// `Serialize` impl, and neither occurs in these types.
const INFALLIBLE: &str = "audit values are strings, integers, options and string-keyed maps";

/// Serializes one of this module's records to a JSON value (see [`INFALLIBLE`]).
fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect(INFALLIBLE)
}

/// Serializes one of this module's records to compact JSON, fields in declaration order.
fn to_line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect(INFALLIBLE)
}
