"""The Signaler bridge: emits travel between Signalers over NATS subjects."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import anyio.abc
import pytest
from nats_helpers import NatsServer

import asyncmp.nats
from asyncmp.dharma import Defined, Receiver, Signaler

pytestmark = pytest.mark.anyio


async def _recv(receiver: Receiver[Any]) -> tuple[int, Any]:
    item = await receiver.recv(timeout=5)
    assert isinstance(item, Defined), item
    return item.signal_id, item.value


async def test_nats_signal_bridge_delivers_emits_to_remote_subscribers(
    nats_server: NatsServer,
) -> None:
    """An emit on one Signaler reaches the subscribers of another one bridged to the same
    NATS server, for the ids each side publishes and receives, and nothing else."""
    east: Signaler[Any] = Signaler()
    west: Signaler[Any] = Signaler()
    at_east: Receiver[Any] = Receiver()
    at_west: Receiver[Any] = Receiver()
    east.subscribe(2, at_east)
    west.subscribe(1, at_west)
    west.subscribe(9, at_west)
    url = nats_server.url
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            bridge = asyncmp.nats.bridge_signaler
            await tg.start(functools.partial(bridge, east, url, publish=[1, 9], receive=[2]))
            await tg.start(functools.partial(bridge, west, url, publish=[2], receive=[1]))
            east.emit(9, "not received by west")
            east.emit(1, {"temperature": 21.5})
            assert await _recv(at_west) == (1, {"temperature": 21.5})
            west.emit(2, [1, 2, 3])
            assert await _recv(at_east) == (2, [1, 2, 3])
            tg.cancel_scope.cancel()
    assert at_west.try_recv() is asyncmp.dharma.EMPTY


async def test_nats_signal_bridge_both_ways_does_not_echo(nats_server: NatsServer) -> None:
    """Two Signalers that both publish and receive an id see each emit exactly once: what a
    bridge received is not published back."""
    a: Signaler[Any] = Signaler()
    b: Signaler[Any] = Signaler()
    at_a: Receiver[Any] = Receiver()
    at_b: Receiver[Any] = Receiver()
    a.subscribe(3, at_a)
    b.subscribe(3, at_b)
    url = nats_server.url
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for signaler in (a, b):
                await tg.start(
                    functools.partial(
                        asyncmp.nats.bridge_signaler, signaler, url, publish=[3], receive=[3]
                    )
                )
            a.emit(3, "x")
            assert await _recv(at_a) == (3, "x")
            assert await _recv(at_b) == (3, "x")
            b.emit(3, "end")  # published after any echo of "x" that b would have sent
            assert await _recv(at_b) == (3, "end")
            assert await _recv(at_a) == (3, "end")
            tg.cancel_scope.cancel()
    assert at_a.try_recv() is asyncmp.dharma.EMPTY
    assert at_b.try_recv() is asyncmp.dharma.EMPTY


async def test_nats_signal_bridge_rejects_bad_arguments(nats_server: NatsServer) -> None:
    """A non-Signaler or a negative signal id is refused before connecting."""
    with pytest.raises(TypeError):
        await asyncmp.nats.bridge_signaler(object(), nats_server.url)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await asyncmp.nats.bridge_signaler(Signaler(), nats_server.url, publish=[-1])


async def test_nats_signal_bridge_raises_when_its_connection_is_closed_for_good(
    nats_server: NatsServer,
) -> None:
    """When nats-py gives up reconnecting, bridge_signaler raises ServerDisappeared naming
    the cause instead of waiting for ever with neither direction working."""
    signaler: Signaler[Any] = Signaler()
    outcome: list[BaseException] = []

    async def bridge(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            await asyncmp.nats.bridge_signaler(
                signaler,
                nats_server.url,
                publish=[1],
                receive=[2],
                max_reconnect_attempts=1,
                reconnect_time_wait=0.05,
                task_status=task_status,
            )
        except Exception as exc:
            outcome.append(exc)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(bridge)
            nats_server.stop()
    assert len(outcome) == 1
    assert isinstance(outcome[0], asyncmp.ServerDisappeared)
    assert "closed for good" in str(outcome[0])


def test_nats_signal_bridge_refuses_trio_as_the_other_nats_entry_points_do() -> None:
    """nats-py is asyncio-only: under trio `bridge_signaler` raises the RuntimeError that
    `serve` raises, before it connects anywhere (the one check, `check_asyncio`, also
    refuses trio's guest mode on an asyncio loop: tests/lowlevel/test_backend.py)."""

    async def under_trio() -> None:
        with pytest.raises(RuntimeError, match=r"bridge_signaler\(\) runs on asyncio"):
            await asyncmp.nats.bridge_signaler(Signaler(), "nats://127.0.0.1:1")

    anyio.run(under_trio, backend="trio")
