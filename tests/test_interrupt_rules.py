"""The library's rules for interrupts and finalizers (docs/design.md, "Interrupts and
finalizers"), checked on the interpreter and on the source.

- **The interpreter property the lock rule stands on**: ``with lock:`` never leaves a lock
  held when a signal handler raises as the acquire returns, and ``lock.acquire()`` followed
  by ``try:`` does (a real signal, made deterministic by `interrupting`).
- **The lock rule, on the source**: no ``X.acquire()`` statement whose lock the same function
  releases (the acquire-then-``try:`` idiom), and no ``__enter__`` written in Python that
  acquires outside a ``try`` or ``__exit__`` that releases (``with`` protects a C
  ``__enter__`` only).
- **The finalizer rule, on the source**: every ``__del__`` hands its work to
  ``_lowlevel._finalize.finalize``.

- **The channel's lock**: the one acquire-then-``try:`` allowed is on the channel's own
  `Mutex` (``….lock``, in `CHANNEL_FILE`), with the ``try`` right after it. It cannot be left
  held: on the compiled core no Python code runs between, and the pure core's
  ``Mutex.acquire`` lets go if interrupted as it acquires (tests/channel/test_channel_lock.py),
  after which no check of the eval loop comes before the ``try`` (CPython 3.11 and later).

Nothing is exempt from the rules: every file of the package is scanned.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

import asyncmp
from interrupting import WITH_PROTECTS, ctrl_c, interrupt_as_acquired

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "asyncmp"

CHANNEL_FILE = "_channel_py.py"
"""The channel's protocol (both cores), whose lock is taken as acquire-then-``try:`` (module
doc)."""


# -- the interpreter property ------------------------------------------------------------------


def with_form(lock: threading.Lock) -> int:
    with lock:
        x = 1
    return x


def acquire_then_try_form(lock: threading.Lock) -> int:
    lock.acquire()  # the unsafe idiom, on purpose: the control case
    try:
        x = 1
    finally:
        lock.release()
    return x


def _locks() -> list[object]:
    locks: list[object] = [pytest.param(threading.Lock, id="threading.Lock")]
    if asyncmp.CORE == "compiled":
        from asyncmp import _speedups

        locks.append(pytest.param(_speedups.Mutex, id="compiled Mutex"))
    return locks


@WITH_PROTECTS
@pytest.mark.parametrize("make_lock", _locks())
def test_with_lock_is_let_go_when_a_signal_handler_raises_as_it_is_acquired(
    make_lock: type[threading.Lock],
) -> None:
    """On this CPython, a signal whose handler is due in the instant ``with lock:`` acquired
    the lock raises inside the block, so the lock is let go: no check of the eval loop runs
    between a C ``__enter__`` and the protected block."""
    for _ in range(3):
        lock = make_lock()
        with (
            ctrl_c(),
            interrupt_as_acquired(lock, with_form) as window,
            pytest.raises(KeyboardInterrupt),
        ):
            with_form(lock)
        assert window.tripped
        assert not lock.locked()


@pytest.mark.parametrize("make_lock", _locks())
def test_acquire_then_try_leaves_the_lock_held_when_a_signal_handler_raises(
    make_lock: type[threading.Lock],
) -> None:
    """The control: the same signal after ``lock.acquire()`` and before ``try:`` raises with
    the lock held, for good — the fault the rule removes (so the method above can fail)."""
    lock = make_lock()
    with (
        ctrl_c(),
        interrupt_as_acquired(lock, acquire_then_try_form) as window,
        pytest.raises(KeyboardInterrupt),
    ):
        acquire_then_try_form(lock)
    assert window.tripped
    assert lock.locked()
    lock.release()


# -- the lock rule, on the source ----------------------------------------------------------------


def _name(node: ast.expr) -> str:
    return ast.unparse(node)


def _calls(node: ast.AST, method: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(node)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == method
    ]


def _inside_try(func: ast.AST, target: ast.AST) -> bool:
    """Whether *target* is in the body of a ``try`` (of *func*) that has handlers."""
    for node in ast.walk(func):
        if isinstance(node, ast.Try) and (node.handlers or node.finalbody):
            for stmt in node.body:
                if any(n is target for n in ast.walk(stmt)):
                    return True
    return False


def _followed_by_its_try(func: ast.AST, stmt: ast.stmt, lock: str) -> bool:
    """Whether *stmt* (``lock.acquire()``) is followed at once by a ``try`` whose ``finally``
    lets *lock* go."""
    for node in ast.walk(func):
        for field in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(node, field, None)
            if not isinstance(block, list) or stmt not in block:
                continue
            after = block[block.index(stmt) + 1 : block.index(stmt) + 2]
            return (
                bool(after)
                and isinstance(after[0], ast.Try)
                and any(
                    _name(call.func.value) == lock  # type: ignore[attr-defined]
                    for final in after[0].finalbody
                    for call in _calls(final, "release")
                )
            )
    return False


def unsafe_lock_uses(source: str, *, channel: bool = False) -> list[str]:
    """Where *source* takes a lock in a way an interrupt can leave it held (module doc).
    With *channel*, the channel's `Mutex` (``….lock``) may be taken right before its
    ``try``."""
    found: list[str] = []
    for func in ast.walk(ast.parse(source)):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        released = {_name(call.func.value) for call in _calls(func, "release")}  # type: ignore[attr-defined]
        for stmt in ast.walk(func):
            if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
                continue
            call = stmt.value
            if not (isinstance(call.func, ast.Attribute) and call.func.attr == "acquire"):
                continue
            lock = _name(call.func.value)
            if func.name == "__enter__" and not _inside_try(func, stmt):
                found.append(f"{func.name}:{stmt.lineno}: {lock}.acquire() in a Python __enter__")
            elif lock in released and not _inside_try(func, stmt):
                if channel and lock.endswith(".lock") and _followed_by_its_try(func, stmt, lock):
                    continue
                found.append(f"{func.name}:{stmt.lineno}: {lock}.acquire() then try")
        if func.name == "__exit__" and _calls(func, "release"):
            found.append(f"{func.name}:{func.lineno}: a Python __exit__ that releases a lock")
    return found


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_lock_scan_finds_the_unsafe_idioms() -> None:
    """The scan below can fail: it finds acquire-then-try, a Python ``__enter__`` that
    acquires outside a ``try``, and a Python ``__exit__`` that releases; it passes ``with``,
    a fresh lock pre-acquired as a latch and an owner-aware acquire inside a ``try``."""
    bad = """
def f(self):
    self._lock.acquire()
    try:
        pass
    finally:
        self._lock.release()

class Block:
    def __enter__(self):
        self.lock.acquire()
        return self
    def __exit__(self, *exc):
        self.lock.release()
"""
    good = """
def f(self):
    with self._lock:
        pass

def latch():
    done = make_lock()
    done.acquire()
    return done

class Owned:
    def __enter__(self):
        try:
            self.acquire()
        except BaseException:
            if self._is_owned():
                self.release()
            raise
        return self.buffer
"""
    assert len(unsafe_lock_uses(bad)) == 3, unsafe_lock_uses(bad)
    assert unsafe_lock_uses(good) == []


def test_no_lock_is_taken_in_a_way_an_interrupt_can_leave_it_held() -> None:
    """Every lock is taken with ``with`` (docs/design.md), but the channel's, right before
    its ``try``: no other acquire-then-try, no Python ``__enter__``/``__exit__`` taking or
    letting go a lock."""
    found = {
        name: unsafe
        for path in _sources()
        if (name := str(path.relative_to(PACKAGE)))
        and (unsafe := unsafe_lock_uses(path.read_text(), channel=name == CHANNEL_FILE))
    }
    assert found == {}


def test_the_channel_lock_is_taken_right_before_its_try_only() -> None:
    """The channel's exception is narrow: an acquire of its lock with any statement between
    it and the ``try``, or of another lock, is still reported there."""
    gap = """
def f(self):
    self.lock.acquire()
    x = 1
    try:
        pass
    finally:
        self.lock.release()
"""
    other = gap.replace("    x = 1\n", "").replace("self.lock", "self._other")
    right = gap.replace("    x = 1\n", "")
    assert len(unsafe_lock_uses(gap, channel=True)) == 1
    assert len(unsafe_lock_uses(other, channel=True)) == 1
    assert unsafe_lock_uses(right, channel=True) == []
    assert len(unsafe_lock_uses(right)) == 1
    assert (PACKAGE / CHANNEL_FILE).exists()


# -- the finalizer rule, on the source ------------------------------------------------------------


def finalizers_not_through_finalize(source: str) -> list[str]:
    """The ``__del__`` methods of *source* that do not call ``finalize(...)``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__del__":
                    calls = [
                        n
                        for n in ast.walk(item)
                        if isinstance(n, ast.Call)
                        and isinstance(n.func, ast.Name)
                        and n.func.id == "finalize"
                    ]
                    if not calls:
                        found.append(f"{node.name}.__del__:{item.lineno}")
    return found


def test_the_finalizer_scan_finds_a_finalizer_that_takes_a_lock_itself() -> None:
    """The scan below can fail: a ``__del__`` that closes directly is reported."""
    bad = "class A:\n    def __del__(self):\n        self.close()\n"
    good = "class B:\n    def __del__(self):\n        finalize((self.lock,), self.close)\n"
    assert finalizers_not_through_finalize(bad) == ["A.__del__:2"]
    assert finalizers_not_through_finalize(good) == []


def test_every_finalizer_goes_through_finalize() -> None:
    """Every ``__del__`` hands its work to `finalize`, which never waits for a lock its own
    thread may hold (docs/design.md)."""
    found = {
        str(path.relative_to(PACKAGE)): bad
        for path in _sources()
        if (bad := finalizers_not_through_finalize(path.read_text()))
    }
    assert found == {}
