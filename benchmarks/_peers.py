"""Peer libraries doing the same round trips as asyncmp (benchmark-only dependencies).

Each peer gets its most favourable idiom: a request queue of the library, and one reply
queue of the same library per client, reused for every request (no per-request object to
allocate). anyio streams are not thread-safe, so they only take part in async → async;
BlockingPortal is anyio's thread → async bridge, ``anyio.to_thread.run_sync`` its async →
thread one; Pykka (threads only) takes part in thread → thread.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._harness import Contestant, gather_clients, gather_threads, gather_threads_async

__all__ = (
    "PEERS_ASYNC_ASYNC",
    "PEERS_ASYNC_THREAD",
    "PEERS_THREAD_ASYNC",
    "PEERS_THREAD_THREAD",
)


@dataclass(frozen=True)
class _MixedQueue:
    """How one library spells the four queue operations."""

    make: Callable[[], Any]
    put_nowait: Callable[[Any, Any], None]  # from the event loop's thread
    async_get: Callable[[Any], Any]  # returns an awaitable
    sync_put: Callable[[Any, Any], None]  # from a plain thread
    sync_get: Callable[[Any], Any]  # blocks a plain thread
    close: Callable[[Any], Any] | None = None  # returns an awaitable


def _janus() -> _MixedQueue:
    import janus

    return _MixedQueue(
        make=janus.Queue,
        put_nowait=lambda q, item: q.async_q.put_nowait(item),
        async_get=lambda q: q.async_q.get(),
        sync_put=lambda q, item: q.sync_q.put(item),
        sync_get=lambda q: q.sync_q.get(),
        close=lambda q: q.aclose(),
    )


def _culsans() -> _MixedQueue:
    import culsans

    return _MixedQueue(
        make=culsans.Queue,
        put_nowait=lambda q, item: q.async_q.put_nowait(item),
        async_get=lambda q: q.async_q.get(),
        sync_put=lambda q, item: q.sync_q.put(item),
        sync_get=lambda q: q.sync_q.get(),
    )


def _aiologic() -> _MixedQueue:
    import aiologic

    return _MixedQueue(
        make=aiologic.SimpleQueue,
        put_nowait=lambda q, item: q.put(item),
        async_get=lambda q: q.async_get(),
        sync_put=lambda q, item: q.put(item),
        sync_get=lambda q: q.green_get(),
    )


async def _close_all(lib: _MixedQueue, queues: list[Any]) -> None:
    if lib.close is not None:
        for q in queues:
            await lib.close(q)


async def _serve_async(lib: _MixedQueue, requests: Any) -> None:
    get = lib.async_get
    put = lib.put_nowait
    while True:
        item = await get(requests)
        if item is None:
            return
        msg, replies = item
        put(replies, msg + 1)


def _serve_thread(lib: _MixedQueue, requests: Any) -> None:
    get = lib.sync_get
    put = lib.sync_put
    while True:
        item = get(requests)
        if item is None:
            return
        msg, replies = item
        put(replies, msg + 1)


def _async_async(make_lib: Callable[[], _MixedQueue]) -> Callable[[int, int], Any]:
    async def bench(n: int, clients: int) -> float:
        lib = make_lib()
        requests = lib.make()
        replies = [lib.make() for _ in range(clients)]

        async def one(k: int) -> None:
            mine = replies.pop()
            put, get = lib.put_nowait, lib.async_get
            for i in range(k):
                put(requests, (i, mine))
                assert await get(mine) == i + 1
            replies.insert(0, mine)

        server = asyncio.create_task(_serve_async(lib, requests))
        elapsed = await gather_clients(one, clients, n // clients)
        lib.put_nowait(requests, None)
        await server
        await _close_all(lib, [requests, *replies])
        return elapsed

    return bench


def _thread_async(make_lib: Callable[[], _MixedQueue]) -> Callable[[int, int], Any]:
    async def bench(n: int, clients: int) -> float:
        lib = make_lib()
        requests = lib.make()
        replies = [lib.make() for _ in range(clients)]
        spare = list(replies)

        def one(k: int) -> None:
            mine = spare.pop()  # list.pop is atomic under the GIL
            put, get = lib.sync_put, lib.sync_get
            for i in range(k):
                put(requests, (i, mine))
                assert get(mine) == i + 1

        server = asyncio.create_task(_serve_async(lib, requests))
        elapsed = await gather_threads_async(one, clients, n // clients)
        lib.put_nowait(requests, None)
        await server
        await _close_all(lib, [requests, *replies])
        return elapsed

    return bench


def _async_thread(make_lib: Callable[[], _MixedQueue]) -> Callable[[int, int], Any]:
    async def bench(n: int, clients: int) -> float:
        lib = make_lib()
        requests = lib.make()
        replies = [lib.make() for _ in range(clients)]
        spare = list(replies)

        async def one(k: int) -> None:
            mine = spare.pop()
            put, get = lib.put_nowait, lib.async_get
            for i in range(k):
                put(requests, (i, mine))
                assert await get(mine) == i + 1

        server = threading.Thread(target=_serve_thread, args=(lib, requests), daemon=True)
        server.start()
        elapsed = await gather_clients(one, clients, n // clients)
        lib.put_nowait(requests, None)
        await asyncio.get_running_loop().run_in_executor(None, server.join)
        await _close_all(lib, [requests, *replies])
        return elapsed

    return bench


def _thread_thread(make_lib: Callable[[], _MixedQueue]) -> Callable[[int, int], float]:
    def bench(n: int, clients: int) -> float:
        lib = make_lib()
        requests = lib.make()
        spare = [lib.make() for _ in range(clients)]

        def one(k: int) -> None:
            mine = spare.pop()
            put, get = lib.sync_put, lib.sync_get
            for i in range(k):
                put(requests, (i, mine))
                assert get(mine) == i + 1

        server = threading.Thread(target=_serve_thread, args=(lib, requests), daemon=True)
        server.start()
        elapsed = gather_threads(one, clients, n // clients)
        lib.sync_put(requests, None)
        server.join()
        return elapsed

    return bench


# -- anyio ----------------------------------------------------------------------------------


async def anyio_streams_async_async(n: int, clients: int) -> float:
    import anyio
    from anyio.streams.memory import MemoryObjectSendStream

    send, receive = anyio.create_memory_object_stream[tuple[int, MemoryObjectSendStream[int]]](
        math.inf
    )

    async def serve() -> None:
        async with receive:
            async for msg, reply in receive:
                reply.send_nowait(msg + 1)

    async def one(k: int) -> None:
        reply_send, reply_receive = anyio.create_memory_object_stream[int](1)
        with reply_send, reply_receive:
            put, get = send.send_nowait, reply_receive.receive
            for i in range(k):
                put((i, reply_send))
                assert await get() == i + 1

    server = asyncio.create_task(serve())
    elapsed = await gather_clients(one, clients, n // clients)
    send.close()
    await server
    return elapsed


async def anyio_portal_thread_async(n: int, clients: int) -> float:
    from anyio.from_thread import BlockingPortal

    async def handler(msg: int) -> int:
        return msg + 1

    async with BlockingPortal() as portal:

        def one(k: int) -> None:
            call = portal.call
            for i in range(k):
                assert call(handler, i) == i + 1

        elapsed = await gather_threads_async(one, clients, n // clients)
    return elapsed


async def anyio_to_thread_async_thread(n: int, clients: int) -> float:
    import anyio.to_thread

    def handler(msg: int) -> int:
        return msg + 1

    async def one(k: int) -> None:
        run_sync = anyio.to_thread.run_sync
        for i in range(k):
            assert await run_sync(handler, i) == i + 1

    return await gather_clients(one, clients, n // clients)


# -- pykka ----------------------------------------------------------------------------------


def pykka_thread_thread(n: int, clients: int) -> float:
    import pykka

    class Adder(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return message + 1

    ref = Adder.start()
    try:

        def one(k: int) -> None:
            ask = ref.ask
            for i in range(k):
                assert ask(i) == i + 1

        return gather_threads(one, clients, n // clients)
    finally:
        ref.stop()


# -- the contestant lists, per direction -------------------------------------------------------

PEERS_ASYNC_ASYNC = (
    Contestant("anyio streams", "peer", anyio_streams_async_async, ("anyio",)),
    Contestant("janus", "peer", _async_async(_janus), ("janus",)),
    Contestant("culsans", "peer", _async_async(_culsans), ("culsans",)),
    Contestant("aiologic", "peer", _async_async(_aiologic), ("aiologic",)),
)
PEERS_THREAD_ASYNC = (
    Contestant("janus", "peer", _thread_async(_janus), ("janus",)),
    Contestant("culsans", "peer", _thread_async(_culsans), ("culsans",)),
    Contestant("aiologic", "peer", _thread_async(_aiologic), ("aiologic",)),
    Contestant("BlockingPortal", "peer", anyio_portal_thread_async, ("anyio",)),
)
PEERS_ASYNC_THREAD = (
    Contestant("janus", "peer", _async_thread(_janus), ("janus",)),
    Contestant("culsans", "peer", _async_thread(_culsans), ("culsans",)),
    Contestant("aiologic", "peer", _async_thread(_aiologic), ("aiologic",)),
    Contestant("anyio to_thread", "peer", anyio_to_thread_async_thread, ("anyio",)),
)
PEERS_THREAD_THREAD = (
    Contestant("culsans", "peer", _thread_thread(_culsans), ("culsans",)),
    Contestant("aiologic", "peer", _thread_thread(_aiologic), ("aiologic",)),
    Contestant("pykka", "peer", pykka_thread_thread, ("pykka",)),
)
