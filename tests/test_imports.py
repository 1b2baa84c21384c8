"""No import cycle between labkit's modules, deferred (function-level) imports included.

The graph is read from the source with ``ast``: every ``import`` and ``from ...
import`` anywhere in a module (top level, inside functions, under ``if
TYPE_CHECKING`` too, since a cycle hidden there comes back as soon as someone
moves the import up) is an edge from that module to the labkit module it loads.
``from package import name`` points at ``package.name`` when that is a module,
else at the package's ``__init__``. Importing ``a.b.c`` from outside package
``a.b`` also runs ``a/b/__init__.py``: that is an edge to ``a.b`` too (from
inside the package it is already loading, so no edge).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "labkit"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """The dotted name of the module at ``path`` under ``root`` (a package is its folder)."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package at ``root`` by dotted name."""
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The labkit modules that the module ``name`` (source at ``path``) imports, anywhere."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node, name, path.name == "__init__.py")
            for alias in node.names:
                member = f"{target}.{alias.name}"
                if member in known:
                    found.add(member)
                elif target in known:
                    found.add(target)
    found |= {parent for module in found for parent in _parents(module, name) if parent in known}
    found.discard(name)
    return found


def _parents(module: str, importer: str) -> list[str]:
    """The packages that importing ``module`` runs and ``importer`` is not already inside."""
    parts = module.split(".")
    packages = [".".join(parts[:end]) for end in range(1, len(parts))]
    return [p for p in packages if importer != p and not importer.startswith(p + ".")]


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    found = modules(root)
    known = set(found)
    return {name: imports(name, path, known) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path ``a -> b -> a``) per strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(start: str) -> None:  # Tarjan, iterative: the graph may be deep
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(group)

    for name in sorted(edges):
        if name not in index:
            visit(name)
    return [_path_within(group, edges) for group in groups]


def _path_within(group: set[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest closed path through the group's first module (breadth first inside it)."""
    start = min(group)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges[node] & group):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")  # pragma: no cover


def test_labkit_has_no_import_cycle() -> None:
    found = cycles(graph())
    assert not found, "import cycles between labkit modules:\n" + "\n".join(
        " -> ".join(cycle) for cycle in found
    )


def test_every_module_is_read() -> None:
    edges = graph()
    assert {"labkit", "labkit.plan", "labkit.checks.base", "labkit.sandbox.shortener.app"} <= set(
        edges
    )
    assert "labkit.errors" in edges["labkit.plan"]


def write(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for relative, text in files.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"__init__.py": "", "a.py": "import pkg.b\n", "b.py": "x = 1\n"}, []),
        (
            {"__init__.py": "", "a.py": "import pkg.b\n", "b.py": "import pkg.a\n"},
            [["pkg.a", "pkg.b", "pkg.a"]],
        ),
        (  # a deferred import closes the loop too
            {
                "__init__.py": "",
                "a.py": "from pkg import b\n",
                "b.py": "def f():\n    from pkg.c import x\n",
                "c.py": "from . import a\nx = 1\n",
            },
            [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]],
        ),
        (  # a name from a package points at its __init__, which imports the module back
            {
                "__init__.py": "from pkg.sub.base import Thing\n",
                "sub/__init__.py": "from pkg.sub.base import Thing\n",
                "sub/base.py": "class Thing: ...\ndef g():\n    from pkg.sub import other\n",
                "sub/other.py": "from pkg.sub import Thing\n",
            },
            [["pkg.sub", "pkg.sub.base", "pkg.sub.other", "pkg.sub"]],
        ),
        (  # a package importing its own modules is no cycle
            {"__init__.py": "from pkg.a import x\n", "a.py": "x = 1\n"},
            [],
        ),
        (  # a module of a package, imported from outside, runs the package's __init__ too
            {
                "__init__.py": "",
                "a.py": "def f():\n    from pkg.sub.light import x\n",
                "sub/__init__.py": "from pkg.sub.heavy import y\n",
                "sub/light.py": "x = 1\n",
                "sub/heavy.py": "import pkg.a\ny = 2\n",
            },
            [["pkg.a", "pkg.sub", "pkg.sub.heavy", "pkg.a"]],
        ),
        (  # modules inside a package import each other through its __init__ without a cycle
            {
                "__init__.py": "",
                "sub/__init__.py": "from pkg.sub.one import x\n",
                "sub/one.py": "from pkg.sub.two import z\nx = z\n",
                "sub/two.py": "z = 1\n",
            },
            [],
        ),
    ],
)
def test_cycles_are_found_and_named(
    tmp_path: Path, files: dict[str, str], expected: list[list[str]]
) -> None:
    assert cycles(graph(write(tmp_path, files))) == expected
