"""The request/reply channel (ump's Client/Server pair), written once.

Design note. This module is the channel's protocol — its queue, the hand-off to a parked
server, requeueing, withdrawal, reply/fail/close, `NoReply` on drop, and the blocking forms —
and the public classes around it. It is the only source of that protocol, and it runs two ways:

- as it is, as Python: the *pure* core (``asyncmp._channel_py``);
- compiled by Cython into ``asyncmp._channel_c``: the *compiled* core. ``_channel_c.pxd``
  augments this file with C types (the shared state and a request become extension types
  with C fields; the hot functions C functions) and takes the primitives — the running-loop
  look-up, the lock, the per-thread parker — from the hand-written ``asyncmp._speedups``.

The facade, `asyncmp._channel`, picks one (``ASYNCMP_NO_EXTENSIONS``); both are importable in
one process, which is how the tests compare them. The code below is therefore written for
both: plain Python, whose ``@cython.locals(...)`` decorators give Cython the C types of its
variables (and do nothing in Python), and where ``if not cython.compiled:`` marks the import
that only the pure core runs. (Annotations are for type checkers only: Cython is told to
ignore them, so that a public method checks its arguments the same way on both cores.)

The shape of a channel:

- **`ChannelState`**: what clients, weak clients and the server of one channel share; it holds
  none of them, so garbage collection of a handle is its close. Everything in it is guarded by
  its ``lock``, so any mix of threads and event loops may use one channel.
- **A request** is one `ReplyContext` (its fields are `_Request`), made by the client when it
  sends: it waits in the queue, is handed to the server, and answers the requester. Its
  ``_to`` is the requester: an ``asyncio.Future`` for ``await client.send()`` on asyncio — the
  hot path: the reply is the future's result (an error travels as a `Failure`), a requester
  that gives up is a cancelled future, nothing else is allocated and no lock is taken to
  answer —, a `_BlockingCall` for ``client.blocking.send``, or a `_ReplyCell` (an `OutcomeCell`)
  for the rest (trio, `PendingReply`).
- Requests reach the server **queued** (no server is parked: the request goes to the back of
  ``queue``) or **handed off** (a server is parked in ``server_waiters``: the request goes
  straight to it, already ACTIVE — one lock round trip fewer than "queue, wake, look").

Invariants (under ``state.lock`` unless said otherwise):

- ``server_waiters`` is non-empty only while ``queue`` holds no live request: a server parks
  only after finding the queue empty, and every later push hands off.
- A request's ``_to`` is cleared (set to None) by whoever settles it — the answer, or the
  server closing while it is queued — so it is settled exactly once. Its ``_phase`` is QUEUED
  until the server takes it (or it is handed off), then ACTIVE; only an ACTIVE request sends
  `NoReply` when closed or collected.
- Requests whose requester gave up stay in ``queue`` as tombstones (giving up takes no lock on
  the hot path): `take` skips them, `statistics` does not count them, and a full bounded
  channel purges them before it refuses a request.
- A request handed to a server that can no longer take it (cancelled meanwhile, the server
  closed, its loop closed before the hand-off ran) comes back through `requeue`, exactly once:
  a handed-off request is never lost.
- ``taken`` counts requests handed off or taken (under the lock); ``answered`` counts their
  answers lock-free (a `Counter` primitive), so that answering needs no lock; in flight =
  taken − answered.
- Once ``server_closed`` is set, ``queue`` is empty and stays so. ``stopped`` is set once the
  server takes no more requests (it closed, or it saw `ClientsDisappeared`: no strong client
  is left and none can come back); `push` refuses from then on.
- An answer from another thread to an asyncio requester waits in ``_in_flight`` until the
  requester's loop resolves the future; a requester cancelled meanwhile finds it there
  (`reclaim`). Whoever removes the entry owns the answer, and `settle` reports True exactly
  when it did not take it back.
- Parked servers woken with ``None`` (last client gone, server closed) look at the queue
  again; such wake-ups go to *every* parked server, so none is left behind.
- Locks are taken as ``lock.acquire()`` / ``try: … finally: lock.release()``, the acquire
  right before its ``try``: in the compiled core a typed C call, after which no Python code
  runs before the ``try``; in pure Python a ``Mutex.acquire`` that an interrupt cannot leave
  holding the lock (`asyncmp._lowlevel._primitives.Mutex`). Either way an interrupt cannot
  leave the lock held (docs/design.md, "Interrupts and finalizers").
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
import warnings
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

if TYPE_CHECKING:  # what type checkers read of it: typed, and the same with or without Cython
    from ._lowlevel import _nocython as cython
else:
    try:
        import cython
    except ImportError:  # a pure-Python install: Cython is only needed to build the compiled core
        from ._lowlevel import _nocython as cython

from ._closing import AsyncClosing
from ._errors import (
    AlreadyReplied,
    ClientsDisappeared,
    Closed,
    NoReply,
    ServerDisappeared,
    WouldBlock,
)
from ._loopwatch import stopped_loop_hint
from ._lowlevel._backend import anyio_cancel_pending
from ._lowlevel._check import check_int, check_timeout
from ._lowlevel._coalesce import post
from ._lowlevel._finalize import finalize
from ._lowlevel._format import seconds
from ._lowlevel._outcome import PENDING, Failure, OutcomeCell
from ._lowlevel._public import NoPublicConstructor
from ._lowlevel._wake import (
    deliver,
    new_async_waiter,
    park,
    trio_cancel_shielded_checkpoint,
    trio_checkpoint_if_cancelled,
    wake_all,
)
from ._pending import PendingReply
from ._statistics import ChannelStatistics

if not cython.compiled:
    # The primitives. The compiled core takes asyncmp._speedups' instead (_channel_c.pxd).
    from ._lowlevel._primitives import (
        LOST,
        Counter,
        Delegate,
        Mutex,
        Parker,
        check_signals,
        checkin,
        checkout,
        deque_append,
        deque_popleft,
        fut_done,
        fut_get_loop,
        fut_set_result,
        is_running_here,
        running_loop,
        thread_ident,
        trio_may_run,
    )

if TYPE_CHECKING:
    from collections.abc import Callable


__all__ = (
    "ChannelState",
    "Client",
    "ReplyContext",
    "Server",
    "WeakClient",
    "channel",
)

Req = TypeVar("Req")
Rep = TypeVar("Rep")

_Future = asyncio.Future
_BaseEventLoop = asyncio.BaseEventLoop
_monotonic = time.monotonic
_Failure = Failure  # the hot paths test ``type(value) is _Failure`` (a global, not an import)

# A request's ``_phase``.
QUEUED = 0
ACTIVE = 1

# Fault injection, for the test suite only: ``None`` in normal use. A test installs an object
# with ``before_push(state)`` (run first in every push) and ``before_wait()`` (run right
# before a blocking call parks its thread; what it raises is raised as if a signal handler
# had, while blocked). One mechanism for both cores: the compiled core tests a C pointer.
_hooks: Any = None


def _set_hooks(hooks: object) -> None:
    """Install (or, with ``None``, remove) the fault-injection hooks (tests only)."""
    global _hooks
    _hooks = hooks


def ensure_blocking_allowed(operation: str) -> None:
    """Raise ``RuntimeError`` if the calling thread runs an event loop: a blocking call there
    would freeze the very loop that has to deliver the wake-up."""
    if trio_may_run() or running_loop() is not None:
        raise RuntimeError(
            f"{operation} blocks the calling thread, but this thread runs an event loop; "
            "await the async form instead"
        )


class _BlockingCall:
    """The requester of ``client.blocking.send``: an outcome cell (PENDING, then DONE with the
    answer or GIVEN_UP) specialised to one waiting thread, whose `Parker` it wakes. Its state
    changes under the channel's lock."""

    __slots__ = ("lock", "parker", "state", "value")
    if TYPE_CHECKING:
        lock: Mutex
        parker: Parker
        state: int
        value: object

    def settle(self, value: object) -> bool:
        """Store the answer and wake the thread; ``False`` if it no longer waits."""
        self.lock.acquire()
        try:
            if self.state != PENDING:
                return False
            self.state = 1  # DONE
            self.value = value
        finally:
            self.lock.release()
        self.parker.wake(None)
        return True

    def leave(self) -> bool:
        """The thread stops waiting: give the call up (True) or, if the answer came first,
        take the wake-up it sent (False). Either way the parker is clean afterwards.

        It runs no Python code before it has given the call up (no value is made for a given
        up call: the thread that gave it up raises, nobody reads it), so that a signal
        handler cannot interrupt it half-way on the compiled core, where this is where an
        interrupted wait ends up."""
        self.lock.acquire()
        try:
            pending = self.state == PENDING
            if pending:
                self.state = 2  # GIVEN_UP
        finally:
            self.lock.release()
        if not pending:
            self.parker.consume()
        return pending


@cython.locals(call=_BlockingCall)
def _new_call(lock: Mutex, parker: Parker) -> _BlockingCall:
    """A PENDING `_BlockingCall` (made without a constructor call: the compiled core takes it
    from a free list)."""
    call = _BlockingCall.__new__(_BlockingCall)
    call.lock = lock
    call.parker = parker
    call.state = PENDING
    call.value = None
    return call


# -- answers ---------------------------------------------------------------------------------

# Answers from other threads on their way to an asyncio requester: future -> answer (see the
# module doc). Operations on a dict are atomic, so no lock is needed.
_in_flight: dict[asyncio.Future[Any], object] = {}


def _resolve(fut: asyncio.Future[Any], value: object) -> None:
    if not fut_done(fut):
        # Remove the entry first: a `settle` that sees the future done must find it gone.
        _in_flight.pop(fut, None)
        fut_set_result(fut, value)
    # Cancelled: the entry stays for the requester, whose give-up path removes it.


class _Resolve:
    """An answer on its way to an asyncio requester whose loop runs another thread: the
    callback that loop runs (once) to resolve the requester's future.

    If the loop drops it unrun — closed without running its queued callbacks, the
    requester's task never cancelled — nobody is left to take the answer, and its finalizer
    takes the entry out of ``_in_flight``: otherwise the entry would keep the future, and
    through it the task, its coroutine, the message and the answer, for good."""

    __slots__ = ("fut", "value")

    def __init__(self, fut: asyncio.Future[Any], value: object) -> None:
        self.fut: asyncio.Future[Any] | None = fut
        self.value = value

    def __call__(self) -> None:
        fut = self.fut
        if fut is not None:
            self.fut = None
            _resolve(fut, self.value)

    def __del__(self) -> None:
        fut = self.fut
        if fut is not None:
            self.fut = None
            finalize((), _in_flight.pop, fut, None)  # a dict takes no lock


def _settle_again(to: object, value: object) -> None:
    """An exception (a signal handler's: Ctrl-C) struck an answer after its context was
    marked answered, maybe before the requester had it: deliver it now. A delivery that went
    out already is not made twice (`settle` is idempotent: a settled requester refuses), so
    the requester gets the answer exactly once and is never left waiting for one that no
    context will send."""
    settle(to, value)


@cython.locals(call=_BlockingCall)
def settle(to: object, value: object) -> bool:
    """Deliver *value* (a reply or a `Failure`) to a requester. True if it still waited."""
    if type(to) is not _Future:
        if type(to) is _BlockingCall:
            call = to
            return call.settle(value)
        return to.settle(value)  # type: ignore[attr-defined,no-any-return]
    fut: asyncio.Future[Any] = to
    if fut_done(fut):  # cancelled: the requester gave up
        return False
    loop = fut_get_loop(fut)
    if is_running_here(loop):
        fut_set_result(fut, value)
        return True
    _in_flight[fut] = value
    try:
        if isinstance(loop, _BaseEventLoop) and loop._ready:  # type: ignore[attr-defined]
            # asyncio's loop has work ready, so it is awake: batch this wake-up with the
            # others that reach it meanwhile (`_coalesce`). A lone wake-up, and any to
            # uvloop (whose C call_soon_threadsafe coalesces its own), go straight.
            post(loop, _Resolve(fut, value))
        else:
            loop.call_soon_threadsafe(_Resolve(fut, value))
    except RuntimeError:  # its loop is closed: the requester is gone
        _in_flight.pop(fut, None)
        return False
    if fut_done(fut):
        # The requester gave up meanwhile (or the wake-up has run already): the answer went
        # to whoever removed the entry. Still there: nobody will take it.
        return _in_flight.pop(fut, LOST) is LOST
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
class _ReplyCell(OutcomeCell):
    """A requester that is neither an asyncio future nor a blocking call (trio, a
    `PendingReply`): an `OutcomeCell` under the channel's lock, set to the reply (or a
    `Failure`), given up when its requester gives up."""

    __slots__ = ()

    def _given_up_value(self) -> object:
        return _Failure(Closed("this request was cancelled"))

    # The protocol of `settle`: the answer arrives; True if the requester still waited.
    settle = OutcomeCell.set


# -- a request ---------------------------------------------------------------------------------


class _Request:
    """A request's fields (the compiled core makes them C fields) and its end when nobody
    answers it (`NoReply`): the queue holds these, and `ReplyContext` is their public face."""

    __slots__ = ("_channel", "_msg", "_phase", "_tid", "_to")
    if TYPE_CHECKING:
        _channel: ChannelState
        _msg: Any
        _phase: int
        _to: object  # the requester; None once answered (see the module doc)
        # The thread that ran the loop of an asyncio requester (``_to`` a Future) when it
        # sent, else 0: `reply` compares it with the answering thread's before anything else.
        _tid: int
    if not cython.compiled:
        __new__ = object.__new__  # what an extension type shows (`help()` is alike)

    # Here, not on ReplyContext: compiled, the extension type's C finalizer then serves
    # ReplyContext too (a Python ``__del__`` on the subclass would be looked up and called
    # through the interpreter for every request). See the end of the module for its face.
    def __del__(self) -> None:
        """Collected unanswered: the requester gets `NoReply`."""
        to = self._to
        if to is not None and not sys.is_finalizing():
            if type(to) is _Future:
                self._close(None)  # answering a future takes no lock
            else:
                finalize((self._channel.lock,), self._close, None)

    def _close(self, cause: BaseException | None) -> None:
        to = self._to
        if to is not None and self._phase == ACTIVE:
            self._to = None
            error = NoReply("the server closed the reply context without answering")
            error.__cause__ = cause
            failure = _Failure(error)
            try:
                self._channel.answered.add()
                settle(to, failure)
            except BaseException:
                _settle_again(to, failure)
                raise


@final
class ReplyContext(_Request, Generic[Rep], metaclass=NoPublicConstructor, made_by="Server.wait()"):
    """The server's handle for answering one request.

    Obtained with the message from [`Server.wait`][asyncmp.Server.wait]. Answering never
    blocks and works from any thread or event loop, also after the server has closed, so a
    handler may pass the context to a worker and answer later.

    Use it exactly once: [`reply`][asyncmp.ReplyContext.reply] or
    [`fail`][asyncmp.ReplyContext.fail]. Closing it unanswered — `close()`, leaving a
    `with rctx:` block, or letting it be garbage-collected — makes the client's `send`
    raise [`NoReply`][asyncmp.NoReply]. It cannot be copied or pickled: it answers one
    request, once.
    """

    __slots__ = ()

    @cython.locals(self=_Request)
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
        try:
            self._channel.answered.add()
            # `settle(to, value)`, with its hot case first: an asyncio requester whose loop
            # runs this thread (the ident test rejects other threads cheaply; the loop test
            # catches a loop that has moved to another thread since the request was sent).
            if self._tid == thread_ident():
                fut: asyncio.Future[Any] = to  # type: ignore[assignment]
                if is_running_here(fut_get_loop(fut)):
                    if fut_done(fut):
                        return False
                    fut_set_result(fut, value)  # a running loop is not closed
                    return True
            return settle(to, value)
        except BaseException:
            _settle_again(to, value)
            raise

    @cython.locals(self=_Request)
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
        failure = _Failure(exc)
        try:
            self._channel.answered.add()
            return settle(to, failure)
        except BaseException:
            _settle_again(to, failure)
            raise

    def close(self) -> None:
        """Close without answering: the requester gets `NoReply`. Idempotent."""
        self._close(None)

    @property
    @cython.locals(self=_Request)
    def answered(self) -> bool:
        """Whether `reply`, `fail` or `close` has been called."""
        return self._to is None

    def __enter__(self) -> ReplyContext[Rep]:
        """``with rctx:`` gives the context; leaving the block closes it if unanswered."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the context if it is unanswered: the requester gets `NoReply`, caused by
        the exception that ended the block, if one did."""
        self._close(exc)

    def __reduce__(self) -> str | tuple[Any, ...]:
        """Refused: a reply context answers one request, once (no copy, no pickle)."""
        # A copy would be a second way to answer one request (copy and pickle both ask here).
        raise TypeError("a ReplyContext cannot be copied or pickled: it answers one request")

    @cython.locals(self=_Request)
    def __repr__(self) -> str:
        """``<ReplyContext pending>`` or ``<ReplyContext answered>``."""
        return f"<ReplyContext {'answered' if self._to is None else 'pending'}>"


# ReplyContext as a plain ``type`` for Cython (its metaclass is a subclass): see new_request.
_REPLY_CONTEXT = cython.cast(type, ReplyContext)


@cython.locals(node=_Request, cls=type)
def new_request(state: ChannelState, msg: object, to: object, tid: int) -> ReplyContext[Any]:
    """A fresh, QUEUED request (the library's only way to make a ReplyContext)."""
    cls = _REPLY_CONTEXT
    node: ReplyContext[Any] = cls.__new__(
        cls
    )  # spelt so that Cython calls the type's tp_new slot directly
    node._channel = state
    node._msg = msg
    node._phase = QUEUED
    node._to = to
    node._tid = tid
    return node


@cython.locals(call=_BlockingCall)
def _withdrawn(node: _Request) -> bool:
    """Whether the requester of *node* gave up (a hint: it may give up right after)."""
    to = node._to
    if type(to) is _Future:
        fut: asyncio.Future[Any] = to
        return fut_done(fut)
    if type(to) is _BlockingCall:
        call = to
        return call.state != PENDING
    return to is None or to.state != PENDING  # type: ignore[attr-defined]


# -- the shared state ------------------------------------------------------------------------

Item = tuple[Any, ReplyContext[Any]]


class _HandOff:
    """A request on its way to a server task parked on another thread's asyncio loop: the
    callback that loop runs (once) to give it over.

    It runs at most once, so it may be scheduled again when an interrupt left it unknown
    whether scheduling took; and if the loop drops it unrun (closed first), its finalizer
    gives the request back to the channel, so a handed-off request is never lost."""

    __slots__ = ("fut", "node", "state")

    def __init__(self, fut: asyncio.Future[Any], node: _Request, state: ChannelState) -> None:
        self.fut = fut
        self.node: _Request | None = node
        self.state = state

    def __call__(self) -> None:
        node = self.node
        if node is None:
            return
        self.node = None
        if not self.fut.done():
            self.fut.set_result(node)
        else:  # the server left (cancelled) before it came
            self.state.requeue(node)

    def give_back(self) -> None:
        """It will not run (its loop is closed): the request goes back to the channel."""
        node = self.node
        if node is not None:
            self.node = None
            self.state.requeue(node)

    def __del__(self) -> None:
        # Dropped unrun: a loop closed without running its queued callbacks.
        node = self.node
        if node is not None and not sys.is_finalizing():
            self.node = None
            finalize((self.state.lock,), self.state.requeue, node)


def _warn_stopped_loop(node: _Request) -> None:
    """*node* was handed to a server task parked on a loop that does not run (a loop of an
    earlier run_until_complete, a pytest fixture's): say so now, not never. Under an error
    filter (``-W error``) the warning raises out of the send: its requester is given up
    first, since nobody will wait for the answer."""
    try:
        warnings.warn(
            "the server's event loop is not running, so this request waits until it runs "
            f"again; {stopped_loop_hint()}",
            RuntimeWarning,
            stacklevel=4,
        )
    except BaseException:
        to = node._to
        if type(to) is _Future:
            to.cancel()
        elif type(to) is _ReplyCell:
            to.give_up()
        raise  # (a blocking send gives its call up itself when push raises)


class _Once:
    """A callback that runs *action* the first time it is called, and never again: a
    hand-off that an interrupt made `deliver` again passes on what could not arrive once."""

    __slots__ = ("action",)

    def __init__(self, action: Callable[[Any], None]) -> None:
        self.action: Callable[[Any], None] | None = action

    def __call__(self, value: Any) -> None:
        action, self.action = self.action, None
        if action is not None:
            action(value)


def _deliver_surely(waiter: Any, value: object, undelivered: _Once) -> None:
    """`deliver`, made again if an interrupt (a signal handler's exception) cut it short — a
    delivery that went out is not repeated (see `_wake.deliver`), and *undelivered* runs at
    most once — then the interrupt is raised: a parked server is never left without the
    request it was given."""
    try:
        deliver(waiter, value, undelivered)
    except BaseException:
        deliver(waiter, value, undelivered)
        raise


def _wake_all_surely(waiters: list[Any]) -> None:
    """Wake every one of *waiters* ("look again"), even if an interrupt cuts the wake-ups
    short: they are made once more (a wake-up that went out is not repeated), then the
    interrupt is raised."""
    try:
        wake_all(waiters)
    except BaseException:
        wake_all(waiters)
        raise


def _oldest(waiters: dict[Any, Any]) -> Any:
    """The oldest parked waiter (one waits: check first), left in place. Lock held."""
    for key in waiters:
        return key
    raise KeyError("nobody waits")


def _pop_oldest(waiters: dict[Any, Any]) -> Any:
    """Take the oldest parked waiter out (one waits: check first). Lock held."""
    for key in waiters:
        return waiters.pop(key)
    raise KeyError("nobody waits")


class ChannelState:
    """One channel's shared state (see the module doc)."""

    __slots__ = (
        "answered",
        "cause",
        "clients",
        "lock",
        "max_queued",
        "queue",
        "reason",
        "server_closed",
        "server_waiters",
        "stopped",
        "taken",
        "weak_dropped",
        "weak_made",
    )

    def __init__(self, max_queued: int | None) -> None:
        self.lock = Mutex()
        self.queue: deque[_Request] = deque()
        self.max_queued = max_queued
        self.clients = 1
        # Weak clients made and dropped, counted lock-free (like ``answered``) so that a
        # WeakClient's finalizer takes no lock: existing = made − dropped.
        self.weak_made = Counter()
        self.weak_dropped = Counter()
        self.taken = 0
        self.answered = Counter()
        self.server_closed = False
        self.stopped = False
        # Why the server closed, when whoever closed it said (`Server._close_with`): what
        # every later `ServerDisappeared` says, and its __cause__.
        self.reason: str | None = None
        self.cause: BaseException | None = None
        # Parked servers, oldest first: each waiter (a Future, a Parker, a trio waiter) is
        # its own key.
        self.server_waiters: dict[Any, Any] = {}

    # -- the client side --------------------------------------------------------------------

    def push(self, node: _Request, nowait: bool, loop: object) -> None:
        """Hand *node* to a parked server or queue it; raise ServerDisappeared/WouldBlock.

        *loop* is the caller's running asyncio loop when it knows it (saves a look-up)."""
        if _hooks is not None:
            _hooks.before_push(self)
        waiter = None
        try:
            self.lock.acquire()
            try:
                if self.stopped:  # one test for both ends: on the hot path
                    if self.server_closed:
                        raise self.disappeared("the server is closed")
                    raise ServerDisappeared("the server has stopped: every client had closed")
                waiters = self.server_waiters
                if not waiters:
                    if (
                        nowait
                        and self.max_queued is not None
                        and len(self.queue) >= self.max_queued
                    ):
                        self._purge()
                        if len(self.queue) >= self.max_queued:
                            raise WouldBlock(
                                f"the channel is full ({self.max_queued} requests queued)"
                            )
                    deque_append(self.queue, node)
                    return
                # Look, then change, with no call among the changes (see the design notes):
                # an interrupt strikes before the parked server is taken, or after.
                oldest = _oldest(waiters)
                del waiters[oldest]
                waiter = oldest
                node._phase = ACTIVE
                self.taken += 1
            finally:
                self.lock.release()
        finally:
            # Taken, it is handed over, even if an interrupt struck as the lock went.
            if waiter is not None:
                self._hand_to(waiter, node, loop)

    def _hand_to(self, waiter: Any, node: _Request, loop: object) -> None:
        """Give *node* to *waiter*, a parked server that `push` took out: the common case
        first, a server task on the caller's own loop."""
        if type(waiter) is _Future:
            fut: asyncio.Future[Any] = waiter
            if fut_get_loop(fut) is (loop or running_loop()):
                if not fut_done(fut):
                    fut_set_result(fut, node)
                else:
                    self.requeue(node)
                return
        self.hand_over(waiter, node)

    @cython.locals(parker=Parker)
    def hand_over(self, waiter: Any, node: _Request) -> None:
        """Give *node* to *waiter*, a parked server taken out of ``server_waiters``."""
        if type(waiter) is Parker:
            parker = waiter
            parker.wake(node)
        elif type(waiter) is _Future:
            fut: asyncio.Future[Any] = waiter
            loop = fut_get_loop(fut)
            if is_running_here(loop):
                _HandOff(fut, node, self)()
            else:
                stopped = not loop.is_running() and not loop.is_closed()
                _schedule(loop, _HandOff(fut, node, self))
                if stopped:
                    _warn_stopped_loop(node)
        else:
            _deliver_surely(waiter, node, _Once(self.requeue))

    def _purge(self) -> None:
        """Drop the tombstones from the queue. Lock held."""
        self.queue = deque([node for node in self.queue if not _withdrawn(node)])

    # -- the server side --------------------------------------------------------------------

    @cython.locals(node=_Request)
    def take(self, ended: type[Exception]) -> Item | None:
        """The oldest live request, None if there is none now, or raise *ended* when none
        will ever come. Lock held."""
        queue = self.queue
        while queue:
            node = deque_popleft(queue)
            if not _withdrawn(node):
                node._phase = ACTIVE
                self.taken += 1
                return node._msg, node  # type: ignore[return-value]
        if self.server_closed:
            raise Closed("the server is closed")
        if not self.clients:
            self.stopped = True
            raise ended("every client has gone and the queue is drained")
        return None

    def handed(self, node: _Request) -> Item | None:
        """A parked server was handed *node*: the item, or None if its requester has gone
        meanwhile (skip it); raise Closed if the server closed meanwhile."""
        if self.server_closed or _withdrawn(node):
            self.requeue(node)
            if self.server_closed:
                raise Closed("the server is closed")
            return None
        return node._msg, node  # type: ignore[return-value]

    def requeue(self, node: _Request) -> None:
        """Take back a handed-off request its server could not take: drop it if its requester
        has gone, fail it if the server closed, else hand it to the next parked server or put
        it back at the head of the queue (it was the oldest)."""
        to = None
        next_server = None
        self.lock.acquire()
        try:
            if _withdrawn(node):
                node._to = None  # nothing to answer: not NoReply, not in flight
                self.taken -= 1
                return
            if self.server_closed:
                to = node._to
                node._to = None
                self.taken -= 1
            elif self.server_waiters:
                next_server = _pop_oldest(self.server_waiters)
            else:
                node._phase = QUEUED
                self.taken -= 1
                self.queue.appendleft(node)
                return
        finally:
            self.lock.release()
        if next_server is not None:
            self.hand_over(next_server, node)
        elif to is not None:
            settle(to, _Failure(self.disappeared("the server closed before taking it")))

    def disappeared(self, default: str) -> ServerDisappeared:
        """The error of a request that the closed server will not take: with the reason it
        closed for (`Server._close_with`) and its cause, where one was given."""
        if self.reason is None:
            return ServerDisappeared(default)
        error = ServerDisappeared(self.reason)
        error.__cause__ = self.cause
        return error

    def unpark(self, waiter: object) -> bool:
        """The ``deregister()`` of the wake protocol for a parked server: True if it was still
        parked (now it is not), False if a waker took it already."""
        self.lock.acquire()
        try:
            return self.server_waiters.pop(waiter, None) is not None
        finally:
            self.lock.release()

    def leave_parked(self, waiter: asyncio.Future[Any]) -> None:
        """A server task parked on *waiter* leaves (cancelled): still parked, it just goes; a
        request handed to it goes back (`requeue`). A hand-off still in flight from another
        thread gives its request back itself (`_HandOff`)."""
        if not self.unpark(waiter) and waiter.done() and not waiter.cancelled():
            node = waiter.result()
            if node is not None:
                self.requeue(node)

    async def receive_other(self, ended: type[Exception]) -> Item:
        """`Server.wait` where asyncio's futures are not the way to wait (trio)."""
        # trio's rule: a cancelled call does nothing, so check before taking a request.
        await trio_checkpoint_if_cancelled()
        self.lock.acquire()
        try:
            item = self.take(ended)
            if item is None:
                waiter = new_async_waiter()
                self.server_waiters[waiter] = waiter
        finally:
            self.lock.release()
        if item is not None:
            await trio_cancel_shielded_checkpoint()  # cannot lose what was taken
            return item
        while True:
            # trio refuses a cancellation once a waker took the waiter, so the request (or
            # the None of a "look again") always arrives.
            node = await park(waiter, functools.partial(self.unpark, waiter))
            if node is not None:
                item = self.handed(node)
                if item is not None:
                    return item
            self.lock.acquire()
            try:
                item = self.take(ended)
                if item is None:
                    waiter = new_async_waiter()
                    self.server_waiters[waiter] = waiter
            finally:
                self.lock.release()
            if item is not None:
                return item

    @cython.locals(parker=Parker)
    def receive_blocking(self, ended: type[Exception], timeout: float | None) -> Item:
        """`server.blocking.wait`, on this thread's parker. Leaving — a timeout, an interrupt
        — deregisters the parker, or takes the request a waker handed it meanwhile and passes
        it on (`requeue`): none is lost.

        Interrupts (signal handlers that raise, on the main thread) give up exactly as a
        timeout does: one pending when the call starts raises before anything is taken, one
        that comes while the thread waits leaves as above, and the handlers run once more
        before a taken request is returned — one that raises gives it back (`_returning`).
        Only a signal that arrives in the few instructions after that, as the call returns,
        is handled in the caller, with the request in its hands."""
        check_signals()
        deadline = 0.0
        left = -1.0
        if timeout is not None:
            deadline = _monotonic() + timeout
            left = timeout
        while True:
            # A parker per round: a woken one is not parked again (a waker that an interrupt
            # made deliver twice finds it woken, and does nothing).
            parker = checkout()
            self.lock.acquire()
            try:
                item = self.take(ended)
                if item is None:
                    parker.value = None
                    self.server_waiters[parker] = parker
            finally:
                self.lock.release()
            if item is not None:
                checkin(parker)
                return self._returning(item)
            if timeout is not None:
                left = max(0.0, deadline - _monotonic())
            try:
                if _hooks is not None:
                    _hooks.before_wait()
                woken = parker.wait(left)
            except BaseException:
                # Interrupted (Ctrl-C): leave as a timeout does; a request handed over
                # meanwhile goes on to the next wait.
                if not self.unpark(parker):
                    parker.consume()
                    node = parker.value
                    parker.value = None
                    if node is not None:
                        self.requeue(node)
                checkin(parker)
                raise
            if not woken:
                if self.unpark(parker):
                    checkin(parker)
                    raise TimeoutError(f"no request within {seconds(timeout)} seconds")
                parker.consume()  # a waker took it just now: its delivery is on its way
            node = parker.value
            parker.value = None
            if node is not None:
                try:
                    item = self.handed(node)
                except BaseException:
                    checkin(parker)
                    raise
                if item is not None:
                    checkin(parker)
                    return self._returning(item)
            checkin(parker)

    def _returning(self, item: Item) -> Item:
        """A blocking wait returns *item*, which it took: run the handlers of signals that
        arrived meanwhile first, and if one raises, give the request back."""
        try:
            check_signals()
        except BaseException:
            self.requeue(item[1])
            raise
        return item

    def try_take(self, ended: type[Exception]) -> Item | None:
        self.lock.acquire()
        try:
            return self.take(ended)
        finally:
            self.lock.release()

    # -- the ends of a channel ---------------------------------------------------------------

    def drop_client(self, client: object) -> None:
        """*client* (a `Client`) stops counting, once; the last one's going wakes every
        parked server.

        Marking the client closed and uncounting it is one change under the lock, with no
        call in between: an interrupt strikes before both or after both, so a client is
        never closed yet counted (the server would wait for ever) nor uncounted twice."""
        fields: Any = client  # (attribute access: not a hot path)
        self.lock.acquire()
        try:
            if fields._closed:
                return
            fields._closed = True
            self.clients -= 1
            if self.clients:
                return
            waiters = list(self.server_waiters)
            self.server_waiters.clear()
        finally:
            self.lock.release()
        # No request will come any more: every parked server looks again, and sees
        # ClientsDisappeared once the queue is drained.
        _wake_all_surely(waiters)

    def close_server(self, reason: str | None = None, cause: BaseException | None = None) -> None:
        """Close the server end: queued requests fail, later ones are refused (with *reason*
        and *cause*, if given, instead of a plain "closed"). The first close wins."""
        self.lock.acquire()
        try:
            if self.server_closed:
                return
            self.server_closed = self.stopped = True
            self.reason = reason
            self.cause = cause
            requesters = []
            for node in self.queue:
                if not _withdrawn(node):
                    requesters.append(node._to)
                    node._to = None
            self.queue.clear()
            waiters = list(self.server_waiters)
            self.server_waiters.clear()
        finally:
            self.lock.release()
        for to in requesters:
            settle(to, _Failure(self.disappeared("the server closed before taking it")))
        _wake_all_surely(waiters)

    def add_client(self, only_if_alive: bool, client: object) -> bool:
        """Count *client* (a `Client` made closed) as one more strong client, opening it;
        with *only_if_alive*, only while one is left and the server is open
        (`WeakClient.upgrade`). True if counted.

        As in `drop_client`, opening and counting are one change: a client made and then
        lost to an interrupt is either not counted, or open and counted (its finalizer
        uncounts it)."""
        fields: Any = client  # (attribute access: not a hot path)
        self.lock.acquire()
        try:
            if only_if_alive and (not self.clients or self.server_closed):
                return False
            fields._closed = False
            self.clients += 1
            return True
        finally:
            self.lock.release()

    def statistics(self, locked: bool = True) -> ChannelStatistics:
        """A snapshot of the channel (see `ChannelStatistics`). With *locked* false (for a
        repr, which must not wait for the lock) each number is read as it was at some
        instant, not all at the same one."""
        if not locked:
            return self._snapshot()
        self.lock.acquire()
        try:
            return self._snapshot()
        finally:
            self.lock.release()

    def _snapshot(self) -> ChannelStatistics:
        """The numbers of `statistics`, as they are now."""
        queue = list(self.queue)  # one C call: the queue as it is at one instant
        queued = sum([1 for node in queue if not _withdrawn(node)])
        if self.max_queued is not None:
            queued = min(queued, self.max_queued)
        in_flight = self.taken - self.answered.value()
        dropped = self.weak_dropped.value()  # first: made ≥ dropped, never negative
        return ChannelStatistics(
            queued=queued,
            max_queued=self.max_queued,
            clients=self.clients,
            weak_clients=self.weak_made.value() - dropped,
            in_flight=max(in_flight, 0),
            servers_waiting=len(self.server_waiters),
            closed=self.server_closed,
        )


def _schedule(loop: asyncio.AbstractEventLoop, hand_off: _HandOff) -> None:
    """Have *loop* (another thread's) run *hand_off*. Its loop closed: give the request back.

    An interrupt (a signal handler's exception) inside ``call_soon_threadsafe`` leaves it
    unknown whether the callback was queued and its loop woken: schedule it again — it runs
    once — holding further interrupts back until it is, then raise the first."""
    interrupt: BaseException | None = None
    while True:
        try:
            loop.call_soon_threadsafe(hand_off)
            break
        except RuntimeError:  # the loop is closed: the task that waited is gone
            hand_off.give_back()
            break
        except BaseException as exc:
            if interrupt is None:
                interrupt = exc
    if interrupt is not None:
        raise interrupt


# -- the public face -------------------------------------------------------------------------


def channel(*, max_queued: int | None = None) -> tuple[Server[Any, Any], Client[Any, Any]]:
    """Create a request/reply channel and return its two ends, ``(server, client)``.

    Both ends are generic in the request and reply types; for static typing, annotate them:

    ```python
    server: asyncmp.Server[Add, int]
    client: asyncmp.Client[Add, int]
    server, client = asyncmp.channel()
    ```

    Args:
        max_queued: ``None`` (the default) for an unbounded FIFO, like ump; or the number of
            requests that may wait for the server, beyond which `send` waits (cancellably)
            and `request` raises [`WouldBlock`][asyncmp.WouldBlock].
    """
    if max_queued is not None:
        max_queued = check_int(max_queued, "max_queued", minimum=1)
    state = ChannelState(max_queued)
    return Server._create(state), Client._create(state, True)


class _ClientFields:
    """A client's fields (C fields in the compiled core, read by `send` without a look-up)."""

    __slots__ = ("_channel", "_closed")
    if TYPE_CHECKING:
        _channel: ChannelState
        _closed: bool
    if not cython.compiled:
        __new__ = object.__new__  # what an extension type shows (`help()` is alike)


@final
class Client(
    _ClientFields,
    AsyncClosing,
    Generic[Req, Rep],
    metaclass=NoPublicConstructor,
    made_by="asyncmp.channel()",
):
    """The requesting end of a channel; send a message, get the server's reply.

    Any number of tasks and threads, on any event loops, may use one client at the same
    time, or [`clone`][asyncmp.Client.clone] it. The server sees `ClientsDisappeared` once
    every strong client is closed: call [`close`][asyncmp.Client.close], use `with` /
    `async with`, or let the client be garbage-collected.
    """

    __slots__ = ("__weakref__",)

    @classmethod
    def _create(cls, state: ChannelState, counted: bool = False) -> Client[Any, Any]:
        # Counted: the channel's first client, which ChannelState counts from the start.
        # Otherwise made closed; `add_client` opens it as it counts it.
        self: _ClientFields = _ClientFields.__new__(cls)
        self._channel = state
        self._closed = not counted
        return self  # type: ignore[return-value]

    async def send(self, msg: Req) -> Rep:
        """Send *msg* and wait for the reply.

        Raises:
            ServerDisappeared: the server is closed, or closed while the request was queued,
                or has stopped after every client (this one too) was closed.
            NoReply: the server closed the reply context without answering.
            Exception: whatever exception object the server passed to `rctx.fail()`.
            Closed: this client was closed.

        Cancellation: if the server has not picked the request up yet, it is withdrawn and
        the server never sees it; otherwise the server's `reply()` returns `False`. A reply
        already on its way wins over a cancellation under trio and inside anyio cancel
        scopes, and loses to a bare asyncio `Task.cancel()` (see the channels page).
        """
        # The steps of a send (`_send_start` …), as the pure core runs them; the compiled
        # core runs the same steps in a `StepOp` (see the end of this module).
        fut = _send_start(self, msg)
        if type(fut) is Delegate:
            return await fut.awaitable  # type: ignore[no-any-return]
        try:
            value = await fut
        except BaseException as exc:
            value = _send_abort(self, fut, exc)
            if value is LOST:
                raise
        return _send_finish(self, value)  # type: ignore[no-any-return]

    @cython.locals(self=_ClientFields, state=ChannelState)
    def request(self, msg: Req) -> PendingReply[Rep]:
        """Queue *msg* now, without waiting, and return a handle to collect the reply.

        Raises:
            ServerDisappeared: the server is closed, or has stopped after every client (this
                one too) was closed.
            WouldBlock: the channel is bounded and full.
            Closed: this client was closed.
        """
        if self._closed:
            raise Closed("this client is closed")
        state = self._channel
        cell = _ReplyCell(state.lock)
        state.push(new_request(state, msg, cell, 0), True, None)
        return PendingReply._create(cell)

    @property
    def blocking(self) -> _BlockingClient[Req, Rep]:
        """The blocking face, for plain threads: ``client.blocking.send(msg, timeout=None)``."""
        return _BlockingClient(self)

    @cython.locals(self=_ClientFields)
    def clone(self) -> Client[Req, Rep]:
        """A new, independent strong client of the same server."""
        if self._closed:
            raise Closed("cannot clone a closed client")
        client = Client._create(self._channel)
        self._channel.add_client(False, client)
        return client  # type: ignore[no-any-return]

    @cython.locals(self=_ClientFields)
    def weak(self) -> WeakClient[Req, Rep]:
        """A weak client: it can make a strong one while one exists, and keeps nothing alive."""
        if self._closed:
            raise Closed("cannot make a weak client from a closed client")
        return WeakClient._create(self._channel)

    @cython.locals(self=_ClientFields)
    def close(self) -> None:
        """Stop counting as a client of the server. Idempotent.

        Requests already sent are unaffected: their replies still arrive.
        """
        if not self._closed:
            self._channel.drop_client(self)

    @cython.locals(self=_ClientFields)
    def statistics(self) -> ChannelStatistics:
        """A snapshot of the channel this client sends on (see `Server.statistics`)."""
        return self._channel.statistics(True)

    @property
    @cython.locals(self=_ClientFields)
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._closed

    @cython.locals(self=_ClientFields, state=ChannelState)
    def __del__(self) -> None:
        """Collected open: counts as closed (see `close`), and warns `ResourceWarning`, as an
        unclosed file does (shown in Python's development mode): the server waits for the
        last client to go, and a client left to the garbage collector goes late."""
        if not self._closed and not sys.is_finalizing():
            text = (
                f"{self!r} was never closed; close it with client.close(), `with client:` or "
                "`async with client:`"
            )
            state = self._channel
            # First: the warning may raise (-W error), and the client must stop counting.
            finalize((state.lock,), state.drop_client, self)
            warnings.warn(text, ResourceWarning, stacklevel=1, source=self)

    @cython.locals(self=_ClientFields)
    def __repr__(self) -> str:
        """``<Client open>`` or ``<Client closed>``."""
        return f"<Client {'closed' if self._closed else 'open'}>"


@final
class _BlockingClient(Generic[Req, Rep]):
    """``client.blocking``: the same client, with calls that block the calling thread."""

    __slots__ = ("_client",)

    def __init__(self, client: Client[Req, Rep]) -> None:
        """The blocking face of *client* (what ``client.blocking`` gives)."""
        self._client = client

    @cython.locals(client=_ClientFields, state=ChannelState, parker=Parker, call=_BlockingCall)
    def send(self, msg: Req, timeout: float | None = None) -> Rep:
        """Send *msg* and block until the reply arrives.

        Raises:
            TimeoutError: no reply within *timeout* seconds. The request is withdrawn if the
                server has not picked it up, and otherwise the server's `reply()` returns
                `False`.
            RuntimeError: called on a thread that runs an event loop.
            ServerDisappeared, NoReply, Closed: as for [`Client.send`][asyncmp.Client.send].
        """
        wait_for = -1.0
        if timeout is not None:
            timeout = check_timeout(timeout)
            wait_for = timeout  # type: ignore[assignment]
        ensure_blocking_allowed("client.blocking.send()")
        # A signal that came before this call has its handler run now, before anything is
        # sent: compiled code would otherwise run it only as the call returns (the reply in
        # hand). One that comes while the thread waits gives the request up, as a timeout.
        check_signals()
        client = self._client
        if client._closed:
            raise Closed("this client is closed")
        state = client._channel
        parker = checkout()
        call = _new_call(state.lock, parker)
        try:
            state.push(new_request(state, msg, call, 0), False, None)
        except BaseException:
            call.leave()  # whatever happened, nobody waits for it
            checkin(parker)
            raise
        # Interrupted in the wait (Ctrl-C): the request is given up exactly as on a timeout,
        # or it would stay queued and be served.
        try:
            if _hooks is not None:
                _hooks.before_wait()
            woken = parker.wait(wait_for)
        except BaseException:
            call.leave()
            checkin(parker)
            raise
        # A timeout that can no longer leave lost a race with the wake-up: the reply is in.
        if not woken and call.leave():
            checkin(parker)
            raise TimeoutError(f"no reply within {seconds(timeout)} seconds")
        checkin(parker)
        value: Any = call.value
        if type(value) is _Failure:
            raise value.error
        return value  # type: ignore[no-any-return]


@final
class WeakClient(Generic[Req, Rep], metaclass=NoPublicConstructor, made_by="Client.weak()"):
    """A handle that can make a strong [`Client`][asyncmp.Client] but keeps no server alive.

    Give one to a server's own handler so that it can reach the server without keeping it
    running after every real client has gone.
    """

    __slots__ = ("__weakref__", "_channel")
    _channel: ChannelState

    @classmethod
    def _create(cls, state: ChannelState) -> WeakClient[Any, Any]:
        self: WeakClient[Any, Any] = object.__new__(cls)
        self._channel = state
        state.weak_made.add()
        return self

    @cython.locals(state=ChannelState)
    def upgrade(self) -> Client[Req, Rep] | None:
        """A new strong client, or ``None`` once no strong client remains or the server is
        closed."""
        state = self._channel
        client = Client._create(state)
        if not state.add_client(True, client):
            return None
        return client  # type: ignore[no-any-return]

    def __del__(self) -> None:
        """Collected: one weak client fewer (counted without a lock, so always at once)."""
        finalize((), self._channel.weak_dropped.add)

    def __repr__(self) -> str:
        """``<WeakClient>``."""
        return "<WeakClient>"


class _ServerFields:
    """A server's fields (C fields in the compiled core). `Server.wait` is written against
    these, so that the objects that share it — the server, its ``async for`` iterator, a
    dispatch loop's view — differ only in what they raise at the end (``_ended``) and in the
    event loop they are known to run on (``_loop``: saves a look-up per wait)."""

    __slots__ = ("_channel", "_ended", "_loop")
    if TYPE_CHECKING:
        _channel: ChannelState
        _ended: type[Exception]
        _loop: asyncio.AbstractEventLoop | None
    if not cython.compiled:
        __new__ = object.__new__  # what an extension type shows (`help()` is alike)


@final
class Server(
    _ServerFields,
    AsyncClosing,
    Generic[Req, Rep],
    metaclass=NoPublicConstructor,
    made_by="asyncmp.channel()",
):
    """The serving end of a channel: receives ``(msg, rctx)`` pairs in FIFO order.

    After the last strong client closes, the server still receives every request that was
    queued, then [`wait`][asyncmp.Server.wait] raises
    [`ClientsDisappeared`][asyncmp.ClientsDisappeared]; `async for` and
    `for … in server.blocking` end there.

    Closing the server (`close()`, `with`, or garbage collection) fails every queued
    request with [`ServerDisappeared`][asyncmp.ServerDisappeared]; reply contexts already
    taken are unaffected and may still be answered.
    """

    __slots__ = ("__weakref__",)

    @classmethod
    def _create(cls, state: ChannelState) -> Server[Any, Any]:
        self: _ServerFields = _ServerFields.__new__(cls)
        self._channel = state
        self._ended = ClientsDisappeared
        self._loop = None
        return self  # type: ignore[return-value]

    async def wait(self) -> tuple[Req, ReplyContext[Rep]]:
        """Wait for the next request: ``msg, rctx = await server.wait()``.

        Raises:
            ClientsDisappeared: every strong client is closed and the queue is drained.
            Closed: this server was closed.

        Cancellation loses nothing: a request is only taken from the queue by a `wait`
        that returns it.
        """
        # The steps of a wait (`_wait_start` …), as the pure core runs them; the compiled
        # core runs the same steps in a `StepOp` (see the end of this module).
        result = _wait_start(self, None)
        while type(result) is _Future:
            waiter = result
            try:
                got = await waiter
            except BaseException as exc:
                _wait_abort(self, waiter, exc)
                raise
            result = _wait_resume(self, got)
        if type(result) is Delegate:
            return await result.awaitable  # type: ignore[no-any-return]
        return result  # type: ignore[no-any-return]

    @cython.locals(self=_ServerFields)
    def try_pop(self) -> tuple[Req, ReplyContext[Rep]] | None:
        """The next request if one is queued, else ``None``.

        Raises:
            ClientsDisappeared: every strong client is closed and the queue is drained.
            Closed: this server was closed.
        """
        return self._channel.try_take(ClientsDisappeared)

    @property
    def blocking(self) -> _BlockingServer[Req, Rep]:
        """The blocking face, for plain threads: ``server.blocking.wait(timeout=None)``."""
        return _BlockingServer(self)

    @cython.locals(self=_ServerFields, state=ChannelState)
    def statistics(self) -> ChannelStatistics:
        """A snapshot of the channel: its queue and bound, clients, requests in flight, and
        the server waits parked for a request."""
        return self._channel.statistics(True)

    @cython.locals(self=_ServerFields)
    def close(self) -> None:
        """Fail every queued request with `ServerDisappeared` and refuse new ones. Idempotent."""
        self._channel.close_server()

    @cython.locals(self=_ServerFields)
    def _close_with(self, reason: str, cause: BaseException | None) -> None:
        """`close`, saying why: every `ServerDisappeared` the channel raises from now on says
        *reason*, with *cause* as its ``__cause__`` (a dispatch loop that stopped on an error)."""
        self._channel.close_server(reason, cause)

    @property
    @cython.locals(self=_ServerFields)
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._channel.server_closed

    def __aiter__(self) -> _ServerIterator[Req, Rep]:
        """``async for msg, rctx in server``: waits for each request in turn, and ends when
        every strong client is closed and the queue is drained."""
        return self._view(_ServerIterator, StopAsyncIteration, None)  # type: ignore[return-value]

    def _serving(self, loop: asyncio.AbstractEventLoop) -> _ServerLoop:
        """What a dispatch task serves with: `wait` on *loop*, the one it runs on for good."""
        return self._view(_ServerLoop, ClientsDisappeared, loop)  # type: ignore[return-value]

    if not TYPE_CHECKING:  # (type checkers keep rejecting `for … in server`)

        def __iter__(self) -> None:
            """Refused, saying what to write instead."""
            raise TypeError(
                "a Server is iterated with `async for msg, rctx in server` in async code, "
                "or `for msg, rctx in server.blocking` in a plain thread"
            )

    @cython.locals(self=_ServerFields, view=_ServerFields)
    def _view(self, cls: type[_ServerFields], ended: type[Exception], loop: Any) -> _ServerFields:
        """Another face of this server that runs `wait` raising *ended* at the end, on a loop
        known to be *loop* (None: look it up each time). It does not close the server."""
        view: _ServerFields = _ServerFields.__new__(cls)
        view._channel = self._channel
        view._ended = ended
        view._loop = loop
        return view

    @cython.locals(self=_ServerFields, state=ChannelState)
    def __del__(self) -> None:
        """Collected: the server closes (see `close`)."""
        if not sys.is_finalizing():
            state = self._channel
            finalize((state.lock,), state.close_server)

    def __repr__(self) -> str:
        """The server's state and `statistics`: ``<Server open [queued: 0, …]>`` (read
        without the channel's lock: a repr never waits)."""
        me: _ServerFields = self
        s = me._channel.statistics(False)
        return (
            f"<Server {'closed' if s.closed else 'open'} [queued: {s.queued}, "
            f"in flight: {s.in_flight} | clients: {s.clients}, weak: {s.weak_clients}]>"
        )


@final
class _ServerIterator(
    _ServerFields, Generic[Req, Rep], metaclass=NoPublicConstructor, made_by="Server.__aiter__()"
):
    """``async for msg, rctx in server``: `Server.wait`, ending with StopAsyncIteration."""

    __slots__ = ()

    def __aiter__(self) -> _ServerIterator[Req, Rep]:
        """The iterator itself."""
        return self

    # The very code of `Server.wait`, run on this object's fields: no extra frame per request.
    if TYPE_CHECKING:

        async def __anext__(self) -> tuple[Req, ReplyContext[Rep]]: ...

    else:
        __anext__ = Server.wait


@final
class _ServerLoop(_ServerFields, metaclass=NoPublicConstructor, made_by="Server._serving()"):
    """What a dispatch loop (`asyncmp.task`) serves with: `Server.wait` on the loop the task
    runs on for good, which it names once instead of each wait looking it up."""

    __slots__ = ()

    wait = Server.wait


@final
class _BlockingServer(Generic[Req, Rep]):
    """``server.blocking``: wait for requests from a plain thread.

    Iterating it, ``for msg, rctx in server.blocking:``, waits for each request in turn and
    ends when every strong client is closed and the queue is drained.
    """

    __slots__ = ("_server",)

    def __init__(self, server: Server[Req, Rep]) -> None:
        """The blocking face of *server* (what ``server.blocking`` gives)."""
        self._server = server

    @cython.locals(server=_ServerFields)
    def wait(self, timeout: float | None = None) -> tuple[Req, ReplyContext[Rep]]:
        """Block until the next request arrives.

        Raises:
            TimeoutError: nothing arrived within *timeout* seconds.
            ClientsDisappeared: every strong client is closed and the queue is drained.
            Closed: this server was closed.
            RuntimeError: called on a thread that runs an event loop.
        """
        if timeout is not None:
            timeout = check_timeout(timeout)
        ensure_blocking_allowed("server.blocking.wait()")
        server = self._server
        return server._channel.receive_blocking(ClientsDisappeared, timeout)

    def __iter__(self) -> _BlockingServer[Req, Rep]:
        """The iterator itself: ``for msg, rctx in server.blocking``."""
        return self

    def __next__(self) -> tuple[Req, ReplyContext[Rep]]:
        """The next request (waiting for it); the iteration ends when every strong client
        is closed and the queue is drained."""
        try:
            return self.wait()
        except ClientsDisappeared:
            raise StopIteration from None


# -- the steps of the async operations ----------------------------------------------------
#
# A send and a wait are sequences of steps: the first returns the future to wait for (or a
# `Delegate` to another awaitable, or the result itself), the next takes that future's
# result, and an abort step cleans up when the waiter leaves. The pure core runs them in the
# ``async def`` of `Client.send` and `Server.wait`; the compiled core in the awaitable shell
# ``asyncmp._speedups.StepOp`` (no coroutine per request). Both run exactly these.


@cython.locals(state=ChannelState)
def _send_start(client: _ClientFields, msg: object) -> Any:
    """A send's first step: push the request, return the future its reply resolves."""
    if client._closed:
        raise Closed("this client is closed")
    state = client._channel
    loop = None if trio_may_run() else running_loop()
    if loop is None:  # trio (or no asyncio loop): its own way of waiting
        return Delegate(_send_other(state, msg))
    # asyncio: the hot path the benchmarks measure. No reference to the request is kept:
    # the server's ReplyContext must be collectable (-> NoReply) the moment it is dropped.
    fut: asyncio.Future[Any] = _Future(loop=loop)
    state.push(new_request(state, msg, fut, thread_ident()), False, loop)
    return fut


def _send_finish(client: Any, value: Any) -> Any:
    """A send's last step: the reply, or raise the error it carries."""
    if type(value) is _Failure:
        raise value.error
    return value


def _send_abort(client: Any, fut: Any, exc: BaseException) -> Any:
    """A send leaves by *exc* while it waits: a cancelled future is how the server learns
    that the request was withdrawn (still queued) or orphaned (picked up); Task.cancel has
    usually cancelled it already, this covers every other way out. What to return instead
    (`reclaim`), or LOST."""
    try:
        fut.cancel()
    except RuntimeError:
        # Its loop is closed (the send is being collected): the future is cancelled all the
        # same, only its callbacks could not be scheduled.
        pass
    return reclaim(fut, exc)


async def _send_other(state: ChannelState, msg: object) -> Any:
    """A send where asyncio's futures are not the way to wait (trio): a `_ReplyCell`."""
    waiter = new_async_waiter()
    cell = _ReplyCell(state.lock, waiter)
    state.push(new_request(state, msg, cell, 0), False, None)
    await cell.park_async(waiter, give_up=True)
    return cell.result()


@cython.locals(state=ChannelState, node=_Request)
def _wait_start(server: _ServerFields, _unused: object) -> Any:
    """A wait's first step: the next request, or the future a request will be handed to."""
    state = server._channel
    loop = server._loop
    if loop is None and not trio_may_run():
        loop = running_loop()
    if loop is None:  # trio (or no asyncio loop)
        return Delegate(state.receive_other(server._ended))
    state.lock.acquire()
    try:
        queue = state.queue
        if queue:
            # A request is queued (the hot path under load): `take`, inlined.
            node = queue[0]
            to = node._to
            if type(to) is _Future and not fut_done(to):
                deque_popleft(queue)
                node._phase = ACTIVE
                state.taken += 1
                return node._msg, node
            item = state.take(server._ended)
        elif state.server_closed or not state.clients:
            item = state.take(server._ended)
        else:
            item = None  # nothing queued and nothing ended: park (the hot path)
        if item is not None:
            return item
        waiter: asyncio.Future[Any] = _Future(loop=loop)
        state.server_waiters[waiter] = waiter
        return waiter
    finally:
        state.lock.release()


@cython.locals(state=ChannelState, node=_Request)
def _wait_resume(server: _ServerFields, got: Any) -> Any:
    """A wait's next step, with what its future delivered: a request handed over (or None:
    look again). The request, or a new future to wait for."""
    state = server._channel
    if got is not None:
        node = got
        # The hot path: handed a live request by an asyncio client.
        if not state.server_closed:
            to = node._to
            if type(to) is _Future and not fut_done(to):
                return node._msg, node
        item = state.handed(node)
        if item is not None:
            return item
    state.lock.acquire()
    try:
        item = state.take(server._ended)
        if item is not None:
            return item
        waiter: asyncio.Future[Any] = _Future(loop=server._loop or running_loop())
        state.server_waiters[waiter] = waiter
        return waiter
    finally:
        state.lock.release()


def _wait_abort(server: _ServerFields, waiter: Any, exc: BaseException) -> Any:
    """A wait leaves (cancelled) while parked: still parked, it just goes; a request handed
    to it goes back (`ChannelState.leave_parked`). Nothing to return instead."""
    server._channel.leave_parked(waiter)
    return LOST


# The compiled core runs `send` and `wait` in the awaitable shell of asyncmp._speedups
# (`StepOp`) instead of a coroutine: the same steps, with the face of the ``async def`` above
# (its code object, so `inspect` sees a coroutine function, its signature and docstring).
# (`new_op`, `step_fn`, `abort_fn` and `_set_code` come from _channel_c.pxd: this block runs
# only compiled, and type checkers and linters are told so line by line.)
if cython.compiled:

    def _send_op(self: Client[Any, Any], msg: object) -> Any:
        return new_op(  # type: ignore[name-defined]  # noqa: F821 (asyncmp._speedups')
            self,
            msg,
            cython.cast(step_fn, cython.address(_send_start)),  # type: ignore[name-defined]  # noqa: F821
            cython.cast(step_fn, cython.address(_send_finish)),  # type: ignore[name-defined]  # noqa: F821
            cython.cast(abort_fn, cython.address(_send_abort)),  # type: ignore[name-defined]  # noqa: F821
            False,
            "Client.send",
        )

    def _wait_op(self: Server[Any, Any]) -> Any:
        return new_op(  # type: ignore[name-defined]  # noqa: F821 (asyncmp._speedups')
            self,
            None,
            cython.cast(step_fn, cython.address(_wait_start)),  # type: ignore[name-defined]  # noqa: F821
            cython.cast(step_fn, cython.address(_wait_resume)),  # type: ignore[name-defined]  # noqa: F821
            cython.cast(abort_fn, cython.address(_wait_abort)),  # type: ignore[name-defined]  # noqa: F821
            True,
            "Server.wait",
        )

    def _wears(function: Any, face: Any) -> Any:
        for attr in ("__name__", "__qualname__", "__doc__", "__module__", "__annotations__"):
            setattr(function, attr, getattr(face, attr))
        _set_code(function, face.__code__)  # type: ignore[name-defined]  # noqa: F821
        return function

    Client.send = _wears(_send_op, Client.send)
    Server.wait = _wears(_wait_op, Server.wait)
    _ServerIterator.__anext__ = Server.wait
    _ServerLoop.wait = Server.wait


# Both cores name the same modules as the home of what they define here, so that they look
# the same to `help()`, `inspect` and tracebacks: ``asyncmp`` for the public names (as
# asyncmp's own ``__init__`` would), the facade ``asyncmp._channel`` for the rest and for the
# methods. (The compiled core's extension types, all private, keep their own names.)
_PUBLIC = ("Client", "ReplyContext", "Server", "WeakClient", "channel")


def _name_homes() -> None:
    for name, obj in list(globals().items()):
        if getattr(obj, "__module__", None) != __name__:
            continue
        home = "asyncmp" if name in _PUBLIC else "asyncmp._channel"
        members = list(vars(obj).values()) if isinstance(obj, type) else []
        for member in [obj, *members]:
            for function in (
                member,
                getattr(member, "fget", None),
                getattr(member, "__func__", None),
            ):
                if getattr(function, "__module__", None) == __name__:
                    try:
                        function.__module__ = home if function is obj else "asyncmp._channel"
                    except (AttributeError, TypeError):  # an extension type's
                        pass


if cython.compiled:
    # `_Request.__del__` is the extension type's C finalizer, which `inspect` and `help()`
    # see as a slot wrapper without a signature: they are shown this function in its place
    # (put in the type's dict only, so the C slot stays what runs when one is collected;
    # called, it runs that slot, which reports an error as unraisable).
    def _request_del(self) -> None:  # type: ignore[no-untyped-def]
        _run_finalizer(self)  # type: ignore[name-defined]  # noqa: F821

    _request_del.__name__ = "__del__"
    _request_del.__qualname__ = "_Request.__del__"
    _request_del.__doc__ = _Request.__del__.__doc__
    _save_finalizer(_Request)  # type: ignore[name-defined]  # noqa: F821
    _show_in_type(_Request, "__del__", _request_del)  # type: ignore[name-defined]  # noqa: F821
    del _request_del
    # An answered ReplyContext is freed without its finalizer (see _channel_c.pxd).
    _free_answered_quickly(ReplyContext, _Request)  # type: ignore[name-defined]  # noqa: F821
_name_homes()
if not cython.compiled:
    # The field classes' annotations are for type checkers; an extension type has none.
    for _fields in (_Request, _ClientFields, _ServerFields):
        del _fields.__annotations__
    del _fields
if cython.compiled:
    # An extension type says its module through its C name: the facade's, as above.
    for _type in (
        _BlockingCall,
        _Request,
        _HandOff,
        _Resolve,
        ChannelState,
        _ClientFields,
        _ServerFields,
    ):
        _set_type_module(_type, "asyncmp._channel")  # type: ignore[name-defined]  # noqa: F821
    del _type
