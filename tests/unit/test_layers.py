"""The package's shape: its top-level packages import each other without a cycle, few modules lie loose on top,
and no function runs over a screen (STYLE.md: past a screen, logic wants a home of its own).

Imports inside functions and under TYPE_CHECKING count: grimp reads them all. `lint-imports`
(contracts in pyproject.toml) checks the order of the layers; this names any cycle outright.
"""

from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path

import grimp
import pytest

import video_pipelines

PACKAGE = "video_pipelines"
MAX_LOOSE_MODULES = 4
MAX_FUNCTION_LINES = 60

Edges = dict[str, dict[str, tuple[str, str]]]  # package -> imported package -> one (importer, imported) behind it


@pytest.fixture(scope="module")
def package_imports() -> Edges:
    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    edges: Edges = {}
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            source, target = _top(module), _top(imported)
            if source != target:
                edges.setdefault(source, {}).setdefault(target, (module, imported))
    return edges


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycle(edges: Edges) -> list[str] | None:
    """One cycle of `edges` as its packages in order (the first repeated at the end), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(edges.get(node, {})):
            found = visit(target, [*path, node])
            if found is not None:
                return found
        done.add(node)
        return None

    for start in sorted(edges):
        found = visit(start, [])
        if found is not None:
            return found
    return None


def test_the_top_level_packages_import_each_other_without_a_cycle(package_imports: Edges) -> None:
    cycle = _cycle(package_imports)
    if cycle is not None:
        imports = [" imports ".join(package_imports[a][b]) for a, b in pairwise(cycle)]
        pytest.fail("import cycle between packages: " + " -> ".join(cycle) + "\n  " + "\n  ".join(imports))


def test_a_cycle_is_named_with_its_packages() -> None:
    edges: Edges = {"p.a": {"p.b": ("p.a.x", "p.b.y")}, "p.b": {"p.a": ("p.b.y", "p.a.z")}, "p.c": {}}
    assert _cycle(edges) == ["p.a", "p.b", "p.a"]
    assert _cycle({"p.a": {"p.b": ("p.a.x", "p.b.y")}}) is None


def test_the_top_of_the_package_holds_few_loose_modules() -> None:
    loose = sorted(
        path.name for path in Path(video_pipelines.__file__).parent.glob("*.py") if path.name != "__init__.py"
    )
    assert len(loose) <= MAX_LOOSE_MODULES, f"loose modules on top of {PACKAGE}: {loose}; give them a folder"


def test_no_function_runs_over_a_screen() -> None:
    root = Path(video_pipelines.__file__).parent
    long = [
        f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({lines} lines)"
        for path in sorted(root.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (lines := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_FUNCTION_LINES
    ]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
