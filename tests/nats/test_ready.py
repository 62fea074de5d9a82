"""Started means reachable: once `serve`, `serve_service` or `bridge_signaler` report that
they started, what they subscribed to answers a first message from any other connection.

They used to wait with nats-py's ``flush()``, which writes its PING straight to the socket
while the SUBs before it may still wait in nats-py's pending buffer: the PONG could come
back before the NATS server had seen them, and a first request from elsewhere got "no
responders" (the CI saw it once in ~30 runs of a service test). The ``held_flusher``
fixture makes that window certain instead of rare: whenever a PING has overtaken buffered
commands, nats-py's flusher holds them back until the test has checked."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import anyio
import nats.aio.client
import pytest
from nats_helpers import NatsServer, raw_nats, serving, serving_service

import asyncmp.nats
from asyncmp.dharma import Defined, Receiver, Signaler
from asyncmp.nats._link import settle

pytestmark = pytest.mark.anyio


class HeldFlusher:
    """Counts the PINGs that overtook buffered commands; their connections' flushers hold
    those commands back until `release` is set."""

    def __init__(self) -> None:
        self.overtaken = 0
        self.holding: set[nats.aio.client.Client] = set()
        self.release = asyncio.Event()

    def check_and_release(self) -> None:
        """Assert that no PING overtook buffered commands so far, then stop holding (closing
        connections flush too, and nats-py's own drain() does overtake its UNSUBs)."""
        overtaken, self.overtaken = self.overtaken, 0
        self.release.set()
        assert overtaken == 0, "a flush() PING went out ahead of buffered commands"


class _HoldingQueue(asyncio.Queue[Any]):
    """nats-py's flusher queue (each item asks the flusher to write the pending buffer)
    that makes the flusher wait for `release` once a PING has overtaken the buffer."""

    def __init__(self, client: nats.aio.client.Client, held: HeldFlusher) -> None:
        super().__init__()
        self.client = client
        self.held = held

    async def get(self) -> Any:
        item = await super().get()
        if self.client in self.held.holding:
            await self.held.release.wait()
        return item


@pytest.fixture
def held_flusher(monkeypatch: pytest.MonkeyPatch) -> HeldFlusher:
    """Every nats-py connection of the test gets a `_HoldingQueue` (what was queued before
    its flusher first ran is carried over), and a PING written while commands wait in its
    pending buffer marks it as holding. Relies on nats-py internals (``_flusher``,
    ``_flush_queue``, ``_send_ping``, ``_pending``: the same from 2.6 to 2.16)."""
    held = HeldFlusher()
    Client = nats.aio.client.Client
    original_flusher = Client._flusher
    original_send_ping = Client._send_ping

    async def flusher(client: nats.aio.client.Client) -> None:
        queue = _HoldingQueue(client, held)
        assert client._flush_queue is not None
        while not client._flush_queue.empty():
            queue.put_nowait(client._flush_queue.get_nowait())
        client._flush_queue = queue
        await original_flusher(client)

    async def send_ping(client: nats.aio.client.Client, future: Any = None) -> None:
        if client._pending and not held.release.is_set():
            held.overtaken += 1
            held.holding.add(client)
        await original_send_ping(client, future)

    monkeypatch.setattr(Client, "_flusher", flusher)
    monkeypatch.setattr(Client, "_send_ping", send_ping)
    return held


async def test_serve_started_answers_the_first_request_from_another_connection(
    nats_server: NatsServer, held_flusher: HeldFlusher
) -> None:
    """`serve` reports started only once the NATS server has its subscription: a request
    sent right then from another connection is answered, not refused for "no responders"."""
    url = nats_server.url
    try:
        with anyio.fail_after(20):
            async with serving(url, "ready"), raw_nats(url) as nc:
                reply = await nc.request("ready", json.dumps([1, 2]).encode(), timeout=5)
                assert json.loads(reply.data) == [1, 2]
                held_flusher.check_and_release()
    finally:
        held_flusher.release.set()


async def test_serve_service_started_answers_discovery_from_another_connection(
    nats_server: NatsServer, held_flusher: HeldFlusher
) -> None:
    """`serve_service` reports its `Service` only once the NATS server has every
    subscription: a PING for that instance sent right then is answered by it."""
    url = nats_server.url

    async def nothing(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        rctx.reply(None)

    try:
        with anyio.fail_after(20):
            async with (
                serving_service(url, "ready", "1.0.0", {"ready.a": nothing}) as service,
                raw_nats(url) as nc,
            ):
                reply = await nc.request(f"$SRV.PING.ready.{service.id}", b"", timeout=5)
                assert reply.headers is None, reply.headers  # not a 503 status message
                assert json.loads(reply.data)["id"] == service.id
                held_flusher.check_and_release()
    finally:
        held_flusher.release.set()


async def test_bridge_signaler_started_receives_the_first_publication(
    nats_server: NatsServer, held_flusher: HeldFlusher
) -> None:
    """`bridge_signaler` reports started only once the NATS server has its subscriptions:
    a signal published right then from another connection reaches the local subscribers
    (core NATS keeps nothing for a subscription that is not there yet)."""
    url = nats_server.url
    signaler: Signaler[Any] = Signaler()
    receiver: Receiver[Any] = Receiver()
    signaler.subscribe(4, receiver)
    try:
        with anyio.fail_after(20):
            async with raw_nats(url) as nc, anyio.create_task_group() as tg:
                bridge = functools.partial(asyncmp.nats.bridge_signaler, signaler, url, receive=[4])
                await tg.start(bridge)
                await nc.publish("asyncmp.signal.4", json.dumps("first").encode())
                item = await receiver.recv(timeout=5)
                assert isinstance(item, Defined), item  # not a timeout
                assert (item.signal_id, item.value) == (4, "first")
                held_flusher.check_and_release()
                tg.cancel_scope.cancel()
    finally:
        held_flusher.release.set()


async def test_settle_cancelled_while_the_buffer_goes_out_is_cancelled(
    nats_server: NatsServer, held_flusher: HeldFlusher
) -> None:
    """A task cancelled while `settle` waits for nats-py's flusher ends cancelled. (nats-py's
    forced flush swallows a CancelledError raised in its wait: `serve` would go on to report
    started, and a plain asyncio task.cancel() would be lost.)"""
    async with raw_nats(nats_server.url) as nc:
        held_flusher.holding.add(nc)
        try:
            await nc.subscribe("settle.me")  # the flusher takes this kick and is held
            task = asyncio.get_running_loop().create_task(settle(nc))
            with anyio.fail_after(10):
                await anyio.wait_all_tasks_blocked()
                assert not task.done()  # waiting for the held flusher
                task.cancel()
                held_flusher.release.set()
                await asyncio.wait([task])
            assert task.cancelled(), task
        finally:
            held_flusher.release.set()
