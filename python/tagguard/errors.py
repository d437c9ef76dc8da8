"""The exceptions of the tagguard package: one class per engine error kind.

Every engine error is a :class:`TagguardError` carrying ``plugin`` (the plugin that
was serving, when one was), ``call`` (the plugin export or decision that failed,
when known) and ``reason`` (why, in words). Subclasses add the fields of their kind.
A registry raises :class:`SinkConflict` from its audit sink to say that the state
changed since the decision; the engine then raises :class:`ConflictError`.
"""

from typing import Optional


class TagguardError(Exception):
    """Base of every engine error: the plugin, the call and the reason."""

    def __init__(
        self,
        message: str,
        *,
        plugin: Optional[str] = None,
        call: Optional[str] = None,
        reason: str = "",
        **fields: object,
    ) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.call = call
        self.reason = reason
        for name, value in fields.items():
            setattr(self, name, value)


class PluginReadError(TagguardError):
    """A plugin file could not be read (``path``)."""


class LoadError(TagguardError):
    """The bytes are not a loadable component, or the engine could not be set up."""


class UnsafeCacheError(TagguardError):
    """The precompile cache directory (``path``) is not one the engine can trust."""


class ContractMismatchError(TagguardError):
    """The component does not implement the tagguard contract."""


class GuestTrapError(TagguardError):
    """The plugin trapped (a panic, an unreachable, an out-of-bounds access)."""


class PluginTimeoutError(TagguardError):
    """The call passed its deadline and was stopped (``after_seconds``)."""


class MemoryLimitError(TagguardError):
    """The plugin tried to grow its memory past the cap (``limit_bytes``, ``requested_bytes``)."""


class PluginRefusedError(TagguardError):
    """The plugin refused the call with a typed error (``kind``: invalid_tag_name, ...)."""


class InvalidPolicyError(TagguardError):
    """The plugin rejected a candidate policy (``kind``: empty_pattern, invalid_pattern, ...)."""


class AuditMissingError(TagguardError):
    """The outcome lacked its record or carried a false one; nothing was committed."""


class ContractViolationError(TagguardError):
    """The plugin did or returned something the contract forbids; nothing was committed."""


class InvalidRequestError(TagguardError):
    """The registry's request is malformed (``field``); the plugin was not asked."""


class InvalidSettingsError(TagguardError):
    """A setting is out of range (``field``)."""


class TagStoreError(TagguardError):
    """The registry's tag store failed."""


class AuditSinkError(TagguardError):
    """The registry's audit sink failed; the change was not applied."""


class SwapRejectedError(TagguardError):
    """A swap was refused (``current``, ``candidate``, ``cause``); the old plugin keeps serving."""


class StaleGenerationError(TagguardError):
    """A plugin generation offered is not newer than the one serving."""


class NoPreviousGenerationError(TagguardError):
    """There is no previous plugin generation to roll back to."""


class ConflictError(TagguardError):
    """The registry's state changed while the plugin decided; nothing was applied, decide again."""


class RunIncompleteError(TagguardError):
    """A retroactive run stopped part way (``run_id``, ``policy_uuid``, ``changed``, ``cause``)."""


class SinkConflict(Exception):
    """Raised by a registry's audit sink: the state changed since the decision (the tag
    moved or became immutable, the policy already exists). Nothing was applied."""
