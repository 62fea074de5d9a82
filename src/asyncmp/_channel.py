"""The request/reply channel: ump's Client/Server pair.

Design note. The shared state of a channel lives in `_core.ChannelCore`; a request is a
`ReplyContext` (see `_reply`). Clients, weak clients and the server only hold the core, and
the core holds none of them, so garbage collection of a handle is its close.

Bounded channels (``max_queued``) never hide a sender's request from the server: a send
on a full channel queues its request behind the others and waits for its reply, which is
indistinguishable from waiting for room first and then for the reply (the server only
reaches that request once the requests before it were taken). What the bound changes is
that non-waiting `request()` raises `WouldBlock`, and `statistics().queued` never
exceeds it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from ._channel_core import ChannelCore
from ._closing import AsyncClosing
from ._cores import load_speedups
from ._errors import ClientsDisappeared, Closed
from ._lowlevel._backend import get_running_loop, library_mark
from ._lowlevel._finalize import finalize
from ._lowlevel._public import NoPublicConstructor
from ._lowlevel._wake import (
    ThreadWaiter,
    check_timeout,
    ensure_blocking_allowed,
    new_async_waiter,
)
from ._reply import (
    LOST,
    QUEUED,
    PendingReply,
    ReplyContext,
    _Failure,
    _new_object,
    _Ticket,
    new_request,
    reclaim,
)

__all__ = ("ChannelStatistics", "Client", "Server", "WeakClient", "channel")

_Future = asyncio.Future
_get_ident = threading.get_ident

Req = TypeVar("Req")
Rep = TypeVar("Rep")


class _PureClientBase:
    """The fields of a `Client`; the compiled core has its own (``ClientBase``), which its
    ``send`` reads without an attribute look-up."""

    __slots__ = ("_closed", "_core")
    _core: ChannelCore
    _closed: bool


class _PureServerBase:
    """The field of a `Server` (see `_PureClientBase`)."""

    __slots__ = ("_core",)
    _core: ChannelCore


if TYPE_CHECKING:
    _ClientBase = _PureClientBase
    _ServerBase = _PureServerBase
else:
    _speedups = load_speedups()
    _ClientBase = _PureClientBase if _speedups is None else _speedups.ClientBase
    _ServerBase = _PureServerBase if _speedups is None else _speedups.ServerBase


@final
@dataclass(frozen=True)
class ChannelStatistics:
    """A snapshot of a channel, from [`Server.statistics`][asyncmp.Server.statistics]."""

    queued: int
    """Requests waiting to be picked up (at most ``max_queued`` on a bounded channel)."""
    clients: int
    """Open strong clients."""
    weak_clients: int
    """Weak clients that exist (they never keep the server alive)."""
    in_flight: int
    """Requests picked up by the server and not answered yet."""


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
        if isinstance(max_queued, bool) or not isinstance(max_queued, int):
            raise TypeError(f"max_queued must be an int or None, not {max_queued!r}")
        if max_queued < 1:
            raise ValueError(f"max_queued must be at least 1, not {max_queued}")
    core = ChannelCore(max_queued)
    return Server._create(core), Client._create(core)


@final
class Client(
    _ClientBase,
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
    def _create(cls, core: ChannelCore) -> Client[Any, Any]:
        # The caller has already counted this client in core.clients.
        self: Client[Any, Any] = _ClientBase.__new__(cls)
        self._core = core
        self._closed = False
        return self

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
        if self._closed:
            raise Closed("this client is closed")
        core = self._core
        loop = get_running_loop()
        if loop is None or library_mark.name is not None:  # trio
            return await _send_other(self, msg)  # type: ignore[no-any-return]
        # asyncio, inlined: this is the hot path the benchmarks measure.
        fut: asyncio.Future[Any] = _Future(loop=loop)
        node = _new_object(ReplyContext)  # `new_request`, inlined
        node._core = core
        node._msg = msg
        node._state = QUEUED
        node._to = fut
        node._tid = _get_ident()
        core.push(node, False, loop)
        # Hold no reference to the request while waiting: the server's ReplyContext must be
        # collectable (-> NoReply) the moment the server drops it.
        del node
        try:
            value = await fut
        except BaseException as exc:
            # Give up: a cancelled future is how the server learns that the request was
            # withdrawn (still queued) or orphaned (picked up). Task.cancel has usually
            # cancelled it already; this covers every other way out.
            try:
                fut.cancel()
            except RuntimeError:
                # Its loop is closed (this coroutine is being collected): the future is
                # cancelled all the same, only its callbacks could not be scheduled.
                pass
            value = reclaim(fut, exc)
            if value is LOST:
                raise
        if type(value) is _Failure:
            raise value.error
        return value  # type: ignore[no-any-return]

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
        core = self._core
        ticket = _Ticket(core.lock)
        core.push(new_request(core, msg, ticket), True)
        return PendingReply._create(ticket)

    @property
    def blocking(self) -> _BlockingClient[Req, Rep]:
        """The blocking face, for plain threads: ``client.blocking.send(msg, timeout=None)``."""
        return _BlockingClient(self)

    def clone(self) -> Client[Req, Rep]:
        """A new, independent strong client of the same server."""
        if self._closed:
            raise Closed("cannot clone a closed client")
        core = self._core
        with core.lock:
            core.clients += 1
        return Client._create(core)

    def weak(self) -> WeakClient[Req, Rep]:
        """A weak client: it can make a strong one while one exists, and keeps nothing alive."""
        if self._closed:
            raise Closed("cannot make a weak client from a closed client")
        return WeakClient._create(self._core)

    def close(self) -> None:
        """Stop counting as a client of the server. Idempotent.

        Requests already sent are unaffected: their replies still arrive.
        """
        if not self._closed:
            self._closed = True
            self._core.drop_client()

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._closed

    def __del__(self) -> None:
        if not self._closed and not sys.is_finalizing():
            self._closed = True
            core = self._core
            finalize((core.lock,), core.drop_client)

    def __repr__(self) -> str:
        return f"<Client {'closed' if self._closed else 'open'}>"


async def _send_other(client: Client[Any, Any], msg: object) -> Any:
    """`Client.send` for a requester that is not an asyncio task (trio): its ticket."""
    core = client._core
    waiter = new_async_waiter()
    ticket = _Ticket(core.lock, waiter)
    core.push(new_request(core, msg, ticket), False)
    await ticket.park_async(waiter, give_up=True)
    return ticket.result()


@final
class _BlockingClient(Generic[Req, Rep]):
    """``client.blocking``: the same client, with calls that block the calling thread."""

    __slots__ = ("_client",)

    def __init__(self, client: Client[Req, Rep]) -> None:
        self._client = client

    def send(self, msg: Req, timeout: float | None = None) -> Rep:
        """Send *msg* and block until the reply arrives.

        Raises:
            TimeoutError: no reply within *timeout* seconds. The request is withdrawn if the
                server has not picked it up, and otherwise the server's `reply()` returns
                `False`.
            RuntimeError: called on a thread that runs an event loop.
            ServerDisappeared, NoReply, Closed: as for [`Client.send`][asyncmp.Client.send].
        """
        timeout = check_timeout(timeout)
        ensure_blocking_allowed("client.blocking.send()")
        client = self._client
        if client._closed:
            raise Closed("this client is closed")
        waiter = ThreadWaiter()
        core = client._core
        ticket = _Ticket(core.lock, waiter)
        try:
            core.push(new_request(core, msg, ticket), False)
        except BaseException:
            ticket.leave(waiter, give_up=True)  # whatever happened, nobody waits for it
            raise
        # `ticket.park_blocking(waiter, timeout, give_up=True)`, inlined (a thread's hot path):
        # interrupted in the wait (Ctrl-C), the request is given up exactly as on a timeout,
        # or it would stay queued and be served.
        try:
            woken = waiter.wait(timeout)
        except BaseException:
            ticket.leave(waiter, give_up=True)
            raise
        # A timeout that can no longer leave lost a race with the wake-up: the reply is in.
        if not woken and ticket.leave(waiter, give_up=True):
            raise TimeoutError(f"no reply within {timeout} seconds")
        return ticket.result()  # type: ignore[no-any-return]


@final
class WeakClient(Generic[Req, Rep], metaclass=NoPublicConstructor, made_by="Client.weak()"):
    """A handle that can make a strong [`Client`][asyncmp.Client] but keeps no server alive.

    Give one to a server's own handler so that it can reach the server without keeping it
    running after every real client has gone.
    """

    __slots__ = ("__weakref__", "_core")
    _core: ChannelCore

    @classmethod
    def _create(cls, core: ChannelCore) -> WeakClient[Any, Any]:
        self: WeakClient[Any, Any] = object.__new__(cls)
        self._core = core
        next(core.weak_made)
        return self

    def upgrade(self) -> Client[Req, Rep] | None:
        """A new strong client, or ``None`` once no strong client remains or the server is
        closed."""
        core = self._core
        with core.lock:
            if not core.clients or core.server_closed:
                return None
            core.clients += 1
        return Client._create(core)

    def __del__(self) -> None:
        next(self._core.weak_dropped)  # lock-free: a finalizer must not wait for the lock

    def __repr__(self) -> str:
        return "<WeakClient>"


@final
class Server(
    _ServerBase,
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
    def _create(cls, core: ChannelCore) -> Server[Any, Any]:
        self: Server[Any, Any] = _ServerBase.__new__(cls)
        self._core = core
        return self

    def wait(self) -> Coroutine[Any, Any, tuple[Req, ReplyContext[Rep]]]:
        """Wait for the next request: ``msg, rctx = await server.wait()``.

        (A plain method returning the coroutine to await, which saves a frame per request;
        use it exactly like an ``async def``.)

        Raises:
            ClientsDisappeared: every strong client is closed and the queue is drained.
            Closed: this server was closed.

        Cancellation loses nothing: a request is only taken from the queue by a `wait`
        that returns it.
        """
        return self._core.receive(ClientsDisappeared)

    def try_pop(self) -> tuple[Req, ReplyContext[Rep]] | None:
        """The next request if one is queued, else ``None``.

        Raises:
            ClientsDisappeared: every strong client is closed and the queue is drained.
            Closed: this server was closed.
        """
        return self._core.try_take(ClientsDisappeared)

    @property
    def blocking(self) -> _BlockingServer[Req, Rep]:
        """The blocking face, for plain threads: ``server.blocking.wait(timeout=None)``."""
        return _BlockingServer(self)

    def statistics(self) -> ChannelStatistics:
        """A snapshot of the queue and the clients."""
        core = self._core
        queued, clients, weak_clients, in_flight = core.statistics()
        if core.max_queued is not None:
            queued = min(queued, core.max_queued)
        return ChannelStatistics(queued, clients, weak_clients, in_flight)

    def close(self) -> None:
        """Fail every queued request with `ServerDisappeared` and refuse new ones. Idempotent."""
        self._core.close_server()

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._core.server_closed

    def __aiter__(self) -> Server[Req, Rep]:
        return self

    def __anext__(self) -> Coroutine[Any, Any, tuple[Req, ReplyContext[Rep]]]:
        # A plain def returning the coroutine: one frame less per request in `async for`.
        return self._core.receive(StopAsyncIteration)

    def __del__(self) -> None:
        if not sys.is_finalizing():
            core = self._core
            finalize((core.lock,), core.close_server)

    def __repr__(self) -> str:
        s = self.statistics()
        state = "closed" if self.closed else "open"
        return (
            f"<Server {state} [queued: {s.queued}, in flight: {s.in_flight} | "
            f"clients: {s.clients}, weak: {s.weak_clients}]>"
        )


@final
class _BlockingServer(Generic[Req, Rep]):
    """``server.blocking``: wait for requests from a plain thread.

    Iterating it, ``for msg, rctx in server.blocking:``, waits for each request in turn and
    ends when every strong client is closed and the queue is drained.
    """

    __slots__ = ("_server",)

    def __init__(self, server: Server[Req, Rep]) -> None:
        self._server = server

    def wait(self, timeout: float | None = None) -> tuple[Req, ReplyContext[Rep]]:
        """Block until the next request arrives.

        Raises:
            TimeoutError: nothing arrived within *timeout* seconds.
            ClientsDisappeared: every strong client is closed and the queue is drained.
            Closed: this server was closed.
            RuntimeError: called on a thread that runs an event loop.
        """
        timeout = check_timeout(timeout)
        ensure_blocking_allowed("server.blocking.wait()")
        return self._server._core.receive_blocking(ClientsDisappeared, timeout)

    def __iter__(self) -> _BlockingServer[Req, Rep]:
        return self

    def __next__(self) -> tuple[Req, ReplyContext[Rep]]:
        try:
            return self.wait()
        except ClientsDisappeared:
            raise StopIteration from None


# The compiled core, where it runs, takes the hot methods over (see asyncmp._cores): the
# classes keep their documentation, signatures and types; the functions behave the same.
if not TYPE_CHECKING and _speedups is not None:
    for _cls, _name, _fn in (
        (Client, "send", _speedups.client_send),
        (Server, "wait", _speedups.server_wait),
        (Server, "__anext__", _speedups.server_anext),
        (_BlockingClient, "send", _speedups.blocking_send),
        (_BlockingServer, "wait", _speedups.blocking_wait),
    ):
        _fn.__doc__ = getattr(_cls, _name).__doc__
        setattr(_cls, _name, _fn)
    del _cls, _name, _fn
