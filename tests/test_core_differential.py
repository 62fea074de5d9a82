"""Differential test of the channel's two cores: the same seeded random sequences of
operations, applied to a pure-Python channel and a compiled one side by side, must give the
same observable result at every step (values, errors with their messages, states,
statistics).

The channel is one source compiled two ways; what this catches is a difference that the
compilation brings (a C type that rounds, a check that Cython adds or drops, a primitive that
behaves otherwise).
"""

from __future__ import annotations

import asyncio
import random
from types import ModuleType
from typing import Any

import pytest

from asyncmp._cores import cores

pytestmark = pytest.mark.skipif(
    "compiled" not in cores(), reason="the compiled core is not built here (no C compiler)"
)

SEEDS = range(120)
STEPS = 80


def observe(action: Any) -> object:
    """What a user sees of running *action*: its result, or its exception's type and text."""
    try:
        result = action()
    except Exception as exc:
        return ("raised", type(exc).__name__, str(exc))
    return ("returned", describe(result))


def describe(value: object) -> object:
    """A core-independent description of a result (handles by kind and state)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, tuple):
        return tuple(describe(v) for v in value)
    kind = type(value).__name__
    if kind == "ChannelStatistics":
        return ("stats", *vars(value).values())
    return (kind, repr(value).split(" at ")[0])


class World:
    """One core's channel and everything a sequence made with it."""

    def __init__(self, core: ModuleType, max_queued: int | None) -> None:
        self.server, client = core.channel(max_queued=max_queued)
        self.clients = [client]
        self.weaks: list[Any] = []
        self.pendings: list[Any] = []
        self.contexts: list[Any] = []

    def act(self, op: str, pick: int, value: int) -> object:
        def nth(items: list[Any]) -> Any:
            return items[pick % len(items)] if items else None

        client, pending, rctx, weak = (
            nth(self.clients),
            nth(self.pendings),
            nth(self.contexts),
            nth(self.weaks),
        )
        actions = {
            "request": lambda: self.pendings.append(client.request(value)) if client else None,
            "pop": lambda: self.take(self.server.try_pop()),
            "reply": lambda: rctx.reply(value) if rctx else None,
            "fail": lambda: rctx.fail(ValueError(value)) if rctx else None,
            "close-rctx": lambda: rctx.close() if rctx else None,
            "cancel": lambda: pending.cancel() if pending else None,
            "done": lambda: pending.done() if pending else None,
            "collect": lambda: pending.blocking.wait(timeout=0) if pending else None,
            "clone": lambda: self.clients.append(client.clone()) if client else None,
            "close-client": lambda: client.close() if client else None,
            "weak": lambda: self.weaks.append(client.weak()) if client else None,
            "upgrade": lambda: self.adopt(weak.upgrade()) if weak else None,
            "close-server": lambda: self.server.close(),
            "statistics": lambda: self.server.statistics(),
            "closed": lambda: (self.server.closed, client.closed if client else None),
            "answered": lambda: rctx.answered if rctx else None,
            "repr": lambda: (repr(rctx), repr(pending), repr(client)),
        }
        return observe(actions[op])

    def take(self, item: Any) -> object:
        if item is not None:
            self.contexts.append(item[1])
            return item[0]
        return None

    def adopt(self, client: Any) -> object:
        if client is not None:
            self.clients.append(client)
        return client is not None


OPS = (
    "request", "request", "request", "pop", "pop", "reply", "fail", "close-rctx", "cancel",
    "done", "collect", "clone", "close-client", "weak", "upgrade", "close-server",
    "statistics", "closed", "answered", "repr",
)  # fmt: skip


@pytest.mark.parametrize("seed", SEEDS)
def test_both_cores_agree_on_random_sequences(seed: int) -> None:
    """Every step of a seeded random sequence of channel operations — requests, pops,
    replies, failures, closes, cancellations, clones, weak clients, statistics — has the
    same observable outcome on the pure and the compiled core."""
    rng = random.Random(seed)
    max_queued = rng.choice([None, 1, 3])
    worlds = [World(core, max_queued) for core in (cores()["pure"], cores()["compiled"])]
    for step in range(STEPS):
        op, pick, value = rng.choice(OPS), rng.randrange(8), rng.randrange(100)
        pure, compiled = (world.act(op, pick, value) for world in worlds)
        assert pure == compiled, (seed, step, op, pure, compiled)


@pytest.mark.parametrize("seed", range(40))
def test_both_cores_agree_on_random_async_sequences(seed: int) -> None:
    """The same for the async API on one asyncio loop: seeded mixes of `await send`,
    `await wait`, replies, task cancellations and client closes, scheduled in the same order
    for both cores, end the same way (each send's result or error, each wait's message)."""

    async def run(core: ModuleType) -> list[object]:
        rng = random.Random(seed)
        server, client = core.channel()
        log: list[object] = []

        async def send(value: int) -> None:
            try:
                log.append(("sent", value, await client.send(value)))
            except Exception as exc:
                log.append(("send-raised", value, type(exc).__name__, str(exc)))
            except asyncio.CancelledError:
                log.append(("send-cancelled", value))

        async def serve(count: int) -> None:
            for _ in range(count):
                try:
                    msg, rctx = await server.wait()
                except Exception as exc:
                    log.append(("wait-raised", type(exc).__name__, str(exc)))
                    return
                choice = rng.random()
                if choice < 0.6:
                    log.append(("replied", msg, rctx.reply(msg * 2)))
                elif choice < 0.8:
                    log.append(("failed", msg, rctx.fail(KeyError(msg))))
                else:
                    rctx.close()
                    log.append(("closed", msg))

        tasks = []
        for step in range(30):
            roll = rng.random()
            if roll < 0.45:
                tasks.append(asyncio.ensure_future(send(step)))
            elif roll < 0.65:
                tasks.append(asyncio.ensure_future(serve(rng.randrange(1, 4))))
            elif roll < 0.8 and tasks:
                tasks[rng.randrange(len(tasks))].cancel()
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
        client.close()
        tasks.append(asyncio.ensure_future(serve(100)))
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        log.append(("statistics", *vars(server.statistics()).values()))
        return log

    pure = asyncio.run(run(cores()["pure"]))
    compiled = asyncio.run(run(cores()["compiled"]))
    assert pure == compiled
