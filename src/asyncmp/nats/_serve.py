"""`serve`: requests arriving on a NATS subject become requests of a local asyncmp server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio

from .._channel import Client as LocalClient
from .._errors import Closed, NoReply, ServerDisappeared, WouldBlock
from .._reply import PendingReply
from ._codec import Codec, resolve_codec
from ._errors import MalformedMessage, PayloadTooLarge, encode_bounded_failure
from ._link import connect_nats
from ._wire import FAIL, GONE, NOREPLY, STATUS, cancel_subject

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg

__all__ = ("serve",)

logger = logging.getLogger("asyncmp")

_FAIL_HEADERS = {STATUS: FAIL}
_NOREPLY_HEADERS = {STATUS: NOREPLY}
_GONE_HEADERS = {STATUS: GONE}


def _header_size(headers: dict[str, str]) -> int:
    # The NATS header block: "NATS/1.0", then one "Key: Value" line per header, then an
    # empty line, each ended by CRLF. nats-server counts it against max_payload together with
    # the payload (and drops a connection that publishes more); nats-py checks the payload only.
    return len("NATS/1.0\r\n") + sum(len(f"{k}: {v}\r\n") for k, v in headers.items()) + 2


_FAIL_HEADER_SIZE: Final = _header_size(_FAIL_HEADERS)

# Cancel messages travel on another subject than requests, so serve() may process a cancel
# before its request: it remembers the reply subjects of cancels for requests it does not
# hold, for _CANCEL_MEMORY_SECONDS and at most _CANCEL_MEMORY_SIZE of them (the oldest are
# forgotten first), and drops a request that arrives with a remembered reply subject.
_CANCEL_MEMORY_SECONDS: Final = 60.0
_CANCEL_MEMORY_SIZE: Final = 10_000


async def serve(
    client: LocalClient[Any, Any],
    subject: str,
    servers: str | list[str] = "nats://127.0.0.1:4222",
    *,
    queue: str | None = "asyncmp",
    codec: Codec | str = "json",
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    **nats_options: Any,
) -> None:
    """Serve *subject*: every request that arrives on it is sent through *client* to a
    local asyncmp server, and the outcome goes back on the request's reply subject.

    *client* is the client of any asyncmp server — usually the one
    `asyncmp.task.spawn` or `asyncmp.thread.spawn` returned — so a handler written for a
    local dispatch loop serves remote clients unchanged. Requests are handed over as they
    arrive; the local server's order and concurrency rules apply.

    Runs on an asyncio event loop (nats-py is asyncio-only) until cancelled, until the
    local server is gone (then it returns), or until its NATS connection is closed for good
    (then it raises `ServerDisappeared`). Start it with
    ``await task_group.start(serve, client, subject)`` to continue once it is subscribed.

    Args:
        client: the local server's client. `serve` does not close it.
        subject: the NATS subject to serve (wildcards allowed).
        servers: NATS server URL(s), as for `nats.connect`.
        queue: the NATS queue group: servers in the same group share the requests, each
            going to one of them (default ``"asyncmp"``). ``None`` gives every server every
            request, and the first reply wins.
        codec: ``"json"`` (default), ``"msgpack"`` or a [`Codec`][asyncmp.nats.Codec]; the
            clients must use the same.
        task_status: for `TaskGroup.start`: reported once the subscription is active.
        **nats_options: passed to `nats.connect` (``token``, ``user``, ``password``,
            ``max_reconnect_attempts``, ``reconnect_time_wait`` …).

    Raises:
        ServerDisappeared: the NATS server cannot be reached (once nats-py's connection
            attempts are spent), or the connection was closed for good while serving
            (reconnection attempts exhausted, or the NATS server ended it); the message
            names the URL and the cause.
        PermissionError: the NATS server refused the credentials.

    What the requester sees: the handler's reply; its `rctx.fail(exc)` as an error
    carrying the exception's type name and message; `NoReply` when the reply context is
    closed unanswered, or when `serve` is stopped while the request is in hand;
    `ServerDisappeared` when the local server was closed before taking it;
    `MalformedMessage` when the request cannot be decoded (the server keeps serving);
    `PayloadTooLarge` when the reply, or the failure record of `rctx.fail(exc)` with its
    header, does not fit in a NATS message (its message names the original failure,
    cut to fit).
    """
    if _running_loop() is None or _on_trio():
        raise RuntimeError("asyncmp.nats.serve() runs on asyncio (nats-py is asyncio-only)")
    if not isinstance(client, LocalClient):
        raise TypeError(f"serve() takes an asyncmp.Client, not {client!r}")
    if not isinstance(subject, str) or not subject:
        raise ValueError(f"subject must be a non-empty NATS subject, not {subject!r}")
    resolved = resolve_codec(codec)
    server: _Server | None = None

    async def lost(error: Callable[[], BaseException]) -> None:
        if server is not None:
            server.connection_lost(error())

    nc = await connect_nats({**nats_options, "servers": servers}, on_lost=lost)
    server = _Server(client, nc, resolved)
    try:
        subs = [
            await nc.subscribe(subject, queue=queue or "", cb=server.on_request),
            await nc.subscribe(cancel_subject(subject), cb=server.on_cancel),
        ]
        await nc.flush()
        task_status.started()
        await server.stopped.wait()
        if server.lost is not None:
            # nats-py gave the connection up: nothing more can be received or answered.
            raise server.lost
        # The local server is gone: stop taking requests, finish the ones in hand.
        for sub in subs:
            await sub.unsubscribe()
        while server.in_flight:
            tasks = [task for task, _ in server.in_flight.values()]
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await server.shut_down()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    return asyncio._get_running_loop()


def _on_trio() -> bool:
    from .._lowlevel._backend import on_trio as trio_running

    return trio_running()


class _Server:
    """The state of one `serve` call; everything runs on its loop."""

    def __init__(self, client: LocalClient[Any, Any], nc: NatsClient, codec: Codec) -> None:
        self.client = client
        self.nc = nc
        self.codec = codec
        # Requests handed to the local server and not answered yet, by reply subject.
        self.in_flight: dict[str, tuple[asyncio.Task[None], PendingReply[Any] | None]] = {}
        # Reply subjects of cancels that came before their request, with the time they
        # came, oldest first (see _CANCEL_MEMORY_SECONDS).
        self.cancelled: OrderedDict[str, float] = OrderedDict()
        self.stopped = anyio.Event()
        self.lost: BaseException | None = None
        self.shutting_down = False

    def connection_lost(self, error: BaseException) -> None:
        if not self.shutting_down and self.lost is None:
            self.lost = error
            self.stopped.set()

    async def on_request(self, msg: Msg) -> None:
        reply = msg.reply
        if not reply:
            logger.warning(
                "asyncmp.nats: dropped a message on %r without a reply subject", msg.subject
            )
            return
        if self.cancelled and self.cancelled.pop(reply, None) is not None:
            return  # its requester gave up before it arrived: nobody is waiting for it
        try:
            request = self.codec.decode(msg.data)
        except Exception as exc:
            await self.fail(reply, MalformedMessage(f"the request cannot be decoded: {exc}"))
            return
        # Queue it now (the handler may take it before the task below first runs); only
        # a full bounded channel makes the task wait for room with send().
        pending: PendingReply[Any] | None
        try:
            pending = self.client.request(request)
        except WouldBlock:
            pending = None
        except (ServerDisappeared, Closed):
            self.stopped.set()
            await self.publish(reply, b"", _GONE_HEADERS)
            return
        task = asyncio.get_running_loop().create_task(self.handle(reply, request, pending))
        self.in_flight[reply] = task, pending

    async def on_cancel(self, msg: Msg) -> None:
        reply = msg.data.decode(errors="replace")
        entry = self.in_flight.pop(reply, None)
        if entry is None:
            self.remember_cancel(reply)
            return
        # Withdraw the local request (asyncmp semantics: the handler never sees it, or its
        # reply() returns False) and stop waiting for it. The entry is removed here, not
        # only by handle(): a task cancelled before it first runs never runs its body.
        task, pending = entry
        if pending is not None:
            pending.cancel()
        task.cancel()

    def remember_cancel(self, reply: str) -> None:
        # Its request is not in hand: it may still be on its way (or it was answered already,
        # or another server of the queue group holds it). Bounded in time and in size.
        cancelled = self.cancelled
        now = asyncio.get_running_loop().time()
        cancelled[reply] = now
        expired = now - _CANCEL_MEMORY_SECONDS
        while len(cancelled) > _CANCEL_MEMORY_SIZE or cancelled[next(iter(cancelled))] <= expired:
            cancelled.popitem(last=False)

    async def handle(self, reply: str, request: object, pending: PendingReply[Any] | None) -> None:
        try:
            try:
                if pending is None:
                    value = await self.client.send(request)
                else:
                    value = await pending
            except asyncio.CancelledError:
                raise
            except (ServerDisappeared, Closed):
                self.stopped.set()
                await self.publish(reply, b"", _GONE_HEADERS)
                return
            except NoReply:
                await self.publish(reply, b"", _NOREPLY_HEADERS)
                return
            except BaseException as exc:  # whatever the handler passed to rctx.fail()
                await self.fail(reply, exc)
                return
            try:
                payload = self.codec.encode(value)
            except Exception as exc:
                error = TypeError(f"the reply cannot be encoded: {exc}")
                await self.fail(reply, error)
                return
            if len(payload) > self.nc.max_payload:
                too_large = PayloadTooLarge(
                    f"the reply is {len(payload)} bytes; the NATS server accepts at most "
                    f"{self.nc.max_payload} (its max_payload)"
                )
                await self.fail(reply, too_large)
                return
            await self.publish(reply, payload, None)
        finally:
            self.in_flight.pop(reply, None)

    async def fail(self, reply: str, exc: BaseException) -> None:
        # Bounded so that header and payload fit in max_payload: a bigger message makes
        # nats-server drop the connection (every request in hand lost), and one whose
        # payload alone is too big is refused by nats-py (the requester never hears).
        payload = encode_bounded_failure(exc, self.nc.max_payload - _FAIL_HEADER_SIZE)
        if payload is None:
            logger.warning(
                "asyncmp.nats: the NATS server's max_payload (%d) is too small for any failure "
                "reply; the requester on %r will not hear of %r",
                self.nc.max_payload,
                reply,
                exc,
            )
            return
        await self.publish(reply, payload, _FAIL_HEADERS)

    async def publish(self, reply: str, payload: bytes, headers: dict[str, str] | None) -> None:
        if headers is not None and len(payload) + _header_size(headers) > self.nc.max_payload:
            logger.warning(
                "asyncmp.nats: a %s reply does not fit in the NATS server's max_payload (%d); "
                "the requester on %r will not hear of it",
                headers.get(STATUS),
                self.nc.max_payload,
                reply,
            )
            return
        try:
            await self.nc.publish(reply, payload, headers=headers)
        except Exception as exc:
            if not self.nc.is_closed:  # closed for good: serve() is raising that already
                logger.warning("asyncmp.nats: could not publish a reply on %r: %r", reply, exc)

    async def shut_down(self) -> None:
        # Requests still in hand will not be answered: withdraw them from the local server
        # and tell their requesters at once instead of letting them time out (if the
        # connection still stands).
        self.shutting_down = True
        entries = list(self.in_flight.items())
        for _, (task, pending) in entries:
            if pending is not None:
                pending.cancel()
            task.cancel()
        for reply, (task, _) in entries:
            with contextlib.suppress(BaseException):
                await task
            if not self.nc.is_closed:
                await self.publish(reply, b"", _NOREPLY_HEADERS)
        with contextlib.suppress(Exception):
            await self.nc.drain()
        with contextlib.suppress(Exception):
            await self.nc.close()
