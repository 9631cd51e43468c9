"""No import cycle among the modules of src/isobn: every import counts, at module level, inside
a function or under TYPE_CHECKING, so a module can always be read (and loaded) before the
modules that use it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "isobn"


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py below ``package`` (a package is its
    __init__.py)."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The isobn modules that ``name`` imports anywhere in its source.

    ``from P import x`` is an edge to P.x when that is a module, else to P; relative imports
    are resolved against the module's package. The implicit import of a parent package
    (``isobn.a.b`` runs ``isobn/a/__init__``) is not an edge: it never cycles through code
    that has not started running.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                targets.add(child if child in modules else base)
    return {t for t in targets if t in modules and t != name}


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = module_files(package)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_src():
    found = cycles(import_graph(PACKAGE))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize(
    "sources, expected",
    [
        ({"a.py": "from isobn import b\n", "b.py": "def f():\n    import isobn.a\n"}, 1),
        (
            {
                "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from isobn.b import X\n",
                "b.py": "from .c import Y\n",
                "c.py": "from isobn.a import Z\n",
            },
            1,
        ),
        ({"a.py": "from isobn.b import f\n", "b.py": "import numpy\n"}, 0),
        ({"p/__init__.py": "from isobn.p.q import f\n", "p/q.py": "x = 1\n"}, 0),
        ({"p/__init__.py": "from .q import f\n", "p/q.py": "from isobn.p import g\n"}, 1),
    ],
)
def test_cycles_are_found_at_any_depth(tmp_path, sources, expected):
    package = tmp_path / "isobn"
    for name, text in {"__init__.py": "", **sources}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    assert len(cycles(import_graph(package))) == expected
