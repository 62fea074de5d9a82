"""`serve`: requests arriving on a NATS subject become requests of a local asyncmp server.

One `_Server` per served subject (an endpoint of a service) hands requests to its local
client and publishes the outcomes; the endpoints of one `serve` or `serve_service` call share
a `_Run`: one NATS connection and one lifetime.

Invariants:
- Everything runs on the loop of the `serve` call (nats-py's subscription callbacks and the
  tasks they start), so the state needs no lock.
- A request that was handed to the local server is in ``in_flight`` — under a number of its
  own, not its reply subject: any NATS client may send many requests with one reply subject
  and tell the answers apart by their payloads — until exactly one of the following takes it
  out, and whoever takes it out counts it in the endpoint's
  statistics and answers it (or not): the code that waits for its reply, with the local
  server's outcome; a cancel from its requester (no answer: nobody is waiting; a cancel
  names a reply subject and withdraws every request in hand with it); the shut-down
  (``NoReply``).
- The requests that arrive together are collected by one task, not one each: a burst of
  arrivals is queued in ``arrived`` and one `collect` task looks at them after the local
  server has run; a reply already in is answered there, and only a request still waiting
  for its reply gets a task of its own (``in_flight`` holds ``None`` for the task until
  then). While ``arrived`` is not empty, ``collector`` is the task that will empty it.
- Every request that is not handed over (a cancel came first, it cannot be decoded, the
  local server is gone) is counted and answered where it is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio

from .._channel import Client as LocalClient
from .._errors import Closed, NoReply, ServerDisappeared, WouldBlock
from .._lowlevel._backend import running_asyncio_loop
from .._pending import PendingReply
from ._codec import Codec, resolve_codec
from ._errors import MalformedMessage, PayloadTooLarge, failure_reply
from ._link import connect_nats, settle
from ._wire import (
    ERROR,
    ERROR_CODE,
    GONE,
    NO_REPLY,
    NOREPLY,
    SERVER_GONE,
    STATUS,
    TOO_LARGE,
    cancel_subject,
    header_size,
)

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

__all__ = ("serve",)

logger = logging.getLogger("asyncmp")

_GONE_HEADERS: Final = {
    STATUS: GONE,
    ERROR: "asyncmp.ServerDisappeared: the service's local server was closed before it took "
    "the request (safe to retry)",
    ERROR_CODE: SERVER_GONE,
}
_NOREPLY_HEADERS: Final = {
    STATUS: NOREPLY,
    ERROR: "asyncmp.NoReply: the request was not answered (its reply context was closed "
    "unanswered, or the service stopped)",
    ERROR_CODE: NO_REPLY,
}

# Cancel messages travel on another subject than requests, so serve() may process a cancel
# before its request: it remembers the reply subjects of cancels for requests it does not
# hold, for _CANCEL_MEMORY_SECONDS and at most _CANCEL_MEMORY_SIZE of them (the oldest are
# forgotten first), and drops a request that arrives with a remembered reply subject.
_CANCEL_MEMORY_SECONDS: Final = 60.0
_CANCEL_MEMORY_SIZE: Final = 10_000

_now_ns = time.perf_counter_ns
_Task = asyncio.Task

# A request in hand: its reply subject, its task (None while it waits for its collector),
# its pending reply (None while a full bounded channel makes the task wait for room) and
# when it arrived (perf_counter_ns).
_InFlight = tuple[str, "asyncio.Task[None] | None", "PendingReply[Any] | None", int]


def _spawn(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    # loop.create_task(coro), without its Python layers where no task factory is set.
    loop = asyncio.get_running_loop()
    if loop.get_task_factory() is None:
        return _Task(coro, loop=loop)
    return loop.create_task(coro)


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
        codec: ``"json"`` (default), ``"msgpack"``, ``"bytes"`` or a
            `Codec`; the clients must use the same.
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
    headers, does not fit in a NATS message (its message names the original failure,
    cut to fit). Every failure reply also carries the NATS Services framework's
    ``Nats-Service-Error`` and ``Nats-Service-Error-Code`` headers (see the table of codes
    on the NATS services page), so that any NATS client reads it as an error; to serve as
    a discoverable service with statistics, use
    `serve_service`.
    """
    check_asyncio("serve")
    if not isinstance(client, LocalClient):
        raise TypeError(f"serve() takes an asyncmp.Client, not {client!r}")
    check_subject(subject)
    check_queue(queue)
    resolved = resolve_codec(codec)
    run = _Run()
    await run.connect({**nats_options, "servers": servers})
    try:
        server = _Server(run, client, subject, queue, resolved)
        subs = await server.subscribe()
        await settle(run.nc)
        task_status.started()
        await run.serve(subs)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await run.shut_down()


def check_asyncio(what: str) -> None:
    """Raise `RuntimeError` unless running on asyncio (nats-py is asyncio-only)."""
    if running_asyncio_loop() is None:
        raise RuntimeError(f"asyncmp.nats.{what}() runs on asyncio (nats-py is asyncio-only)")


def check_subject(subject: object) -> None:
    """Raise `ValueError` unless *subject* is a NATS subject (wildcards allowed)."""
    if (
        not isinstance(subject, str)
        or not subject
        or any(c.isspace() for c in subject)
        or any(not token for token in subject.split("."))
        or ">" in subject.split(".")[:-1]
    ):
        raise ValueError(f"subject must be a non-empty NATS subject, not {subject!r}")


def check_queue(queue: object) -> None:
    """Raise unless *queue* is a NATS queue group name, or None or "" (no queue group)."""
    if queue is not None and (not isinstance(queue, str) or any(c.isspace() for c in queue)):
        raise ValueError(f"queue must be a queue group name (no spaces) or None, not {queue!r}")


class _Run:
    """What the endpoints of one `serve` or `serve_service` call share: the NATS connection
    and the lifetime. `stopped` is set when one local server is gone or when nats-py gives
    the connection up (`lost`)."""

    nc: NatsClient

    def __init__(self) -> None:
        self.servers: list[_Server] = []
        self.stopped = anyio.Event()
        self.lost: BaseException | None = None
        self.shutting_down = False

    async def connect(self, options: dict[str, Any]) -> None:
        async def lost(error: Callable[[], BaseException]) -> None:
            self.connection_lost(error())

        self.nc = await connect_nats(options, on_lost=lost)

    def connection_lost(self, error: BaseException) -> None:
        if not self.shutting_down and self.lost is None:
            self.lost = error
            self.stopped.set()

    async def serve(self, subs: Sequence[Subscription]) -> None:
        """Serve until stopped; then raise `lost`, or (a local server is gone) unsubscribe
        and finish the requests in hand."""
        await self.stopped.wait()
        if self.lost is not None:
            # nats-py gave the connection up: nothing more can be received or answered.
            raise self.lost
        # A local server is gone: stop taking requests (the other members of the queue
        # groups take them), finish the ones in hand.
        for sub in subs:
            await sub.unsubscribe()
        while tasks := [task for s in self.servers for task in s.tasks_in_hand()]:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def shut_down(self) -> None:
        # Requests still in hand will not be answered: withdraw them from the local servers
        # and tell their requesters at once instead of letting them time out (if the
        # connection still stands).
        self.shutting_down = True
        for server in self.servers:
            await server.withdraw_all()
        with contextlib.suppress(Exception):
            await self.nc.drain()
        with contextlib.suppress(Exception):
            await self.nc.close()


class _Server:
    """One served subject (an endpoint of a service): its requests, its statistics."""

    def __init__(
        self,
        run: _Run,
        client: LocalClient[Any, Any],
        subject: str,
        queue: str | None,
        codec: Codec,
        name: str = "",
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.run = run
        self.nc = run.nc
        self.client = client
        self.subject = subject
        self.queue = queue or None
        self.codec = codec
        self.name = name
        self.metadata = metadata
        self.stopped = run.stopped
        # Requests handed to the local server and not answered yet, by a number of their own
        # (many may share a reply subject), with their reply subjects, tasks, pending
        # replies and when they arrived (perf_counter_ns).
        self.in_flight: dict[int, _InFlight] = {}
        self._numbers = itertools.count()
        # Handed over, not yet looked at by a collector (module doc), and that collector.
        self.arrived: deque[tuple[int, str, object, PendingReply[Any], int]] = deque()
        self.collector: asyncio.Task[None] | None = None
        # Reply subjects of cancels that came before their request, with the time they
        # came, oldest first (see _CANCEL_MEMORY_SECONDS).
        self.cancelled: OrderedDict[str, float] = OrderedDict()
        self.reset_stats()
        run.servers.append(self)

    def reset_stats(self) -> None:
        # The statistics of the NATS Services framework: requests finished (answered,
        # failed or withdrawn), those answered with an error, the nanoseconds from arrival
        # to answer (or withdrawal) of all of them, the last error as "code:description";
        # and asyncmp's own: requests withdrawn because their requester gave up.
        self.num_requests = 0
        self.num_errors = 0
        self.processing_time = 0
        self.last_error = ""
        self.num_cancelled = 0

    async def subscribe(self) -> list[Subscription]:
        nc = self.nc
        return [
            await nc.subscribe(self.subject, queue=self.queue or "", cb=self.on_request),
            await nc.subscribe(cancel_subject(self.subject), cb=self.on_cancel),
        ]

    def count(self, start: int, headers: dict[str, str] | None) -> None:
        """Count a finished request that arrived at *start*, an error if its reply has
        *headers* (all of asyncmp's failure replies carry the standard error headers)."""
        self.num_requests += 1
        self.processing_time += _now_ns() - start
        if headers is not None:
            self.num_errors += 1
            self.last_error = f"{headers[ERROR_CODE]}:{headers[ERROR]}"

    async def on_request(self, msg: Msg) -> None:
        reply = msg.reply
        if not reply:
            logger.warning(
                "asyncmp.nats: dropped a message on %r without a reply subject", msg.subject
            )
            return
        start = _now_ns()
        if self.cancelled and self.cancelled.pop(reply, None) is not None:
            # Its requester gave up before it arrived: nobody is waiting for it.
            self.num_cancelled += 1
            self.count(start, None)
            return
        try:
            request = self.codec.decode(msg.data)
        except Exception as exc:
            error = MalformedMessage(f"the request cannot be decoded: {exc}")
            await self.fail(reply, error, start)
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
            self.count(start, _GONE_HEADERS)
            await self.publish(reply, b"", _GONE_HEADERS)
            return
        key = next(self._numbers)
        if pending is None:  # it waits for room: a task of its own
            task = _spawn(self.handle(key, reply, request, None, start))
            self.in_flight[key] = reply, task, None, start
            return
        self.in_flight[key] = reply, None, pending, start
        self.arrived.append((key, reply, request, pending, start))
        if self.collector is None:
            self.collector = _spawn(self.collect())

    async def collect(self) -> None:
        """Look at the requests that arrived (module doc): answer those whose reply is in,
        give the others a task each. Runs after the local server's task, which the first
        of them woke, so a server that answers at once has answered them all."""
        arrived = self.arrived
        in_flight = self.in_flight
        try:
            while arrived:
                key, reply, request, pending, start = arrived.popleft()
                if key not in in_flight:
                    continue  # cancelled or withdrawn meanwhile: answered where that happened
                if pending.done():
                    # No waiting (awaiting a done reply does not suspend), only publishing.
                    await self.handle(key, reply, request, pending, start)
                else:
                    task = _spawn(self.handle(key, reply, request, pending, start))
                    in_flight[key] = reply, task, pending, start
        finally:
            self.collector = None

    def tasks_in_hand(self) -> list[asyncio.Task[None]]:
        """The tasks that will answer the requests in flight: their own, and the collector
        of those that have none yet."""
        tasks = [entry[1] for entry in self.in_flight.values() if entry[1] is not None]
        if self.collector is not None:
            tasks.append(self.collector)
        return tasks

    async def on_cancel(self, msg: Msg) -> None:
        reply = msg.data.decode(errors="replace")
        keys = [key for key, entry in self.in_flight.items() if entry[0] == reply]
        if not keys:
            self.remember_cancel(reply)
            return
        # Withdraw the local requests (asyncmp semantics: the handler never sees them, or
        # its reply() returns False) and stop waiting for them. The entries are removed
        # here, not only by handle(): a task cancelled before it first runs never runs its
        # body.
        for key in keys:
            _, task, pending, start = self.in_flight.pop(key)
            if pending is not None:
                pending.cancel()
            if task is not None:  # else its collector passes it by
                task.cancel()
            self.num_cancelled += 1
            self.count(start, None)

    def remember_cancel(self, reply: str) -> None:
        # Its request is not in hand: it may still be on its way (or it was answered already,
        # or another server of the queue group holds it). Bounded in time and in size.
        cancelled = self.cancelled
        now = asyncio.get_running_loop().time()
        cancelled[reply] = now
        expired = now - _CANCEL_MEMORY_SECONDS
        while len(cancelled) > _CANCEL_MEMORY_SIZE or cancelled[next(iter(cancelled))] <= expired:
            cancelled.popitem(last=False)

    async def handle(
        self,
        key: int,
        reply: str,
        request: object,
        pending: PendingReply[Any] | None,
        start: int,
    ) -> None:
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
                await self.answer(key, reply, b"", _GONE_HEADERS, start)
                return
            except NoReply:
                await self.answer(key, reply, b"", _NOREPLY_HEADERS, start)
                return
            except BaseException as exc:  # whatever the handler passed to rctx.fail()
                if self.in_flight.pop(key, None) is not None:
                    await self.fail(reply, exc, start)
                return
            try:
                payload = self.codec.encode(value)
            except Exception as exc:
                error = TypeError(f"the reply cannot be encoded: {exc}")
                if self.in_flight.pop(key, None) is not None:
                    await self.fail(reply, error, start)
                return
            nc = self.nc
            if len(payload) > nc.max_payload:
                too_large = PayloadTooLarge(
                    f"the reply is {len(payload)} bytes; the NATS server accepts at most "
                    f"{nc.max_payload} (its max_payload)"
                )
                if self.in_flight.pop(key, None) is not None:
                    await self.fail(reply, too_large, start)
                return
            # answer(key, reply, payload, None, start), inlined: every request that succeeds.
            if self.in_flight.pop(key, None) is not None:
                self.num_requests += 1
                self.processing_time += _now_ns() - start
                try:
                    await nc.publish(reply, payload)
                except Exception as exc:
                    if not nc.is_closed:  # closed for good: serve() is raising that already
                        logger.warning(
                            "asyncmp.nats: could not publish a reply on %r: %r", reply, exc
                        )
        finally:
            # Every path above takes the request out of flight (or finds it taken); this is
            # for the one that does not: the task cancelled by its loop shutting down.
            self.in_flight.pop(key, None)

    async def answer(
        self, key: int, reply: str, payload: bytes, headers: dict[str, str] | None, start: int
    ) -> None:
        """Count and publish the outcome of an in-flight request, unless a cancel or the
        shut-down took it out of flight first (they counted it)."""
        if self.in_flight.pop(key, None) is not None:
            self.count(start, headers)
            await self.publish(reply, payload, headers)

    async def fail(self, reply: str, exc: BaseException, start: int) -> None:
        """Count and publish a failure reply for *exc* (not in flight, or taken out)."""
        # Bounded so that header and payload fit in max_payload: a bigger message makes
        # nats-server drop the connection (every request in hand lost), and one whose
        # payload alone is too big is refused by nats-py (the requester never hears).
        max_payload = self.nc.max_payload
        failure = failure_reply(exc, max_payload)
        if failure is None:
            self.count(start, {ERROR_CODE: TOO_LARGE, ERROR: "asyncmp.nats.PayloadTooLarge"})
            logger.warning(
                "asyncmp.nats: the NATS server's max_payload (%d) is too small for any failure "
                "reply; the requester on %r will not hear of %r",
                max_payload,
                reply,
                exc,
            )
            return
        headers, payload = failure
        self.count(start, headers)
        await self.publish(reply, payload, headers)

    async def publish(self, reply: str, payload: bytes, headers: dict[str, str] | None) -> None:
        if headers is not None and len(payload) + header_size(headers) > self.nc.max_payload:
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

    async def withdraw_all(self) -> None:
        """Withdraw the requests in hand and answer them `NoReply` (at the shut-down)."""
        entries = list(self.in_flight.values())
        self.in_flight.clear()
        # A collector still running finds nothing left (it may be publishing a reply it
        # took out of flight before: that one is answered already).
        self.arrived.clear()
        for _, task, pending, _ in entries:
            if pending is not None:
                pending.cancel()
            if task is not None:
                task.cancel()
        for reply, task, _, start in entries:
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task
            self.count(start, _NOREPLY_HEADERS)
            if not self.nc.is_closed:
                await self.publish(reply, b"", _NOREPLY_HEADERS)
