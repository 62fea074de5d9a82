"""Peer libraries doing the same round trips as asyncmp (benchmark-only dependencies).

Each peer is used as its own documentation suggests for request/reply, in its most
favourable form (benchmarks/README.md says, per peer, how and why):

- the queues (janus, culsans, aiologic) and anyio's memory object streams: requests go into
  one queue (stream) of the library; each client owns one reply queue (stream) of the same
  library, made before the timing and reused for every request, and sends the bound put of
  it with each request, so nothing is allocated per request but the ``(msg, reply)`` tuple.
  Every method a loop calls is bound once, outside the loop;
- ``anyio.from_thread.BlockingPortal.call`` (thread → async) and ``anyio.to_thread.run_sync``
  (async → thread): anyio's own request/reply calls across the thread boundary;
- pykka (threads only): ``ActorRef.ask`` to a ``ThreadingActor``.

Where a peer cannot take part it is left out of the mode: anyio streams are not thread-safe
(async → async only); janus needs a running event loop (not in thread → thread); pykka's
futures block a thread (thread → thread only).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable, Callable
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
    """How one library spells its queue's operations: each face returns the bound method of
    a queue, which a client or server binds once, outside its loop."""

    make: Callable[[], Any]
    async_put: Callable[[Any], Callable[[Any], None]]  # never blocks; from the loop's thread
    async_get: Callable[[Any], Callable[[], Awaitable[Any]]]
    sync_put: Callable[[Any], Callable[[Any], None]]  # from a plain thread
    sync_get: Callable[[Any], Callable[[], Any]]  # blocks a plain thread
    close: Callable[[Any], Awaitable[None]] | None = None


def _janus() -> _MixedQueue:
    import janus

    # janus's two faces, as its README shows them: q.async_q and q.sync_q.
    return _MixedQueue(
        make=janus.Queue,
        async_put=lambda q: q.async_q.put_nowait,
        async_get=lambda q: q.async_q.get,
        sync_put=lambda q: q.sync_q.put,
        sync_get=lambda q: q.sync_q.get,
        close=lambda q: q.aclose(),
    )


def _culsans() -> _MixedQueue:
    import culsans

    # The queue's own methods (culsans's MixedQueue interface): its README's q.async_q and
    # q.sync_q are proxies whose async get wraps async_get in one more coroutine per call,
    # and its sync_put/sync_get exist "for consistency with janus"; green_* are the direct ones.
    return _MixedQueue(
        make=culsans.Queue,
        async_put=lambda q: q.put_nowait,
        async_get=lambda q: q.async_get,
        sync_put=lambda q: q.green_put,
        sync_get=lambda q: q.green_get,
    )


def _aiologic() -> _MixedQueue:
    import aiologic

    # SimpleQueue: aiologic's fastest queue (unbounded); put() serves both worlds.
    return _MixedQueue(
        make=aiologic.SimpleQueue,
        async_put=lambda q: q.put,
        async_get=lambda q: q.async_get,
        sync_put=lambda q: q.put,
        sync_get=lambda q: q.green_get,
    )


async def _close_all(lib: _MixedQueue, queues: list[Any]) -> None:
    if lib.close is not None:
        for q in queues:
            await lib.close(q)


# A request is ``(msg, reply)``: *reply* is the bound put of the client's own reply queue,
# made once per client, so the server answers with one call and nothing is allocated per
# request but the tuple (asyncmp allocates its request object; the floor a Future).


async def _serve_async(get: Callable[[], Awaitable[Any]]) -> None:
    while True:
        item = await get()
        if item is None:
            return
        msg, reply = item
        reply(msg + 1)


def _serve_thread(get: Callable[[], Any]) -> None:
    while True:
        item = get()
        if item is None:
            return
        msg, reply = item
        reply(msg + 1)


def _async_async(make_lib: Callable[[], _MixedQueue]) -> Callable[[int, int], Any]:
    async def bench(n: int, clients: int) -> float:
        lib = make_lib()
        requests = lib.make()
        replies = [lib.make() for _ in range(clients)]
        spare = [(lib.async_put(q), lib.async_get(q)) for q in replies]

        async def one(k: int) -> None:
            reply, get = spare.pop()
            put = lib.async_put(requests)
            for i in range(k):
                put((i, reply))
                assert await get() == i + 1

        server = asyncio.create_task(_serve_async(lib.async_get(requests)))
        elapsed = await gather_clients(one, clients, n // clients)
        lib.async_put(requests)(None)
        await server
        await _close_all(lib, [requests, *replies])
        return elapsed

    return bench


def _thread_async(make_lib: Callable[[], _MixedQueue]) -> Callable[[int, int], Any]:
    async def bench(n: int, clients: int) -> float:
        lib = make_lib()
        requests = lib.make()
        replies = [lib.make() for _ in range(clients)]
        spare = [(lib.async_put(q), lib.sync_get(q)) for q in replies]

        def one(k: int) -> None:
            reply, get = spare.pop()  # list.pop is atomic under the GIL
            put = lib.sync_put(requests)
            for i in range(k):
                put((i, reply))
                assert get() == i + 1

        server = asyncio.create_task(_serve_async(lib.async_get(requests)))
        elapsed = await gather_threads_async(one, clients, n // clients)
        lib.async_put(requests)(None)
        await server
        await _close_all(lib, [requests, *replies])
        return elapsed

    return bench


def _async_thread(make_lib: Callable[[], _MixedQueue]) -> Callable[[int, int], Any]:
    async def bench(n: int, clients: int) -> float:
        lib = make_lib()
        requests = lib.make()
        replies = [lib.make() for _ in range(clients)]
        spare = [(lib.sync_put(q), lib.async_get(q)) for q in replies]

        async def one(k: int) -> None:
            reply, get = spare.pop()
            put = lib.async_put(requests)
            for i in range(k):
                put((i, reply))
                assert await get() == i + 1

        server = threading.Thread(target=_serve_thread, args=(lib.sync_get(requests),), daemon=True)
        server.start()
        elapsed = await gather_clients(one, clients, n // clients)
        lib.async_put(requests)(None)
        await asyncio.get_running_loop().run_in_executor(None, server.join)
        await _close_all(lib, [requests, *replies])
        return elapsed

    return bench


def _thread_thread(make_lib: Callable[[], _MixedQueue]) -> Callable[[int, int], float]:
    def bench(n: int, clients: int) -> float:
        lib = make_lib()
        requests = lib.make()
        spare = [(lib.sync_put(q), lib.sync_get(q)) for q in (lib.make() for _ in range(clients))]

        def one(k: int) -> None:
            reply, get = spare.pop()
            put = lib.sync_put(requests)
            for i in range(k):
                put((i, reply))
                assert get() == i + 1

        server = threading.Thread(target=_serve_thread, args=(lib.sync_get(requests),), daemon=True)
        server.start()
        elapsed = gather_threads(one, clients, n // clients)
        lib.sync_put(requests)(None)
        server.join()
        return elapsed

    return bench


# -- anyio ----------------------------------------------------------------------------------


async def anyio_streams_async_async(n: int, clients: int) -> float:
    import anyio

    send, receive = anyio.create_memory_object_stream[tuple[int, Callable[[int], None]]](math.inf)
    # One reply stream per client (buffer 1: one reply in flight), made before the timing.
    streams = [anyio.create_memory_object_stream[int](1) for _ in range(clients)]
    spare = [
        (reply_send.send_nowait, reply_receive.receive) for reply_send, reply_receive in streams
    ]

    async def serve() -> None:
        async with receive:
            async for msg, reply in receive:
                reply(msg + 1)

    async def one(k: int) -> None:
        reply, get = spare.pop()
        put = send.send_nowait
        for i in range(k):
            put((i, reply))
            assert await get() == i + 1

    server = asyncio.create_task(serve())
    elapsed = await gather_clients(one, clients, n // clients)
    send.close()
    await server
    for reply_send, reply_receive in streams:
        reply_send.close()
        reply_receive.close()
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
