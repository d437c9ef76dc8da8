//! The plugin every registry process on the database serves. Components are
//! stored in the database by digest; a swap or rollback commits its record and
//! the new served plugin in one transaction (the store checks that its
//! generation follows the stored one); every process follows the database
//! within a fraction of a second, without a record of its own.

use crate::app::{App, Caller};
use crate::errors::ApiError;
use crate::store::{ServedPlugin, Storage, StorageError};
use axum::http::StatusCode;
use std::time::Duration;
use tagguard_engine::{DEFAULT_PLUGIN_WASM, EngineError, Plugin, Runtime, SwapOutcome};

/// How often a process checks whether another one swapped the plugin.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(200);

/// Why the served plugin could not be followed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The database names a component it does not hold.
    #[error("plugin {0} is served but its component is not stored")]
    Missing(String),
    /// The stored component does not load.
    #[error("plugin {digest}: {source}")]
    Load {
        /// Its digest.
        digest: String,
        /// Why it does not load.
        #[source]
        source: EngineError,
    },
}

/// Loads a stored component.
fn load(runtime: &Runtime, store: &dyn Storage, digest: &str) -> Result<Plugin, FollowError> {
    let bytes = store
        .plugin_component(digest)?
        .ok_or_else(|| FollowError::Missing(digest.into()))?;
    Plugin::from_bytes(runtime, &bytes).map_err(|source| FollowError::Load {
        digest: digest.into(),
        source,
    })
}

/// Stores the default plugin's component, so that a rollback to it can be followed.
pub fn store_default(store: &dyn Storage, default: &Plugin) -> Result<(), StorageError> {
    store.put_plugin(&default.stamp().digest, DEFAULT_PLUGIN_WASM)
}

/// Serves the plugin the database says serves, if it is newer than the one serving
/// here; returns the generation adopted.
pub fn follow(app: &App) -> Result<Option<ServedPlugin>, FollowError> {
    let Some(served) = app.store.served_plugin()? else {
        return Ok(None);
    };
    if served.generation <= app.guard.generation_id() {
        return Ok(None);
    }
    let plugin = load(&app.runtime, app.store.as_ref(), &served.digest)?;
    let serving = app.guard.serving();
    let previous = match &served.previous {
        Some(d) if *d == serving.stamp().digest => Some(serving),
        Some(d) => Some(load(&app.runtime, app.store.as_ref(), d)?),
        None => None,
    };
    match app.guard.adopt(plugin, served.generation, previous) {
        Ok(()) => {
            tracing::info!(
                generation = served.generation,
                plugin = %app.guard.stamp(),
                "serving the plugin another registry process published"
            );
            Ok(Some(served))
        }
        // Another thread of this process adopted it (or a newer one) meanwhile.
        Err(EngineError::StaleGeneration { .. }) => Ok(None),
        Err(source) => Err(FollowError::Load {
            digest: served.digest,
            source,
        }),
    }
}

/// The REST error for a swap or rollback the engine refused.
fn refused(e: EngineError) -> ApiError {
    match e {
        EngineError::Conflict { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "plugin_changed",
            format!("{e}; the plugin now serving is followed, try again"),
        ),
        other => ApiError::invalid(other.to_string()),
    }
}

/// Follows the database first, so that the new generation follows the one that serves.
fn catch_up(app: &App) -> Result<(), ApiError> {
    follow(app).map(|_| ()).map_err(ApiError::internal)
}

/// Swaps in the plugin component `bytes`: stored in the database, recorded, and served
/// by every registry process on it.
pub fn swap(app: &App, caller: &Caller, bytes: &[u8]) -> Result<SwapOutcome, ApiError> {
    let candidate = Plugin::from_bytes(&app.runtime, bytes)
        .map_err(|e| ApiError::invalid(format!("plugin: {e}")))?;
    app.store
        .put_plugin(&candidate.stamp().digest, bytes)
        .map_err(ApiError::internal)?;
    catch_up(app)?;
    let swapped = app.guard.swap(&caller.actor(), candidate);
    swapped.map_err(|e| {
        let _ = follow(app);
        refused(e)
    })
}

/// Rolls back to the plugin that served before the last swap, on every process.
pub fn rollback(app: &App, caller: &Caller) -> Result<SwapOutcome, ApiError> {
    catch_up(app)?;
    let back = app.guard.rollback(&caller.actor());
    back.map_err(|e| {
        let _ = follow(app);
        refused(e)
    })
}
