//! Lowercase hex for digests: one encoder for plugin digests, audit hashes and
//! cache keys.

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// `sha256:` followed by the lowercase hex of a SHA-256 digest.
pub(crate) fn sha256_prefixed(digest: &[u8]) -> String {
    format!("sha256:{}", hex(digest))
}
