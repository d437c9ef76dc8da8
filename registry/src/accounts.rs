//! Accounts and credentials: the tokens file, the admin token made on first
//! start, and authentication by HTTP Basic or Bearer.

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use tagguard_engine::{Actor, ActorKind};

/// Why the accounts could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountsError {
    /// The tokens file could not be read.
    #[error("tokens file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The tokens file is not valid.
    #[error("tokens file {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The admin token file in the data directory could not be written or read.
    #[error("admin token {path}: {source}")]
    AdminToken {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What kind of principal an account is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    /// A human user.
    User,
    /// A robot account.
    Robot,
    /// An application token.
    Token,
}

/// An authenticated account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Its name, the performer on every record.
    pub name: String,
    /// Its kind.
    pub kind: AccountKind,
    /// Whether it may manage policies, clear immutability and swap plugins.
    pub admin: bool,
}

impl Account {
    /// The engine's actor for a request by this account.
    pub fn actor(&self, ip: Option<String>, request_id: Option<String>) -> Actor {
        Actor {
            kind: match self.kind {
                AccountKind::User => ActorKind::User,
                AccountKind::Robot => ActorKind::Robot,
                AccountKind::Token => ActorKind::Token,
            },
            name: Some(self.name.clone()),
            ip,
            request_id,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    account: Vec<AccountEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountEntry {
    name: String,
    secret: String,
    kind: AccountKind,
    #[serde(default)]
    admin: bool,
}

/// The accounts, keyed by the SHA-256 of their secret (secrets are not kept).
#[derive(Debug, Default)]
pub struct Accounts {
    by_secret: HashMap<[u8; 32], Account>,
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A fresh random secret (32 bytes of the OS's randomness, hex).
pub fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

impl Accounts {
    /// Reads a tokens file.
    pub fn from_file(path: &Path) -> Result<Self, AccountsError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AccountsError::Read {
            path: shown.clone(),
            source,
        })?;
        let invalid = |reason: String| AccountsError::Invalid {
            path: shown.clone(),
            reason,
        };
        let file: TokensFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if file.account.is_empty() {
            return Err(invalid(
                "account: at least one [[account]] is needed".into(),
            ));
        }
        let mut accounts = Accounts::default();
        for (i, a) in file.account.into_iter().enumerate() {
            if a.name.trim().is_empty() {
                return Err(invalid(format!("account[{i}].name: must not be empty")));
            }
            if a.secret.len() < 6 {
                return Err(invalid(format!(
                    "account[{i}].secret: at least 6 characters"
                )));
            }
            if a.name == "system" {
                return Err(invalid(format!(
                    "account[{i}].name: \"system\" is the registry's own performer"
                )));
            }
            let account = Account {
                name: a.name,
                kind: a.kind,
                admin: a.admin,
            };
            if accounts
                .by_secret
                .insert(hash(&a.secret), account)
                .is_some()
            {
                return Err(invalid(format!(
                    "account[{i}].secret: the same secret is used by two accounts"
                )));
            }
        }
        Ok(accounts)
    }

    /// The built-in `admin` account of a data directory without a tokens file. Its
    /// secret is made on first start and printed once; only its hash is stored.
    /// Returns the accounts and the new secret, if one was made.
    pub fn admin_in(data: &Path) -> Result<(Self, Option<String>), AccountsError> {
        let path = data.join("admin-token.sha256");
        let err = |source| AccountsError::AdminToken {
            path: path.display().to_string(),
            source,
        };
        let (digest, fresh) = match std::fs::read_to_string(&path) {
            Ok(hex) => (hex.trim().to_string(), None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = random_hex(24).map_err(err)?;
                let hex: String = hash(&secret).iter().map(|b| format!("{b:02x}")).collect();
                std::fs::write(&path, &hex).map_err(err)?;
                (hex, Some(secret))
            }
            Err(e) => return Err(err(e)),
        };
        let mut key = [0u8; 32];
        let bytes: Vec<u8> = (0..digest.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(digest.get(i..i + 2)?, 16).ok())
            .collect();
        if bytes.len() != 32 {
            return Err(err(std::io::Error::other("not a SHA-256 in hex")));
        }
        key.copy_from_slice(&bytes);
        let mut accounts = Accounts::default();
        accounts.by_secret.insert(
            key,
            Account {
                name: "admin".into(),
                kind: AccountKind::User,
                admin: true,
            },
        );
        Ok((accounts, fresh))
    }

    /// The account `name` whose secret is `secret`, as a login form gives them.
    pub fn sign_in(&self, name: &str, secret: &str) -> Option<&Account> {
        self.by_secret.get(&hash(secret)).filter(|a| a.name == name)
    }

    /// The account an `Authorization` header names, if its credentials are valid:
    /// `Basic base64(name:secret)` (the name must match) or `Bearer secret`.
    pub fn authenticate(&self, authorization: &str) -> Option<&Account> {
        let (scheme, value) = authorization.trim().split_once(' ')?;
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => self.by_secret.get(&hash(value.trim())),
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(value.trim())
                    .ok()?;
                let text = String::from_utf8(decoded).ok()?;
                let (name, secret) = text.split_once(':')?;
                self.sign_in(name, secret)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Accounts {
        let dir = std::env::temp_dir().join(format!("tg-accounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.toml");
        std::fs::write(
            &path,
            "[[account]]\nname = \"alice\"\nsecret = \"s3cret\"\nkind = \"user\"\nadmin = true\n\
             [[account]]\nname = \"ci\"\nsecret = \"robot-secret\"\nkind = \"robot\"\n",
        )
        .unwrap();
        Accounts::from_file(&path).unwrap()
    }

    #[test]
    fn basic_needs_the_matching_name_and_bearer_the_secret_alone() {
        let a = accounts();
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert_eq!(
            a.authenticate(&basic("alice:s3cret")).unwrap().name,
            "alice"
        );
        assert!(a.authenticate(&basic("ci:s3cret")).is_none());
        assert!(a.authenticate(&basic("alice:wrong")).is_none());
        let robot = a.authenticate("Bearer robot-secret").unwrap();
        assert_eq!(robot.kind, AccountKind::Robot);
        assert!(!robot.admin);
        assert!(a.authenticate("Bearer nope").is_none());
        assert!(a.authenticate("Digest x").is_none());
    }

    #[test]
    fn a_bad_tokens_file_names_the_field() {
        let dir = std::env::temp_dir().join(format!("tg-accounts-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.toml");
        std::fs::write(
            &path,
            "[[account]]\nname = \"x\"\nsecret = \"abc\"\nkind = \"user\"\n",
        )
        .unwrap();
        let err = Accounts::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("account[0].secret"), "{err}");
        std::fs::write(
            &path,
            "[[account]]\nname = \"x\"\nsecret = \"abcdef\"\nkind = \"wizard\"\n",
        )
        .unwrap();
        let err = Accounts::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("wizard"), "{err}");
    }
}
