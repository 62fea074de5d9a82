"""Senders and receivers connected freely: dharma's bridge.

A `Receiver` owns one unbounded FIFO. A
`Sender` pushes each message to *every* receiver it was
`connect`ed to (in connection order); a
`DirectSender` pushes to *at most one*, the last one it was
`direct_connect`ed to. Many senders may feed one receiver
and one sender many receivers. Sending never blocks and works from any thread; a message
sent where nobody is connected is dropped, as in dharma.

What a receiver returns is one of the result classes `Plain`,
`Defined`, `Custom`,
`Special`, or one of the two `NoMessage` values
`EMPTY` (``try_recv`` found nothing) and
`TIMEOUT` (a wait with a timeout ran out). They are frozen
dataclasses, so both ``==`` and ``match`` work::

    match await receiver.recv():
        case Defined(signal_id, payload): ...
        case Special(SpecialCommand.TERMINATE): ...

Design note. Each receiver's state (``_ReceiverState``) is a ``deque`` of messages and the
parked receives (a `WaitQueue` under the state's ``threading.Lock``). Senders hold the states,
never the ``Receiver`` objects, so a receiver that is garbage-collected marks its state dead
and senders drop it. The messages themselves take no lock: a push appends, a receive pops, and
``deque.append`` / ``popleft`` are atomic; a fan-out to a hundred receivers would otherwise pay
a hundred lock round trips per message, and a receiver one per message. A push appends *then*
looks whether a receive is parked (and only then takes the lock to take the oldest out and wake
it); a receive that found nothing parks *then* looks once more (the wait queue's ``relook``),
so one of the two sees the other and no wake-up is lost (see `WaitQueue`). A push also looks at
``alive`` after appending, so a message that lands in the queue of a receiver collected
meanwhile is cleared, not kept. The wake-up is a hint to look again, never a hand-off, so a
woken receiver that finds the item taken by someone else waits again: no receive ever returns
``EMPTY``/``TIMEOUT`` while an item is queued, and no item is lost to a cancellation (dharma's
spurious-wake-up hazard). A blocking receive interrupted inside its wait
(``KeyboardInterrupt``, say) leaves exactly as a timed-out one does: it leaves ``waiters``, and
a wake-up a push already gave it goes to the next parked receive. So does a wake-up that cannot
reach its waiter (a task whose event loop was closed without cancelling it): a waiting receive
is never left parked beside a queued item. Under trio a receive is a checkpoint even when an
item is queued, taken trio's way: a pending cancel is raised *before* anything is taken, and
the yield after taking is shielded, so a cancel never strikes between taking an item and
returning it.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar, Union, final

import anyio

from .._lowlevel._check import check_int, check_timeout
from .._lowlevel._finalize import finalize
from .._lowlevel._waitqueue import NOTHING, WaitQueue
from .._lowlevel._wake import ensure_blocking_allowed

if TYPE_CHECKING:
    from typing import TypeAlias

__all__ = (
    "EMPTY",
    "TIMEOUT",
    "Custom",
    "Defined",
    "DirectSender",
    "NoMessage",
    "Plain",
    "ReceiveResult",
    "Receiver",
    "ReceiverStatistics",
    "Sender",
    "SignalId",
    "Special",
    "SpecialCommand",
    "connect",
    "direct_connect",
)

T = TypeVar("T")

SignalId: TypeAlias = int
"""An application-defined signal number (any ``int`` ≥ 0, an ``IntEnum`` member too)."""


class SpecialCommand(enum.Enum):
    """Control commands for event loops; a Signaler's ``terminate()`` sends ``TERMINATE``."""

    TERMINATE = "terminate"
    """Ask the receiving event loop to finalize its modules and end."""


class NoMessage(enum.Enum):
    """What a receive returns when it has no message to return."""

    EMPTY = "empty"
    TIMEOUT = "timeout"


EMPTY: Final = NoMessage.EMPTY
"""Returned by ``try_recv()`` when nothing is queued."""
TIMEOUT: Final = NoMessage.TIMEOUT
"""Returned by ``recv(timeout=…)`` when nothing arrived in time."""


@final
@dataclass(frozen=True, slots=True)
class Plain(Generic[T]):
    """A message sent with ``send_plain(value)``."""

    value: T


@final
@dataclass(frozen=True, slots=True)
class Defined(Generic[T]):
    """A message sent with ``send_defined(signal_id, value)`` (what a Signaler emits)."""

    signal_id: SignalId
    value: T


@final
@dataclass(frozen=True, slots=True)
class Custom(Generic[T]):
    """A message sent with ``send_custom(name, value)``; the value may be anything."""

    name: str
    value: T


@final
@dataclass(frozen=True, slots=True)
class Special:
    """A control command, such as ``Special(SpecialCommand.TERMINATE)``."""

    command: SpecialCommand


ReceiveResult: TypeAlias = Union[Plain[T], Defined[T], Custom[T], Special]  # noqa: UP007
"""Any message a receiver can return."""


def _check_signal_id(signal_id: object) -> int:
    return check_int(signal_id, "a signal id", minimum=0)


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a custom message name must be a str, not {name!r}")
    return name


@final
class _ReceiverState:
    """One receiver's FIFO and its parked receives (module doc: the FIFO takes no lock;
    ``waiters`` and ``alive`` are changed under ``lock``)."""

    __slots__ = ("alive", "items", "lock", "waiters")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: deque[Any] = deque()
        # A push wakes one parked receive with a hint to look again (see WaitQueue);
        # pushes append without the lock, so a receive looks again once parked (relook).
        self.waiters = WaitQueue(self.lock, self.items.__len__, relook=True)
        # False once the Receiver is gone: nobody can ever read, so pushes are dropped.
        self.alive = True

    def push(self, msg: object) -> bool:
        """Queue *msg* and wake one waiter; ``False`` if the receiver is gone. No lock
        unless a receive is parked (module doc; `Sender._push` inlines this).

        Interrupted (Ctrl-C on this thread) in any instant, the message is queued or not,
        and a receive parked meanwhile is never left waiting beside it: the look for one
        runs in ``finally``, right after the append (a call, on whose return a signal
        handler may run), and `wake_one` holds the waiter it takes out."""
        try:
            self.items.append(msg)
        finally:
            if self.waiters:
                self.wake_one()
        if not self.alive:
            self.items.clear()  # collected meanwhile: keep nothing for nobody
            return False
        return True

    def wake_one(self) -> None:
        """After a push that saw a parked receive: hint the oldest, if one still waits (a
        receive that found the message on its second look has left already).

        The message is queued already, so an interrupt must not strike between taking the
        lock and holding the waiter (it would leave the receive parked beside the message):
        the waiter is looked up and taken out with no call at all (a signal handler runs
        only at a call or a jump back), and woken in ``finally``."""
        waiters = self.waiters
        waiter = None
        try:
            with self.lock:
                for key in waiters:  # the oldest (WaitQueue.oldest(), without the call)
                    waiter = waiters[key]
                    del waiters[key]
                    break
        finally:
            if waiter is not None:
                try:
                    waiters.hint(waiter)
                except BaseException:
                    waiters.hint(waiter)  # complete what an interrupt cut short
                    raise

    def kill(self) -> None:
        """The receiver is gone (collected): nobody can ever read, so drop what is queued and
        every later push."""
        with self.lock:
            self.alive = False
            self.items.clear()

    def take(self) -> Any:
        """The oldest message, or `NOTHING` (another receiver may pop meanwhile: no lock)."""
        try:
            return self.items.popleft()
        except IndexError:
            return NOTHING


@final
@dataclass(frozen=True)
class ReceiverStatistics:
    """A snapshot of a `Receiver`, from `Receiver.statistics` (the counterpart of trio's
    ``MemoryChannelStatistics``)."""

    queued: int
    """Messages waiting to be received."""
    receives_waiting: int
    """Receives (tasks or threads) parked for a message."""


@final
class Receiver(Generic[T]):
    """The receiving end: an unbounded FIFO that any number of senders may feed.

    Receive with ``try_recv()``, ``await recv(timeout=None)`` (asyncio, uvloop or trio) or
    ``blocking.recv(timeout=None)`` from a plain thread; a send from any thread wakes
    them. Several tasks and threads may receive from one receiver; each message goes to
    exactly one of them.
    """

    __slots__ = ("__weakref__", "_items", "_state")

    def __init__(self) -> None:
        self._state = _ReceiverState()
        self._items = self._state.items  # the FIFO, read without the lock (module doc)

    def try_recv(self) -> ReceiveResult[T] | Literal[NoMessage.EMPTY]:
        """The oldest queued message, or `EMPTY`."""
        items = self._items
        if items:
            try:
                return items.popleft()  # type: ignore[no-any-return]
            except IndexError:  # another receive of this receiver took the last one
                pass
        return EMPTY

    # The timeout is part of the contract: it turns into the TIMEOUT value.
    async def recv(
        self,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> ReceiveResult[T] | Literal[NoMessage.TIMEOUT]:
        """Wait for the next message.

        Args:
            timeout: seconds to wait at most; ``None`` waits for ever.

        Returns:
            The message, or `TIMEOUT` if *timeout* ran out with
            nothing queued (never while a message is queued). Without a timeout it never
            returns ``TIMEOUT``.

        Cancellation loses nothing: a message is only dequeued by the receive that
        returns it. Under trio it is a checkpoint even when a message is queued: a pending
        cancel is raised before anything is taken.
        """
        timeout = check_timeout(timeout)
        state = self._state
        if timeout is None:
            item = await state.waiters.wait_for(state.take)
            return item  # type: ignore[no-any-return]
        with anyio.move_on_after(timeout):
            item = await state.waiters.wait_for(state.take)
            return item  # type: ignore[no-any-return]
        # Timed out; a message may have arrived just as the deadline passed: prefer it.
        with state.lock:
            item = state.take()
        return TIMEOUT if item is NOTHING else item

    @property
    def blocking(self) -> _BlockingReceiver[T]:
        """The blocking face, for plain threads: ``receiver.blocking.recv(timeout=None)``."""
        return _BlockingReceiver(self)

    def __len__(self) -> int:
        """The number of queued messages (a snapshot)."""
        return len(self._state.items)

    def __del__(self) -> None:
        # The collection may have started while this thread holds the state's lock (a push
        # allocates under it): `finalize` then defers the work.
        state = self._state
        finalize((state.lock,), state.kill)

    def statistics(self) -> ReceiverStatistics:
        """A snapshot: the messages queued and the receives parked. Takes no lock (each
        number is read as it was at some instant), so it answers while another thread is
        inside the receiver."""
        state = self._state
        return ReceiverStatistics(queued=len(state.items), receives_waiting=len(state.waiters))

    def __repr__(self) -> str:
        stats = self.statistics()
        return f"<Receiver queued={stats.queued} waiting={stats.receives_waiting}>"


@final
class _BlockingReceiver(Generic[T]):
    """``receiver.blocking``: receive from a plain thread."""

    __slots__ = ("_receiver",)

    def __init__(self, receiver: Receiver[T]) -> None:
        self._receiver = receiver

    def recv(self, timeout: float | None = None) -> ReceiveResult[T] | Literal[NoMessage.TIMEOUT]:
        """Block until the next message arrives, as `Receiver.recv`.

        Returns:
            The message, or `TIMEOUT` if *timeout* seconds passed
            with nothing queued.

        An exception raised inside the wait (``KeyboardInterrupt``) propagates and leaves
        the receiver as a timeout would: the next message wakes whoever waits then.

        Raises:
            RuntimeError: called on a thread that runs an event loop.
        """
        timeout = check_timeout(timeout)
        ensure_blocking_allowed("receiver.blocking.recv()")
        state = self._receiver._state
        item = state.waiters.wait_for_blocking(state.take, timeout)
        return TIMEOUT if item is NOTHING else item


@final
class Sender(Generic[T]):
    """Sends every message to all receivers it is connected to, in connection order.

    Connecting one receiver twice delivers each message to it twice, as in dharma. With no
    receiver connected, messages are dropped. Safe to use from any thread.
    """

    __slots__ = ("__weakref__", "_lock", "_targets")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Replaced, never mutated, so a send iterates a consistent snapshot without a lock.
        self._targets: tuple[_ReceiverState, ...] = ()

    def _add(self, state: _ReceiverState) -> None:
        with self._lock:
            self._targets = (*self._targets, state)

    def _push(self, msg: object) -> None:
        # `_ReceiverState.push`, inlined: a fan-out does this per receiver.
        gone = False
        for state in self._targets:
            try:
                state.items.append(msg)
            finally:
                if state.waiters:
                    state.wake_one()
            if not state.alive:
                state.items.clear()
                gone = True
        if gone:
            with self._lock:
                self._targets = tuple(q for q in self._targets if q.alive)

    def send_plain(self, value: T) -> None:
        """Send ``Plain(value)``."""
        self._push(Plain(value))

    def send_defined(self, signal_id: SignalId, value: T) -> None:
        """Send ``Defined(signal_id, value)``."""
        self._push(Defined(_check_signal_id(signal_id), value))

    def send_custom(self, name: str, value: T) -> None:
        """Send ``Custom(name, value)``."""
        self._push(Custom(_check_name(name), value))

    @property
    def receivers(self) -> int:
        """How many connections this sender has (a receiver connected twice counts twice)."""
        return sum(1 for q in self._targets if q.alive)

    def __repr__(self) -> str:
        return f"<Sender receivers={self.receivers}>"


@final
class DirectSender(Generic[T]):
    """Sends each message to at most one receiver: the one it was last connected to.

    Unlike `Sender` it can also send control commands
    (``send_special``). Reconnecting moves future messages only: those already queued stay
    in the old receiver. Safe to use from any thread.
    """

    __slots__ = ("__weakref__", "_target")

    def __init__(self) -> None:
        self._target: _ReceiverState | None = None

    def _push(self, msg: object) -> None:
        target = self._target
        if target is not None and not target.push(msg):
            self._target = None

    def send_plain(self, value: T) -> None:
        """Send ``Plain(value)``."""
        self._push(Plain(value))

    def send_defined(self, signal_id: SignalId, value: T) -> None:
        """Send ``Defined(signal_id, value)``."""
        self._push(Defined(_check_signal_id(signal_id), value))

    def send_custom(self, name: str, value: T) -> None:
        """Send ``Custom(name, value)``."""
        self._push(Custom(_check_name(name), value))

    def send_special(self, command: SpecialCommand) -> None:
        """Send ``Special(command)``."""
        if not isinstance(command, SpecialCommand):
            raise TypeError(f"command must be a SpecialCommand, not {command!r}")
        self._push(Special(command))

    def clone(self) -> DirectSender[T]:
        """A new direct sender with the same target; reconnecting one leaves the other."""
        other: DirectSender[T] = DirectSender()
        other._target = self._target
        return other

    @property
    def connected(self) -> bool:
        """Whether a live receiver is connected."""
        target = self._target
        return target is not None and target.alive

    def __repr__(self) -> str:
        return f"<DirectSender {'connected' if self.connected else 'unconnected'}>"


def connect(sender: Sender[T], receiver: Receiver[T]) -> None:
    """Connect *receiver* to *sender*, after the receivers already connected.

    Raises:
        TypeError: *sender* is not a `Sender` or *receiver* not a `Receiver`.
    """
    if not isinstance(sender, Sender):
        raise TypeError(f"connect() needs a Sender, not {sender!r}")
    if not isinstance(receiver, Receiver):
        raise TypeError(f"connect() needs a Receiver, not {receiver!r}")
    sender._add(receiver._state)


def direct_connect(sender: DirectSender[T], receiver: Receiver[T]) -> None:
    """Make *receiver* the one target of *sender*, replacing any previous one.

    Raises:
        TypeError: *sender* is not a `DirectSender` or *receiver* not a `Receiver`.
    """
    if not isinstance(sender, DirectSender):
        raise TypeError(f"direct_connect() needs a DirectSender, not {sender!r}")
    if not isinstance(receiver, Receiver):
        raise TypeError(f"direct_connect() needs a Receiver, not {receiver!r}")
    sender._target = receiver._state
