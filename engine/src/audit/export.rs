//! Writing a chain out: the engine's own JSON Lines, Quay's log shape and
//! CloudEvents 1.0, plus a check that exported objects carry required fields.

use super::chain::ChainedEntry;
use crate::entry::AuditEntry;
use serde_json::{Map, Value};
use std::str::FromStr;

/// The fields of every Quay log line; `repository` and `ip` are null when unknown.
pub const QUAY_FIELDS: [&str; 7] = [
    "kind",
    "account",
    "performer",
    "repository",
    "ip",
    "metadata_json",
    "datetime",
];

/// The attributes CloudEvents 1.0 requires of every event.
pub const CLOUDEVENT_REQUIRED: [&str; 4] = ["id", "source", "specversion", "type"];

/// The `type` of every exported event is this prefix followed by the entry kind.
const EVENT_TYPE_PREFIX: &str = "io.tagguard.audit.";

/// A JSON object from its fields.
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// One entry as a Quay log line (see [`QUAY_FIELDS`]).
///
/// `metadata_json` is the entry's metadata serialized as a string, with the
/// host's fields merged in: `tag` (only when the metadata has none),
/// `performer_kind`, `request_id` (when known), `plugin_name`,
/// `plugin_version`, `plugin_digest`, `seq`, `hash` and `prev_hash`. Host
/// fields replace metadata fields of the same name.
pub fn quay_log_line(e: &ChainedEntry) -> Value {
    let entry = &e.entry;
    object([
        ("kind", entry.kind.into()),
        ("account", entry.namespace.as_str().into()),
        ("performer", entry.performer.name.as_str().into()),
        ("repository", entry.repository.as_deref().into()),
        ("ip", entry.performer.ip.as_deref().into()),
        (
            "metadata_json",
            Value::Object(quay_metadata(e)).to_string().into(),
        ),
        ("datetime", entry.time.as_str().into()),
    ])
}

/// The entry's metadata with the host's fields merged in, for `metadata_json`.
fn quay_metadata(e: &ChainedEntry) -> Map<String, Value> {
    let entry = &e.entry;
    let mut meta = entry.metadata.clone();
    if let Some(tag) = &entry.tag {
        meta.entry("tag").or_insert_with(|| tag.as_str().into());
    }
    if let Some(id) = &entry.performer.request_id {
        meta.insert("request_id".into(), id.as_str().into());
    }
    let host: [(&str, Value); 7] = [
        ("performer_kind", entry.performer.kind.into()),
        ("plugin_name", entry.plugin.name.as_str().into()),
        ("plugin_version", entry.plugin.version.as_str().into()),
        ("plugin_digest", entry.plugin.digest.as_str().into()),
        ("seq", e.seq.into()),
        ("hash", e.hash.as_str().into()),
        ("prev_hash", e.prev_hash.as_str().into()),
    ];
    meta.extend(host.map(|(k, v)| (k.to_owned(), v)));
    meta
}

/// The entries as Quay log lines, one compact JSON object per `\n`-terminated line.
pub fn to_quay_jsonl(entries: &[ChainedEntry]) -> String {
    json_lines(entries, |e| quay_log_line(e).to_string())
}

/// One entry as a CloudEvents 1.0 event from `source`, a URI-reference.
///
/// `id` is the entry hash, `type` is `io.tagguard.audit.<kind>`, `subject`
/// names the tag, repository or namespace, and `data` is the whole
/// [`ChainedEntry`].
pub fn cloud_event(e: &ChainedEntry, source: &str) -> Value {
    object([
        ("specversion", "1.0".into()),
        ("id", e.hash.as_str().into()),
        ("source", source.into()),
        (
            "type",
            format!("{EVENT_TYPE_PREFIX}{}", e.entry.kind).into(),
        ),
        ("time", e.entry.time.as_str().into()),
        ("subject", subject(&e.entry).into()),
        ("datacontenttype", "application/json".into()),
        ("data", super::to_value(e)),
    ])
}

/// `namespace/repository:tag`, `namespace/repository` or `namespace`.
fn subject(entry: &AuditEntry) -> String {
    match (&entry.repository, &entry.tag) {
        (Some(repo), Some(tag)) => format!("{}/{repo}:{tag}", entry.namespace),
        (Some(repo), None) => format!("{}/{repo}", entry.namespace),
        (None, _) => entry.namespace.clone(),
    }
}

/// The entries as CloudEvents from `source`, one compact event per `\n`-terminated line.
pub fn to_cloudevents_jsonl(entries: &[ChainedEntry], source: &str) -> String {
    json_lines(entries, |e| cloud_event(e, source).to_string())
}

/// One `line(entry)` per entry, each terminated by `\n`.
fn json_lines(entries: &[ChainedEntry], line: impl Fn(&ChainedEntry) -> String) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&line(e));
        out.push('\n');
    }
    out
}

/// The `required` keys that `v` lacks or holds as null; all of them when `v` is no object.
pub fn missing_fields(v: &Value, required: &[&str]) -> Vec<String> {
    required
        .iter()
        .filter(|key| v.get(**key).is_none_or(Value::is_null))
        .map(|key| (*key).to_owned())
        .collect()
}

/// The shapes a chain can be exported in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportFormat {
    /// One serialized [`ChainedEntry`] per line.
    Json,
    /// One Quay log line per entry (see [`quay_log_line`]).
    Quay,
    /// One CloudEvents 1.0 event per entry (see [`cloud_event`]).
    CloudEvents,
}

/// An export format name other than `json`, `quay` or `cloudevents`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown export format `{name}`: expected one of json, quay, cloudevents")]
pub struct UnknownExportFormat {
    /// The name given.
    pub name: String,
}

impl FromStr for ExportFormat {
    type Err = UnknownExportFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(ExportFormat::Json),
            "quay" => Ok(ExportFormat::Quay),
            "cloudevents" => Ok(ExportFormat::CloudEvents),
            _ => Err(UnknownExportFormat { name: s.to_owned() }),
        }
    }
}

/// The entries in `format`, one `\n`-terminated line each; `source` is used by CloudEvents.
pub fn export(entries: &[ChainedEntry], format: ExportFormat, source: &str) -> String {
    match format {
        ExportFormat::Json => json_lines(entries, super::to_line),
        ExportFormat::Quay => to_quay_jsonl(entries),
        ExportFormat::CloudEvents => to_cloudevents_jsonl(entries, source),
    }
}
