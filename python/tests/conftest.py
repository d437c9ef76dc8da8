"""Shared fixtures: the default plugin, a fresh in-memory registry with a guard
over it, and the plugins the build made (hostile ones among them)."""

import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import tagguard  # noqa: E402
from memory_registry import MemoryRegistry  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]


def plugin_dir() -> pathlib.Path:
    """Where the build put the plugins: $TAGGUARD_PLUGINS, else <target-dir>/plugins."""
    if "TAGGUARD_PLUGINS" in os.environ:
        return pathlib.Path(os.environ["TAGGUARD_PLUGINS"])
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "plugins"


@pytest.fixture(scope="session")
def plugin() -> tagguard.Plugin:
    return tagguard.Plugin.default()


@pytest.fixture
def built_plugin():
    """Loads a plugin the build made, by file stem (``missing_record_plugin``, ...)."""

    def load(stem: str) -> tagguard.Plugin:
        path = plugin_dir() / f"{stem}.wasm"
        assert path.exists(), (
            f"{path} is missing: build the workspace first (cargo build --release), "
            "or point TAGGUARD_PLUGINS at the plugins directory"
        )
        return tagguard.Plugin.from_file(str(path))

    return load


@pytest.fixture
def registry() -> MemoryRegistry:
    return MemoryRegistry()


@pytest.fixture
def guard(plugin, registry) -> tagguard.Guard:
    return tagguard.Guard(plugin, registry, registry)


def release_binary(name: str) -> pathlib.Path:
    """A binary of the workspace's release build: beside $TAGGUARD_HOST_TEST if set,
    else in <target-dir>/release."""
    if "TAGGUARD_HOST_TEST" in os.environ:
        directory = pathlib.Path(os.environ["TAGGUARD_HOST_TEST"]).parent
    else:
        directory = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"
    path = directory / name
    assert path.exists(), f"{path} is missing: build the workspace first (cargo build --release)"
    return path
