"""The client: `asyncmp.Client`'s API, with the server at the other end of a NATS subject."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from .._closing import Closing
from .._errors import Closed, NoReply, ServerDisappeared
from .._lowlevel._backend import running_asyncio_loop
from .._lowlevel._check import check_timeout
from .._lowlevel._finalize import finalize
from .._lowlevel._format import seconds
from .._lowlevel._outcome import Failure
from .._lowlevel._public import NoPublicConstructor
from .._lowlevel._wake import ThreadWaiter, ensure_blocking_allowed, new_async_waiter
from .._pending import PendingReply as LocalPendingReply
from ._codec import Codec, resolve_codec
from ._errors import MalformedMessage, PayloadTooLarge, Registry, ServiceError
from ._link import Hub, _Call, _Link
from ._wire import (
    ERROR,
    ERROR_CODE,
    FAIL,
    GONE as WIRE_GONE,
    NATS_STATUS,
    NO_RESPONDERS,
    NOREPLY,
    STATUS,
)

if TYPE_CHECKING:
    from nats.aio.msg import Msg

__all__ = ("Client", "connect")

Req = TypeVar("Req")
Rep = TypeVar("Rep")


def connect(
    subject: str,
    servers: str | list[str] = "nats://127.0.0.1:4222",
    *,
    codec: Codec | str = "json",
    timeout: float | None = 30.0,
    errors: Iterable[type[BaseException]] = (),
    **nats_options: Any,
) -> Client[Any, Any]:
    """A client for the asyncmp server(s) that `serve` *subject*.

    Nothing connects yet: each event loop that uses the client opens its own NATS
    connection on first use (nats-py is asyncio-only), and plain threads and trio tasks
    share one connection run by the client on a daemon thread. Close the client to close
    them (`close()`, `with`, `async with`).

    Args:
        subject: the NATS subject the servers listen on.
        servers: NATS server URL(s), as for `nats.connect`.
        codec: ``"json"`` (default), ``"msgpack"`` or a `Codec`;
            the servers must use the same.
        timeout: seconds each request may take before it raises `TimeoutError` (and the
            server is told to withdraw it), or ``None`` for no limit. Over a network a
            reply can be lost for good — a server process that dies holding a request never
            answers it — so the default is finite. It also bounds connecting: a request
            that opens the connection and cannot within the timeout raises
            `ServerDisappeared` naming the URL and the cause.
        errors: exception classes that a server's `rctx.fail(exc)` may raise here as
            themselves (constructed from the exception's ``args``). Any other failure is
            raised as `RemoteError`.
        **nats_options: passed to `nats.connect` (``token``, ``user``, ``password``,
            ``name``, ``reconnect_time_wait``, ``max_reconnect_attempts``, ``tls`` …).
    """
    if not isinstance(subject, str) or not subject or any(c in subject for c in " \t*>"):
        raise ValueError(f"subject must be a non-empty NATS subject without wildcards: {subject!r}")
    if timeout is not None:
        timeout = check_timeout(timeout)
    resolved = resolve_codec(codec)
    registry = Registry(errors)
    hub = Hub(subject, {**nats_options, "servers": servers}, timeout, resolved.encode)
    return Client._create(hub, _Decoder(subject, resolved, registry))


@final
class _Decoder:
    """Turns a finished call into its reply or its exception (on the requester's side)."""

    __slots__ = ("_codec", "_registry", "_subject")

    def __init__(self, subject: str, codec: Codec, registry: Registry) -> None:
        self._subject = subject
        self._codec = codec
        self._registry = registry

    def decode_reply(self, msg: Msg) -> Any:
        """The reply *msg* stands for, or raise the error it carries."""
        headers = msg.headers
        if not headers:  # a reply (the hot path: a successful reply has no headers)
            try:
                return self._codec.decode(msg.data)
            except Exception as exc:
                raise MalformedMessage(f"the reply cannot be decoded: {exc}") from exc
        status = headers.get(STATUS)
        if status is None:
            code = headers.get(ERROR_CODE)
            if code is not None or ERROR in headers:
                # A NATS Services error from a service that is not asyncmp's.
                raise ServiceError._received(code or "", headers.get(ERROR, ""), msg.data)
            if headers.get(NATS_STATUS) == NO_RESPONDERS:
                raise ServerDisappeared(f"no server is serving {self._subject!r}")
            try:
                return self._codec.decode(msg.data)
            except Exception as exc:
                raise MalformedMessage(f"the reply cannot be decoded: {exc}") from exc
        if status == FAIL:
            raise self._registry.rebuild(msg.data, headers.get(ERROR_CODE))
        if status == NOREPLY:
            raise NoReply("the server closed the reply context without answering")
        if status == WIRE_GONE:
            raise ServerDisappeared("the server was closed before it took the request")
        raise MalformedMessage(f"the reply has an unknown {STATUS} header: {status!r}")


def _encode(hub: Hub, msg: object, link: _Link | None) -> bytes:
    payload = hub.encode(msg)
    if link is not None and len(payload) > link.max_payload:
        raise PayloadTooLarge(
            f"the request is {len(payload)} bytes; the NATS server accepts at most "
            f"{link.max_payload} (its max_payload)"
        )
    return payload


@final
class Client(
    Closing, Generic[Req, Rep], metaclass=NoPublicConstructor, made_by="asyncmp.nats.connect()"
):
    """A client of a NATS service: the API of `asyncmp.Client`.

    Made by `connect`. Usable from any thread and any asyncio
    loop; trio tasks are supported through the client's I/O thread. The errors are those of
    the local channel, mapped: no server on the subject → `ServerDisappeared`; a reply
    context closed unanswered → `NoReply`; `rctx.fail(exc)` → the registered type or
    `RemoteError`; no reply within the timeout → `TimeoutError`.
    """

    __slots__ = ("__weakref__", "_closed", "_decoder", "_hub")
    _hub: Hub
    _decoder: _Decoder
    _closed: bool

    @classmethod
    def _create(cls, hub: Hub, decoder: _Decoder) -> Client[Any, Any]:
        self: Client[Any, Any] = object.__new__(cls)
        self._hub = hub
        self._decoder = decoder
        self._closed = False
        return self

    @property
    def subject(self) -> str:
        """The subject requests are sent to."""
        return self._hub.subject

    async def send(self, msg: Req) -> Rep:
        """Send *msg* and wait for the reply.

        Raises:
            ServerDisappeared: no server serves the subject, the NATS server cannot be
                reached (within the timeout), the connection was closed for good while
                waiting (nats-py's reconnection attempts spent), or the server's local
                channel was closed before taking the request.
            NoReply: the server closed the reply context without answering.
            RemoteError: the server failed the request with an unregistered exception type.
            TimeoutError: no reply within the client's timeout (the server is told to
                withdraw the request).
            PayloadTooLarge: the encoded message exceeds the NATS server's max payload.
            TypeError: the codec cannot encode *msg*.
            Closed: this client was closed.

        Cancellation withdraws the request: the server drops it if its handler has not
        taken it yet, and otherwise the handler's `reply()` returns `False`.
        """
        if self._closed:
            raise Closed("this client is closed")
        hub = self._hub
        loop = running_asyncio_loop()
        if loop is None:
            return await self._send_via_io(msg)  # type: ignore[no-any-return]
        link = hub.links.get(loop)
        timeout = hub.timeout
        if link is None or link.closed:
            # Connecting counts against the timeout (only on this first-use path).
            start = loop.time()
            link = await hub.link_here(timeout)
            if timeout is not None:
                timeout = max(timeout - (loop.time() - start), 0.0)
        payload = _encode(hub, msg, link)
        waiter = loop.create_future()
        call = _Call(hub, self._decoder, waiter)
        await link.publish_call(hub.subject, payload, call, timeout)
        await call.park_async(waiter, give_up=True)
        return call.result()  # type: ignore[no-any-return]

    async def _send_via_io(self, msg: Req) -> Any:
        hub = self._hub
        link = hub.io_link_now()
        if link is None:
            link = await hub.io_link_async()
        payload = _encode(hub, msg, link)
        waiter = new_async_waiter()
        call = _Call(hub, self._decoder, waiter)
        link.publish_soon(hub.subject, payload, call, hub.timeout)
        await call.park_async(waiter, give_up=True)
        return call.result()

    def request(self, msg: Req) -> LocalPendingReply[Rep]:
        """Send *msg* now, without waiting, and return a handle to collect the reply.

        On an asyncio loop the request travels on that loop's connection (which must keep
        running until the reply is in); elsewhere on the client's I/O thread.

        Raises:
            TypeError: the codec cannot encode *msg*.
            Closed: this client was closed.
        """
        if self._closed:
            raise Closed("this client is closed")
        hub = self._hub
        call = _Call(hub, self._decoder)
        loop = running_asyncio_loop()
        if loop is not None:
            link = hub.links.get(loop)
            payload = _encode(hub, msg, link if link is not None and not link.closed else None)
            task = loop.create_task(_start(hub, call, payload, None))
            hub_tasks = _background
            hub_tasks.add(task)
            task.add_done_callback(hub_tasks.discard)
        else:
            link = hub.io_link_now()
            payload = _encode(hub, msg, link)
            if link is not None:
                link.publish_soon(hub.subject, payload, call, hub.timeout)
            else:
                hub.run_on_io(_start, hub, call, payload, None)
        return LocalPendingReply._create(call)

    @property
    def blocking(self) -> _BlockingClient[Req, Rep]:
        """The blocking face, for plain threads: ``client.blocking.send(msg, timeout=None)``."""
        return _BlockingClient(self)

    def clone(self) -> Client[Req, Rep]:
        """Another client sharing this one's connections; the last one closed closes them."""
        if self._closed:
            raise Closed("cannot clone a closed client")
        hub = self._hub
        with hub.lock:
            hub.clients += 1
        return Client._create(hub, self._decoder)

    def close(self) -> None:
        """Close this client. Idempotent.

        Closing the last of a client and its clones closes their NATS connections; a
        request still waiting for its reply then raises `Closed`.
        """
        self._release()

    def _release(self) -> asyncio.Task[None] | None:
        hub = self._hub
        last = False
        try:
            with hub.lock:
                if self._closed:  # under the lock: one release per client
                    return None
                self._closed = True
                hub.clients -= 1
                last = hub.clients == 0
        except BaseException:
            # Interrupted (Ctrl-C) once it counted itself out: the last one still closes.
            if last:
                hub.close()
            raise
        return hub.close() if last else None

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._closed

    async def __aenter__(self) -> Client[Req, Rep]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Unlike close(), wait until this loop's connection is closed.
        task = self._release()
        if task is not None:
            await asyncio.shield(task)

    def __del__(self) -> None:
        # The collection may have started while this thread holds the hub's lock (a request
        # allocates under it): `finalize` then defers the work. Never waits for the I/O
        # thread to end, as close() may.
        if not self._closed and not sys.is_finalizing():
            finalize((self._hub.lock,), _release_collected, self._hub)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<asyncmp.nats.Client {self._hub.subject!r} {state}>"


def _release_collected(hub: Hub) -> None:
    """A collected client's finalizer work (`finalize`): count it out; the last one closes
    the connections, without waiting for the I/O thread to end."""
    last = False
    try:
        with hub.lock:
            hub.clients -= 1
            last = hub.clients == 0
    finally:
        if last:
            hub.close(join=False)


_background: set[asyncio.Task[None]] = set()


async def _start(hub: Hub, call: _Call, payload: bytes, link: _Link | None) -> None:
    """Publish a `request()` on the running loop's link (opening it if needed)."""
    timeout = hub.timeout
    try:
        if link is None:
            loop = asyncio.get_running_loop()
            start = loop.time()
            link = await hub.link_here(timeout)
            if timeout is not None:
                timeout = max(timeout - (loop.time() - start), 0.0)
            if len(payload) > link.max_payload:
                raise PayloadTooLarge(
                    f"the request is {len(payload)} bytes; the NATS server accepts at most "
                    f"{link.max_payload} (its max_payload)"
                )
        await link.publish_call(hub.subject, payload, call, timeout)
    except asyncio.CancelledError:
        # Its loop is shutting down (the client's I/O loop when the client closes):
        # the request cannot be sent, and its requester must hear it.
        _fail_unsent(call, Closed("the client was closed before the request was sent"))
        raise
    except Exception as exc:
        _fail_unsent(call, exc)


def _fail_unsent(call: _Call, error: BaseException) -> None:
    call.set(Failure(error))


@final
class _BlockingClient(Generic[Req, Rep]):
    """``client.blocking``: the same client, with calls that block the calling thread."""

    __slots__ = ("_client",)

    def __init__(self, client: Client[Req, Rep]) -> None:
        self._client = client

    def send(self, msg: Req, timeout: float | None = None) -> Rep:
        """Send *msg* and block until the reply arrives.

        Args:
            msg: the request.
            timeout: seconds to wait (connecting included), or ``None`` for the client's
                timeout.

        Raises:
            TimeoutError: no reply in time; the server is told to withdraw the request.
            RuntimeError: called on a thread that runs an event loop.
            ServerDisappeared, NoReply, RemoteError, PayloadTooLarge, Closed: as for
                `Client.send`.
        """
        timeout = check_timeout(timeout)
        ensure_blocking_allowed("client.blocking.send()")
        client = self._client
        if client._closed:
            raise Closed("this client is closed")
        hub = client._hub
        limit = hub.timeout if timeout is None else timeout
        wait = limit
        link = hub.io_link_now()
        if link is None:
            # Connecting counts against the timeout (only on this first-use path).
            start = time.monotonic()
            link = hub.io_link_blocking(limit)
            if limit is not None:
                wait = max(limit - (time.monotonic() - start), 0.0)
        payload = _encode(hub, msg, link)
        waiter = ThreadWaiter()
        call = _Call(hub, client._decoder, waiter)
        try:
            link.publish_soon(hub.subject, payload, call, hub.timeout)
            replied = call.park_blocking(waiter, wait, give_up=True)
        except BaseException:
            # Interrupted (Ctrl-C) in any instant: the request is given up as on a timeout
            # (nothing happens if its outcome is in already).
            call.give_up()
            raise
        if not replied:
            raise TimeoutError(f"no reply within {seconds(limit)} seconds")
        return call.result()  # type: ignore[no-any-return]
