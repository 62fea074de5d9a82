"""One request/reply round trip in each of the four sync/async combinations.

Run it: python docs/examples/channel_four_ways.py
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import asyncmp


@dataclass(frozen=True)
class Add:
    a: int
    b: int


def thread_server(server: asyncmp.Server[Add, int]) -> None:
    """A server in a plain thread: iterate until every client has gone."""
    for msg, rctx in server.blocking:
        rctx.reply(msg.a + msg.b)


async def task_server(server: asyncmp.Server[Add, int]) -> None:
    """A server task: `async for` ends with the last client."""
    async for msg, rctx in server:
        rctx.reply(msg.a + msg.b)


def sync_to_sync() -> int:
    server: asyncmp.Server[Add, int]
    client: asyncmp.Client[Add, int]
    server, client = asyncmp.channel()
    worker = threading.Thread(target=thread_server, args=(server,))
    worker.start()
    with client:  # closing the client ends the server's loop
        result = client.blocking.send(Add(1, 2), timeout=5)
    worker.join()
    return result


async def async_to_sync() -> int:
    server: asyncmp.Server[Add, int]
    client: asyncmp.Client[Add, int]
    server, client = asyncmp.channel()
    worker = threading.Thread(target=thread_server, args=(server,))
    worker.start()
    async with client:
        result = await client.send(Add(3, 4))
    await asyncio.to_thread(worker.join)
    return result


async def async_to_async() -> int:
    server: asyncmp.Server[Add, int]
    client: asyncmp.Client[Add, int]
    server, client = asyncmp.channel()
    serving = asyncio.create_task(task_server(server))
    async with client:
        result = await client.send(Add(5, 6))
    await serving
    return result


def sync_to_async() -> int:
    server: asyncmp.Server[Add, int]
    client: asyncmp.Client[Add, int]
    server, client = asyncmp.channel()
    # The server runs as a task on an event loop in another thread.
    loop_thread = threading.Thread(target=asyncio.run, args=(task_server(server),))
    loop_thread.start()
    with client:
        result = client.blocking.send(Add(7, 8), timeout=5)
    loop_thread.join()
    return result


def main() -> None:
    results = {
        "thread -> thread": sync_to_sync(),
        "task   -> thread": asyncio.run(async_to_sync()),
        "task   -> task  ": asyncio.run(async_to_async()),
        "thread -> task  ": sync_to_async(),
    }
    for how, value in results.items():
        print(f"{how}: {value}")
    assert list(results.values()) == [3, 7, 11, 15]


if __name__ == "__main__":
    main()
