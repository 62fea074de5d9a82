"""asyncmp's side of every mode.

The channel modes use only `asyncmp.channel()`. The others are written against the documented
APIs (`asyncmp.task`, `asyncmp.thread`, `asyncmp.Stage`, `asyncmp.dharma`, `asyncmp.calloop`);
while one of those is not there yet, or its API does not match, the harness reports that
contestant as "n/a" and carries on.
"""

from __future__ import annotations

import asyncio
import threading
import time
import tracemalloc
from typing import Any

import asyncmp

from ._harness import NotAvailable, gather_clients, gather_threads, gather_threads_async

__all__ = (
    "async_async",
    "async_thread",
    "calloop_channel",
    "calloop_pings",
    "calloop_timers",
    "memory_per_request",
    "nats_scale",
    "signaler_fanout",
    "stage_handoff",
    "task_spawn",
    "thread_async",
    "thread_spawn",
    "thread_thread",
)


async def _serve_async(server: asyncmp.Server[int, int]) -> None:
    wait = server.wait
    try:
        while True:
            msg, rctx = await wait()
            rctx.reply(msg + 1)
    except asyncmp.ClientsDisappeared:
        pass


def _serve_blocking(server: asyncmp.Server[int, int]) -> None:
    wait = server.blocking.wait
    try:
        while True:
            msg, rctx = wait()
            rctx.reply(msg + 1)
    except asyncmp.ClientsDisappeared:
        pass


# -- channel modes --------------------------------------------------------------------------


async def async_async(n: int, clients: int) -> float:
    server, client = asyncmp.channel()

    async def one(k: int) -> None:
        send = client.send
        for i in range(k):
            assert await send(i) == i + 1

    task = asyncio.create_task(_serve_async(server))
    elapsed = await gather_clients(one, clients, n // clients)
    client.close()
    await task
    return elapsed


async def thread_async(n: int, clients: int) -> float:
    server, client = asyncmp.channel()

    def one(k: int) -> None:
        send = client.blocking.send
        for i in range(k):
            assert send(i) == i + 1

    task = asyncio.create_task(_serve_async(server))
    elapsed = await gather_threads_async(one, clients, n // clients)
    client.close()
    await task
    return elapsed


async def async_thread(n: int, clients: int) -> float:
    server, client = asyncmp.channel()

    async def one(k: int) -> None:
        send = client.send
        for i in range(k):
            assert await send(i) == i + 1

    thread = threading.Thread(target=_serve_blocking, args=(server,), daemon=True)
    thread.start()
    elapsed = await gather_clients(one, clients, n // clients)
    client.close()
    thread.join()
    return elapsed


def thread_thread(n: int, clients: int) -> float:
    server, client = asyncmp.channel()

    def one(k: int) -> None:
        send = client.blocking.send
        for i in range(k):
            assert send(i) == i + 1

    thread = threading.Thread(target=_serve_blocking, args=(server,), daemon=True)
    thread.start()
    elapsed = gather_threads(one, clients, n // clients)
    client.close()
    thread.join()
    return elapsed


async def memory_per_request(n: int, clients: int) -> float:
    """Bytes per request queued with `Client.request` (node + PendingReply; payload shared)."""
    server, client = asyncmp.channel()
    payload = object()
    pending: list[Any] = [None] * n  # allocated before tracing starts
    request = client.request
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            pending[i] = request(payload)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert server.statistics().queued == n
    server.close()
    return (after - before) / n


# -- dispatch-loop servers ------------------------------------------------------------------


class _AsyncAdder:
    async def proc_req(self, msg: int, rctx: asyncmp.ReplyContext[int]) -> None:
        rctx.reply(msg + 1)


class _ThreadAdder:
    def proc_req(self, msg: int, rctx: asyncmp.ReplyContext[int]) -> None:
        rctx.reply(msg + 1)


async def task_spawn(n: int, clients: int) -> float:
    from asyncmp import task

    client, handle = task.spawn(lambda c: _AsyncAdder())

    async def one(k: int) -> None:
        send = client.send
        for i in range(k):
            assert await send(i) == i + 1

    elapsed = await gather_clients(one, clients, n // clients)
    client.close()
    await handle
    return elapsed


async def thread_spawn(n: int, clients: int) -> float:
    from asyncmp import thread

    client, handle = thread.spawn(lambda c: _ThreadAdder(), name="bench-adder")

    async def one(k: int) -> None:
        send = client.send
        for i in range(k):
            assert await send(i) == i + 1

    elapsed = await gather_clients(one, clients, n // clients)
    client.close()
    await handle
    return elapsed


# -- Signaler fan-out -----------------------------------------------------------------------

FANOUT = 100
_BATCH = 50


def signaler_fanout(n: int, clients: int) -> float:
    """*n* deliveries: ``n / 100`` emits to 100 subscribed receivers, drained with try_recv."""
    from asyncmp import dharma

    signaler: Any = dharma.Signaler()
    receivers: list[Any] = [dharma.Receiver() for _ in range(FANOUT)]
    for receiver in receivers:
        signaler.subscribe(1, receiver)
    emit = signaler.emit
    emits = max(1, n // FANOUT)
    t0 = time.perf_counter()
    done = 0
    while done < emits:
        batch = min(_BATCH, emits - done)
        for i in range(batch):
            emit(1, i)
        for receiver in receivers:
            try_recv = receiver.try_recv
            for _ in range(batch):
                try_recv()
        done += batch
    elapsed = time.perf_counter() - t0
    last = receivers[-1].try_recv()
    if last is not dharma.EMPTY:
        raise AssertionError(f"receiver not drained: {last!r}")
    return elapsed


# -- Stage hand-off -------------------------------------------------------------------------

STAGE_TOKENS = 8


async def stage_handoff(n: int, clients: int) -> float:
    """*n* events for 8 tokens in one shared "resource" (a deque), routed by whoever heads.

    The seed's UDP use case with the socket replaced by a prefilled deque: each of 8 tasks
    wants its own events; the head reads the resource, keeps the first event for itself and
    buffers and notifies the others' events. Counts events delivered per second.
    """
    from collections import deque

    stage_cls: Any = asyncmp.Stage
    finished: Any = asyncmp.Finished
    notified: Any = asyncmp.Notified
    per = max(1, n // STAGE_TOKENS)
    resource: deque[tuple[int, int]] = deque(
        (i % STAGE_TOKENS, i // STAGE_TOKENS) for i in range(per * STAGE_TOKENS)
    )
    buffer: dict[int, deque[int]] = {t: deque() for t in range(STAGE_TOKENS)}
    stage = stage_cls(resource, buffer)

    async def one(token: int) -> None:
        expected = 0

        async def head(director: Any) -> Any:
            res = director.resource
            while res:
                tok, value = res.popleft()
                if tok == token:
                    return value
                with director.buffer() as buf:
                    buf[tok].append(value)
                director.notify(tok)
            raise AssertionError("the resource ran dry before this token's event")

        # The ticket stays held across enter() calls: take it before the first look in
        # the buffer, so that nothing routed to this token afterwards goes unnoticed.
        ticket = stage.ticket(token)
        if ticket is None:
            raise AssertionError(f"token {token} already held")
        with ticket:
            while expected < per:
                with stage.buffer() as buf:
                    mine = buf[token]
                    got = mine.popleft() if mine else None
                if got is None:
                    outcome = await stage.enter(ticket, head, timeout=10)
                    if isinstance(outcome, notified):
                        continue  # look in the buffer again
                    if not isinstance(outcome, finished):
                        raise AssertionError(f"unexpected outcome {outcome!r}")
                    got = outcome.value
                assert got == expected, (token, got, expected)
                expected += 1

    start = asyncio.Event()

    async def runner(token: int) -> None:
        await start.wait()
        await one(token)

    tasks = [asyncio.create_task(runner(t)) for t in range(STAGE_TOKENS)]
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    return time.perf_counter() - t0


# -- calloop -------------------------------------------------------------------------------


def _calloop() -> Any:
    try:
        from asyncmp import calloop
    except ImportError as exc:
        raise NotAvailable(f"asyncmp.calloop: {exc}") from exc
    return calloop


def calloop_timers(n: int, clients: int) -> float:
    """*n* timer expirations: one timer re-armed to fire at once, n times."""
    calloop = _calloop()
    loop = calloop.EventLoop()
    count = [0]

    def on_timer(deadline: Any, metadata: Any, data: Any) -> Any:
        count[0] += 1
        if count[0] >= n:
            return calloop.TimeoutAction.drop()
        return calloop.TimeoutAction.to_duration(0)

    loop.handle().insert_source(calloop.Timer.immediate(), on_timer)
    t0 = time.perf_counter()
    while count[0] < n:
        loop.dispatch(None, None)
    return time.perf_counter() - t0


def calloop_pings(n: int, clients: int) -> float:
    """*n* pings: a ping source whose callback pings again."""
    calloop = _calloop()
    loop = calloop.EventLoop()
    ping, source = calloop.make_ping()
    count = [0]

    def on_ping(event: Any, metadata: Any, data: Any) -> None:
        count[0] += 1
        if count[0] < n:
            ping.ping()

    loop.handle().insert_source(source, on_ping)
    t0 = time.perf_counter()
    ping.ping()
    while count[0] < n:
        loop.dispatch(None, None)
    return time.perf_counter() - t0


def calloop_channel(n: int, clients: int) -> float:
    """*n* messages sent in batches of 1,000 on a calloop channel and dispatched."""
    calloop = _calloop()
    loop = calloop.EventLoop()
    sender, source = calloop.channel()
    count = [0]

    def on_msg(event: Any, metadata: Any, data: Any) -> None:
        if isinstance(event, calloop.Msg):
            count[0] += 1

    loop.handle().insert_source(source, on_msg)
    send = sender.send
    t0 = time.perf_counter()
    sent = 0
    while sent < n:
        batch = min(1000, n - sent)
        for i in range(batch):
            send(i)
        sent += batch
        while count[0] < sent:
            loop.dispatch(None, None)
    return time.perf_counter() - t0


# -- NATS at scale -------------------------------------------------------------------------


async def nats_scale(n: int, clients: int) -> float:
    """NATS at scale: *n* `asyncmp.nats` ``send()`` round trips from *clients* tasks to two
    asyncmp server processes served as a service, statistics on (`_nats_scale`)."""
    from ._nats_scale import asyncmp_requests

    return await asyncmp_requests(n, clients)
