"""make_ping: a thread-safe wake-up source (calloop's ``ping``), on an eventfd.

Ping handles add 2 to the counter; closing the last handle adds 1. So when the source reads
the counter, ``value >= 2`` means "pinged at least once" and an odd value means "every Ping
is closed": many pings before one dispatch give one event, and closing the last Ping makes
the source remove itself after delivering a ping still pending.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, final

from .._errors import Closed
from .._lowlevel._finalize import finalize
from .._lowlevel._public import NoPublicConstructor
from ._poll import Readiness, WakeFd
from ._source import PostAction, callback_action
from ._token import Token
from ._wakefd_source import WakeFdSource

__all__ = ("Ping", "PingSource", "make_ping")

_PING = 2
_CLOSE = 1


@final
class _PingState:
    """The fd and the count of open Ping handles, shared by the source and the pings."""

    __slots__ = ("fd", "lock", "pings", "source_open")

    def __init__(self) -> None:
        self.lock = threading.Lock()  # finalizers defer their work while it is held
        self.fd = WakeFd()
        self.pings = 0
        self.source_open = True

    def release_if_unused(self) -> None:
        # Under lock. The fd is closed only when nobody can write or read it any more, so
        # a ping racing a close never writes to a reused fd number.
        if not self.source_open and self.pings == 0:
            self.fd.close()


@final
class Ping(metaclass=NoPublicConstructor, made_by="make_ping()"):
    """The sending side of a ping: ``ping()`` wakes the loop, from any thread.

    ``clone()`` makes another handle. When every handle is closed (``close()``, ``with``, or
    garbage collection) the `PingSource` removes itself from its loop.
    """

    __slots__ = ("__weakref__", "_closed", "_state")
    _state: _PingState
    _closed: bool

    @classmethod
    def _create(cls, state: _PingState) -> Ping:
        # The caller has counted this handle in state.pings.
        self = object.__new__(cls)
        self._state = state
        self._closed = False
        return self

    def ping(self) -> None:
        """Make the source fire once at its next dispatch; never blocks.

        Raises:
            Closed: this handle was closed. (A ping whose source is gone does nothing.)
        """
        state = self._state
        with state.lock:
            if self._closed:
                raise Closed("this Ping is closed")
            if state.source_open:
                state.fd.add(_PING)

    def clone(self) -> Ping:
        """Another handle to the same source."""
        state = self._state
        with state.lock:
            if self._closed:
                raise Closed("this Ping is closed")
            state.pings += 1
        return Ping._create(state)

    def close(self) -> None:
        """Close this handle (idempotent); the last close makes the source remove itself."""
        state = self._state
        with state.lock:
            if self._closed:
                return
            self._closed = True
            state.pings -= 1
            if state.pings == 0:
                if state.source_open:
                    state.fd.add(_CLOSE)
                state.release_if_unused()

    def __enter__(self) -> Ping:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # `finalize` defers the close while this thread holds the lock (a ping in use).
        if not getattr(self, "_closed", True):
            finalize((self._state.lock,), self.close)


@final
class PingSource(WakeFdSource, metaclass=NoPublicConstructor, made_by="make_ping()"):
    """The event source of a ping: one event (``None``) per dispatch in which it was pinged.

    Its callback gets ``(None, None, data)`` and returns a `PostAction` (``None`` is
    ``CONTINUE``), which the loop applies. Once every `Ping` is closed it removes itself
    (``PostAction.REMOVE``), after delivering a pending ping. Closing the source (or
    collecting it) makes later pings no-ops.
    """

    __slots__ = ("__weakref__", "_state")
    _state: _PingState

    @classmethod
    def _create(cls, state: _PingState) -> PingSource:
        self = object.__new__(cls)
        self._state = state
        self._poll = None
        self._token = None
        return self

    def _wake_fd(self) -> WakeFd:
        if not self._state.source_open:
            raise Closed("this PingSource is closed")
        return self._state.fd

    def _is_open(self) -> bool:
        return self._state.source_open

    def process_events(
        self, readiness: Readiness, token: Token, callback: Callable[[None, None], Any]
    ) -> PostAction:
        if token is not self._token and token != self._token:  # `is`: no __eq__ call
            return PostAction.CONTINUE
        value = self._state.fd.take()
        closing = value & _CLOSE
        action = PostAction.CONTINUE
        if value >= _PING:
            try:
                action = callback_action(callback(None, None), "PingSource")
            except BaseException:
                if closing:
                    self._state.fd.add(_CLOSE)  # still to do: remove at the next dispatch
                raise
        # Once every Ping is closed nothing can follow: the source leaves whatever the
        # callback asked for.
        return PostAction.REMOVE if closing else action

    def close(self) -> None:
        """Unregister (if still registered) and release the fd once no Ping remains."""
        state = self._state
        if self._poll is not None:
            self.unregister(self._poll)
        with state.lock:
            if state.source_open:
                state.source_open = False
                state.release_if_unused()

    def __del__(self) -> None:
        # `finalize` defers the close while this thread holds a lock it takes.
        if getattr(self, "_state", None) is not None and self._state.source_open:
            poll = self._poll
            locks = (self._state.lock,) if poll is None else (self._state.lock, poll._lock)
            finalize(locks, self.close)


def make_ping() -> tuple[Ping, PingSource]:
    """A `Ping` (thread-safe sender) and the `PingSource` to insert in a loop."""
    state = _PingState()
    state.pings = 1
    return Ping._create(state), PingSource._create(state)
