//! The precompile cache: a plugin is compiled once and its artifact stored
//! on disk, keyed by the wasm's sha256 and wasmtime's compatibility hash.
//! An entry is trusted only if its own sha256, written beside it, matches.

use crate::hex::hex;
use sha2::{Digest, Sha256};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::component::Component;

/// Counters of what the cache did, for operators and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads served from a valid entry.
    pub hits: u64,
    /// Loads with no entry: compiled and stored.
    pub misses: u64,
    /// Entries found corrupt or foreign: discarded, compiled and stored again.
    pub rebuilt: u64,
}

/// A directory of precompiled plugins.
#[derive(Debug)]
pub struct PrecompileCache {
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
    rebuilt: AtomicU64,
}

/// The default cache directory: `$XDG_CACHE_HOME/tagguard`, `$HOME/.cache/tagguard`,
/// or the system temp dir.
pub fn default_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("tagguard").join("precompiled")
}

impl PrecompileCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PrecompileCache {
            dir: dir.into(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            rebuilt: AtomicU64::new(0),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the cache did so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            rebuilt: self.rebuilt.load(Ordering::Relaxed),
        }
    }

    /// Path of the entry for a component with digest `wasm_digest` (`sha256:<hex>`, as
    /// [`crate::plugin::digest`] gives it) on `engine`.
    pub fn entry_path(&self, engine: &wasmtime::Engine, wasm_digest: &str) -> PathBuf {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let wasm_hex = wasm_digest.trim_start_matches("sha256:");
        let key = format!("{wasm_hex}-{:016x}", h.finish());
        self.dir.join(format!("{key}.cwasm"))
    }

    fn checksum_path(entry: &Path) -> PathBuf {
        entry.with_extension("cwasm.sha256")
    }

    /// Loads the valid entry for `wasm` (whose digest the caller computed once), or
    /// compiles it and stores the artifact.
    pub fn load(
        &self,
        engine: &wasmtime::Engine,
        wasm: &[u8],
        wasm_digest: &str,
    ) -> wasmtime::Result<Component> {
        let path = self.entry_path(engine, wasm_digest);
        match self.read_valid(engine, &path) {
            Entry::Valid(component) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(component);
            }
            Entry::Missing => self.misses.fetch_add(1, Ordering::Relaxed),
            Entry::Invalid => self.rebuilt.fetch_add(1, Ordering::Relaxed),
        };
        let artifact = engine.precompile_component(wasm)?;
        // SAFETY: `artifact` was produced just now by this engine's own compiler.
        let component = unsafe { Component::deserialize(engine, &artifact)? };
        // A cache that cannot be written only costs a recompile next time.
        let _ = self.store(&path, &artifact);
        Ok(component)
    }

    fn read_valid(&self, engine: &wasmtime::Engine, path: &Path) -> Entry {
        let (Ok(artifact), Ok(sum)) = (
            std::fs::read(path),
            std::fs::read_to_string(Self::checksum_path(path)),
        ) else {
            return if path.exists() {
                Entry::Invalid
            } else {
                Entry::Missing
            };
        };
        if sum.trim() != hex(&Sha256::digest(&artifact)) {
            return Entry::Invalid;
        }
        if !matches!(
            wasmtime::Engine::detect_precompiled(&artifact),
            Some(wasmtime::Precompiled::Component)
        ) {
            return Entry::Invalid;
        }
        // SAFETY: the artifact's sha256 matches the checksum this cache wrote when it
        // stored the artifact it compiled itself; the key includes the engine's
        // compatibility hash, and wasmtime checks the header again.
        match unsafe { Component::deserialize(engine, &artifact) } {
            Ok(c) => Entry::Valid(c),
            Err(_) => Entry::Invalid,
        }
    }

    fn store(&self, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, artifact)?;
        std::fs::rename(&tmp, path)?;
        let sum_tmp = path.with_extension(format!("sumtmp{}", std::process::id()));
        std::fs::write(&sum_tmp, hex(&Sha256::digest(artifact)))?;
        std::fs::rename(&sum_tmp, Self::checksum_path(path))
    }
}

enum Entry {
    Valid(Component),
    Missing,
    Invalid,
}
