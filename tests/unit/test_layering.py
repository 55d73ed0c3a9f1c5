"""The layers point one way and no module imports itself back (ast over the source tree).

Folders map to packages as pyproject's package-dir does: nodetape/ -> nodetape,
recorder/ -> nodetape.recorder, replay/ -> nodetape.replay, schemas/ ->
nodetape.schemas, queries/ -> nodetape.queries. Every import counts, also one
inside a function (a lazy import is still a dependency).

    core (0) < schemas (1) < tape (2) < recorder, replay, queries (3) < the rest of nodetape/ (4)
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDERS = {"nodetape": "nodetape", "recorder": "nodetape.recorder", "replay": "nodetape.replay",
           "schemas": "nodetape.schemas", "queries": "nodetape.queries"}
LAYERS = {"nodetape.core": 0, "nodetape.schemas": 1, "nodetape.tape": 2,
          "nodetape.recorder": 3, "nodetape.replay": 3, "nodetape.queries": 3, "nodetape.store": 3}
TOP = 4


def modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("").parts
            if rel[-1] == "__init__":
                rel = rel[:-1]
            out[".".join((package, *rel))] = path
    return out


MODULES = modules()


def layer(module: str) -> int:
    for prefix, n in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return n
    return TOP


def folder(module: str) -> str:
    """The unit of the folder-level check: nodetape.X for a subpackage, nodetape for top-level modules."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and ".".join(parts[:2]) in LAYERS else "nodetape"


def _target(name: str) -> str | None:
    """The package module `name` is, or lives in (an attribute import names its module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str, path: Path) -> list[tuple[str, int]]:
    """(imported package module, line) for every import statement in the file."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for n in names:
            t = _target(n) if n.startswith("nodetape") else None
            if t and t != module:
                found.append((t, node.lineno))
    return found


GRAPH = {m: imports(m, p) for m, p in MODULES.items()}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_the_whole_package():
    assert {"nodetape.cli", "nodetape.api", "nodetape.core.errors", "nodetape.tape.reader", "nodetape.schemas",
            "nodetape.recorder.loop", "nodetape.replay.stream", "nodetape.queries"} <= set(MODULES)
    assert "nodetape.queries.macros" in {t for t, _ in GRAPH["nodetape.api"]}  # a lazy import counts


def test_no_upward_import_between_layers():
    bad = [f"{MODULES[m].relative_to(REPO)}:{line}: {m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
           for m, targets in GRAPH.items() for t, line in targets if layer(t) > layer(m)]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_import_cycle_between_modules():
    cycles = _cycles({m: {t for t, _ in targets} for m, targets in GRAPH.items()})
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_import_cycle_between_folders():
    edges: dict[str, set[str]] = {}
    for m, targets in GRAPH.items():
        edges.setdefault(folder(m), set()).update(folder(t) for t, _ in targets if folder(t) != folder(m))
    cycles = _cycles(edges)
    assert not cycles, "folder cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_readme_layout_names_the_tree():
    text = (REPO / "README.md").read_text()
    block = text[text.index("## Layout"):].split("```")[1]
    for name in ("nodetape/core/", "nodetape/tape/", *(f"{f}/" for f in FOLDERS)):
        assert name in block, name
    top = sorted(p.name for p in (REPO / "nodetape").glob("*.py") if p.name != "__init__.py")
    missing = [n for n in top if n not in block]
    assert not missing, f"README Layout does not name: {missing}"


MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60
# over the limits when this test was written, in files other parts of issue 13 are
# rewriting; an entry that no longer exceeds its limit fails too, so the list only shrinks
KNOWN_OVER: set[str] = set()


def _over_limits() -> set[str]:
    over = set()
    for path in MODULES.values():
        rel = str(path.relative_to(REPO))
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            over.add(rel)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                over.add(f"{rel}:{node.name}")
    return over


def test_no_module_over_400_lines_and_no_function_over_60():
    over = _over_limits()
    assert over <= KNOWN_OVER, f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function: " \
                               f"{sorted(over - KNOWN_OVER)}"
    assert not KNOWN_OVER - over, f"now within the limits, drop from KNOWN_OVER: {sorted(KNOWN_OVER - over)}"
