"""tagguard: tag immutability decisions, each committed with its audit record.

The engine is the Rust host of the tagguard policy plugins. A registry gives it a
tag store and an audit sink (Python objects), loads a :class:`Plugin`, and calls
the decisions of :class:`Guard`; every outcome is checked against the records the
plugin staged with it and committed through the sink in one transaction.
"""

from ._tagguard import (
    DEFAULT_PLUGIN_WASM,
    Actor,
    GENESIS_HASH,
    AuditEntry,
    ChainedEntry,
    DeleteManifest,
    DeleteOutcome,
    DeletePolicy,
    DeleteTags,
    Guard,
    InsertPolicy,
    MarkBatch,
    MarkImmutable,
    NoChange,
    Performer,
    Plugin,
    PluginInfo,
    PluginStamp,
    Policy,
    PolicyMatch,
    PolicyOutcome,
    PreviewReport,
    PushOutcome,
    PutTag,
    RunSummary,
    Runtime,
    ScanRequest,
    SetExpiration,
    SetImmutable,
    SwapOutcome,
    Tag,
    TagRef,
    UpdatePolicy,
)
from .errors import *  # noqa: F401,F403  (the exception classes)
from .errors import SinkConflict, TagguardError

__all__ = [name for name in dir() if not name.startswith("_")]
