"""Faults: replies near max_payload, and the order of cancel messages and requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest
from nats_helpers import NatsServer, serving

import asyncmp
import asyncmp.nats
from asyncmp.nats import _serve

pytestmark = pytest.mark.anyio

MAX_PAYLOAD = 1024
# The NATS header block a failure reply carries: "NATS/1.0", one "Key: Value" line, a blank
# line, each ended by CRLF. nats-server counts it against max_payload with the payload.
FAIL_HEADER = len(b"NATS/1.0\r\nAsyncmp-Status: fail\r\n\r\n")


@pytest.fixture
def small_nats_server(tmp_path: Path) -> Any:
    """A nats-server whose max_payload is MAX_PAYLOAD bytes."""
    conf = tmp_path / "nats.conf"
    conf.write_text(f"max_payload: {MAX_PAYLOAD}\n")
    server = NatsServer("-c", str(conf))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Echoed(Exception):
    """An error whose message is whatever the client sent (and whose args are empty, so
    that the failure record carries the text once)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def __str__(self) -> str:
        return self.text


def failure_record_size(text: str) -> int:
    """The size of the failure record that serve() publishes for Echoed(text)."""
    return len(asyncmp.nats._errors.encode_failure(Echoed(text)))


async def echo_into_error(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
    """Fails ``[text, n]`` with Echoed(text * n); replies anything else."""
    if isinstance(msg, list):
        text, repeat = msg
        rctx.fail(Echoed(text * repeat))
    else:
        rctx.reply(msg)


async def test_nats_failure_near_max_payload_is_bounded_and_the_service_stays_on_nats(
    small_nats_server: NatsServer,
) -> None:
    """A failure record that fits with its header reaches the client intact; one byte more,
    or far more, reaches it as a PayloadTooLarge of bounded size; the service keeps serving
    (nats-server never sees an oversized message, so it never drops the connection)."""
    url = small_nats_server.url
    budget = MAX_PAYLOAD - FAIL_HEADER
    fits = "x" * (budget - failure_record_size(""))
    assert failure_record_size(fits) == budget
    with anyio.fail_after(30):
        async with (
            serving(url, "echo", echo_into_error),
            asyncmp.nats.connect("echo", url, timeout=5) as client,
        ):
            with pytest.raises(asyncmp.nats.RemoteError) as intact:
                await client.send([fits, 1])
            assert intact.value.message == fits
            for request in ([fits + "y", 1], ["z", 20 * MAX_PAYLOAD]):
                with pytest.raises(asyncmp.nats.PayloadTooLarge) as too_large:
                    await client.send(request)
                assert "Echoed" in str(too_large.value)
                assert len(str(too_large.value)) < MAX_PAYLOAD
            assert await client.send(1) == 1


async def test_nats_any_reply_over_max_payload_becomes_a_bounded_payload_too_large(
    small_nats_server: NatsServer,
) -> None:
    """A successful reply over max_payload becomes PayloadTooLarge, and so does a failure
    whose exception type name alone is too large to travel: the requester always hears."""
    url = small_nats_server.url
    huge_type = type("E" * (2 * MAX_PAYLOAD), (Exception,), {})

    async def handler(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        if msg == "big reply":
            rctx.reply("r" * (2 * MAX_PAYLOAD))
        elif msg == "big type":
            rctx.fail(huge_type("boom"))
        else:
            rctx.reply(msg)

    with anyio.fail_after(30):
        async with (
            serving(url, "big", handler),
            asyncmp.nats.connect("big", url, timeout=5) as client,
        ):
            for request in ("big reply", "big type"):
                with pytest.raises(asyncmp.nats.PayloadTooLarge):
                    await client.send(request)
            assert await client.send("small") == "small"


@asynccontextmanager
async def raw_nats(url: str) -> AsyncIterator[nats.aio.client.Client]:
    nc = await nats.connect(url)
    try:
        yield nc
    finally:
        await nc.close()


@pytest.fixture
def cancel_seen(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """serve()'s cancel handler, instrumented: each processed cancel message appends the
    serve state it was processed by, so a test can wait for it."""
    seen: list[Any] = []
    original = _serve._Server.on_cancel

    async def on_cancel(self: _serve._Server, msg: Any) -> None:
        await original(self, msg)
        seen.append(self)

    monkeypatch.setattr(_serve._Server, "on_cancel", on_cancel)
    return seen


async def _wait_for(predicate: Callable[[], bool]) -> None:
    # What changes is updated by a message that crossed NATS: no event to wait on, so poll.
    # Bounded by the caller's fail_after.
    while not predicate():  # noqa: ASYNC110
        await anyio.sleep(0.01)


async def test_nats_cancel_processed_before_its_request_drops_the_request(
    nats_server: NatsServer, cancel_seen: list[Any]
) -> None:
    """Cancel messages and requests travel on different subjects: a cancel that serve()
    processes before its request makes serve() drop that request (the handler never sees
    it, nothing is replied), not serve a requester that is gone."""
    seen: list[Any] = []

    async def record(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        seen.append(msg)
        rctx.reply(msg)

    with anyio.fail_after(20):
        async with serving(nats_server.url, "c", record), raw_nats(nats_server.url) as nc:
            inbox = nc.new_inbox()
            replies = await nc.subscribe(inbox + ".*")
            await nc.publish("_ASYNCMP.CANCEL.c", f"{inbox}.1".encode())
            await nc.flush()
            await _wait_for(lambda: len(cancel_seen) == 1)
            await nc.publish("c", b'"withdrawn"', reply=f"{inbox}.1")
            await nc.publish("c", b'"served"', reply=f"{inbox}.2")
            reply = await replies.next_msg(timeout=10)
            assert (reply.subject, json.loads(reply.data)) == (f"{inbox}.2", "served")
            # Requests on one subscription are handled in order: "withdrawn" came first.
            assert seen == ["served"]
            assert replies.pending_msgs == 0


async def test_nats_cancel_before_the_request_task_first_runs_leaves_nothing_in_flight(
    nats_server: NatsServer, cancel_seen: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose serve() task is cancelled before that task first runs (so its body,
    and any cleanup in it, never runs) is withdrawn and forgotten: nothing stays in flight."""
    gate = asyncio.Event()
    original = _serve._Server.handle

    async def gated_handle(self: _serve._Server, *args: Any) -> None:
        # Keeps the task from reaching handle()'s body until the gate opens.
        await gate.wait()
        await original(self, *args)

    monkeypatch.setattr(_serve._Server, "handle", gated_handle)

    release = anyio.Event()
    seen: list[Any] = []

    async def hold_first(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        seen.append(msg)
        await release.wait()  # "withdrawn" stays queued behind "hold" meanwhile
        rctx.reply(msg)

    with anyio.fail_after(20):
        async with (
            serving(nats_server.url, "g", hold_first) as local,
            raw_nats(nats_server.url) as nc,
        ):
            inbox = nc.new_inbox()
            replies = await nc.subscribe(inbox + ".*")
            await nc.publish("g", b'"hold"', reply=f"{inbox}.1")
            await nc.publish("g", b'"withdrawn"', reply=f"{inbox}.2")
            await nc.flush()
            await _wait_for(lambda: seen == ["hold"] and local.statistics().queued == 1)
            await nc.publish("_ASYNCMP.CANCEL.g", f"{inbox}.2".encode())
            await nc.flush()
            await _wait_for(lambda: len(cancel_seen) == 1)
            assert list(cancel_seen[0].in_flight) == [f"{inbox}.1"]
            assert local.statistics().queued == 0
            gate.set()
            release.set()
            reply = await replies.next_msg(timeout=10)
            assert (reply.subject, json.loads(reply.data)) == (f"{inbox}.1", "hold")
            await _wait_for(lambda: not cancel_seen[0].in_flight)
    assert seen == ["hold"]
