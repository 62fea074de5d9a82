"""The hand-written floor: what a careful programmer writes with the standard library alone.

Every function here does *n* request/reply round trips (``reply = request + 1``) split over
*clients* clients, and returns the seconds the traffic took (set-up and tear-down are not
timed). They are the yardstick of the performance targets:

- async → async: an ``asyncio.Queue`` of ``(msg, future)`` pairs, answered with
  ``future.set_result``;
- thread → async: ``loop.call_soon_threadsafe(queue.put_nowait, …)`` in, a per-request
  ``threading.Event`` out;
- async → thread: a ``queue.SimpleQueue`` in, ``loop.call_soon_threadsafe(future.set_result)``
  out;
- thread → thread: a ``queue.SimpleQueue`` in, a per-request ``threading.Event`` out.

The ``*_fast`` variants answer through one reused ``SimpleQueue`` per client instead of an
``Event`` per request: the fastest thread wake-up the standard library offers, shown for
honesty next to the floor.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import tracemalloc
from collections import deque
from typing import Any

from ._harness import gather_clients, gather_threads, gather_threads_async

__all__ = (
    "async_async",
    "async_thread",
    "loop_channel",
    "loop_pings",
    "loop_timers",
    "memory_per_request",
    "nats_scale",
    "signaler_fanout",
    "stage_handoff",
    "thread_async",
    "thread_async_fast",
    "thread_thread",
    "thread_thread_fast",
)


def _resolve(fut: asyncio.Future[int], value: int) -> None:
    if not fut.done():
        fut.set_result(value)


# -- async → async --------------------------------------------------------------------------


async def async_async(n: int, clients: int) -> float:
    loop = asyncio.get_running_loop()
    requests: asyncio.Queue[tuple[int, asyncio.Future[int]] | None] = asyncio.Queue()

    async def serve() -> None:
        get = requests.get
        while True:
            item = await get()
            if item is None:
                return
            msg, fut = item
            if not fut.done():
                fut.set_result(msg + 1)

    async def client(k: int) -> None:
        put = requests.put_nowait
        create = loop.create_future
        for i in range(k):
            fut: asyncio.Future[int] = create()
            put((i, fut))
            assert await fut == i + 1

    server = asyncio.create_task(serve())
    elapsed = await gather_clients(client, clients, n // clients)
    requests.put_nowait(None)
    await server
    return elapsed


# -- thread → async -------------------------------------------------------------------------


async def thread_async(n: int, clients: int) -> float:
    loop = asyncio.get_running_loop()
    requests: asyncio.Queue[tuple[int, list[Any]] | None] = asyncio.Queue()

    async def serve() -> None:
        get = requests.get
        while True:
            item = await get()
            if item is None:
                return
            msg, box = item
            box[1] = msg + 1
            box[0].set()

    def client(k: int) -> None:
        call = loop.call_soon_threadsafe
        put = requests.put_nowait
        for i in range(k):
            box: list[Any] = [threading.Event(), None]
            call(put, (i, box))
            box[0].wait()
            assert box[1] == i + 1

    server = asyncio.create_task(serve())
    elapsed = await gather_threads_async(client, clients, n // clients)
    requests.put_nowait(None)
    await server
    return elapsed


async def thread_async_fast(n: int, clients: int) -> float:
    loop = asyncio.get_running_loop()
    requests: asyncio.Queue[tuple[int, queue.SimpleQueue[int]] | None] = asyncio.Queue()

    async def serve() -> None:
        get = requests.get
        while True:
            item = await get()
            if item is None:
                return
            msg, replies = item
            replies.put(msg + 1)

    def client(k: int) -> None:
        call = loop.call_soon_threadsafe
        put = requests.put_nowait
        replies: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(k):
            call(put, (i, replies))
            assert replies.get() == i + 1

    server = asyncio.create_task(serve())
    elapsed = await gather_threads_async(client, clients, n // clients)
    requests.put_nowait(None)
    await server
    return elapsed


# -- async → thread -------------------------------------------------------------------------


async def async_thread(n: int, clients: int) -> float:
    loop = asyncio.get_running_loop()
    requests: queue.SimpleQueue[tuple[int, asyncio.Future[int]] | None] = queue.SimpleQueue()

    def serve() -> None:
        get = requests.get
        call = loop.call_soon_threadsafe
        while True:
            item = get()
            if item is None:
                return
            msg, fut = item
            call(_resolve, fut, msg + 1)

    async def client(k: int) -> None:
        put = requests.put
        create = loop.create_future
        for i in range(k):
            fut: asyncio.Future[int] = create()
            put((i, fut))
            assert await fut == i + 1

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    elapsed = await gather_clients(client, clients, n // clients)
    requests.put(None)
    server.join()
    return elapsed


# -- thread → thread ------------------------------------------------------------------------


def thread_thread(n: int, clients: int) -> float:
    requests: queue.SimpleQueue[tuple[int, list[Any]] | None] = queue.SimpleQueue()

    def serve() -> None:
        get = requests.get
        while True:
            item = get()
            if item is None:
                return
            msg, box = item
            box[1] = msg + 1
            box[0].set()

    def client(k: int) -> None:
        put = requests.put
        for i in range(k):
            box: list[Any] = [threading.Event(), None]
            put((i, box))
            box[0].wait()
            assert box[1] == i + 1

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    elapsed = gather_threads(client, clients, n // clients)
    requests.put(None)
    server.join()
    return elapsed


def thread_thread_fast(n: int, clients: int) -> float:
    requests: queue.SimpleQueue[tuple[int, queue.SimpleQueue[int]] | None] = queue.SimpleQueue()

    def serve() -> None:
        get = requests.get
        while True:
            item = get()
            if item is None:
                return
            msg, replies = item
            replies.put(msg + 1)

    def client(k: int) -> None:
        put = requests.put
        replies: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(k):
            put((i, replies))
            assert replies.get() == i + 1

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    elapsed = gather_threads(client, clients, n // clients)
    requests.put(None)
    server.join()
    return elapsed


# -- memory ---------------------------------------------------------------------------------


async def memory_per_request(n: int, clients: int) -> float:
    """Bytes per queued ``(payload, future)`` pair in an ``asyncio.Queue`` (payload shared)."""
    loop = asyncio.get_running_loop()
    requests: asyncio.Queue[tuple[object, asyncio.Future[int]]] = asyncio.Queue()
    payload = object()
    futures: list[Any] = [None] * n  # allocated before tracing starts
    create = loop.create_future
    put = requests.put_nowait
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            fut = futures[i] = create()
            put((payload, fut))
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / n


# -- hand-written equivalents of the non-channel modes ----------------------------------------


def signaler_fanout(n: int, clients: int) -> float:
    """*n* deliveries: under one lock, put each emit in 100 ``SimpleQueue``s; drain them."""
    fanout, batch_size = 100, 50
    lock = threading.Lock()
    receivers: list[queue.SimpleQueue[tuple[int, int]]] = [
        queue.SimpleQueue() for _ in range(fanout)
    ]
    emits = max(1, n // fanout)

    def emit(signal: int, payload: int) -> None:
        with lock:  # one global order of emits, as the Signaler guarantees
            for receiver in receivers:
                receiver.put((signal, payload))

    t0 = time.perf_counter()
    done = 0
    while done < emits:
        batch = min(batch_size, emits - done)
        for i in range(batch):
            emit(1, i)
        for receiver in receivers:
            get = receiver.get_nowait
            for _ in range(batch):
                get()
        done += batch
    return time.perf_counter() - t0


async def stage_handoff(n: int, clients: int) -> float:
    """The Stage mode's traffic with a dedicated router task: it reads the shared resource
    and puts each event into its token's ``asyncio.Queue``; 8 tasks await their own queue."""
    tokens = 8
    per = max(1, n // tokens)
    resource: deque[tuple[int, int]] = deque((i % tokens, i // tokens) for i in range(per * tokens))
    inboxes: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in range(tokens)]

    async def router() -> None:
        while resource:
            tok, value = resource.popleft()
            inboxes[tok].put_nowait(value)
            await asyncio.sleep(0)  # a real resource would make the router wait here

    async def one(token: int) -> None:
        get = inboxes[token].get
        for expected in range(per):
            assert await get() == expected

    start = asyncio.Event()

    async def runner(coro: Any) -> None:
        await start.wait()
        await coro

    tasks = [asyncio.create_task(runner(one(t))) for t in range(tokens)]
    tasks.append(asyncio.create_task(runner(router())))
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    return time.perf_counter() - t0


async def loop_timers(n: int, clients: int) -> float:
    """asyncio's equivalent of calloop timers: a ``call_at(now)`` chain of *n* callbacks."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    count = 0

    def on_timer() -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set_result(None)
        else:
            loop.call_at(loop.time(), on_timer)

    t0 = time.perf_counter()
    loop.call_at(loop.time(), on_timer)
    await done
    return time.perf_counter() - t0


async def loop_pings(n: int, clients: int) -> float:
    """asyncio's equivalent of calloop pings: a chain of *n* ``call_soon_threadsafe`` wake-ups."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    count = 0

    def on_ping() -> None:
        nonlocal count
        count += 1
        if count >= n:
            done.set_result(None)
        else:
            loop.call_soon_threadsafe(on_ping)

    t0 = time.perf_counter()
    loop.call_soon_threadsafe(on_ping)
    await done
    return time.perf_counter() - t0


async def loop_channel(n: int, clients: int) -> float:
    """asyncio's equivalent of a calloop channel: batches of 1,000 messages, each delivered to
    a callback with ``call_soon_threadsafe``."""
    loop = asyncio.get_running_loop()
    count = 0
    batch_done: asyncio.Future[None] | None = None
    target = 0

    def on_msg(value: int) -> None:
        nonlocal count
        count += 1
        if count >= target and batch_done is not None and not batch_done.done():
            batch_done.set_result(None)

    call = loop.call_soon_threadsafe
    t0 = time.perf_counter()
    sent = 0
    while sent < n:
        batch = min(1000, n - sent)
        batch_done = loop.create_future()
        target = sent + batch
        for i in range(batch):
            call(on_msg, i)
        sent += batch
        await batch_done
    return time.perf_counter() - t0


async def nats_scale(n: int, clients: int) -> float:
    """NATS at scale: *n* ``nc.request()`` round trips from *clients* tasks to two plain
    nats-py responder processes in a queue group (`_nats_scale`)."""
    from ._nats_scale import plain_requests

    return await plain_requests(n, clients)
