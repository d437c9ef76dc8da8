"""The package's decisions, end to end through a Python tag store and audit
sink: what each decision commits, and that nothing is committed without its
record or when the sink refuses."""

import threading

import pytest

import tagguard
from memory_registry import MemoryRegistry, digest_of

ALICE = tagguard.Actor("user", "alice", ip="192.0.2.10", request_id="req-1")
ADMIN = tagguard.Actor("user", "orgadmin")


def push(guard, registry, repo, tag, digest=None, actor=ALICE):
    namespace, repository = repo.split("/", 1)
    return guard.push(
        actor,
        namespace,
        repository,
        tag,
        digest or digest_of(tag),
        existing=registry.alive(namespace, repository, tag),
        policies=registry.in_scope(namespace, repository),
        policy_version=registry.policy_version,
    )


def create(guard, registry, uuid, pattern, repository=None, matches=True):
    candidate = tagguard.Policy(
        uuid, "org", pattern, repository=repository, tag_pattern_matches=matches
    )
    return guard.create_policy(ADMIN, candidate, list(registry.policies.values()))


def test_default_plugin_reports_its_contract(plugin):
    info = plugin.info()
    assert info.name == "tagguard-default"
    assert info.contract.startswith("tagguard:policy@0.3.")
    assert plugin.stamp().digest.startswith("sha256:")
    assert bytes(tagguard.DEFAULT_PLUGIN_WASM[:4]) == b"\0asm"


def test_push_made_immutable_by_policy_commits_tag_and_record(guard, registry):
    create(guard, registry, "latest-policy", "^latest$")
    outcome = push(guard, registry, "org/repo", "latest")
    assert not outcome.denied and outcome.immutable
    assert [m.policy.uuid for m in outcome.matched] == ["latest-policy"]
    tag = registry.alive("org", "repo", "latest")
    assert tag.immutable
    entry = registry.log[-1]
    assert entry.kind == "tag_made_immutable_by_policy"
    assert (entry.namespace, entry.repository, entry.tag) == ("org", "repo", "latest")
    assert entry.performer.name == "alice" and entry.performer.ip == "192.0.2.10"
    assert entry.performer.request_id == "req-1"
    assert entry.metadata["policy_uuid"] == "latest-policy"
    assert entry.metadata["trigger"] == "push"
    assert entry.plugin.name == "tagguard-default"
    assert entry.to_dict()["metadata"] == entry.metadata
    assert '"policy_uuid":"latest-policy"' in entry.metadata_json


def test_overwrite_of_immutable_tag_is_denied_and_recorded(guard, registry):
    create(guard, registry, "latest-policy", "^latest$")
    push(guard, registry, "org/repo", "latest", "sha256:1111")
    outcome = push(guard, registry, "org/repo", "latest", "sha256:3333")
    assert outcome.denied
    assert registry.alive("org", "repo", "latest").manifest_digest == "sha256:1111"
    denial = registry.log[-1]
    assert denial.kind == "tag_immutability_denied"
    assert denial.metadata["attempted_manifest_digest"] == "sha256:3333"


def test_mutable_push_commits_no_record(guard, registry):
    create(guard, registry, "latest-policy", "^latest$")
    before = len(registry.log)
    outcome = push(guard, registry, "org/repo", "v1")
    assert not outcome.denied and not outcome.immutable and outcome.matched == []
    assert len(registry.log) == before
    assert not registry.alive("org", "repo", "v1").immutable


def test_retroactive_run_marks_existing_tags_one_record_each(guard, registry):
    for i in range(30):
        push(guard, registry, "org/app", f"v1.0.{i}")
    push(guard, registry, "org/app", "main")
    outcome = create(guard, registry, "semver", "^v.*$", repository="app")
    assert outcome.policy.scope == "repository"
    assert outcome.run.count == 30 and outcome.run.batches == 1
    assert outcome.run.sample_tags[:2] == ["v1.0.0", "v1.0.1"]
    marked = [e for e in registry.log if e.kind == "tag_made_immutable_by_policy"]
    assert sorted(e.tag for e in marked) == sorted(f"v1.0.{i}" for i in range(30))
    assert {e.metadata["run_id"] for e in marked} == {outcome.run.run_id}
    assert registry.log[-1].kind == "tags_made_immutable_by_policy"
    assert registry.log[-1].metadata["count"] == 30
    assert not registry.alive("org", "app", "main").immutable


def test_per_batch_run_commits_one_narrowed_record_per_batch(plugin, registry):
    guard = tagguard.Guard(plugin, registry, registry, batch_size=7, granularity="per_batch")
    for i in range(20):
        push(guard, registry, "org/app", f"v{i}")
    registry.tags[1] = tagguard.Tag(1, "org", "app", "v0", digest_of("v0"), True)
    outcome = create(guard, registry, "all-v", "^v.*$", repository="app")
    assert outcome.run.count == 19 and outcome.run.batches == 3
    batches = [e for e in registry.log if e.kind == "tag_made_immutable_by_policy"]
    assert len(batches) == 3 and all(e.tag is None for e in batches)
    listed = [t["tag"] for e in batches for t in e.metadata["tags"]]
    assert listed == [f"v{i}" for i in range(1, 20)]
    assert [e.metadata["count"] for e in batches] == [6, 7, 6]


def test_delete_and_expiry_of_immutable_tag_are_denied(guard, registry):
    create(guard, registry, "latest-policy", "^latest$")
    push(guard, registry, "org/repo", "latest")
    push(guard, registry, "org/repo", "v1")
    tag = registry.alive("org", "repo", "latest")
    policies = registry.in_scope("org", "repo")
    assert guard.delete(ALICE, [tag], policies).blocking == [tag.id]
    expiry = guard.delete(
        ALICE, [tag], policies, action="set_expiration", expires_at="2027-01-01T00:00:00Z"
    )
    assert not expiry.allowed
    assert registry.kinds()[-2:] == ["tag_immutability_denied"] * 2
    v1 = registry.alive("org", "repo", "v1")
    assert guard.delete(ALICE, [v1], policies, action="delete_manifest").allowed
    assert registry.alive("org", "repo", "v1") is None


def test_delete_arguments_are_checked_by_name():
    guard_args = dict(action="set_expiration")
    registry = MemoryRegistry()
    guard = tagguard.Guard(tagguard.Plugin.default(), registry, registry)
    with pytest.raises(ValueError, match="expires_at: required"):
        guard.delete(ALICE, [], [], **guard_args)
    with pytest.raises(ValueError, match="action: 'purge'"):
        guard.delete(ALICE, [], [], action="purge")


def test_manual_change_records_and_reports_whether_it_changed(guard, registry):
    push(guard, registry, "org/repo", "v1")
    tag = registry.alive("org", "repo", "v1")
    assert guard.manual_change(ADMIN, tag, True) is True
    entry = registry.log[-1]
    assert entry.kind == "change_tag_immutability"
    assert entry.metadata["previous_immutable"] is False and entry.metadata["immutable"] is True
    again = registry.alive("org", "repo", "v1")
    assert guard.manual_change(ADMIN, again, True) is False
    assert len(registry.log) == 1


def test_update_and_delete_policy_are_recorded_and_never_unlock(guard, registry):
    push(guard, registry, "org/repo", "v1")
    first = create(guard, registry, "p", "^v1$").policy
    after = tagguard.Policy("p", "org", "^v2$")
    updated = guard.update_policy(ADMIN, first, after, [])
    assert updated.policy.tag_pattern == "^v2$" and updated.run.count == 0
    guard.delete_policy(ADMIN, updated.policy)
    assert registry.policies == {}
    assert registry.alive("org", "repo", "v1").immutable
    kinds = registry.kinds()
    assert "update_immutability_policy" in kinds and kinds[-1] == "delete_immutability_policy"
    update = next(e for e in registry.log if e.kind == "update_immutability_policy")
    assert update.metadata["before"]["tag_pattern"] == "^v1$"


def test_explain_validate_and_preview(guard, registry):
    for name in ["v1", "v2", "main"]:
        push(guard, registry, "org/repo", name)
    candidate = tagguard.Policy("p", "org", "  ^v[0-9]+$  ")
    stored = guard.validate_policy(candidate)
    assert stored.tag_pattern == "^v[0-9]+$"
    assert stored == tagguard.Policy("p", "org", "^v[0-9]+$")
    fired = guard.explain("v7", [stored, tagguard.Policy("q", "org", "^main$", tag_pattern_matches=False)])
    assert [(m.policy.uuid, m.pattern_matched) for m in fired] == [("p", True), ("q", False)]
    report = guard.preview(candidate, sample_limit=1)
    assert report.count == 2 and [t.name for t in report.sample] == ["v1"]
    assert registry.commits == 3  # the three pushes; preview and explain commit nothing


def test_invalid_policy_raises_with_kind_plugin_and_call(guard):
    with pytest.raises(tagguard.InvalidPolicyError) as caught:
        guard.validate_policy(tagguard.Policy("p", "org", "v(1"))
    err = caught.value
    assert isinstance(err, tagguard.TagguardError)
    assert err.kind == "invalid_pattern"
    assert err.call == "validate-policy"
    assert err.plugin.startswith("tagguard-default@")
    assert "tag-pattern" in err.reason
    with pytest.raises(tagguard.InvalidPolicyError) as caught:
        guard.validate_policy(
            tagguard.Policy("q", "org", "^x$"), [tagguard.Policy("p", "org", "^x$")]
        )
    assert caught.value.kind == "duplicate_pattern"


def test_sink_conflict_becomes_conflict_error_and_nothing_applies(guard, registry):
    create(guard, registry, "latest-policy", "^latest$")
    before = (dict(registry.tags), len(registry.log))
    registry.conflict_next_commit = True
    with pytest.raises(tagguard.ConflictError) as caught:
        push(guard, registry, "org/repo", "latest")
    assert caught.value.call == "on-push"
    assert "SinkConflict: the tag moved meanwhile" in caught.value.reason
    assert (dict(registry.tags), len(registry.log)) == before


def test_sink_outage_becomes_audit_sink_error_and_nothing_applies(guard, registry):
    create(guard, registry, "latest-policy", "^latest$")
    before = (dict(registry.tags), len(registry.log))
    registry.fail_next_commit = True
    with pytest.raises(tagguard.AuditSinkError, match="RuntimeError: database is down"):
        push(guard, registry, "org/repo", "latest")
    assert (dict(registry.tags), len(registry.log)) == before


def test_stale_policy_version_is_refused_by_the_sink(guard, registry):
    create(guard, registry, "latest-policy", "^latest$")
    with pytest.raises(tagguard.ConflictError):
        guard.push(
            ALICE, "org", "repo", "latest", "sha256:1", existing=None, policies=[],
            policy_version=registry.policy_version - 1,
        )
    assert registry.alive("org", "repo", "latest") is None


def test_store_failure_stops_the_run_and_the_failed_summary_is_recorded(guard, registry):
    push(guard, registry, "org/repo", "v1")

    def broken_scan(request):
        raise OSError("disk on fire")

    registry.scan = broken_scan
    with pytest.raises(tagguard.RunIncompleteError) as caught:
        create(guard, registry, "p", "^v1$")
    err = caught.value
    assert err.policy_uuid == "p" and err.changed == 0 and err.run_id.startswith("run-")
    assert "OSError: disk on fire" in str(err)
    assert isinstance(err.cause, tagguard.TagguardError)
    summary = registry.log[-1]
    assert summary.kind == "tags_made_immutable_by_policy"
    assert summary.metadata["status"] == "failed"
    assert "p" in registry.policies  # the policy stays stored; apply finishes the run
    registry.scan = MemoryRegistry.scan.__get__(registry)
    assert guard.apply_policy(ADMIN, registry.policies["p"]).count == 1


def test_store_returning_the_wrong_type_is_an_error_not_a_crash(guard, registry):
    push(guard, registry, "org/repo", "v1")
    registry.scan = lambda request: ["v1"]
    with pytest.raises(tagguard.RunIncompleteError, match="scan must return a list of tagguard.Tag"):
        create(guard, registry, "p", "^v1$")


def test_plugin_without_records_is_refused_nothing_committed(built_plugin, registry):
    guard = tagguard.Guard(built_plugin("missing_record_plugin"), registry, registry)
    registry.policies["p"] = tagguard.Policy("p", "org", "^latest$")
    with pytest.raises(tagguard.AuditMissingError) as caught:
        push(guard, registry, "org/repo", "latest")
    assert caught.value.call == "on-push"
    assert caught.value.plugin.startswith("missing-record@")
    assert registry.tags == {} and registry.log == []


def test_swap_and_rollback_are_recorded(guard, registry, built_plugin):
    glob = built_plugin("glob_policy")
    outcome = guard.swap(ADMIN, glob)
    assert outcome.generation == 2 and guard.generation == 2
    assert outcome.old.name == "tagguard-default" and outcome.new.name == glob.info().name
    assert guard.info().name == glob.info().name
    back = guard.rollback(ADMIN)
    assert back.generation == 3 and back.new.name == "tagguard-default"
    assert registry.kinds() == ["immutability_plugin_swapped"] * 2


def test_swap_to_a_plugin_that_fails_its_self_test_is_refused(guard, registry, built_plugin):
    with pytest.raises(tagguard.SwapRejectedError) as caught:
        guard.swap(ADMIN, built_plugin("missing_record_plugin"))
    err = caught.value
    assert isinstance(err.cause, tagguard.AuditMissingError)
    assert err.current.startswith("tagguard-default@")
    assert guard.generation == 1 and registry.log == []
    with pytest.raises(tagguard.NoPreviousGenerationError):
        guard.rollback(ADMIN)


def test_hostile_plugin_loop_is_stopped_by_its_deadline(built_plugin, registry):
    guard = tagguard.Guard(built_plugin("hostile_plugin_loop_push"), registry, registry)
    with pytest.raises(tagguard.PluginTimeoutError) as caught:
        push(guard, registry, "org/repo", "v1")
    assert caught.value.call == "on-push" and caught.value.after_seconds > 0
    assert registry.tags == {} and registry.log == []


def test_loading_garbage_and_missing_files_raise_typed_errors(tmp_path):
    with pytest.raises(tagguard.LoadError, match="not a WebAssembly component"):
        tagguard.Plugin.from_bytes(b"hello")
    with pytest.raises(tagguard.PluginReadError) as caught:
        tagguard.Plugin.from_file(str(tmp_path / "nope.wasm"))
    assert caught.value.path.endswith("nope.wasm")


def test_bad_settings_and_actor_kinds_name_the_field(plugin, registry):
    with pytest.raises(tagguard.InvalidSettingsError) as caught:
        tagguard.Guard(plugin, registry, registry, batch_size=0)
    assert caught.value.field == "batch_size"
    with pytest.raises(ValueError, match="granularity"):
        tagguard.Guard(plugin, registry, registry, granularity="sometimes")
    with pytest.raises(ValueError, match="kind: 'wizard'"):
        tagguard.Actor("wizard", "merlin")


def test_decisions_release_the_interpreter_for_other_threads(guard, registry):
    """Pushes from several Python threads at once all commit, each with its record."""
    create(guard, registry, "all", "^t.*$")
    lock = threading.Lock()
    errors = []

    class Locked:
        def commit(self, change, entries):
            with lock:
                registry.commit(change, entries)

    threaded = tagguard.Guard(tagguard.Plugin.default(), registry, Locked())

    def worker(k):
        try:
            for i in range(20):
                push(threaded, registry, "org/repo", f"t{k}-{i}")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    marked = [e for e in registry.log if e.kind == "tag_made_immutable_by_policy"]
    assert len(marked) == 80 and all(t.immutable for t in registry.tags.values())


def test_chained_entries_verify_with_the_cli_and_tampering_is_found(guard, registry, tmp_path):
    import json
    import subprocess

    from conftest import release_binary

    create(guard, registry, "latest-policy", "^latest$")
    push(guard, registry, "org/repo", "latest", "sha256:1111")
    push(guard, registry, "org/repo", "latest", "sha256:2222")
    prev, lines = tagguard.GENESIS_HASH, []
    for seq, entry in enumerate(registry.log, start=1):
        chained = entry.chained(seq, prev)
        assert chained.prev_hash == prev and chained.seq == seq
        row = chained.quay_log_line()
        meta = json.loads(row["metadata_json"])
        assert (meta["seq"], meta["hash"], meta["prev_hash"]) == (seq, chained.hash, prev)
        assert row["kind"] == entry.kind and row["account"] == "org"
        prev = chained.hash
        lines.append(chained.to_json())
    assert len(lines) == 4
    cli = release_binary("tagguard")
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(lines) + "\n")
    ok = subprocess.run([cli, "verify-log", log], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines[2] = lines[2].replace('"alice"', '"mallory"')
    log.write_text("\n".join(lines) + "\n")
    bad = subprocess.run([cli, "verify-log", log], capture_output=True, text=True)
    assert bad.returncode != 0 and "3" in bad.stdout + bad.stderr
