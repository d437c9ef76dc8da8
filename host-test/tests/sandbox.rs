//! Hostile plugins: each fails with its typed error within its deadline or
//! limit, nothing changes without a record, and the registry keeps serving.

mod common;

use std::time::{Duration, Instant};
use tagguard_engine::{
    EngineError, Limits, Plugin, RunTrigger, Runtime, RuntimeConfig, Settings, built_plugin_path,
};
use tagguard_host_test::compliance::assert_compliant;
use tagguard_host_test::{AuditQuery, NewPolicy, Registry, RegistryError, user};

fn limits() -> Limits {
    Limits {
        decision_deadline: Duration::from_millis(100),
        run_progress_window: Duration::from_millis(300),
        ..Limits::default()
    }
}

fn runtime_with(limits: Limits) -> Runtime {
    Runtime::with_config(RuntimeConfig {
        limits,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn hostile(runtime: &Runtime, variant: &str) -> Result<Plugin, EngineError> {
    Plugin::from_file(
        runtime,
        built_plugin_path(&format!("hostile-plugin-{variant}")),
    )
}

fn engine_error(err: RegistryError) -> EngineError {
    match err {
        RegistryError::Engine(e) => e,
        other => panic!("expected an engine error, got {other}"),
    }
}

/// A registry with `plugin`, a policy `latest`, and a push of `latest` that must fail.
fn failing_push(runtime: &Runtime, plugin: Plugin) -> (Registry, EngineError, Duration) {
    let reg = Registry::new(plugin, Settings::default());
    let policy = NewPolicy::namespace("p", "org", "latest");
    reg.db().with(|s| {
        s.policies.push(tagguard_engine::Policy {
            uuid: policy.uuid.clone().unwrap(),
            scope: tagguard_engine::Scope::Namespace,
            namespace: "org".into(),
            repository: None,
            tag_pattern: "latest".into(),
            tag_pattern_matches: true,
        })
    });
    let started = Instant::now();
    let err = engine_error(
        reg.push(&user("alice"), "org", "repo", "latest", "sha256:a")
            .unwrap_err(),
    );
    let elapsed = started.elapsed();
    assert!(
        reg.tag("org", "repo", "latest").is_none(),
        "nothing changed"
    );
    assert!(
        reg.audit(&AuditQuery::default()).is_empty(),
        "nothing recorded"
    );
    if matches!(
        err,
        EngineError::Timeout { .. }
            | EngineError::MemoryLimit { .. }
            | EngineError::GuestTrap { .. }
    ) {
        assert_eq!(
            reg.guard().pooled_instances(),
            0,
            "the trapped instance was dropped"
        );
    }
    assert_compliant(reg.db());
    // The registry keeps serving: a healthy plugin swapped in decides the same push.
    let healthy = Plugin::default_plugin(runtime).unwrap();
    reg.guard().swap(&user("admin"), healthy).unwrap();
    assert!(
        reg.push(&user("alice"), "org", "repo", "latest", "sha256:a")
            .unwrap()
    );
    assert_compliant(reg.db());
    let _ = runtime;
    (reg, err, elapsed)
}

#[test]
fn an_infinite_loop_in_on_push_times_out_at_its_deadline() {
    let runtime = runtime_with(limits());
    let (_, err, elapsed) = failing_push(&runtime, hostile(&runtime, "loop-push").unwrap());
    assert!(
        matches!(
            err,
            EngineError::Timeout {
                call: "on-push",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "stopped after {elapsed:?}"
    );
}

/// Limits with a generous deadline, so a memory fault is what stops the call.
fn memory_limits() -> Limits {
    Limits {
        decision_deadline: Duration::from_secs(5),
        ..limits()
    }
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    let runtime = runtime_with(memory_limits());
    let (_, err, _) = failing_push(&runtime, hostile(&runtime, "memory-bomb").unwrap());
    let EngineError::MemoryLimit {
        limit_bytes,
        call: "on-push",
        ..
    } = err
    else {
        panic!("{err}")
    };
    assert_eq!(limit_bytes, 64 << 20);
}

#[test]
fn unbounded_recursion_is_a_guest_trap() {
    let runtime = runtime_with(limits());
    let (_, err, _) = failing_push(&runtime, hostile(&runtime, "recursion").unwrap());
    assert!(
        matches!(
            err,
            EngineError::GuestTrap {
                call: "on-push",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_panic_is_a_guest_trap_carrying_the_plugins_message() {
    let runtime = runtime_with(limits());
    let (_, err, _) = failing_push(&runtime, hostile(&runtime, "panic").unwrap());
    let EngineError::GuestTrap { message, .. } = &err else {
        panic!("{err}")
    };
    assert!(message.contains("deliberate panic in on-push"), "{message}");
}

#[test]
fn a_trap_reports_only_what_the_failing_call_wrote_to_stderr() {
    let runtime = runtime_with(limits());
    let reg = Registry::new(hostile(&runtime, "panic").unwrap(), Settings::default());
    // `explain` writes a note to stderr and returns; its instance goes back to the pool.
    reg.guard().explain("latest", &[]).unwrap();
    assert_eq!(reg.guard().pooled_instances(), 1);
    let err = engine_error(
        reg.push(&user("alice"), "org", "repo", "latest", "sha256:a")
            .unwrap_err(),
    );
    let EngineError::GuestTrap { message, .. } = &err else {
        panic!("{err}")
    };
    assert!(message.contains("deliberate panic in on-push"), "{message}");
    assert!(!message.contains("stale note"), "{message}");
}

#[test]
fn a_40_mib_record_is_refused_before_the_host_copies_it() {
    // It fits in the plugin's 64 MiB memory; the import call's byte budget stops it.
    let runtime = runtime_with(memory_limits());
    let (_, err, _) = failing_push(&runtime, hostile(&runtime, "huge-record").unwrap());
    let EngineError::GuestTrap { message, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        message.contains("hostcalls has been exhausted"),
        "{message}"
    );
    // With a larger call budget, the record itself is refused by the size cap.
    let roomy = runtime_with(Limits {
        records: tagguard_engine::RecordLimits {
            max_call_bytes: 48 << 20,
            ..Default::default()
        },
        ..memory_limits()
    });
    let (_, err, _) = failing_push(&roomy, hostile(&roomy, "huge-record").unwrap());
    let EngineError::AuditMissing { reason, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        reason.contains("metadata-json") && reason.contains("at most 65536"),
        "{reason}"
    );
}

#[test]
fn a_plugin_that_imports_the_filesystem_or_another_world_does_not_load() {
    let runtime = runtime_with(limits());
    let err = hostile(&runtime, "filesystem")
        .err()
        .expect("must not load");
    let EngineError::ContractMismatch { reason, .. } = &err else {
        panic!("{err}")
    };
    assert!(reason.contains("wasi:filesystem"), "{reason}");
    let err = hostile(&runtime, "wrong-world")
        .err()
        .expect("must not load");
    assert!(matches!(err, EngineError::ContractMismatch { .. }), "{err}");
}

#[test]
fn a_run_that_spins_between_scans_is_stopped_and_summarised_by_the_host() {
    let runtime = runtime_with(limits());
    let reg = Registry::new(hostile(&runtime, "loop-run").unwrap(), Settings::default());
    reg.db()
        .seed_tags("org", "repo", (0..10).map(|i| format!("v{i}")));
    let policy = tagguard_engine::Policy {
        uuid: "p".into(),
        scope: tagguard_engine::Scope::Namespace,
        namespace: "org".into(),
        repository: None,
        tag_pattern: "v1".into(),
        tag_pattern_matches: true,
    };
    let started = Instant::now();
    let err = reg
        .guard()
        .apply_policy(&user("admin"), &policy, RunTrigger::Reapplied)
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let EngineError::RunIncomplete {
        cause, changed: 0, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert!(
        matches!(
            **cause,
            EngineError::Timeout {
                call: "run-retroactive",
                ..
            }
        ),
        "{cause}"
    );
    let summary = reg.audit(&AuditQuery {
        kind: Some("tags_made_immutable_by_policy"),
        ..Default::default()
    });
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].entry.meta_str("written_by"), Some("host"));
    assert!(reg.db().with(|s| s.tags.iter().all(|t| !t.immutable)));
    assert_compliant(reg.db());
}

#[test]
fn a_legitimate_run_over_200000_tags_outlives_a_short_deadline_by_making_progress() {
    let window = Duration::from_millis(50);
    let runtime = runtime_with(Limits {
        run_progress_window: window,
        ..limits()
    });
    let reg = Registry::new(
        Plugin::default_plugin(&runtime).unwrap(),
        Settings::default(),
    );
    reg.db().seed_tags(
        "org",
        "repo",
        (0..200_000).map(|i| {
            if i % 2 == 0 {
                format!("v{i}")
            } else {
                format!("dev-{i}")
            }
        }),
    );
    let started = Instant::now();
    let out = reg
        .create_policy(&user("admin"), &NewPolicy::namespace("p", "org", "v[0-9]+"))
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.run.count, 100_000);
    assert_eq!(out.run.batches, 400);
    assert!(
        took > window,
        "the run took {took:?}, longer than one window of {window:?}, and was not cut off"
    );
    assert_compliant(reg.db());
}

#[test]
fn a_swap_to_each_hostile_plugin_is_refused_and_the_old_plugin_keeps_serving() {
    let runtime = runtime_with(limits());
    let reg = common::registry(500);
    reg.create_policy(&user("admin"), &NewPolicy::namespace("p", "org", "latest"))
        .unwrap();
    let before = reg.guard().stamp();
    for variant in [
        "loop-push",
        "loop-run",
        "memory-bomb",
        "recursion",
        "panic",
        "huge-record",
    ] {
        let candidate = hostile(&runtime, variant).unwrap();
        let err = reg.guard().swap(&user("admin"), candidate).unwrap_err();
        assert!(
            matches!(err, EngineError::SwapRejected { .. }),
            "{variant}: {err}"
        );
        assert_eq!(
            reg.guard().stamp(),
            before,
            "{variant}: the old plugin still serves"
        );
    }
    let forgetful =
        Plugin::from_file(&runtime, built_plugin_path("missing-record-plugin")).unwrap();
    assert!(matches!(
        reg.guard().swap(&user("admin"), forgetful),
        Err(EngineError::SwapRejected { .. })
    ));
    assert!(
        reg.audit(&AuditQuery {
            kind: Some("immutability_plugin_swapped"),
            ..Default::default()
        })
        .is_empty()
    );
    assert!(
        reg.push(&user("alice"), "org", "repo", "latest", "sha256:a")
            .unwrap()
    );
    assert_compliant(reg.db());
}
