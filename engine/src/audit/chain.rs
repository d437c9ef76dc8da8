//! The hash chain: every entry commits to its sequence number, to the hash of
//! the entry before it and to its own content.

use crate::entry::AuditEntry;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry of every chain.
pub const GENESIS_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// An audit entry with its place in the chain.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChainedEntry {
    /// Position in the chain, counted from 1 without gaps.
    pub seq: u64,
    /// Hash of the entry before this one, or [`GENESIS_HASH`] for the first.
    pub prev_hash: String,
    /// `sha256:` hash of this entry's canonical form (see [`canonical_json`]).
    pub hash: String,
    /// The audit entry itself.
    pub entry: AuditEntry,
}

/// What an entry's hash covers, with every object's fields declared in
/// lexicographic order so that serializing it directly yields the canonical form.
#[derive(Serialize)]
struct Link<'a> {
    entry: CanonicalEntry<'a>,
    prev_hash: &'a str,
    seq: u64,
}

/// An [`AuditEntry`] borrowed with its fields in lexicographic order.
#[derive(Serialize)]
struct CanonicalEntry<'a> {
    kind: &'a str,
    /// A `serde_json::Map`, whose keys are sorted at every depth (no `preserve_order`).
    metadata: &'a serde_json::Map<String, serde_json::Value>,
    namespace: &'a str,
    performer: CanonicalPerformer<'a>,
    plugin: CanonicalPlugin<'a>,
    repository: Option<&'a str>,
    tag: Option<&'a str>,
    time: &'a str,
}

/// The performer, fields in lexicographic order.
#[derive(Serialize)]
struct CanonicalPerformer<'a> {
    ip: Option<&'a str>,
    kind: &'a str,
    name: &'a str,
    request_id: Option<&'a str>,
}

/// The plugin stamp, fields in lexicographic order.
#[derive(Serialize)]
struct CanonicalPlugin<'a> {
    digest: &'a str,
    generation: u64,
    name: &'a str,
    version: &'a str,
}

fn link<'a>(seq: u64, prev_hash: &'a str, e: &'a AuditEntry) -> Link<'a> {
    Link {
        entry: CanonicalEntry {
            kind: e.kind,
            metadata: &e.metadata,
            namespace: &e.namespace,
            performer: CanonicalPerformer {
                ip: e.performer.ip.as_deref(),
                kind: e.performer.kind,
                name: &e.performer.name,
                request_id: e.performer.request_id.as_deref(),
            },
            plugin: CanonicalPlugin {
                digest: &e.plugin.digest,
                generation: e.plugin.generation,
                name: &e.plugin.name,
                version: &e.plugin.version,
            },
            repository: e.repository.as_deref(),
            tag: e.tag.as_deref(),
            time: &e.time,
        },
        prev_hash,
        seq,
    }
}

/// The canonical form hashed for an entry: `{"entry":..,"prev_hash":..,"seq":..}`.
///
/// The form is compact JSON (no whitespace) with the keys of every object,
/// nested ones included, in lexicographic order: the entry is serialized through
/// borrowed views whose fields are declared in that order, and its metadata is a
/// sorted `serde_json::Map`.
pub fn canonical_json(seq: u64, prev_hash: &str, entry: &AuditEntry) -> String {
    super::to_line(&link(seq, prev_hash, entry))
}

/// Feeds everything written into a SHA-256 hasher.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The `sha256:<hex>` hash of an entry's canonical form, streamed into the hasher.
pub fn entry_hash(seq: u64, prev_hash: &str, entry: &AuditEntry) -> String {
    let mut writer = HashWriter(Sha256::new());
    serde_json::to_writer(&mut writer, &link(seq, prev_hash, entry)).expect(super::INFALLIBLE);
    crate::hex::sha256_prefixed(&writer.0.finalize())
}

/// An append-only audit log whose entries are linked by hash.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditChain {
    entries: Vec<ChainedEntry>,
}

impl AuditChain {
    /// An empty chain; its head is [`GENESIS_HASH`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Links `entry` after the current head and returns it with its seq and hashes.
    pub fn append(&mut self, entry: AuditEntry) -> &ChainedEntry {
        let index = self.entries.len();
        let seq = index as u64 + 1;
        let prev_hash = self.head_hash().to_owned();
        let hash = entry_hash(seq, &prev_hash, &entry);
        self.entries.push(ChainedEntry {
            seq,
            prev_hash,
            hash,
            entry,
        });
        &self.entries[index]
    }

    /// The chained entries, oldest first.
    pub fn entries(&self) -> &[ChainedEntry] {
        &self.entries
    }

    /// Mutable access to the entries, so tests can simulate tampering.
    ///
    /// Anything changed through it is what [`verify`] exists to detect.
    pub fn entries_mut(&mut self) -> &mut Vec<ChainedEntry> {
        &mut self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the chain has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Hash of the newest entry, or [`GENESIS_HASH`] when the chain is empty.
    pub fn head_hash(&self) -> &str {
        self.entries
            .last()
            .map_or(GENESIS_HASH, |e| e.hash.as_str())
    }
}

/// The first place where a chain stops being consistent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainBreak {
    /// The entry's content no longer matches its stored hash.
    #[error(
        "entry at position {position} (seq {seq}) was edited: its hash does not match its content"
    )]
    HashMismatch {
        /// Zero-based index in the verified slice.
        position: usize,
        /// The entry's stored seq.
        seq: u64,
    },
    /// The entry's `prev_hash` is not the stored hash of the entry before it.
    #[error(
        "entry at position {position} (seq {seq}) is not linked to the entry before it: \
         its prev_hash differs from that entry's hash"
    )]
    PrevHashMismatch {
        /// Zero-based index in the verified slice.
        position: usize,
        /// The entry's stored seq.
        seq: u64,
    },
    /// The entry's seq is not its position plus one.
    #[error(
        "entry at position {position} has seq {found} where seq {expected} belongs: \
         an entry was deleted, inserted or moved"
    )]
    SequenceGap {
        /// Zero-based index in the verified slice.
        position: usize,
        /// The seq this position must carry.
        expected: u64,
        /// The seq the entry carries.
        found: u64,
    },
}

impl ChainBreak {
    /// Zero-based index in the verified slice of the first inconsistent entry.
    pub fn position(&self) -> usize {
        match self {
            ChainBreak::HashMismatch { position, .. }
            | ChainBreak::PrevHashMismatch { position, .. }
            | ChainBreak::SequenceGap { position, .. } => *position,
        }
    }
}

/// Checks a whole chain from its start and reports the first broken position.
///
/// At position `i` the entry must carry seq `i + 1`, then link to the stored
/// hash of entry `i - 1` ([`GENESIS_HASH`] at 0), then hash to its stored
/// hash; the first check that fails is reported. Changes at the very end
/// (dropping the last entries, rewriting and rehashing the last one, adding
/// well-formed ones) leave a consistent chain with a different head: compare
/// [`AuditChain::head_hash`] or the last hash with a copy kept elsewhere to
/// detect those. An edit followed by rehashing every later entry also passes:
/// [`verify_against`](super::verify_against) checks the chain against keyed
/// checkpoints of its head, which catch that up to the latest checkpoint.
pub fn verify(entries: &[ChainedEntry]) -> Result<(), ChainBreak> {
    let mut prev_hash = GENESIS_HASH;
    for (position, entry) in entries.iter().enumerate() {
        check_link(position, prev_hash, entry)?;
        prev_hash = &entry.hash;
    }
    Ok(())
}

/// Checks one entry's seq, link and hash, in that order.
fn check_link(position: usize, prev_hash: &str, e: &ChainedEntry) -> Result<(), ChainBreak> {
    let expected = position as u64 + 1;
    if e.seq != expected {
        return Err(ChainBreak::SequenceGap {
            position,
            expected,
            found: e.seq,
        });
    }
    if e.prev_hash != prev_hash {
        return Err(ChainBreak::PrevHashMismatch {
            position,
            seq: e.seq,
        });
    }
    if e.hash != entry_hash(e.seq, &e.prev_hash, &e.entry) {
        return Err(ChainBreak::HashMismatch {
            position,
            seq: e.seq,
        });
    }
    Ok(())
}
