"""A second host for tagguard plugins, built on wasmtime-py and nothing of tagguard.

It loads a plugin component (world ``tag-policy`` of ``tagguard:policy@0.3.0``, see
``wit/``) with the ``wasmtime`` PyPI package and calls the read-only exports of
``policy-engine``: ``validate-policy``, ``explain``, ``preview`` and ``info``, and,
for ``explain``, the resource ``policy-set`` (its constructor
``[static]policy-set.compile`` and its destructor). Everything here is written from
the WIT contract alone, so a test can hold the Rust host's answers against it.

``explain`` takes its policies as a ``borrow<policy-set>``: this host compiles the
list with ``[static]policy-set.compile``, which returns an owned handle (a
``wasmtime.component.ResourceAny``), passes that handle to ``explain`` (wasmtime-py
lends a borrow of it for the call), and drops it right after, running the plugin's
destructor. It keeps no set between calls (the Rust host keeps one per distinct list
in each instance; caching is a host's choice the contract leaves open, and compiling
afresh every time also exercises the destructor). The plugin answers with indices
into the set, which this host checks (each in range, strictly ascending, so each
policy at most once and in the list's order) and maps back to the policies.

Imports the component needs, and how this host provides them:

* ``tagguard:policy/tag-store``: ``scan`` pages through the tag table the current
  ``preview`` was given, in the scope of the previewed policy (the host's choice, not
  the plugin's), honouring ``after-id`` and ``limit``. It enforces the paging rule of
  the contract (``after-id`` is the last id already returned, 0 first) and notes when
  the scan reached its end (an empty page). ``mark-immutable`` and
  ``mark-immutable-batch`` fail the call: none of these exports may write.
* ``tagguard:policy/audit-log``: ``append`` fails the call, since none of these
  exports may stage a record.
* ``tagguard:policy/types``: types only; nothing to define.
* WASI 0.2 (``wasi:io``, ``wasi:random/insecure-seed``, ``wasi:cli/*``): wasmtime-py
  50 links Wasmtime's own WASI p2 implementation into a component linker
  (``Linker.add_wasip2``) and needs a ``WasiConfig`` on the store. The config is
  left empty: no arguments, no environment, no preopened directories, and stdin,
  stdout and stderr closed, which is the sandbox the contract promises plugins
  ("no files, environment, clocks or network"). No WASI function had to be stubbed.

Values cross wasmtime-py's generic component API: resources are ``ResourceAny``
handles (``own`` results are the host's to drop with ``ResourceAny.drop``), records are
``wasmtime.component.Record`` objects whose attributes carry the WIT field names
(``tag-pattern``, so ``getattr``/``setattr``), enums are strings, options are the value
or ``None``, a ``result`` comes back as its ok value or, for an error, as a
``Variant`` (its two cases have distinct Python types), and variants whose cases
share a Python type are ``Variant(tag, payload)``.
"""

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

try:
    import wasmtime
    from wasmtime.component import Component, Linker, Record, ResourceAny, Variant
except ImportError as error:  # a declared test dependency: say so, do not skip
    raise ImportError(
        "the portability test needs wasmtime-py (`pip install wasmtime`, declared in the "
        "package's `test` extra); it is the independent host the test compares against"
    ) from error

PACKAGE = "tagguard:policy"
VERSION = "0.3.0"
POLICY_ENGINE = f"{PACKAGE}/policy-engine@{VERSION}"
AUDIT_LOG = f"{PACKAGE}/audit-log@{VERSION}"
TAG_STORE = f"{PACKAGE}/tag-store@{VERSION}"
# The constructor of resource `policy-set`, as the component model names a static
# function of a resource among its interface's exports.
COMPILE = "[static]policy-set.compile"


@dataclass(frozen=True)
class Policy:
    """A policy as WIT `policy` carries it (the scope follows from the repository)."""

    uuid: str
    namespace: str
    repository: Optional[str]
    tag_pattern: str
    tag_pattern_matches: bool = True

    @property
    def scope(self) -> str:
        return "namespace" if self.repository is None else "repository"


@dataclass(frozen=True)
class Tag:
    """A tag as WIT `tag` carries it."""

    id: int
    namespace: str
    repository: str
    name: str
    manifest_digest: str
    immutable: bool = False


@dataclass(frozen=True)
class Match:
    """A policy that fires for a tag, and whether its pattern itself matched.

    Contract 0.3.0 has no `policy-match` type any more: ``explain`` answers with indices
    into the policy set. A policy fires when its pattern's match equals its
    ``tag_pattern_matches``, so ``pattern_matched`` is that polarity (as the Rust host
    reports it too).
    """

    policy: Policy
    pattern_matched: bool


@dataclass(frozen=True)
class Preview:
    """A WIT `preview-report`."""

    count: int
    sample: List[Tag]


class PluginRefused(Exception):
    """The plugin answered an export with an error.

    ``error`` is the case of WIT `error` (``invalid_policy``, ``invalid_tag_name``, ...;
    ``invalid_policy`` for every `policy-error` of ``validate-policy``), ``kind`` the
    case of `policy-error` for ``invalid_policy`` and ``error`` otherwise, ``detail``
    the payload (a string, a length, or ``(construct, position)``). Cases are written
    in snake_case, as the tagguard package names them.
    """

    def __init__(self, error: str, kind: str, detail: Any) -> None:
        super().__init__(f"{error}: {kind}: {detail!r}")
        self.error = error
        self.kind = kind
        self.detail = detail


class ContractBreach(AssertionError):
    """The plugin did something the contract forbids in a read-only export."""


# Tag tables are given to `preview` as a function: (namespace, repository or None,
# after_id, limit) -> the alive tags in that scope with id > after_id, ascending, at
# most limit.
ScanFn = Callable[[str, Optional[str], int, int], Sequence[Tag]]


def _snake(name: str) -> str:
    return name.replace("-", "_")


def _record(**fields: Any) -> Record:
    record = Record()
    for name, value in fields.items():
        setattr(record, name.replace("_", "-"), value)
    return record


def _field(record: Record, name: str) -> Any:
    return getattr(record, name.replace("_", "-"))


def _lower_policy(p: Policy) -> Record:
    return _record(
        uuid=p.uuid,
        scope=p.scope,
        namespace=p.namespace,
        repository=p.repository,
        tag_pattern=p.tag_pattern,
        tag_pattern_matches=p.tag_pattern_matches,
    )


def _lower_tag(t: Tag) -> Record:
    return _record(
        id=t.id,
        namespace=t.namespace,
        repository=t.repository,
        name=t.name,
        manifest_digest=t.manifest_digest,
        immutable=t.immutable,
    )


def _lift_tag(r: Record) -> Tag:
    return Tag(
        id=_field(r, "id"),
        namespace=_field(r, "namespace"),
        repository=_field(r, "repository"),
        name=_field(r, "name"),
        manifest_digest=_field(r, "manifest_digest"),
        immutable=_field(r, "immutable"),
    )


def _policy_error(v: Variant) -> PluginRefused:
    detail = v.payload
    if isinstance(detail, Record):  # unsupported-construct
        detail = (_field(detail, "construct"), _field(detail, "position"))
    return PluginRefused("invalid_policy", _snake(v.tag), detail)


def _error(v: Variant) -> PluginRefused:
    if v.tag == "invalid-policy":
        return _policy_error(v.payload)
    return PluginRefused(_snake(v.tag), _snake(v.tag), v.payload)


def _resolve(policies: Sequence[Policy], indices: Any) -> List[Match]:
    """The policies `indices` name in the set compiled from `policies`, as matches.

    The contract's rule for `explain` (and decisions): indices into the set, ascending.
    Anything else (not a list of integers, out of range, repeated or out of order)
    breaks the contract and raises ContractBreach.
    """
    if not isinstance(indices, list):
        raise ContractBreach(f"explain returned {indices!r}, not a list of indices")
    matches = []
    previous: Optional[int] = None
    for i in indices:
        if not isinstance(i, int) or isinstance(i, bool):
            raise ContractBreach(f"explain returned {i!r} among its indices, not a u32")
        if not 0 <= i < len(policies):
            raise ContractBreach(
                f"explain names policy index {i}, but the set has {len(policies)} policies"
            )
        if previous is not None and i <= previous:
            raise ContractBreach(
                f"explain names policy indices out of order or twice ({previous} then {i}); "
                "they must ascend"
            )
        previous = i
        policy = policies[i]
        matches.append(Match(policy, policy.tag_pattern_matches))
    return matches


class _Call:
    """What the imports may do during the current export call."""

    def __init__(self, name: str, scope: Optional[Policy] = None, scan: Optional[ScanFn] = None):
        self.name = name
        self.scope = scope
        self.scan = scan
        self.cursor = 0
        self.exhausted = False
        self.seen: dict = {}


class WasmHost:
    """One plugin component under wasmtime-py: one instance, replaced after a trap."""

    def __init__(self, wasm: bytes) -> None:
        self.engine = wasmtime.Engine()
        self.component = Component(self.engine, wasm)
        self.call: Optional[_Call] = None

        self.linker = Linker(self.engine)
        self.linker.add_wasip2()
        with self.linker.root() as root:
            with root.add_instance(AUDIT_LOG) as audit_log:
                audit_log.add_func("append", self._append)
            with root.add_instance(TAG_STORE) as tag_store:
                tag_store.add_func("scan", self._scan)
                tag_store.add_func("mark-immutable", self._mark_immutable)
                tag_store.add_func("mark-immutable-batch", self._mark_immutable_batch)
        self._exports: Optional[dict] = None
        self._instantiate()

    def _instantiate(self) -> None:
        """A fresh store and instance (the first time, and after a call that trapped)."""
        self.store = wasmtime.Store(self.engine)
        self.store.set_wasi(wasmtime.WasiConfig())  # empty: no args, env, files or stdio
        instance = self.linker.instantiate(self.store, self.component)
        engine_index = instance.get_export_index(self.store, POLICY_ENGINE)
        assert engine_index is not None, f"the component does not export {POLICY_ENGINE}"
        exports = {}
        for name in ("validate-policy", COMPILE, "explain", "preview", "info"):
            index = instance.get_export_index(self.store, name, engine_index)
            func = instance.get_func(self.store, index) if index is not None else None
            assert func is not None, f"{POLICY_ENGINE} does not export {name}"
            exports[name] = func
        self._exports = exports

    # --- imports -------------------------------------------------------------

    def _current(self, what: str) -> _Call:
        if self.call is None:
            raise ContractBreach(f"{what} called outside an export call")
        return self.call

    def _append(self, _store: Any, entry: Record) -> None:
        call = self._current("audit-log.append")
        raise ContractBreach(
            f"{call.name} staged an audit record, which it must not: {entry.__dict__}"
        )

    def _scan(self, _store: Any, request: Record) -> List[Record]:
        call = self._current("tag-store.scan")
        if call.scan is None or call.scope is None:
            raise ContractBreach(f"{call.name} scanned tags; only preview (and runs) may")
        after_id, limit = _field(request, "after_id"), _field(request, "limit")
        if after_id != call.cursor:
            raise ContractBreach(
                f"scans go page by page: after-id {after_id}, but the last id returned is {call.cursor}"
            )
        if limit < 1:
            raise ContractBreach(f"scan limit {limit}: must be 1 or more")
        tags = list(call.scan(call.scope.namespace, call.scope.repository, after_id, limit))
        call.exhausted = not tags
        if tags:
            call.cursor = tags[-1].id
            call.seen.update((t.id, t) for t in tags)
        return [_lower_tag(t) for t in tags]

    def _mark_immutable(self, _store: Any, changes: List[Record]) -> List[int]:
        call = self._current("tag-store.mark-immutable")
        raise ContractBreach(f"{call.name} tried to mark {len(changes)} tags immutable")

    def _mark_immutable_batch(self, _store: Any, tag_ids: List[int], entry: Record) -> List[int]:
        call = self._current("tag-store.mark-immutable-batch")
        raise ContractBreach(f"{call.name} tried to mark {len(tag_ids)} tags immutable")

    # --- exports -------------------------------------------------------------

    def _invoke(self, call: _Call, *args: Any) -> Any:
        if self._exports is None:
            self._instantiate()
        assert self._exports is not None
        func = self._exports[call.name]
        return self._guarded(call, lambda: func(self.store, *args))

    def _guarded(self, call: _Call, run: Callable[[], Any]) -> Any:
        """Runs guest code with `call` as what the imports may do."""
        self.call = call
        try:
            return run()
        except BaseException:
            # A trap (or a breach raised by an import) leaves the instance unusable;
            # the next call gets a fresh one, so one failure does not hide the others.
            self._exports = None
            raise
        finally:
            self.call = None

    def _compile(self, policies: Sequence[Policy]) -> Tuple[ResourceAny, Any]:
        """An owned `policy-set` handle for `policies` and the store it lives in, or
        raises PluginRefused (``invalid_policy`` for the first bad policy)."""
        result = self._invoke(_Call(COMPILE), [_lower_policy(p) for p in policies])
        if isinstance(result, Variant):
            raise _error(result)
        if not isinstance(result, ResourceAny) or not result.owned:
            raise ContractBreach(f"{COMPILE} returned {result!r}, not an owned policy-set")
        return result, self.store

    def _drop(self, handle: ResourceAny, store: Any) -> None:
        """Drops a `policy-set` handle, running the plugin's destructor, unless the
        instance that made it is gone (a trap replaced it; its store took the set along)."""
        if self._exports is None or store is not self.store:
            return
        self._guarded(_Call("[resource-drop]policy-set"), lambda: handle.drop(store))

    def info(self) -> dict:
        r = self._invoke(_Call("info"))
        return {name: _field(r, name) for name in ("name", "version", "contract")}

    def validate_policy(self, candidate: Policy, existing: Sequence[Policy] = ()) -> str:
        """The normalised pattern, or raises PluginRefused (error ``invalid_policy``)."""
        result = self._invoke(
            _Call("validate-policy"),
            _lower_policy(candidate),
            [_lower_policy(p) for p in existing],
        )
        if isinstance(result, Variant):
            raise _policy_error(result)
        assert isinstance(result, str), f"validate-policy returned {result!r}"
        return result

    def explain(self, tag_name: str, policies: Sequence[Policy]) -> List[Match]:
        """The policies of `policies` that fire for `tag_name`, in the list's order, or
        raises PluginRefused (``invalid_policy`` from compiling the set,
        ``invalid_tag_name``, ...).

        Compiles the list into a `policy-set`, explains under a borrow of it, and drops
        it before returning, whatever the outcome: no set outlives the call.
        """
        policies = list(policies)
        handle, store = self._compile(policies)
        try:
            result = self._invoke(_Call("explain"), tag_name, handle)
        finally:
            self._drop(handle, store)
        if isinstance(result, Variant):
            raise _error(result)
        return _resolve(policies, result)

    def preview(self, policy: Policy, sample_limit: int, scan: ScanFn) -> Preview:
        """A dry run of `policy` over the tags `scan` gives, in the policy's scope."""
        call = _Call("preview", scope=policy, scan=scan)
        result = self._invoke(call, _lower_policy(policy), sample_limit)
        if isinstance(result, Variant):
            raise _error(result)
        report = Preview(_field(result, "count"), [_lift_tag(t) for t in _field(result, "sample")])
        # What the contract promises about a preview, checked as any host would.
        if not call.exhausted:
            raise ContractBreach("preview answered before its scan reached the end (an empty page)")
        if len(report.sample) > min(sample_limit, report.count) or report.count > len(call.seen):
            raise ContractBreach(
                f"preview reports {report.count} tags with a sample of {len(report.sample)} "
                f"(limit {sample_limit}) after scanning {len(call.seen)}"
            )
        for tag in report.sample:
            if call.seen.get(tag.id) != tag or tag.immutable:
                raise ContractBreach(f"the preview's sample names {tag}, not a mutable tag it scanned")
        return report
