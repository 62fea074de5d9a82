"""One request's life: the node the queue holds, the server's ReplyContext, the client's
PendingReply.

Design note. Every request is a `_Request` node with a small state machine, guarded by the
lock of the channel it was sent on (``node.core.lock``)::

    QUEUED ──pop──▶ ACTIVE ──reply/fail/close──▶ DONE
       │               │
       └─requester gives up (cancel, timeout, PendingReply dropped)──▶ GONE
    QUEUED ──server closes──▶ DONE (ServerDisappeared)

Invariants:
- A node becomes DONE or GONE once. ``node.waiter`` is the requester's registration: whoever
  takes it (sets it to None) under the lock owns the one wake-up of that waiter.
- A GONE node that is still in the queue is a tombstone: the server skips it on pop and it
  no longer counts in ``core.live``. A GONE node that was ACTIVE makes ``reply()`` return
  False (ump's OriginDisappeared).
- The outcome is stored on the node (``value`` or ``error``) before the waiter is woken, so
  the woken side reads it without the lock.
"""

from __future__ import annotations

import functools
import sys
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

from ._errors import AlreadyReplied, Closed, NoReply
from ._wait import (
    ThreadWaiter,
    Waiter,
    _Future,
    _get_running_loop,
    check_timeout,
    ensure_blocking_allowed,
    new_async_waiter,
    park,
    trio_checkpoint,
    wake,
)

if TYPE_CHECKING:
    from collections.abc import Generator

    from ._core import _Core

__all__ = ("PendingReply", "ReplyContext")

Rep = TypeVar("Rep")

_new_object = object.__new__

QUEUED: Final = 0
ACTIVE: Final = 1
DONE: Final = 2
GONE: Final = 3


@final
class _Request:
    """A queued or in-flight request. All fields but ``msg`` are guarded by ``core.lock``."""

    __slots__ = ("core", "error", "msg", "state", "value", "waiter")
    # ``value`` and ``error`` are only set (both, or ``error`` alone) when the node becomes
    # DONE or GONE, and only read after that: leaving them unset saves time per request.
    value: object
    error: BaseException | None

    def __init__(self, msg: object, core: _Core, waiter: Waiter | None) -> None:
        self.msg = msg
        self.core = core
        self.state: int = QUEUED
        # The requester's registered waiter; None while nobody waits (a PendingReply not
        # awaited yet) and once a waker or the requester itself has taken it.
        self.waiter = waiter

    def outcome(self) -> Any:
        """The reply, or raise the error. Only valid once the node is DONE."""
        if self.error is not None:
            raise self.error
        return self.value

    def _give_up(self) -> None:
        """QUEUED/ACTIVE -> GONE. Call with the lock held."""
        if self.state == QUEUED:
            self.core.live -= 1  # a tombstone from now on; the server will skip it
        self.state = GONE
        self.error = Closed("this request was cancelled")

    def cancel(self) -> bool:
        """Anyone gives up on the request. True if it was not answered yet (now GONE)."""
        with self.core.lock:
            if self.state >= DONE:
                return False
            self._give_up()
            waiter, self.waiter = self.waiter, None
        if waiter is not None:
            wake(waiter)  # whoever waits for it now raises Closed
        return True

    def deregister(self, waiter: Waiter) -> bool:
        """The requester's *waiter* gives up (cancelled, timed out): `_wait`'s deregister().

        False if a waker already took the waiter: the outcome is there (or on its way)."""
        with self.core.lock:
            if self.waiter is not waiter:
                return False
            self.waiter = None
            self._give_up()
            return True

    def finish(self, value: object, error: BaseException | None) -> bool:
        """The server answers (called once per ReplyContext). True if delivered."""
        core = self.core
        with core.lock:
            core.in_flight -= 1
            if self.state != ACTIVE:  # GONE: the requester has left
                return False
            self.state = DONE
            self.value = value
            self.error = error
            waiter = self.waiter
            self.waiter = None
        # Inlined `wake` for the common case: an asyncio requester on this very loop.
        if type(waiter) is _Future and waiter.get_loop() is _get_running_loop():
            if not waiter.done():
                waiter.set_result(None)
        elif waiter is not None:
            wake(waiter)
        return True

    async def wait_async(self) -> Any:
        """Wait for the outcome in a task; cancelling abandons the request."""
        core = self.core
        with core.lock:
            if self.state >= DONE:
                waiter = None
            elif self.waiter is not None:
                raise RuntimeError("another task or thread is already waiting for this reply")
            else:
                waiter = self.waiter = new_async_waiter()
        if waiter is None:
            await trio_checkpoint()
        else:
            await park(waiter, functools.partial(self.deregister, waiter))
        return self.outcome()

    def wait_blocking(self, timeout: float | None) -> Any:
        """Wait for the outcome in a thread; a timeout abandons the request."""
        timeout = check_timeout(timeout)
        ensure_blocking_allowed("waiting for a reply")
        core = self.core
        with core.lock:
            if self.state >= DONE:
                return self.outcome()
            if self.waiter is not None:
                raise RuntimeError("another task or thread is already waiting for this reply")
            waiter = self.waiter = ThreadWaiter()
        if not waiter.wait(timeout) and self.deregister(waiter):
            raise TimeoutError(f"no reply within {timeout} seconds")
        return self.outcome()


@final
class ReplyContext(Generic[Rep]):
    """The server's handle for answering one request.

    Obtained with the message from [`Server.wait`][asyncmp.Server.wait]. Answering never
    blocks and works from any thread or event loop, also after the server has closed, so a
    handler may pass the context to a worker and answer later.

    Use it exactly once: [`reply`][asyncmp.ReplyContext.reply] or
    [`fail`][asyncmp.ReplyContext.fail]. Closing it unanswered — `close()`, leaving a
    `with rctx:` block, or letting it be garbage-collected — makes the client's `send`
    raise [`NoReply`][asyncmp.NoReply].
    """

    __slots__ = ("_node",)
    _node: _Request | None

    def __new__(cls, *args: object, **kwargs: object) -> ReplyContext[Any]:
        raise TypeError("ReplyContext objects are made by Server.wait(), not directly")

    @classmethod
    def _create(cls, node: _Request) -> ReplyContext[Any]:
        self: ReplyContext[Any] = _new_object(cls)
        self._node = node
        return self

    def reply(self, value: Rep) -> bool:
        """Send *value* to the requester.

        Returns:
            ``True`` if delivered, ``False`` if the requester has gone (cancelled, timed out
            or dropped its pending reply — ump's `OriginDisappeared`).

        Raises:
            AlreadyReplied: this context was already answered or closed.
        """
        node = self._node
        if node is None:
            raise AlreadyReplied("cannot reply(): this reply context was already answered")
        self._node = None
        # `node.finish(value, None)`, inlined: this is the hot path.
        core = node.core
        with core.lock:
            core.in_flight -= 1
            if node.state != ACTIVE:
                return False
            node.state = DONE
            node.value = value
            node.error = None
            waiter = node.waiter
            node.waiter = None
        if type(waiter) is _Future and waiter.get_loop() is _get_running_loop():
            if not waiter.done():
                waiter.set_result(None)
        elif waiter is not None:
            wake(waiter)
        return True

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
        return self._take("fail").finish(None, exc)

    def close(self) -> None:
        """Close without answering: the requester gets `NoReply`. Idempotent."""
        node = self._node
        if node is not None:
            self._node = None
            node.finish(None, NoReply("the server closed the reply context without answering"))

    @property
    def answered(self) -> bool:
        """Whether `reply`, `fail` or `close` has been called."""
        return self._node is None

    def _take(self, what: str) -> _Request:
        node = self._node
        if node is None:
            raise AlreadyReplied(f"cannot {what}(): this reply context was already answered")
        self._node = None
        return node

    def __enter__(self) -> ReplyContext[Rep]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        node = self._node
        if node is not None:
            self._node = None
            error = NoReply("the server closed the reply context without answering")
            error.__cause__ = exc
            node.finish(None, error)

    def __del__(self) -> None:
        if self._node is not None and not sys.is_finalizing():
            self.close()

    def __repr__(self) -> str:
        return f"<ReplyContext {'answered' if self._node is None else 'pending'}>"


@final
class PendingReply(Generic[Rep]):
    """A request that has been queued and whose reply will be collected later.

    Returned by [`Client.request`][asyncmp.Client.request] (ump's `req_async` /
    `WaitReply`). Collect the reply once: `await pending` in a task or
    `pending.blocking.wait(timeout=None)` in a thread.

    Giving up — `pending.cancel()`, cancelling the task that awaits it, a blocking wait
    timing out, or dropping the object — withdraws the request if the server has not picked
    it up yet, and otherwise makes the server's `reply()` return `False`.
    """

    __slots__ = ("__weakref__", "_node")
    _node: _Request

    def __new__(cls, *args: object, **kwargs: object) -> PendingReply[Any]:
        raise TypeError("PendingReply objects are made by Client.request(), not directly")

    @classmethod
    def _create(cls, node: _Request) -> PendingReply[Any]:
        self: PendingReply[Any] = object.__new__(cls)
        self._node = node
        return self

    def __await__(self) -> Generator[Any, None, Rep]:
        result: Rep = yield from self._node.wait_async().__await__()
        return result

    def done(self) -> bool:
        """Whether the outcome has arrived (or the request was cancelled)."""
        return self._node.state >= DONE

    def cancel(self) -> bool:
        """Give up on the reply. Returns ``True`` if the request had not been answered."""
        return self._node.cancel()

    @property
    def blocking(self) -> _BlockingPendingReply[Rep]:
        """The blocking face, for plain threads."""
        # The view holds the PendingReply itself, so that
        # `client.request(x).blocking.wait()` keeps the request alive while it waits.
        return _BlockingPendingReply(self)

    def __del__(self) -> None:
        node = self._node
        if node.state < DONE and not sys.is_finalizing():
            node.cancel()

    def __repr__(self) -> str:
        state = ("queued", "picked up", "done", "cancelled")[self._node.state]
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
        result: Rep = self._pending._node.wait_blocking(timeout)
        return result
