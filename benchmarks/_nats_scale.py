"""NATS at scale: 64 concurrent requesters and two server processes in a queue group.

The mode ``nats_scale`` compares, on one machine, two ways of serving one NATS subject:

- the floor: **two plain nats-py responder processes** (``await msg.respond(msg.data)`` in
  a subscription callback, queue group ``q``), called with ``nc.request()``;
- asyncmp: **two asyncmp server processes**, each an `asyncmp.task.spawn` echo server
  served as a NATS service with `asyncmp.nats.serve_service` (statistics on; the service's
  default queue group ``q``), called with an `asyncmp.nats.connect` client's ``send()``.

Both carry the same bytes: the JSON encoding of one 16-character string, which asyncmp's
JSON codec makes of the string and the plain requester sends as it is. The requesters are
64 tasks on one event loop in the measuring process. One nats-server and the four server
processes (two of each kind, each kind on its own subject) are started on first use and
kept for the rest of the run: starting them is set-up, never timed, and each measurement
only opens its requesters' connection. ``python benchmarks/_nats_scale.py --serve KIND URL``
runs one server process (what the infrastructure starts).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

__all__ = ("PAYLOAD", "SUBJECTS", "asyncmp_requests", "plain_requests", "url")

#: What each request carries: one 16-character string, as JSON.
PAYLOAD = "0123456789abcdef"
PAYLOAD_BYTES = json.dumps(PAYLOAD).encode()
SERVERS_PER_KIND = 2
SUBJECTS = {"plain": "scale.plain", "asyncmp": "scale.service"}

_running: dict[str, Any] = {}


def url() -> str:
    """The NATS URL of this run's infrastructure, started on first use (module doc)."""
    if "url" in _running:
        return str(_running["url"])
    from ._harness import NotAvailable

    try:
        import nats  # noqa: F401  (the requesters and servers need nats-py)
    except ImportError as exc:
        raise NotAvailable(f"nats-py: {exc}") from exc
    from .nats_bench import _nats_server

    stack = ExitStack()
    atexit.register(stack.close)
    try:
        address = stack.enter_context(_nats_server())
    except RuntimeError as exc:  # no nats-server binary
        stack.close()
        raise NotAvailable(str(exc)) from exc
    procs = [_start(kind, address, stack) for kind in SUBJECTS for _ in range(SERVERS_PER_KIND)]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            stack.close()
            raise RuntimeError("a NATS server process did not start")
    _running["url"] = address
    _running["stack"] = stack
    return address


def _start(kind: str, address: str, stack: ExitStack) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", kind, address],
        stdout=subprocess.PIPE,
        text=True,
    )

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()

    stack.callback(stop)
    return proc


async def _gather(n: int, clients: int, one: Any) -> float:
    per_client = n // clients

    async def requester() -> None:
        for _ in range(per_client):
            await one()

    start = time.perf_counter()
    await asyncio.gather(*(requester() for _ in range(clients)))
    return time.perf_counter() - start


async def plain_requests(n: int, clients: int) -> float:
    """The floor: *n* ``nc.request()`` calls from *clients* tasks to the plain responders."""
    import nats

    address = url()
    nc = await nats.connect(address)
    subject = SUBJECTS["plain"]
    try:

        async def one() -> None:
            msg = await nc.request(subject, PAYLOAD_BYTES, timeout=30)
            assert msg.data == PAYLOAD_BYTES

        await _gather(clients, clients, one)  # the requesters' inbox and first round trip
        return await _gather(n, clients, one)
    finally:
        await nc.close()


async def asyncmp_requests(n: int, clients: int) -> float:
    """asyncmp: *n* ``client.send()`` calls from *clients* tasks to the asyncmp services."""
    import asyncmp.nats

    address = url()
    async with asyncmp.nats.connect(SUBJECTS["asyncmp"], address, timeout=30) as client:
        send = client.send

        async def one() -> None:
            assert await send(PAYLOAD) == PAYLOAD

        await _gather(clients, clients, one)  # connecting, the first round trip
        return await _gather(n, clients, one)


# -- the server processes ----------------------------------------------------------------------


async def _serve_plain(address: str) -> None:
    import nats

    nc = await nats.connect(address)

    async def respond(msg: Any) -> None:
        await msg.respond(msg.data)

    await nc.subscribe(SUBJECTS["plain"], queue="q", cb=respond)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def _serve_asyncmp(address: str) -> None:
    import anyio

    import asyncmp
    import asyncmp.nats
    import asyncmp.task

    class Echo:
        async def proc_req(self, msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
            rctx.reply(msg)

    client, _handle = asyncmp.task.spawn(lambda c: Echo())
    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: asyncmp.nats.serve_service(
                "scale", "1.0.0", {SUBJECTS["asyncmp"]: client}, address, task_status=task_status
            )
        )
        print("ready", flush=True)


def main(argv: list[str]) -> None:
    if argv[:1] != ["--serve"] or len(argv) != 3 or argv[1] not in SUBJECTS:
        raise SystemExit("usage: python benchmarks/_nats_scale.py --serve plain|asyncmp URL")
    serve = _serve_plain if argv[1] == "plain" else _serve_asyncmp
    asyncio.run(serve(argv[2]))


if __name__ == "__main__":
    main(sys.argv[1:])
