"""channel / sync_channel: messages from any thread, delivered by the loop in FIFO order.

The queue is a deque under a lock; each send pings the channel's fd. One ``process_events``
delivers at most min(capacity + 1, 1024) messages, calloop's bound, and pings itself again if
more remain, so a flood of messages cannot starve the other sources. It pings itself again
too when a callback raises or returns an action other than ``CONTINUE`` with messages left,
so an exception loses nothing and stalls nothing. When every sender is closed and the queue
is drained, the callback gets ``ChannelClosed()`` once and the source removes itself.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, final

from .._errors import Closed as ClosedError, Disconnected, WouldBlock
from .._lowlevel._check import check_int, check_timeout
from .._lowlevel._finalize import finalize
from .._lowlevel._public import NoPublicConstructor
from .._lowlevel._waitqueue import NOTHING, WaitQueue
from .._lowlevel._wake import ensure_blocking_allowed
from ._poll import Readiness, WakeFd
from ._source import PostAction, callback_action
from ._token import Token
from ._wakefd_source import WakeFdSource

__all__ = (
    "CalloopChannelStatistics",
    "Channel",
    "ChannelClosed",
    "ChannelSender",
    "Msg",
    "SyncChannelSender",
    "channel",
    "sync_channel",
)

T = TypeVar("T")
MAX_PER_DISPATCH = 1024


@final
@dataclass(frozen=True)
class Msg(Generic[T]):
    """A channel event: one message, in the order it was sent."""

    value: T


@final
@dataclass(frozen=True)
class ChannelClosed:
    """A channel event: every sender is closed and every message was delivered.

    Delivered once, after which the channel removes itself from the loop. calloop's
    ``Event::Closed``, named apart from the exception ``asyncmp.Closed``.
    """


_CLOSED = ChannelClosed()


@final
@dataclass(frozen=True)
class CalloopChannelStatistics:
    """A snapshot of a calloop `Channel`, from `Channel.statistics` (the counterpart of
    trio's ``MemoryChannelStatistics``)."""

    queued: int
    """Messages waiting for the loop to deliver them."""
    max_queued: int | None
    """The bound of a `sync_channel`; ``None`` for an unbounded `channel`."""
    senders: int
    """Open senders."""
    senders_waiting: int
    """Sends (tasks or threads) of a full `sync_channel` parked for room."""
    closed: bool
    """Whether the receiving end is closed."""


@final
class _ChannelState:
    __slots__ = ("bound", "fd", "lock", "queue", "receiver_open", "room_waiters", "senders")

    def __init__(self, bound: int | None) -> None:
        # A plain lock: finalizers defer their work while it is held (`finalize`), and
        # room waiters are hinted outside it (`freed`).
        self.lock = threading.Lock()
        self.queue: deque[Any] = deque()
        self.bound = bound
        self.fd = WakeFd()
        self.senders = 1
        self.receiver_open = True
        # Senders waiting for room; a freed place wakes one with a hint to look again.
        self.room_waiters = WaitQueue(self.lock)

    def ping(self) -> None:
        # Under lock, so the fd cannot be closed meanwhile.
        if self.receiver_open:
            self.fd.add(1)

    def freed(self, n: int, hints: list[Any]) -> None:
        # Under lock: each of *n* freed places goes to one waiting sender, taken out into
        # *hints*; the caller hints them once the lock is let go (`hint`), whatever
        # interrupted it (a hint that cannot arrive is passed on, which takes the lock).
        self.room_waiters.take_oldest(n, hints)

    def hint(self, hints: list[Any]) -> None:
        # Outside the lock, in a `finally` whose caller runs it again if an interrupt cut
        # it short (a hint already out is not repeated: `_wake.deliver`).
        if hints:
            self.room_waiters.hint_all(hints)

    def push(self, value: Any, bounded: bool) -> bool:
        # Under lock. True if queued; False if a bounded queue is full.
        if not self.receiver_open:
            raise Disconnected("the calloop Channel is closed: nobody will receive this")
        if bounded and self.bound is not None and len(self.queue) >= self.bound:
            return False
        self.queue.append(value)
        self.ping()
        return True


class _ChannelSenderBase(Generic[T]):
    __slots__ = ("__weakref__", "_closed", "_state")
    _state: _ChannelState
    _closed: bool

    @classmethod
    def _create(cls, state: _ChannelState) -> Any:
        # The caller has counted this sender in state.senders.
        self = object.__new__(cls)
        self._state = state
        self._closed = False
        return self

    def _check(self) -> _ChannelState:
        if self._closed:
            raise ClosedError(f"this {type(self).__name__} is closed")
        return self._state

    def clone(self) -> Any:
        """Another sender to the same channel."""
        state = self._state
        with state.lock:
            self._check()
            state.senders += 1
        return type(self)._create(state)

    def close(self) -> None:
        """Close this sender (idempotent); after the last one the channel reports
        ``ChannelClosed()``."""
        state = self._state
        with state.lock:
            if self._closed:
                return
            self._closed = True
            state.senders -= 1
            if state.senders == 0:
                state.ping()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # The collection may have started while this thread holds the channel's lock (a
        # send allocates under it): `finalize` then defers the close.
        if not getattr(self, "_closed", True):
            finalize((self._state.lock,), self.close)


@final
class ChannelSender(
    _ChannelSenderBase[T], metaclass=NoPublicConstructor, made_by="calloop.channel()"
):
    """Sends to an unbounded `Channel` from any thread; ``send`` never blocks.

    ``clone()`` for more senders; ``close()``, ``with`` or garbage collection closes one.
    """

    __slots__ = ()

    def send(self, value: T) -> None:
        """Queue *value* for the loop.

        Raises:
            asyncmp.Disconnected: the `Channel` is closed or collected.
            asyncmp.Closed: this sender is closed.
        """
        state = self._state
        with state.lock:
            self._check()
            state.push(value, bounded=False)


@final
class SyncChannelSender(
    _ChannelSenderBase[T], metaclass=NoPublicConstructor, made_by="calloop.sync_channel()"
):
    """Sends to a bounded `Channel` (``sync_channel``) from any thread or task.

    ``try_send`` never waits; ``await send`` and ``blocking.send`` wait for room.
    """

    __slots__ = ()

    def try_send(self, value: T) -> None:
        """Queue *value* if there is room.

        Raises:
            asyncmp.WouldBlock: the channel is full (the loop is pinged all the same).
            asyncmp.Disconnected: the `Channel` is closed or collected.
            asyncmp.Closed: this sender is closed.
        """
        state = self._state
        with state.lock:
            self._check()
            if not state.push(value, bounded=True):
                state.ping()  # as calloop: make sure the loop drains the full queue
                raise WouldBlock("the calloop channel is full")

    async def send(self, value: T) -> None:
        """Queue *value*, waiting (cancellably) while the channel is full.

        Never await this in a callback of the loop that drains the channel: it cannot
        drain while you wait.

        Under trio it is a checkpoint even when there is room, taken trio's way: a pending
        cancel is raised before anything is queued, never after (a send that raises queued
        nothing).

        Raises:
            asyncmp.Disconnected: the `Channel` is closed or collected.
        """
        state = self._state

        def take() -> object:
            self._check()
            return True if state.push(value, bounded=True) else NOTHING

        await state.room_waiters.wait_for(take)

    @property
    def blocking(self) -> _BlockingSyncSender[T]:
        """The blocking face for plain threads: ``sender.blocking.send(v, timeout=None)``."""
        return _BlockingSyncSender(self)


@final
class _BlockingSyncSender(Generic[T]):
    """``sender.blocking``: send from a plain thread, waiting for room in a full channel."""

    __slots__ = ("_sender",)

    def __init__(self, sender: SyncChannelSender[T]) -> None:
        self._sender = sender

    def send(self, value: T, timeout: float | None = None) -> None:
        """Queue *value*, blocking this thread while the channel is full.

        An exception raised inside the wait (``KeyboardInterrupt``) propagates, queues
        nothing and leaves the channel as a timeout would: a place freed for this send
        goes to the next waiting sender.

        Raises:
            TimeoutError: still full after *timeout* seconds (nothing was queued).
            RuntimeError: called on a thread that runs an event loop.
            asyncmp.Disconnected: the `Channel` is closed or collected.
        """
        ensure_blocking_allowed("SyncChannelSender.blocking.send()")
        t = check_timeout(timeout)
        sender = self._sender
        state = sender._state

        def take() -> object:
            sender._check()
            return True if state.push(value, bounded=True) else NOTHING

        if state.room_waiters.wait_for_blocking(take, t) is NOTHING:
            raise TimeoutError("the calloop channel stayed full")


@final
class Channel(
    WakeFdSource,
    Generic[T],
    metaclass=NoPublicConstructor,
    made_by="calloop.channel() or sync_channel()",
):
    """The receiving end: an event source whose callback gets ``Msg(value)`` and
    ``ChannelClosed()``.

    The callback gets ``(event, None, data)`` and returns a `PostAction` (``None`` is
    ``CONTINUE``). An action other than ``CONTINUE`` ends this dispatch's deliveries and is
    applied; the messages left stay queued for when the channel is registered again.
    After ``ChannelClosed()`` the channel removes itself, whatever the callback returns. A callback
    that raises loses nothing: the rest is delivered at the next dispatch. ``try_recv``
    reads without a loop. Closing it (``close()`` or garbage collection) makes later sends
    raise ``asyncmp.Disconnected`` and drops undelivered messages.
    """

    __slots__ = ("__weakref__", "_closed_sent", "_state")
    _state: _ChannelState
    _closed_sent: bool

    def _wake_fd(self) -> WakeFd:
        if not self._state.receiver_open:
            raise ClosedError("this Channel is closed")
        return self._state.fd

    def _is_open(self) -> bool:
        return self._state.receiver_open

    @classmethod
    def _create(cls, state: _ChannelState) -> Channel[Any]:
        self: Channel[Any] = object.__new__(cls)
        self._state = state
        self._poll = None
        self._token = None
        self._closed_sent = False
        return self

    def try_recv(self) -> T:
        """Take the next message without the loop.

        Raises:
            asyncmp.WouldBlock: no message is queued (but a sender is open).
            asyncmp.Disconnected: no message is queued and every sender is closed.
        """
        state = self._state
        hints: list[Any] = []
        try:
            with state.lock:
                if not state.receiver_open:
                    raise ClosedError("this Channel is closed")
                if state.queue:
                    state.freed(1, hints)
                    return state.queue.popleft()  # type: ignore[no-any-return]
                if state.senders == 0:
                    raise Disconnected("every sender of this calloop channel is closed")
                raise WouldBlock("no message is queued")
        finally:
            try:
                state.hint(hints)
            except BaseException:
                state.hint(hints)  # cut short by an interrupt at its start: once more
                raise

    def process_events(
        self,
        readiness: Readiness,
        token: Token,
        callback: Callable[[Msg[T] | ChannelClosed, None], object],
    ) -> PostAction:
        if (token is not self._token and token != self._token) or self._closed_sent:
            return PostAction.CONTINUE
        state = self._state
        # The wake-up is consumed before delivering, so every way out of the loop below
        # short of draining the queue (the per-dispatch limit, a callback that raises or
        # returns an action other than CONTINUE) pings the fd again: what is left is
        # delivered at the next dispatch in which the channel is registered, never stalled
        # until the next send.
        state.fd.take()
        limit = MAX_PER_DISPATCH if state.bound is None else min(state.bound + 1, MAX_PER_DISPATCH)
        drained = closed = False
        try:
            for _ in range(limit):
                hints: list[Any] = []
                try:
                    with state.lock:
                        if not state.queue:
                            drained, closed = True, state.senders == 0
                            break
                        state.freed(1, hints)
                        value = state.queue.popleft()
                finally:
                    try:
                        state.hint(hints)
                    except BaseException:
                        state.hint(hints)  # cut short by an interrupt at its start: once more
                        raise
                action = callback_action(callback(Msg(value), None), "Channel")
                if action is not PostAction.CONTINUE:
                    return action
        finally:
            if not drained:
                with state.lock:
                    if state.queue or state.senders == 0:
                        state.ping()  # more to deliver (or ChannelClosed to report)
        if closed:
            self._closed_sent = True
            # Nothing can follow ChannelClosed: the channel leaves whatever the callback returns.
            callback_action(callback(_CLOSED, None), "Channel")
            return PostAction.REMOVE
        return PostAction.CONTINUE

    def statistics(self) -> CalloopChannelStatistics:
        """A snapshot of the channel. Takes no lock (each number is read as it was at some
        instant), so it answers while a sender holds the channel's lock."""
        state = self._state
        return CalloopChannelStatistics(
            queued=len(state.queue),
            max_queued=state.bound,
            senders=state.senders,
            senders_waiting=len(state.room_waiters),
            closed=not state.receiver_open,
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        state = "closed" if stats.closed else f"queued={stats.queued} senders={stats.senders}"
        return f"<calloop Channel {state}>"

    def close(self) -> None:
        """Stop receiving (idempotent): queued messages are dropped, senders get errors."""
        state = self._state
        if self._poll is not None:
            self.unregister(self._poll)
        hints: list[Any] = []
        try:
            with state.lock:
                if not state.receiver_open:
                    return
                state.receiver_open = False
                state.freed(len(state.room_waiters), hints)  # they wake to raise Disconnected
                state.queue.clear()
                state.fd.close()
        finally:
            try:
                state.hint(hints)
            except BaseException:
                state.hint(hints)  # cut short by an interrupt at its start: once more
                raise

    def __del__(self) -> None:
        # `finalize` defers the close while this thread holds a lock it takes.
        if getattr(self, "_state", None) is not None and self._state.receiver_open:
            finalize(self._locks(), self.close)

    def _locks(self) -> tuple[Any, ...]:
        poll = self._poll
        return (self._state.lock,) if poll is None else (self._state.lock, poll._lock)


def channel() -> tuple[ChannelSender[Any], Channel[Any]]:
    """An unbounded channel: a thread-safe `ChannelSender` and the `Channel` source for the loop."""
    state = _ChannelState(None)
    return ChannelSender._create(state), Channel._create(state)


def sync_channel(bound: int) -> tuple[SyncChannelSender[Any], Channel[Any]]:
    """A channel holding at most *bound* (≥ 1) queued messages; sends wait for room."""
    state = _ChannelState(check_int(bound, "bound", minimum=1))
    return SyncChannelSender._create(state), Channel._create(state)
