"""Runs tagguard scenario files (docs/scenarios.md) against the Quay-like registry.

Each scenario gets a fresh database. Every step is a check, as the Rust runner
(``tagguard-host-test run``) makes them: an action passes when its outcome is the
expected one (``ok``, ``denied`` with ``TAG_IMMUTABLE``, or ``error``: any other
registry or engine error), an expectation when the tables say what it expects.
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import tagguard

from .registry import Registry, RegistryError, TagImmutable, names_tag, user

# The fields of each step this runner supports (swap and rollback are left out: the
# example serves one plugin). Every action also takes "as", "admin" and "expect".
ACTIONS = {
    "create_policy": {"id", "namespace", "repository", "pattern", "matches"},
    "update_policy": {"id", "pattern", "matches"},
    "delete_policy": {"id"},
    "push": {"repo", "tag", "prefix", "count", "digest"},
    "delete_tag": {"repo", "tag"},
    "delete_manifest": {"repo", "digest"},
    "set_expiration": {"repo", "tag", "expires_at"},
    "toggle": {"repo", "tag", "immutable"},
}
EXPECTATIONS = {
    "expect_tag": {"repo", "tag", "immutable"},
    "expect_audit": {"kind", "repo", "tag", "metadata", "performer", "plugin", "count"},
    "explain": {"repo", "tag", "cause", "events"},
}
ACTOR_FIELDS = {"as", "admin", "expect"}


@dataclass
class Check:
    step: int
    what: str
    failure: Optional[str] = None  # None: passed


@dataclass
class Report:
    name: str
    checks: list = field(default_factory=list)
    logs: list = field(default_factory=list)  # logentry3 at the end, oldest first

    @property
    def passed(self):
        return all(c.failure is None for c in self.checks)

    def failures(self):
        return [c for c in self.checks if c.failure is not None]


def default_digest(tag):
    """The digest a push without one uses: sha256 of the tag name (as scenario.rs)."""
    return "sha256:" + hashlib.sha256(tag.encode()).hexdigest()


def actor_of(step):
    """``"as"``: a user (default ``alice``), or ``system`` for the registry itself."""
    name = step.get("as")
    return tagguard.Actor.system() if name == "system" else user(name or "alice")


def split_repo(repo):
    namespace, _, repository = repo.partition("/")
    if not namespace or not repository:
        raise ValueError(f'repo "{repo}": expected namespace/repository')
    return namespace, repository


def resolve(value):
    """``"$id"`` names the policy uuid ``id`` (the scenario id is the uuid)."""
    return value[1:] if isinstance(value, str) and value.startswith("$") else value


def same(a, b):
    """JSON equality (``True`` is not ``1``, as in serde_json)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def attempt(operation):
    """Runs an operation: ``("ok" | "denied" | "error", the error or None)``."""
    try:
        operation()
    except TagImmutable as e:
        return "denied", e
    except (RegistryError, tagguard.TagguardError) as e:
        return "error", e
    return "ok", None


def describe(error):
    kind = error.kind if isinstance(error, RegistryError) else type(error).__name__
    return f"{kind}: {error}"


VERB = {"ok": "succeeds", "denied": "is denied", "error": "fails"}
SHOULD = {"ok": "should succeed", "denied": "should be denied", "error": "should fail"}


def happened_text(outcome, error):
    if error is None:
        return "it succeeded"
    verb = "was denied" if outcome == "denied" else "failed"
    return f"it {verb} with {describe(error)}"


class Runner:
    def __init__(self, registry):
        self.registry = registry
        self.checks = []
        self.step = 0

    def record(self, what, failure=None):
        self.checks.append(Check(self.step, what, failure))

    def action(self, what, expect, operation):
        outcome, error = attempt(operation)
        if outcome == expect:
            suffix = f" with {describe(error)}" if error else ""
            self.record(f"{what} {VERB[expect]}{suffix}")
        else:
            self.record(f"{what} {SHOULD[expect]}", f"but {happened_text(outcome, error)}")

    def run_step(self, step):
        (kind, args), = step.items()
        if kind not in ACTIONS and kind not in EXPECTATIONS:
            raise ValueError(f"unknown or unsupported step {kind!r}")
        known = ACTIONS[kind] | ACTOR_FIELDS if kind in ACTIONS else EXPECTATIONS[kind]
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"{kind}: unknown field(s) {', '.join(unknown)}")
        if kind in ACTIONS:
            expect = args.get("expect", "ok")
            if expect not in VERB:
                raise ValueError(f'expect "{expect}": expected ok, denied or error')
            getattr(self, kind)(args, actor_of(args), expect)
        else:
            getattr(self, kind)(args)

    # --- actions --------------------------------------------------------------

    def create_policy(self, a, actor, expect):
        matches = a.get("matches", True)
        self.action(
            f"create policy {a['id']} {pattern_phrase(a['pattern'], matches)}",
            expect,
            lambda: self.registry.create_policy(
                actor, a["namespace"], a["pattern"],
                repository=a.get("repository"), matches=matches, uuid=a["id"],
            ),
        )

    def update_policy(self, a, actor, expect):
        matches = a.get("matches", True)
        self.action(
            f"update policy {a['id']} to {pattern_phrase(a['pattern'], matches)}",
            expect,
            lambda: self.registry.update_policy(actor, a["id"], a["pattern"], matches),
        )

    def delete_policy(self, a, actor, expect):
        self.action(
            f"delete policy {a['id']}", expect, lambda: self.registry.delete_policy(actor, a["id"])
        )

    def push(self, a, actor, expect):
        ns, repo = split_repo(a["repo"])
        if "tag" in a and "prefix" not in a and "count" not in a:
            tags = [a["tag"]]
        elif "prefix" in a and "count" in a and "tag" not in a:
            tags = [f"{a['prefix']}{i}" for i in range(a["count"])]
        else:
            raise ValueError("push: give either tag, or prefix and count")
        wrong, errors = [], []
        for tag in tags:
            digest = a.get("digest") or default_digest(tag)
            outcome, error = attempt(
                lambda: self.registry.push(actor, ns, repo, tag, digest)
            )
            if outcome != expect:
                wrong.append((tag, happened_text(outcome, error)))
            elif error is not None:
                errors.append(error)
        if len(tags) == 1:
            what = f"push {a['repo']}:{tags[0]}"
        else:
            what = f"push of {len(tags)} tags {a['repo']}:{tags[0]}..{tags[-1]}"
        if not wrong:
            suffix = ""
            if errors:
                suffix = f" with {describe(errors[0])}"
                if len(errors) > 1:
                    suffix += f" (and {len(errors) - 1} more)"
            self.record(f"{what} {VERB[expect]}{suffix}")
        elif len(tags) == 1:
            self.record(f"{what} {SHOULD[expect]}", f"but {wrong[0][1]}")
        else:
            self.record(
                f"{what} {SHOULD[expect]}", "\n      ".join(f"{t}: {h}" for t, h in wrong)
            )

    def delete_tag(self, a, actor, expect):
        ns, repo = split_repo(a["repo"])
        self.action(
            f"delete {a['repo']}:{a['tag']}",
            expect,
            lambda: self.registry.delete_tag(actor, ns, repo, a["tag"]),
        )

    def delete_manifest(self, a, actor, expect):
        ns, repo = split_repo(a["repo"])
        self.action(
            f"delete manifest {a['repo']}@{a['digest']}",
            expect,
            lambda: self.registry.delete_manifest(actor, ns, repo, a["digest"]),
        )

    def set_expiration(self, a, actor, expect):
        ns, repo = split_repo(a["repo"])
        self.action(
            f"expire {a['repo']}:{a['tag']} at {a['expires_at']}",
            expect,
            lambda: self.registry.set_expiration(actor, ns, repo, a["tag"], a["expires_at"]),
        )

    def toggle(self, a, actor, expect):
        ns, repo = split_repo(a["repo"])
        state = "immutable" if a["immutable"] else "mutable"
        self.action(
            f"make {a['repo']}:{a['tag']} {state}",
            expect,
            lambda: self.registry.set_immutable(
                actor, a.get("admin", False), ns, repo, a["tag"], a["immutable"]
            ),
        )

    # --- expectations -------------------------------------------------------------

    def expect_tag(self, a):
        ns, repo = split_repo(a["repo"])
        tag = self.registry.tag(ns, repo, a["tag"])
        got = None if tag is None else tag.immutable
        want = a.get("immutable")
        state = {True: "is immutable", False: "is mutable", None: "does not exist"}
        be = {True: "be immutable", False: "be mutable", None: "not exist"}
        failure = None
        if got != want:
            failure = f"expected {a['repo']}:{a['tag']} to {be[want]}, but it {state[got]}"
        self.record(f"{a['repo']}:{a['tag']} {state[want]}", failure)

    def expect_audit(self, a):
        kind, repo, tag = a["kind"], a.get("repo"), a.get("tag")
        namespace, _, repository = (repo or "").partition("/")
        namespace, repository = namespace or None, repository or None
        rows = [
            r for r in self.registry.logs()
            if r["kind"] == kind
            and (namespace is None or r["namespace"] == namespace)
            and in_place(r, repository, tag)
        ]
        metadata = a.get("metadata", {})
        matching, mismatches = 0, []
        for r in rows:
            bad = [
                f"{k}: expected {json.dumps(resolve(v))}, got {json.dumps(r['metadata'].get(k))}"
                for k, v in metadata.items()
                if not same(r["metadata"].get(k), resolve(v))
            ]
            if "performer" in a and r["performer"] != a["performer"]:
                bad.append(f"performer: expected {a['performer']}, got {r['performer']}")
            if "plugin" in a and r["metadata"].get("plugin_name") != a["plugin"]:
                bad.append(f"plugin: expected {a['plugin']}, got {r['metadata'].get('plugin_name')}")
            if bad:
                mismatches.append(f"record {r['id']}: {'; '.join(bad)}")
            else:
                matching += 1
        count = a.get("count")
        ok = matching >= 1 if count is None else matching == count
        failure = None
        if not ok:
            want = "at least 1" if count is None else str(count)
            failure = "\n      ".join(
                [f"expected {want} matching record(s), found {matching} of {len(rows)} {kind} records"]
                + mismatches[:3]
            )
        target = f" for {repo}" if repo else ""
        target += (":" if repo else " for tag ") + tag if tag else ""
        records = {None: "at least 1 record", 1: "1 record"}.get(count, f"{count} records")
        self.record(f"audit {kind}{target}: {records}", failure)

    def explain(self, a):
        ns, repo = split_repo(a["repo"])
        history = self.registry.history(ns, repo, a["tag"])
        events, cause = history["events"], history["cause"]
        wrong = []
        if a.get("events") is not None and len(events) != a["events"]:
            wrong.append(f"expected {a['events']} events, found {len(events)}")
        want = a.get("cause")
        if want and cause is None:
            wrong.append("expected a cause, the tag has no immutability change")
        elif want:
            for k, v in want.items():
                got = cause.get(k)
                if k == "plugin" and got is not None:
                    got = got.split("@")[0]
                if not same(got, resolve(v)):
                    wrong.append(f"cause.{k}: expected {json.dumps(resolve(v))}, got {json.dumps(got)}")
        summary = "no change recorded"
        if cause is not None:
            summary = (
                f"{cause['kind']} by {cause['performer']} (seq {cause['seq']}, "
                f"{cause['policy_uuid'] or 'manual'})"
            )
        self.record(
            f"explain {a['repo']}:{a['tag']}: {summary}", "\n      ".join(wrong) or None
        )


def in_place(row, repository, tag):
    """The place filter of an ``expect_audit``: repository and tag, as the mock's AuditQuery."""
    if repository is not None and tag is not None:
        return names_tag(row, repository, tag)
    if tag is not None:
        listed = row["metadata"].get("tags") if row["tag"] is None else None
        return row["tag"] == tag or any(t.get("tag") == tag for t in listed or [])
    if repository is not None:
        return row["repository"] == repository
    return True


def pattern_phrase(pattern, matches):
    return f'{"" if matches else "not "}matching "{pattern}"'


def load(path):
    path = Path(path)
    scenario = json.loads(path.read_text())
    if not isinstance(scenario.get("steps"), list):
        raise ValueError(f"{path}: no steps")
    return scenario


def run(path, db_path=":memory:", plugin=None):
    """Runs the scenario file at ``path`` against a fresh registry; returns its :class:`Report`.

    ``db_path`` is ``:memory:`` or a SQLite file that does not exist yet.
    """
    scenario = load(path)
    if str(db_path) != ":memory:" and Path(db_path).exists():
        raise FileExistsError(f"{db_path}: a scenario starts from an empty database")
    registry = Registry(str(db_path), plugin=plugin, batch_size=scenario.get("batch_size", 500))
    runner = Runner(registry)
    try:
        for number, step in enumerate(scenario["steps"], start=1):
            runner.step = number
            try:
                runner.run_step(step)
            except (KeyError, TypeError, ValueError) as e:
                runner.record("malformed step", f"{type(e).__name__}: {e}")
        runner.step = len(scenario["steps"]) + 1
        problems = registry.check_invariants()
        runner.record(
            "invariants: immutable tags recorded, run counts add up, none removed",
            "\n      ".join(problems) or None,
        )
        return Report(scenario["name"], runner.checks, registry.logs())
    finally:
        registry.close()


def print_report(report, path):
    print(f"\n== {report.name} ({path})")
    for check in report.checks:
        if check.failure is None:
            print(f"  PASS step {check.step:>3}: {check.what}")
        else:
            print(f"  FAIL step {check.step:>3}: {check.what}\n      {check.failure}")
