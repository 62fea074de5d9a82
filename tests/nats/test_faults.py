"""Faults: replies near max_payload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from nats_helpers import NatsServer, serving

import asyncmp
import asyncmp.nats

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
