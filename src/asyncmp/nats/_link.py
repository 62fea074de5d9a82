"""Connections: one nats-py connection per event loop that uses a client.

nats-py is asyncio-only and binds a connection to the loop that opened it. A round trip
that hops between threads costs about a third of the throughput, so an asyncio task uses
a connection opened on its own loop (the *link* of that loop), and everything that cannot
(plain threads, trio tasks) uses the link of an I/O loop that the client runs in a daemon
thread of its own, started on first need.

Invariants:
- A `_Call` is an `OutcomeCell` under ``hub.lock``: PENDING, then DONE (the reply message, or
  a `Failure`) or GIVEN_UP (its requester gave up, and the server is told).
- ``link.calls`` holds exactly the PENDING calls registered on that link, by token. A call is
  registered (under ``hub.lock``, refused with `Closed` once the link is closed) *before* its
  request is handed to the link's loop to publish, so closing the link — which marks it closed
  and takes its calls under the same lock — fails every call that could still be waiting,
  whatever became of the hand-over. A reply, a timeout, the requester giving up or the link
  closing removes the call.
- Whatever a thread schedules on the I/O loop is scheduled under ``hub.lock`` after checking
  that the hub is open. Closing the hub marks it closed under that lock before it schedules
  the loop's stop, so the loop runs everything scheduled before it stops.
- Only the link's loop thread touches ``link.nc`` and the sweep timer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import math
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, final

try:
    import nats.aio.client
    import nats.errors
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError("asyncmp.nats needs nats-py: pip install 'asyncmp[nats]'") from _exc

from .._errors import Closed, ServerDisappeared
from .._lowlevel._backend import get_running_loop
from .._lowlevel._format import seconds
from .._lowlevel._outcome import PENDING, Failure, OutcomeCell
from .._lowlevel._wake import Waiter, new_async_waiter, park, wake
from ._wire import cancel_subject

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg

T = TypeVar("T")

logger = logging.getLogger("asyncmp")


class _Decodes(Protocol):
    def decode_reply(self, msg: Msg) -> Any: ...


@final
class _Call(OutcomeCell):
    """One request in flight: an `OutcomeCell` under ``hub.lock`` whose outcome is the reply
    message (decoded by `result`) or a `Failure`; giving it up tells the server."""

    __slots__ = ("deadline", "decoder", "hub", "link", "token")

    def __init__(self, hub: Hub, decoder: _Decodes, waiter: Waiter | None = None) -> None:
        super().__init__(hub.lock, waiter)
        self.hub = hub
        self.decoder = decoder
        self.link: _Link | None = None
        self.token = ""
        self.deadline = math.inf  # set when published: a registered call cannot expire before

    def result(self) -> Any:
        value = self.value
        if type(value) is Failure:
            raise value.error
        return self.decoder.decode_reply(value)

    def _given_up_value(self) -> object:
        return Failure(Closed("this request was cancelled"))

    def _gave_up(self) -> None:
        # The requester gave up: forget the call, and tell the server holding it to withdraw.
        with self.hub.lock:
            link = self.link
            if link is not None:
                link.calls.pop(self.token, None)
        if link is not None:
            link.notify_cancel(self.token)


async def _closer(link: _Link) -> AsyncGenerator[None, None]:
    # Registered with the loop's async-generator hooks: `asyncio.run()` finalizes it at
    # shutdown, which closes a link whose client was never closed (no leaked socket).
    try:
        yield
    finally:
        await link.close()


@final
class _Link:
    """One nats-py connection on one loop, with a reply inbox shared by all its calls."""

    def __init__(self, hub: Hub, nc: NatsClient, loop: asyncio.AbstractEventLoop) -> None:
        self.hub = hub
        self.nc = nc
        self.loop = loop
        self.calls: dict[str, _Call] = {}
        self.prefix = nc.new_inbox() + "."
        self._plen = len(self.prefix)
        self._tokens = itertools.count(1)
        self.closed = False
        self._agen: AsyncGenerator[None, None] | None = None
        self._cancel_subject = cancel_subject(hub.subject)
        self._sweeper: asyncio.TimerHandle | None = None
        timeout = hub.timeout
        # Deadlines are checked by one sweep timer per link, armed while calls are pending,
        # rather than a timer per call (a heap operation each): a request times out between
        # `timeout` and `timeout + tick` seconds.
        self._tick = 0.0 if timeout is None else min(0.05, timeout / 10)

    @classmethod
    async def open(cls, hub: Hub, timeout: float | None) -> _Link:
        """Connect (within *timeout* seconds) and subscribe to the reply inbox."""
        link: _Link | None = None

        async def lost(error: Callable[[], BaseException]) -> None:
            if link is not None:
                await link.close(error)

        nc = await connect_nats(hub.options, timeout, log=hub.log, on_lost=lost)
        link = cls(hub, nc, asyncio.get_running_loop())
        try:
            await nc.subscribe(link.prefix + "*", cb=link._on_reply)
            await settle(nc)
        except BaseException:
            await nc.close()
            raise
        agen = link._agen = _closer(link)
        await agen.asend(None)
        return link

    @property
    def max_payload(self) -> int:
        return int(self.nc.max_payload)

    def register(self, call: _Call) -> bool:
        """Add *call* to the link's calls (any thread), before its request is published.

        Returns False if the requester gave up already; raises `Closed` if the link is closed.
        """
        token = str(next(self._tokens))
        with self.hub.lock:
            if self.closed:
                raise Closed("the client was closed")
            if call.state != PENDING:
                return False
            call.link = self
            call.token = token
            self.calls[token] = call
        return True

    def publish_soon(
        self, subject: str, payload: bytes, call: _Call, timeout: float | None
    ) -> None:
        """Register *call* and have the link's loop publish its request (any other thread).

        Raises `Closed` if the link is closed. Once registered, the call's outcome is certain:
        a reply, a timeout, or the failure that closing the link gives every call it holds.
        """
        if not self.register(call):
            return
        try:
            self.loop.call_soon_threadsafe(self._publish_task, subject, payload, call, timeout)
        except RuntimeError:  # the loop is closed, so is the link (its close failed the call)
            self.finish(call, None, Closed("the client was closed"))

    def _publish_task(
        self, subject: str, payload: bytes, call: _Call, timeout: float | None
    ) -> None:
        self.loop.create_task(self.publish_call(subject, payload, call, timeout, True))

    # -- the loop thread ---------------------------------------------------------------

    async def publish_call(
        self,
        subject: str,
        payload: bytes,
        call: _Call,
        timeout: float | None,
        registered: bool = False,
    ) -> None:
        """Register *call* (unless *registered* already) and publish its request (on this
        link's loop)."""
        if not registered:
            if not self.register(call):
                return  # given up before it was sent
        elif call.state != PENDING:
            return  # given up, or failed by the link's close, before it was sent
        if timeout is not None:
            call.deadline = self.loop.time() + timeout
            if self._sweeper is None:
                self._sweeper = self.loop.call_later(self._tick, self._sweep)
        try:
            await self.nc.publish(subject, payload, reply=self.prefix + call.token)
        except nats.errors.MaxPayloadError:
            from ._errors import PayloadTooLarge

            self.finish(call, None, PayloadTooLarge("the request exceeds the server's max_payload"))
        except Exception as exc:
            error = ServerDisappeared(f"cannot publish the request on NATS: {exc!r}")
            error.__cause__ = exc
            self.finish(call, None, error)

    def finish(self, call: _Call, msg: Msg | None, error: BaseException | None) -> bool:
        """Store the outcome and wake the requester. True if *call* was still pending."""
        with self.hub.lock:
            self.calls.pop(call.token, None)
        return call.set(msg if error is None else Failure(error))

    async def _on_reply(self, msg: Msg) -> None:
        call = self.calls.get(msg.subject[self._plen :])
        if call is not None:
            self.finish(call, msg, None)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.loop.time()
        with self.hub.lock:
            expired = [call for call in self.calls.values() if call.deadline <= now]
            more = len(self.calls) > len(expired)
        for call in expired:
            error = TimeoutError(f"no reply within {seconds(self.hub.timeout)} seconds")
            if self.finish(call, None, error):
                self.notify_cancel(call.token)
        if more and not self.closed:
            self._sweeper = self.loop.call_later(self._tick, self._sweep)

    def notify_cancel(self, token: str) -> None:
        """Tell the server holding request *token* that its requester gave up (any thread)."""
        try:
            if get_running_loop() is self.loop:
                self.loop.create_task(self._publish_cancel(token))
            else:
                self.loop.call_soon_threadsafe(self._spawn_cancel, token)
        except RuntimeError:
            pass  # the loop is closed: so is the connection, nothing to tell

    def _spawn_cancel(self, token: str) -> None:
        self.loop.create_task(self._publish_cancel(token))

    async def _publish_cancel(self, token: str) -> None:
        with contextlib.suppress(Exception):
            await self.nc.publish(self._cancel_subject, (self.prefix + token).encode())

    async def close(self, lost: Callable[[], BaseException] | None = None) -> None:
        """Close the connection (on the loop thread). Calls still pending fail with `Closed`
        (the client was closed) or, for a link whose connection nats-py gave up for good,
        with the error *lost* makes (`ServerDisappeared`); the next request opens a new link.
        """
        with self.hub.lock:
            if self.closed:
                return
            self.closed = True
            pending = list(self.calls.values())
        for call in pending:
            if lost is None:
                self.finish(call, None, Closed("the client was closed while waiting for the reply"))
            else:
                self.finish(call, None, lost())
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        with contextlib.suppress(Exception):
            await self.nc.close()
        agen = self._agen
        self._agen = None
        if agen is not None and not getattr(agen, "ag_running", False):
            with contextlib.suppress(Exception):
                await agen.aclose()


def _spawn_close(link: _Link) -> None:
    link.loop.create_task(link.close())


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, for error messages naming a cause."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@final
class ConnectionLog:
    """What the connections of one client (or one `serve`) report through nats-py's
    ``error_cb``: the errors are remembered, and an outage is logged in one line.

    nats-py retries a connection that fails, calling ``error_cb`` on every attempt (60
    attempts two seconds apart by default). The first error of an outage (an error while
    not connected) is logged as a warning; the next ones only update `last` until a
    connection succeeds again, because the error that ends the outage for good reaches the
    caller as an exception naming it. Errors while connected are logged each.
    """

    __slots__ = ("last", "quiet", "refused")

    def __init__(self) -> None:
        self.last: Exception | None = None
        self.refused: Exception | None = None  # the last error that refused the credentials
        self.quiet = False

    def error(self, exc: Exception, log: bool, outage: bool) -> None:
        """Remember *exc*; log it (if *log*) unless it is not the first of an *outage*."""
        self.last = exc
        text = str(exc).lower()
        if "authorization" in text or "authentication" in text:
            self.refused = exc
        if log and not self.quiet:
            if outage:
                self.quiet = True
                logger.warning(
                    "asyncmp.nats: NATS connection error (the next ones are not logged until "
                    "a connection succeeds): %s",
                    describe(exc),
                )
            else:
                logger.warning("asyncmp.nats: NATS error: %s", describe(exc))

    def connected(self) -> None:
        self.quiet = False
        self.last = None
        self.refused = None

    def failure(self, servers: object, within: float | None = None) -> Exception:
        """The error for a connection that could not be made (*within* seconds)."""
        if self.refused is not None:
            error: Exception = PermissionError(
                f"the NATS server refused the credentials: {self.refused}"
            )
            error.__cause__ = self.refused
            return error
        when = "" if within is None else f" within {seconds(within)} seconds"
        cause = "no answer" if self.last is None else describe(self.last)
        error = ServerDisappeared(f"cannot connect to NATS at {servers}{when}: {cause}")
        error.__cause__ = self.last
        return error


async def connect_nats(
    options: dict[str, Any],
    timeout: float | None = None,
    *,
    log: ConnectionLog | None = None,
    on_lost: Callable[[Callable[[], BaseException]], Awaitable[None]] | None = None,
) -> NatsClient:
    """Open a nats-py connection; failures become asyncmp errors with the cause attached.

    nats-py reports why a connection attempt failed only to its ``error_cb`` (and then
    raises a generic "no servers"), so the callback is wrapped to remember the errors (in
    *log*): a refused credential (in any attempt) becomes `PermissionError`, anything else
    `ServerDisappeared` naming the URL and the last error. With a *timeout*, connecting
    (nats-py's retries included) gives up after that many seconds.

    Once connected, *on_lost* is called (with a factory of the `ServerDisappeared` to raise)
    if nats-py closes the connection for good on its own: reconnection attempts exhausted,
    or the NATS server ending the connection with an error.
    """
    log = ConnectionLog() if log is None else log
    servers = options["servers"]
    user_error_cb = options.get("error_cb")
    user_reconnected_cb = options.get("reconnected_cb")
    user_closed_cb = options.get("closed_cb")
    nc = nats.aio.client.Client()
    connected = False

    async def error_cb(exc: Exception) -> None:
        log.error(exc, log=user_error_cb is None, outage=not nc.is_connected)
        if user_error_cb is not None:
            await user_error_cb(exc)

    async def reconnected_cb() -> None:
        log.connected()
        if user_reconnected_cb is not None:
            await user_reconnected_cb()

    async def closed_cb() -> None:
        if user_closed_cb is not None:
            await user_closed_cb()
        if connected and on_lost is not None:
            cause = log.last or nc.last_error

            def lost() -> BaseException:
                text = "" if cause is None else f": {describe(cause)}"
                error = ServerDisappeared(
                    f"the connection to NATS at {servers} was closed for good{text}"
                )
                error.__cause__ = cause
                return error

            await on_lost(lost)

    callbacks = {"error_cb": error_cb, "reconnected_cb": reconnected_cb, "closed_cb": closed_cb}
    try:
        if timeout is None:
            await nc.connect(**{**options, **callbacks})
        else:
            await asyncio.wait_for(nc.connect(**{**options, **callbacks}), timeout)
    except BaseException as exc:
        log.quiet = True  # what closing the failed connection reports is not news
        with contextlib.suppress(Exception):
            await nc.close()
        if isinstance(exc, asyncio.TimeoutError) and timeout is not None:
            error = log.failure(servers, timeout)  # our deadline (wait_for's)
        elif isinstance(exc, (nats.errors.Error, OSError, asyncio.TimeoutError)):
            if not isinstance(exc, nats.errors.NoServersError):
                log.error(exc, log=False, outage=True)
            error = log.failure(servers)
        else:
            raise
        raise error from error.__cause__
    log.connected()
    connected = True
    return nc


async def settle(nc: NatsClient) -> None:
    """Return once the NATS server has processed every command *nc* sent so far: what it
    subscribed to is then reachable from any other connection.

    nats-py's ``flush()`` alone does not promise that: it writes its PING straight to the
    socket while the commands before it (the SUBs just made) may still wait in its pending
    buffer for the flusher task, so the PONG can come back before the server has seen them;
    a service that then reported itself started answered a first request from elsewhere
    with "no responders". Pushing the buffer out through the flusher first, then flushing,
    restores the order (nats-py 2.6 to 2.16 at least).
    """
    # Shielded in a task of its own: nats-py's forced flush swallows a CancelledError raised
    # in its wait, which would lose the caller's cancellation.
    await asyncio.shield(nc._flush_pending(force_flush=True))
    await nc.flush()


@final
class _IOThread:
    """A daemon thread running an asyncio loop, for blocking callers and trio tasks."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def stop(self, link: _Link | None, join: bool = True) -> None:
        async def close_and_stop() -> None:
            try:
                if link is not None:
                    await link.close()
            finally:
                self.loop.stop()

        def start() -> None:
            self.loop.create_task(close_and_stop())

        try:
            self.loop.call_soon_threadsafe(start)
        except RuntimeError:
            return
        if join and threading.current_thread() is not self.thread and get_running_loop() is None:
            self.thread.join(timeout=5)


@final
class Hub:
    """What a client and its clones share: options, codec, links and the I/O thread."""

    def __init__(
        self,
        subject: str,
        options: dict[str, Any],
        timeout: float | None,
        encode: Callable[[Any], bytes],
    ) -> None:
        self.subject = subject
        self.options = options
        self.timeout = timeout
        self.encode = encode
        self.lock = threading.Lock()
        self.links: dict[asyncio.AbstractEventLoop, _Link] = {}
        self._connecting: dict[asyncio.AbstractEventLoop, asyncio.Future[None]] = {}
        self._io: _IOThread | None = None
        self.clients = 1
        self.closed = False
        self._closing: set[asyncio.Task[None]] = set()
        self.log = ConnectionLog()

    async def link_here(self, timeout: float | None = None) -> _Link:
        """The link of the running asyncio loop, opened on first use.

        Waits at most *timeout* seconds for the connection, then raises `ServerDisappeared`
        naming the URL and the last connection error (`PermissionError` if the
        credentials were refused).
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self.lock:
                if self.closed:
                    raise Closed("this client is closed")
                link = self.links.get(loop)
                if link is not None and not link.closed:
                    return link
                fut = self._connecting.get(loop)
                owner = fut is None
                if owner:
                    fut = self._connecting[loop] = loop.create_future()
                    for dead in [lp for lp in self.links if lp.is_closed()]:
                        del self.links[dead]
            assert fut is not None
            remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
            if not owner:
                # Another task is connecting: wait for it (within our own deadline), then
                # look again (it may have failed).
                try:
                    await asyncio.wait_for(asyncio.shield(fut), remaining)
                except asyncio.TimeoutError:
                    error = self.log.failure(self.options["servers"], timeout)
                    raise error from error.__cause__
                continue
            try:
                link = await _Link.open(self, remaining)
                with self.lock:
                    closed = self._is_closed()  # (a method: it changes while we await)
                    if not closed:
                        self.links[loop] = link
                if closed:
                    await link.close()
                    raise Closed("this client is closed")
                return link
            finally:
                with self.lock:
                    del self._connecting[loop]
                if not fut.done():
                    fut.set_result(None)

    def _is_closed(self) -> bool:
        return self.closed

    def run_on_io(
        self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any
    ) -> concurrent.futures.Future[T]:
        """Run ``fn(*args)`` on the I/O loop (started on first need); raises `Closed` once
        the client is closed. Scheduled under the lock, so that it runs before the loop
        stops (see the module's invariants)."""
        with self.lock:
            if self.closed:
                raise Closed("this client is closed")
            if self._io is None:
                self._io = _IOThread(f"asyncmp.nats I/O ({self.subject})")
            return asyncio.run_coroutine_threadsafe(fn(*args), self._io.loop)

    def io_link_blocking(self, timeout: float | None) -> _Link:
        """The I/O loop's link, for a plain thread: waits at most *timeout* seconds for the
        connection (see `link_here`)."""
        cf = self.run_on_io(self.link_here, timeout)
        try:
            return cf.result(timeout)
        except concurrent.futures.CancelledError:  # the I/O loop stopped: the client closed
            raise Closed("this client is closed") from None
        except concurrent.futures.TimeoutError:
            if not cf.done():
                error = self.log.failure(self.options["servers"], timeout)
                raise error from error.__cause__
            raise

    async def io_link_async(self) -> _Link:
        """The I/O loop's link, for a trio task (waits at most the client's timeout)."""
        cf = self.run_on_io(self.link_here, self.timeout)
        try:
            link: _Link = await await_future(cf)
        except concurrent.futures.CancelledError:
            raise Closed("this client is closed") from None
        return link

    def io_link_now(self) -> _Link | None:
        io = self._io
        if io is None:
            return None
        link = self.links.get(io.loop)
        return link if link is not None and not link.closed else None

    def close(self, join: bool = True) -> asyncio.Task[None] | None:
        """Close every link; return the closing task of the running loop's link, if any.

        *join*: wait (a few seconds at most) for the I/O thread to end — not in a finalizer,
        which never waits."""
        with self.lock:
            if self.closed:
                return None
            self.closed = True
            links = list(self.links.values())
            self.links.clear()
            io = self._io
        here = get_running_loop()
        mine: asyncio.Task[None] | None = None
        io_link = None
        for link in links:
            if io is not None and link.loop is io.loop:
                io_link = link
            elif link.loop is here:
                mine = here.create_task(link.close())
                self._closing.add(mine)
                mine.add_done_callback(self._closing.discard)
            else:
                with contextlib.suppress(RuntimeError):  # the loop is closed: so is the link
                    link.loop.call_soon_threadsafe(_spawn_close, link)
        if io is not None:
            io.stop(io_link, join)
        return mine


async def await_future(cf: concurrent.futures.Future[Any]) -> Any:
    """Await a `concurrent.futures.Future` from any event loop (asyncio or trio)."""
    if not cf.done():
        lock = threading.Lock()
        taken = False
        waiter = new_async_waiter()

        def on_done(_: object) -> None:
            nonlocal taken
            with lock:
                if taken:
                    return
                taken = True
            wake(waiter)

        def deregister() -> bool:
            nonlocal taken
            with lock:
                if taken:
                    return False
                taken = True
                return True

        cf.add_done_callback(on_done)
        await park(waiter, deregister)
    return cf.result()
