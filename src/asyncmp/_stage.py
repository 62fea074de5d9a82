"""Stage: one task or thread heads a shared resource and routes events to the others by token.

Design note. A `Stage` keeps one `_Entry` per held token (``stage._entries``), one FIFO of
parked entries (``stage._parked``, a `WaitQueue` keyed by entry) and the entry that heads the
stage (``stage._head``), all guarded by one ``threading.Lock`` (``stage._lock``), so that
tasks on any event loop and plain threads can share one stage. The buffer has its own lock,
taken only outside ``stage._lock`` (buffer lock → stage lock, never the other way), so a
head may notify while it holds the buffer.

An entry is in one of three states, changed only under ``stage._lock``::

    IDLE ──enter, nobody heads──▶ HEAD ──head function ends──▶ IDLE (+ promote the next)
    IDLE ──enter, someone heads──▶ PARKED ──notify──▶ IDLE (notified)
                                   PARKED ──timeout/cancel──▶ IDLE
                                   PARKED ──promoted (FIFO)──▶ HEAD

Invariants:
- At most one entry is HEAD, and it is ``stage._head``. ``stage._parked`` holds exactly the
  PARKED entries, oldest first, each with its ``waiter``.
- If anyone is parked, someone heads (``_parked`` non-empty ⇒ ``_head`` is not None): the
  head leaves only through `_end_head` or `_abandon`, which promote the oldest parked entry, and a
  promoted entry that will not head (its timeout passed, it was cancelled) releases again.
- Whoever takes an entry out of ``_parked`` (notify, promotion) owns the one wake-up of its
  waiter; a timed-out or cancelled waiter that finds itself no longer parked was already
  given something, and passes it on (promotion) or leaves it marked (notification). So does
  a thread whose wait is interrupted by an exception (``KeyboardInterrupt``).
- A promoted entry keeps its waiter in ``entry.waiter`` until it takes the head up. A
  promotion that cannot reach its waiter — the task's event loop was closed without
  cancelling it, or asyncio cancelled the task as the wake-up arrived — is reported back
  (`_wake.deliver`'s ``undelivered``) and, if the entry still holds that very promotion,
  handed on to the next waiter: a stage is never left headed by a waiter that is gone.
- ``entry.notified`` is set by a notify and cleared only by the ``enter`` that returns
  `Notified`, so no notification is lost between two ``enter`` calls on one ticket.
- "Timeout wins": a waiter that resumes after its deadline returns `TimedOut`, whatever
  woke it (exit-left's rule; what it was given is kept or handed on as above).
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
import threading
import time
from _thread import RLock as _RLock
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractContextManager
from typing import Any, Final, Generic, TypeVar, final

import anyio

from ._closing import Closing
from ._errors import Closed
from ._lowlevel._check import check_timeout
from ._lowlevel._finalize import finalize
from ._lowlevel._public import NoPublicConstructor
from ._lowlevel._waitqueue import WaitQueue
from ._lowlevel._wake import (
    ThreadWaiter,
    Waiter,
    deliver,
    ensure_blocking_allowed,
    new_async_waiter,
    park,
    trio_checkpoint,
    wake,
)
from ._stage_results import Finished, Notified, TimedOut
from ._statistics import StageStatistics

__all__ = ("Director", "Finished", "Notified", "Stage", "Ticket", "TimedOut")

T = TypeVar("T", bound=Hashable)
R = TypeVar("R")
B = TypeVar("B")
Ret = TypeVar("Ret")

IDLE: Final = 0
PARKED: Final = 1
HEAD: Final = 2

# What `_begin` / `_resume` tell `enter` to do next.
_NOTIFIED: Final = 0
_TIMED_OUT: Final = 1
_HEAD: Final = 2
_PARK: Final = 3
_HAND_ON: Final = 4  # promoted as the timeout passed: hand the head on, then time out


@final
class _Entry:
    """One held token. Every field but ``token`` is guarded by the stage's lock."""

    __slots__ = ("closed", "notified", "state", "token", "waiter")

    def __init__(self, token: Hashable) -> None:
        self.token = token
        self.state = IDLE
        self.notified = False
        self.closed = False
        self.waiter: Waiter | None = None


@final
class Stage(Generic[T, R, B]):
    """Many tasks and threads wait for "their" events from a resource only one may read.

    One caller of `enter` at a time *heads* the stage: its head
    function reads the resource, puts what belongs to others into the buffer and notifies
    their tokens through the `Director`; what belongs to itself it
    returns. Everyone else waits, parked, until notified, promoted to head (oldest waiter
    first) or timed out.

    Args:
        resource: the shared thing only a head may read (a socket, a pipe …); available to
            everyone as `resource` for operations that do not compete with the head.
        buffer: where heads put what they route (a dict of lists, say); reach it with
            `with stage.buffer() as buf:`.

    Tasks on any event loop (asyncio, uvloop, trio) and plain threads may use one stage at
    the same time.
    """

    __slots__ = (
        "__weakref__",
        "_buffer_lock",
        "_entries",
        "_head",
        "_lock",
        "_parked",
        "_resource",
    )

    def __init__(self, resource: R, buffer: B) -> None:
        self._resource = resource
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self._parked = WaitQueue(self._lock)  # PARKED entries -> their waiters, oldest first
        self._head: _Entry | None = None
        self._buffer_lock: _BufferLock[B] = _BufferLock()
        self._buffer_lock.buffer = buffer

    @property
    def resource(self) -> R:
        """The shared resource, for operations that do not compete with the head's reads
        (sending on a UDP socket, say)."""
        return self._resource

    def ticket(self, token: T) -> Ticket[T] | None:
        """Hold *token*: from now on, notifications for it are recorded.

        Returns ``None`` if another ticket holds *token*. Take the ticket *before* looking
        in the buffer, so that whatever a head routes after that look is notified to it.

        Raises:
            TypeError: *token* is not hashable.
        """
        hash(token)  # an unhashable token raises TypeError before anything is made
        entry = _Entry(token)
        # Made first: interrupted once the token is taken, the ticket is dropped unseen and
        # its finalizer frees the token again.
        ticket: Ticket[T] = Ticket._create(self, entry)
        with self._lock:
            if token in self._entries:
                entry.closed = True  # never held: its finalizer must leave the token alone
                return None
            self._entries[token] = entry
        return ticket

    def buffer(self) -> AbstractContextManager[B]:
        """``with stage.buffer() as buf:`` — the buffer, under its lock.

        Keep the block short and never ``await`` inside it: the lock is a thread lock.

        Raises:
            RuntimeError: this thread holds the buffer already (a nested ``with``, or a task
                that awaited inside the block); a plain lock would deadlock here.
        """
        return self._buffer_lock

    async def enter(
        self,
        ticket: Ticket[T],
        head: Callable[[Director[T, R, B]], Awaitable[Ret]],
        timeout: float | None = None,  # noqa: ASYNC109 (it ends in TimedOut(), a result)
    ) -> Finished[Ret] | Notified | TimedOut:
        """Wait until this ticket's token is notified, or head the stage, or time out.

        Args:
            ticket: from `ticket`; it stays held afterwards, for the
                next ``enter``, until you close it.
            head: ``async def head(director) -> value``: run if this caller heads the stage
                (at once if nobody heads, or when promoted); it reads the resource and
                routes events until it has one of its own to return.
            timeout: seconds to wait (not to head: a running head is never interrupted);
                ``None`` waits for ever.

        Returns:
            `Finished(value)` if this caller headed, `Notified()` if its token was notified
            (now or before this call), `TimedOut()` if the timeout passed first.

        Raises:
            Closed: the ticket is closed.
            Exception: whatever the head function raised; the stage is released first and
                the next waiter promoted.

        Cancellation loses nothing: a cancelled waiter that was just promoted hands the head
        on, and a notification stays marked on the ticket.
        """
        timeout = check_timeout(timeout)
        entry = self._own(ticket, head)
        await trio_checkpoint()
        deadline = None if timeout is None else anyio.current_time() + timeout
        # From the first change to the entry until the head function runs (or enter returns),
        # whatever ends the call early — a cancellation, an interrupt in any instant — passes
        # on what the entry was given (`_abandon`).
        refused = True
        director: Director[T, R, B] | None = None
        try:
            with self._lock:
                self._check(entry)
                refused = False  # no call since the check: only a refused enter skips this
                action, waiter = self._begin(entry, timeout == 0, new_async_waiter)
            while action == _PARK:
                assert waiter is not None
                assert not isinstance(waiter, ThreadWaiter)
                deregister = functools.partial(self._deregister, entry, waiter)
                with anyio.CancelScope(
                    deadline=math.inf if deadline is None else deadline
                ) as scope:
                    await park(waiter, deregister)
                expired = deadline is not None and (
                    scope.cancel_called or anyio.current_time() >= deadline
                )
                with self._lock:
                    action, waiter = self._resume(entry, expired, new_async_waiter)
            if action == _HEAD:
                director = Director._create(self, entry)
            elif action == _HAND_ON:
                self._abandon(entry)  # inside: an interrupt in it has it run again below
        except BaseException:
            if not refused:
                try:
                    self._abandon(entry)
                except BaseException:
                    self._abandon(entry)  # a second interrupt cut it short: once more
            raise
        if action == _NOTIFIED:
            return Notified()
        if action in (_HAND_ON, _TIMED_OUT):
            return TimedOut()
        assert director is not None
        try:
            result = head(director)
            if not inspect.isawaitable(result):
                raise TypeError(
                    f"enter() needs an async head function, but {head!r} returned "
                    f"{result!r}; use stage.blocking.enter() for plain functions"
                )
            value = await result
        finally:
            try:
                self._end_head(director)
            except BaseException:
                self._end_head(director)  # cut short by an interrupt at its start: once more
                raise
        return Finished(value)

    def statistics(self) -> StageStatistics:
        """A snapshot of the stage: the tickets held, whether someone heads, the waiters
        parked (tasks and threads) and the notifications pending."""
        with self._lock:
            return self._statistics()

    @property
    def blocking(self) -> _BlockingStage[T, R, B]:
        """The blocking face, for plain threads: ``stage.blocking.enter(ticket, head)``."""
        return _BlockingStage(self)

    # -- the state machine (see the module docstring) ----------------------------------

    def _own(self, ticket: Ticket[T], head: object) -> _Entry:
        if not isinstance(ticket, Ticket):
            raise TypeError(f"enter() needs a Ticket from stage.ticket(), not {ticket!r}")
        if ticket._stage is not self:
            raise ValueError("this ticket belongs to another stage")
        if not callable(head):
            raise TypeError(f"head must be a function taking a Director, not {head!r}")
        return ticket._entry

    def _check(self, entry: _Entry) -> None:
        """Under the lock: may *entry* enter? (Raises before anything changes.)"""
        if entry.closed:
            raise Closed("this ticket is closed")
        if entry.state != IDLE:
            raise RuntimeError("this ticket is already inside enter()")

    # Interrupts (docs/design.md, "Interrupts and finalizers"): each method below that
    # changes the state under the lock first looks (calls allowed), then changes it with no
    # call, so that an exception raised by a signal handler strikes before the change or
    # after it, never half way. Whoever calls them keeps a handler that passes on what an
    # interrupted enter was given (`_abandon`), and wakes whom it took out of line in a
    # `finally` (`_wake_surely`).

    def _begin(
        self, entry: _Entry, expired: bool, new_waiter: Callable[[], Waiter]
    ) -> tuple[int, Waiter | None]:
        """First look, under the lock (after `_check`): return at once, head at once, or
        park."""
        if entry.notified:
            entry.notified = False
            return _NOTIFIED, None
        if self._head is None:
            # Nobody heads, hence nobody is parked: the fast path (timeout not involved).
            self._head = entry
            entry.state = HEAD
            return _HEAD, None
        if expired:
            return _TIMED_OUT, None
        waiter = new_waiter()
        entry.waiter = waiter
        entry.state = PARKED
        self._parked[entry] = waiter
        return _PARK, waiter

    def _resume(
        self, entry: _Entry, expired: bool, new_waiter: Callable[[], Waiter]
    ) -> tuple[int, Waiter | None]:
        """After parking, under the lock: what were we given, and do we take it?"""
        if entry.state == HEAD:
            entry.waiter = None  # the promotion has reached us
            if not expired:
                return _HEAD, None
            # Promoted, but the timeout won: the caller hands the head to the next waiter
            # (`_abandon`, outside the lock: a promotion that cannot be delivered takes it).
            return _HAND_ON, None
        if entry.state == PARKED:
            # A spurious wake-up: still in line, keep our place with a fresh waiter.
            if expired:
                del self._parked[entry]
                entry.state = IDLE
                entry.waiter = None
                return _TIMED_OUT, None
            waiter = new_waiter()
            entry.waiter = waiter
            self._parked[entry] = waiter  # a parked key keeps its place in line
            return _PARK, waiter
        # IDLE: notified, or taken out of line by our own timeout.
        if entry.notified and not expired:
            entry.notified = False
            return _NOTIFIED, None
        return _TIMED_OUT, None

    def _deregister(self, entry: _Entry, waiter: Waiter) -> bool:
        """deregister() of `_wake.park`: leave the line unless something was given to us."""
        with self._lock:
            if entry.state != PARKED or entry.waiter is not waiter:
                return False
            del self._parked[entry]
            entry.state = IDLE
            entry.waiter = None
            return True

    def _abandon(self, entry: _Entry) -> None:
        """A waiter leaves by an exception (a cancellation, an interrupt): pass on what it
        was given. Does nothing for an entry that holds nothing (IDLE), so a handler may
        call it whatever instant the exception struck."""
        promoted = None
        try:
            with self._lock:
                nxt = self._parked.oldest() if entry.state == HEAD and self._parked else None
                # No call from here to the end of the block.
                if entry.state == HEAD:
                    entry.state = IDLE
                    entry.waiter = None
                    self._head = None
                    if nxt is not None:
                        promoted = nxt
                        promoted[0].state = HEAD
                        self._head = promoted[0]
                        del self._parked[promoted[0]]
                elif entry.state == PARKED:
                    del self._parked[entry]
                    entry.state = IDLE
                    entry.waiter = None
                # A notification stays marked on the ticket for the next enter().
        finally:
            try:
                self._promote(promoted)
            except BaseException:
                self._promote(promoted)  # cut short by an interrupt at its start: once more
                raise

    def _promote(self, promoted: tuple[_Entry, Waiter] | None) -> None:
        """Wake a promoted waiter (outside the lock, in a ``finally`` whose caller runs it
        again if an interrupt cut it short: a repeated wake-up is not repeated, see
        `_wake.deliver`). If the head cannot reach it — its
        event loop is closed, or an asyncio task was cancelled as the wake-up arrived — it is
        passed on to the next waiter, so a stage is never left headed by nobody.

        The promoted entry keeps its waiter in ``entry.waiter`` until it takes the head up
        (`_resume`): that marks *this* promotion, so a report that it never arrived
        (`_lost_promotion`) is told apart from a later one — and a second report of it (a
        wake-up repeated after an interrupt, see `_wake.deliver`) finds it handed on."""
        if promoted is not None:
            entry, waiter = promoted
            lost = functools.partial(self._lost_promotion, entry, waiter)
            try:
                deliver(waiter, None, lost)
            except BaseException:
                deliver(waiter, None, lost)  # complete what an interrupt cut short
                raise

    def _lost_promotion(self, entry: _Entry, waiter: Waiter, _value: object) -> None:
        """``undelivered`` of `_promote`: the promotion never reached *waiter*."""
        promoted = None
        try:
            with self._lock:
                if entry.state != HEAD or entry.waiter is not waiter:
                    return  # already taken up or handed on (by `_abandon` of a cancelled task)
                nxt = self._parked.oldest() if self._parked else None
                entry.state = IDLE
                entry.waiter = None
                self._head = None
                if nxt is not None:
                    promoted = nxt
                    promoted[0].state = HEAD
                    self._head = promoted[0]
                    del self._parked[promoted[0]]
        finally:
            try:
                self._promote(promoted)
            except BaseException:
                self._promote(promoted)  # cut short by an interrupt at its start: once more
                raise

    def _end_head(self, director: Director[T, R, B]) -> None:
        """The head function has ended: let the head go and promote the oldest waiter.

        It must complete: its callers run it again if an interrupt cut it short (a second
        run finds the director closed and changes nothing; `_promote` wakes a waiter once)."""
        promoted = None
        try:
            with self._lock:
                if director._closed:
                    return
                nxt = self._parked.oldest() if self._parked else None
                # No call from here to the end of the block.
                director._closed = True
                director._entry.state = IDLE
                self._head = None
                if nxt is not None:
                    promoted = nxt
                    promoted[0].state = HEAD
                    self._head = promoted[0]
                    del self._parked[promoted[0]]
        finally:
            try:
                self._promote(promoted)
            except BaseException:
                self._promote(promoted)  # cut short by an interrupt at its start: once more
                raise

    def _statistics(self) -> StageStatistics:
        """The numbers of `statistics`. Without the lock (a repr, which never waits), each is
        read as it was at some instant, not all at the same one: ``len()`` and the copy of
        the entries are single C calls, which no other thread interleaves."""
        entries = list(self._entries.values())
        return StageStatistics(
            tickets=len(entries),
            headed=self._head is not None,
            parked=len(self._parked),
            notified=sum([1 for entry in entries if entry.notified]),
        )

    def __repr__(self) -> str:
        """``<Stage headed [tickets: 2, parked: 1]>``, read without the stage's lock: a repr
        never waits (a debugger, a log line, a deadlock report)."""
        s = self._statistics()
        heading = "headed" if s.headed else "free"
        return f"<Stage {heading} [tickets: {s.tickets}, parked: {s.parked}]>"


@final
class _BufferLock(_RLock, Generic[B]):  # type: ignore[misc]
    """The buffer's lock, and what ``with stage.buffer() as buf:`` enters: a C ``RLock``
    whose ``__enter__`` returns the buffer.

    Interrupts: ``with`` protects a C ``__enter__`` (no signal handler runs between it and
    the block), not one written in Python, which an interrupt can strike after its acquire
    returned. So the acquire is in a ``try`` whose handler lets go of the lock if this thread
    holds it — which an owner-aware lock can tell — and the ``__exit__`` is the C one: no
    signal handler runs between the block's end and the release. Nesting is refused, not
    re-entered: the lock only stands in for a plain one (buffer lock → stage lock, never the
    other way).
    """

    __slots__ = ("buffer",)
    buffer: B

    def __enter__(self) -> B:  # type: ignore[override]
        if self._is_owned():  # type: ignore[attr-defined]
            raise RuntimeError(
                "this thread already holds the stage's buffer: do not nest buffer() blocks "
                "or await inside one"
            )
        try:
            self.acquire()
        except BaseException:
            # An interrupt as the acquire returned: no `with` block holds it, let it go.
            if self._is_owned():  # type: ignore[attr-defined]
                self.release()
            raise
        return self.buffer


@final
class Ticket(Closing, Generic[T], metaclass=NoPublicConstructor, made_by="stage.ticket()"):
    """A held token: notifications for it are recorded until the ticket is closed.

    Made by `Stage.ticket`. One ticket serves any number of
    ``enter`` calls, one at a time; close it (``close()``, ``with``, or garbage collection)
    to free the token.
    """

    __slots__ = ("__weakref__", "_entry", "_stage")
    _stage: Stage[Any, Any, Any]
    _entry: _Entry

    @classmethod
    def _create(cls, stage: Stage[Any, Any, Any], entry: _Entry) -> Ticket[Any]:
        self: Ticket[Any] = object.__new__(cls)
        self._stage = stage
        self._entry = entry
        return self

    @property
    def token(self) -> T:
        """The token this ticket holds."""
        return self._entry.token  # type: ignore[return-value]

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._entry.closed

    def close(self) -> None:
        """Free the token: its pending notification is dropped and `ticket()` can take it
        again. Idempotent.

        Raises:
            RuntimeError: the ticket is inside ``enter()`` right now.
        """
        stage = self._stage
        entry = self._entry
        with stage._lock:
            if entry.closed:
                return
            if entry.state != IDLE:
                raise RuntimeError("cannot close a ticket while it is inside enter()")
            del stage._entries[entry.token]  # the one call (the token's hash) comes first
            entry.closed = True

    def __del__(self) -> None:
        # enter() holds a reference while it runs (and leaves the entry IDLE even when its
        # coroutine is closed), so the entry is IDLE here. The collection may have started
        # while this thread holds the stage's lock (the stage allocates under it): `finalize`
        # then defers the work. Never raise from a finalizer.
        entry = self._entry
        if not entry.closed and not sys.is_finalizing():
            finalize((self._stage._lock,), _free_token, self._stage, entry)

    def __repr__(self) -> str:
        state = "closed" if self._entry.closed else "held"
        return f"<Ticket {self._entry.token!r} {state}>"


@final
class Director(Generic[T, R, B], metaclass=NoPublicConstructor, made_by="Stage.enter()"):
    """What a head function gets: the resource, the buffer, and `notify` for the others.

    Valid only while the head function runs; afterwards every method raises
    `Closed`. Update the buffer *before* notifying the token it is for.
    """

    __slots__ = ("_closed", "_entry", "_stage")
    _stage: Stage[T, R, B]
    _entry: _Entry
    _closed: bool

    @classmethod
    def _create(cls, stage: Stage[T, R, B], entry: _Entry) -> Director[T, R, B]:
        self: Director[T, R, B] = object.__new__(cls)
        self._stage = stage
        self._entry = entry
        self._closed = False
        return self

    @property
    def resource(self) -> R:
        """The stage's resource, which this head alone may read now."""
        if self._closed:
            raise Closed("this head has left the stage")
        return self._stage._resource

    @property
    def token(self) -> T:
        """The head's own token (it cannot notify itself: it returns its own events)."""
        return self._entry.token  # type: ignore[return-value]

    def buffer(self) -> AbstractContextManager[B]:
        """``with director.buffer() as buf:`` — the same as
        `Stage.buffer`."""
        if self._closed:
            raise Closed("this head has left the stage")
        return self._stage.buffer()

    def notify(self, token: T) -> bool:
        """Wake the holder of *token*, or mark its ticket so its next ``enter`` returns
        `Notified()` at once.

        Returns:
            ``True`` if a ticket holds *token*; ``False`` if none does (nothing happens, and
            a ticket taken later is not woken by this).

        Raises:
            ValueError: *token* is the head's own token.
            Closed: the head function has returned.
        """
        stage = self._stage
        waiter = None
        try:
            with stage._lock:
                if self._closed:
                    raise Closed("this head has left the stage")
                entry = stage._entries.get(token)
                if entry is None:
                    return False
                if entry is self._entry:
                    raise ValueError(
                        f"a head cannot notify its own token {token!r}: return the event instead"
                    )
                # No call from here to the end of the block (see `Stage._begin`).
                entry.notified = True
                if entry.state == PARKED:
                    waiter = entry.waiter
                    del stage._parked[entry]
                    entry.state = IDLE
                    entry.waiter = None
        finally:
            # Whoever took a waiter out of line owns its wake-up, interrupted or not.
            if waiter is not None:
                try:
                    wake(waiter)
                except BaseException:
                    wake(waiter)  # complete what an interrupt cut short (`_wake.deliver`)
                    raise
        return True

    def __repr__(self) -> str:
        state = "left" if self._closed else "heading"
        return f"<Director {self._entry.token!r} {state}>"


@final
class _BlockingStage(Generic[T, R, B]):
    """``stage.blocking``: enter the stage from a plain thread."""

    __slots__ = ("_stage",)

    def __init__(self, stage: Stage[T, R, B]) -> None:
        self._stage = stage

    def enter(
        self,
        ticket: Ticket[T],
        head: Callable[[Director[T, R, B]], Ret],
        timeout: float | None = None,
    ) -> Finished[Ret] | Notified | TimedOut:
        """Like `Stage.enter`, blocking the calling thread, with a
        plain ``def head(director) -> value`` (it reads the resource with blocking calls,
        with a timeout or a readiness check of its own).

        Raises:
            RuntimeError: called on a thread that runs an event loop.
            Closed: the ticket is closed.
            Exception: whatever the head function raised (the next waiter is promoted).
        """
        timeout = check_timeout(timeout)
        ensure_blocking_allowed("stage.blocking.enter()")
        stage = self._stage
        entry = stage._own(ticket, head)
        deadline = None if timeout is None else time.monotonic() + timeout
        # As in `Stage.enter`: whatever ends the call early — an interrupt (Ctrl-C) in any
        # instant from the first change to the entry until the head function runs — passes on
        # what the entry was given, and leaves it as a timeout would.
        refused = True
        director: Director[T, R, B] | None = None
        try:
            with stage._lock:
                stage._check(entry)
                refused = False  # no call since the check: only a refused enter skips this
                action, waiter = stage._begin(entry, timeout == 0, ThreadWaiter)
            while action == _PARK:
                assert isinstance(waiter, ThreadWaiter)
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                woken = waiter.wait(left)
                if not woken and stage._deregister(entry, waiter):
                    return TimedOut()
                expired = deadline is not None and time.monotonic() >= deadline
                with stage._lock:
                    action, waiter = stage._resume(entry, expired, ThreadWaiter)
            if action == _HEAD:
                director = Director._create(stage, entry)
            elif action == _HAND_ON:
                stage._abandon(entry)  # inside: an interrupt in it has it run again below
        except BaseException:
            if not refused:
                try:
                    stage._abandon(entry)
                except BaseException:
                    stage._abandon(entry)  # a second interrupt cut it short: once more
            raise
        if action == _NOTIFIED:
            return Notified()
        if action in (_HAND_ON, _TIMED_OUT):
            return TimedOut()
        assert director is not None
        try:
            value = head(director)
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()
                raise TypeError(
                    f"blocking.enter() needs a plain head function, but {head!r} returned "
                    "an awaitable; await stage.enter() for async functions"
                )
        finally:
            try:
                stage._end_head(director)
            except BaseException:
                stage._end_head(director)  # cut short by an interrupt at its start: once more
                raise
        return Finished(value)


def _free_token(stage: Stage[Any, Any, Any], entry: _Entry) -> None:
    """A collected ticket's finalizer work (`finalize`): free its token, unless it was
    closed meanwhile (or never held it)."""
    with stage._lock:
        if entry.closed or entry.state != IDLE or stage._entries.get(entry.token) is not entry:
            return
        del stage._entries[entry.token]
        entry.closed = True
