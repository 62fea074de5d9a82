"""Ctrl-C made deterministic: a real signal whose handler raises ``KeyboardInterrupt`` on the
main thread exactly in the instant a lock acquire returns to it.

Python runs a signal handler on the main thread at the next check of its eval loop — after
a call returns, at a function's start, on a loop's jump back — never inside a C call that
succeeds. So a signal that arrives while the main thread is blocked in ``lock.acquire()`` and
is *not* delivered to the main thread itself (which would interrupt the wait: the acquire
then fails, holding nothing) is handled in the instant after the acquire returned, holding
the lock. That is the one window that `lock.acquire()` followed by ``try:`` leaves open, and
that ``with lock:`` closes (the interpreter runs no check between a C ``__enter__`` and the
protected block).

`interrupt_as_acquired` builds that window on purpose: a helper thread holds the lock; once
the main thread is blocked acquiring it inside the code under test (seen in its frame), the
helper sends the signal to *itself* — the C handler runs there at once and marks it pending
for the main thread — and only then lets the lock go. The main thread's acquire returns with
the handler due. The handler is installed for SIGUSR1, so that pytest's own SIGINT handling is
not involved; it raises ``KeyboardInterrupt``, as Ctrl-C does.
"""

from __future__ import annotations

import dis
import linecache
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import CodeType, FrameType
from typing import Any

import pytest

from bounds import WAIT

SIGNAL = signal.SIGUSR1

WITH_PROTECTS = pytest.mark.xfail(
    sys.version_info < (3, 11),
    strict=True,
    reason="CPython 3.10 runs a due signal handler between a with statement's C __enter__ and"
    " its block, so with lock: leaves the lock held there (docs/threads.md, Interrupts)",
)
"""For a test that relies on ``with lock:`` letting the lock go when a handler raises as the
lock is acquired: true from CPython 3.11, false on 3.10 (an expected failure there, strict so
that it is noticed should it hold)."""


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def ctrl_c() -> Iterator[None]:
    """SIGUSR1 raises ``KeyboardInterrupt`` on the main thread, as SIGINT would, inside."""
    assert threading.current_thread() is threading.main_thread()
    previous = signal.signal(SIGNAL, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(SIGNAL, previous)


def _code_of(where: Callable[..., Any] | CodeType) -> CodeType:
    if isinstance(where, CodeType):
        return where
    return where.__code__  # type: ignore[attr-defined, no-any-return]


def _acquiring(frame: FrameType | None, code: CodeType) -> bool:
    """Whether *frame* is *code* inside a call that acquires a lock: a ``with … lock …:``, or
    an ``….acquire(`` or ``….__enter__(`` on the line being run."""
    if frame is None or frame.f_code is not code:
        return False
    op = dis.opname[code.co_code[frame.f_lasti]]
    line = linecache.getline(code.co_filename, frame.f_lineno)
    if op == "BEFORE_WITH":
        return "lock" in line
    return op in ("CALL", "PRECALL", "CALL_METHOD") and (
        ".acquire(" in line or ".__enter__(" in line
    )


class Window:
    """What `interrupt_as_acquired` did: ``tripped`` once the signal was made pending while
    the main thread was blocked in the acquire."""

    def __init__(self) -> None:
        self.tripped = False


@contextmanager
def interrupt_as_acquired(
    lock: Any, where: Callable[..., Any] | CodeType, *, hold: bool = True
) -> Iterator[Window]:
    """Inside the block, the main thread's first acquire of *lock* in the code of *where*
    returns with a SIGUSR1 handler due (module doc). Use with `ctrl_c`.

    The helper thread takes *lock* before the block starts (with *hold*; pass ``hold=False``
    for a lock the test has taken itself) and always lets it go: if the main thread never
    blocks there within `WAIT` seconds it gives up, untripped."""
    code = _code_of(where)
    main = threading.main_thread().ident
    window = Window()
    ready = threading.Event()
    finished = threading.Event()
    if not hold:
        assert lock.locked()

    def helper() -> None:
        if hold:
            assert lock.acquire(timeout=WAIT)
        ready.set()
        try:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline and not finished.is_set():
                if _acquiring(sys._current_frames().get(main), code):  # type: ignore[arg-type]
                    # The C handler runs on this thread, now: pending for the main thread,
                    # whose acquire is not interrupted (the signal is not delivered there).
                    signal.pthread_kill(threading.get_ident(), SIGNAL)
                    window.tripped = True
                    break
                time.sleep(0.0005)  # the main thread has not blocked there yet
        finally:
            lock.release()

    thread = threading.Thread(target=helper, name="interrupt-as-acquired", daemon=True)
    thread.start()
    assert ready.wait(WAIT)
    try:
        yield window
    finally:
        finished.set()
        thread.join(WAIT)
        assert not thread.is_alive()


@contextmanager
def interrupt_on_return(
    fn: Callable[..., Any] | CodeType | str, inside: Callable[..., Any] | None = None
) -> Iterator[Window]:
    """Inside the block, the first return of *fn* on the main thread raises
    ``KeyboardInterrupt`` in its caller, at the call: the callee's work is done, its result
    lost — what a signal handled at the check after a call does (Python runs handlers
    there). A profile hook, so that the instant is exact.

    *fn* is a Python function, or the name of a C function (``"__exit__"``: a ``with``
    block's lock let go) called from the code of *inside*."""
    assert threading.current_thread() is threading.main_thread()
    window = Window()
    if isinstance(fn, str):
        assert inside is not None
        name, caller = fn, _code_of(inside)

        def matches(frame: FrameType, event: str, arg: object) -> bool:
            return (
                event == "c_return"
                and frame.f_code is caller
                and getattr(arg, "__name__", None) == name
            )
    else:
        code = _code_of(fn)

        def matches(frame: FrameType, event: str, arg: object) -> bool:
            return event == "return" and frame.f_code is code

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if not window.tripped and matches(frame, event, arg):
            window.tripped = True
            sys.setprofile(None)
            raise KeyboardInterrupt

    sys.setprofile(profile)
    try:
        yield window
    finally:
        sys.setprofile(None)


def wait_until(predicate: Callable[[], object], what: str) -> None:
    """Poll *predicate* until it holds (another thread's state: parked, say), within `WAIT`."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.0005)


@contextmanager
def interrupt_on_call(fn: Callable[..., Any]) -> Iterator[Window]:
    """Inside the block, the first call of the Python function *fn* on the main thread
    raises ``KeyboardInterrupt`` as it starts, before its first line: where Python runs a
    pending signal handler at a function's start. A profile hook."""
    assert threading.current_thread() is threading.main_thread()
    code = _code_of(fn)
    window = Window()

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code is code and not window.tripped:
            window.tripped = True
            sys.setprofile(None)
            raise KeyboardInterrupt

    sys.setprofile(profile)
    try:
        yield window
    finally:
        sys.setprofile(None)
