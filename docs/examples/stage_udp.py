"""Tasks and threads share one unconnected UDP socket through an asyncmp.Stage.

Every receiver wants the datagrams of one peer only. Whoever heads the stage reads the
socket: its own peer's datagram it keeps, the others it files in the buffer under their
sender's address and notifies that address's receiver.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections import Counter, defaultdict, deque

import anyio

import asyncmp

Addr = tuple[str, int]
Inbox = defaultdict[Addr, deque[bytes]]
UdpStage = asyncmp.Stage[Addr, socket.socket, Inbox]
UdpDirector = asyncmp.Director[Addr, socket.socket, Inbox]

# How each datagram reached its receiver, for the tour at the end.
how = Counter[str]()
how_lock = threading.Lock()


def tally(way: str) -> None:
    with how_lock:  # receivers run on several threads
        how[way] += 1


def open_stage() -> UdpStage:
    """An unconnected, non-blocking UDP socket on 127.0.0.1 and an empty inbox."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return asyncmp.Stage(sock, defaultdict(deque))


def take(stage: UdpStage, peer: Addr) -> bytes | None:
    """The oldest datagram a head filed for *peer*, if any."""
    with stage.buffer() as inbox:
        queue = inbox.get(peer)
        return queue.popleft() if queue else None


def read_one(director: UdpDirector) -> bytes | None:
    """Read one datagram: return it if it is the head's own, else file it and notify."""
    try:
        data, source = director.resource.recvfrom(65536)
    except BlockingIOError:
        return None
    if source == director.token:
        return data
    with director.buffer() as inbox:  # fill the buffer first, then notify
        inbox[source].append(data)
    director.notify(source)  # no ticket for source: it stays filed until someone looks
    return None


async def receive(stage: UdpStage, ticket: asyncmp.Ticket[Addr], within: float) -> bytes:
    """The next datagram from ``ticket.token``, in a task; TimeoutError after *within* s."""
    deadline = anyio.current_time() + within

    async def head(director: UdpDirector) -> bytes:
        # Heading: wait for the socket through the running loop, until our datagram comes.
        with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
            while True:
                await anyio.wait_readable(director.resource)
                if (data := read_one(director)) is not None:
                    return data

    while True:
        if (data := take(stage, ticket.token)) is not None:
            tally("filed by another head")
            return data
        left = max(0.0, deadline - anyio.current_time())
        match await stage.enter(ticket, head, timeout=left):
            case asyncmp.Finished(data):
                tally("read while heading")
                return data
            case asyncmp.Notified():
                continue  # something was filed for us: look again
            case asyncmp.TimedOut():
                raise TimeoutError(f"nothing from {ticket.token} within {within} s")


def receive_blocking(stage: UdpStage, ticket: asyncmp.Ticket[Addr], within: float) -> bytes:
    """The same as `receive`, for a plain thread: the head blocks in select()."""
    deadline = time.monotonic() + within

    def head(director: UdpDirector) -> bytes:
        # Heading: block in select() until our datagram comes, or the deadline.
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([director.resource], [], [], left)[0]:
                raise TimeoutError(f"nothing from {director.token} within {within} s")
            if (data := read_one(director)) is not None:
                return data

    while True:
        if (data := take(stage, ticket.token)) is not None:
            tally("filed by another head")
            return data
        left = max(0.0, deadline - time.monotonic())
        match stage.blocking.enter(ticket, head, timeout=left):
            case asyncmp.Finished(data):
                tally("read while heading")
                return data
            case asyncmp.Notified():
                continue
            case asyncmp.TimedOut():
                raise TimeoutError(f"nothing from {ticket.token} within {within} s")


PEERS = 8
DATAGRAMS = 10


async def main() -> None:
    stage = open_stage()
    server = stage.resource.getsockname()
    peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(PEERS)]
    for peer in peers:
        peer.bind(("127.0.0.1", 0))
    got: dict[Addr, list[bytes]] = {peer.getsockname(): [] for peer in peers}

    async def task_receiver(addr: Addr) -> None:
        ticket = stage.ticket(addr)
        assert ticket is not None, "one receiver per peer"
        with ticket:
            for _ in range(DATAGRAMS):
                got[addr].append(await receive(stage, ticket, within=10))

    def thread_receiver(addr: Addr) -> None:
        ticket = stage.ticket(addr)
        assert ticket is not None, "one receiver per peer"
        with ticket:
            for _ in range(DATAGRAMS):
                got[addr].append(receive_blocking(stage, ticket, within=10))

    threads: list[threading.Thread] = []
    async with anyio.create_task_group() as tg:
        for i, addr in enumerate(got):
            if i % 2:
                threads.append(threading.Thread(target=thread_receiver, args=(addr,)))
                threads[-1].start()
            else:
                tg.start_soon(task_receiver, addr)
        # Every peer sends its datagrams, interleaved with the others'.
        for n in range(DATAGRAMS):
            for peer in peers:
                peer.sendto(f"{peer.getsockname()[1]}:{n}".encode(), server)
    for thread in threads:
        await anyio.to_thread.run_sync(thread.join, 10)

    for addr, datagrams in got.items():
        expected = [f"{addr[1]}:{n}".encode() for n in range(DATAGRAMS)]
        assert sorted(datagrams) == sorted(expected), (addr, datagrams)  # none lost or doubled
    with stage.buffer() as inbox:
        assert not any(inbox.values()), "nothing left over"
    assert sum(how.values()) == PEERS * DATAGRAMS

    host, port = server
    print(f"{PEERS} receivers ({PEERS // 2} tasks, {PEERS // 2} threads) share {host}:{port}")
    print(f"each got exactly its own {DATAGRAMS} datagrams, none lost, none twice:")
    for way, count in how.most_common():
        print(f"  {count:3} {way}")
    for sock in (stage.resource, *peers):
        sock.close()


if __name__ == "__main__":
    anyio.run(main)
