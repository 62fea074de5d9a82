"""The shared state of one request/reply channel: its queue, its parked servers, its counts.

Design note. A `ChannelCore` is what clients, weak clients and the server of one channel share;
it holds none of them, so garbage collection of a handle is its close. Everything here is
guarded by ``core.lock`` (a ``threading.Lock``), so any mix of threads and event loops may
use one channel.

Requests reach the server in one of two ways:

- **queued**: no server is parked, so the node goes to the back of ``queue``;
- **handed off**: a server is parked (``server_waiters``), so the node goes straight to it,
  already ACTIVE — one lock round trip fewer on the hot path than "queue, wake, look".

Invariants (under ``core.lock``):
- ``server_waiters`` is non-empty only while ``queue`` holds no QUEUED node: a server parks
  only after finding the queue empty, and every later push hands off.
- Requests whose requester gave up stay in ``queue`` as tombstones (giving up takes no
  lock on the hot path): `take` skips them, `statistics` does not count them, and a full
  bounded channel purges them before it refuses a request.
- A node handed to a server that can no longer take it (cancelled in the meantime, or the
  server closed) comes back through `requeue`, exactly once: a handed-off node is never lost.
- ``taken`` counts requests handed off or taken (changed under the lock only); ``answered``
  counts their answers, lock-free (``next()`` on an ``itertools.count`` is atomic), so that
  answering needs no lock; in flight = taken − answered.
- Once ``server_closed`` is set, ``queue`` is empty and stays so.
- ``stopped`` is set once the server takes no more requests: it closed, or it saw
  ClientsDisappeared (no strong client is left and none can ever come back, since only an
  open client makes another). `push` refuses from then on: a sender whose client was closed
  by another thread after its check must not queue a request that nobody will take.
- Locks are taken as ``lock.acquire()`` / ``try: … finally: lock.release()`` rather than
  ``with lock:``, which costs about twice as much on CPython 3.11 — it is on every request.
- Parked servers woken with ``None`` (last client gone, server closed) look at the queue
  again; wake-ups with ``None`` go to *every* parked server, so none is left behind.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, final

from ._cores import load_speedups
from ._errors import Closed, ServerDisappeared, WouldBlock
from ._lowlevel._backend import get_running_loop, library_mark
from ._lowlevel._outcome import PENDING
from ._lowlevel._waitqueue import WaitQueue
from ._lowlevel._wake import (
    AsyncWaiter,
    ThreadWaiter,
    Waiter,
    deliver,
    new_async_waiter,
    park,
    trio_cancel_shielded_checkpoint,
    trio_checkpoint_if_cancelled,
    wake,
)
from ._reply import (
    ACTIVE,
    QUEUED,
    ReplyContext,
    _Failure,
    settle,
)

__all__ = ("ChannelCore",)

_Future = asyncio.Future

Item = tuple[Any, ReplyContext[Any]]


def _withdrawn(node: ReplyContext[Any]) -> bool:
    """Whether the requester of *node* gave up (a hint: it may give up right after)."""
    to = node._to
    if type(to) is _Future:
        return to.done()
    return to is None or to.state != PENDING  # type: ignore[union-attr]


def _server_waiter() -> AsyncWaiter:
    # `new_async_waiter` with asyncio first and no Python-level loop.create_future frame.
    loop = get_running_loop()
    if loop is not None and library_mark.name is None:
        return _Future(loop=loop)
    return new_async_waiter()


def _count(counter: itertools.count[int]) -> int:
    # itertools.count exposes its next value only through repr: "count(42)".
    return int(repr(counter)[6:-1])


class _PureChannelCore:
    """The hot part of `ChannelCore`, in pure Python: what every request runs. The compiled
    core (``asyncmp._speedups.ChannelCoreBase``) implements the same methods with the same
    fields; `ChannelCore` adds the rest on top of whichever is active."""

    __slots__ = (
        "answered",
        "clients",
        "lock",
        "max_queued",
        "queue",
        "server_closed",
        "server_waiters",
        "stopped",
        "taken",
        "weak_dropped",
        "weak_made",
    )

    def __init__(self, max_queued: int | None) -> None:
        self.lock = threading.Lock()
        self.queue: deque[ReplyContext[Any]] = deque()
        self.max_queued = max_queued
        self.clients = 1
        # Weak clients made and dropped, counted lock-free (like ``answered``) so that a
        # WeakClient's finalizer takes no lock: existing = made − dropped.
        self.weak_made = itertools.count()
        self.weak_dropped = itertools.count()
        self.taken = 0
        self.answered = itertools.count()
        self.server_closed = False
        self.stopped = False
        self.server_waiters = WaitQueue(self.lock)

    # -- client side -------------------------------------------------------------------

    def push(self, node: ReplyContext[Any], nowait: bool, loop: object = None) -> None:
        """Hand *node* to a parked server or queue it; raise ServerDisappeared/WouldBlock.

        *loop* is the caller's running asyncio loop when it knows it (saves a look-up)."""
        lock = self.lock
        lock.acquire()
        try:
            if self.stopped:  # one test for both ends: on the hot path
                raise ServerDisappeared(
                    "the server is closed"
                    if self.server_closed
                    else "the server has stopped: every client had closed"
                )
            if not self.server_waiters:
                if nowait and self.max_queued is not None and len(self.queue) >= self.max_queued:
                    self._purge()
                    if len(self.queue) >= self.max_queued:
                        raise WouldBlock(f"the channel is full ({self.max_queued} requests queued)")
                self.queue.append(node)
                return
            # `server_waiters.pop_oldest()`, inlined: a method call is a fifth of this path.
            waiters = self.server_waiters
            waiter = waiters.pop(next(iter(waiters)))
            node._state = ACTIVE
            self.taken += 1
        finally:
            lock.release()
        # Inlined `deliver` for the common case: a server task on the caller's own loop.
        if type(waiter) is _Future and waiter.get_loop() is (loop or get_running_loop()):
            if not waiter.done():
                waiter.set_result(node)
            else:
                self.requeue(node)
        else:
            deliver(waiter, node, self.requeue)

    def take(self, ended: type[Exception]) -> Item | None:
        """The oldest queued request, None if there is none now, or raise *ended* when none
        will ever come. Call with the lock held."""
        queue = self.queue
        while queue:
            node = queue.popleft()
            if not _withdrawn(node):
                node._state = ACTIVE
                self.taken += 1
                return node._msg, node
        if self.server_closed:
            raise Closed("the server is closed")
        if not self.clients:
            self.stopped = True
            raise ended("every client has gone and the queue is drained")
        return None

    def handed(self, node: ReplyContext[Any]) -> Item | None:
        """A parked server was handed *node*: the item, or None if its requester has gone
        meanwhile (skip it); raise Closed if the server closed meanwhile."""
        if self.server_closed or _withdrawn(node):
            self.requeue(node)
            if self.server_closed:
                raise Closed("the server is closed")
            return None
        return node._msg, node

    def requeue(self, node: ReplyContext[Any]) -> None:
        """Take back a handed-off node its server could not take: drop it if its requester
        has gone, fail it if the server closed, else hand it to the next parked server or
        put it back at the head of the queue (it was the oldest)."""
        to = next_server = None
        lock = self.lock
        lock.acquire()
        try:
            if _withdrawn(node):
                node._to = None  # nothing to answer: not NoReply, not in flight
                self.taken -= 1
                return
            if self.server_closed:
                to, node._to = node._to, None
                self.taken -= 1
            elif self.server_waiters:
                next_server = self.server_waiters.pop_oldest()
            else:
                node._state = QUEUED
                self.taken -= 1
                self.queue.appendleft(node)
                return
        finally:
            lock.release()
        if next_server is not None:
            deliver(next_server, node, self.requeue)
        elif to is not None:
            settle(to, _Failure(ServerDisappeared("the server closed before taking it")))

    def unpark(self, waiter: Waiter) -> bool:
        """deregister() for a parked server (see `_wake`): False if it was taken already."""
        return self.server_waiters.leave(waiter)

    async def receive(self, ended: type[Exception], loop: Any = None) -> Item:
        """`Server.wait` / `Server.__anext__`: the next request, parking until one comes.

        *loop*: the caller's running asyncio loop when it knows it for certain — a task
        that serves all its life on one loop (`task.spawn`'s dispatch loop) — which saves
        the look-up (a ``getpid()`` system call on CPython 3.11) each time it parks."""
        lock = self.lock
        on_trio = loop is None and library_mark.name == "trio"
        if on_trio:
            # trio's rule: a cancelled call does nothing, so check before taking a request.
            await trio_checkpoint_if_cancelled()
        lock.acquire()
        try:
            queue = self.queue
            if queue and not on_trio:
                # A request is queued (the hot path under load): `take`, inlined.
                node = queue[0]
                to = node._to
                if type(to) is _Future and not to.done():
                    queue.popleft()
                    node._state = ACTIVE
                    self.taken += 1
                    return node._msg, node
            # Nothing queued and nothing ended: park without calling `take` (the hot path).
            busy = queue or self.server_closed or not self.clients
            item = self.take(ended) if busy else None
            if item is None:
                loop = loop or get_running_loop()
                waiter = (
                    _Future(loop=loop) if loop is not None and not on_trio else _server_waiter()
                )
                self.server_waiters[waiter] = waiter
        finally:
            lock.release()
        if item is not None:
            if on_trio:
                await trio_cancel_shielded_checkpoint()
            return item
        while True:
            if type(waiter) is _Future:
                try:
                    node = await waiter
                except BaseException:
                    # Cancelled. Still parked: leave. Handed a node: give it back. A hand-off
                    # still in flight from another thread gives it back itself (`deliver`).
                    if (
                        not self.unpark(waiter)
                        and waiter.done()
                        and not waiter.cancelled()
                        and (node := waiter.result()) is not None
                    ):
                        self.requeue(node)
                    raise
                # The hot path: handed a live request by an asyncio client.
                if node is not None and not self.server_closed:
                    to = node._to
                    if type(to) is _Future and not to.done():
                        return node._msg, node
            else:
                # trio refuses a cancellation once a waker took the waiter, so the node
                # (or the None of a "look again") always arrives.
                node = await park(waiter, functools.partial(self.unpark, waiter))
            if node is not None and (item := self.handed(node)) is not None:
                return item
            lock.acquire()
            try:
                item = self.take(ended)
                if item is not None:
                    return item
                waiter = _server_waiter()
                self.server_waiters[waiter] = waiter
            finally:
                lock.release()

    def _purge(self) -> None:
        """Drop the tombstones from the queue. Call with the lock held."""
        self.queue = deque(node for node in self.queue if not _withdrawn(node))

    def in_flight(self) -> int:
        """Requests taken and not answered yet. Call with the lock held."""
        return self.taken - _count(self.answered)


if TYPE_CHECKING:
    _ChannelCoreBase = _PureChannelCore
else:
    _speedups = load_speedups()
    _ChannelCoreBase = _PureChannelCore if _speedups is None else _speedups.ChannelCoreBase


@final
class ChannelCore(_ChannelCoreBase):
    """One channel's shared state (see the module doc): the hot part from the active core,
    the rest here."""

    __slots__ = ()

    def drop_client(self) -> None:
        lock = self.lock
        lock.acquire()
        try:
            self.clients -= 1
            if self.clients:
                return
            waiters = self.server_waiters.pop_all()
        finally:
            lock.release()
        # No request will come any more: every parked server looks again, and sees
        # ClientsDisappeared once the queue is drained.
        for waiter in waiters:
            wake(waiter)

    def receive_blocking(self, ended: type[Exception], timeout: float | None) -> Item:
        """`server.blocking.wait`: the same, blocking a plain thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            lock = self.lock
            lock.acquire()
            try:
                item = self.take(ended)
                if item is not None:
                    return item
                waiter = ThreadWaiter()
                self.server_waiters[waiter] = waiter
            finally:
                lock.release()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                woken = waiter.wait(left)
            except BaseException:
                # Interrupted (Ctrl-C): leave as a timeout does, or the next request would be
                # handed to this dead waiter.
                self.abandon(waiter)
                raise
            if not woken:
                if self.unpark(waiter):
                    raise TimeoutError(f"no request within {timeout} seconds")
                waiter.wait_delivered()  # a waker took us just now: its delivery is on its way
            if waiter.value is not None and (item := self.handed(waiter.value)) is not None:
                return item

    def abandon(self, waiter: ThreadWaiter) -> None:
        """A parked thread leaves without a request (interrupted): deregister *waiter* or, if
        a waker took it already, take what it delivers and pass a request on (`requeue`)."""
        if self.unpark(waiter):
            return
        try:
            waiter.wait_delivered()
        finally:
            if waiter.value is not None:
                self.requeue(waiter.value)

    def try_take(self, ended: type[Exception]) -> Item | None:
        lock = self.lock
        lock.acquire()
        try:
            return self.take(ended)
        finally:
            lock.release()

    def close_server(self) -> None:
        lock = self.lock
        lock.acquire()
        try:
            if self.server_closed:
                return
            self.server_closed = self.stopped = True
            requesters = []
            for node in self.queue:
                if not _withdrawn(node):
                    requesters.append(node._to)
                    node._to = None
            self.queue.clear()
            waiters = self.server_waiters.pop_all()
        finally:
            lock.release()
        for to in requesters:
            settle(to, _Failure(ServerDisappeared("the server closed before taking it")))  # type: ignore[arg-type]
        for waiter in waiters:
            wake(waiter)

    def statistics(self) -> tuple[int, int, int, int]:
        """(queued, clients, weak_clients, in_flight)."""
        lock = self.lock
        lock.acquire()
        try:
            queued = sum(1 for node in self.queue if not _withdrawn(node))
            in_flight = self.in_flight()
            dropped = _count(self.weak_dropped)  # first: made ≥ dropped, never negative
            weak_clients = _count(self.weak_made) - dropped
            return queued, self.clients, weak_clients, in_flight
        finally:
            lock.release()
