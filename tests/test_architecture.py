"""The package's import graph: no cycles, and ``models`` depends on nothing above it.

Imports inside functions count too: a cycle hidden in a lazy import still means two modules
that cannot be understood (or moved) one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# What models may import: the foundations below every task package (docs/architecture.md).
MODELS_MAY_IMPORT = {"atomic", "constants", "precision", "typed_config", "version"}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in (SRC / "clipforge").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The clipforge modules ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*kept, base] if base else kept)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("clipforge") and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path of imports from ``start`` back to itself, if there is one (depth-first)."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return [*path, start]
            # A package's __init__ importing its own submodules is how packages are built.
            if nxt not in seen and not start.startswith(nxt + "."):
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_module_imports_itself_back() -> None:
    graph = _graph()
    cycles = [cycle for name in graph if (cycle := _cycle_from(name, graph))]
    assert not cycles, f"import cycles: {cycles[:3]}"


def test_models_imports_only_the_foundations() -> None:
    graph = _graph()
    outside = {
        (name, target)
        for name, targets in graph.items()
        if name.startswith("clipforge.models")
        for target in targets
        if not target.startswith("clipforge.models")
        and target.removeprefix("clipforge.") not in MODELS_MAY_IMPORT
        and target != "clipforge"
    }
    assert not outside, f"models imports beyond its foundations: {sorted(outside)}"
