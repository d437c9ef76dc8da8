"""The type stubs shipped with the package describe the compiled module: every
class, constant, method and attribute in ``_tagguard.pyi`` exists at run time,
and every public name of the module is in the stubs."""

import ast
import pathlib

import tagguard
from tagguard import _tagguard

STUBS = pathlib.Path(tagguard.__file__).with_name("_tagguard.pyi")
ALIASES = {"ActorKind", "Granularity", "RunTrigger", "RemovalAction", "Change"}
PROTOCOLS = {"TagStore", "AuditSink"}  # implemented by the registry, not the module


def stub_tree():
    assert STUBS.exists(), f"{STUBS} is not installed with the package"
    return ast.parse(STUBS.read_text())


def test_every_public_name_of_the_module_is_in_the_stubs():
    tree = stub_tree()
    declared = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    declared |= {
        t.id
        for n in tree.body
        if isinstance(n, (ast.Assign, ast.AnnAssign))
        for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
        if isinstance(t, ast.Name)
    }
    public = {name for name in dir(_tagguard) if not name.startswith("_")}
    assert public - declared == set(), "in the module, missing from the stubs"
    assert declared - ALIASES - PROTOCOLS - public == set(), "in the stubs, missing from the module"


def test_every_stubbed_member_exists_at_run_time():
    missing = []
    for node in stub_tree().body:
        if not isinstance(node, ast.ClassDef) or node.name in PROTOCOLS:
            continue
        runtime = getattr(_tagguard, node.name)
        for member in node.body:
            if isinstance(member, ast.FunctionDef):
                name = member.name
            elif isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                name = member.target.id
            else:
                continue
            if not hasattr(runtime, name):
                missing.append(f"{node.name}.{name}")
    assert missing == []


def test_every_class_has_a_docstring():
    undocumented = [
        name
        for name in dir(_tagguard)
        if isinstance(getattr(_tagguard, name), type) and not getattr(_tagguard, name).__doc__
    ]
    assert undocumented == []
