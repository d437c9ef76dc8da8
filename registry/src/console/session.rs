//! Console login sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie,
//! mapped in memory to the account, and the token every state-changing form carries.

use crate::accounts::Account;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "tagguard_console";

/// How long a session lasts after its login.
const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// At most this many sessions are kept; the oldest go first.
const MAX_SESSIONS: usize = 10_000;

/// A signed-in account.
#[derive(Clone, Debug)]
struct Session {
    account: Account,
    since: Instant,
}

/// The live sessions, and the secret that derives form tokens.
#[derive(Debug)]
pub struct Sessions {
    secret: String,
    live: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// No sessions yet; `secret` (random, per process) derives the form tokens.
    pub fn new(secret: String) -> Self {
        Sessions {
            secret,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session for `account`; returns its id (32 random bytes, hex).
    pub fn start(&self, account: Account) -> std::io::Result<String> {
        let id = crate::accounts::random_hex(32)?;
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, s| s.since.elapsed() < LIFETIME);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.since)
                .map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(
            id.clone(),
            Session {
                account,
                since: Instant::now(),
            },
        );
        Ok(id)
    }

    /// The account of a live session.
    pub fn account(&self, id: &str) -> Option<Account> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get(id)
            .filter(|s| s.since.elapsed() < LIFETIME)
            .map(|s| s.account.clone())
    }

    /// Ends a session.
    pub fn end(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// The form token of a principal: a session (`session:ID`) or an account
    /// signed in by HTTP Basic (`basic:NAME`).
    pub fn form_token(&self, principal: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.secret.as_bytes());
        h.update([0]);
        h.update(principal.as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The value of the cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` value that stores a session id.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that clears the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether two tokens are equal, comparing every byte.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
