"""One client, used at the same time from asyncio, uvloop, trio and a plain thread.

No asyncmp object is bound to an event loop or a thread: a single Client is shared by an
asyncio loop, a uvloop loop and a trio run (each on its own thread) and a plain thread, while
the server answers from yet another thread — and may pass a reply context on to a worker
that answers later.

Run it: python docs/examples/channel_backends.py   (needs the uvloop and trio extras)
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable

import trio
import uvloop

import asyncmp


def server_thread(server: asyncmp.Server[str, str]) -> None:
    """Answers half of the requests itself and hands the other half to a worker thread."""
    later: queue.SimpleQueue[asyncmp.ReplyContext[str] | None] = queue.SimpleQueue()
    deferred: list[str] = []

    def worker() -> None:
        while (rctx := later.get()) is not None:
            rctx.reply(deferred.pop(0))

    helper = threading.Thread(target=worker)
    helper.start()
    for n, (msg, rctx) in enumerate(server.blocking):
        if n % 2:
            deferred.append(f"{msg} (answered later by a worker)")
            later.put(rctx)
        else:
            rctx.reply(f"{msg} (answered by the server)")
    later.put(None)
    helper.join()


async def ask(client: asyncmp.Client[str, str], who: str) -> str:
    return await client.send(f"hello from {who}")


def main() -> None:
    server: asyncmp.Server[str, str]
    client: asyncmp.Client[str, str]
    server, client = asyncmp.channel()
    serving = threading.Thread(target=server_thread, args=(server,))
    serving.start()

    replies: dict[str, str] = {}
    callers: dict[str, Callable[[], str]] = {
        "asyncio": lambda: asyncio.run(ask(client, "asyncio")),
        "uvloop": lambda: uvloop.run(ask(client, "uvloop")),
        "trio": lambda: trio.run(ask, client, "trio"),
        "a thread": lambda: client.blocking.send("hello from a thread", timeout=5),
    }

    def call(who: str, fn: Callable[[], str]) -> None:
        replies[who] = fn()

    threads = [threading.Thread(target=call, args=(who, fn)) for who, fn in callers.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    serving.join()

    for who in callers:
        print(f"{who:>8}: {replies[who]}")
    assert all(replies[who].startswith(f"hello from {who}") for who in callers)


if __name__ == "__main__":
    main()
