"""Which async library runs the calling code: asyncio (uvloop included), trio, or none.

Design note. Every waiting operation asks this, often once per request, so the answers are
plain attribute reads: trio marks the thread that runs it in sniffio's thread-local (trio
depends on sniffio; without sniffio trio cannot be installed, and only asyncio can run), and
asyncio's running loop is ``asyncio._get_running_loop()``. trio is checked first: under trio's
guest mode an asyncio loop is "running" too, but trio tasks cannot await its futures.

The trio functions asyncmp calls are imported once, on first use (`trio_api`), not on every
wake-up, so that importing asyncmp never imports trio.

This is the one place that asks: the rest of the package calls these functions and never
reads sniffio or ``asyncio._get_running_loop`` itself (tests/test_layout.py checks it). The
one exception is the channel's hot path, whose primitives (``_primitives.py`` and their
compiled twin in ``_speedups.pyx``) hold their own reference to the running-loop look-up.
"""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace
from typing import Any, Protocol

__all__ = (
    "anyio_cancel_pending",
    "cancelled_exception",
    "current_library",
    "get_running_loop",
    "on_trio",
    "running_asyncio_loop",
    "trio_api",
)

get_running_loop = asyncio._get_running_loop
"""The running asyncio loop of this thread, or None (no exception, unlike the public one)."""


class _LibraryMark(Protocol):
    name: str | None


class _NoTrio:
    __slots__ = ()
    name: str | None = None


library_mark: _LibraryMark
try:
    import sniffio

    library_mark = sniffio.thread_local
except ImportError:  # no sniffio, hence no trio
    library_mark = _NoTrio()


def on_trio() -> bool:
    """Whether this thread is running trio (a trio task, or trio's own code)."""
    return library_mark.name == "trio"


def current_library() -> str | None:
    """``"trio"``, ``"asyncio"``, the name another library gave sniffio, or ``None`` when no
    event loop runs in this thread."""
    name = library_mark.name
    if name is not None:
        return name
    return "asyncio" if get_running_loop() is not None else None


def running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop that runs the calling code, or ``None``: where no loop runs, and
    under trio, its guest mode on an asyncio loop included (trio tasks cannot await that
    loop's futures)."""
    name = library_mark.name
    return get_running_loop() if name is None or name == "asyncio" else None


_trio: Any = None


def trio_api() -> Any:
    """The trio pieces asyncmp uses, imported once (call it only where trio runs)."""
    global _trio
    if _trio is None:
        import outcome
        import trio

        low = trio.lowlevel
        _trio = SimpleNamespace(
            Abort=low.Abort,
            Cancelled=trio.Cancelled,
            RunFinishedError=trio.RunFinishedError,
            Value=outcome.Value,
            cancel_shielded_checkpoint=low.cancel_shielded_checkpoint,
            checkpoint=low.checkpoint,
            checkpoint_if_cancelled=low.checkpoint_if_cancelled,
            current_task=low.current_task,
            current_trio_token=low.current_trio_token,
            reschedule=low.reschedule,
            wait_task_rescheduled=low.wait_task_rescheduled,
        )
    return _trio


def cancelled_exception() -> type[BaseException]:
    """The exception that cancels the running task: ``trio.Cancelled`` or
    ``asyncio.CancelledError``."""
    if on_trio():
        exc: type[BaseException] = trio_api().Cancelled
        return exc
    return asyncio.CancelledError


def anyio_cancel_pending() -> bool:
    """Whether an anyio cancel scope around the running task is cancelled (and unshielded):
    anyio then cancels the task again at each ``await`` for as long as the scope is
    cancelled, so a result that arrived together with one of its cancellations may be
    returned — the cancellation is not lost, it comes again (trio's rule for an outcome on
    its way)."""
    try:
        import anyio

        return anyio.current_effective_deadline() == -math.inf
    except Exception:  # no library anyio recognises is running: nothing re-cancels
        return False
