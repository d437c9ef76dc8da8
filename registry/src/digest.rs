//! Content digests: `sha256:` and 64 lowercase hex digits, the only algorithm
//! this registry stores.

use sha2::{Digest as _, Sha256};
use std::fmt;

/// A checked `sha256:` digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Digest(String);

/// `sha256:` and the lowercase hex of a finished SHA-256.
pub fn sha256_of_hash(hash: &[u8]) -> String {
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl Digest {
    /// Parses a digest; says why it is not one this registry accepts.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(format!("{text:?} is not a digest (algorithm:hex)"));
        };
        if algorithm != "sha256" {
            return Err(format!(
                "algorithm {algorithm:?} is not supported (sha256 only)"
            ));
        }
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(format!(
                "{text:?}: a sha256 digest is 64 lowercase hex digits"
            ));
        }
        Ok(Digest(text.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(sha256_of_hash(&Sha256::digest(bytes)))
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The whole digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha256_with_64_lowercase_hex_digits_parses() {
        let d = Digest::of(b"hi");
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert_eq!(d.hex().len(), 64);
        assert!(Digest::parse("sha512:00").is_err());
        assert!(Digest::parse(&d.as_str().to_uppercase()).is_err());
        assert!(Digest::parse("sha256:../../etc/passwd").is_err());
        assert!(Digest::parse("nodigest").is_err());
    }
}
