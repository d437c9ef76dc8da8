//! Host bindings generated from `wit/` for the `tag-policy` world.

wasmtime::component::bindgen!({
    world: "tag-policy",
    path: "../wit",
    imports: { default: trappable },
    additional_derives: [PartialEq, Eq],
});

pub use exports::tagguard::policy::policy_engine;
pub use tagguard::policy::{audit_log, tag_store, types};

use types::{Error, PolicyError, RecordKind, Scope};

impl RecordKind {
    /// The Quay log kind name of this record kind.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::TagMadeImmutableByPolicy => "tag_made_immutable_by_policy",
            RecordKind::TagsMadeImmutableByPolicy => "tags_made_immutable_by_policy",
            RecordKind::CreateImmutabilityPolicy => "create_immutability_policy",
            RecordKind::UpdateImmutabilityPolicy => "update_immutability_policy",
            RecordKind::DeleteImmutabilityPolicy => "delete_immutability_policy",
            RecordKind::ChangeTagImmutability => "change_tag_immutability",
            RecordKind::TagImmutabilityDenied => "tag_immutability_denied",
        }
    }
}

impl Scope {
    /// `namespace` or `repository`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Namespace => "namespace",
            Scope::Repository => "repository",
        }
    }
}

impl PolicyError {
    /// A sentence that names the offending field and the reason.
    pub fn message(&self) -> String {
        match self {
            PolicyError::EmptyPattern => "tag-pattern: must not be empty".into(),
            PolicyError::PatternTooLong(n) => {
                format!("tag-pattern: {n} characters, at most 256 allowed")
            }
            PolicyError::InvalidPattern(msg) => format!("tag-pattern: does not compile: {msg}"),
            PolicyError::UnsupportedConstruct(c) => format!(
                "tag-pattern: {} at position {} is not supported",
                c.construct, c.position
            ),
            PolicyError::DuplicatePattern(uuid) => {
                format!("tag-pattern: duplicates policy {uuid} in the same scope")
            }
            PolicyError::ScopeMismatch(msg) => format!("scope: {msg}"),
            PolicyError::MissingField(field) => format!("{field}: must not be empty"),
        }
    }
}

impl Error {
    /// A sentence that names the offending field and the reason.
    pub fn message(&self) -> String {
        match self {
            Error::InvalidPolicy(e) => format!("invalid policy: {}", e.message()),
            Error::InvalidTagName(msg) => format!("invalid {msg}"),
            Error::InvalidArgument(msg) => format!("invalid argument: {msg}"),
            Error::Store(msg) => format!("tag store failed: {msg}"),
            Error::Audit(msg) => format!("audit log failed: {msg}"),
        }
    }
}
