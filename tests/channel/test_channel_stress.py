"""Stress: every request ends exactly once, nothing hangs, no ReplyContext leaks
(docs/design.md, "What the tests guarantee").

Clients on an asyncio loop, a uvloop loop, a trio run and plain threads share one channel
with servers on an asyncio loop and a plain thread, plus a thread that answers deferred
contexts later. Clients cancel, time out and give up at random; servers reply, fail, close
unanswered, raise inside ``with rctx:`` or defer; one round closes the server midway.
Random choices are seeded, and no assertion depends on timing: timeouts only make the mix.
"""

from __future__ import annotations

import asyncio
import gc
import queue
import random
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import trio
import uvloop

import asyncmp
from asyncmp import ClientsDisappeared, Closed, NoReply, ServerDisappeared

REQUESTS_PER_CLIENT = 400


class HandlerError(Exception):
    pass


class AppError(Exception):
    pass


class Ledger:
    """Thread-safe records of what each side saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client: dict[int, list[tuple[str, Any]]] = {}
        self.server: dict[int, tuple[str, bool]] = {}  # rid -> (how answered, delivered)

    def ended(self, rid: int, how: str, value: Any = None) -> None:
        with self.lock:
            self.client.setdefault(rid, []).append((how, value))

    def answered(self, rid: int, how: str, delivered: bool) -> None:
        with self.lock:
            assert rid not in self.server, f"request {rid} answered twice"
            self.server[rid] = (how, delivered)


def outcome_of(exc: BaseException) -> str:
    for cls, name in (
        (AppError, "fail"),
        (NoReply, "noreply"),
        (ServerDisappeared, "server-gone"),
        (TimeoutError, "gave-up"),
    ):
        if isinstance(exc, cls):
            return name
    raise exc


async def async_client(
    client: asyncmp.Client[int, Any], ids: range, seed: int, ledger: Ledger
) -> None:
    rng = random.Random(seed)
    for rid in ids:
        roll = rng.random()
        try:
            if roll < 0.2:
                with anyio.move_on_after(rng.choice([0, 0.0005, 0.002])) as scope:
                    value = await client.send(rid)
                if scope.cancelled_caught:
                    ledger.ended(rid, "gave-up")
                    continue
            elif roll < 0.3:
                pending = client.request(rid)
                if rng.random() < 0.5:
                    pending.cancel()
                    ledger.ended(rid, "gave-up")
                    continue
                value = await pending
            else:
                value = await client.send(rid)
        except Exception as exc:
            ledger.ended(rid, outcome_of(exc))
        else:
            ledger.ended(rid, "reply", value)


def thread_client(client: asyncmp.Client[int, Any], ids: range, seed: int, ledger: Ledger) -> None:
    rng = random.Random(seed)
    for rid in ids:
        timeout = rng.choice([None, None, 0, 0.001])
        try:
            value = client.blocking.send(rid, timeout=timeout)
        except Exception as exc:
            ledger.ended(rid, outcome_of(exc))
        else:
            ledger.ended(rid, "reply", value)


def answer(
    rctx: asyncmp.ReplyContext[Any],
    rid: int,
    rng: random.Random,
    ledger: Ledger,
    deferred: queue.SimpleQueue[Any],
) -> None:
    roll = rng.random()
    if roll < 0.6:
        ledger.answered(rid, "reply", rctx.reply(rid * 2))
    elif roll < 0.7:
        ledger.answered(rid, "fail", rctx.fail(AppError(rid)))
    elif roll < 0.8:
        rctx.close()
        ledger.answered(rid, "noreply", True)
    elif roll < 0.9:
        try:
            with rctx:
                raise HandlerError(rid)
        except HandlerError:
            ledger.answered(rid, "noreply", True)
    else:
        deferred.put((rid, rctx))


async def async_server(
    server: asyncmp.Server[int, Any],
    seed: int,
    ledger: Ledger,
    deferred: queue.SimpleQueue[Any],
    on_handled: Callable[[], None],
) -> None:
    rng = random.Random(seed)
    try:
        async for rid, rctx in server:
            answer(rctx, rid, rng, ledger, deferred)
            del rctx
            on_handled()
    except Closed:
        pass


def thread_server(
    server: asyncmp.Server[int, Any],
    seed: int,
    ledger: Ledger,
    deferred: queue.SimpleQueue[Any],
    on_handled: Callable[[], None],
) -> None:
    rng = random.Random(seed)
    try:
        for rid, rctx in server.blocking:
            answer(rctx, rid, rng, ledger, deferred)
            del rctx
            on_handled()
    except Closed:
        pass


def deferred_replier(deferred: queue.SimpleQueue[Any], ledger: Ledger) -> None:
    while (item := deferred.get()) is not None:
        rid, rctx = item
        ledger.answered(rid, "reply", rctx.reply(rid * 2))
        del item, rctx


def check_round(ledger: Ledger, total: int) -> None:
    # Every request ended exactly once on the client side.
    assert sorted(ledger.client) == list(range(total))
    for rid, records in ledger.client.items():
        assert len(records) == 1, f"request {rid} ended {len(records)} times: {records}"
    for rid, [(how, value)] in ledger.client.items():
        served = ledger.server.get(rid)
        if how == "reply":
            assert value == rid * 2
            assert served == ("reply", True)
        elif how in ("fail", "noreply"):
            assert served is not None
            assert served == (how, True)
        elif how == "server-gone":
            assert served is None  # the server never saw it
        else:
            assert how == "gave-up"
    # A context answered as undeliverable belongs to a requester who gave up.
    for rid, (_, delivered) in ledger.server.items():
        if not delivered:
            assert ledger.client[rid][0][0] == "gave-up"


@pytest.mark.parametrize("close_midway", [False, True], ids=["drain", "server-closes"])
def test_stress_every_request_ends_exactly_once(close_midway: bool) -> None:
    """Under a random mix of backends, threads, cancellations, timeouts, failures and (in one
    variant) a server close, every request ends exactly once, consistently with what the
    server did, nothing hangs, and no ReplyContext is left behind."""
    seed = 20261122 + close_midway
    server, client = asyncmp.channel()
    ledger = Ledger()
    deferred: queue.SimpleQueue[Any] = queue.SimpleQueue()
    total = 5 * REQUESTS_PER_CLIENT
    handled = [0]
    handled_lock = threading.Lock()

    def on_handled() -> None:
        with handled_lock:
            handled[0] += 1
            if close_midway and handled[0] == total // 3:
                server.close()

    ranges = [range(k * REQUESTS_PER_CLIENT, (k + 1) * REQUESTS_PER_CLIENT) for k in range(5)]
    clients = [client.clone() for _ in range(5)]
    client.close()

    def closing(fn: Callable[[], Any], c: asyncmp.Client[int, Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            finally:
                c.close()

        return run

    workers = [
        lambda: asyncio.run(async_server(server, seed, ledger, deferred, on_handled)),
        lambda: thread_server(server, seed + 1, ledger, deferred, on_handled),
        closing(lambda: asyncio.run(async_client(clients[0], ranges[0], seed, ledger)), clients[0]),
        closing(
            lambda: uvloop.run(async_client(clients[1], ranges[1], seed + 1, ledger)), clients[1]
        ),
        closing(
            lambda: trio.run(async_client, clients[2], ranges[2], seed + 2, ledger), clients[2]
        ),
        closing(lambda: thread_client(clients[3], ranges[3], seed + 3, ledger), clients[3]),
        closing(lambda: thread_client(clients[4], ranges[4], seed + 4, ledger), clients[4]),
    ]
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)

        return run

    replier = threading.Thread(target=deferred_replier, args=(deferred, ledger), daemon=True)
    replier.start()
    threads = [threading.Thread(target=guarded(w), daemon=True) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    deferred.put(None)
    replier.join(10)

    assert not [t for t in threads if t.is_alive()], "a worker hung"
    assert errors == []
    clients.clear()
    del workers, threads
    check_round(ledger, total)
    if not close_midway:
        with pytest.raises(ClientsDisappeared):
            server.try_pop()
    # The mix really exercised every way a request can end.
    ends = Counter(records[0][0] for records in ledger.client.values())
    assert {"reply", "fail", "noreply", "gave-up"} <= set(ends), ends
    if close_midway:
        assert ends["server-gone"] > 0, ends
    print(dict(ends))
    gc.collect()
    core = server._channel
    left = [o for o in gc.get_objects() if type(o) is asyncmp.ReplyContext and o._channel is core]
    assert left == [], describe_referrers(left)
    assert server.statistics().in_flight == 0


def describe_referrers(objs: list[Any]) -> str:
    """Who keeps *objs* alive, two levels up (for the failure message)."""
    lines = []
    for obj in objs[:3]:
        for ref in gc.get_referrers(obj):
            if ref is objs:
                continue
            lines.append(f"{obj!r} <- {type(ref).__name__} {repr(ref)[:160]}")
            lines.extend(
                f"    <- {type(up).__name__} {repr(up)[:160]}"
                for up in gc.get_referrers(ref)[:4]
                if up is not objs
            )
    return "\n".join(lines)
