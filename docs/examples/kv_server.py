"""A small in-memory key-value store, served by asyncmp.task.spawn.

The store is a plain dict owned by one handler; the dispatch loop hands it one request at a
time, so it needs no lock. Async tasks and worker threads use it through the same client.
Run it with ``python kv_server.py``.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import asyncmp
from asyncmp import Break, Client, ReplyContext, WeakClient, task


# The requests: one small class each, matched with `match` in the handler.
@dataclass(frozen=True)
class Get:
    key: str


@dataclass(frozen=True)
class Put:
    key: str
    value: int


@dataclass(frozen=True)
class Add:
    key: str
    amount: int


@dataclass(frozen=True)
class Shutdown:
    pass


Request = Get | Put | Add | Shutdown
Reply = int | None


class KVStore:
    """The handler: owns the dict, answers each request, stops on Shutdown."""

    def __init__(self) -> None:
        self.data: dict[str, int] = {}

    def init(self, weak_client: WeakClient[Request, Reply]) -> None:
        # Runs on the loop before the first request. A handler that must reach its own
        # server keeps *weak_client* (never a strong client: that would keep the loop
        # running for ever); this one does not need to.
        print("  kv: dispatch loop started")

    async def proc_req(self, msg: Request, rctx: ReplyContext[Reply]) -> Break[str] | None:
        match msg:
            case Get(key) if key in self.data:
                rctx.reply(self.data[key])
            case Get(key):
                rctx.fail(KeyError(key))  # the client's send() raises this very KeyError
            case Put(key, value):
                rctx.reply(self.data.get(key))  # the old value
                self.data[key] = value
            case Add(key, amount):
                self.data[key] = self.data.get(key, 0) + amount
                rctx.reply(self.data[key])
            case Shutdown():
                rctx.reply(len(self.data))
                return Break("shutdown requested")
        return None  # go on with the next request

    def term(self, rv: str | None) -> dict[str, int]:
        # rv is the Break value, or None when every client has gone. What term returns is
        # what the JoinHandle gives back.
        print(f"  kv: dispatch loop ended ({rv or 'all clients gone'})")
        return dict(self.data)


def thread_worker(client: Client[Request, Reply], name: str, times: int) -> None:
    """Plain blocking code on a worker thread: the blocking face of the same client."""
    with client:  # closes this clone when done
        for _ in range(times):
            client.blocking.send(Add("hits", 1), timeout=5)
        client.blocking.send(Put(f"seen-by-{name}", threading.get_ident()), timeout=5)


async def async_worker(client: Client[Request, Reply], times: int) -> None:
    for _ in range(times):
        await client.send(Add("hits", 1))


async def main() -> None:
    client, handle = task.spawn(lambda client: KVStore(), name="kv")

    print("1. async code talks to the store")
    assert await client.send(Put("answer", 42)) is None
    assert await client.send(Put("answer", 43)) == 42
    assert await client.send(Get("answer")) == 43
    try:
        await client.send(Get("missing"))
    except KeyError as exc:
        print(f"   Get('missing') raised KeyError({exc})")
    else:
        raise AssertionError("expected a KeyError")

    print("2. four tasks and four worker threads add to one counter at the same time")
    threads = [asyncio.to_thread(thread_worker, client.clone(), f"t{n}", 250) for n in range(4)]
    tasks = [async_worker(client, 250) for _ in range(4)]
    await asyncio.gather(*threads, *tasks)
    hits = await client.send(Get("hits"))
    print(f"   hits = {hits}")
    assert hits == 8 * 250  # serial dispatch: no update was lost

    print("3. closing the last client ends the loop; the handle yields term's result")
    client.close()
    final = await handle
    assert final["answer"] == 43
    assert final["hits"] == 2000
    assert sum(key.startswith("seen-by-") for key in final) == 4
    print(f"   final store has {len(final)} keys")

    print("4. a second store, stopped by a request that makes the handler return Break")
    client, handle = task.spawn(lambda client: KVStore())
    await client.send(Put("x", 1))
    assert await client.send(Shutdown()) == 1
    assert await handle == {"x": 1}
    try:
        await client.send(Get("x"))
    except asyncmp.ServerDisappeared:
        print("   after Break the server is gone: ServerDisappeared")


if __name__ == "__main__":
    asyncio.run(main())
    print("kv_server: all checks passed")
