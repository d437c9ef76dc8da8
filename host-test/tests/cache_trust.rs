//! The precompile cache trusts only what it wrote: an owner-only directory of
//! the process's own uid, and artifacts that are regular files of that uid.
//! Anything else is refused (the directory) or rebuilt (an entry), never
//! deserialized.

#![cfg(unix)]

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use tagguard_engine::{
    CacheStats, DEFAULT_PLUGIN_WASM, EngineError, Plugin, Runtime, RuntimeConfig, built_plugin_path,
};

/// A uid nobody on the test machine runs as.
const OTHER_UID: u32 = 12345;

/// A fresh directory (mode 0700) under the system temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "tagguard-cache-trust-{name}-{}-{nanos:x}",
            std::process::id()
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        Scratch(dir)
    }

    fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// The effective uid of this process: the owner of a directory it just created.
    fn my_uid(&self) -> u32 {
        std::fs::metadata(&self.0).unwrap().uid()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &Path) -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(dir.to_path_buf()),
        ..RuntimeConfig::default()
    }
}

fn runtime(dir: &Path) -> Runtime {
    Runtime::with_config(config(dir)).unwrap()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// The refusal `with_config` gives for `dir`: its directory and reason.
fn refusal(dir: &Path) -> (PathBuf, String, String) {
    match Runtime::with_config(config(dir)) {
        Err(e @ EngineError::UnsafeCache { .. }) => {
            let message = e.to_string();
            let EngineError::UnsafeCache { dir, reason } = e else {
                unreachable!()
            };
            (dir, reason, message)
        }
        Err(other) => panic!("expected UnsafeCache for {}, got {other}", dir.display()),
        Ok(_) => panic!("the cache directory {} was accepted", dir.display()),
    }
}

fn stats(hits: u64, misses: u64, rebuilt: u64) -> CacheStats {
    CacheStats {
        hits,
        misses,
        rebuilt,
    }
}

fn default_entry(runtime: &Runtime) -> PathBuf {
    runtime.cache().unwrap().entry_path(
        runtime.engine(),
        &tagguard_engine::plugin::digest(DEFAULT_PLUGIN_WASM),
    )
}

fn checksum_path(entry: &Path) -> PathBuf {
    entry.with_extension("cwasm.sha256")
}

fn hex_sha256(bytes: &[u8]) -> String {
    tagguard_engine::plugin::digest(bytes)
        .trim_start_matches("sha256:")
        .to_string()
}

/// Asserts the entry is one the cache wrote: regular files of `uid`, mode 0600.
fn assert_written_by_cache(entry: &Path, uid: u32) {
    for file in [entry.to_path_buf(), checksum_path(entry)] {
        let meta = std::fs::symlink_metadata(&file).unwrap();
        assert!(meta.file_type().is_file(), "{}", file.display());
        assert_eq!(meta.uid(), uid, "{}", file.display());
        assert_eq!(meta.mode() & 0o7777, 0o600, "{}", file.display());
    }
}

#[test]
fn a_fresh_cache_directory_is_created_owner_only_and_the_second_load_hits() {
    let scratch = Scratch::new("fresh");
    let dir = scratch.join("home/.cache/tagguard/precompiled");
    let first = runtime(&dir);
    assert_eq!(mode_of(&dir), 0o700);
    // Every directory it had to create is owner-only too.
    assert_eq!(mode_of(&scratch.join("home/.cache/tagguard")), 0o700);
    assert_eq!(mode_of(&scratch.join("home")), 0o700);
    Plugin::default_plugin(&first).unwrap();
    assert_eq!(first.cache_stats(), stats(0, 1, 0));
    assert_written_by_cache(&default_entry(&first), scratch.my_uid());

    let second = runtime(&dir);
    let plugin = Plugin::default_plugin(&second).unwrap();
    assert_eq!(second.cache_stats(), stats(1, 0, 0));
    assert_eq!(plugin.info().name, "tagguard-default");
}

#[test]
fn a_cache_directory_open_to_group_or_others_is_refused_with_its_path() {
    let scratch = Scratch::new("mode");
    let dir = scratch.join("cache");
    std::fs::create_dir(&dir).unwrap();
    let uid = scratch.my_uid();
    for (mode, problem) in [
        (0o777, "is writable by group or others (mode 0777)"),
        (0o770, "is writable by group or others (mode 0770)"),
        (0o702, "is writable by group or others (mode 0702)"),
        (0o1777, "is writable by group or others (mode 1777)"),
    ] {
        chmod(&dir, mode);
        let (refused, reason, message) = refusal(&dir);
        assert_eq!(refused, dir);
        assert!(reason.starts_with(problem), "{mode:o}: {reason}");
        assert_eq!(
            message,
            format!(
                "cache directory {} {problem}; tagguard trusts only an owner-only directory \
                 (0700) owned by uid {uid}",
                dir.display()
            )
        );
    }
    chmod(&dir, 0o700);
    runtime(&dir);
}

#[test]
fn a_cache_directory_of_ours_that_only_others_may_read_is_tightened_to_0700() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("readable");
    let dir = scratch.join("cache");
    std::fs::create_dir(&dir).unwrap();
    for mode in [0o755, 0o750, 0o704] {
        chmod(&dir, mode);
        runtime(&dir);
        let now = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(now, 0o700, "{mode:o} tightened");
    }
}

#[test]
fn a_cache_directory_that_becomes_writable_by_others_is_refused_before_the_next_read() {
    let scratch = Scratch::new("later");
    let dir = scratch.join("cache");
    let runtime = runtime(&dir);
    Plugin::default_plugin(&runtime).unwrap();
    chmod(&dir, 0o777);
    let err = Plugin::default_plugin(&runtime).err().expect("refused");
    let text = err.to_string();
    assert!(matches!(err, EngineError::Load { .. }), "{text}");
    assert!(
        text.contains(&format!(
            "cache directory {} is writable by group or others (mode 0777)",
            dir.display()
        )),
        "{text}"
    );
    assert_eq!(runtime.cache_stats(), stats(0, 1, 0));
    chmod(&dir, 0o700);
    Plugin::default_plugin(&runtime).unwrap();
    assert_eq!(runtime.cache_stats(), stats(1, 1, 0));
}

#[test]
fn a_cache_directory_owned_by_another_uid_is_refused() {
    let scratch = Scratch::new("owner");
    let dir = scratch.join("cache");
    std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(OTHER_UID), Some(OTHER_UID)).unwrap();
    let (refused, reason, _) = refusal(&dir);
    assert_eq!(refused, dir);
    assert!(
        reason.starts_with(&format!("is owned by uid {OTHER_UID};")),
        "{reason}"
    );
}

#[test]
fn a_symlinked_cache_directory_is_refused_and_not_created_through() {
    let scratch = Scratch::new("symlink");
    let real = scratch.join("real");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&real)
        .unwrap();
    let link = scratch.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let (refused, reason, _) = refusal(&link);
    assert_eq!(refused, link);
    assert!(reason.starts_with("is a symlink;"), "{reason}");

    // A dangling symlink is not followed to create its target.
    let dangling = scratch.join("dangling");
    std::os::unix::fs::symlink(scratch.join("target"), &dangling).unwrap();
    let (_, reason, _) = refusal(&dangling);
    assert!(reason.starts_with("is a symlink;"), "{reason}");
    assert!(!scratch.join("target").exists());

    // A file is not a directory.
    let file = scratch.join("file");
    std::fs::write(&file, b"").unwrap();
    chmod(&file, 0o600);
    let (_, reason, _) = refusal(&file);
    assert!(reason.starts_with("is not a directory;"), "{reason}");
}

/// How a planted entry differs from one the cache wrote.
#[derive(Debug, Clone, Copy)]
enum Plant {
    /// Owned by this uid, mode 0600: indistinguishable from the cache's own.
    Trusted,
    /// The artifact has mode 0666.
    WorldWritable,
    /// The artifact has mode 0620.
    GroupWritable,
    /// The artifact is owned by another uid.
    OtherOwner,
    /// Only the checksum file is owned by another uid.
    ChecksumOtherOwner,
    /// The artifact is a symlink to a file of this uid, mode 0600, outside the cache.
    Symlink,
}

fn plant(scratch: &Scratch, entry: &Path, artifact: &[u8], how: Plant) {
    let sum = checksum_path(entry);
    for path in [entry, sum.as_path()] {
        let _ = std::fs::remove_file(path);
    }
    let target = if matches!(how, Plant::Symlink) {
        let outside = scratch.join("outside.cwasm");
        std::os::unix::fs::symlink(&outside, entry).unwrap();
        outside
    } else {
        entry.to_path_buf()
    };
    std::fs::write(&target, artifact).unwrap();
    std::fs::write(&sum, hex_sha256(artifact)).unwrap();
    chmod(&target, 0o600);
    chmod(&sum, 0o600);
    match how {
        Plant::Trusted | Plant::Symlink => {}
        Plant::WorldWritable => chmod(entry, 0o666),
        Plant::GroupWritable => chmod(entry, 0o620),
        Plant::OtherOwner => std::os::unix::fs::chown(entry, Some(OTHER_UID), None).unwrap(),
        Plant::ChecksumOtherOwner => std::os::unix::fs::chown(&sum, Some(OTHER_UID), None).unwrap(),
    }
}

#[test]
fn a_planted_artifact_not_written_by_the_cache_is_rebuilt_never_run() {
    let scratch = Scratch::new("plant");
    let dir = scratch.join("cache");
    let setup = runtime(&dir);
    let entry = default_entry(&setup);
    // A valid artifact of another component, for the same engine.
    let other = std::fs::read(built_plugin_path("missing-record-plugin")).unwrap();
    let foreign = setup.engine().precompile_component(&other).unwrap();
    let uid = scratch.my_uid();

    // The control: planted with the cache's own owner and mode, the artifact is served
    // (stamped with the default plugin's digest). Only the registry's uid (or root) can
    // do that, and the cache does not defend against them.
    plant(&scratch, &entry, &foreign, Plant::Trusted);
    let served = runtime(&dir);
    let plugin = Plugin::default_plugin(&served).unwrap();
    assert_eq!(served.cache_stats(), stats(1, 0, 0));
    assert_ne!(plugin.info().name, "tagguard-default");

    for how in [
        Plant::WorldWritable,
        Plant::GroupWritable,
        Plant::OtherOwner,
        Plant::ChecksumOtherOwner,
        Plant::Symlink,
    ] {
        plant(&scratch, &entry, &foreign, how);
        let loading = runtime(&dir);
        let plugin = Plugin::default_plugin(&loading).unwrap();
        assert_eq!(loading.cache_stats(), stats(0, 0, 1), "{how:?}");
        assert_eq!(plugin.info().name, "tagguard-default", "{how:?}");
        assert_eq!(
            plugin.stamp().digest,
            tagguard_engine::plugin::digest(DEFAULT_PLUGIN_WASM)
        );
        // Rewritten by the cache, and served from it next time.
        assert_written_by_cache(&entry, uid);
        let next = runtime(&dir);
        assert_eq!(
            Plugin::default_plugin(&next).unwrap().info().name,
            "tagguard-default",
            "{how:?}"
        );
        assert_eq!(next.cache_stats(), stats(1, 0, 0), "{how:?}");
    }
    // The symlink's target outside the cache was left alone.
    assert_eq!(
        std::fs::read(scratch.join("outside.cwasm")).unwrap(),
        foreign
    );
}
