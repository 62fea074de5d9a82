"""What the low-level tests share: the bound of every wait, a bounded run in a helper thread,
and a stand-in for a `ThreadWaiter`'s lock that runs a script (to put an interrupt or a
wake-up exactly where a race would)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from bounds import WAIT

T = TypeVar("T")

ASYNCIO_ONLY = pytest.mark.parametrize(
    "anyio_backend",
    [("asyncio", {"debug": True}), ("asyncio", {"use_uvloop": True})],
    ids=["asyncio", "uvloop"],
)
"""For a test of asyncio's own semantics (a bare ``Task.cancel()``, a ``Future``)."""

TRIO_ONLY = pytest.mark.parametrize("anyio_backend", [("trio", {})], ids=["trio"])
"""For a test of trio's own semantics (a refused cancellation)."""


def run_bounded(fn: Callable[[], T]) -> T:
    """Run *fn* in a helper thread and return its result (or raise its exception); fail if
    it has not finished within `WAIT` seconds, which is how a test sees a hang."""
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), f"{fn!r} still blocked after {WAIT} seconds"
    if error:
        raise error[0]
    return result[0]  # type: ignore[no-any-return]


class ScriptedLock:
    """Stands in for a `ThreadWaiter`'s pre-acquired lock: each ``acquire`` first runs the
    next step of *script* (a step may wake the waiter, or raise ``KeyboardInterrupt`` as
    Ctrl-C would in the blocked acquire), then acquires the real lock, bounded by `WAIT`."""

    def __init__(self, real: Any, script: list[Callable[[], object]]) -> None:
        self.real = real
        self.script = script
        self.acquires = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.acquires += 1
        if self.script:
            self.script.pop(0)()
        if not blocking:
            return bool(self.real.acquire(False))
        return bool(self.real.acquire(True, WAIT if timeout < 0 else timeout))

    def release(self) -> None:
        self.real.release()


def interrupt() -> None:
    """A script step: what Ctrl-C does to a thread blocked in a lock acquire."""
    raise KeyboardInterrupt
