//! The registry's shared state, who is calling, and the one path every tag
//! write takes through the engine.

use crate::accounts::{Account, Accounts};
use crate::blobs::BlobStore;
use crate::console::session::Sessions;
use crate::metrics::Metrics;
use crate::store::{Storage, StorageError};
use axum::http::{HeaderMap, header};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tagguard_engine::{Actor, EngineError, PushOutcome, PushRequest, Runtime, TagGuard};

/// How often a write decided on stale state is decided again before giving up.
pub const DECIDE_ATTEMPTS: usize = 8;

/// Everything a request handler needs.
pub struct App {
    /// The database.
    pub store: Arc<dyn Storage>,
    /// The engine, over the same database.
    pub guard: TagGuard,
    /// The runtime plugins are loaded into (for swaps).
    pub runtime: Runtime,
    /// Blob contents.
    pub blobs: Arc<dyn BlobStore>,
    /// Who may call.
    pub accounts: Accounts,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// The data directory.
    pub data: PathBuf,
    /// The console's login sessions.
    pub sessions: Sessions,
    requests: AtomicU64,
}

/// The shared state handlers receive.
pub type Shared = Arc<App>;

/// An authenticated request: the account, its address and the request's id.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The account.
    pub account: Account,
    /// The client's IP address.
    pub ip: Option<String>,
    /// The request id (also sent back as `X-Request-Id`).
    pub request_id: String,
}

impl Caller {
    /// The engine's actor for this request.
    pub fn actor(&self) -> Actor {
        self.account
            .actor(self.ip.clone(), Some(self.request_id.clone()))
    }
}

/// A failure of a decided write: the engine's, or the database's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl App {
    /// The registry's state.
    pub fn new(
        store: Arc<dyn Storage>,
        guard: TagGuard,
        runtime: Runtime,
        blobs: Arc<dyn BlobStore>,
        accounts: Accounts,
        data: PathBuf,
        sessions: Sessions,
    ) -> Self {
        App {
            store,
            guard,
            runtime,
            blobs,
            accounts,
            metrics: Metrics::default(),
            data,
            sessions,
            requests: AtomicU64::new(0),
        }
    }

    /// The caller a request's `Authorization` header names, if its credentials are valid.
    pub fn caller(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<Caller> {
        let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let account = self.accounts.authenticate(authorization)?.clone();
        Some(self.caller_for(account, peer))
    }

    /// A caller for an account already authenticated (a console session).
    pub fn caller_for(&self, account: Account, peer: Option<SocketAddr>) -> Caller {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        Caller {
            account,
            ip: peer.map(|p| p.ip().to_string()),
            request_id: format!("req-{:x}-{n}", std::process::id()),
        }
    }

    /// Pushes `ns/repo:tag` to `digest` through the engine, deciding again (with fresh
    /// state) when the database reports that the state changed since the decision.
    pub fn push_tag(
        &self,
        caller: &Caller,
        ns: &str,
        repo: &str,
        tag: &str,
        digest: &str,
    ) -> Result<PushOutcome, WriteError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let existing = self.store.alive_tag(ns, repo, tag)?;
            let (policies, policy_version) = self.store.policies_in_scope(ns, Some(repo))?;
            let request = PushRequest {
                actor: caller.actor(),
                namespace: ns.into(),
                repository: repo.into(),
                tag_name: tag.into(),
                manifest_digest: digest.into(),
                existing,
                policies,
                policy_version,
            };
            match self.guard.push(&request) {
                Err(EngineError::Conflict { .. }) if attempt < DECIDE_ATTEMPTS => continue,
                Ok(outcome) => {
                    self.metrics.push(&outcome);
                    return Ok(outcome);
                }
                Err(e) => {
                    self.metrics.failure();
                    return Err(e.into());
                }
            }
        }
    }
}

/// Runs blocking work (the engine, the database) off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
