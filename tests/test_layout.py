"""The package's shape: no import cycles, and the low-level layer stands on nothing above it.

Imports are read from the source (``ast``): those a module runs when it is imported, that is
at module level, outside ``if TYPE_CHECKING:`` blocks and outside functions (an import inside
a function runs on first use and cannot take part in an import cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "asyncmp"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(path: Path) -> set[str]:
    """The asyncmp modules *path* imports when it is imported."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + node.orelse + node.finalbody)
                for handler in node.handlers:
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("asyncmp"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                if target.startswith("asyncmp"):
                    found.add(target)
                    # `from . import task` imports the submodule asyncmp.task.
                    found.update(f"{target}.{a.name}" for a in node.names)

    visit(ast.parse(path.read_text()).body)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        name: _runtime_imports(path) & modules.keys() - {name} for name, path in modules.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_no_import_cycles() -> None:
    """No module imports itself through others (imports under TYPE_CHECKING excepted)."""
    assert _cycle(_graph()) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a graph with a cycle is reported with the cycle."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_lowlevel_stands_on_nothing_above_it() -> None:
    """asyncmp._lowlevel imports only itself and asyncmp._errors: everything else in the
    package stands on it, never the other way round."""
    graph = _graph()
    for module, imports in graph.items():
        if module.startswith("asyncmp._lowlevel"):
            above = {m for m in imports if not m.startswith("asyncmp._lowlevel")}
            assert above <= {"asyncmp._errors"}, (module, above)


@pytest.mark.parametrize("package", ["asyncmp.dharma", "asyncmp.calloop", "asyncmp.nats"])
def test_subpackage_names_report_the_public_module(package: str) -> None:
    """Classes and functions a subpackage re-exports name the subpackage in tracebacks and
    the docs (asyncmp.dharma.Sender), not a private module."""
    import importlib

    try:
        module = importlib.import_module(package)
    except ImportError as exc:  # an optional extra that is not installed
        pytest.skip(f"{package}: {exc}")
    for name in module.__all__:
        defined_in = getattr(getattr(module, name), "__module__", None)
        if isinstance(defined_in, str) and defined_in.startswith("asyncmp"):  # not an alias of int
            assert defined_in == package, name
