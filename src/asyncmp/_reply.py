"""One request's life: the server's ReplyContext (which is also what the queue holds) and
the requester's side — a bare asyncio Future, or a `_Ticket`.

Design note. A request is one `ReplyContext`, made by the client when it sends: it waits in
the channel's queue, is handed to the server, and answers the requester. Its ``_to`` is the
requester:

- an ``asyncio.Future`` for ``await client.send()`` on asyncio/uvloop — the hot path. The
  reply is the future's result (an error travels wrapped in a `Failure`); a requester that
  gives up is a cancelled future, which `Task.cancel` produces by itself. Nothing else is
  allocated and no lock is taken to answer;
- a `_Ticket` for every other requester (trio, threads, `PendingReply`): an `OutcomeCell`
  (the one behind every pending result) under the channel's lock.

Invariants:
- ``_to`` is cleared (set to None) by whoever settles the request — the answer, or the
  server closing while it is queued — so it is settled exactly once.
- ``_state`` is QUEUED until the server takes the context (or it is handed to a parked
  server), then ACTIVE. Only an ACTIVE context sends `NoReply` when closed or collected; a
  QUEUED one whose requester gave up is a tombstone that the server skips.
- The outcome is stored (future result, or the ticket's, under the lock) before the
  requester is woken, so the woken side reads it without the lock.
- An answer from another thread to an asyncio requester waits in ``_in_flight`` until the
  requester's loop resolves the future; a requester cancelled meanwhile finds it there
  (`reclaim`). Whoever removes the entry owns the answer: the wake-up that resolves the
  future, the requester giving up, or `settle` taking it back — and `settle` reports True
  exactly when it did not take it back. (A loop closed while the wake-up is still queued
  and its requester still waits leaves the entry behind, with the task that loop left
  pending for ever anyway.)
"""

from __future__ import annotations

import asyncio
import sys
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

from ._cores import load_speedups
from ._errors import AlreadyReplied, Closed, NoReply
from ._lowlevel._backend import anyio_cancel_pending, get_running_loop
from ._lowlevel._finalize import finalize
from ._lowlevel._outcome import DONE, GIVEN_UP, PENDING, Failure, OutcomeCell
from ._lowlevel._public import NoPublicConstructor
from ._lowlevel._wake import check_timeout, ensure_blocking_allowed

_Future = asyncio.Future
_BaseEventLoop = asyncio.BaseEventLoop
_get_ident = threading.get_ident

if TYPE_CHECKING:
    from collections.abc import Generator

    from ._channel_core import ChannelCore

__all__ = ("PendingReply", "ReplyContext")

Rep = TypeVar("Rep")

_new_object = object.__new__

# ReplyContext._state
QUEUED: Final = 0
ACTIVE: Final = 1

_Failure = Failure  # the hot paths test ``type(value) is _Failure`` (a global, not an import)


def outcome(value: Any) -> Any:
    """Unwrap what a requester received: return the reply or raise the error."""
    if type(value) is _Failure:
        raise value.error
    return value


# Answers from other threads on their way to an asyncio requester: future -> answer (see
# the module doc). Operations on a dict are atomic, so no lock is needed.
_in_flight: dict[asyncio.Future[Any], object] = {}
# What `reclaim` returns when no answer is there for the requester.
LOST: Final = object()


def _resolve(fut: asyncio.Future[Any], value: object) -> None:
    if not fut.done():
        # Remove the entry first: a `settle` that sees the future done must find it gone.
        _in_flight.pop(fut, None)
        fut.set_result(value)
    # Cancelled: the entry stays for the requester, whose give-up path removes it.


def settle(to: asyncio.Future[Any] | _Ticket, value: object) -> bool:
    """Deliver *value* (a reply or a `_Failure`) to a requester. True if it still waited."""
    if type(to) is not _Future:
        return to.settle(value)  # type: ignore[union-attr]
    loop = to.get_loop()
    if to.done():  # cancelled: the requester gave up
        return False
    if loop is get_running_loop():
        to.set_result(value)
        return True
    _in_flight[to] = value
    try:
        loop.call_soon_threadsafe(_resolve, to, value)
    except RuntimeError:  # its loop is closed: the requester is gone
        _in_flight.pop(to, None)
        return False
    if to.done():
        # The requester gave up meanwhile (or the wake-up has run already): the answer went
        # to whoever removed the entry. Still there: nobody will take it.
        return _in_flight.pop(to, LOST) is LOST
    return True


def reclaim(fut: asyncio.Future[Any], exc: BaseException) -> object:
    """An asyncio requester waiting on *fut* is leaving by *exc*: the answer it should
    return instead, or `LOST`.

    Call after *fut* is cancelled. An answer from another thread may be on its way (see
    `settle`, which has reported it delivered); the requester takes it back here. It wins
    over the cancellation only where the cancellation will come again: inside a cancelled
    anyio cancel scope, which re-cancels the task at its next ``await`` for as long as the
    scope is cancelled — trio's rule, where a cancellation that finds the answer on its way
    is refused and delivered at the next checkpoint. No ``Task.uncancel()`` here: anyio
    takes back the cancellations it made when the scope exits. A bare ``Task.cancel()`` is
    delivered once, so it wins and the answer is dropped. (A bare cancel that lands in the
    same instant as a cancelled scope's cannot be told apart here. It still takes effect if
    the task awaits again inside the scope: anyio sees the extra count in
    ``Task.cancelling()`` and lets that cancellation propagate out of the scope.)
    """
    value = _in_flight.pop(fut, LOST)
    if value is LOST or not isinstance(exc, asyncio.CancelledError):
        return LOST
    return value if anyio_cancel_pending() else LOST


@final
class _Ticket(OutcomeCell):
    """A requester that is not a bare asyncio future: an `OutcomeCell` under the channel's
    lock, set to the reply (or a `Failure`), given up when its requester gives up."""

    __slots__ = ()

    def _given_up_value(self) -> object:
        return _Failure(Closed("this request was cancelled"))

    # The protocol of `settle`: the answer arrives; True if the requester still waited.
    settle = OutcomeCell.set


def new_request(
    core: ChannelCore, msg: object, to: asyncio.Future[Any] | _Ticket
) -> ReplyContext[Any]:
    """A fresh, QUEUED request (the library's only way to make a ReplyContext)."""
    node: ReplyContext[Any] = _new_object(ReplyContext)
    node._core = core
    node._msg = msg
    node._state = QUEUED
    node._to = to
    node._tid = 0
    return node


@final
class ReplyContext(Generic[Rep], metaclass=NoPublicConstructor, made_by="Server.wait()"):
    """The server's handle for answering one request.

    Obtained with the message from [`Server.wait`][asyncmp.Server.wait]. Answering never
    blocks and works from any thread or event loop, also after the server has closed, so a
    handler may pass the context to a worker and answer later.

    Use it exactly once: [`reply`][asyncmp.ReplyContext.reply] or
    [`fail`][asyncmp.ReplyContext.fail]. Closing it unanswered — `close()`, leaving a
    `with rctx:` block, or letting it be garbage-collected — makes the client's `send`
    raise [`NoReply`][asyncmp.NoReply].
    """

    __slots__ = ("_core", "_msg", "_state", "_tid", "_to")
    _core: ChannelCore
    _msg: Any
    _state: int
    _to: asyncio.Future[Any] | _Ticket | None
    # The thread that ran the loop of an asyncio requester (``_to`` a Future) when it sent,
    # else 0. Comparing thread idents lets `reply` skip asyncio.get_running_loop() — a
    # getpid() system call on CPython 3.11 — for every answer from another thread.
    _tid: int

    def reply(self, value: Rep) -> bool:
        """Send *value* to the requester.

        Returns:
            ``True`` if delivered, ``False`` if the requester has gone (cancelled, timed out
            or dropped its pending reply — ump's `OriginDisappeared`).

        Raises:
            AlreadyReplied: this context was already answered or closed.
        """
        to = self._to
        if to is None:
            raise AlreadyReplied("cannot reply(): this reply context was already answered")
        self._to = None
        next(self._core.answered)
        # `settle(to, value)`, inlined for an asyncio requester whose loop runs this thread:
        # the hot path. The ident test is cheap and rejects other threads; the loop test
        # catches a loop that has moved to another thread since the request was sent
        # (resolving its future here would not wake it). asyncio's own loops record the
        # thread that runs them; for others (uvloop) it costs asyncio._get_running_loop(), a
        # getpid() system call on CPython 3.11 (about 150 ns).
        tid = self._tid
        if tid == _get_ident():
            loop = to.get_loop()  # type: ignore[union-attr]
            if (
                loop._thread_id == tid  # type: ignore[attr-defined]
                if isinstance(loop, _BaseEventLoop)
                else loop is get_running_loop()
            ):
                if to.done():
                    return False
                to.set_result(value)  # type: ignore[union-attr]  # a running loop is not closed
                return True
        return settle(to, value)

    def fail(self, exc: BaseException) -> bool:
        """Make the requester's `send` raise *exc* — the very object, so `except` clauses
        written for its type work.

        Returns:
            ``True`` if delivered, ``False`` if the requester has gone.

        Raises:
            TypeError: *exc* is not an exception instance.
            AlreadyReplied: this context was already answered or closed.
        """
        if not isinstance(exc, BaseException):
            raise TypeError(f"fail() takes an exception instance, not {exc!r}")
        to = self._to
        if to is None:
            raise AlreadyReplied("cannot fail(): this reply context was already answered")
        self._to = None
        next(self._core.answered)
        return settle(to, _Failure(exc))

    def close(self) -> None:
        """Close without answering: the requester gets `NoReply`. Idempotent."""
        self._close(None)

    def _close(self, cause: BaseException | None) -> None:
        to = self._to
        if to is not None and self._state == ACTIVE:
            self._to = None
            next(self._core.answered)
            error = NoReply("the server closed the reply context without answering")
            error.__cause__ = cause
            settle(to, _Failure(error))

    @property
    def answered(self) -> bool:
        """Whether `reply`, `fail` or `close` has been called."""
        return self._to is None

    def __enter__(self) -> ReplyContext[Rep]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close(exc)

    def __del__(self) -> None:
        to = self._to
        if to is not None and not sys.is_finalizing():
            if type(to) is _Future:
                self._close(None)  # answering a future takes no lock
            else:
                finalize((self._core.lock,), self._close, None)

    def __repr__(self) -> str:
        return f"<ReplyContext {'answered' if self._to is None else 'pending'}>"


@final
class PendingReply(Generic[Rep], metaclass=NoPublicConstructor, made_by="Client.request()"):
    """A request that has been queued and whose reply will be collected later.

    Returned by [`Client.request`][asyncmp.Client.request] (ump's `req_async` /
    `WaitReply`). Collect the reply once: `await pending` in a task or
    `pending.blocking.wait(timeout=None)` in a thread.

    Giving up — `pending.cancel()`, cancelling the task that awaits it, a blocking wait
    timing out, or dropping the object — withdraws the request if the server has not picked
    it up yet, and otherwise makes the server's `reply()` return `False`.
    """

    __slots__ = ("__weakref__", "_ticket")
    _ticket: OutcomeCell  # a _Ticket, or a request of another transport (asyncmp.nats)

    @classmethod
    def _create(cls, ticket: OutcomeCell) -> PendingReply[Any]:
        self: PendingReply[Any] = _new_object(cls)
        self._ticket = ticket
        return self

    def __await__(self) -> Generator[Any, None, Rep]:
        ticket = self._ticket
        yield from ticket.wait(give_up=True).__await__()
        result: Rep = ticket.result()
        return result

    def done(self) -> bool:
        """Whether the outcome has arrived (or the request was given up)."""
        return self._ticket.state != PENDING

    def cancel(self) -> bool:
        """Give up on the reply. Returns ``True`` if the request had not been answered."""
        return self._ticket.give_up()

    @property
    def blocking(self) -> _BlockingPendingReply[Rep]:
        """The blocking face, for plain threads."""
        # The view holds the PendingReply itself, so that
        # `client.request(x).blocking.wait()` keeps the request alive while it waits.
        return _BlockingPendingReply(self)

    def __del__(self) -> None:
        ticket = self._ticket
        if ticket.state == PENDING and not sys.is_finalizing():
            finalize((ticket.lock,), ticket.give_up)

    def __repr__(self) -> str:
        state = {PENDING: "waiting", DONE: "done", GIVEN_UP: "given up"}[self._ticket.state]
        return f"<PendingReply {state}>"


@final
class _BlockingPendingReply(Generic[Rep]):
    """``pending.blocking``: wait for the reply from a plain thread."""

    __slots__ = ("_pending",)

    def __init__(self, pending: PendingReply[Rep]) -> None:
        self._pending = pending

    def wait(self, timeout: float | None = None) -> Rep:
        """Block until the reply arrives and return it (or raise the error).

        Raises:
            TimeoutError: no reply within *timeout* seconds; the request is given up.
            RuntimeError: called on a thread that runs an event loop.
        """
        timeout = check_timeout(timeout)
        ensure_blocking_allowed("waiting for a reply")
        ticket = self._pending._ticket
        if not ticket.wait_blocking(timeout, give_up=True):
            raise TimeoutError(f"no reply within {timeout} seconds")
        result: Rep = ticket.result()
        return result


# The compiled core, where it runs, brings its own requests (see asyncmp._cores).
_speedups = load_speedups()
if _speedups is not None:
    ReplyContext = _speedups.ReplyContext  # type: ignore[misc]
    new_request = _speedups.new_request
    settle = _speedups.settle_py
