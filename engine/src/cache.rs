//! The precompile cache: a plugin is compiled once and its artifact stored
//! on disk, keyed by the wasm's sha256 and wasmtime's compatibility hash.
//!
//! An artifact is native code that runs in this process, so the cache trusts
//! only what it wrote itself: the directory must be a real directory owned by
//! the effective uid with mode 0700, and each artifact and checksum file a
//! regular file owned by the same uid with no group or world write bit. The
//! sha256 written beside each artifact catches corruption, not tampering.

use crate::error::EngineError;
use crate::hex::hex;
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::component::Component;

/// Write by group or others: refused on the directory and on every file in it.
#[cfg(unix)]
const GROUP_OR_WORLD_WRITE: u32 = 0o022;

/// Any access by group or others: taken away from a directory nobody else could write.
#[cfg(unix)]
const GROUP_OR_WORLD_ANY: u32 = 0o077;

/// Counters of what the cache did, for operators and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads served from a valid entry.
    pub hits: u64,
    /// Loads with no entry: compiled and stored.
    pub misses: u64,
    /// Entries found corrupt, foreign or untrusted: discarded, compiled and stored again.
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

/// The default cache directory: `$XDG_CACHE_HOME/tagguard/precompiled`, else
/// `$HOME/.cache/tagguard/precompiled`, else `None` (no cache; never a shared temp dir).
pub fn default_dir() -> Option<PathBuf> {
    if cfg!(not(unix)) {
        // Ownership and modes cannot be checked here, so there is no default cache.
        return None;
    }
    default_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

/// [`default_dir`] from the two variables; empty or relative values count as unset.
fn default_dir_from(xdg_cache_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    let base = absolute(xdg_cache_home).or_else(|| absolute(home).map(|h| h.join(".cache")))?;
    Some(base.join("tagguard").join("precompiled"))
}

impl PrecompileCache {
    /// Opens the cache in `dir`, creating it (mode 0700) if missing; refuses a directory
    /// that is not trusted ([`EngineError::UnsafeCache`]).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, EngineError> {
        let dir = dir.into();
        ensure_trusted_dir(&dir)?;
        Ok(PrecompileCache {
            dir,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            rebuilt: AtomicU64::new(0),
        })
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
    /// compiles it and stores the artifact. Fails if the directory is no longer trusted.
    pub fn load(
        &self,
        engine: &wasmtime::Engine,
        wasm: &[u8],
        wasm_digest: &str,
    ) -> wasmtime::Result<Component> {
        // Cheap (one lstat): the directory may have changed since the runtime opened it.
        ensure_trusted_dir(&self.dir).map_err(wasmtime::Error::new)?;
        let path = self.entry_path(engine, wasm_digest);
        match self.read_valid(engine, &path) {
            Entry::Valid(component) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(component);
            }
            Entry::Missing => {
                self.misses.fetch_add(1, Ordering::Relaxed);
            }
            Entry::Invalid => {
                self.rebuilt.fetch_add(1, Ordering::Relaxed);
                // Discarded even if the new artifact cannot be stored.
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(Self::checksum_path(&path));
            }
        };
        let artifact = engine.precompile_component(wasm)?;
        // SAFETY: `artifact` was produced just now by this engine's own compiler.
        let component = unsafe { Component::deserialize(engine, &artifact)? };
        // A cache that cannot be written only costs a recompile next time.
        let _ = self.store(&path, &artifact);
        Ok(component)
    }

    fn read_valid(&self, engine: &wasmtime::Engine, path: &Path) -> Entry {
        let artifact = match read_trusted_file(path) {
            FileRead::Trusted(bytes) => bytes,
            FileRead::Missing => return Entry::Missing,
            FileRead::Untrusted => return Entry::Invalid,
        };
        let FileRead::Trusted(sum) = read_trusted_file(&Self::checksum_path(path)) else {
            return Entry::Invalid;
        };
        if sum.trim_ascii() != hex(&Sha256::digest(&artifact)).as_bytes() {
            return Entry::Invalid;
        }
        if !matches!(
            wasmtime::Engine::detect_precompiled(&artifact),
            Some(wasmtime::Precompiled::Component)
        ) {
            return Entry::Invalid;
        }
        // SAFETY: the artifact and its checksum are regular files owned by this process's
        // effective uid, not writable by group or others, in a directory only that uid can
        // write; so this cache wrote them from an artifact it compiled itself. The sha256
        // matches (no corruption since), the key includes the engine's compatibility hash,
        // and wasmtime checks the header again.
        match unsafe { Component::deserialize(engine, &artifact) } {
            Ok(c) => Entry::Valid(c),
            Err(_) => Entry::Invalid,
        }
    }

    fn store(&self, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
        write_replacing(path, artifact)?;
        write_replacing(
            &Self::checksum_path(path),
            hex(&Sha256::digest(artifact)).as_bytes(),
        )
    }
}

enum Entry {
    Valid(Component),
    Missing,
    Invalid,
}

// Without unix checks no file is ever read as trusted.
#[cfg_attr(not(unix), allow(dead_code))]
enum FileRead {
    Trusted(Vec<u8>),
    Missing,
    Untrusted,
}

/// Creates `dir` (and missing parents) with mode 0700 if it does not exist, then refuses
/// it unless it is a directory (not a symlink to one) owned by the effective uid with no
/// group or world access. One `lstat` when the directory exists.
#[cfg(unix)]
fn ensure_trusted_dir(dir: &Path) -> Result<(), EngineError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let meta = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| unsafe_cache(dir, format!("cannot be created: {e}")))?;
            std::fs::symlink_metadata(dir)
        }
        other => other,
    }
    .map_err(|e| unsafe_cache(dir, format!("cannot be inspected: {e}")))?;
    let uid = euid();
    let refuse = |problem: String| {
        unsafe_cache(
            dir,
            format!(
                "{problem}; tagguard trusts only an owner-only directory (0700) owned by uid {uid}"
            ),
        )
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Err(refuse("is a symlink".into()));
    }
    if !kind.is_dir() {
        return Err(refuse("is not a directory".into()));
    }
    if meta.uid() != uid {
        return Err(refuse(format!("is owned by uid {}", meta.uid())));
    }
    let mode = meta.mode() & 0o7777;
    if mode & GROUP_OR_WORLD_WRITE != 0 {
        return Err(refuse(format!(
            "is writable by group or others (mode {mode:04o})"
        )));
    }
    if mode & GROUP_OR_WORLD_ANY != 0 {
        // Ours and writable by nobody else (as an earlier version created it, 0755):
        // nothing in it can have been planted by another user, so tighten it to 0700.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            refuse(format!(
                "is accessible by group or others (mode {mode:04o}) and cannot be made 0700: {e}"
            ))
        })?;
    }
    Ok(())
}

/// Without unix ownership and modes a directory cannot be checked, so it is refused.
#[cfg(not(unix))]
fn ensure_trusted_dir(dir: &Path) -> Result<(), EngineError> {
    Err(unsafe_cache(
        dir,
        "cannot be checked on this platform: the precompile cache needs unix ownership and modes"
            .into(),
    ))
}

fn unsafe_cache(dir: &Path, reason: String) -> EngineError {
    EngineError::UnsafeCache {
        dir: dir.into(),
        reason,
    }
}

/// The process's effective uid.
#[cfg(unix)]
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Reads `path` only if it is a regular file (a symlink is not followed) owned by the
/// effective uid with no group or world write bit; the checks are made on the open file.
#[cfg(unix)]
fn read_trusted_file(path: &Path) -> FileRead {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = match std::fs::OpenOptions::new()
        .read(true)
        // A symlink fails to open; a planted FIFO does not block the load.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileRead::Missing,
        Err(_) => return FileRead::Untrusted,
    };
    let Ok(meta) = file.metadata() else {
        return FileRead::Untrusted;
    };
    if !meta.file_type().is_file()
        || meta.uid() != euid()
        || meta.mode() & GROUP_OR_WORLD_WRITE != 0
    {
        return FileRead::Untrusted;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    match (&file).read_to_end(&mut bytes) {
        Ok(_) => FileRead::Trusted(bytes),
        Err(_) => FileRead::Untrusted,
    }
}

/// Never reached (the directory is refused first); nothing is trusted without unix checks.
#[cfg(not(unix))]
fn read_trusted_file(path: &Path) -> FileRead {
    if path.exists() {
        FileRead::Untrusted
    } else {
        FileRead::Missing
    }
}

/// Writes `bytes` to a new temporary file (mode 0600) beside `dest`, then renames it over
/// `dest`, so a reader sees the old file or the whole new one.
fn write_replacing(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dest.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, dest));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::default_dir_from;
    use std::path::PathBuf;

    fn os(s: &str) -> Option<std::ffi::OsString> {
        Some(s.into())
    }

    #[test]
    fn the_default_dir_prefers_xdg_then_home_and_never_falls_back_to_temp() {
        assert_eq!(
            default_dir_from(os("/x/cache"), os("/home/r")),
            Some(PathBuf::from("/x/cache/tagguard/precompiled"))
        );
        assert_eq!(
            default_dir_from(None, os("/home/r")),
            Some(PathBuf::from("/home/r/.cache/tagguard/precompiled"))
        );
        assert_eq!(
            default_dir_from(os(""), os("/home/r")),
            Some(PathBuf::from("/home/r/.cache/tagguard/precompiled"))
        );
        assert_eq!(
            default_dir_from(os("relative"), os("/home/r")),
            Some(PathBuf::from("/home/r/.cache/tagguard/precompiled"))
        );
        assert_eq!(default_dir_from(None, None), None);
        assert_eq!(default_dir_from(os(""), os("")), None);
        assert_eq!(default_dir_from(None, os("relative/home")), None);
    }
}
