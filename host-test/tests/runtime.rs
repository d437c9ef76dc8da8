//! The production runtime: precompile cache, concurrent callers, hot swap
//! and rollback, all through the real wasm components.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tagguard_engine::{
    CacheStats, DEFAULT_PLUGIN_WASM, EngineError, PLUGIN_SWAPPED, Plugin, Runtime, RuntimeConfig,
    Settings, built_plugin_path,
};
use tagguard_host_test::compliance::assert_compliant;
use tagguard_host_test::{AuditQuery, NewPolicy, Registry, RegistryError, user};

fn temp_cache(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tagguard-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn cached_runtime(dir: &Path) -> Runtime {
    Runtime::with_config(RuntimeConfig {
        cache_dir: Some(dir.to_path_buf()),
        ..RuntimeConfig::default()
    })
    .unwrap()
}

#[test]
fn the_precompile_cache_hits_on_the_second_load_and_rebuilds_a_corrupt_or_foreign_entry() {
    let dir = temp_cache("cache");
    let first = cached_runtime(&dir);
    Plugin::from_bytes(&first, DEFAULT_PLUGIN_WASM).unwrap();
    assert_eq!(
        first.cache_stats(),
        CacheStats {
            hits: 0,
            misses: 1,
            rebuilt: 0
        }
    );
    Plugin::from_bytes(&first, DEFAULT_PLUGIN_WASM).unwrap();
    assert_eq!(
        first.cache_stats(),
        CacheStats {
            hits: 1,
            misses: 1,
            rebuilt: 0
        }
    );

    // A new process-like runtime on the same directory hits too.
    let second = cached_runtime(&dir);
    let plugin = Plugin::from_bytes(&second, DEFAULT_PLUGIN_WASM).unwrap();
    assert_eq!(
        second.cache_stats(),
        CacheStats {
            hits: 1,
            misses: 0,
            rebuilt: 0
        }
    );
    assert_eq!(plugin.info().name, "tagguard-default");

    // Flip one byte of the artifact: detected by its checksum, rebuilt, and usable.
    let entry = second.cache().unwrap().entry_path(
        second.engine(),
        &tagguard_engine::plugin::digest(DEFAULT_PLUGIN_WASM),
    );
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let third = cached_runtime(&dir);
    let reg = Registry::new(
        Plugin::from_bytes(&third, DEFAULT_PLUGIN_WASM).unwrap(),
        Settings::default(),
    );
    assert_eq!(
        third.cache_stats(),
        CacheStats {
            hits: 0,
            misses: 0,
            rebuilt: 1
        }
    );
    assert!(
        !reg.push(&user("alice"), "org", "repo", "v1", "sha256:a")
            .unwrap()
    );

    // A foreign entry whose checksum matches its (non-wasmtime) bytes is rebuilt too.
    let junk = b"not a precompiled component".to_vec();
    std::fs::write(&entry, &junk).unwrap();
    let sum: String = {
        use sha2_free::hex_sha256;
        hex_sha256(&junk)
    };
    std::fs::write(entry.with_extension("cwasm.sha256"), sum).unwrap();
    let fourth = cached_runtime(&dir);
    Plugin::from_bytes(&fourth, DEFAULT_PLUGIN_WASM).unwrap();
    assert_eq!(
        fourth.cache_stats(),
        CacheStats {
            hits: 0,
            misses: 0,
            rebuilt: 1
        }
    );
    let fifth = cached_runtime(&dir);
    Plugin::from_bytes(&fifth, DEFAULT_PLUGIN_WASM).unwrap();
    assert_eq!(
        fifth.cache_stats(),
        CacheStats {
            hits: 1,
            misses: 0,
            rebuilt: 0
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// sha256 through the engine's own digest helper (no extra test dependency).
mod sha2_free {
    pub fn hex_sha256(bytes: &[u8]) -> String {
        tagguard_engine::plugin::digest(bytes)
            .trim_start_matches("sha256:")
            .to_string()
    }
}

fn glob_plugin() -> Plugin {
    Plugin::from_file(common::runtime(), built_plugin_path("glob-policy")).unwrap()
}

#[test]
fn a_swap_is_recorded_publishes_a_new_generation_and_rollback_returns() {
    let reg = common::registry(500);
    let admin = user("admin");
    // `v1.*` is a regex (v1 then anything) for the default plugin and a glob (v1. then anything) for glob-policy.
    reg.create_policy(&admin, &NewPolicy::namespace("p", "org", "v1.*"))
        .unwrap();
    assert!(
        reg.push(&admin, "org", "repo", "v1x", "sha256:a").unwrap(),
        "regex: v1x matches v1.*"
    );
    let default_stamp = reg.guard().stamp();
    assert_eq!(reg.guard().generation_id(), 1);

    let out = reg.guard().swap(&admin, glob_plugin()).unwrap();
    assert_eq!(out.generation, 2);
    assert_eq!(out.old, default_stamp);
    assert_eq!(out.new.name, "tagguard-glob");
    assert!(
        !reg.push(&admin, "org", "repo", "v1y", "sha256:b").unwrap(),
        "glob: v1y does not match v1.*"
    );
    assert!(reg.push(&admin, "org", "repo", "v1.2", "sha256:c").unwrap());

    let back = reg.guard().rollback(&admin).unwrap();
    assert_eq!(back.generation, 3);
    assert_eq!(
        (back.new.digest.as_str(), back.new.generation),
        (default_stamp.digest.as_str(), 3)
    );
    assert_eq!(back.old.generation, 2);
    assert!(reg.push(&admin, "org", "repo", "v1z", "sha256:d").unwrap());

    let swaps = reg.audit(&AuditQuery {
        kind: Some(PLUGIN_SWAPPED),
        ..Default::default()
    });
    assert_eq!(swaps.len(), 2);
    let m = &swaps[0].entry.metadata;
    assert_eq!(m["old_plugin"]["sha256"], default_stamp.digest);
    assert_eq!(m["new_plugin"]["name"], "tagguard-glob");
    assert_eq!(m["action"], "swap");
    assert_eq!(swaps[0].entry.performer.name, "admin");
    assert_eq!(swaps[1].entry.metadata["action"], "rollback");
    // Provenance: each record names the plugin that decided.
    let by_plugin = |tag: &str| {
        reg.audit(&AuditQuery {
            tag: Some(tag),
            ..Default::default()
        })[0]
            .entry
            .plugin
            .name
            .clone()
    };
    assert_eq!(by_plugin("v1x"), "tagguard-default");
    assert_eq!(by_plugin("v1.2"), "tagguard-glob");
    assert_eq!(by_plugin("v1z"), "tagguard-default");
    assert_compliant(reg.db());
}

#[test]
fn an_adopted_generation_serves_unrecorded_numbers_later_swaps_and_never_steps_back() {
    let reg = common::registry(500);
    let admin = user("admin");
    reg.create_policy(&admin, &NewPolicy::namespace("p", "org", "v1.*"))
        .unwrap();
    let default = reg.guard().serving();
    reg.guard()
        .adopt(glob_plugin(), 7, Some(default.clone()))
        .unwrap();
    assert_eq!(reg.guard().generation_id(), 7);
    assert_eq!(reg.guard().stamp().name, "tagguard-glob");
    assert_eq!(reg.guard().stamp().generation, 7);
    assert!(
        !reg.push(&admin, "org", "repo", "v1y", "sha256:b").unwrap(),
        "the adopted glob plugin decides: v1y does not match v1.*"
    );
    let swaps = |reg: &Registry| {
        reg.audit(&AuditQuery {
            kind: Some(PLUGIN_SWAPPED),
            ..Default::default()
        })
        .len()
    };
    assert_eq!(swaps(&reg), 0, "adopting records nothing");

    for stale in [7, 3] {
        assert!(matches!(
            reg.guard().adopt(default.clone(), stale, None),
            Err(EngineError::StaleGeneration { serving: 7, offered }) if offered == stale
        ));
    }
    assert_eq!(reg.guard().stamp().name, "tagguard-glob");

    let back = reg.guard().rollback(&admin).unwrap();
    assert_eq!(
        back.generation, 8,
        "later swaps number on from the adopted one"
    );
    assert_eq!(back.new.digest, default.stamp().digest);
    assert_eq!(swaps(&reg), 1);
    assert!(reg.push(&admin, "org", "repo", "v1z", "sha256:d").unwrap());
    assert_compliant(reg.db());
}

#[test]
fn a_swap_whose_record_cannot_be_written_does_not_happen() {
    let reg = common::registry(500);
    let before = reg.guard().stamp();
    reg.db().faults.sink_down.store(true, Ordering::SeqCst);
    let err = reg.guard().swap(&user("admin"), glob_plugin()).unwrap_err();
    assert!(matches!(err, EngineError::HostAudit { .. }), "{err}");
    assert_eq!(reg.guard().stamp(), before);
    reg.db().faults.sink_down.store(false, Ordering::SeqCst);
    assert!(matches!(
        reg.guard().rollback(&user("admin")),
        Err(EngineError::NoPreviousGeneration)
    ));
}

#[test]
fn pushes_from_four_threads_while_another_swaps_50_times_never_fail_and_stay_compliant() {
    let reg = Arc::new(common::registry(500));
    let admin = user("admin");
    reg.create_policy(&admin, &NewPolicy::namespace("p", "org", "v1.*"))
        .unwrap();
    let plugins = [common::default_plugin(), glob_plugin()];
    let stop = Arc::new(AtomicBool::new(false));
    let pushes = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (reg, stop, pushes) = (reg.clone(), stop.clone(), pushes.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let tag = format!("v1{}-{w}-{i}", if i.is_multiple_of(2) { "." } else { "x" });
                    match reg.push(&user("ci"), "org", &format!("repo{w}"), &tag, "sha256:a") {
                        Ok(_) => {}
                        Err(RegistryError::TagImmutable { .. }) => {}
                        Err(e) => panic!("push {tag} failed: {e}"),
                    }
                    // Re-pushing an immutable tag must be denied, not fail.
                    if i.is_multiple_of(10)
                        && reg
                            .tag("org", &format!("repo{w}"), &tag)
                            .is_some_and(|t| t.immutable)
                    {
                        assert!(matches!(
                            reg.push(&user("ci"), "org", &format!("repo{w}"), &tag, "sha256:b"),
                            Err(RegistryError::TagImmutable { .. })
                        ));
                    }
                    pushes.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let started = Instant::now();
    for n in 0..50 {
        let next = plugins[(n + 1) % 2].clone();
        reg.guard().swap(&admin, next).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        pushes.load(Ordering::Relaxed) > 100,
        "pushes: {}",
        pushes.load(Ordering::Relaxed)
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(reg.guard().generation_id(), 51);
    assert_eq!(
        reg.audit(&AuditQuery {
            kind: Some(PLUGIN_SWAPPED),
            ..Default::default()
        })
        .len(),
        50
    );
    // Every record names the plugin that decided, and its decision fits that plugin's dialect:
    // only the regex plugin makes `v1x...` tags immutable.
    let digests = [
        common::default_plugin().stamp().digest.clone(),
        glob_plugin().stamp().digest.clone(),
    ];
    for row in reg.audit(&AuditQuery {
        kind: Some("tag_made_immutable_by_policy"),
        ..Default::default()
    }) {
        let e = &row.entry;
        assert!(
            digests.contains(&e.plugin.digest),
            "unknown plugin {:?}",
            e.plugin
        );
        if e.tag.as_deref().is_some_and(|t| t.starts_with("v1x")) {
            assert_eq!(e.plugin.name, "tagguard-default", "{:?}", e.tag);
        }
    }
    assert_compliant(reg.db());
}

#[test]
fn concurrent_pushes_and_policy_changes_hold_the_invariants() {
    let reg = Arc::new(common::registry(7));
    let pushers: Vec<_> = (0..4)
        .map(|w| {
            let reg = reg.clone();
            std::thread::spawn(move || {
                for i in 0..150 {
                    let tag = if i % 3 == 0 {
                        format!("rel-{w}-{i}")
                    } else {
                        format!("v{w}.{i}")
                    };
                    match reg.push(&user("ci"), "org", "app", &tag, "sha256:a") {
                        Ok(_) | Err(RegistryError::TagImmutable { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    let admins: Vec<_> = (0..2)
        .map(|a| {
            let reg = reg.clone();
            std::thread::spawn(move || {
                let uuid = format!("p{a}");
                let pattern = if a == 0 { "rel-.*" } else { "v[0-9]\\.1.*" };
                reg.create_policy(&user("admin"), &NewPolicy::namespace(&uuid, "org", pattern))
                    .unwrap();
                for k in 0..5 {
                    std::thread::sleep(Duration::from_millis(5));
                    let p = format!("{pattern}|x{k}");
                    reg.update_policy(&user("admin"), &uuid, &p, true).unwrap();
                }
            })
        })
        .collect();
    for t in pushers.into_iter().chain(admins) {
        t.join().unwrap();
    }
    assert_compliant(reg.db());
    // Every tag that a policy in force matches is immutable now.
    let policies = reg.db().with(|s| s.policies.clone());
    for tag in reg.db().with(|s| s.tags.clone()) {
        let fires = !reg
            .guard()
            .explain(&tag.name, &policies)
            .unwrap()
            .is_empty();
        assert!(
            !fires || tag.immutable,
            "{} matches a policy but is mutable",
            tag.name
        );
    }
}

#[test]
fn the_host_types_can_be_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<tagguard_engine::TagGuard>();
    shared::<Plugin>();
    shared::<Runtime>();
    shared::<Registry>();
}
