"""A server process for the multi-process tests: ``python server_proc.py URL SUBJECT NAME``.

Replies ``[NAME, msg]``; a request ``"hold"`` is held unanswered (to be in flight when the
process is killed). Prints ``ready`` once subscribed and ``holding`` when it holds one.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio

import asyncmp
import asyncmp.nats


async def main(url: str, subject: str, name: str) -> None:
    server, client = asyncmp.channel()
    held: list[asyncmp.ReplyContext[Any]] = []

    async def handle() -> None:
        async for msg, rctx in server:
            if msg == "hold":
                held.append(rctx)
                print("holding", flush=True)
            else:
                rctx.reply([name, msg])

    async with anyio.create_task_group() as tg:
        tg.start_soon(handle)
        await tg.start(
            lambda task_status: asyncmp.nats.serve(
                client, subject, url, task_status=task_status, reconnect_time_wait=0.1
            )
        )
        print("ready", flush=True)


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:4], backend="asyncio")
