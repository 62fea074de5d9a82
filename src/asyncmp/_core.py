"""The shared state of one request/reply channel: its queue, its parked servers, its counts.

Design note. A `_Core` is what clients, weak clients and the server of one channel share;
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
- ``live`` = the number of QUEUED nodes in ``queue``; GONE nodes there are tombstones that
  `take` skips.
- A node handed to a server that can no longer take it (cancelled in the meantime, or the
  server closed) comes back through `requeue`, exactly once: a handed-off node is never lost.
- ``in_flight`` counts ACTIVE nodes: handed off or taken, and not answered yet.
- Once ``server_closed`` is set, ``queue`` is empty and stays so.
- Parked servers woken with ``None`` (last client gone, server closed) look at the queue
  again; wake-ups with ``None`` go to *every* parked server, so none is left behind.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from typing import Any, final

from ._errors import Closed, ServerDisappeared, WouldBlock
from ._reply import ACTIVE, DONE, QUEUED, ReplyContext, _new_object, _Request
from ._wait import (
    AsyncWaiter,
    ThreadWaiter,
    Waiter,
    _Future,
    _get_running_loop,
    _sniffio_local,
    deliver,
    new_async_waiter,
    park,
    trio_checkpoint,
    wake,
)

__all__ = ("_Core",)


def _context(node: _Request) -> ReplyContext[Any]:
    rctx: ReplyContext[Any] = _new_object(ReplyContext)
    rctx._node = node
    return rctx


def _server_waiter() -> AsyncWaiter:
    # `new_async_waiter` with asyncio first and no Python-level loop.create_future frame.
    loop = _get_running_loop()
    if loop is not None and _sniffio_local.name is None:
        return _Future(loop=loop)
    return new_async_waiter()


@final
class _Core:
    __slots__ = (
        "clients",
        "in_flight",
        "live",
        "lock",
        "max_queued",
        "queue",
        "server_closed",
        "server_waiters",
        "weak_clients",
    )

    def __init__(self, max_queued: int | None) -> None:
        self.lock = threading.Lock()
        self.queue: deque[_Request] = deque()
        self.live = 0
        self.max_queued = max_queued
        self.clients = 1
        self.weak_clients = 0
        self.in_flight = 0
        self.server_closed = False
        self.server_waiters: deque[Waiter] = deque()

    # -- client side -------------------------------------------------------------------

    def push(self, node: _Request, nowait: bool, loop: object = None) -> None:
        """Hand *node* to a parked server or queue it; raise ServerDisappeared/WouldBlock.

        *loop* is the caller's running asyncio loop when it knows it (saves a look-up)."""
        with self.lock:
            if self.server_closed:
                raise ServerDisappeared("the server is closed")
            if not self.server_waiters:
                if nowait and self.max_queued is not None and self.live >= self.max_queued:
                    raise WouldBlock(f"the channel is full ({self.max_queued} requests queued)")
                self.queue.append(node)
                self.live += 1
                return
            waiter = self.server_waiters.popleft()
            node.state = ACTIVE
            self.in_flight += 1
        # Inlined `deliver` for the common case: a server task on the caller's own loop.
        if type(waiter) is _Future and waiter.get_loop() is (loop or _get_running_loop()):
            if not waiter.done():
                waiter.set_result(node)
            else:
                self.requeue(node)
        else:
            deliver(waiter, node, self.requeue)

    def drop_client(self) -> None:
        with self.lock:
            self.clients -= 1
            if self.clients:
                return
            waiters = list(self.server_waiters)
            self.server_waiters.clear()
        # No request will come any more: every parked server looks again, and sees
        # ClientsDisappeared once the queue is drained.
        for waiter in waiters:
            wake(waiter)

    # -- server side -------------------------------------------------------------------

    def take(self, gone: type[Exception]) -> tuple[Any, ReplyContext[Any]] | None:
        """The oldest queued request, None if there is none now, or raise *gone* when none
        will ever come. Call with the lock held."""
        queue = self.queue
        while queue:
            node = queue.popleft()
            if node.state == QUEUED:
                node.state = ACTIVE
                self.live -= 1
                self.in_flight += 1
                return node.msg, _context(node)
        if self.server_closed:
            raise Closed("the server is closed")
        if not self.clients:
            raise gone("every client has gone and the queue is drained")
        return None

    def received(self, node: _Request) -> tuple[Any, ReplyContext[Any]]:
        """A parked server got *node* handed off."""
        if self.server_closed:  # closed while the node was on its way: it was never seen
            self.requeue(node)
            raise Closed("the server is closed")
        return node.msg, _context(node)

    def requeue(self, node: _Request) -> None:
        """Take back a handed-off node its server could not take: hand it to the next parked
        server, or put it back at the head of the queue (it was the oldest)."""
        with self.lock:
            self.in_flight -= 1
            if node.state != ACTIVE:  # its requester gave up meanwhile: nothing to keep
                return
            if self.server_closed:
                node.state = DONE
                node.error = ServerDisappeared("the server closed before taking this request")
                waiter, node.waiter = node.waiter, None
                next_server = None
            elif self.server_waiters:
                self.in_flight += 1
                next_server = self.server_waiters.popleft()
            else:
                node.state = QUEUED
                self.queue.appendleft(node)
                self.live += 1
                return
        if next_server is not None:
            deliver(next_server, node, self.requeue)
        elif waiter is not None:
            wake(waiter)

    def unpark(self, waiter: Waiter) -> bool:
        """deregister() for a parked server (see `_wait`): False if it was taken already."""
        with self.lock:
            try:
                self.server_waiters.remove(waiter)
            except ValueError:
                return False
            return True

    async def receive(self, gone: type[Exception]) -> tuple[Any, ReplyContext[Any]]:
        """`Server.wait` / `Server.__anext__`: the next request, parking until one comes."""
        lock = self.lock
        with lock:
            item = self.take(gone)
            if item is None:
                waiter = _server_waiter()
                self.server_waiters.append(waiter)
        if item is not None:
            if _sniffio_local.name == "trio":
                await trio_checkpoint()
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
            else:
                # trio refuses a cancellation once a waker took the waiter, so the node
                # (or the None of a "look again") always arrives.
                node = await park(waiter, functools.partial(self.unpark, waiter))
            if node is not None:
                if self.server_closed:
                    return self.received(node)  # raises Closed
                rctx = _new_object(ReplyContext)
                rctx._node = node
                return node.msg, rctx
            with lock:
                item = self.take(gone)
                if item is not None:
                    return item
                waiter = _server_waiter()
                self.server_waiters.append(waiter)

    def receive_blocking(
        self, gone: type[Exception], timeout: float | None
    ) -> tuple[Any, ReplyContext[Any]]:
        """`server.blocking.wait`: the same, blocking a plain thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.lock:
                item = self.take(gone)
                if item is not None:
                    return item
                waiter = ThreadWaiter()
                self.server_waiters.append(waiter)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not waiter.wait(left):
                if self.unpark(waiter):
                    raise TimeoutError(f"no request within {timeout} seconds")
                waiter.wait(None)  # a waker took us just now: its delivery is on its way
            if waiter.value is not None:
                return self.received(waiter.value)

    def close_server(self) -> None:
        with self.lock:
            if self.server_closed:
                return
            self.server_closed = True
            failed = [node for node in self.queue if node.state == QUEUED]
            self.queue.clear()
            self.live = 0
            waiters = list(self.server_waiters)
            self.server_waiters.clear()
            for node in failed:
                node.state = DONE
                node.error = ServerDisappeared("the server closed before taking this request")
                if node.waiter is not None:
                    waiters.append(node.waiter)
                    node.waiter = None
        for waiter in waiters:
            wake(waiter)
