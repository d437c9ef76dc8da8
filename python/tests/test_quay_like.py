"""The Quay-like example registry (python/examples/quay_like) runs the report's two
scenarios through the tagguard package, every expectation passes, and the records
it writes to ``logentry3`` are the records the Rust scenario runner writes for the
same files: same kinds, fields and order, timestamps aside."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tagguard

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python" / "examples"))

import quay_like  # noqa: E402

SCENARIOS = [
    REPO / "examples" / "scenarios" / "report-1-push.json",
    REPO / "examples" / "scenarios" / "report-2-retroactive.json",
]

BUILD_HINT = (
    "build it with `cargo build --release -p tagguard-host-test` at the repository root "
    "(it lands in target/release/), or point TAGGUARD_HOST_TEST at the binary"
)


def host_test_binary():
    """The Rust scenario runner: $TAGGUARD_HOST_TEST, else <repo>/target/release/."""
    configured = os.environ.get("TAGGUARD_HOST_TEST")
    if configured:
        if not Path(configured).is_file():
            pytest.fail(f"TAGGUARD_HOST_TEST={configured} does not exist; {BUILD_HINT}")
        return configured
    default = REPO / "target" / "release" / "tagguard-host-test"
    if not default.is_file():
        pytest.fail(f"the Rust scenario runner {default} does not exist; {BUILD_HINT}")
    return str(default)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Each scenario run once through the example, on its own SQLite file."""
    out = {}
    for path in SCENARIOS:
        db_path = tmp_path_factory.mktemp("quay_like") / f"{path.stem}.db"
        out[path.stem] = quay_like.run(path, db_path=db_path)
    return out


def rust_trail(path):
    """The chained entries the Rust runner commits for a scenario file (``--trail``)."""
    binary = host_test_binary()
    result = subprocess.run(
        [binary, "run", "--trail", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"tagguard-host-test failed on {path.name} (exit {result.returncode}):\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    entries = [line["entry"] for line in lines]
    for line in lines:
        line["entry"]["seq"] = line["seq"]
    package = tagguard.Plugin.default().stamp().digest
    runner = {e["plugin"]["digest"] for e in entries}
    if runner and runner != {package}:
        pytest.fail(
            f"{binary} embeds another default plugin ({', '.join(sorted(runner))}) than the "
            f"installed tagguard package ({package}): one of them is stale; rebuild the "
            f"runner (`cargo build --release -p tagguard-host-test`) or reinstall the package"
        )
    return entries


def as_quay_row(entry):
    """An engine entry as a ``logentry3`` row, by docs/audit.md's mapping. Its seq is
    compared; hash and prev_hash cover the entry's time, so they are checked apart
    (``test_logentry3_is_hash_chained``) and left out here."""
    metadata = dict(entry["metadata"])
    metadata["seq"] = entry["seq"]
    if entry["tag"] is not None:
        metadata.setdefault("tag", entry["tag"])
    if entry["performer"]["request_id"] is not None:
        metadata["request_id"] = entry["performer"]["request_id"]
    metadata["performer_kind"] = entry["performer"]["kind"]
    metadata["plugin_name"] = entry["plugin"]["name"]
    metadata["plugin_version"] = entry["plugin"]["version"]
    metadata["plugin_digest"] = entry["plugin"]["digest"]
    return {
        "kind": entry["kind"],
        "namespace": entry["namespace"],
        "repository": entry["repository"],
        "performer": entry["performer"]["name"],
        "ip": entry["performer"]["ip"],
        "metadata": metadata,
    }


def from_table(row):
    """A row of the example's ``logentry3`` (as its ``logs()`` reads it), datetime,
    hash and prev_hash aside."""
    picked = {k: row[k] for k in ("kind", "namespace", "repository", "performer", "ip", "metadata")}
    picked["metadata"] = {
        k: v for k, v in picked["metadata"].items() if k not in ("hash", "prev_hash")
    }
    return picked


def canonical(rows):
    """Rows as canonical JSON, each run id replaced by its first-appearance index."""
    runs = {}

    def rename(value):
        if isinstance(value, dict):
            return {
                k: (f"run#{runs.setdefault(v, len(runs))}" if k == "run_id" and isinstance(v, str)
                    else rename(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [rename(v) for v in value]
        return value

    return [json.dumps(rename(row), sort_keys=True) for row in rows]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_passes(reports, path):
    report = reports[path.stem]
    assert report.checks, "the scenario ran no check"
    failures = "\n".join(
        f"step {c.step}: {c.what}\n    {c.failure}" for c in report.failures()
    )
    assert report.passed, f"{report.name}:\n{failures}"


def differences(want, got):
    """The fields (``metadata.KEY`` for metadata) where two canonical rows differ."""
    want, got = json.loads(want), json.loads(got)
    pairs = [(k, want.get(k), got.get(k)) for k in sorted(set(want) | set(got)) if k != "metadata"]
    meta_w, meta_g = want.get("metadata", {}), got.get("metadata", {})
    pairs += [(f"metadata.{k}", meta_w.get(k), meta_g.get(k)) for k in sorted(set(meta_w) | set(meta_g))]
    return [
        f"  {key}: Rust {json.dumps(a)}, Python {json.dumps(b)}"
        for key, a, b in pairs
        if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True)
    ]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_logentry3_matches_rust_runner(reports, path):
    expected = canonical([as_quay_row(e) for e in rust_trail(path)])
    actual = canonical([from_table(r) for r in reports[path.stem].logs])
    assert expected, "the Rust runner wrote no record"
    for seq, (want, got) in enumerate(zip(expected, actual), start=1):
        if want != got:
            kind = json.loads(want)["kind"]
            pytest.fail(f"record {seq} ({kind}) differs:\n" + "\n".join(differences(want, got)))
    assert len(actual) == len(expected), (
        f"the Rust runner wrote {len(expected)} records, logentry3 has {len(actual)}"
    )


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_logentry3_is_hash_chained(reports, path):
    """Every row links to the one before it: seq counts from 1 without gaps, and each
    prev_hash is the hash of the row before (the first, the genesis hash)."""
    metas = [row["metadata"] for row in reports[path.stem].logs]
    assert [m["seq"] for m in metas] == list(range(1, len(metas) + 1))
    assert [m["prev_hash"] for m in metas] == [tagguard.GENESIS_HASH] + [m["hash"] for m in metas[:-1]]
    assert len({m["hash"] for m in metas}) == len(metas)


def test_a_failed_log_write_leaves_no_change(tmp_path, monkeypatch):
    """commit() is one transaction: when the record cannot be written, the tag is not either."""
    from quay_like import store

    registry = quay_like.Registry(str(tmp_path / "quay.db"))
    try:
        alice = quay_like.user("alice")
        registry.create_policy(alice, "org", "^latest$", uuid="latest-policy")
        before = len(registry.logs())

        def broken(entry):
            raise OSError("disk full")

        monkeypatch.setattr(store, "append_log", broken)
        with pytest.raises(tagguard.AuditSinkError):
            registry.push(alice, "org", "repo", "latest", "sha256:1111")
        monkeypatch.undo()
        assert registry.tag("org", "repo", "latest") is None
        assert len(registry.logs()) == before
    finally:
        registry.close()


def test_a_push_decided_before_a_policy_change_is_decided_again(tmp_path):
    """The sink refuses a push decided at an older policy version; the registry decides it
    again under the new policy, so the tag is immutable and has its record."""
    registry = quay_like.Registry(str(tmp_path / "quay.db"))
    alice = quay_like.user("alice")

    class PolicyCreatedMeanwhile:
        """Creates a policy after the push read its policies, before the engine decides."""

        def __init__(self, guard):
            self.guard, self.pushes = guard, 0

        def push(self, *args, **kwargs):
            self.pushes += 1
            if self.pushes == 1:
                registry.create_policy(alice, "org", "^latest$", uuid="late-policy")
            return self.guard.push(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.guard, name)

    try:
        registry.guard = racing = PolicyCreatedMeanwhile(registry.guard)
        assert registry.push(alice, "org", "repo", "latest", "sha256:1111") is True
        assert racing.pushes == 2
        made = [r for r in registry.logs() if r["kind"] == "tag_made_immutable_by_policy"]
        assert [(r["tag"], r["metadata"]["policy_uuid"]) for r in made] == [
            ("latest", "late-policy")
        ]
        assert registry.tag("org", "repo", "latest").immutable
    finally:
        registry.close()
