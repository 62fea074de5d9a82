"""Wake-ups that cross threads and event loops: the one place a parked task or thread is woken.

Every waiting operation in asyncmp follows one protocol, so that a task on asyncio, a task
on trio and a plain thread can all wait for the same kind of event and be woken from any
thread:

1. Under the *owner's* lock (a channel's, a stage's …), the waiting side creates a waiter
   with `new_async_waiter` or `ThreadWaiter()` and parks it in the owner's `WaitQueue` (see
   `_waitqueue`), where the waking side will find it.
2. The waking side, under the same lock, takes the waiter out of the queue (so it is woken
   at most once) and then calls `deliver` (or `wake`) on it, inside or outside the lock.
3. The waiting side parks: ``await park(waiter, deregister, on_lost)`` or
   ``waiter.wait(timeout)``.

Cancellation, timeouts and interrupts go through ``deregister()``: it runs under the owner's
lock and returns ``True`` if the waiter was still parked (it is now removed, the wait is
simply abandoned) or ``False`` if a waker already took it (a wake-up is on its way or has
arrived).

- On trio, ``False`` makes the cancellation fail (``Abort.FAILED``): the task keeps waiting
  for the wake-up that is on its way, so nothing is lost and the cancel is delivered at the
  next checkpoint.
- On asyncio a ``CancelledError`` cannot be refused, so ``on_lost()`` is called instead: the
  owner passes the wake-up on (to the next waiter, say) so that it is never lost.
- A thread that times out calls ``deregister()`` itself; ``False`` means the wake-up raced the
  timeout and the thread treats the wait as successful. A thread interrupted in the wait
  (``KeyboardInterrupt``) deregisters the same way before the exception propagates.

A wake-up that cannot reach its waiter — an asyncio task cancelled as it arrived, a task
whose event loop is closed, a trio task whose run has ended — is handed back to the waker
through `deliver`'s ``undelivered`` callback, so that an owner who hands over something
that must not be lost (a request, a promotion) can pass it on.

Waking is cheap on the hot path: an asyncio waiter is the bare ``Future``; woken from its
own loop's thread it is resolved directly, from anywhere else through
`_coalesce.resolve_soon` (a ``call_soon_threadsafe`` shared by the wake-ups that reach one
loop in a row). A trio waiter is rescheduled directly from its own thread and
through its ``TrioToken`` otherwise. A thread waiter is a pre-acquired ``Lock``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, final

from ._backend import get_running_loop, library_mark, on_trio, trio_api
from ._coalesce import resolve_soon

if TYPE_CHECKING:
    from typing import TypeAlias

__all__ = (
    "AsyncWaiter",
    "ThreadWaiter",
    "Waiter",
    "deliver",
    "ensure_blocking_allowed",
    "new_async_waiter",
    "park",
    "trio_cancel_shielded_checkpoint",
    "trio_checkpoint",
    "trio_checkpoint_if_cancelled",
    "wake",
    "wake_all",
)

_get_ident = threading.get_ident
_BaseEventLoop = asyncio.BaseEventLoop
_Future = asyncio.Future


@final
class TrioWaiter:
    """A trio task that will park with ``wait_task_rescheduled``."""

    __slots__ = ("_rescheduled", "_task", "_thread", "_token")

    def __init__(self) -> None:
        trio = trio_api()
        self._task = trio.current_task()
        self._token = trio.current_trio_token()
        self._thread = _get_ident()
        self._rescheduled = False  # set on the trio thread, by the one reschedule

    def wake(self, value: object = None) -> bool:
        """Reschedule the task with *value*; ``False`` if its run has ended (nobody waits).

        From another thread it may be called again for the same wake-up (one an interrupt
        cut short, see `deliver`): the task is rescheduled once."""
        trio = trio_api()
        # Same thread, with trio running there, means we are inside this trio run (a parked
        # task keeps its run from ending), so reschedule directly; otherwise hop through
        # the token, which says whether the run has ended.
        if _get_ident() == self._thread and library_mark.name == "trio":
            trio.reschedule(self._task, trio.Value(value))
            return True
        try:
            self._token.run_sync_soon(_reschedule_once, self, value)
        except trio.RunFinishedError:
            return False
        return True

    async def park(self, deregister: Callable[[], bool]) -> Any:
        trio = trio_api()

        def abort(_: object) -> Any:
            if deregister():
                return trio.Abort.SUCCEEDED
            # A waker already took us: refuse the cancellation, the wake-up is on its way.
            return trio.Abort.FAILED

        return await trio.wait_task_rescheduled(abort)


def _reschedule_once(waiter: TrioWaiter, value: object) -> None:
    # On the trio thread: a second hop for the same wake-up finds it done.
    if not waiter._rescheduled:
        waiter._rescheduled = True
        trio = trio_api()
        trio.reschedule(waiter._task, trio.Value(value))


@final
class ThreadWaiter:
    """A plain thread blocked on a pre-acquired lock; `wake` releases it.

    ``woken`` is set (after ``value``) *before* the lock is released, so a thread whose wait
    was interrupted after its acquire succeeded — Python runs a signal handler at the first
    check after a C call returns — can tell that the wake-up was delivered although the
    acquire's result was lost: then it must not wait for it again (`wait_delivered`).
    """

    __slots__ = ("_lock", "value", "woken")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.value: Any = None
        """What the waker delivered (see `deliver`); read it after `wait` returned True."""
        self.woken = False

    def wake(self, value: object = None) -> bool:
        """Release the waiting thread with *value*. Called again for the same wake-up (one
        an interrupt cut short, see `deliver`), it does nothing: ``woken`` is set, with no
        call between, just before the release that is the wake-up."""
        if self.woken:
            return True
        self.value = value
        self.woken = True
        self._lock.release()
        return True

    def wait(self, timeout: float | None) -> bool:
        """Block until woken (``True``) or until *timeout* seconds pass (``False``).

        An exception raised while blocked (``KeyboardInterrupt``) propagates: the caller
        deregisters, as after a timeout (see the module doc)."""
        if timeout is None:
            return self._lock.acquire()
        return self._lock.acquire(timeout=timeout)

    def wait_delivered(self) -> None:
        """A waker took this waiter (deregistering failed): wait until its wake-up has been
        delivered, unless it has been already — maybe to a wait that an interrupt cut short.
        A second interrupt is held back until the wake-up is in, then raised."""
        interrupt: BaseException | None = None
        while not self.woken:
            try:
                self._lock.acquire()
            except BaseException as exc:
                interrupt = exc
        if interrupt is not None:
            raise interrupt


AsyncWaiter: TypeAlias = "asyncio.Future[Any] | TrioWaiter"
Waiter: TypeAlias = "asyncio.Future[Any] | TrioWaiter | ThreadWaiter"


def new_async_waiter() -> AsyncWaiter:
    """A waiter for the task that calls this, on whichever event loop runs it."""
    if library_mark.name is None:
        loop = get_running_loop()
        if loop is not None:
            return loop.create_future()
    if on_trio():
        return TrioWaiter()
    raise RuntimeError(f"asyncmp supports asyncio and trio, not {library_mark.name!r}")


def wake(waiter: Waiter, value: object = None) -> None:
    """Wake *waiter* from any thread, delivering *value* (what `park` returns, or a thread
    waiter's ``value``). Call at most once per waiter (see the module doc).

    A value that cannot reach its waiter (see the module doc) is dropped: owners who hand
    over something that must not be lost use `deliver`.
    """
    deliver(waiter, value, None)


def wake_all(waiters: Iterable[Waiter]) -> None:
    """`wake` each of *waiters*. An exception from one wake-up (an interrupt: Ctrl-C on this
    thread) does not keep the others from theirs: it propagates once they all went out.

    Like `deliver`, safe to call again for the same waiters (see there)."""
    error: BaseException | None = None
    for waiter in waiters:
        try:
            deliver(waiter, None, None)
        except BaseException as exc:
            if error is None:
                error = exc
    if error is not None:
        raise error


def deliver(waiter: Waiter, value: object, undelivered: Callable[[Any], None] | None) -> None:
    """`wake`, calling ``undelivered(value)`` if the waiter turns out unable to receive it: an
    asyncio waiter cancelled when the value arrives or whose loop is closed (called on the
    waiter's loop, or here), a trio waiter whose run has ended (called here). A thread
    waiter always receives it (a thread checks `deregister` itself).

    Interrupts. An exception raised in this thread by a signal handler (Ctrl-C) may cut a
    wake-up short anywhere in here. A caller that must not lose it calls `deliver` again for
    the same waiter and value in its handler: a wake-up that went out already is not
    repeated (a thread waiter is released once, an asyncio waiter resolved once, a trio task
    rescheduled once), but ``undelivered`` may then be called twice — owners pass callbacks
    for which a second call changes nothing.
    """
    if isinstance(waiter, _Future):
        loop = waiter.get_loop()
        if get_running_loop() is loop:
            _settle(waiter, value, undelivered)
        else:
            try:
                if isinstance(loop, _BaseEventLoop) and loop._ready:  # type: ignore[attr-defined]
                    # Something is ready to run on that loop already (a wake-up, maybe):
                    # this one joins the loop's batch (`_coalesce`).
                    resolve_soon(loop, waiter, value, undelivered)
                else:  # a lone wake-up (or a loop not batched: uvloop), as it always was
                    loop.call_soon_threadsafe(_settle, waiter, value, undelivered)
            except RuntimeError:
                # The loop is closed: the task that waited is gone.
                if undelivered is not None:
                    undelivered(value)
    elif not waiter.wake(value) and undelivered is not None:
        undelivered(value)


def _settle(
    fut: asyncio.Future[Any], value: object, undelivered: Callable[[Any], None] | None
) -> None:
    # A waiter future is resolved by its one waker only (the protocol), so a future already
    # resolved, not cancelled, got this very wake-up: a repeated `deliver` does nothing.
    if not fut.done():
        fut.set_result(value)
    elif fut.cancelled() and undelivered is not None:
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
    if on_trio():
        await trio_api().checkpoint()


async def trio_checkpoint_if_cancelled() -> None:
    """trio's ``checkpoint_if_cancelled``: raise now if the task is cancelled (trio only)."""
    await trio_api().checkpoint_if_cancelled()


async def trio_cancel_shielded_checkpoint() -> None:
    """trio's ``cancel_shielded_checkpoint``: yield without being cancellable (trio only).

    Together with `trio_checkpoint_if_cancelled` this makes a fast path that has taken
    something a full checkpoint that can no longer lose it."""
    await trio_api().cancel_shielded_checkpoint()


def ensure_blocking_allowed(operation: str) -> None:
    """Raise ``RuntimeError`` if the calling thread runs an event loop.

    A blocking call there would freeze the very loop that has to deliver the wake-up, so it
    is refused at once instead of deadlocking.
    """
    if library_mark.name is not None or get_running_loop() is not None:
        raise RuntimeError(
            f"{operation} blocks the calling thread, but this thread runs an event loop; "
            "await the async form instead"
        )
