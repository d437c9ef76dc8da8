"""The default plugin answers the same under any host: a portability test.

The plugin is a WebAssembly component, and the contract (``wit/``) is all a host
needs to run it. This test runs the very bytes the engine embeds
(``tagguard.DEFAULT_PLUGIN_WASM``) under two hosts:

* the Rust host, through the ``tagguard`` package (``Plugin.default()`` and a
  ``Guard`` over an in-memory tag store), and
* ``wasm_host.WasmHost``, a host written here on wasmtime-py from the WIT contract
  alone, with no tagguard code,

and checks, field by field, that the read-only exports answer the same:

* ``validate-policy`` for every policy that the example scenarios
  (``examples/scenarios/*.json`` and ``examples/scenarios/quay/*.json``) create or
  update, in order, against the policies the scenario holds at that step, including
  the patterns the plugin rejects (the same kind of error on both sides), plus a few
  extra patterns;
* ``explain`` of every tag the scenarios push, and a few more, against the whole
  policy set the scenarios end with (each host compiles the list into a
  ``policy-set`` resource and maps the indices the plugin answers with back to the
  policies; the firing policies, in order, are compared);
* ``preview`` of every accepted policy over the tags its scenario pushed (all alive
  and mutable) and over the tags it leaves (deleted ones gone, immutable ones as its
  ``expect_tag`` steps say), comparing the count and the sample's tags in order,
  through tag stores that cap pages at a few tags so the plugin has to page.

Neither host may write: the Rust host's audit sink and both tag stores fail the call
if asked to commit or mark anything, and the wasmtime-py host fails the call if the
plugin stages an audit record. If wasmtime-py or the package is missing the test
fails (it does not skip): wasmtime is a declared test dependency.
"""

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pytest

import tagguard
import wasm_host
from wasm_host import ContractBreach, Policy, PluginRefused, Tag, WasmHost

REPO = Path(__file__).resolve().parents[2]
WORLD_WIT = REPO / "wit" / "world.wit"
SCENARIO_DIR = REPO / "examples" / "scenarios"
SCENARIOS = sorted(SCENARIO_DIR.glob("*.json")) + sorted(SCENARIO_DIR.glob("quay/*.json"))

# A store may return fewer tags than a scan asks for; a small cap makes every preview
# over more than a handful of tags page, on both hosts.
PAGE_CAP = 7
SAMPLE_LIMITS = (3, 10)

# Patterns beyond the scenarios', validated against no other policy.
EXTRA_PATTERNS = [
    ("  ^v[0-9]+$  ", True),  # trimmed, nothing else changed
    ("   ", True),  # empty after trimming
    ("a++", True),  # possessive quantifier: Quay reads it differently
    ("[a-z&&[^x]]", True),  # class set operation: likewise
    ("(?<=v)1", True),  # look-behind
    ("(a)\\1", False),  # backreference
    ("(unclosed", True),
    (" " + "x" * 256 + " ", True),  # 256 characters once trimmed: allowed
    ("x" * 257, True),
]

# Tag names to explain besides the pushed ones, two of them not valid OCI tag names.
EXTRA_TAG_NAMES = ["latest", "v2.0.0", "release-2", "dev-x", "main", "-leading-dash", "t" * 129]


# --- the scenarios ---------------------------------------------------------------


@dataclass
class TagTable:
    """A scenario's tags, in id order (ids grow with creation); deleted ones are not alive."""

    tags: List[Tag] = field(default_factory=list)
    dead: set = field(default_factory=set)

    def alive(self, namespace: str, repository: str, name: str) -> Optional[Tag]:
        for t in self.tags:
            if (t.namespace, t.repository, t.name) == (namespace, repository, name) and t.id not in self.dead:
                return t
        return None

    def put(self, tag: Tag) -> None:
        """Adds the tag, or replaces the one with its id."""
        self.tags = sorted([t for t in self.tags if t.id != tag.id] + [tag], key=lambda t: t.id)

    def scan(self, namespace: str, repository: Optional[str], after_id: int, limit: int) -> List[Tag]:
        """Alive tags in scope with id > after_id, ascending id, at most limit (and PAGE_CAP)."""
        assert limit >= 1, f"scan limit {limit}"
        page = sorted(
            (
                t
                for t in self.tags
                if t.id not in self.dead
                and t.namespace == namespace
                and (repository is None or t.repository == repository)
                and t.id > after_id
            ),
            key=lambda t: t.id,
        )
        return page[: min(limit, PAGE_CAP)]


@dataclass
class Scenario:
    name: str
    policy_steps: List[Tuple[str, dict]]  # ("create_policy" | "update_policy" | "delete_policy", fields)
    pushed: TagTable  # every tag it pushed, alive and mutable (as `tagguard preview` sees them)
    final: TagTable  # the tags it leaves: deletions and the `expect_tag` states applied

    def tables(self) -> Dict[str, TagTable]:
        return {"pushed": self.pushed, "final": self.final}

    def uuid(self, step_id: str) -> str:
        # Scenarios reuse ids; explain takes every scenario's policies at once.
        return f"{self.name}:{step_id}"


def split_repo(repo: str) -> Tuple[str, str]:
    namespace, repository = repo.split("/", 1)
    return namespace, repository


def load_scenario(path: Path) -> Scenario:
    """Its policy steps, the tags it pushes, and the tags it leaves: pushes create or
    move tags, deletes that succeed remove them, and each tag takes the state its last
    `expect_tag` gives."""
    steps = json.loads(path.read_text())["steps"]
    table = TagTable()
    policy_steps = []
    next_id = 1
    for step in steps:
        (action, f), = step.items()
        if action in ("create_policy", "update_policy", "delete_policy"):
            policy_steps.append((action, f))
        elif action == "push" and f.get("expect", "ok") == "ok":
            namespace, repository = split_repo(f["repo"])
            names = [f["tag"]] if "tag" in f else [f"{f['prefix']}{i}" for i in range(f["count"])]
            for name in names:
                existing = table.alive(namespace, repository, name)
                tag_id = existing.id if existing else next_id
                digest = f.get("digest", f"sha256:{tag_id:064x}")
                if existing is None:
                    next_id += 1
                table.put(Tag(tag_id, namespace, repository, name, digest))
        elif action == "delete_tag" and f.get("expect", "ok") == "ok":
            t = table.alive(*split_repo(f["repo"]), f["tag"])
            if t is not None:
                table.dead.add(t.id)
        elif action == "expect_tag":
            t = table.alive(*split_repo(f["repo"]), f["tag"])
            if t is not None and f["immutable"] is None:
                table.dead.add(t.id)
            elif t is not None:
                table.put(replace(t, immutable=f["immutable"]))
    name = str(path.relative_to(SCENARIO_DIR).with_suffix(""))
    pushed = TagTable([replace(t, immutable=False) for t in table.tags])
    return Scenario(name, policy_steps, pushed, table)


# --- the two hosts -----------------------------------------------------------------

POLICY_FIELDS = ("uuid", "scope", "namespace", "repository", "tag_pattern", "tag_pattern_matches")
TAG_FIELDS = ("id", "namespace", "repository", "name", "manifest_digest", "immutable")


def fields(value: object, names: Tuple[str, ...]) -> dict:
    """The named fields of a policy or tag of either host, to compare field by field."""
    return {name: getattr(value, name) for name in names}


def answer(call: Callable[[], object]) -> tuple:
    """("ok", value) or ("refused", error case, kind) from either host."""
    try:
        return ("ok", call())
    except PluginRefused as e:  # wasmtime-py host
        return ("refused", e.error, e.kind)
    except tagguard.InvalidPolicyError as e:  # Rust host
        return ("refused", "invalid_policy", e.kind)
    except tagguard.PluginRefusedError as e:
        return ("refused", e.kind, e.kind)


class ReadOnlyStore:
    """The Rust host's tag store and audit sink: scans a TagTable; any write is noted
    and refused (these calls must not write, so the test fails)."""

    def __init__(self, table: TagTable) -> None:
        self.table = table
        self.writes: List[str] = []

    def scan(self, request: "tagguard.ScanRequest") -> List["tagguard.Tag"]:
        page = self.table.scan(request.namespace, request.repository, request.after_id, request.limit)
        return [tagguard.Tag(**fields(t, TAG_FIELDS)) for t in page]

    def refuse(self, what: str):
        self.writes.append(what)
        raise AssertionError(f"the Rust host tried to {what} in a read-only call")

    def mark_immutable(self, changes):
        self.refuse(f"mark {len(changes)} tags immutable")

    def mark_immutable_batch(self, batch):
        self.refuse("mark a batch of tags immutable")

    def commit(self, change, entries):  # AuditSink
        self.refuse(f"commit {change!r} with {len(entries)} audit records")


class Hosts:
    """The same plugin bytes under the Rust host and under wasmtime-py."""

    def __init__(self) -> None:
        self.plugin = tagguard.Plugin.default()
        self.wasm = WasmHost(tagguard.DEFAULT_PLUGIN_WASM)

    def rust(self, table: TagTable, call: Callable[["tagguard.Guard"], object]) -> tuple:
        """The Rust host's answer to `call` on a guard over `table`, which must not write."""
        store = ReadOnlyStore(table)
        result = answer(lambda: call(tagguard.Guard(self.plugin, store, store)))
        assert store.writes == [], f"the Rust host wrote in a read-only call: {store.writes}"
        return result

    # Each method returns (Rust host's answer, wasmtime-py host's answer).

    def validate(self, candidate: Policy, existing: List[Policy]) -> Tuple[tuple, tuple]:
        rust = self.rust(
            TagTable(),
            lambda guard: fields(
                guard.validate_policy(to_tagguard(candidate), [to_tagguard(p) for p in existing]),
                POLICY_FIELDS,
            ),
        )
        wasm = answer(
            lambda: fields(
                replace(candidate, tag_pattern=self.wasm.validate_policy(candidate, existing)),
                POLICY_FIELDS,
            )
        )
        return rust, wasm

    def explain(self, tag_name: str, policies: List[Policy]) -> Tuple[tuple, tuple]:
        rust = self.rust(
            TagTable(),
            lambda guard: [
                (fields(m.policy, POLICY_FIELDS), m.pattern_matched)
                for m in guard.explain(tag_name, [to_tagguard(p) for p in policies])
            ],
        )
        wasm = answer(
            lambda: [
                (fields(m.policy, POLICY_FIELDS), m.pattern_matched)
                for m in self.wasm.explain(tag_name, policies)
            ]
        )
        return rust, wasm

    def preview(self, policy: Policy, sample_limit: int, table: TagTable) -> Tuple[tuple, tuple]:
        def rust_preview(guard):
            report = guard.preview(to_tagguard(policy), sample_limit)
            return report.count, [fields(t, TAG_FIELDS) for t in report.sample]

        def wasm_preview():
            report = self.wasm.preview(policy, sample_limit, table.scan)
            return report.count, [fields(t, TAG_FIELDS) for t in report.sample]

        return self.rust(table, rust_preview), answer(wasm_preview)


def to_tagguard(p: Policy) -> "tagguard.Policy":
    return tagguard.Policy(
        p.uuid,
        p.namespace,
        p.tag_pattern,
        repository=p.repository,
        tag_pattern_matches=p.tag_pattern_matches,
    )


@dataclass
class Replay:
    """A scenario's policy steps as both hosts validated them."""

    # (candidate, the policies held then, Rust host's answer, wasmtime-py host's answer)
    validations: List[Tuple[Policy, List[Policy], tuple, tuple]]
    policies: List[Policy]  # what the scenario ends with


def replay(scenario: Scenario, hosts: Hosts) -> Replay:
    """Creates, updates and deletes the scenario's policies in order. Each candidate is
    validated against the policies held at that step; accepted ones are stored as the
    independent host normalised them (the comparison below proves the Rust host agrees)."""
    held: Dict[str, Policy] = {}
    validations = []
    for action, f in scenario.policy_steps:
        uuid = scenario.uuid(f["id"])
        if action == "delete_policy":
            held.pop(uuid, None)
            continue
        if action == "update_policy":
            if uuid not in held:
                continue  # the registry refuses this before any plugin is asked
            namespace, repository = held[uuid].namespace, held[uuid].repository
        else:
            namespace, repository = f["namespace"], f.get("repository")
        candidate = Policy(uuid, namespace, repository, f["pattern"], f.get("matches", True))
        existing = list(held.values())
        rust, wasm = hosts.validate(candidate, existing)
        validations.append((candidate, existing, rust, wasm))
        if wasm[0] == "ok":
            held[uuid] = replace(candidate, tag_pattern=wasm[1]["tag_pattern"])
    return Replay(validations, list(held.values()))


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hosts() -> Hosts:
    return Hosts()


@pytest.fixture(scope="module")
def scenarios() -> Dict[str, Scenario]:
    loaded = [load_scenario(p) for p in SCENARIOS]
    return {s.name: s for s in loaded}


@pytest.fixture(scope="module")
def replays(hosts: Hosts, scenarios: Dict[str, Scenario]) -> Dict[str, Replay]:
    return {name: replay(s, hosts) for name, s in scenarios.items()}


SCENARIO_NAMES = [str(p.relative_to(SCENARIO_DIR).with_suffix("")) for p in SCENARIOS]


# --- tests ---------------------------------------------------------------------------


def contract_of_wit() -> str:
    """The contract wit/world.wit declares, e.g. ``tagguard:policy@0.3.0``."""
    declared = re.search(
        r"^package\s+([a-z0-9-]+:[a-z0-9-]+@[0-9A-Za-z.+-]+)\s*;", WORLD_WIT.read_text(), re.M
    )
    assert declared, f"no package declaration in {WORLD_WIT}"
    return declared.group(1)


def test_both_hosts_run_the_same_plugin(hosts: Hosts):
    rust = hosts.plugin.info()
    wasm = hosts.wasm.info()
    assert (rust.name, rust.version, rust.contract) == (wasm["name"], wasm["version"], wasm["contract"])
    contract = contract_of_wit()
    assert wasm["contract"] == contract
    # The wasmtime-py host is written against that contract too (its import and export names).
    assert f"{wasm_host.PACKAGE}@{wasm_host.VERSION}" == contract


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_validate_policy_answers_the_same(name: str, replays: Dict[str, Replay]):
    validations = replays[name].validations
    assert validations, f"{name} validates no policy"
    for candidate, existing, rust, wasm in validations:
        assert rust == wasm, (
            f"validate-policy of {candidate} against {[p.uuid for p in existing]}: "
            f"Rust host {rust}, wasmtime-py host {wasm}"
        )


@pytest.mark.parametrize("pattern, matches", EXTRA_PATTERNS)
def test_validate_policy_answers_the_same_for_more_patterns(hosts: Hosts, pattern: str, matches: bool):
    for repository in (None, "app"):
        candidate = Policy("extra", "org", repository, pattern, matches)
        rust, wasm = hosts.validate(candidate, [])
        assert rust == wasm, f"validate-policy of {candidate}: Rust host {rust}, wasmtime-py host {wasm}"


def test_the_cases_include_rejections_of_every_kind(replays: Dict[str, Replay], hosts: Hosts):
    """The comparison is not vacuous: both hosts reject patterns, for every reason the
    scenarios and the extra patterns give."""
    rejected = {
        wasm[2]
        for r in replays.values()
        for _, _, _, wasm in r.validations
        if wasm[0] == "refused"
    }
    for pattern, matches in EXTRA_PATTERNS:
        wasm = hosts.validate(Policy("extra", "org", None, pattern, matches), [])[1]
        if wasm[0] == "refused":
            rejected.add(wasm[2])
    assert rejected >= {
        "empty_pattern",
        "invalid_pattern",
        "pattern_too_long",
        "duplicate_pattern",
        "unsupported_construct",
    }


def test_explain_answers_the_same(hosts: Hosts, scenarios: Dict[str, Scenario], replays: Dict[str, Replay]):
    policies = [p for r in replays.values() for p in r.policies]
    assert len({p.uuid for p in policies}) == len(policies) > 10
    names = list(dict.fromkeys([t.name for s in scenarios.values() for t in s.pushed.tags] + EXTRA_TAG_NAMES))
    fired = 0
    for name in names:
        rust, wasm = hosts.explain(name, policies)
        assert rust == wasm, f"explain {name!r}: Rust host {rust}, wasmtime-py host {wasm}"
        if wasm[0] == "ok":
            fired += len(wasm[1])
    assert fired > 0, "no policy fired for any tag: the comparison would prove nothing"
    assert hosts.explain("-leading-dash", policies)[1] == ("refused", "invalid_tag_name", "invalid_tag_name")


def test_the_wasmtime_py_host_checks_the_indices_explain_answers_with():
    """Indices name policies of the set, ascending; anything else breaks the contract."""
    set_ = [Policy("a", "org", None, "a"), Policy("b", "org", "app", "b", False), Policy("c", "org", None, "c")]
    assert wasm_host._resolve(set_, []) == []
    assert [(m.policy, m.pattern_matched) for m in wasm_host._resolve(set_, [0, 1, 2])] == [
        (set_[0], True),
        (set_[1], False),
        (set_[2], True),
    ]
    for bad in ([3], [1, 0], [0, 0], [2, 2], [-1], [2**32 - 1]):
        with pytest.raises(ContractBreach):
            wasm_host._resolve(set_, bad)


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_preview_answers_the_same(name: str, hosts: Hosts, scenarios: Dict[str, Scenario], replays: Dict[str, Replay]):
    accepted = [c for c, _, _, wasm in replays[name].validations if wasm[0] == "ok"]
    for candidate in accepted:
        for which, table in scenarios[name].tables().items():
            for limit in SAMPLE_LIMITS:
                rust, wasm = hosts.preview(candidate, limit, table)
                assert rust == wasm, (
                    f"preview of {candidate} (sample limit {limit}) over the {which} tags of {name}: "
                    f"Rust host {rust}, wasmtime-py host {wasm}"
                )


def test_previews_find_tags(hosts: Hosts, scenarios: Dict[str, Scenario], replays: Dict[str, Replay]):
    """The previews are not vacuous: a policy would mark more tags than a page holds,
    and fewer once some are immutable or deleted."""
    name = "report-2-retroactive"
    semver = next(p for p in replays[name].policies if p.uuid.endswith(":semver"))
    counts = {}
    for which, table in scenarios[name].tables().items():
        rust, wasm = hosts.preview(semver, 3, table)
        assert rust == wasm and wasm[0] == "ok", (rust, wasm)
        counts[which], sample = wasm[1]
        assert len(sample) == 3
    assert counts["pushed"] > counts["final"] > PAGE_CAP
