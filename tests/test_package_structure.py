"""The shape of the package: no module above 300 lines, no import loop among its modules.

Import edges are read with ``ast`` from every ``import`` in a module, wherever it stands: at the
top, under ``if TYPE_CHECKING:``, or inside a function.  A loop that only type checkers or a
lazy import close is still a loop: it makes the modules one unit that cannot be read, tested or
moved apart.

An edge goes to the module actually named.  ``import hdl.ssl.base`` and ``from hdl.ssl.base import
X`` are edges to ``hdl.ssl.base``; ``from hdl.ssl import base`` is an edge to ``hdl.ssl.base`` when
``base`` is a module, and ``from hdl.ssl import REGISTRY`` an edge to ``hdl.ssl`` (its ``__init__``).
Relative imports are resolved the same way.

Importing ``hdl.ssl.base`` also runs ``hdl/ssl/__init__.py`` first, but that is not counted as an
edge from the importer to the package: Python creates the package before its children run, so a
child that takes nothing from its package's ``__init__`` does not depend on it, and the usual
pattern (an ``__init__`` importing its children to re-export their names) is no loop.  It becomes
one exactly when a child names the package back (``from hdl.ssl import register`` in a module that
``hdl/ssl/__init__.py`` imports): that is an explicit edge to ``hdl.ssl``, and a real loop, since
the child then reads names from an ``__init__`` that is still half-run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import hdl

MAX_LINES = 300
PACKAGE_ROOT = Path(hdl.__file__).parent


def module_files(root: Path) -> dict[str, Path]:
    """Every module of the package rooted at ``root``, by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _known_prefix(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module of the package (``hdl.a.b.f`` -> ``hdl.a.b``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _imported_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute name ``from X import ...`` takes its names from, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def import_edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """For each module, the package's modules it imports anywhere in its body (see the module docstring)."""
    edges: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(_known_prefix(alias.name, modules) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                source = _imported_from(node, module, path.name == "__init__.py")
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    targets.add(submodule if submodule in modules else _known_prefix(source, modules))
        edges[module] = {target for target in targets if target is not None and target != module}
    return edges


def import_loops(edges: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other in a loop (strongly connected components of two or more), sorted."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops = []

    def visit(module: str) -> None:  # Tarjan's algorithm; the package is small enough for recursion
        index[module] = lowlink[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(edges.get(module, ())):
            if target not in index:
                visit(target)
                lowlink[module] = min(lowlink[module], lowlink[target])
            elif target in on_stack:
                lowlink[module] = min(lowlink[module], index[target])
        if lowlink[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return sorted(loops)


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / next(iter(files)).split("/")[0]


def test_no_module_is_longer_than_300_lines():
    lengths = {module: len(path.read_text(encoding="utf-8").splitlines()) for module, path in module_files(PACKAGE_ROOT).items()}
    assert len(lengths) > 40  # the walk found the package
    assert {module: lines for module, lines in lengths.items() if lines > MAX_LINES} == {}


def test_the_package_has_no_import_loop():
    edges = import_edges(module_files(PACKAGE_ROOT))
    assert "hdl.data.splits" in edges["hdl.files.splits"] and "hdl.cell" in edges["hdl.data.splits"]  # edges are read
    assert import_loops(edges) == []


def test_loops_are_found_through_type_only_and_function_level_imports(tmp_path):
    package = write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
        "pkg/b.py": "from pkg.a import A\n",
        "pkg/c.py": "def f():\n    from . import d\n",
        "pkg/d.py": "import pkg.c\n",
        "pkg/e.py": "import os\nfrom pkg import a\n",
    })
    edges = import_edges(module_files(package))
    assert edges["pkg.e"] == {"pkg.a"}  # `from pkg import a` names the module a, not pkg's __init__
    assert import_loops(edges) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]


def test_an_init_importing_its_children_is_a_loop_only_when_a_child_names_the_package_back(tmp_path):
    reexports = {
        "pkg/__init__.py": "from pkg.base import register\nfrom pkg import one\n",
        "pkg/base.py": "REGISTRY = {}\n",
        "pkg/one.py": "from pkg.base import REGISTRY\n",
    }
    assert import_loops(import_edges(module_files(write_package(tmp_path / "fine", reexports)))) == []
    back = {**reexports, "pkg/one.py": "from pkg import register\n"}
    assert import_loops(import_edges(module_files(write_package(tmp_path / "loop", back)))) == [["pkg", "pkg.one"]]
    relative_back = {**reexports, "pkg/sub/__init__.py": "from .leaf import x\n", "pkg/sub/leaf.py": "from .. import sub\nfrom . import y\n"}
    assert import_loops(import_edges(module_files(write_package(tmp_path / "relative", relative_back)))) == [["pkg.sub", "pkg.sub.leaf"]]
