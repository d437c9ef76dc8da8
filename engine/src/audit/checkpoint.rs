//! Keyed checkpoints of the chain head: tamper evidence that survives a rewrite.
//!
//! The hash chain alone is unkeyed: whoever can write the log can edit an
//! entry, recompute every hash after it, and [`verify`] passes again. A
//! [`Checkpoint`] is an HMAC-SHA256, under a [`CheckpointKey`] the log writer
//! cannot read, of the chain's head at one seq. As long as the checkpoints are
//! kept where the log writer cannot change them, [`verify_against`] detects a
//! rewrite or a truncation of any entry at or before the latest checkpoint.
//!
//! # What the MAC covers
//!
//! The MAC input is this byte string, with no separators other than the ones
//! shown:
//!
//! | bytes | content |
//! |---|---|
//! | 28 | [`CHECKPOINT_LABEL`], ASCII (`tagguard-audit-checkpoint-v1`) |
//! | 1 | `0x00` |
//! | 8 | `seq`, unsigned, big-endian |
//! | 8 | length in bytes of `head_hash`, unsigned, big-endian |
//! | n | `head_hash`, UTF-8 (normally `sha256:` and 64 lowercase hex digits) |
//!
//! The label separates these MACs from any other use of the key; the fixed
//! width of `seq` and the length prefix of `head_hash` make the encoding
//! injective. The MAC is written as [`MAC_PREFIX`] followed by the 64
//! lowercase hex digits of the 32-byte tag, the way the crate writes
//! `sha256:` hashes.

use super::chain::{AuditChain, ChainBreak, ChainedEntry, GENESIS_HASH, verify};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Domain-separation label at the start of every checkpoint's MAC input.
pub const CHECKPOINT_LABEL: &str = "tagguard-audit-checkpoint-v1";

/// Prefix of [`Checkpoint::mac`], before the lowercase hex of the tag.
pub const MAC_PREFIX: &str = "hmac-sha256:";

/// Shortest [`CheckpointKey`] accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// HMAC-SHA256, as implemented by the `hmac` crate.
type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// The secret key the registry signs checkpoints with; keep it unreadable to the log writer.
///
/// Only the keyed HMAC state is kept, not the key bytes, and `Debug` prints
/// neither.
#[derive(Clone)]
pub struct CheckpointKey {
    /// HMAC-SHA256 with the key already absorbed; cloned for every MAC.
    keyed: HmacSha256,
}

/// Why bytes were refused as a [`CheckpointKey`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointKeyError {
    /// The key has no bytes at all.
    #[error("checkpoint key is empty")]
    Empty,
    /// The key has fewer than [`MIN_KEY_LEN`] bytes.
    #[error("checkpoint key is {len} bytes long; at least {min} are required", min = MIN_KEY_LEN)]
    TooShort {
        /// Length of the refused key in bytes.
        len: usize,
    },
}

impl CheckpointKey {
    /// A key from its secret bytes; at least [`MIN_KEY_LEN`] of them (32 random bytes are advised).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointKeyError> {
        match bytes.len() {
            0 => Err(CheckpointKeyError::Empty),
            len if len < MIN_KEY_LEN => Err(CheckpointKeyError::TooShort { len }),
            _ => {
                let keyed =
                    HmacSha256::new_from_slice(bytes).expect("HMAC accepts keys of every length");
                Ok(Self { keyed })
            }
        }
    }

    /// Signs the claim "the entry at `seq` has hash `head_hash`".
    ///
    /// Seq 0 stands for the empty chain, whose head is [`GENESIS_HASH`].
    pub fn sign(&self, seq: u64, head_hash: &str) -> Checkpoint {
        let tag = self.mac(seq, head_hash).finalize().into_bytes();
        Checkpoint {
            seq,
            head_hash: head_hash.to_owned(),
            mac: format!("{MAC_PREFIX}{}", crate::hex::hex(&tag)),
        }
    }

    /// Whether `checkpoint.mac` is this key's MAC of its seq and head hash.
    ///
    /// The tag is compared in constant time by the `hmac` crate; a `mac` that
    /// is not [`MAC_PREFIX`] and 64 lowercase hex digits is refused.
    fn authenticates(&self, checkpoint: &Checkpoint) -> bool {
        decode_mac(&checkpoint.mac).is_some_and(|tag| {
            self.mac(checkpoint.seq, &checkpoint.head_hash)
                .verify_slice(&tag)
                .is_ok()
        })
    }

    /// The keyed HMAC state after absorbing the documented encoding of (seq, head_hash).
    fn mac(&self, seq: u64, head_hash: &str) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(CHECKPOINT_LABEL.as_bytes());
        mac.update(&[0]);
        mac.update(&seq.to_be_bytes());
        mac.update(&(head_hash.len() as u64).to_be_bytes());
        mac.update(head_hash.as_bytes());
        mac
    }
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointKey(<redacted>)")
    }
}

/// The 32-byte tag of a well-formed `hmac-sha256:<64 lowercase hex>` string.
fn decode_mac(mac: &str) -> Option<[u8; TAG_LEN]> {
    let hex = mac.strip_prefix(MAC_PREFIX)?.as_bytes();
    if hex.len() != TAG_LEN * 2 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut tag = [0; TAG_LEN];
    for (byte, pair) in tag.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(tag)
}

/// A keyed attestation that the chain's entry at `seq` had hash `head_hash`.
///
/// Store checkpoints apart from the log, where its writer cannot change or
/// delete them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Seq of the entry that was the chain's head when signed (0: the empty chain).
    pub seq: u64,
    /// That entry's `sha256:` hash.
    pub head_hash: String,
    /// [`MAC_PREFIX`] and the lowercase hex HMAC-SHA256 of the encoding in the module docs.
    pub mac: String,
}

impl AuditChain {
    /// A checkpoint of the current head signed with `key`; `None` for an empty chain.
    pub fn checkpoint(&self, key: &CheckpointKey) -> Option<Checkpoint> {
        self.entries().last().map(|e| key.sign(e.seq, &e.hash))
    }
}

/// How much of a log [`verify_against`] found consistent and covered by a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedUpTo {
    /// Seq of the newest entry (0 for an empty log).
    pub last_seq: u64,
    /// Seq of the latest checkpoint; entries up to it cannot be rewritten unseen.
    /// `None` when no checkpoint was given.
    pub covered_through: Option<u64>,
    /// Entries after the latest checkpoint: only hash-chained, not yet covered.
    pub uncovered: u64,
}

/// The first reason a log does not match its checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointBreak {
    /// The hash chain itself is broken, as [`verify`] reports.
    #[error("the hash chain is broken: {0}")]
    Chain(#[from] ChainBreak),
    /// A checkpoint's MAC is not the key's: forged, altered, or signed with another key.
    #[error(
        "checkpoint {index} (seq {seq}) has an invalid MAC: \
         it was forged, altered, or signed with another key"
    )]
    InvalidMac {
        /// Zero-based index in the checkpoint slice.
        index: usize,
        /// The seq the checkpoint claims.
        seq: u64,
    },
    /// A checkpoint's seq is not greater than the one before it.
    #[error(
        "checkpoint {index} has seq {seq}, not after the previous checkpoint's seq {previous}: \
         checkpoints are out of order or duplicated"
    )]
    OutOfOrder {
        /// Zero-based index in the checkpoint slice.
        index: usize,
        /// The checkpoint's seq.
        seq: u64,
        /// The seq of the checkpoint before it.
        previous: u64,
    },
    /// The log ends before a checkpoint's seq.
    #[error(
        "the log was truncated below checkpoint {index} (seq {seq}): its last entry has seq {last_seq}"
    )]
    MissingEntry {
        /// Zero-based index in the checkpoint slice.
        index: usize,
        /// The checkpoint's seq, which the log no longer reaches.
        seq: u64,
        /// Seq of the log's newest entry (0 for an empty log).
        last_seq: u64,
    },
    /// The entry at a checkpoint's seq has another hash than the one signed.
    #[error(
        "the entry at seq {seq} does not match checkpoint {index}: an entry at or before \
         seq {seq} was edited and the chain rewritten (or the checkpoint is another log's)"
    )]
    HeadMismatch {
        /// Zero-based index in the checkpoint slice.
        index: usize,
        /// The checkpoint's seq.
        seq: u64,
    },
}

/// Checks a whole log against its checkpoints and reports the first failure.
///
/// First the chain is checked with [`verify`]. Then each checkpoint, in the
/// order given: its MAC under `key` (compared in constant time), that its seq
/// is greater than the previous checkpoint's, that the log has an entry at
/// that seq, and that the entry's hash is the signed `head_hash`. Since every
/// entry's hash commits to all entries before it, a matching checkpoint
/// covers the whole log up to its seq.
///
/// An empty `checkpoints` slice checks the chain only; changes after the last
/// checkpoint, and the removal of checkpoints, cannot be seen here.
pub fn verify_against(
    entries: &[ChainedEntry],
    key: &CheckpointKey,
    checkpoints: &[Checkpoint],
) -> Result<VerifiedUpTo, CheckpointBreak> {
    verify(entries)?;
    // `verify` passed, so the entry at seq s is entries[s - 1].
    let last_seq = entries.len() as u64;
    let mut previous: Option<u64> = None;
    for (index, checkpoint) in checkpoints.iter().enumerate() {
        let seq = checkpoint.seq;
        if !key.authenticates(checkpoint) {
            return Err(CheckpointBreak::InvalidMac { index, seq });
        }
        if let Some(previous) = previous
            && seq <= previous
        {
            return Err(CheckpointBreak::OutOfOrder {
                index,
                seq,
                previous,
            });
        }
        let head = match seq.checked_sub(1) {
            None => GENESIS_HASH,
            Some(i) => usize::try_from(i)
                .ok()
                .and_then(|i| entries.get(i))
                .map(|e| e.hash.as_str())
                .ok_or(CheckpointBreak::MissingEntry {
                    index,
                    seq,
                    last_seq,
                })?,
        };
        if head != checkpoint.head_hash {
            return Err(CheckpointBreak::HeadMismatch { index, seq });
        }
        previous = Some(seq);
    }
    Ok(VerifiedUpTo {
        last_seq,
        covered_through: previous,
        uncovered: last_seq - previous.unwrap_or(0),
    })
}
