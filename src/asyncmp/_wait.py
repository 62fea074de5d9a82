"""One-shot wake-ups that cross threads and event loops.

Every waiting operation in asyncmp follows one protocol, so that a task on asyncio, a task
on trio and a plain thread can all wait for the same kind of event and be woken from any
thread:

1. Under the *owner's* lock (a channel's, a stage's …), the waiting side creates a waiter
   with [`new_async_waiter`][] or `ThreadWaiter()` and registers it somewhere the waking
   side will find it.
2. The waking side, under the same lock, removes the waiter from that place (so it is woken
   at most once) and then calls [`wake`][] on it, inside or outside the lock.
3. The waiting side parks: ``await park(waiter, deregister, on_lost)`` or
   ``waiter.wait(timeout)``.

Cancellation and timeouts go through ``deregister()``: it runs under the owner's lock and
returns ``True`` if the waiter was still registered (it is now removed, the wait is simply
abandoned) or ``False`` if a waker already took it (a wake-up is on its way or has arrived).

- On trio, ``False`` makes the cancellation fail (``Abort.FAILED``): the task keeps waiting
  for the wake-up that is on its way, so nothing is lost and the cancel is delivered at the
  next checkpoint.
- On asyncio a ``CancelledError`` cannot be refused, so ``on_lost()`` is called instead: the
  owner passes the wake-up on (to the next waiter, say) so that it is never lost.
- A thread that times out calls ``deregister()`` itself; ``False`` means the wake-up raced the
  timeout and the thread treats the wait as successful.

Waking is cheap on the hot path: an asyncio waiter is the bare ``Future``; woken from its
own loop's thread it is resolved directly, from anywhere else through
``call_soon_threadsafe``. A trio waiter is rescheduled directly from its own thread and
through its ``TrioToken`` otherwise. A thread waiter is a pre-acquired ``Lock``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, final


class _LibraryMark(Protocol):
    name: str | None


class _NoTrio:
    __slots__ = ()
    name: str | None = None


_sniffio_local: _LibraryMark
try:
    # trio marks the thread that runs it in sniffio's thread-local (trio depends on sniffio).
    import sniffio

    _sniffio_local = sniffio.thread_local
except ImportError:  # sniffio is absent, hence trio too: only asyncio can be running
    _sniffio_local = _NoTrio()

if TYPE_CHECKING:
    from typing import TypeAlias

__all__ = (
    "AsyncWaiter",
    "ThreadWaiter",
    "Waiter",
    "check_timeout",
    "current_library",
    "deliver",
    "ensure_blocking_allowed",
    "new_async_waiter",
    "park",
    "trio_cancel_shielded_checkpoint",
    "trio_checkpoint",
    "trio_checkpoint_if_cancelled",
    "trio_running",
    "wake",
)

_get_running_loop = asyncio._get_running_loop
_get_ident = threading.get_ident
_Future = asyncio.Future


class _Wakeable(Protocol):
    def wake(self) -> None: ...


@final
class _TrioWaiter:
    """A trio task that will park with ``wait_task_rescheduled``."""

    __slots__ = ("_task", "_thread", "_token")

    def __init__(self) -> None:
        import trio

        self._task = trio.lowlevel.current_task()
        self._token = trio.lowlevel.current_trio_token()
        self._thread = _get_ident()

    def wake(self, value: object = None) -> None:
        import outcome
        import trio

        # Same thread means we are inside this trio run (the task cannot have parked in a
        # run that is not executing), so reschedule directly; otherwise hop through the token.
        if _get_ident() == self._thread:
            trio.lowlevel.reschedule(self._task, outcome.Value(value))
        else:
            try:
                self._token.run_sync_soon(
                    trio.lowlevel.reschedule, self._task, outcome.Value(value)
                )
            except trio.RunFinishedError:
                pass  # the run is over: nobody is left to wake

    async def park(self, deregister: Callable[[], bool]) -> Any:
        import trio

        def abort(_: object) -> Any:
            if deregister():
                return trio.lowlevel.Abort.SUCCEEDED
            # A waker already took us: refuse the cancellation, the wake-up is on its way.
            return trio.lowlevel.Abort.FAILED

        return await trio.lowlevel.wait_task_rescheduled(abort)


@final
class ThreadWaiter:
    """A plain thread blocked on a pre-acquired lock; [`wake`][] releases it."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.value: Any = None
        """What the waker delivered (see [`deliver`][]); read it after `wait` returned True."""

    def wake(self, value: object = None) -> None:
        self.value = value
        self._lock.release()

    def wait(self, timeout: float | None) -> bool:
        """Block until woken (``True``) or until *timeout* seconds pass (``False``)."""
        if timeout is None:
            return self._lock.acquire()
        return self._lock.acquire(timeout=timeout)


AsyncWaiter: TypeAlias = "asyncio.Future[Any] | _TrioWaiter"
Waiter: TypeAlias = "asyncio.Future[Any] | _TrioWaiter | ThreadWaiter"


def trio_running() -> bool:
    # trio marks the thread that runs it; asyncio does not, so check trio first: under trio
    # guest mode an asyncio loop is "running" too, but trio tasks cannot await its futures.
    return _sniffio_local.name == "trio"


def new_async_waiter() -> AsyncWaiter:
    """A waiter for the task that calls this, on whichever event loop runs it."""
    if _sniffio_local.name is None:
        loop = _get_running_loop()
        if loop is not None:
            return loop.create_future()
    if trio_running():
        return _TrioWaiter()
    raise RuntimeError(f"asyncmp supports asyncio and trio, not {current_library()!r}")


def current_library() -> str | None:
    """The async library running in this thread: ``"trio"``, ``"asyncio"``, the name another
    library gave sniffio, or ``None`` when no event loop runs here."""
    name: str | None = _sniffio_local.name
    if name is not None:
        return name
    return "asyncio" if _get_running_loop() is not None else None


def _resolve(fut: asyncio.Future[Any], value: object = None) -> None:
    if not fut.done():
        fut.set_result(value)


def wake(waiter: Waiter, value: object = None) -> None:
    """Wake *waiter* from any thread, delivering *value* (what `park` returns, or a thread
    waiter's ``value``). Call at most once per waiter (see the module doc).

    A value delivered to an asyncio task that was cancelled before it could receive it is
    dropped: owners who hand over something that must not be lost use `deliver`.
    """
    deliver(waiter, value, None)


def deliver(waiter: Waiter, value: object, undelivered: Callable[[Any], None] | None) -> None:
    """`wake`, calling ``undelivered(value)`` on the waiter's loop if an asyncio waiter turns
    out to be cancelled when the value arrives (trio and thread waiters always receive it:
    trio refuses the cancellation, a thread checks `deregister`)."""
    if isinstance(waiter, _Future):
        loop = waiter.get_loop()
        if _get_running_loop() is loop:
            if not waiter.done():
                waiter.set_result(value)
            elif undelivered is not None:
                undelivered(value)
        else:
            try:
                loop.call_soon_threadsafe(_settle, waiter, value, undelivered)
            except RuntimeError:
                # The loop is closed: the task that waited is gone.
                if undelivered is not None:
                    undelivered(value)
    else:
        waiter.wake(value)


def _settle(
    fut: asyncio.Future[Any], value: object, undelivered: Callable[[Any], None] | None
) -> None:
    if not fut.done():
        fut.set_result(value)
    elif undelivered is not None:
        undelivered(value)


async def park(
    waiter: AsyncWaiter,
    deregister: Callable[[], bool],
    on_lost: Callable[[], None] | None = None,
) -> Any:
    """Wait until *waiter* is woken and return the delivered value; on cancellation apply
    the protocol of the module doc."""
    if isinstance(waiter, _Future):
        try:
            return await waiter
        except BaseException:
            if not deregister() and on_lost is not None:
                on_lost()
            raise
    return await waiter.park(deregister)


async def trio_checkpoint() -> None:
    """A checkpoint under trio (its convention for every async operation); free on asyncio.

    asyncio code expects ``await queue.get()`` on a non-empty queue not to yield, and so do
    we; trio code expects every ``await`` to be a cancel and schedule point.
    """
    if trio_running():
        import trio

        await trio.lowlevel.checkpoint()


async def trio_checkpoint_if_cancelled() -> None:
    """trio's ``checkpoint_if_cancelled``: raise now if the task is cancelled (trio only)."""
    import trio

    await trio.lowlevel.checkpoint_if_cancelled()


async def trio_cancel_shielded_checkpoint() -> None:
    """trio's ``cancel_shielded_checkpoint``: yield without being cancellable (trio only).

    Together with `trio_checkpoint_if_cancelled` this makes a fast path that has taken
    something a full checkpoint that can no longer lose it."""
    import trio

    await trio.lowlevel.cancel_shielded_checkpoint()


def ensure_blocking_allowed(operation: str) -> None:
    """Raise ``RuntimeError`` if the calling thread runs an event loop.

    A blocking call there would freeze the very loop that has to deliver the wake-up, so it
    is refused at once instead of deadlocking.
    """
    if _sniffio_local.name is not None or _get_running_loop() is not None:
        raise RuntimeError(
            f"{operation} blocks the calling thread, but this thread runs an event loop; "
            "await the async form instead"
        )


def check_timeout(timeout: float | None) -> float | None:
    """Validate a ``timeout=`` argument: ``None`` (wait forever) or a number ≥ 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if not timeout >= 0:  # also rejects NaN
        raise ValueError(f"timeout must be >= 0, not {timeout!r}")
    return float(min(timeout, threading.TIMEOUT_MAX))
