"""Several server processes in one queue group, a server process killed, a NATS restart."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from nats_helpers import NatsServer, serving

import asyncmp
import asyncmp.nats

pytestmark = [pytest.mark.anyio, pytest.mark.subprocess]

SERVER = str(Path(__file__).with_name("server_proc.py"))


class ServerProcess:
    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, url, "svc", name], stdout=subprocess.PIPE, text=True
        )

    async def expect(self, line: str) -> None:
        assert self.proc.stdout is not None
        got = await anyio.to_thread.run_sync(self.proc.stdout.readline)
        assert got.strip() == line, f"{self.name} printed {got!r}, expected {line!r}"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


async def test_nats_two_server_processes_in_a_queue_group_share_the_load(
    nats_server: NatsServer,
) -> None:
    """Requests to a subject served by two processes in one queue group are each answered
    once, and both processes take a share."""
    servers = [ServerProcess(nats_server.url, name) for name in ("a", "b")]
    try:
        with anyio.fail_after(40):
            for server in servers:
                await server.expect("ready")
            replies: list[Any] = []
            async with asyncmp.nats.connect("svc", nats_server.url, timeout=10) as client:

                async def one(i: int) -> None:
                    replies.append(await client.send(i))

                async with anyio.create_task_group() as tg:
                    for i in range(60):
                        tg.start_soon(one, i)
    finally:
        for server in servers:
            server.stop()
    assert sorted(value for _, value in replies) == list(range(60))
    assert {name for name, _ in replies} == {"a", "b"}


async def test_nats_killed_server_process_times_out_its_requests_and_the_other_serves(
    nats_server: NatsServer,
) -> None:
    """When a server process is SIGKILLed, the request it held raises TimeoutError (the
    documented outcome: nobody can answer it), and later requests are served by the
    surviving process; no caller hangs."""
    a = ServerProcess(nats_server.url, "a")
    b: ServerProcess | None = None
    try:
        with anyio.fail_after(40):
            await a.expect("ready")
            async with asyncmp.nats.connect("svc", nats_server.url, timeout=2) as client:
                outcome: list[BaseException] = []

                async def held() -> None:
                    try:
                        await client.send("hold")
                    except TimeoutError as exc:
                        outcome.append(exc)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(held)
                    await a.expect("holding")  # the request is in a's hands
                    b = ServerProcess(nats_server.url, "b")
                    await b.expect("ready")
                    a.kill()
                assert len(outcome) == 1
                assert isinstance(outcome[0], TimeoutError)
                replies = [await client.send(i) for i in range(10)]
    finally:
        a.stop()
        if b is not None:
            b.stop()
    assert replies == [["b", i] for i in range(10)]


async def test_nats_clients_and_servers_reconnect_after_a_nats_server_restart(
    nats_server: NatsServer,
) -> None:
    """After the NATS server restarts on the same port, serve() and the client reconnect by
    themselves and requests succeed again."""
    options: dict[str, Any] = {"reconnect_time_wait": 0.1, "max_reconnect_attempts": -1}
    with anyio.fail_after(40):
        async with (
            serving(nats_server.url, "r", **options),
            asyncmp.nats.connect("r", nats_server.url, timeout=1, **options) as client,
        ):
            assert await client.send(1) == 1
            assert await anyio.to_thread.run_sync(client.blocking.send, 2) == 2
            await anyio.to_thread.run_sync(nats_server.restart)
            while True:  # until both ends have reconnected and resubscribed
                try:
                    assert await client.send(3) == 3
                    break
                except (asyncmp.ServerDisappeared, TimeoutError):
                    await anyio.sleep(0.05)
            assert await anyio.to_thread.run_sync(client.blocking.send, 4) == 4
