"""The loop's poller: the shared epoll `Poller` (fds under calloop tokens, a wake-up fd) and a
heap of timer deadlines.

The epoll fd is the loop's ``fileno()``: it is readable whenever a registered fd has an
event, which is what lets a calloop loop nest in asyncio, trio or another calloop loop.
Timers are not OS timers: the earliest deadline bounds the poll timeout, and after the
poll every due timer is appended as a ``readable`` event after the fd events (dispatch step 2).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import time
from dataclasses import dataclass
from typing import Any, Protocol, final

from .._lowlevel._check import is_int
from .._lowlevel._poller import (
    EPOLLERR,
    EPOLLET,
    EPOLLHUP,
    EPOLLIN,
    EPOLLONESHOT,
    EPOLLOUT,
    EPOLLPRI,
    EPOLLRDHUP,
    MAX_WAIT,
    Poller,
    WakeFd as WakeFd,
)
from .._lowlevel._public import NoPublicConstructor
from ._token import Token

__all__ = ("Interest", "Mode", "Poll", "Readiness")

_monotonic = time.monotonic


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


def fd_of(obj: int | _HasFileno) -> int:
    """The fd number of *obj*: an int ≥ 0 or an object with ``fileno()``."""
    fd = obj if is_int(obj) else getattr(obj, "fileno", None)
    if callable(fd):
        fd = fd()
    if not is_int(fd):
        raise TypeError(f"expected a file descriptor or an object with fileno(), not {obj!r}")
    if fd < 0:
        raise ValueError(f"file descriptor must be >= 0, not {fd}")
    return fd


class Interest(enum.Flag):
    """Which readiness a `Generic` source waits for; combine with ``|``."""

    EMPTY = 0
    """Nothing (errors and hang-ups are still reported)."""
    READ = 1
    WRITE = 2
    BOTH = READ | WRITE


class Mode(enum.Enum):
    """How a registered fd reports readiness."""

    LEVEL = "level"
    """Report the fd on every poll while it is ready."""
    EDGE = "edge"
    """Report only when it becomes ready: the callback must drain it."""
    ONESHOT = "oneshot"
    """Report once, then stay silent until re-armed by ``update`` or ``PostAction.REREGISTER``."""


@final
@dataclass(frozen=True)
class Readiness:
    """What the poller saw on an fd (timers and pings report ``readable``).

    Unlike calloop, whose ``error`` is never set by its poller, ``error`` is true when
    epoll reports ``EPOLLERR``; a hang-up reports ``readable``.
    """

    readable: bool = False
    writable: bool = False
    error: bool = False


_READABLE = Readiness(readable=True)
# Readiness is immutable: one per epoll mask seen, shared by every event with that mask (a
# handful of masks occur, so this stays small).
_READINESS: dict[int, Readiness] = {}
_IN = EPOLLIN | EPOLLPRI | EPOLLHUP | EPOLLRDHUP | EPOLLERR
_OUT = EPOLLOUT | EPOLLERR


def _epoll_mask(interest: Interest, mode: Mode) -> int:
    if not isinstance(interest, Interest):
        raise TypeError(f"interest must be an Interest, not {interest!r}")
    if not isinstance(mode, Mode):
        raise TypeError(f"mode must be a Mode, not {mode!r}")
    mask = 0
    if interest & Interest.READ:
        mask |= EPOLLIN | EPOLLRDHUP
    if interest & Interest.WRITE:
        mask |= EPOLLOUT
    if mode is Mode.EDGE:
        mask |= EPOLLET
    elif mode is Mode.ONESHOT:
        mask |= EPOLLONESHOT
    return mask


@final
class Poll(metaclass=NoPublicConstructor, made_by="EventLoop()"):
    """The loop's poller, handed to an `EventSource`'s ``register``/``unregister``.

    Sources register fds (``register``/``reregister``/``unregister``) and timers
    (``insert_timer``/``cancel_timer``) with the tokens their `TokenFactory` makes.
    Single-threaded: use it only from the loop's own callbacks and source methods.
    """

    __slots__ = ("_heap", "_ids", "_live", "_poller", "_timers")
    _poller: Poller[Token]
    _heap: list[list[Any]]
    _timers: dict[int, list[Any]]
    _ids: itertools.count[int]
    _live: int

    @classmethod
    def _create(cls) -> Poll:
        self = object.__new__(cls)
        self._poller = Poller()
        # Timer heap entries are [deadline, id, token, id] (ids grow, so equal deadlines fire
        # in insertion order); a cancelled entry's token is
        # set to None and it stays in the heap until popped or compacted (so that, unlike
        # calloop's, the heap does not grow with every cancelled timer).
        self._heap = []
        self._timers = {}
        self._ids = itertools.count(1)
        self._live = 0
        return self

    def fileno(self) -> int:
        """The epoll fd: readable whenever an event is pending."""
        return self._poller.fileno()

    @property
    def _lock(self) -> Any:
        """The poller's lock, which unregistering takes (for finalizers: `finalize`)."""
        return self._poller._lock

    def register(self, fd: int | _HasFileno, interest: Interest, mode: Mode, token: Token) -> None:
        """Watch *fd*; its events reach the source as ``(Readiness, token)``.

        *fd* is an int or an object with ``fileno()``, here and in the methods below.

        Raises:
            OSError: the OS refused (a closed fd, or one already registered).
        """
        n = fd_of(fd)
        if not isinstance(token, Token):
            raise TypeError(f"token must be a Token from a TokenFactory, not {token!r}")
        try:
            self._poller.register(n, _epoll_mask(interest, mode), token)
        except FileExistsError:
            raise FileExistsError(f"fd {n} is already registered with this loop") from None

    def reregister(
        self, fd: int | _HasFileno, interest: Interest, mode: Mode, token: Token
    ) -> None:
        """Change what *fd* is watched for (and re-arm a ``ONESHOT`` fd)."""
        n = fd_of(fd)
        try:
            self._poller.modify(n, _epoll_mask(interest, mode), token)
        except FileNotFoundError:
            raise FileNotFoundError(f"fd {n} is not registered with this loop") from None

    def unregister(self, fd: int | _HasFileno) -> None:
        """Stop watching *fd* (a no-op if it is not registered)."""
        self._poller.unregister(fd_of(fd))

    def insert_timer(self, deadline: float, token: Token) -> int:
        """Report *token* as readable at the first poll after *deadline* (``time.monotonic``).

        Returns an id for `cancel_timer`.
        """
        timer_id: int = next(self._ids)  # grows: also the tie-break of equal deadlines
        entry = [deadline, timer_id, token, timer_id]
        heapq.heappush(self._heap, entry)
        self._timers[timer_id] = entry
        self._live += 1
        return timer_id

    def cancel_timer(self, timer_id: int) -> None:
        """Forget a timer (a no-op if it fired or was cancelled already)."""
        entry = self._timers.pop(timer_id, None)
        if entry is None:
            return
        entry[2] = None
        self._live -= 1
        # Compact when dead entries dominate, so cancelling never grows the heap unboundedly.
        if len(self._heap) > 64 and len(self._heap) > 2 * self._live:
            self._heap = [e for e in self._heap if e[2] is not None]
            heapq.heapify(self._heap)

    def _next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _time_to_next_timer(self) -> float | None:
        deadline = self._next_deadline()
        if deadline is None:
            return None
        return max(0.0, deadline - _monotonic())

    def _wakeup(self) -> None:
        self._poller.wakeup()

    def _poll(self, timeout: float | None) -> list[tuple[Readiness, Token]]:
        # Step 2 of dispatch: wait for fds or the earliest timer, then append due timers.
        heap = self._heap
        while heap and heap[0][2] is None:  # cancelled entries on top: drop them
            heapq.heappop(heap)
        deadline = heap[0][0] if heap else None
        poll = self._poller.poll_owned  # calloop registers only from the polling thread
        until = None
        if timeout is not None or deadline is not None:
            now = _monotonic()
            until = None if timeout is None else now + timeout
            if deadline is not None and (until is None or deadline <= until):
                until = deadline
        if until is None:
            polled, woken = poll(-1.0)
        elif until <= now:
            polled, woken = poll(0.0)  # due already (a timer, or timeout 0): do not wait
        else:
            while True:
                left = until - _monotonic()
                polled, woken = poll(max(0.0, min(left, MAX_WAIT)))
                # A long wait is made of waits epoll can express (MAX_WAIT). epoll rounds to
                # milliseconds: a timer-driven wait that ends a hair early waits again, for
                # the timer is due only then; a timeout's last wait ends the dispatch.
                last = until != deadline and left <= MAX_WAIT
                if polled or woken or last or _monotonic() >= until:
                    break
        events: list[tuple[Readiness, Token]] = []
        if polled:
            readiness = _READINESS
            for token, mask in polled:
                ready = readiness.get(mask)
                if ready is None:
                    ready = readiness[mask] = Readiness(
                        bool(mask & _IN), bool(mask & _OUT), bool(mask & EPOLLERR)
                    )
                events.append((ready, token))
        if deadline is not None:
            now = _monotonic()
            if heap[0][0] <= now:
                timers = self._timers
                while heap and (heap[0][2] is None or heap[0][0] <= now):
                    entry = heapq.heappop(heap)
                    if entry[2] is not None:
                        del timers[entry[3]]
                        self._live -= 1
                        events.append((_READABLE, entry[2]))
        return events

    def _close(self) -> None:
        self._poller.close()
