"""Integration: the exit-left use case — one unconnected UDP socket on 127.0.0.1 shared by
tasks on two event loops and plain threads — using the docs example's own functions."""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
import sniffio

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "stage_udp.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stage_udp_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ex = _load_example()


@pytest.fixture
def peers() -> Iterator[list[socket.socket]]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(9)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    yield socks
    for sock in socks:
        sock.close()


@pytest.fixture
def stage() -> Iterator[Any]:
    s = ex.open_stage()
    # Room for every datagram of a test even if nobody reads for a while.
    s.resource.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    yield s
    s.resource.close()


async def test_udp_socket_shared_by_tasks_threads_and_another_loop(
    stage: Any, peers: list[socket.socket]
) -> None:
    """Each receiver — tasks here, tasks on another loop in a thread, plain threads — gets
    exactly its own peer's datagrams: none lost, none delivered twice, none to another."""
    datagrams = 15
    server = stage.resource.getsockname()
    *receivers, stranger = peers  # the stranger sends too, but nobody receives from it
    addrs = [peer.getsockname() for peer in receivers]
    got: dict[Any, list[bytes]] = {addr: [] for addr in addrs}
    # The other loop: trio under asyncio backends, asyncio under trio.
    other = "asyncio" if sniffio.current_async_library() == "trio" else "trio"

    async def task_receiver(addr: Any) -> None:
        ticket = stage.ticket(addr)
        assert ticket is not None
        with ticket:
            for _ in range(datagrams):
                got[addr].append(await ex.receive(stage, ticket, within=10))

    def thread_receiver(addr: Any) -> None:
        ticket = stage.ticket(addr)
        assert ticket is not None
        with ticket:
            for _ in range(datagrams):
                got[addr].append(ex.receive_blocking(stage, ticket, within=10))

    def other_loop(addrs: list[Any]) -> None:
        async def main() -> None:
            async with anyio.create_task_group() as tg:
                for addr in addrs:
                    tg.start_soon(task_receiver, addr)

        anyio.run(main, backend=other)

    errors: list[BaseException] = []

    def guarded(target: Any, *args: Any) -> None:
        try:
            target(*args)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=guarded, args=(other_loop, addrs[0:2])),
        threading.Thread(target=guarded, args=(thread_receiver, addrs[2])),
        threading.Thread(target=guarded, args=(thread_receiver, addrs[3])),
    ]
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for thread in threads:
                thread.start()
            for addr in addrs[4:]:
                tg.start_soon(task_receiver, addr)
            for n in range(datagrams):
                for peer in peers:
                    peer.sendto(f"{peer.getsockname()[1]}:{n}".encode(), server)
        for thread in threads:
            await anyio.to_thread.run_sync(thread.join, 20)
    assert errors == []
    assert not any(thread.is_alive() for thread in threads)

    for addr, received in got.items():
        expected = [f"{addr[1]}:{n}".encode() for n in range(datagrams)]
        assert sorted(received) == sorted(expected), addr
    # The stranger's datagrams were filed for it, never handed to anyone else; whatever is
    # still unread in the socket is the stranger's too.
    with stage.buffer() as inbox:
        leftovers = {addr: list(queue) for addr, queue in inbox.items() if queue}
    assert set(leftovers) <= {stranger.getsockname()}
    assert stage.ticket(addrs[0]) is not None  # every ticket was closed


async def test_udp_receive_times_out_when_its_peer_is_silent(
    stage: Any, peers: list[socket.socket]
) -> None:
    """A task and a thread waiting on silent peers get TimeoutError, whether heading or
    parked, and the stage serves the next receiver afterwards."""
    server = stage.resource.getsockname()
    silent_task, silent_thread, talker = (p.getsockname() for p in peers[:3])
    failures: list[str] = []

    async def wait_task() -> None:
        with stage.ticket(silent_task) as ticket:
            with pytest.raises(TimeoutError):
                await ex.receive(stage, ticket, within=0.05)
            failures.append("task")

    def wait_thread() -> None:
        with stage.ticket(silent_thread) as ticket:
            with pytest.raises(TimeoutError):
                ex.receive_blocking(stage, ticket, within=0.05)
            failures.append("thread")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_task)
            tg.start_soon(anyio.to_thread.run_sync, wait_thread)
        assert sorted(failures) == ["task", "thread"]
        peers[2].sendto(b"hello", server)
        with stage.ticket(talker) as ticket:
            assert await ex.receive(stage, ticket, within=5) == b"hello"
