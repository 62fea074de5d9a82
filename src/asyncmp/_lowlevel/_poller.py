"""The one poller: an epoll set keyed by fd, each registration under a token, and a wake-up fd.

The dharma dispatcher (tokens are handler ids, registrations come from any thread) and the
calloop loop (tokens are calloop `Token`s, registrations come from its own thread; it adds
timers on top) both poll through this.

Design note. The epoll set makes adding or removing an fd from any thread take effect in the
kernel at once, even while another thread waits in ``epoll_wait``; ``wakeup()`` ends such a
wait at once, from any thread, through the wake-up fd (an eventfd) that sits in the same set.
The table of tokens is guarded by ``lock``.

Stale readiness. ``select.epoll`` reports fd *numbers* only (Python exposes no epoll ``data``
field to carry a token), and between ``epoll_wait`` returning and `poll` mapping fds to
tokens, another thread may remove a registration, close its fd and register a new fd that got
the same number. That event belongs to the removed registration and must never be reported
with the new token (its handler would read an empty fd, or block in it). So every removal of
an fd's registration is stamped with a counter (``_removals``; also a registration found gone
because its fd was closed and the number reused), and `poll` reads the counter before it
waits: an event for an fd whose registration was removed since is *ambiguous* and dropped.
Nothing is lost by dropping it when the fd is watched level-triggered: if the new
registration's fd is ready, the kernel reports it again, and `poll` polls once more at once,
without waiting, for the fds it dropped (keeping what that look reports for the other fds,
unless the first look reported them: an edge-triggered or one-shot event that arrived in
between is reported only this once). A registration that was not removed during the wait
is the only one its fd had throughout, so its events are its own. (A loop that registers only
from its own thread between polls, as calloop does, never sees an ambiguous event, so
edge-triggered registrations are safe there. Alternatives weighed: registering a ``dup()`` of
each fd keeps the number from being reused but changes what closing the user's fd does and
costs an fd each; generations on the registrations cannot tell a stale event from a real one
of a source added during the wait.)

Linux only (epoll, eventfd), as dharma and calloop on Linux: the module imports anywhere, and
creating a `Poller` elsewhere raises `NotImplementedError`.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Hashable
from typing import Final, Generic, TypeVar, final

from .._errors import Closed
from ._finalize import finalize

__all__ = (
    "EPOLLERR",
    "EPOLLET",
    "EPOLLHUP",
    "EPOLLIN",
    "EPOLLONESHOT",
    "EPOLLOUT",
    "EPOLLPRI",
    "EPOLLRDHUP",
    "MAX_WAIT",
    "Poller",
    "WakeFd",
)

Tok = TypeVar("Tok", bound=Hashable)

# Linux's values, so that the module imports where select has no epoll.
EPOLLIN: Final[int] = getattr(select, "EPOLLIN", 0x001)
EPOLLPRI: Final[int] = getattr(select, "EPOLLPRI", 0x002)
EPOLLOUT: Final[int] = getattr(select, "EPOLLOUT", 0x004)
EPOLLERR: Final[int] = getattr(select, "EPOLLERR", 0x008)
EPOLLHUP: Final[int] = getattr(select, "EPOLLHUP", 0x010)
EPOLLRDHUP: Final[int] = getattr(select, "EPOLLRDHUP", 0x2000)
EPOLLONESHOT: Final[int] = getattr(select, "EPOLLONESHOT", 1 << 30)
EPOLLET: Final[int] = getattr(select, "EPOLLET", 1 << 31)
MAX_WAIT: Final = 86400.0
"""The longest single epoll wait asyncmp makes, in seconds: epoll takes an int of milliseconds,
which overflows past about 24 days. A longer timeout is waited out in waits of this length."""


class WakeFd:
    """A counter fd (an eventfd; a pipe where there is none) that any thread may add to.

    ``add(n)`` from any thread; ``take()`` returns the sum added since the last take (0 if
    none). Writes never block: a full pipe or a saturated eventfd already signals readiness.
    """

    __slots__ = ("__weakref__", "_closed", "_r", "_w")

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
        # Unreachable means nobody can write to it or read it any more. No lock involved.
        if not getattr(self, "_closed", True):
            finalize((), self.close)


@final
class Poller(Generic[Tok]):
    """An epoll set whose registrations carry tokens, with a wake-up fd (module doc).

    Thread-safe: register, modify, unregister and wake up from any thread while one thread
    polls. Tokens are any hashable value; `poll` reports ``(token, epoll_events)`` pairs.
    """

    __slots__ = ("__weakref__", "_epoll", "_lock", "_removals", "_removed_at", "_tokens", "_wake")

    def __init__(self) -> None:
        if not hasattr(select, "epoll"):
            raise NotImplementedError("asyncmp's poller needs Linux (epoll)")
        self._lock = threading.Lock()
        self._epoll = select.epoll()
        self._wake = WakeFd()
        # Invariant (under _lock): _tokens holds exactly the user fds registered in _epoll.
        self._tokens: dict[int, Tok] = {}
        # Stale readiness (module doc): a counter bumped by each removal of a registration,
        # and its value at each fd number's last removal (bounded by the fd limit).
        self._removals = 0
        self._removed_at: dict[int, int] = {}
        self._epoll.register(self._wake.fileno(), EPOLLIN)

    def fileno(self) -> int:
        """The epoll fd: readable whenever a registered fd has an event (or after `wakeup`),
        which is how a poller nests in another event loop."""
        return self._epoll.fileno()

    @property
    def closed(self) -> bool:
        return self._wake.closed

    def register(self, fd: int, mask: int, token: Tok) -> None:
        """Watch *fd* for the epoll *mask*; its events are reported under *token*.

        Raises:
            FileExistsError: *fd* is registered already.
            OSError: the kernel refused (a closed fd …).
        """
        with self._lock:
            self._check_open()
            try:
                self._epoll.register(fd, mask)
            except OSError:
                raise  # refused: nothing changed
            except BaseException:
                # Interrupted (Ctrl-C) as the kernel took it: take it back, as if refused, so
                # that the kernel's set and `_tokens` still agree.
                with contextlib.suppress(OSError, ValueError):
                    self._epoll.unregister(fd)
                raise
            # No call from here on: the kernel's set and `_tokens` agree when the lock is let go.
            if fd in self._tokens:
                # The kernel took the fd although a registration still holds its number:
                # that fd was closed (which left the set) and the number reused. Its
                # registration is gone: stamp it removed, so that its last readiness,
                # maybe polled already, is never reported with the new token.
                self._removals += 1
                self._removed_at[fd] = self._removals
            self._tokens[fd] = token

    def modify(self, fd: int, mask: int, token: Tok) -> None:
        """Change what *fd* is watched for (re-arms a one-shot fd) and its token.

        Raises:
            FileNotFoundError: *fd* is not registered.
        """
        with self._lock:
            self._check_open()
            if fd not in self._tokens:
                raise FileNotFoundError(f"fd {fd} is not registered")
            self._epoll.modify(fd, mask)
            self._tokens[fd] = token

    def unregister(self, fd: int, token: Tok | None = None) -> bool:
        """Stop watching *fd* — only if it is registered under *token*, when one is given
        (the number may have passed to a newer registration). ``True`` if it was removed."""
        with self._lock:
            if fd not in self._tokens or (token is not None and self._tokens[fd] != token):
                return False
            if not self.closed:
                try:
                    self._epoll.unregister(fd)
                except (OSError, ValueError):
                    pass  # the fd was closed first: epoll has dropped it already
            # After the kernel's set, and with no call: an interrupt (Ctrl-C) can leave a token
            # whose fd the kernel dropped (a number reused later is stamped then), never an fd
            # the kernel watches without a token.
            del self._tokens[fd]
            self._removals += 1
            self._removed_at[fd] = self._removals
            return True

    def holds(self, fd: int, token: Tok) -> bool:
        """Whether *fd* is registered under *token* (a look, for a caller that was
        interrupted around `register`)."""
        with self._lock:
            return fd in self._tokens and self._tokens[fd] == token

    def wakeup(self) -> None:
        """End the current (or the next) `poll` at once; any thread."""
        if not self._wake.closed:
            self._wake.add(1)

    def poll(self, timeout: float) -> tuple[list[tuple[Tok, int]], bool]:
        """Wait up to *timeout* seconds (``-1``: no limit, ``0``: do not wait; any length, as
        `_check.check_timeout` returns it: a wait longer than `MAX_WAIT` is made of shorter
        ones).

        Returns the events as ``(token, epoll_events)`` pairs, and whether a `wakeup` ended
        the wait (it carries no event of its own).
        """
        if timeout <= MAX_WAIT:
            return self._poll_events(timeout)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            events, woken = self._poll_events(max(0.0, min(left, MAX_WAIT)))
            if events or woken or left <= MAX_WAIT:
                return events, woken

    def _poll_events(self, timeout: float) -> tuple[list[tuple[Tok, int]], bool]:
        events, dropped, woken = self._poll_once(timeout)
        if dropped:
            # Level-triggered: a new registration on a dropped fd that is ready shows again.
            # Keep what this look reports for every fd not reported already: an edge-triggered
            # or one-shot fd that became ready since is reported only this once.
            again, _, woken_again = self._poll_once(0)
            reported = {event[2] for event in events}
            events += [event for event in again if event[2] not in reported]
            woken = woken or woken_again
        return [(token, ev) for token, ev, _ in events], woken

    def poll_owned(self, timeout: float) -> tuple[list[tuple[Tok, int]], bool]:
        """`poll` for an owner that registers, modifies and unregisters only on the thread
        that polls, never during a wait (calloop): no registration can change between the
        wait and mapping its fds to tokens, so no event is ambiguous, and nothing but
        `wakeup` (which touches only the wake-up fd) comes from another thread — no lock
        and no removal stamps to read. Same results as `poll`.
        """
        wake = self._wake
        if wake._closed:
            raise Closed("this poller is closed")
        polled = self._epoll.poll(timeout)
        if not polled:
            return [], False
        events: list[tuple[Tok, int]] = []
        woken = False
        wake_fd = wake._r
        tokens = self._tokens
        for fd, ev in polled:
            if fd == wake_fd:
                wake.take()
                woken = True
            elif fd in tokens:  # as in `poll`: only fds of the table are reported
                events.append((tokens[fd], ev))
        return events, woken

    def _poll_once(self, timeout: float) -> tuple[list[tuple[Tok, int, int]], set[int], bool]:
        with self._lock:
            self._check_open()
            before = self._removals
        polled = self._epoll.poll(timeout)
        events: list[tuple[Tok, int, int]] = []
        dropped: set[int] = set()
        woken = False
        wake = self._wake.fileno()
        with self._lock:
            for fd, ev in polled:
                if fd == wake:
                    self._wake.take()
                    woken = True
                elif self._removed_at.get(fd, 0) > before:
                    dropped.add(fd)
                elif fd in self._tokens:
                    events.append((self._tokens[fd], ev, fd))
        return events, dropped, woken

    def _check_open(self) -> None:
        if self.closed:
            raise Closed("this poller is closed")

    def close(self) -> None:
        """Release the epoll set and the wake-up fd (registered fds stay open). Idempotent."""
        with self._lock:
            if self.closed:
                return
            self._wake.close()  # first: it marks the poller closed, whatever interrupts the rest
            self._epoll.close()
            self._tokens.clear()
            self._removed_at.clear()

    def __del__(self) -> None:
        # Its lock may be held by the thread this collection interrupted: `finalize` then
        # defers the close.
        if hasattr(self, "_wake") and not self._wake.closed:
            finalize((self._lock,), self.close)
