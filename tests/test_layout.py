"""The package layout holds: no two modules import each other (directly, through a chain, or by name through
importlib), and analysis/ never imports ray or torch, counting imports inside functions too."""
from __future__ import annotations

import ast

from helpers import ROOT

PACKAGES = ("trainables", "sweeps", "analysis")


def _imports() -> dict[str, set[str]]:
    """module → the project modules it imports anywhere in its source."""
    graph: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).glob("*.py")):
            name = f"{pkg}.{path.stem}" if path.stem != "__init__" else pkg
            found = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    found.add(node.module)
                    found.update(f"{node.module}.{a.name}" for a in node.names)  # from pkg import module
                elif isinstance(node, ast.Import):
                    found.update(a.name for a in node.names)
            graph[name] = set()
            for target in found:
                if target.split(".")[0] in PACKAGES and target != name:
                    graph[name].add(target)
    modules = set(graph)
    return {m: {t for t in ts if t in modules} for m, ts in graph.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    graph = _imports()
    assert "sweeps.runner" in graph and "sweeps.search" in graph["sweeps.runner"]  # the scan sees real imports
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_by_name():
    for pkg in PACKAGES:
        for path in (ROOT / pkg).glob("*.py"):
            assert "importlib" not in path.read_text(), path


def test_analysis_never_imports_ray_or_torch():
    for path in (ROOT / "analysis").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in ("ray", "torch", "torchvision", "trainables", "sweeps"), \
                    (path.name, name)
