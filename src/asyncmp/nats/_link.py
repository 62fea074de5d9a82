"""Connections: one nats-py connection per event loop that uses a client.

nats-py is asyncio-only and binds a connection to the loop that opened it. A round trip
that hops between threads costs about a third of the throughput, so an asyncio task uses
a connection opened on its own loop (the *link* of that loop), and everything that cannot
(plain threads, trio tasks) uses the link of an I/O loop that the client runs in a daemon
thread of its own, started on first need.

Invariants:
- A `_Call` is PENDING, then DONE (outcome stored, waiter woken once) or GONE (its requester
  gave up). Every transition happens under ``hub.lock``; whoever makes it owns the wake-up.
- ``link.calls`` holds exactly the PENDING calls that were published on that link, by token;
  a reply, a timeout, the requester giving up or the link closing removes the call.
- Only the link's loop thread touches ``link.nc`` and the sweep timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any, Final, final

try:
    import nats
    import nats.errors
except ImportError as _exc:  # pragma: no cover - depends on the environment
    raise ImportError("asyncmp.nats needs nats-py: pip install 'asyncmp[nats]'") from _exc

from .._errors import Closed, ServerDisappeared
from .._wait import Waiter, new_async_waiter, park, wake
from ._wire import cancel_subject

if TYPE_CHECKING:
    import concurrent.futures

    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg

logger = logging.getLogger("asyncmp")

PENDING: Final = 0
DONE: Final = 1
GONE: Final = 2


@final
class _Call:
    """One request in flight. Fields other than ``hub`` are guarded by ``hub.lock``."""

    __slots__ = ("deadline", "error", "hub", "link", "msg", "state", "token", "waiter")

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.state: int = PENDING
        self.msg: Msg | None = None
        self.error: BaseException | None = None
        self.waiter: Waiter | None = None
        self.link: _Link | None = None
        self.token = ""
        self.deadline = 0.0

    def abandon(self) -> bool:
        """The requester gives up. True if it was still pending (now GONE); the server
        holding it is told, so that it withdraws it."""
        with self.hub.lock:
            if self.state != PENDING:
                return False
            self.state = GONE
            self.waiter = None
            link = self.link
            if link is not None:
                del link.calls[self.token]
        if link is not None:
            link.notify_cancel(self.token)
        return True


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
    async def open(cls, hub: Hub) -> _Link:
        nc = await connect_nats(hub.options)
        link = cls(hub, nc, asyncio.get_running_loop())
        try:
            await nc.subscribe(link.prefix + "*", cb=link._on_reply)
            await nc.flush()
        except BaseException:
            await nc.close()
            raise
        agen = link._agen = _closer(link)
        await agen.asend(None)
        return link

    @property
    def max_payload(self) -> int:
        return int(self.nc.max_payload)

    # -- the loop thread ---------------------------------------------------------------

    async def publish_call(
        self, subject: str, payload: bytes, call: _Call, timeout: float | None
    ) -> None:
        """Register *call* and publish its request (on this link's loop)."""
        token = str(next(self._tokens))
        with self.hub.lock:
            if call.state != PENDING:
                return  # given up before it was sent
            if self.closed:
                raise Closed("the client was closed")
            call.link = self
            call.token = token
            self.calls[token] = call
        if timeout is not None:
            call.deadline = self.loop.time() + timeout
            if self._sweeper is None:
                self._sweeper = self.loop.call_later(self._tick, self._sweep)
        try:
            await self.nc.publish(subject, payload, reply=self.prefix + token)
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
            if call.state != PENDING:
                return False
            call.state = DONE
            self.calls.pop(call.token, None)
            call.msg = msg
            call.error = error
            waiter = call.waiter
        if waiter is not None:
            wake(waiter)
        return True

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
            error = TimeoutError(f"no reply within {self.hub.timeout} seconds")
            if self.finish(call, None, error):
                self.notify_cancel(call.token)
        if more and not self.closed:
            self._sweeper = self.loop.call_later(self._tick, self._sweep)

    def notify_cancel(self, token: str) -> None:
        """Tell the server holding request *token* that its requester gave up (any thread)."""
        try:
            if _running_loop() is self.loop:
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

    async def close(self) -> None:
        """Close the connection; calls still pending fail with `Closed` (loop thread)."""
        with self.hub.lock:
            if self.closed:
                return
            self.closed = True
            pending = list(self.calls.values())
        for call in pending:
            self.finish(call, None, Closed("the client was closed while waiting for the reply"))
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


def _running_loop() -> asyncio.AbstractEventLoop | None:
    return asyncio._get_running_loop()


async def connect_nats(options: dict[str, Any]) -> NatsClient:
    """Open a nats-py connection; failures become asyncmp errors with the cause attached.

    nats-py reports why a connection attempt failed only to its ``error_cb`` (and then
    raises a generic "no servers"), so the callback is wrapped to remember the last error:
    a refused credential (in any attempt) becomes `PermissionError`, anything else
    `ServerDisappeared`.
    """
    errors: list[Exception] = []
    user_cb = options.get("error_cb")

    async def error_cb(exc: Exception) -> None:
        errors.append(exc)
        if user_cb is not None:
            await user_cb(exc)
        else:
            logger.warning("asyncmp.nats: NATS connection error: %r", exc)

    try:
        return await nats.connect(**{**options, "error_cb": error_cb})
    except (nats.errors.Error, OSError) as exc:
        seen = [*errors, exc] if isinstance(exc, nats.errors.NoServersError) else [exc]
        for cause in seen:
            text = str(cause).lower()
            if "authorization" in text or "authentication" in text:
                raise PermissionError(f"the NATS server refused the credentials: {cause}") from exc
        cause = seen[0]
        raise ServerDisappeared(f"cannot connect to NATS at {options['servers']}: {cause}") from exc


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

    def stop(self, link: _Link | None) -> None:
        async def close_and_stop() -> None:
            try:
                if link is not None:
                    await link.close()
            finally:
                self.loop.stop()

        try:
            asyncio.run_coroutine_threadsafe(close_and_stop(), self.loop)
        except RuntimeError:
            return
        if threading.current_thread() is not self.thread and _running_loop() is None:
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

    async def link_here(self) -> _Link:
        """The link of the running asyncio loop, opened on first use."""
        loop = asyncio.get_running_loop()
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
            if not owner:
                await asyncio.shield(fut)  # then look again (the opener may have failed)
                continue
            try:
                link = await _Link.open(self)
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

    def io_loop(self) -> asyncio.AbstractEventLoop:
        with self.lock:
            if self.closed:
                raise Closed("this client is closed")
            if self._io is None:
                self._io = _IOThread(f"asyncmp.nats I/O ({self.subject})")
            return self._io.loop

    def io_link_future(self) -> concurrent.futures.Future[_Link]:
        """The I/O loop's link, as a future (done at once when already open)."""
        loop = self.io_loop()
        return asyncio.run_coroutine_threadsafe(self.link_here(), loop)

    def io_link_now(self) -> _Link | None:
        io = self._io
        if io is None:
            return None
        link = self.links.get(io.loop)
        return link if link is not None and not link.closed else None

    def close(self) -> asyncio.Task[None] | None:
        """Close every link; return the closing task of the running loop's link, if any."""
        with self.lock:
            if self.closed:
                return None
            self.closed = True
            links = list(self.links.values())
            self.links.clear()
            io = self._io
        here = _running_loop()
        mine: asyncio.Task[None] | None = None
        io_link = None
        for link in links:
            if io is not None and link.loop is io.loop:
                io_link = link
            elif link.loop is here:
                mine = here.create_task(link.close())
                self._closing.add(mine)
                mine.add_done_callback(self._closing.discard)
            elif not link.loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(link.close(), link.loop)
        if io is not None:
            io.stop(io_link)
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
