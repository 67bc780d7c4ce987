"""No module of jaxmia reads another module's private names (issue 24: internals are
private, and a name shared between modules is public in the module that defines it).

A private module (``jaxmia.attacks._checks``, ``jaxmia.metrics._roc_core``) is the
internals of its package: only modules of that package import it."""

import ast
import pathlib

import jaxmia

ROOT = pathlib.Path(jaxmia.__file__).parent


def _module_of(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _package_of(module: str) -> str:
    """The package whose internals a private module ``a.b._c`` (or its names) are."""
    parts = module.split(".")
    first = next(i for i, p in enumerate(parts) if _private(p))
    return ".".join(parts[:first])


def _offences(path: pathlib.Path) -> list[str]:
    """Private names of other jaxmia modules that the module at ``path`` reads."""
    here = _module_of(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    aliases: dict[str, str] = {}  # local name -> jaxmia module it names
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("jaxmia"):
                    aliases[a.asname or a.name.split(".")[0]] = a.name
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not node.module.startswith("jaxmia"):
                continue
            if any(_private(p) for p in node.module.split(".")):
                owner = _package_of(node.module)
                if not (package == owner or package.startswith(owner + ".")):
                    found.append(f"{here}: from {node.module} import ...")
            for a in node.names:
                if _private(a.name):
                    inside = package == node.module or package.startswith(node.module + ".")
                    if not inside:  # a private module of its own package is fine
                        found.append(f"{here}: from {node.module} import {a.name}")
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and _private(node.attr)
        ):
            found.append(f"{here}: {aliases[node.value.id]}.{node.attr}")
    return found


def test_no_module_reads_another_modules_private_names():
    offences = [o for path in sorted(ROOT.rglob("*.py")) for o in _offences(path)]
    assert not offences, "private names read across modules:\n" + "\n".join(offences)


def test_the_check_sees_each_kind_of_offence(tmp_path, monkeypatch):
    """The parser finds a private name imported, read as an attribute, and a private
    module imported from outside its package (so the test above can fail)."""
    fake = tmp_path / "jaxmia"
    (fake / "audit").mkdir(parents=True)
    (fake / "metrics").mkdir()
    (fake / "__init__.py").write_text("")
    code = (
        "from jaxmia.metrics.roc import _validate\n"
        "from jaxmia.metrics import _roc_core\n"
        "from jaxmia.metrics import roc\n"
        "roc._check_fprs\n"
    )
    (fake / "audit" / "x.py").write_text(code)
    (fake / "metrics" / "y.py").write_text("from jaxmia.metrics import _roc_core\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", fake)
    assert _offences(fake / "audit" / "x.py") == [
        "jaxmia.audit.x: from jaxmia.metrics.roc import _validate",
        "jaxmia.audit.x: from jaxmia.metrics import _roc_core",
        "jaxmia.audit.x: jaxmia.metrics.roc._check_fprs",
    ]
    assert _offences(fake / "metrics" / "y.py") == []
