"""The package's layout stays honest: the import graph (parsed with ``ast``, imports inside
functions included) has no cycle and no upward import between layers, every module
declares ``__all__``, and ``import jaxmia`` is lazy and offers the main entry points."""

from __future__ import annotations

import ast
import dataclasses
import functools
import os
import pathlib
import subprocess
import sys
import tomllib

import pytest

import jaxmia

ROOT = pathlib.Path(jaxmia.__file__).parent
PACKAGE = "jaxmia"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("settings", "datasets", "splits"),
    ("models",),
    ("signals",),
    ("engine",),
    ("threat_models",),
    ("metrics",),
    ("attacks",),
    ("defences",),
    ("audit",),
    ("study", "frontier", "multiples", "dp_audit"),
    ("cli",),
)
"""The layers, lowest first, by top-level module or subpackage; a module may import from
its own layer or lower ones."""

INTERNALS = "jaxmia._src"
"""The package of jaxmia's internals (its modules belong to their concept's layer)."""

LAZY_IMPORTS_ALLOWED = {"jaxmia.cli"}  # startup time of the command line


@dataclasses.dataclass(frozen=True)
class Import:
    """One ``import``/``from ... import`` of a jaxmia module found in a source file."""

    source: str  # importing module, e.g. "jaxmia._src.audit.report"
    target: str  # imported jaxmia module, e.g. "jaxmia.metrics"
    line: int
    in_function: bool


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _modules() -> dict[str, pathlib.Path]:
    """Every module of the package: dotted name -> file."""
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


@functools.cache
def _tree(name: str) -> ast.Module:
    return ast.parse(_modules()[name].read_text(), filename=str(_modules()[name]))


def _resolve(name: str, node: ast.ImportFrom) -> str:
    """The absolute module of a (possibly relative) ``from ... import``."""
    if not node.level:
        return node.module or ""
    is_package = _modules()[name].name == "__init__.py"
    base = name.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _targets(module: str, names: list[str]) -> list[str]:
    """The jaxmia modules that ``from module import names`` loads: each name that is a
    submodule, else the module itself."""
    mods = _modules()
    subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in mods]
    if len(subs) < len(names):
        subs.append(module)
    return subs


def _imports_of(name: str) -> list[Import]:
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                module = _resolve(name, child)
                targets = _targets(module, [a.name for a in child.names])
            for t in targets:
                if t == PACKAGE or t.startswith(PACKAGE + "."):
                    # ``import jaxmia.x.y`` loads the deepest module that exists
                    while t not in _modules() and "." in t:
                        t = t.rsplit(".", 1)[0]
                    found.append(Import(name, t, child.lineno, in_function))
            visit(child, inside)

    visit(_tree(name), False)
    return found


@functools.cache
def _graph() -> dict[str, list[Import]]:
    return {name: _imports_of(name) for name in _modules()}


def _layer(module: str) -> int | None:
    """The layer of a module by its concept: ``jaxmia.engine`` and its internals
    ``jaxmia._src.engine.*`` are both the engine's."""
    parts = module.split(".")
    if parts[1:2] == ["_src"]:
        parts = parts[:1] + parts[2:]
    top = parts[1] if len(parts) > 1 else None
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    return None


def _find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle for every strongly connected component with more than one node (or a
    self-loop), found by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                components.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    return components


# ------------------------------------------------------------------------------------
# The parser itself (so that a check that finds nothing is known to be able to find)
# ------------------------------------------------------------------------------------


def test_the_parser_sees_top_level_relative_and_function_level_imports():
    found = {(i.target, i.in_function) for i in _graph()["jaxmia.metrics"]}
    assert ("jaxmia._src.metrics.roc", False) in found
    assert _find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _find_cycles({"a": {"a"}}) == [["a"]]
    assert _find_cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse(
        "def f():\n    from . import metrics\n    import jaxmia._src.engine.store.pools\n"
    )
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert _resolve("jaxmia._src.attacks.rmia", imports[0]) == "jaxmia._src.attacks"
    assert (
        _layer("jaxmia._src.engine.store.pools") == _layer("jaxmia.engine") < _layer("jaxmia.cli")
    )


def test_every_module_belongs_to_a_layer():
    missing = [m for m in _modules() if m not in (PACKAGE, INTERNALS) and _layer(m) is None]
    assert not missing, f"modules outside the layer order {LAYERS}: {missing}"


# ------------------------------------------------------------------------------------
# (a)-(f): the layout
# ------------------------------------------------------------------------------------


def test_no_import_cycle():
    edges = {
        name: {i.target for i in imps if i.target != PACKAGE and i.target != name}
        for name, imps in _graph().items()
        if name != PACKAGE
    }
    cycles = _find_cycles(edges)
    assert not cycles, "import cycles among jaxmia modules:\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_no_upward_import():
    upward = [
        f"{i.source}:{i.line} imports {i.target}"
        for name, imps in sorted(_graph().items())
        if name != PACKAGE  # lazy re-exports of everything
        for i in imps
        if i.target != PACKAGE and (_layer(i.target) or 0) > (_layer(name) or 0)
    ]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def _declares_all(tree: ast.Module) -> bool:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if isinstance(node, ast.Assign | ast.AnnAssign):
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                return True
    return False


def test_every_module_has_all():
    missing = [name for name in _modules() if not _declares_all(_tree(name))]
    assert not missing, f"modules without __all__: {missing}"


def test_no_function_level_import_of_jaxmia():
    lazy = [
        f"{i.source}:{i.line} imports {i.target} inside a function"
        for name, imps in sorted(_graph().items())
        if name not in LAZY_IMPORTS_ALLOWED
        for i in imps
        if i.in_function
    ]
    assert not lazy, "function-level imports of jaxmia modules:\n" + "\n".join(lazy)


# ------------------------------------------------------------------------------------
# The curated top level
# ------------------------------------------------------------------------------------


def test_import_jaxmia_does_not_load_jax():
    code = (
        "import sys, jaxmia; dir(jaxmia); "
        "tops = ('jax', 'flax', 'optax', 'jaxmia'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in tops))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "['jaxmia']", out.stdout


def test_top_level_offers_every_module_and_the_entry_points():
    tops = {
        name.split(".")[1]
        for name in _modules()
        if name.count(".") == 1 and not name.split(".")[1].startswith("_")
    }
    assert tops <= set(jaxmia.__all__), f"modules missing from jaxmia.__all__: {tops}"
    for name in ("audit_model", "train_pool", "AuditConfig", "attacks", "metrics", "engine"):
        assert name in jaxmia.__all__
    for name in jaxmia.__all__:
        assert getattr(jaxmia, name) is not None
    assert jaxmia.audit_model is jaxmia.audit.audit_model
    assert jaxmia.AuditConfig is jaxmia.audit.AuditConfig
    assert jaxmia.train_pool is jaxmia.audit.train_pool
    assert jaxmia.study.__name__ == "jaxmia.study"
    assert jaxmia._src.engine.store.pools.__name__ == "jaxmia._src.engine.store.pools"
    assert set(jaxmia.__all__) <= set(dir(jaxmia))
    assert "importlib" not in dir(jaxmia)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = jaxmia.nope


def test_every_submodule_is_reachable_as_an_attribute():
    import importlib

    for name in _modules():
        if name == PACKAGE:
            continue
        importlib.import_module(name)
        obj = jaxmia
        for part in name.split(".")[1:]:
            obj = getattr(obj, part)
        assert obj.__name__ == name


def test_py_typed_ships_with_the_package():
    assert (ROOT / "py.typed").is_file()
    pyproject = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["jaxmia"]
