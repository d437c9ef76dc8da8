"""Type stubs of the compiled core of the tagguard package (the Rust engine)."""

from typing import Literal, Optional, Protocol, Sequence, Union

ActorKind = Literal["user", "robot", "token", "system"]
Granularity = Literal["per_tag", "per_batch"]
RunTrigger = Literal["policy_created", "policy_updated", "reapplied"]
RemovalAction = Literal["delete_tags", "delete_manifest", "set_expiration"]

DEFAULT_PLUGIN_WASM: bytes
"""The default plugin's component bytes, as the engine embeds them."""

class Actor:
    """The performer of an operation; the engine stamps it on every record of the call."""

    kind: ActorKind
    name: Optional[str]
    ip: Optional[str]
    request_id: Optional[str]
    def __init__(
        self,
        kind: ActorKind = "user",
        name: Optional[str] = None,
        ip: Optional[str] = None,
        request_id: Optional[str] = None,
    ) -> None: ...
    @staticmethod
    def system() -> "Actor":
        """The registry itself (garbage collection, schedulers)."""

class Policy:
    """An immutability policy. A repository policy names its repository; a namespace policy does not."""

    uuid: str
    namespace: str
    repository: Optional[str]
    tag_pattern: str
    tag_pattern_matches: bool
    scope: Literal["namespace", "repository"]
    def __init__(
        self,
        uuid: str,
        namespace: str,
        tag_pattern: str,
        *,
        repository: Optional[str] = None,
        tag_pattern_matches: bool = True,
    ) -> None: ...
    def to_dict(self) -> dict:
        """The policy as the JSON object records carry (uuid, namespace, repository, scope, tag_pattern, tag_pattern_matches)."""

class Tag:
    """An alive tag as the registry stores it."""

    id: int
    namespace: str
    repository: str
    name: str
    manifest_digest: str
    immutable: bool
    def __init__(
        self,
        id: int,
        namespace: str,
        repository: str,
        name: str,
        manifest_digest: str,
        immutable: bool = False,
    ) -> None: ...

class PolicyMatch:
    """A policy that fires for a tag."""

    policy: Policy
    pattern_matched: bool

class PluginInfo:
    """What a plugin reports about itself."""

    name: str
    version: str
    contract: str

class PluginStamp:
    """Which plugin generation decided, as stamped on every record."""

    name: str
    version: str
    digest: str
    generation: int

class Performer:
    """Who performed an operation, as stamped on every record."""

    kind: ActorKind
    name: str
    ip: Optional[str]
    request_id: Optional[str]

class AuditEntry:
    """One audit record, checked and stamped by the engine, ready to commit."""

    kind: str
    namespace: str
    repository: Optional[str]
    tag: Optional[str]
    performer: Performer
    time: str
    plugin: PluginStamp
    metadata: dict
    """Kind-specific fields (a fresh dict on every access)."""
    metadata_json: str
    """The same fields as JSON text (Quay's ``metadata_json`` column)."""
    def to_dict(self) -> dict:
        """The whole entry as a JSON object, in the engine's serialization."""
    def to_json(self) -> str:
        """The whole entry as JSON text, in the engine's serialization."""
    def chained(self, seq: int, prev_hash: str) -> "ChainedEntry":
        """The entry linked after ``prev_hash`` at position ``seq`` (1 for the first, after GENESIS_HASH)."""

GENESIS_HASH: str
"""The ``prev_hash`` of the first entry of a chain."""

class ChainedEntry:
    """An audit entry with its place in a hash chain."""

    seq: int
    prev_hash: str
    hash: str
    entry: AuditEntry
    def quay_log_line(self) -> dict:
        """The entry as a row of Quay's log table; ``metadata_json`` carries the host's fields and seq, hash, prev_hash."""
    def to_json(self) -> str:
        """One line of an exported log, as ``tagguard verify-log`` reads it."""

class ScanRequest:
    """Which tags a scan returns: the policy's scope, after an id, at most a limit."""

    namespace: str
    repository: Optional[str]
    after_id: int
    limit: int

class MarkImmutable:
    """One tag to make immutable in a retroactive run, with its record."""

    tag_id: int
    entry: AuditEntry

class TagRef:
    """A tag listed by a per-batch record."""

    id: int
    repository: str
    name: str

class MarkBatch:
    """Tags to make immutable in a per-batch run, with the one record that lists them."""

    tags: list[TagRef]
    entry: AuditEntry
    def narrowed(self, changed: Sequence[int]) -> Optional[AuditEntry]:
        """The entry narrowed to the tags that really changed, or None if none did. Commit this one."""

class NoChange:
    """Records only (denials, run summaries, swaps)."""

class PutTag:
    """Create the tag, or move the alive tag ``replaces`` to a new manifest."""

    namespace: str
    repository: str
    name: str
    manifest_digest: str
    immutable: bool
    replaces: Optional[int]
    policy_version: int

class SetImmutable:
    """Set a tag's immutability (a manual change)."""

    tag_id: int
    immutable: bool

class InsertPolicy:
    """Store a new policy."""

    policy: Policy

class UpdatePolicy:
    """Replace the stored policy with the same uuid."""

    policy: Policy

class DeletePolicy:
    """Remove the policy with this uuid."""

    uuid: str

class DeleteTags:
    """Delete these tags (each must still be alive and mutable)."""

    tag_ids: list[int]

class DeleteManifest:
    """Delete a manifest and every tag on it (exactly ``tag_ids``, all still mutable)."""

    namespace: str
    repository: str
    digest: str
    tag_ids: list[int]

class SetExpiration:
    """Set an expiration time on these tags (each must still be alive and mutable)."""

    tag_ids: list[int]
    expires_at: str

Change = Union[
    NoChange, PutTag, SetImmutable, InsertPolicy, UpdatePolicy, DeletePolicy,
    DeleteTags, DeleteManifest, SetExpiration,
]

class TagStore(Protocol):
    """What the registry implements for retroactive runs and previews."""

    def scan(self, request: ScanRequest) -> Sequence[Tag]:
        """Alive, non-hidden tags in scope with id > after_id, ascending id, at most limit."""
    def mark_immutable(self, changes: Sequence[MarkImmutable]) -> Sequence[int]:
        """In one transaction: make the tags immutable and store each entry; return the ids that changed."""
    def mark_immutable_batch(self, batch: MarkBatch) -> Sequence[int]:
        """In one transaction: make the tags immutable and store batch.narrowed(changed); return the ids that changed."""

class AuditSink(Protocol):
    """Where the engine commits a change with its records."""

    def commit(self, change: Change, entries: Sequence[AuditEntry]) -> None:
        """Apply change and append entries in one transaction, or neither. Raise
        tagguard.SinkConflict when the state changed since the decision."""

class PushOutcome:
    """A push decision that was committed."""

    denied: bool
    immutable: bool
    matched: list[PolicyMatch]

class DeleteOutcome:
    """A delete or expiry decision that was committed."""

    allowed: bool
    blocking: list[int]
    """Ids of the immutable tags that block it (empty when allowed)."""

class RunSummary:
    """What a retroactive run did."""

    run_id: str
    count: int
    sample_tags: list[str]
    batches: int

class PolicyOutcome:
    """A stored policy and its retroactive run."""

    policy: Policy
    run: RunSummary

class PreviewReport:
    """A dry run of a policy over existing tags."""

    count: int
    sample: list[Tag]

class SwapOutcome:
    """A published swap or rollback."""

    generation: int
    old: PluginStamp
    new: PluginStamp

class Runtime:
    """One wasmtime engine with the sandbox's limits and the precompile cache."""

    def __init__(self, *, cache_dir: Optional[str] = None, no_cache: bool = False) -> None: ...

class Plugin:
    """A compiled plugin component that implements the contract."""

    @staticmethod
    def default(runtime: Optional[Runtime] = None) -> "Plugin":
        """The embedded default plugin (in a shared runtime unless one is given)."""
    @staticmethod
    def from_file(path: str, runtime: Optional[Runtime] = None) -> "Plugin": ...
    @staticmethod
    def from_bytes(data: bytes, runtime: Optional[Runtime] = None) -> "Plugin": ...
    def info(self) -> PluginInfo: ...
    def stamp(self) -> PluginStamp: ...
    def self_test(self) -> None:
        """Runs the self-test a swap runs; raises when a swap would refuse the plugin."""

class Guard:
    """The host a registry embeds: every decision, checked and committed with its records."""

    def __init__(
        self,
        plugin: Plugin,
        store: TagStore,
        sink: AuditSink,
        *,
        batch_size: int = 500,
        granularity: Granularity = "per_tag",
    ) -> None: ...
    def info(self) -> PluginInfo: ...
    def stamp(self) -> PluginStamp: ...
    @property
    def generation(self) -> int: ...
    def validate_policy(self, candidate: Policy, existing: Sequence[Policy] = ()) -> Policy: ...
    def push(
        self,
        actor: Actor,
        namespace: str,
        repository: str,
        tag: str,
        manifest_digest: str,
        *,
        existing: Optional[Tag],
        policies: Sequence[Policy],
        policy_version: int,
    ) -> PushOutcome: ...
    def delete(
        self,
        actor: Actor,
        tags: Sequence[Tag],
        policies: Sequence[Policy],
        *,
        action: RemovalAction = "delete_tags",
        expires_at: Optional[str] = None,
    ) -> DeleteOutcome: ...
    def manual_change(self, actor: Actor, tag: Tag, immutable: bool) -> bool: ...
    def create_policy(self, actor: Actor, candidate: Policy, existing: Sequence[Policy] = ()) -> PolicyOutcome: ...
    def update_policy(
        self, actor: Actor, before: Policy, candidate: Policy, existing: Sequence[Policy] = ()
    ) -> PolicyOutcome: ...
    def delete_policy(self, actor: Actor, policy: Policy) -> None: ...
    def apply_policy(self, actor: Actor, policy: Policy, trigger: RunTrigger = "reapplied") -> RunSummary: ...
    def explain(self, tag: str, policies: Sequence[Policy]) -> list[PolicyMatch]: ...
    def preview(self, candidate: Policy, sample_limit: int = 10) -> PreviewReport: ...
    def swap(self, actor: Actor, plugin: Plugin) -> SwapOutcome: ...
    def rollback(self, actor: Actor) -> SwapOutcome: ...
