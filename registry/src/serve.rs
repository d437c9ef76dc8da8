//! Starting the registry: the data directory, the database, the plugin that
//! served last, the accounts, the routes, and a graceful stop.

use crate::accounts::Accounts;
use crate::app::{App, Shared, blocking};
use crate::blobs::FsBlobStore;
use crate::console::session::Sessions;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Storage, StorageError};
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tagguard_engine::audit::CheckpointKey;
use tagguard_engine::{Plugin, Runtime, RuntimeConfig, Settings, TagGuard};

/// How the registry is started.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The data directory (database, blobs, keys, swapped plugins).
    pub data: PathBuf,
    /// The tokens file; without one, an `admin` account is made on first start.
    pub tokens: Option<PathBuf>,
    /// The database: `postgres://...` (several registry processes may share it), or
    /// `None` for SQLite in the data directory.
    pub database: Option<String>,
}

/// Opens the database the options name.
fn open_store(options: &ServeOptions, key: CheckpointKey) -> anyhow::Result<Arc<dyn Storage>> {
    match options.database.as_deref() {
        None => Ok(Arc::new(SqliteStore::open(
            &options.data.join("registry.db"),
            key,
        )?)),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let store = PostgresStore::connect(url, key)
                .with_context(|| format!("--database {}", redacted(url)))?;
            Ok(Arc::new(store))
        }
        Some(other) => anyhow::bail!(
            "--database: {:?} is not a postgres:// URL (without --database, SQLite in the data directory serves)",
            redacted(other)
        ),
    }
}

/// A database URL without its password.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = &url[scheme + 3..at];
            match user.split_once(':') {
                Some((name, _)) => format!("{}{name}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Marks the runs another process left `running` when it stopped as `incomplete`,
/// if no run holds the policy lock now; returns how many.
pub fn sweep_runs(store: &dyn Storage) -> Result<u64, StorageError> {
    match store.try_lock_policies()? {
        Some(_held) => store.interrupt_runs(),
        None => Ok(0),
    }
}

/// What a process does beside requests: follows plugin swaps made by other processes
/// on the database, and finds runs whose process stopped.
async fn keep_in_step(app: Shared) {
    let mut tick = tokio::time::interval(crate::plugins::FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        tick.tick().await;
        n += 1;
        let a = app.clone();
        let sweep = n.is_multiple_of(5);
        blocking(move || {
            if let Err(e) = crate::plugins::follow(&a) {
                tracing::warn!(error = %e, "following the plugin the database serves");
            }
            if sweep {
                match sweep_runs(a.store.as_ref()) {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(
                        interrupted = n,
                        "retroactive runs were cut short when their registry process stopped; POST /api/v1/tagguard/runs/ID/apply finishes them"
                    ),
                    Err(e) => tracing::warn!(error = %e, "checking for interrupted runs"),
                }
            }
        })
        .await;
    }
}

/// Writes a file only the owner may read, creating it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// The key that signs checkpoints of the audit log: `DATA/checkpoint.key`, made on first
/// start from the OS's randomness. Keep a copy apart from the database: whoever holds
/// it can sign a rewritten log.
pub fn checkpoint_key(data: &Path) -> anyhow::Result<CheckpointKey> {
    let path = data.join("checkpoint.key");
    if !path.exists() {
        let hex = crate::accounts::random_hex(32)?;
        write_private(&path, hex.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    CheckpointKey::from_bytes(text.trim().as_bytes())
        .with_context(|| format!("{}: not a usable key", path.display()))
}

/// Opens everything under the data directory and builds the shared state.
pub fn open(options: &ServeOptions) -> anyhow::Result<(Shared, Option<String>)> {
    std::fs::create_dir_all(&options.data)
        .with_context(|| format!("creating {}", options.data.display()))?;
    let key = checkpoint_key(&options.data)?;
    let store = open_store(options, key)?;
    let interrupted = sweep_runs(store.as_ref())?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "retroactive runs were cut short by the last stop; POST /api/v1/tagguard/runs/ID/apply finishes them"
        );
    }
    let runtime = Runtime::with_config(RuntimeConfig {
        cache_dir: Some(options.data.join("cache")),
        ..RuntimeConfig::default()
    })?;
    let default = Plugin::default_plugin(&runtime)?;
    crate::plugins::store_default(store.as_ref(), &default)?;
    let as_tags: Arc<dyn tagguard_engine::TagStore> = store.clone();
    let as_sink: Arc<dyn tagguard_engine::AuditSink> = store.clone();
    let guard = TagGuard::new(default, as_tags, as_sink, Settings::default())?;
    let (accounts, fresh) = match &options.tokens {
        Some(path) => (Accounts::from_file(path)?, None),
        None => Accounts::admin_in(&options.data)?,
    };
    let blobs = Arc::new(FsBlobStore::open(&options.data)?);
    let sessions = Sessions::new(crate::accounts::random_hex(32)?);
    let app = App::new(
        store,
        guard,
        runtime,
        blobs,
        accounts,
        options.data.clone(),
        sessions,
    );
    crate::plugins::follow(&app).context("loading the plugin the database says serves")?;
    Ok((Arc::new(app), fresh))
}

/// The registry's routes.
pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v2", any(crate::oci::handle))
        .route("/v2/", any(crate::oci::handle))
        .route("/v2/{*rest}", any(crate::oci::handle))
        .route("/api/v1/{*rest}", any(crate::rest::handle))
        .merge(crate::console::router())
        .with_state(app)
}

async fn healthz(State(app): State<Shared>) -> impl IntoResponse {
    if blocking(move || app.store.healthy()).await {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
    }
}

async fn metrics(State(app): State<Shared>) -> impl IntoResponse {
    let a = app.clone();
    let runs = blocking(move || a.store.runs()).await.unwrap_or_default();
    let count = |s: &str| runs.iter().filter(|r| r.status == s).count() as u64;
    let text = app.metrics.render(
        app.guard.generation_id(),
        count("running"),
        count("incomplete"),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("stopping: finishing the requests in flight");
}

/// Serves until SIGINT or SIGTERM, then finishes the requests in flight.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let opts = options.clone();
    let (app, fresh) = blocking(move || open(&opts)).await?;
    if let Some(secret) = fresh {
        println!(
            "admin token (shown once; use it as the password of account \"admin\", or as a Bearer token): {secret}"
        );
    }
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let local = listener.local_addr()?;
    tokio::spawn(keep_in_step(app.clone()));
    let stamp = app.guard.stamp();
    tracing::info!(plugin = %stamp, data = %options.data.display(), "tagguard-registry ready");
    println!("listening on http://{local}");
    std::io::stdout().flush()?;
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop_signal())
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn a_database_urls_password_is_never_shown() {
        assert_eq!(
            redacted("postgres://tg:s3cret@db:5432/registry"),
            "postgres://tg:***@db:5432/registry"
        );
        assert_eq!(
            redacted("postgres://tg@db:5432/registry"),
            "postgres://tg@db:5432/registry"
        );
        assert_eq!(redacted("sqlite:/tmp/x"), "sqlite:/tmp/x");
    }
}
