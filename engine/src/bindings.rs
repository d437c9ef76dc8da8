//! Host bindings generated from `wit/` for the `tag-policy` world.

wasmtime::component::bindgen!({
    world: "tag-policy",
    path: "../wit",
    imports: { default: trappable },
    additional_derives: [PartialEq, Eq],
});

pub use exports::tagguard::policy::policy_engine;
pub use tagguard::policy::{audit_log, tag_store, types};

use std::fmt::{self, Write};
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
        let mut out = String::new();
        let _ = self.write_message(&mut out);
        out
    }

    fn write_message(&self, f: &mut dyn Write) -> fmt::Result {
        match self {
            PolicyError::EmptyPattern => write!(f, "tag-pattern: must not be empty"),
            PolicyError::PatternTooLong(n) => {
                write!(f, "tag-pattern: {n} characters, at most 256 allowed")
            }
            PolicyError::InvalidPattern(msg) => write!(f, "tag-pattern: does not compile: {msg}"),
            PolicyError::UnsupportedConstruct(c) => write!(
                f,
                "tag-pattern: {} at position {} is not supported (linear-time regex dialect)",
                c.construct, c.position
            ),
            PolicyError::DuplicatePattern(uuid) => {
                write!(f, "tag-pattern: duplicates policy {uuid} in the same scope")
            }
            PolicyError::ScopeMismatch(msg) => write!(f, "scope: {msg}"),
            PolicyError::MissingField(field) => write!(f, "{field}: must not be empty"),
        }
    }
}

impl Error {
    /// A sentence that names the offending field and the reason.
    pub fn message(&self) -> String {
        let mut out = String::new();
        let _ = self.write_message(&mut out);
        out
    }

    fn write_message(&self, f: &mut dyn Write) -> fmt::Result {
        match self {
            Error::InvalidPolicy(e) => write!(f, "invalid policy: {}", e.message()),
            Error::InvalidTagName(msg) => write!(f, "invalid {msg}"),
            Error::InvalidArgument(msg) => write!(f, "invalid argument: {msg}"),
            Error::Store(msg) => write!(f, "tag store failed: {msg}"),
            Error::Audit(msg) => write!(f, "audit log failed: {msg}"),
        }
    }
}
