"""WaitQueue: the parked waiters of one owner, oldest first — the one queue every wait uses.

Design note. Everything in asyncmp that parks — a server waiting for a request, a receiver
for a message, a sender for room, a Stage waiter for its turn — parks a waiter (see `_wake`)
in its owner's `WaitQueue`, and whoever wakes it takes it out first, so that each waiter is
woken at most once. (A requester for its reply and a joiner for a loop's end park in an
`OutcomeCell`, which keeps its few waiters in a plain ``dict`` by the same rules: a
blocking request makes one per call, and a queue object's set-up would be a tenth of that
call.) A key may
stand for the waiter (a Stage parks its entry, and notifies by entry); by default the waiter
is its own key.

The queue is a ``dict`` (insertion-ordered: oldest first), so that the owners' hot paths use
its C operations directly — ``if queue:``, ``queue[waiter] = waiter`` — and removal by key is
O(1) however many wait. It is guarded by its owner's ``lock``: every method is called with the
lock held, except `leave`, `pass_on`, `wait_for` and `wait_for_blocking`, which take it (as
``with lock:``, the rule of docs/design.md, "Interrupts and finalizers").

Two ways to hand something over:

- **hand-off**: the waker takes the waiter out and delivers the very thing (a request, a
  promotion) with ``deliver(waiter, thing, undelivered)``; the owner's ``undelivered`` passes
  on what could not arrive.
- **hints** (`wait_for`): a wake-up only says "look again"; the woken side takes what it came
  for under the lock, or parks again. A hint that cannot arrive, or that reached a waiter
  which is leaving anyway (cancelled, timed out, interrupted), goes to the next waiter
  (`pass_on`) while the owner is *ready* (has something to take), so no wake-up is lost and no
  waiter waits for something already there.

An owner whose producers add *without* its lock (the bridge's receiver queue: a fan-out must
not pay for a lock per receiver) makes its queue with ``relook=True``. Such a producer adds,
then looks whether anyone is parked (``if queue:``) and only then takes the lock to wake the
oldest. A waiter of `wait_for` / `wait_for_blocking` that found nothing parks and, still
under the lock, calls ``take()`` once more. Every bytecode runs atomically and in one order
under the GIL, so of "the producer adds, then looks for waiters" and "the waiter parks, then
looks for items" one side sees the other: either the producer finds the waiter parked and
wakes it, or the waiter's second look finds the item. A waiter whose second look took
something leaves the queue at once (a producer who saw it parked then finds nobody, or
another waiter, to hint).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Final, TypeVar, final

from ._backend import on_trio
from ._wake import (
    ThreadWaiter,
    deliver,
    new_async_waiter,
    park,
    trio_cancel_shielded_checkpoint,
    trio_checkpoint_if_cancelled,
)

if TYPE_CHECKING:
    from ._wake import Waiter

__all__ = ("NOTHING", "WaitQueue")

T = TypeVar("T")

NOTHING: Final[Any] = object()
"""What a ``take()`` passed to `WaitQueue.wait_for` returns when there is nothing to take."""

_monotonic = time.monotonic


def _always() -> bool:
    return True


@final
class WaitQueue(dict[Hashable, "Waiter"]):
    """Parked waiters in arrival order, each under a key; guarded by ``lock`` (module doc).

    Args:
        lock: the owner's lock (a ``threading.Lock`` or ``RLock``).
        ready: for hints, whether the owner has something to take (truthy: then a hint that
            could not arrive is passed on); by default always.
    relook: the owner's producers add without the lock (module doc): a waiter that
            found nothing looks once more after it parked. Its ``take()`` must not raise.
    """

    __slots__ = ("_pass_on", "lock", "ready", "relook")

    def __init__(
        self,
        lock: threading.Lock | threading.RLock,
        ready: Callable[[], object] = _always,
        *,
        relook: bool = False,
    ) -> None:
        super().__init__()
        self.lock = lock
        self.ready = ready
        self.relook = relook
        self._pass_on = self.pass_on  # bound once: `deliver` takes it per hint

    # -- under the lock -----------------------------------------------------------------

    def park(self, waiter: Waiter, key: Hashable = None) -> None:
        """Add *waiter* at the back, under *key* (the waiter itself by default)."""
        self[waiter if key is None else key] = waiter

    def unpark(self, key: Hashable) -> Waiter | None:
        """Take out the waiter parked under *key*; ``None`` if it is not parked (a waker took
        it already, or it never parked)."""
        return self.pop(key, None)

    def oldest(self) -> tuple[Any, Waiter]:
        """The oldest waiter with its key, left in place (check that one waits first).

        Interrupt-safe taking (docs/design.md): look with this call, then take it out with
        ``del queue[key]`` — no call between, so an interrupt cannot strike after the waiter
        left the queue and before the caller holds it.

        Raises:
            KeyError: nobody waits.
        """
        for key in self:
            return key, self[key]
        raise KeyError("oldest(): nobody waits")

    def pop_oldest(self) -> Waiter:
        """Take out the oldest waiter (check that one waits first). On a path an interrupt
        can reach, prefer `oldest` (see there).

        Raises:
            KeyError: nobody waits.
        """
        for key in self:
            return self.pop(key)
        raise KeyError("pop_oldest(): nobody waits")

    def take_oldest(self, n: int, out: list[Waiter]) -> None:
        """Move up to *n* oldest waiters into *out*, oldest first (to hint them with
        `hint_all` once the lock is let go). Each is in *out* before anything can interrupt
        (`oldest`), so a handler or ``finally`` that hints *out* misses none."""
        while n > 0 and self:
            key, waiter = self.oldest()
            del self[key]
            out.append(waiter)
            n -= 1

    def pop_all(self) -> list[Waiter]:
        """Take out every waiter, oldest first (to wake them all)."""
        waiters = list(self.values())
        self.clear()
        return waiters

    # -- taking the lock ----------------------------------------------------------------

    def leave(self, key: Hashable) -> bool:
        """The ``deregister()`` of the wake protocol: ``True`` if the waiter under *key* was
        still parked (now removed), ``False`` if a waker took it already (or it never
        parked)."""
        with self.lock:
            if key in self:
                del self[key]  # no call: nothing interrupts between the look and the change
                return True
            return False

    def hint(self, waiter: Waiter) -> None:
        """Wake *waiter*, taken out under the lock, to look again (call outside the lock)."""
        deliver(waiter, None, self._pass_on)

    def hint_all(self, waiters: list[Waiter]) -> None:
        """`hint` each of *waiters*, taken out under the lock (call outside the lock). An
        interrupt that cuts one short completes it first, then propagates once all went out
        (safe to call again for the same waiters: see `_wake.deliver`)."""
        error: BaseException | None = None
        for waiter in waiters:
            try:
                deliver(waiter, None, self._pass_on)
            except BaseException as exc:
                error = error or exc
                deliver(waiter, None, self._pass_on)
        if error is not None:
            raise error

    def pass_on(self, _undelivered: object = None) -> None:
        """A hint could not arrive, or reached a waiter that leaves anyway: give it to the
        next waiter if the owner is ready (call outside the lock)."""
        waiter = None
        try:
            with self.lock:
                if self and self.ready():
                    key, waiter = self.oldest()
                    del self[key]
        finally:
            if waiter is not None:
                try:
                    deliver(waiter, None, self._pass_on)
                except BaseException:
                    deliver(waiter, None, self._pass_on)  # complete what an interrupt cut short
                    raise

    async def wait_for(self, take: Callable[[], T]) -> T:
        """Park until ``take()`` — called under the lock — returns something other than
        `NOTHING`, and return that; each wake-up is a hint to call it again.

        A checkpoint under trio, taken trio's way: a pending cancel is raised before
        ``take()`` runs, and the yield after taking cannot be cancelled, so a cancellation
        never loses what was taken. On asyncio it yields only when it parks. Cancelled while
        parked: the waiter leaves, and passes on a hint it was given. Interrupted (an
        exception raised in this thread by a signal handler) anywhere: the same.
        """
        lock = self.lock
        trio_runs = on_trio()
        if trio_runs:
            await trio_checkpoint_if_cancelled()
        waiter = None  # the last waiter parked: the handler leaves it, or passes its hint on
        parked = False  # whether this call has waited (yielded) yet
        while True:
            try:
                with lock:
                    item = take()
                    if item is NOTHING:
                        # Assigned before it is parked, with no call between.
                        waiter = new_async_waiter()
                        self[waiter] = waiter
                        if self.relook:
                            item = take()  # parked: a lock-free producer sees us, or we it
                            if item is not NOTHING:
                                del self[waiter]
            except BaseException:
                if waiter is not None and not self.leave(waiter):
                    self.pass_on()
                raise
            if item is not NOTHING:
                if trio_runs and not parked:
                    await trio_cancel_shielded_checkpoint()
                return item
            assert waiter is not None
            parked = True
            await park(waiter, functools.partial(self.leave, waiter), self._pass_on)

    def wait_for_blocking(self, take: Callable[[], T], timeout: float | None) -> T:
        """`wait_for` from a plain thread: ``take()``'s result, or `NOTHING` once *timeout*
        seconds have passed with nothing to take (never while there is something).

        An exception raised anywhere in it (``KeyboardInterrupt``) leaves the queue as a
        timeout would — the waiter leaves, and passes on a hint it was given — and
        propagates.
        """
        deadline = None if timeout is None else _monotonic() + timeout
        lock = self.lock
        waiter = None  # the last waiter parked: the handler leaves it, or passes its hint on
        try:
            while True:
                with lock:
                    item = take()
                    if item is not NOTHING:
                        return item
                    if deadline is not None and _monotonic() >= deadline:
                        return NOTHING
                    # Assigned before it is parked, with no call between.
                    waiter = ThreadWaiter()
                    self[waiter] = waiter
                    if self.relook:
                        item = take()  # parked: a lock-free producer sees us, or we it
                        if item is not NOTHING:
                            del self[waiter]
                            return item
                left = None if deadline is None else max(0.0, deadline - _monotonic())
                if not waiter.wait(left):
                    # Timed out. Still parked: leave, and look once more. Taken by a waker
                    # as time ran out: its hint is here, look again all the same.
                    self.leave(waiter)
        except BaseException:
            if waiter is not None and not self.leave(waiter):
                self.pass_on()
            raise

    def __repr__(self) -> str:
        return f"<WaitQueue parked={len(self)}>"
