"""The import graph of ``disparate``: no cycles, and the validation module at its root."""

from __future__ import annotations

import ast
from pathlib import Path

import disparate

SRC = Path(disparate.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}
_TYPE_CHECKING = ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def imported(module: str) -> set[str]:
    """The ``disparate`` modules that ``module`` imports anywhere in its file (functions too),
    its own parent packages and ``if TYPE_CHECKING:`` imports left out (a submodule's import of
    its package is not a cycle)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # imports for type checkers only never run
        if isinstance(node, ast.If) and ast.unparse(node.test) in _TYPE_CHECKING:
            node.body = []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n in MODULES and not module.startswith(n + ".") and n != module}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_cycle_finder_finds_a_hand_made_cycle_and_no_false_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_imported_sees_function_level_imports_and_skips_type_checking_ones() -> None:
    assert "disparate.validation" in imported("disparate.federated.settings")
    assert "disparate.federated.settings" in imported("disparate.config.experiment")
    assert "disparate.data" in imported("disparate.config.loading")  # in check_dataset_options
    assert "disparate.study.spec" not in imported("disparate.study.aggregate")


def test_no_import_cycles_among_disparate_modules() -> None:
    graph = {m: imported(m) for m in MODULES}
    assert import_cycles(graph) == []


def test_validation_imports_nothing_from_disparate() -> None:
    assert imported("disparate.validation") == set()
