"""OutcomeCell: one result that arrives once, and whoever waits for it — behind every pending
result in asyncmp.

Design note. A cell is PENDING until it is *set* (DONE: the outcome is stored) or *given up*
(GIVEN_UP: nobody wants it any more; what a late waiter sees, `_given_up_value()`, is stored
instead). Every transition happens under the cell's ``lock`` — its owner's (a channel's, a
connection hub's) or its own — and the outcome is stored before any waiter is woken, so a
woken waiter reads it without the lock. An error travels as a `Failure` (a value), so that
a reply may be any object, exceptions included; `result` raises it. *Outcome* names this and
nothing else in asyncmp: what a cell holds once set, a value or a `Failure` (trio's
``outcome`` library says Value or Error). What `Stage.enter` returns is a result
(`_stage_results`), and a bridge receive with no message returns a `NoMessage` value.

The cells: a channel request whose requester is a trio task, a thread or a `PendingReply`; a
request travelling over NATS (a subclass, whose giving up tells the server); the end of a
dispatch loop (`JoinHandle`). Their waiters park in the cell, by the wake protocol of `_wake`,
in a plain ``dict`` used as `WaitQueue` uses its own (insertion-ordered, removal by key) but
made without a queue object's cost: a blocking requester's cell gets one per request, and
the owner's lock already guards it. Two ways to wait:

- ``give_up=True`` (a requester): the waiter *is* whoever wants the outcome, so its
  cancellation, timeout or interrupt gives the cell up — unless a waker took the waiter first:
  then the outcome is there (or on its way) and wins where the library lets it: trio refuses
  the cancellation, a thread takes it, and asyncio takes it inside a cancelled anyio cancel
  scope (which cancels the task again at its next ``await``), while a bare ``Task.cancel()``
  wins over it. One waiter at a time.
- ``give_up=False`` (a joiner): any number of waiters; one that stops waiting leaves the cell
  as it is.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, Final, final

from ._backend import anyio_cancel_pending, on_trio
from ._wake import (
    ThreadWaiter,
    new_async_waiter,
    park,
    trio_cancel_shielded_checkpoint,
    trio_checkpoint,
    wake_all,
)

if TYPE_CHECKING:
    from ._primitives import Mutex
    from ._wake import Waiter

__all__ = ("DONE", "GIVEN_UP", "PENDING", "Failure", "OutcomeCell")

PENDING: Final = 0
DONE: Final = 1
GIVEN_UP: Final = 2


@final
class Failure:
    """An error on its way to whoever waits (an outcome must be a plain value)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class OutcomeCell:
    """A one-shot result (see the module doc)."""

    __slots__ = ("lock", "state", "value", "waiters")

    def __init__(
        self, lock: threading.Lock | Mutex | None = None, waiter: Waiter | None = None
    ) -> None:
        """*lock*: the owner's lock (a new one by default; a channel's is its `Mutex`).
        *waiter*: a waiter to park at once, before the cell is shared (no lock needed): wait
        for it with `park_async` or `park_blocking`."""
        self.lock: threading.Lock | Mutex = threading.Lock() if lock is None else lock
        self.state: int = PENDING
        self.value: Any = None
        # Made when the first waiter parks: most cells (a request collected later, or never)
        # never see one, and a queued request should cost as little memory as it can.
        # Emptied (back to None) when the cell settles: its waiters are woken then.
        self.waiters: dict[Waiter, Waiter] | None = None if waiter is None else {waiter: waiter}

    def _park(self, waiter: Waiter) -> None:
        """Park *waiter* (under the lock, or before the cell is shared)."""
        waiters = self.waiters
        if waiters is None:
            waiters = self.waiters = {}
        waiters[waiter] = waiter

    # -- the producing side --------------------------------------------------------------

    def set(self, value: object, state: int = DONE) -> bool:
        """Store *value* (DONE) and wake every waiter. ``False`` if it was not pending.

        *state* is GIVEN_UP only for `give_up` (one body for both: this is a reply's path).
        Interrupted (Ctrl-C) once the value is stored, the waiters are still woken before the
        interrupt propagates."""
        waiters = None
        try:
            with self.lock:
                if self.state != PENDING:
                    return False
                # No call from here to the end of the block: nothing can interrupt it.
                self.state = state
                self.value = value
                waiters, self.waiters = self.waiters, None
        finally:
            if waiters:  # each waiter is its own key
                try:
                    wake_all(waiters)
                except BaseException:
                    wake_all(waiters)  # complete what an interrupt cut short (`deliver`)
                    raise
        return True

    def give_up(self) -> bool:
        """Nobody wants the outcome any more (GIVEN_UP). ``False`` if it was not pending."""
        if not self.set(self._given_up_value(), GIVEN_UP):
            return False
        self._gave_up()
        return True

    def _given_up_value(self) -> object:
        """Hook: what a cell given up holds (what a late waiter's `result` gives)."""
        return None

    def _gave_up(self) -> None:
        """Hook, called outside the lock once the cell was given up (tell the producer)."""

    # -- the waiting side ----------------------------------------------------------------

    def result(self) -> Any:
        """The outcome once the cell is not pending: the value, or raise the `Failure`'s error."""
        value = self.value
        if type(value) is Failure:
            raise value.error
        return value

    def done(self) -> bool:
        """Whether the cell is DONE or GIVEN_UP."""
        return self.state != PENDING

    def _refuse(self) -> None:
        """A requester waits alone (module doc): raise for a second one."""
        raise RuntimeError("another task or thread is already waiting for this result")

    def _interrupted(self, waiter: Waiter | None, give_up: bool) -> None:
        """A wait ended by an exception (an interrupt, anywhere from its start to its
        wake-up): leave as a timeout would. A requester that had not parked yet gives the
        cell up all the same; one whose waiter a waker took keeps the outcome."""
        if waiter is not None:
            self.leave(waiter, give_up)
        if give_up:
            self.give_up()

    def leave(self, waiter: Waiter, give_up: bool) -> bool:
        """*waiter* stops waiting (the ``deregister()`` of the wake protocol): ``True`` if it
        left while the cell was pending — and, with *give_up*, gave the cell up — or
        ``False`` if a waker took it first (the outcome is there). Idempotent: ``False`` for
        a waiter that is not parked (any more, or ever)."""
        others = None
        gave_up = False
        try:
            with self.lock:
                waiters = self.waiters
                if waiters is None or waiter not in waiters:
                    return False
                if not give_up or self.state != PENDING:
                    del waiters[waiter]
                    return True
                value = self._given_up_value()  # the one call, before anything changes
                del waiters[waiter]
                self.state = GIVEN_UP
                self.value = value
                others, self.waiters = waiters, None
                gave_up = True
        finally:
            # Interrupted as the lock is let go: the others are woken and the producer told
            # all the same.
            try:
                if others:
                    try:
                        wake_all(others)
                    except BaseException:
                        wake_all(others)  # complete what an interrupt cut short (`deliver`)
                        raise
            finally:
                if gave_up:
                    self._gave_up()
        return True

    async def wait(self, *, give_up: bool) -> None:
        """Wait in a task until the cell is DONE or GIVEN_UP (module doc); then read `result`.

        A requester (*give_up*) whose outcome is here already gets it even in a cancelled
        scope: under trio the call is then a schedule point that cannot be cancelled (the
        delivered outcome wins, the cancellation comes at the next checkpoint); a joiner's
        is a full checkpoint."""
        waiter = None
        refused = False
        try:
            with self.lock:
                if self.state == PENDING:
                    if give_up and self.waiters:
                        refused = True
                        self._refuse()
                    # Set before it is parked: the handler below leaves whatever was parked.
                    waiter = new_async_waiter()
                    self._park(waiter)
        except BaseException:
            if not refused:
                self._interrupted(waiter, give_up)
            raise
        if waiter is not None:
            await self.park_async(waiter, give_up=give_up)
        elif on_trio():  # (no checkpoint coroutine on asyncio: the outcome is here)
            if give_up:
                await trio_cancel_shielded_checkpoint()
            else:
                await trio_checkpoint()

    async def park_async(self, waiter: Any, *, give_up: bool) -> None:
        """Wait with a task's *waiter* that is parked here already."""
        try:
            await park(waiter, lambda: self.leave(waiter, give_up))
        except asyncio.CancelledError:
            # The cancellation found the waiter taken (else `leave` gave the cell up): the
            # outcome is there, and inside a cancelled anyio scope it wins (module doc).
            if not (give_up and self.state == DONE and anyio_cancel_pending()):
                raise

    def wait_blocking(self, timeout: float | None, *, give_up: bool) -> bool:
        """Block this thread until the cell is DONE or GIVEN_UP (``True``), or until *timeout*
        seconds pass (``False``; with *give_up* the cell is given up).

        An exception raised anywhere in it (``KeyboardInterrupt`` from Ctrl-C) leaves the
        state a timeout leaves, then propagates."""
        # Made before the lock, so that the handler below sees whatever was parked.
        waiter = ThreadWaiter()
        refused = False
        try:
            with self.lock:
                if self.state != PENDING:
                    return True
                if give_up and self.waiters:
                    refused = True  # set first: a refused wait changes nothing
                    self._refuse()
                self._park(waiter)
            woken = waiter.wait(timeout)
        except BaseException:
            if not refused:
                self._interrupted(waiter, give_up)
            raise
        # A timeout that can no longer leave lost a race with the wake-up: the outcome is in.
        return woken or not self.leave(waiter, give_up)

    def park_blocking(self, waiter: Any, timeout: float | None, *, give_up: bool) -> bool:
        """Block with a thread's *waiter* that is parked here already: ``True`` once the cell
        is DONE or GIVEN_UP, ``False`` after *timeout* seconds (left, as `leave` says).

        An exception raised while blocked (``KeyboardInterrupt`` from Ctrl-C) leaves the same
        state a timeout leaves, then propagates.
        """
        assert isinstance(waiter, ThreadWaiter)
        try:
            woken = waiter.wait(timeout)
        except BaseException:
            self.leave(waiter, give_up)
            raise
        # A timeout that can no longer leave lost a race with the wake-up: the outcome is in.
        return woken or not self.leave(waiter, give_up)

    def __repr__(self) -> str:
        state = ("pending", "done", "given up")[self.state]
        return f"<{type(self).__name__} {state}>"
