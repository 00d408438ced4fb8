"""The module import graph of ``edrfleet/``: no circles, and each room imports only what it may.

Every import counts: top-level, inside a function, under ``if TYPE_CHECKING:``, and
``importlib.import_module("literal")``, because a lazy import hides a circle without removing it.
An import of ``a.b.c`` is an edge to the deepest module that exists (``a/b/c.py`` or
``a/b/c/__init__.py``); ``from a.b import c`` is an edge to ``a.b.c`` when that is a module.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

from edrfleet.fleet.deploy.release import AGENT_SHARED_MODULES

PACKAGE = Path(__file__).resolve().parents[2] / "edrfleet"
ROOT = PACKAGE.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The deepest module of ours that ``name`` names (None: not ours)."""
    known = modules()
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def _absolute(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(source: str, here: str, is_package: bool = False) -> list[str]:
    """Every module name the code of module ``here`` imports, at any depth of its tree."""
    tree = ast.parse(source, filename=here)
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _absolute(node, here, is_package)
            names.append(mod)
            names += [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules()]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.append(node.args[0].value)
    return names


def _imports_in(path: Path) -> list[str]:
    return imported_names(path.read_text(encoding="utf-8"), module_name(path),
                          path.name == "__init__.py")


@cache
def graph() -> dict[str, frozenset[str]]:
    """module -> the modules of ours it imports (itself left out)."""
    out: dict[str, frozenset[str]] = {}
    for name, path in modules().items():
        deps = {_resolve(n) for n in _imports_in(path)}
        out[name] = frozenset(d for d in deps if d and d != name)
    return out


def find_cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as one
    circle through its members, sorted so that a failure names them the same way every run."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
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
            if len(comp) > 1:
                components.append(_circle(sorted(comp), edges))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(edges) + 100))
    try:
        for v in sorted(edges):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(components)


def _circle(members: list[str], edges: dict[str, frozenset[str]]) -> list[str]:
    """One path a -> ... -> a inside a strongly connected component (breadth first)."""
    inside = set(members)
    start = members[0]
    came: dict[str, str] = {}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges[v] & inside):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(came[path[-1]])
                return [*reversed(path), start]
            if w not in came:
                came[w] = v
                queue.append(w)
    return members  # unreachable for a real component


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_finds_a_circle_and_names_it() -> None:
    edges = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}),
             "d": frozenset({"a"})}
    assert find_cycles(edges) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_sees_lazy_relative_and_type_only_imports() -> None:
    code = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x.y\n"
            "def g():\n    from p.q import r\n    importlib.import_module('s.t')\n"
            "from .sib import k\nfrom .. import up\n")
    names = imported_names(code, "pkg.sub.mod")
    assert {"x.y", "p.q", "s.t", "pkg.sub.sib", "pkg"} <= set(names)
    assert "pkg.sub.inner" in imported_names("from .inner import k\n", "pkg.sub", True)


def test_the_graph_sees_the_package() -> None:
    g = graph()
    assert "edrfleet.cli.main" in g and "edrfleet.errors" in g
    assert "edrfleet.cli.policy_cmd" in g["edrfleet.cli.main"]  # a function-level import


def test_no_import_circles() -> None:
    cycles = find_cycles(graph())
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _imports_of(room: str) -> dict[str, set[str]]:
    return {m: set(deps) for m, deps in graph().items() if _room(m) == room}


@pytest.mark.parametrize(("room", "allowed"), [
    # the agent runs on the hosts' system python from a zipapp of edrfleet/agent/ and the
    # shared modules the release carries beside it (release.AGENT_SHARED_MODULES)
    ("agent", {"edrfleet." + m.removesuffix(".py") for m in AGENT_SHARED_MODULES
               if m != "__init__.py"} | {"edrfleet"}),
    # the policy compiler is a library of its own: the errors' root, the kernel numbers (the
    # header, read through kernel_abi) and where the header is
    ("policy", {"edrfleet", "edrfleet.errors", "edrfleet.kernel_abi", "edrfleet.paths"}),
])
def test_room_imports_only_itself_and(room: str, allowed: set[str]) -> None:
    wrong = {m: sorted(d for d in deps if _room(d) != room and d not in allowed)
             for m, deps in _imports_of(room).items()}
    assert not {m: d for m, d in wrong.items() if d}


def test_agent_imports_only_stdlib_and_bcc() -> None:
    stdlib = set(sys.stdlib_module_names)
    wrong = {}
    for name, path in modules().items():
        if _room(name) != "agent":
            continue
        outside = {n.split(".")[0] for n in _imports_in(path)} - stdlib - {"bcc", "edrfleet"}
        if outside:
            wrong[name] = sorted(outside)
    assert not wrong


def test_only_cli_imports_cli() -> None:
    wrong = {m: sorted(d for d in deps if _room(d) == "cli")
             for m, deps in graph().items() if _room(m) != "cli"}
    assert not {m: d for m, d in wrong.items() if d}


def test_fleet_does_not_import_lab() -> None:
    wrong = {m: sorted(d for d in deps if _room(d) == "lab")
             for m, deps in _imports_of("fleet").items()}
    assert not {m: d for m, d in wrong.items() if d}
