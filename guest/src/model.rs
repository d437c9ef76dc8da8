//! Plain Rust mirrors of the contract's types, so the policy logic builds and
//! tests natively; `glue` converts them to and from the generated bindings.

use serde::Serialize;

/// Where a policy applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every repository of the namespace.
    Namespace,
    /// One repository.
    Repository,
}

impl Scope {
    /// The name used in record metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Namespace => "namespace",
            Scope::Repository => "repository",
        }
    }
}

/// An immutability policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Stable identifier.
    pub uuid: String,
    /// Namespace or repository level.
    pub scope: Scope,
    /// Owning namespace.
    pub namespace: String,
    /// Repository, for repository policies.
    pub repository: Option<String>,
    /// Pattern in the plugin's dialect (a regular expression by default), full match.
    pub tag_pattern: String,
    /// Polarity: fire on match (true) or on non-match (false).
    pub tag_pattern_matches: bool,
}

/// A tag as the registry stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    /// Registry id, ascending with creation.
    pub id: u64,
    /// Namespace.
    pub namespace: String,
    /// Repository.
    pub repository: String,
    /// Tag name.
    pub name: String,
    /// Manifest digest the tag points to.
    pub manifest_digest: String,
    /// Current immutability.
    pub immutable: bool,
}

/// Audit record kinds (Quay log kind names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// `tag_made_immutable_by_policy`.
    TagMadeImmutableByPolicy,
    /// `tags_made_immutable_by_policy`.
    TagsMadeImmutableByPolicy,
    /// `create_immutability_policy`.
    CreateImmutabilityPolicy,
    /// `update_immutability_policy`.
    UpdateImmutabilityPolicy,
    /// `delete_immutability_policy`.
    DeleteImmutabilityPolicy,
    /// `change_tag_immutability`.
    ChangeTagImmutability,
    /// `tag_immutability_denied`.
    TagImmutabilityDenied,
}

/// An audit record as the plugin stages it.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    /// What happened.
    pub kind: RecordKind,
    /// Namespace.
    pub namespace: String,
    /// Repository, when the record concerns one.
    pub repository: Option<String>,
    /// Tag, when the record concerns exactly one.
    pub tag: Option<String>,
    /// Kind-specific metadata, serialized once as one JSON object (Quay's `metadata_json`).
    pub metadata_json: String,
}

impl AuditRecord {
    /// The metadata parsed back into a value, for inspection.
    pub fn metadata(&self) -> serde_json::Value {
        serde_json::from_str(&self.metadata_json).unwrap_or(serde_json::Value::Null)
    }
}

/// A policy that fires for a tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyMatch {
    /// The policy.
    pub policy: Policy,
    /// Whether its pattern matched the tag.
    pub pattern_matched: bool,
    /// Its pattern ran out of matching budget and counted as not matched.
    pub budget_exceeded: bool,
}

/// Why a candidate policy is invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// `tag_pattern` is empty after trimming.
    EmptyPattern,
    /// `tag_pattern` is longer than 256 characters; carries the length.
    PatternTooLong(u32),
    /// `tag_pattern` does not compile.
    InvalidPattern(String),
    /// A construct the dialect refuses (look-around, a backreference, or one Quay
    /// reads differently, with what it means there) at a character position.
    UnsupportedConstruct {
        /// `look-around`, `backreference`, or the construct and its meaning in Quay.
        construct: String,
        /// Zero-based character offset in the trimmed pattern.
        position: u32,
    },
    /// Duplicate of the policy with this uuid.
    DuplicatePattern(String),
    /// Scope and repository disagree.
    ScopeMismatch(String),
    /// A required field is empty.
    MissingField(String),
}

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The policy argument is invalid.
    InvalidPolicy(PolicyError),
    /// A tag name breaks the OCI rule.
    InvalidTagName(String),
    /// Another argument is invalid: field and reason.
    InvalidArgument(String),
    /// A tag-store import failed.
    Store(String),
    /// An audit-log import failed.
    Audit(String),
}

/// A push to decide.
#[derive(Clone, Debug)]
pub struct PushRequest {
    /// Namespace.
    pub namespace: String,
    /// Repository.
    pub repository: String,
    /// Tag being pushed.
    pub tag_name: String,
    /// Target manifest.
    pub manifest_digest: String,
    /// The alive tag with that name, if any.
    pub existing: Option<Tag>,
    /// Policies in scope.
    pub policies: Vec<Policy>,
}

/// The decision on a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushDecision {
    /// Refused; the policies that keep the existing tag immutable.
    Deny(Vec<PolicyMatch>),
    /// Allowed; immutable when `matched` is not empty.
    Create {
        /// Whether the tag is created immutable.
        immutable: bool,
        /// Firing policies.
        matched: Vec<PolicyMatch>,
    },
}

/// Delete and expiry operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOperation {
    /// Delete a tag.
    DeleteTag,
    /// Delete a manifest by digest.
    DeleteManifest,
    /// Set an expiration.
    SetExpiration,
}

impl DeleteOperation {
    /// The name used in record metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteOperation::DeleteTag => "delete_tag",
            DeleteOperation::DeleteManifest => "delete_manifest",
            DeleteOperation::SetExpiration => "set_expiration",
        }
    }
}

/// A delete or expiry to decide.
#[derive(Clone, Debug)]
pub struct DeleteRequest {
    /// Which operation.
    pub operation: DeleteOperation,
    /// The tags it affects.
    pub tags: Vec<Tag>,
    /// Policies in scope.
    pub policies: Vec<Policy>,
}

/// The decision on a delete or expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteDecision {
    /// Go ahead.
    Allow,
    /// Refused because of these immutable tag ids.
    Deny(Vec<u64>),
}

/// Why a retroactive run happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunTrigger {
    /// Policy created.
    PolicyCreated,
    /// Policy updated.
    PolicyUpdated,
    /// Stored policy applied again.
    Reapplied,
}

impl RunTrigger {
    /// The name used in record metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::PolicyCreated => "policy_created",
            RunTrigger::PolicyUpdated => "policy_updated",
            RunTrigger::Reapplied => "reapplied",
        }
    }
}

/// How finely a retroactive run records the tags it marks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Granularity {
    /// One record per tag.
    #[default]
    PerTag,
    /// One record per batch listing its tags.
    PerBatch,
}

impl Granularity {
    /// The name used in record metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::PerTag => "per_tag",
            Granularity::PerBatch => "per_batch",
        }
    }
}

/// Paging options of a retroactive run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Host-chosen run id.
    pub run_id: String,
    /// Tags per batch.
    pub batch_size: u32,
    /// Per-tag or per-batch records.
    pub granularity: Granularity,
}

/// What a retroactive run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// Run id.
    pub run_id: String,
    /// Tags that changed.
    pub count: u64,
    /// First changed tag names (at most 10).
    pub sample_tags: Vec<String>,
    /// Scan batches processed.
    pub batches: u32,
}

/// A dry run's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preview {
    /// Tags that would change.
    pub count: u64,
    /// A sample of them.
    pub sample: Vec<Tag>,
}

/// A `tag-store.scan` request; its scope is the policy of the call, which the host knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanRequest {
    /// Exclusive lower id bound.
    pub after_id: u64,
    /// Page size.
    pub limit: u32,
}

/// One tag to mark, with its record.
#[derive(Clone, Debug, PartialEq)]
pub struct TagChange {
    /// Tag id.
    pub tag_id: u64,
    /// Its record.
    pub record: AuditRecord,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyError::EmptyPattern => write!(f, "tag-pattern: must not be empty"),
            PolicyError::PatternTooLong(n) => {
                write!(f, "tag-pattern: {n} characters, at most 256 allowed")
            }
            PolicyError::InvalidPattern(msg) => write!(f, "tag-pattern: does not compile: {msg}"),
            PolicyError::UnsupportedConstruct {
                construct,
                position,
            } => write!(
                f,
                "tag-pattern: {construct} at position {position} is not supported"
            ),
            PolicyError::DuplicatePattern(uuid) => {
                write!(f, "tag-pattern: duplicates policy {uuid} in the same scope")
            }
            PolicyError::ScopeMismatch(msg) => write!(f, "scope: {msg}"),
            PolicyError::MissingField(field) => write!(f, "{field}: must not be empty"),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidPolicy(e) => write!(f, "invalid policy: {e}"),
            Error::InvalidTagName(msg) => write!(f, "invalid {msg}"),
            Error::InvalidArgument(msg) => write!(f, "invalid argument: {msg}"),
            Error::Store(msg) => write!(f, "tag store failed: {msg}"),
            Error::Audit(msg) => write!(f, "audit log failed: {msg}"),
        }
    }
}
