"""The API reference builds from the docstrings, and every public name has one.

The reference is what ``python -m pdoc -d google jaxmia -o DIR`` writes (pdoc is in the
``test`` extras). This test builds it for the whole package with pdoc's Python API and
fails on anything pdoc warns about, on a ``:func:``/``:class:``/``:mod:``... reference
that names nothing, and on a public name without a docstring: every name in every
module's ``__all__`` (functions, classes and their public methods and properties;
constants through pdoc's docstring-after-assignment, in the module that defines them),
and on inline code (double backquotes) that renders broken in any public module's docstrings.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pkgutil
import re
import types
import warnings

import pytest

import jaxmia

pytest.importorskip("pdoc")
import pdoc
import pdoc.doc
import pdoc.docstrings
import pdoc.render
import pdoc.render_helpers

ROLE = re.compile(r"(?::py)?:(mod|func|data|const|class|meth|attr|exc|obj):`~?([^`]+)`")


@functools.cache
def _module_names() -> list[str]:
    walk = pkgutil.walk_packages(jaxmia.__path__, prefix="jaxmia.")
    return ["jaxmia", *sorted(m.name for m in walk)]


def _public_module_names() -> list[str]:
    """The modules the reference has a page for: none with a private part in its name."""
    return [m for m in _module_names() if not any(p.startswith("_") for p in m.split("."))]


@functools.cache
def _doc(name: str) -> pdoc.doc.Module:
    module = importlib.import_module(name)
    for public in getattr(module, "__all__", ()):
        getattr(module, public, None)  # load lazy exports: pdoc looks only in __dict__
    return pdoc.doc.Module(module)


def _home_of_constant(module: str, name: str) -> str | None:
    """The module a constant re-exported by ``module`` is imported from, if any."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module)))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if any((a.asname or a.name) == name for a in node.names):
                return node.module
    return None


def _undocumented(module: str) -> list[str]:
    """Public names of ``module`` (its ``__all__``) without a docstring."""
    mod = importlib.import_module(module)
    doc = _doc(module)
    missing = [] if doc.docstring.strip() else [f"{module} (module docstring)"]
    for name in getattr(mod, "__all__", ()):
        if not hasattr(mod, name):
            missing.append(f"{module}.{name} (in __all__ but not defined)")
            continue
        if isinstance(getattr(mod, name), types.ModuleType):
            continue  # documented as a module of its own
        member = doc.members.get(name)
        if member is None:
            missing.append(f"{module}.{name} (not in the reference)")
            continue
        if isinstance(member, pdoc.doc.Variable) and not member.docstring.strip():
            home = _home_of_constant(module, name)
            if home is not None and home.startswith("jaxmia"):
                member = _doc(home).members.get(name, member)
        where = ".".join(p for p in member.taken_from if p)  # the defining module
        if not member.docstring.strip():
            missing.append(where)
        if isinstance(member, pdoc.doc.Class):
            for m in member.own_members:
                public = not m.name.startswith("_")
                if public and isinstance(m, pdoc.doc.Function) and not m.docstring.strip():
                    missing.append(f"{where}.{m.name}")
                elif public and isinstance(m, pdoc.doc.Variable) and _is_property(member, m):
                    if not m.docstring.strip():
                        missing.append(f"{where}.{m.name} (property)")
    return missing


def _is_property(cls: pdoc.doc.Class, var: pdoc.doc.Variable) -> bool:
    attr = inspect.getattr_static(cls.obj, var.name, None)
    return isinstance(attr, property | functools.cached_property)


def _resolves(target: str, module: types.ModuleType, cls: type | None) -> bool:
    """Whether a reference names something, looked up as pdoc's links would be: in the
    class, the module, its parent packages, or as a fully qualified name."""
    target = target.strip().removesuffix("()")
    parts = target.split(".")
    scopes: list[object] = [s for s in (cls, module) if s is not None]
    package = module.__name__.split(".")
    scopes += [importlib.import_module(".".join(package[:i])) for i in range(len(package), 0, -1)]
    for scope in scopes:
        obj = scope
        for part in parts:
            obj = getattr(obj, part, _MISSING)
            if obj is _MISSING:
                break
        else:
            return True
    for i in range(len(parts), 0, -1):  # fully qualified: a module, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part, _MISSING)
            if obj is _MISSING:
                break
        else:
            return True
    return False


_MISSING = object()


def _broken_references(module: str) -> list[str]:
    mod = importlib.import_module(module)
    doc = _doc(module)
    found = []

    def check(text: str, where: str, cls: type | None) -> None:
        for _, target in ROLE.findall(text or ""):
            if not _resolves(target, mod, cls):
                found.append(f"{where}: {target}")

    check(doc.docstring, module, None)
    for member in doc.own_members:
        if member.taken_from[0] != module:
            continue  # checked in its own module
        cls = member.obj if isinstance(member, pdoc.doc.Class) else None
        check(member.docstring, member.fullname, cls)
        for sub in getattr(member, "own_members", ()):
            check(sub.docstring, sub.fullname, cls)
    return found


# ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_reference_builds_without_warnings(tmp_path):
    pdoc.render.configure(docformat="google")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc("jaxmia", output_directory=tmp_path)
    from_pdoc = [
        f"{w.category.__name__}: {str(w.message).splitlines()[0]}"
        for w in caught
        if "pdoc" in w.filename.replace("\\", "/").split("/")
    ]
    assert not from_pdoc, "pdoc warned:\n" + "\n".join(from_pdoc)
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    expected = {"/".join(m.split(".")) + ".html" for m in _public_module_names()}
    assert expected <= pages, (
        f"modules missing from the reference: {sorted(expected - pages)} "
        "(pdoc leaves out a submodule that its package's __all__ does not list)"
    )
    metrics_page = (tmp_path / "jaxmia" / "metrics.html").read_text()
    assert "plot_roc" in metrics_page and "tpr_at_fpr" in metrics_page


def test_every_public_name_has_a_docstring():
    missing = sorted({m for name in _module_names() for m in _undocumented(name)})
    assert not missing, f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)


def test_every_reference_in_a_docstring_names_something():
    broken = [b for name in _module_names() for b in _broken_references(name)]
    assert not broken, "references to nothing:\n" + "\n".join(broken)


def test_the_checks_catch_what_they_should():
    mod = types.ModuleType("jaxmia._probe")
    mod.__doc__ = "Probe."
    mod.__all__ = ["f", "C", "gone"]
    exec(
        "def f():\n    pass\n"
        "class C:\n    '''A class.'''\n    def method(self):\n        pass\n"
        "    @property\n    def prop(self):\n        return 1\n",
        mod.__dict__,
    )
    import sys

    sys.modules["jaxmia._probe"] = mod
    _doc.cache_clear()
    try:
        with pytest.warns(UserWarning, match="'gone'.*does not resolve"):
            missing = set(_undocumented("jaxmia._probe"))
        assert missing == {
            "jaxmia._probe.f",
            "jaxmia._probe.C.method",
            "jaxmia._probe.C.prop (property)",
            "jaxmia._probe.gone (in __all__ but not defined)",
        }
    finally:
        del sys.modules["jaxmia._probe"]
        _doc.cache_clear()
    metrics = importlib.import_module("jaxmia._src.metrics.roc")
    assert _resolves("auc", metrics, None)
    assert _resolves("jaxmia._src.metrics.evaluation.AttackMetrics.to_dict", metrics, None)
    assert _resolves("metrics.auc", metrics, None)  # from the parent package
    assert not _resolves("no_such_function", metrics, None)
    assert not _resolves("jaxmia.metrics.nope", metrics, None)


def _literal_spans_left(html: str) -> list[str]:
    """Lines of rendered docstring HTML with a double backquote left over: an inline-code
    span that Markdown could not close (one broken across lines renders as stray
    backquotes and shifts every later span, e.g. ``tracing as`lira_online()``)."""
    return [line.strip() for line in html.splitlines() if "``" in line]


def _rendered_docstrings(name: str) -> dict[str, str]:
    """``{where: HTML}`` of a module's own docstrings, as pdoc converts them (google)."""
    doc = _doc(name)
    found = {name: doc.docstring}
    members = [m for m in doc.own_members if m.taken_from[0] == name]
    for member in members:
        found[member.fullname] = member.docstring
        for sub in getattr(member, "own_members", ()):
            found[sub.fullname] = sub.docstring
    path = doc.source_file
    return {
        where: pdoc.render_helpers.to_html(pdoc.docstrings.convert(text, "google", path))
        for where, text in found.items()
        if text
    }


def test_inline_code_renders_in_every_public_module():
    broken = {
        where: left
        for name in _public_module_names()
        for where, html in _rendered_docstrings(name).items()
        if (left := _literal_spans_left(html))
    }
    assert not broken, f"inline code left unrendered: {broken}"
    assert _literal_spans_left(pdoc.render_helpers.to_html("a ``b\nc;`` d"))
