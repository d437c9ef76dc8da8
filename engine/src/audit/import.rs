//! Reading an exported log back: the engine's own JSON lines (`ExportFormat::Json`,
//! one chained entry per line), so `verify` can check a log that left the registry.

use crate::audit::ChainedEntry;
use crate::bindings::types::RecordKind;
use crate::entry::{AuditEntry, Performer, PluginStamp};
use crate::tagguard::PLUGIN_SWAPPED;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Why a line of an exported log could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ImportError {
    /// The line, counted from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn {
    seq: u64,
    prev_hash: String,
    hash: String,
    entry: EntryIn,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryIn {
    kind: String,
    namespace: String,
    repository: Option<String>,
    tag: Option<String>,
    performer: PerformerIn,
    time: String,
    metadata: Map<String, Value>,
    plugin: PluginStamp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PerformerIn {
    kind: String,
    name: String,
    ip: Option<String>,
    request_id: Option<String>,
}

/// Every kind an entry may have: the contract's record kinds and the host's swap record.
fn kinds() -> [&'static str; 8] {
    [
        RecordKind::TagMadeImmutableByPolicy.as_str(),
        RecordKind::TagsMadeImmutableByPolicy.as_str(),
        RecordKind::CreateImmutabilityPolicy.as_str(),
        RecordKind::UpdateImmutabilityPolicy.as_str(),
        RecordKind::DeleteImmutabilityPolicy.as_str(),
        RecordKind::ChangeTagImmutability.as_str(),
        RecordKind::TagImmutabilityDenied.as_str(),
        PLUGIN_SWAPPED,
    ]
}

const PERFORMER_KINDS: [&str; 4] = ["user", "robot", "token", "system"];

fn known(list: &[&'static str], value: &str, what: &str) -> Result<&'static str, String> {
    list.iter()
        .copied()
        .find(|k| *k == value)
        .ok_or_else(|| format!("unknown {what} {value:?}"))
}

fn entry(line: LineIn) -> Result<ChainedEntry, String> {
    let e = line.entry;
    let kind = known(&kinds(), &e.kind, "kind")?;
    let performer = Performer {
        kind: known(&PERFORMER_KINDS, &e.performer.kind, "performer kind")?,
        name: e.performer.name,
        ip: e.performer.ip,
        request_id: e.performer.request_id,
    };
    Ok(ChainedEntry {
        seq: line.seq,
        prev_hash: line.prev_hash,
        hash: line.hash,
        entry: AuditEntry {
            kind,
            namespace: e.namespace,
            repository: e.repository,
            tag: e.tag,
            performer,
            time: e.time,
            metadata: e.metadata,
            plugin: e.plugin,
        },
    })
}

/// Reads a log exported as the engine's JSON lines; blank lines are skipped.
pub fn read_jsonl(text: &str) -> Result<Vec<ChainedEntry>, ImportError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<LineIn>(l)
                .map_err(|e| e.to_string())
                .and_then(entry)
                .map_err(|reason| ImportError {
                    line: i + 1,
                    reason,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditChain, ExportFormat, export, verify};

    fn chain() -> AuditChain {
        let mut chain = AuditChain::new();
        for (i, kind) in [
            RecordKind::CreateImmutabilityPolicy,
            RecordKind::TagMadeImmutableByPolicy,
        ]
        .into_iter()
        .enumerate()
        {
            let mut metadata = Map::new();
            metadata.insert("n".into(), i.into());
            chain.append(AuditEntry {
                kind: kind.as_str(),
                namespace: "org".into(),
                repository: Some("app".into()),
                tag: None,
                performer: Performer {
                    kind: "user",
                    name: "alice".into(),
                    ip: None,
                    request_id: None,
                },
                time: "2026-11-27T00:00:00Z".into(),
                metadata,
                plugin: PluginStamp {
                    name: "p".into(),
                    version: "1".into(),
                    digest: "sha256:00".into(),
                    generation: 1,
                },
            });
        }
        chain
    }

    #[test]
    fn an_exported_log_reads_back_entry_for_entry_and_verifies() {
        let chain = chain();
        let text = export(chain.entries(), ExportFormat::Json, "/test");
        let read = read_jsonl(&text).unwrap();
        assert_eq!(read, chain.entries());
        verify(&read).unwrap();
    }

    #[test]
    fn a_malformed_line_is_named_by_its_number() {
        let text = export(chain().entries(), ExportFormat::Json, "/test");
        let broken = text.replacen("\"kind\":\"user\"", "\"kind\":\"wizard\"", 1);
        let err = read_jsonl(&broken).unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.reason.contains("wizard"), "{err}");
        assert_eq!(read_jsonl("{}\n").unwrap_err().line, 1);
    }
}
