"""A Quay-shaped registry whose tag immutability goes through tagguard.

peewee models over SQLite in Quay's table shapes (:mod:`.models`), the engine's tag
store and audit sink over them (:mod:`.store`), the registry operations (:mod:`.registry`)
and a runner for tagguard's scenario files (:mod:`.scenario`).
"""

from .registry import (
    Forbidden,
    Invalid,
    NotFound,
    Registry,
    RegistryError,
    TagImmutable,
    UnknownPolicy,
    user,
)
from .scenario import Report, run

__all__ = [
    "Forbidden",
    "Invalid",
    "NotFound",
    "Registry",
    "RegistryError",
    "Report",
    "TagImmutable",
    "UnknownPolicy",
    "run",
    "user",
]
