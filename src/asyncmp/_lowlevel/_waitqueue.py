"""WaitQueue: the parked waiters of one owner, oldest first.

Design note. Everything in asyncmp that parks — a server waiting for a request, a receiver
for a message, a sender for room, a Stage waiter for its turn, a joiner for a loop's end —
registers a waiter (see `_wake`) in the owner's `WaitQueue`, and whoever wakes it takes it
out first, so that each waiter is woken at most once. A key may stand for the waiter (a Stage
parks its entry, and notifies by entry); by default the waiter is its own key.

Invariants: the queue is guarded by its owner's lock — every method is called with that lock
held — and the waking itself (`_wake.wake` / `deliver`) happens after taking the waiter out,
inside or outside the lock. Removal by key is O(1) (an insertion-ordered dict), so a waiter
that gives up (cancelled, timed out, interrupted) leaves in constant time however many wait.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any, Generic, TypeVar, final

__all__ = ("WaitQueue",)

W = TypeVar("W")


@final
class WaitQueue(Generic[W]):
    """Parked waiters (of type *W*) in arrival order, each under a key."""

    __slots__ = ("_parked",)

    def __init__(self) -> None:
        self._parked: dict[Hashable, W] = {}

    def park(self, waiter: W, key: Hashable = None) -> None:
        """Add *waiter* at the back, under *key* (the waiter itself by default)."""
        self._parked[waiter if key is None else key] = waiter

    def unpark(self, key: Hashable) -> W | None:
        """Take out the waiter parked under *key*; ``None`` if it is not parked (a waker took
        it already, or it never parked) — the `deregister()` half of the wake protocol."""
        return self._parked.pop(key, None)

    def pop(self) -> tuple[Any, W] | None:
        """Take out the oldest waiter, with its key; ``None`` if nobody waits."""
        parked = self._parked
        for key in parked:
            return key, parked.pop(key)
        return None

    def pop_all(self) -> list[W]:
        """Take out every waiter, oldest first (to wake them all)."""
        waiters = list(self._parked.values())
        self._parked.clear()
        return waiters

    def __contains__(self, key: Hashable) -> bool:
        return key in self._parked

    def __len__(self) -> int:
        return len(self._parked)

    def __bool__(self) -> bool:
        return bool(self._parked)

    def __iter__(self) -> Iterator[W]:
        """The parked waiters, oldest first (a snapshot is safer if you change the queue)."""
        return iter(list(self._parked.values()))

    def __repr__(self) -> str:
        return f"<WaitQueue parked={len(self._parked)}>"
