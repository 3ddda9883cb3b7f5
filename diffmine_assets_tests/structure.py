"""The package's structure, measured from its own imports (read as text by
`ast`; nothing of it is imported or run):

    python -m diffmine_assets_tests.structure

prints one line of JSON: modules and their lines, the import circles between
modules and between rooms, the floors of the rooms (a room stands above every
room it imports; floor 1 imports none), the imports of the package's own
modules made inside functions, the length of every asset's body, and the
callers of the typicality engine's maps function. A room is a module of the
package's top or of `mining/`'s top, or a folder below those (`assets/`,
`bench/`, `storage/`, `mining/typicality/`, ...): the units a reader sees.
test_structure.py holds the goals of docs/DESIGN.md against these figures.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

PACKAGE = "diffmine_assets"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
# folders whose modules are each a room; any other folder is one room
OPENED = (PACKAGE, f"{PACKAGE}.mining")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_package(name: str, mods: dict[str, Path]) -> bool:
    return mods[name].name == "__init__.py"


def _resolve(node: ast.ImportFrom, importer: str, mods: dict[str, Path]) -> list[str]:
    """The package's own modules an import reaches (a name that is a
    submodule counts as that submodule)."""
    if node.level:
        base = importer.split(".")
        if not _is_package(importer, mods):
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
        return []
    found = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        if sub in mods:
            found.append(sub)
        elif target in mods:
            found.append(target)
    return sorted(set(found))


def imports(mods: dict[str, Path]) -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    """Module -> the package's modules it imports; and the imports of the
    package's own modules made inside a function (module, line, target)."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    inside: list[tuple[str, int, str]] = []
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        nested = {id(n) for f in functions for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom):
                targets = _resolve(node, name, mods)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name in mods]
            for t in targets:
                if t != name:
                    graph[name].add(t)
                    if id(node) in nested:
                        inside.append((name, node.lineno, t))
    return graph, inside


def room_of(name: str) -> str:
    parts = name.split(".")
    for depth in range(len(parts) - 1, 0, -1):
        parent = ".".join(parts[:depth])
        if parent in OPENED:
            return ".".join(parts[: depth + 1])
    return name


def rooms(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m, targets in graph.items():
        r = room_of(m)
        out.setdefault(r, set())
        out[r] |= {room_of(t) for t in targets if room_of(t) != r}
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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


def floors(graph: dict[str, set[str]]) -> dict[str, int]:
    """Floor of each node of an acyclic graph: 1 + the highest floor it imports."""
    memo: dict[str, int] = {}

    def floor(v: str, seen: frozenset = frozenset()) -> int:
        if v in memo:
            return memo[v]
        if v in seen:  # a circle: measured as flat, reported by circles()
            return 1
        memo[v] = 1 + max((floor(w, seen | {v}) for w in graph.get(v, ())), default=0)
        return memo[v]

    return {v: floor(v) for v in graph}


def asset_bodies(mods: dict[str, Path]) -> dict[str, int]:
    """Lines of every asset's body (decorated with asset or multi_asset), its docstring left out."""
    out = {}
    for name, path in mods.items():
        if not name.startswith(f"{PACKAGE}.assets."):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef):
                continue
            decorators = [d.func if isinstance(d, ast.Call) else d for d in node.decorator_list]
            if any(isinstance(d, ast.Name) and d.id in ("asset", "multi_asset") for d in decorators):
                body = node.body[1:] if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) else node.body
                out[f"{name}.{node.name}"] = body[-1].end_lineno - body[0].lineno + 1
    return out


def callers(mods: dict[str, Path], function: str) -> list[str]:
    """Modules that call `function`, by name."""
    out = []
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                if called == function:
                    out.append(name)
                    break
    return out


def measure() -> dict:
    mods = modules()
    graph, inside = imports(mods)
    room_graph = rooms(graph)
    room_floors = floors(room_graph)
    lines = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in mods.items()}
    return {
        "modules": len(mods),
        "lines": sum(lines.values()),
        "largest_modules": dict(sorted(lines.items(), key=lambda kv: -kv[1])[:5]),
        "arrows": sum(len(v) for v in graph.values()),
        "module_circles": circles(graph),
        "rooms": len(room_graph),
        "room_arrows": sum(len(v) for v in room_graph.values()),
        "room_circles": circles(room_graph),
        "floors": max(room_floors.values()),
        "rooms_by_floor": {f: sorted(r.removeprefix(PACKAGE + ".") for r, fl in room_floors.items() if fl == f) for f in sorted(set(room_floors.values()), reverse=True)},
        "imports_inside_functions": [f"{m}:{line} -> {t}" for m, line, t in inside],
        "asset_bodies": asset_bodies(mods),
        "typicality_maps_callers": callers(mods, "typicality_maps"),
    }


if __name__ == "__main__":
    print(json.dumps(measure()))
