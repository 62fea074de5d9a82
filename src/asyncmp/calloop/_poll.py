"""The poller: epoll keyed by fd, a heap of timer deadlines, and a wake-up fd.

The epoll fd is the loop's ``fileno()``: it is readable whenever a registered fd has an
event, which is what lets a calloop loop nest in asyncio, trio or another calloop loop.
Timers are not OS timers: the earliest deadline bounds the poll timeout, and after the
poll every due timer is appended as a ``readable`` event after the fd events (dispatch step 2).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import os
import select
import time
from dataclasses import dataclass
from typing import Any, Protocol, final

from ._token import Token

__all__ = ("Interest", "Mode", "Poll", "Readiness")

_monotonic = time.monotonic


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


FdLike = "int | _HasFileno"


def fd_of(obj: int | _HasFileno) -> int:
    """The fd number of *obj*: an int ≥ 0 or an object with ``fileno()``."""
    if isinstance(obj, bool):
        raise TypeError(f"expected a file descriptor or an object with fileno(), not {obj!r}")
    fd = obj if isinstance(obj, int) else getattr(obj, "fileno", None)
    if callable(fd):
        fd = fd()
    if not isinstance(fd, int):
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
_MAX_WAIT = 86400.0  # epoll's millisecond int overflows past ~24 days; a shorter wait is harmless
_IN = select.EPOLLIN | select.EPOLLPRI | select.EPOLLHUP | select.EPOLLRDHUP | select.EPOLLERR
_OUT = select.EPOLLOUT | select.EPOLLERR


def _epoll_mask(interest: Interest, mode: Mode) -> int:
    if not isinstance(interest, Interest):
        raise TypeError(f"interest must be an Interest, not {interest!r}")
    if not isinstance(mode, Mode):
        raise TypeError(f"mode must be a Mode, not {mode!r}")
    mask = 0
    if interest & Interest.READ:
        mask |= select.EPOLLIN | select.EPOLLRDHUP
    if interest & Interest.WRITE:
        mask |= select.EPOLLOUT
    if mode is Mode.EDGE:
        mask |= select.EPOLLET
    elif mode is Mode.ONESHOT:
        mask |= select.EPOLLONESHOT
    return mask


class WakeFd:
    """A counter fd (eventfd, or a pipe elsewhere) that any thread may add to.

    ``add(n)`` from any thread; ``take()`` returns the sum added since the last take (0 if
    none). Writes never block: a full pipe or a saturated eventfd already signals readiness.
    """

    __slots__ = ("_closed", "_r", "_w")

    def __init__(self) -> None:
        self._closed = False
        if hasattr(os, "eventfd"):
            self._r = self._w = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - not Linux
            self._r, self._w = os.pipe()
            os.set_blocking(self._r, False)
            os.set_blocking(self._w, False)

    def fileno(self) -> int:
        return self._r

    @property
    def closed(self) -> bool:
        return self._closed

    def add(self, n: int) -> None:
        try:
            if self._r == self._w:
                os.eventfd_write(self._w, n)
            else:  # pragma: no cover - not Linux
                os.write(self._w, bytes((n,)))
        except BlockingIOError:
            pass  # saturated: the fd is readable already, and nothing is lost but a count

    def take(self) -> int:
        try:
            if self._r == self._w:
                return os.eventfd_read(self._r)
            return sum(os.read(self._r, 65536))  # pragma: no cover - not Linux
        except BlockingIOError:
            return 0

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._r)
            if self._w != self._r:  # pragma: no cover - not Linux
                os.close(self._w)

    def __del__(self) -> None:
        # Unreachable means no Ping, sender or loop can write to it any more.
        if not getattr(self, "_closed", True):
            self.close()


@final
class Poll:
    """The loop's poller, handed to an `EventSource`'s ``register``/``unregister``.

    Sources register fds (``register``/``reregister``/``unregister``) and timers
    (``insert_timer``/``cancel_timer``) with the tokens their `TokenFactory` makes.
    Single-threaded: use it only from the loop's own callbacks and source methods.
    """

    __slots__ = ("_epoll", "_fds", "_heap", "_ids", "_live", "_seq", "_timers", "_wake")
    _epoll: select.epoll
    _fds: dict[int, Token | None]
    _heap: list[list[Any]]
    _timers: dict[int, list[Any]]
    _ids: itertools.count[int]
    _seq: itertools.count[int]
    _live: int
    _wake: WakeFd

    def __new__(cls, *args: object, **kwargs: object) -> Poll:
        raise TypeError("Poll objects are made by EventLoop()")

    @classmethod
    def _create(cls) -> Poll:
        self = object.__new__(cls)
        self._epoll = select.epoll()
        # Invariant: _fds holds exactly the fds registered in _epoll, with their token
        # (None for the loop's own wake-up fd).
        self._fds = {}
        # Timer heap entries are [deadline, seq, token, id]; a cancelled entry's token is
        # set to None and it stays in the heap until popped or compacted (so that, unlike
        # calloop's, the heap does not grow with every cancelled timer).
        self._heap = []
        self._timers = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count()
        self._live = 0
        self._wake = WakeFd()
        self._epoll.register(self._wake.fileno(), select.EPOLLIN)
        self._fds[self._wake.fileno()] = None
        return self

    def fileno(self) -> int:
        """The epoll fd: readable whenever an event is pending."""
        return self._epoll.fileno()

    def register(self, fd: int | _HasFileno, interest: Interest, mode: Mode, token: Token) -> None:
        """Watch *fd*; its events reach the source as ``(Readiness, token)``.

        *fd* is an int or an object with ``fileno()``, here and in the methods below.

        Raises:
            OSError: the OS refused (a closed fd, or one already registered).
        """
        n = fd_of(fd)
        if not isinstance(token, Token):
            raise TypeError(f"token must be a Token from a TokenFactory, not {token!r}")
        if n in self._fds:
            raise FileExistsError(f"fd {n} is already registered with this loop")
        self._epoll.register(n, _epoll_mask(interest, mode))
        self._fds[n] = token

    def reregister(
        self, fd: int | _HasFileno, interest: Interest, mode: Mode, token: Token
    ) -> None:
        """Change what *fd* is watched for (and re-arm a ``ONESHOT`` fd)."""
        n = fd_of(fd)
        if self._fds.get(n) is None:
            raise FileNotFoundError(f"fd {n} is not registered with this loop")
        self._epoll.modify(n, _epoll_mask(interest, mode))
        self._fds[n] = token

    def unregister(self, fd: int | _HasFileno) -> None:
        """Stop watching *fd* (a no-op if it is not registered)."""
        n = fd_of(fd)
        if self._fds.get(n) is None:
            return
        del self._fds[n]
        try:
            self._epoll.unregister(n)
        except (OSError, ValueError):
            pass  # the fd was closed first: epoll has dropped it already

    def insert_timer(self, deadline: float, token: Token) -> int:
        """Report *token* as readable at the first poll after *deadline* (``time.monotonic``).

        Returns an id for `cancel_timer`.
        """
        timer_id: int = next(self._ids)
        entry = [deadline, next(self._seq), token, timer_id]
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
        if not self._wake.closed:
            self._wake.add(1)

    def _poll(self, timeout: float | None) -> list[tuple[Readiness, Token]]:
        # Step 2 of dispatch: wait for fds or the earliest timer, then append due timers.
        deadline = self._next_deadline()
        until = None if timeout is None else _monotonic() + timeout
        if deadline is not None and (until is None or deadline <= until):
            until = deadline
        while True:
            wait = -1.0 if until is None else min(max(0.0, until - _monotonic()), _MAX_WAIT)
            polled = self._epoll.poll(wait)
            # epoll rounds to milliseconds: a timer-driven wait may end a hair early.
            if polled or deadline is None or until != deadline or _monotonic() >= deadline:
                break
        events: list[tuple[Readiness, Token]] = []
        for n, mask in polled:
            token = self._fds.get(n)
            if token is None:
                if n == self._wake.fileno():
                    self._wake.take()
                continue
            events.append(
                (
                    Readiness(bool(mask & _IN), bool(mask & _OUT), bool(mask & select.EPOLLERR)),
                    token,
                )
            )
        if deadline is not None:
            now = _monotonic()
            heap = self._heap
            while heap and (heap[0][2] is None or heap[0][0] <= now):
                entry = heapq.heappop(heap)
                if entry[2] is not None:
                    del self._timers[entry[3]]
                    self._live -= 1
                    events.append((_READABLE, entry[2]))
        return events

    def _close(self) -> None:
        self._epoll.close()
        self._wake.close()


def check_timeout(timeout: float | None) -> float | None:
    """Validate a dispatch timeout: ``None`` (no limit) or seconds ≥ 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if not timeout >= 0:
        raise ValueError(f"timeout must be >= 0, not {timeout!r}")
    return None if math.isinf(timeout) else float(timeout)
