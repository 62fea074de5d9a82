"""The stopped-loop monitor: a `task.spawn` server whose asyncio event loop is not running.

Design note. A dispatch loop started by `asyncmp.task.spawn` is a task: it runs only while
the event loop that spawned it runs. Spawned in one ``run_until_complete`` and called from
another loop (a module-scoped pytest-asyncio fixture with function-scoped tests), it never
runs again, and its callers and joiners would wait for ever with no sign of why. Neither the
loop (stopped) nor its callers (waiting) can notice; a thread can. One daemon thread watches
every such server for as long as any is alive, and logs a warning on the ``asyncmp`` logger
when one has requests or joiners waiting while its event loop is not running.

Invariants:
- The monitor keeps nothing alive: it holds weak references to the handle, the server and
  the event loop. An entry leaves when its loop ends (`forget`), or at the next look once
  its handle is done or collected.
- `forget` never waits for the monitor's lock: it may run in a finalizer (a loop's
  coroutine closed by the garbage collector) on a thread that holds that lock already.
- A stall (the loop is not running and someone waits) is reported once it has lasted
  `GRACE` seconds, and once per stall: the entry is re-armed when its loop is seen running.
- The thread is started on the first `watch` and never ends (a daemon thread); while
  nothing is watched it sleeps without a timeout, so a process with no task server on
  asyncio pays nothing, and one with some pays one look every `TICK` seconds.
- Reading the state of a loop, a server or a handle from this thread needs no lock of
  theirs but the channel's (``statistics()``); a stale read only delays a report by a tick.

trio needs none of this: a trio task cannot outlive the run of its nursery.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    import asyncio

    from ._channel import Server
    from ._serving import JoinHandle

__all__ = ("GRACE", "TICK", "check", "forget", "stopped_loop_hint", "watch")

logger = logging.getLogger("asyncmp")

TICK = 1.0
"""Seconds between two looks of the monitor thread."""
GRACE = 1.0
"""Seconds a stall lasts before it is reported."""


def stopped_loop_hint() -> str:
    """What to do about a `task.spawn` server whose event loop does not run (one sentence
    shared by every message that reports it)."""
    return (
        "a task.spawn server runs only while the event loop that spawned it runs: call it "
        "from that loop (under pytest-asyncio, give the fixture that spawns it and the tests "
        "that use it the same loop scope), or serve from a thread with asyncmp.thread.spawn, "
        "which needs no event loop"
    )


@final
class _Entry:
    """One watched server: weak references, and the stall being timed."""

    __slots__ = ("handle", "loop", "name", "server", "since", "warned")

    def __init__(
        self, handle: JoinHandle[Any], server: Server[Any, Any], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.handle = weakref.ref(handle)
        self.server = weakref.ref(server)
        self.loop = weakref.ref(loop)
        self.name = handle._name
        self.since: float | None = None  # when the current stall was first seen
        self.warned = False  # the current stall was reported

    def look(self, now: float, reports: list[str]) -> bool:
        """Add to *reports* a stall that has lasted `GRACE` seconds; ``False`` once the
        entry is over (its handle is done or gone)."""
        handle = self.handle()
        if handle is None or handle.done():
            return False
        loop = self.loop()
        server = self.server()
        if loop is None or server is None:
            return False  # collected: the task (and its finally) went with them
        if loop.is_running():
            self.since = None
            self.warned = False
            return True
        stats = server.statistics()
        waiting = stats.queued + stats.in_flight
        joiners = len(handle._cell.waiters or ())
        if not (waiting or joiners):
            self.since = None  # nobody waits: a stopped loop is no problem yet
            return True
        if self.since is None:
            self.since = now
        if not self.warned and now - self.since >= GRACE:
            self.warned = True
            state = "is closed" if loop.is_closed() else "is not running"
            who = " and ".join(
                part
                for part in (
                    _count(waiting, "request", "requests"),
                    _count(joiners, "join", "joins"),
                )
                if part
            )
            reports.append(
                f"dispatch loop {self.name!r} cannot run: {who} wait for it, but the asyncio "
                f"event loop it runs on {state}; {stopped_loop_hint()}"
            )
        return True


def _count(n: int, one: str, many: str) -> str:
    return "" if not n else f"1 {one}" if n == 1 else f"{n} {many}"


_lock = threading.Condition(threading.Lock())
_entries: dict[int, _Entry] = {}  # by id() of the handle
_started = False


def watch(
    handle: JoinHandle[Any], server: Server[Any, Any], loop: asyncio.AbstractEventLoop
) -> None:
    """Watch the dispatch loop of *handle*, a task on *loop* serving *server*."""
    global _started
    entry = _Entry(handle, server, loop)
    with _lock:
        _entries[id(handle)] = entry
        if not _started:
            threading.Thread(target=_run, name="asyncmp-loop-monitor", daemon=True).start()
            _started = True
        _lock.notify()


def forget(handle: JoinHandle[Any]) -> None:
    """The loop of *handle* has ended: stop watching it now (or, if the monitor's lock is
    busy, at the monitor's next look)."""
    if _lock.acquire(blocking=False):
        try:
            entry = _entries.get(id(handle))
            if entry is not None and entry.handle() is handle:
                del _entries[id(handle)]
        finally:
            _lock.release()


def check(now: float | None = None) -> None:
    """One look at every watched server (the monitor thread's tick; tests call it too)."""
    if now is None:
        now = time.monotonic()
    reports: list[str] = []
    with _lock:
        for key, entry in list(_entries.items()):
            if not entry.look(now, reports):
                del _entries[key]
    for report in reports:  # outside the lock: a logging handler may take its time
        logger.warning(report)


def _run() -> None:
    while True:
        with _lock:
            while not _entries:
                _lock.wait()
        check()
        with _lock:
            _lock.wait(TICK)
