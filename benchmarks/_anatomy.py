"""Where the time of one async → async request goes: a ladder from a bare design to asyncmp.

``python -m benchmarks --anatomy`` runs these modes. Each rung is the previous one plus one
thing that asyncmp's request/reply channel needs, so the drop from rung to rung is that
thing's price, measured in the same run as the floor (``asyncio.Queue`` + ``Future``):

1. **bare**: a deque of ``(msg, future)`` pairs and a parked-server future for the hand-off;
   the client and the server loops do it inline — the least any design can do;
2. **+ async API**: the same behind ``await send(msg)`` and ``await wait()`` — the shape of
   the channel's API (and of the floor's ``await queue.get()``);
3. **+ lock**: a ``threading.Lock`` around the queue and the parked servers, because any
   thread may send or serve;
4. **+ loop look-up**: ``asyncio._get_running_loop()`` per request, because a client does not
   belong to one event loop (on CPython 3.11 it makes a ``getpid()`` system call);
5. **+ request object**: a slotted object per request instead of a tuple, which the server
   keeps as its reply context (so that dropping it can answer ``NoReply``);
6. **asyncmp** itself: rung 5 plus the rest of the channel's guarantees — withdrawn
   requests skipped, ``NoReply`` on garbage collection, statistics counters, trio and thread
   requesters, closing.

Rungs 1–5 are written only for this measurement: none is a usable channel (no errors, no
cancellation, no closing). They tell what stands in the way of a target, not what to ship.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any, final

from . import _asyncmp_modes as amp, _floor as floor
from ._harness import Contestant, Mode, gather_clients

__all__ = ("ANATOMY_MODES",)

_get_running_loop = asyncio._get_running_loop


@final
class _Request:
    # The same fields as asyncmp's ReplyContext, set the same way.
    __slots__ = ("core", "msg", "state", "tid", "to")
    core: object
    msg: Any
    state: int
    tid: int
    to: asyncio.Future[int]


_new_request = object.__new__
_get_ident = threading.get_ident


def _rung(*, api: bool, lock: bool, lookup: bool, node: bool) -> Any:
    """The benchmark function of one rung: ``fn(n, clients)`` → seconds."""

    async def bench(n: int, clients: int) -> float:
        loop = asyncio.get_running_loop()
        queue: deque[Any] = deque()
        parked: list[asyncio.Future[Any]] = []
        mutex = threading.Lock()
        acquire, release = mutex.acquire, mutex.release

        def push(item: Any) -> None:
            if lock:
                acquire()
            try:
                waiter = parked.pop() if parked else None
                if waiter is None:
                    queue.append(item)
            finally:
                if lock:
                    release()
            if waiter is not None:
                waiter.set_result(item)

        async def wait() -> Any:
            if lock:
                acquire()
            try:
                if queue:
                    return queue.popleft()
                waiter = loop.create_future()
                parked.append(waiter)
            finally:
                if lock:
                    release()
            return await waiter

        async def send(msg: int) -> int:
            here = _get_running_loop() if lookup else loop
            assert here is not None
            fut: asyncio.Future[int] = asyncio.Future(loop=here)
            if node:
                request = _new_request(_Request)
                request.core = None
                request.msg = msg
                request.state = 0
                request.to = fut
                request.tid = _get_ident()
                push(request)
                del request  # as asyncmp: the server alone holds the request while it waits
            else:
                push((msg, fut))
            return await fut

        async def serve() -> None:
            while True:
                item = await wait()
                if item is None:
                    return
                if node:
                    msg, fut = item.msg, item.to
                else:
                    msg, fut = item
                if not fut.done():
                    fut.set_result(msg + 1)

        async def client_api(k: int) -> None:
            for i in range(k):
                assert await send(i) == i + 1

        async def client_bare(k: int) -> None:
            create = loop.create_future
            for i in range(k):
                fut: asyncio.Future[int] = create()
                if parked:
                    parked.pop().set_result((i, fut))
                else:
                    queue.append((i, fut))
                assert await fut == i + 1

        async def serve_bare() -> None:
            while True:
                if queue:
                    item = queue.popleft()
                else:
                    waiter = loop.create_future()
                    parked.append(waiter)
                    item = await waiter
                if item is None:
                    return
                msg, fut = item
                if not fut.done():
                    fut.set_result(msg + 1)

        server = asyncio.create_task(serve() if api else serve_bare())
        elapsed = await gather_clients(client_api if api else client_bare, clients, n // clients)
        push(None)
        await server
        return elapsed

    return bench


_RUNGS = (
    Contestant("1 bare", "hand-written", _rung(api=False, lock=False, lookup=False, node=False)),
    Contestant(
        "2 + async API", "hand-written", _rung(api=True, lock=False, lookup=False, node=False)
    ),
    Contestant("3 + lock", "hand-written", _rung(api=True, lock=True, lookup=False, node=False)),
    Contestant(
        "4 + loop look-up", "hand-written", _rung(api=True, lock=True, lookup=True, node=False)
    ),
    Contestant(
        "5 + request object", "hand-written", _rung(api=True, lock=True, lookup=True, node=True)
    ),
    Contestant("asyncmp", "asyncmp", amp.async_async),
    Contestant("floor", "floor", floor.async_async),
)


def _mode(clients: int) -> Mode:
    return Mode(
        f"anatomy_{clients}",
        f"anatomy, {clients} client{'s' if clients > 1 else ''}",
        ("asyncio", "uvloop"),
        _RUNGS,
        clients=clients,
        smoke_n=max(200, 4 * clients),
    )


#: Not part of the default run: ``--anatomy`` (or ``--modes anatomy_64``) asks for them.
ANATOMY_MODES: tuple[Mode, ...] = (_mode(1), _mode(64))
