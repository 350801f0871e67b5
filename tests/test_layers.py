"""The house's rules, checked on every `make test`: no import circles, and imports run downward.

Read from the source with `ast` (imports under TYPE_CHECKING count too: a circle of type names is
still a circle for a reader). The layers, top to bottom, are described in docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("proxy", "detectors", "drift")

# Top to bottom; a module belongs to the first entry whose name is its own or a package above it.
LAYERS: list[tuple[str, ...]] = [
    ("proxy.__main__", "proxy.cli", "proxy.server", "proxy.embedded"),
    ("proxy.app", "proxy.control"),
    ("proxy.routes", "proxy.openapi"),
    ("proxy.state",),
    ("proxy.relay",),
    ("proxy.settings",),
    ("proxy.policy", "proxy.governance", "proxy.review", "proxy.driftwatch", "proxy.cache", "proxy.codeploy",
     "proxy.telemetry", "proxy.metrics", "proxy.localmodel"),
    ("proxy.upstream",),
    ("proxy.exchange", "proxy.taps", "proxy.wire", "proxy.section", "proxy.errors", "proxy.headers",
     "proxy.tasks", "proxy.lightmetrics", "proxy.tracing", "proxy.sealing"),
    ("detectors", "drift"),
]
WINGS = LAYERS[6]

# Imports that run up a layer, each on purpose (docs/architecture.md says why). At most three.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a `from package import name` names the submodule if any)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            for name in names:
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name and name != mod and mods[name].name != "__init__.py":
                    edges[mod].add(name)
    return edges


def layer(mod: str) -> int:
    for index, names in enumerate(LAYERS):
        if any(mod == n or mod.startswith(n + ".") for n in names):
            return index
    raise AssertionError(f"{mod} is in no layer of tests/test_layers.py: place it")


def wing(mod: str) -> str | None:
    return next((n for n in WINGS if mod == n or mod.startswith(n + ".")), None)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for start in edges:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on.add(start)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_circles() -> None:
    assert circles(imports(modules())) == []


def test_detectors_and_drift_stand_alone() -> None:
    edges = imports(modules())
    bad = [f"{a} -> {b}" for a in edges for b in edges[a]
           if (a.startswith("detectors") and not b.startswith("detectors"))
           or (a.startswith("drift") and not b.startswith("drift"))]
    assert bad == []


def test_wings_import_neither_the_app_nor_the_control_plane() -> None:
    edges = imports(modules())
    bad = [f"{a} -> {b}" for a in edges if wing(a) for b in edges[a]
           if b.startswith(("proxy.app", "proxy.control", "proxy.state", "proxy.routes", "proxy.relay"))]
    assert bad == []


def test_upstream_imports_no_wing() -> None:
    edges = imports(modules())
    bad = [f"{a} -> {b}" for a in edges if a.startswith("proxy.upstream") for b in edges[a] if wing(b)]
    assert bad == []


def test_imports_run_down_but_for_the_few_named() -> None:
    edges = imports(modules())
    upward = {(a, b) for a in edges for b in edges[a] if layer(b) < layer(a)}
    assert upward == set(ALLOWED_UPWARD)
    assert len(ALLOWED_UPWARD) <= 3


def test_the_rules_catch_a_circle_and_an_upward_import() -> None:
    """The checks themselves: a made-up graph with both faults is caught."""
    assert circles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert layer("proxy.exchange") > layer("proxy.upstream.group") > layer("proxy.policy.engine") > layer("proxy.app")
