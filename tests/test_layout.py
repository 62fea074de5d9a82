"""The package's shape: no import cycles, the low-level layer stands on nothing above it, and
each shared helper has one home there (one public path per name: tests/test_exports.py).

Imports are read from the source (``ast``): those a module runs when it is imported, that is
at module level, outside ``if TYPE_CHECKING:`` blocks and outside functions (an import inside
a function runs on first use and cannot take part in an import cycle).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

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


# -- one home per helper ----------------------------------------------------------------------
#
# Each helper below was once written again wherever it was needed, with drifting semantics
# (two `check_timeout`s disagreed on infinity). Its home is the one module allowed to spell it
# out; everything else imports it from there.

CHECKS = {"check_int", "check_period", "check_seconds", "check_timeout", "is_int"}


def _imports(node: ast.AST, names: set[str]) -> bool:
    """Whether *node* imports one of the top-level modules *names*."""
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] in names for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] in names
    return False


def _defines_a_check(node: ast.AST) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in CHECKS


def _tests_for_bool(node: ast.AST) -> bool:
    """``isinstance(x, bool)`` or ``isinstance(x, (bool, …))``: "an int but not a bool"."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "isinstance"
        and len(node.args) == 2
        and any(isinstance(n, ast.Name) and n.id == "bool" for n in ast.walk(node.args[1]))
    )


def _touches_the_os(node: ast.AST) -> bool:
    """libc through ctypes, or a signal mask."""
    return _imports(node, {"ctypes"}) or (
        isinstance(node, ast.Attribute) and node.attr == "pthread_sigmask"
    )


def _asks_which_library(node: ast.AST) -> bool:
    return _imports(node, {"sniffio", "trio"})


def _looks_the_loop_up(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "_get_running_loop"


def _found(predicate: Callable[[ast.AST], bool], source: str) -> list[int]:
    return sorted(
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.stmt, ast.expr)) and predicate(node)
    )


def _outside(predicate: Callable[[ast.AST], bool], homes: set[str]) -> dict[str, list[int]]:
    """Where *predicate* holds in a module of the package other than *homes* (paths below
    src/asyncmp), with the lines."""
    found = {
        path.relative_to(PACKAGE).as_posix(): _found(predicate, path.read_text())
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    return {path: lines for path, lines in found.items() if lines and path not in homes}


def test_argument_checks_live_in_lowlevel_check() -> None:
    """`_lowlevel/_check.py` alone defines the argument checks and alone spells out "an int
    that is not a bool" (``isinstance(x, bool)``): every other module calls it (the channel
    core too)."""
    assert _outside(_defines_a_check, {"_lowlevel/_check.py"}) == {}
    assert _outside(_tests_for_bool, {"_lowlevel/_check.py"}) == {}


def test_libc_and_signal_masks_live_in_lowlevel_linux() -> None:
    """`_lowlevel/_linux.py` alone loads libc (``ctypes``: timerfd, signalfd) and changes
    signal masks (``pthread_sigmask``): the dharma timer, calloop's Signals, the dharma
    dispatcher and event loops call it, so none of them imports another for a private mask
    helper (the dispatcher imported dharma's `_system` for one, which imports it back)."""
    assert _outside(_touches_the_os, {"_lowlevel/_linux.py"}) == {}


def test_which_library_runs_is_asked_of_lowlevel_backend_only() -> None:
    """`_lowlevel/_backend.py` alone reads sniffio, imports trio and looks the running
    asyncio loop up with ``asyncio._get_running_loop``; the rest of the package asks it
    (`current_library`, `on_trio`, `running_asyncio_loop`, `get_running_loop`, `trio_api`).

    The one exception is the channel's hot path: its primitives (`_lowlevel/_primitives.py`,
    and `_speedups.pyx`, their compiled twin, which this scan of Python files does not read)
    hold their own reference to ``asyncio._get_running_loop``, called on every send and wait,
    where going through `_backend` would cost a module attribute look-up each time."""
    assert _outside(_asks_which_library, {"_lowlevel/_backend.py"}) == {}
    hot_path = {"_lowlevel/_backend.py", "_lowlevel/_primitives.py"}
    assert _outside(_looks_the_loop_up, hot_path) == {}


def test_the_home_checks_can_fail() -> None:
    """The scans above find what they look for, with its line."""
    source = (
        "import ctypes\n"
        "def check_timeout(t): return t\n"
        "ok = isinstance(v, (bool, str))\n"
        "import trio.lowlevel\n"
        "loop = asyncio._get_running_loop()\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, ())\n"
    )
    assert _found(_touches_the_os, source) == [1, 6]
    assert _found(_defines_a_check, source) == [2]
    assert _found(_tests_for_bool, source) == [3]
    assert _found(_asks_which_library, source) == [4]
    assert _found(_looks_the_loop_up, source) == [5]


# -- one word per concept ---------------------------------------------------------------------


def _names_a_core(node: ast.AST) -> bool:
    """A class named ``…Core`` or an attribute ``_core``: state behind handles is ``…State``
    (*core* is the compiled/pure choice, `asyncmp._cores`)."""
    return (isinstance(node, ast.ClassDef) and node.name.endswith("Core")) or (
        isinstance(node, ast.Attribute) and node.attr == "_core"
    )


def test_shared_state_is_named_state_and_core_is_the_compiled_or_pure_choice() -> None:
    """No class is a ``…Core`` and no handle holds a ``_core``: what handles share is a
    ``…State`` (trio's and anyio's word), so *core* keeps one meaning."""
    assert _outside(_names_a_core, set()) == {}
    assert _found(_names_a_core, "class _PingCore: pass\nx = self._core\n") == [1, 2]
