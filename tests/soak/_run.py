"""One round: every worker started on its thread or loop, the main thread's share, the
ends joined and checked."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import trio
import uvloop

import asyncmp
from asyncmp.dharma import (
    TIMEOUT,
    Receiver,
)

from ._bridge import Bridge, async_consumer, async_sender, take, thread_consumer, thread_sender
from ._channels import (
    SoakHandler,
    async_client,
    async_server,
    deferred_replier,
    main_client_step,
    thread_client,
    thread_server,
)
from ._checks import check_bridge, check_channels, check_stage
from ._interrupts import Interrupts
from ._round import EVENTS, MAIN_WAITS, REQUESTS, WAIT, HandlerError, Round, close_all
from ._stage import (
    SoakStage,
    StageEvents,
    async_participant,
    blocking_head,
    collect,
    thread_participant,
)


def main_thread_work(
    rd: Round, bridge: Bridge, stage: SoakStage, events: StageEvents, token: str, irq: Interrupts
) -> None:
    """The main thread's share: a channel client, an r1 consumer, the Stage's event source
    and a Stage participant at once, interleaved, every blocking call open to Ctrl-C."""
    rng = rd.rng("main")
    clients = rd.clients["main"]
    requests = 0
    consuming = True
    ticket = rd.tickets.pop(token)
    got: list[int] = []
    outcome: Any = None
    stage_done = False
    with ticket:
        while requests < REQUESTS or consuming or not stage_done:
            if requests < REQUESTS:
                events.send_some()
                main_client_step(rd, rng, clients, irq)
                requests += 1
                if requests == REQUESTS:
                    close_all(clients)
                    events.send_all()
            if consuming:
                try:
                    with irq.armed(0.7):
                        msg = bridge.r1.blocking.recv(timeout=rng.choice(MAIN_WAITS))
                except KeyboardInterrupt:
                    rd.interrupts["receiver.blocking.recv"] += 1
                else:
                    consuming = msg is TIMEOUT or take(rd, "r1", msg)
            if not stage_done:
                try:
                    with irq.armed(0.9):
                        outcome = stage.blocking.enter(
                            ticket, blocking_head, timeout=rng.choice(MAIN_WAITS)
                        )
                except KeyboardInterrupt:
                    rd.interrupts["stage.blocking.enter"] += 1
                    outcome = None
                collect(stage, token, got, outcome)
                outcome = None
                stage_done = len(got) >= EVENTS
    rd.stage_got[token] = got


class Workers:
    """Threads of a round: each runs one function; errors are collected, hangs detected."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, BaseException]] = []
        self.threads: list[threading.Thread] = []

    def start(self, name: str, fn: Callable[[], object]) -> None:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                self.errors.append((name, exc))

        thread = threading.Thread(target=run, name=f"soak-{name}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self, but: str | None = None) -> None:
        """Join every thread (but the one named *but*) within WAIT; fail on a hang or error."""
        deadline = time.monotonic() + WAIT
        joining = [t for t in self.threads if t.name != f"soak-{but}"]
        for thread in joining:
            thread.join(max(0.0, deadline - time.monotonic()))
        hung = [t.name for t in joining if t.is_alive()]
        assert not hung, f"hung: {hung}"
        self.threads = [t for t in self.threads if t not in joining]
        if self.errors:
            report = "".join(
                f"--- {name}:\n" + "".join(traceback.format_exception(exc))
                for name, exc in self.errors[:4]
            )
            raise AssertionError(f"{len(self.errors)} workers failed:\n{report}")


def run_round(seed: int, number: int) -> Round:
    rd = Round(seed, number)
    rng = rd.rng("round")
    workers = Workers()

    def on_error(exc: Exception, msg: int) -> None:
        assert isinstance(exc, HandlerError)
        assert exc.args == (msg,)
        with rd.lock:
            rd.handler_failures += 1

    # Channels. `plain` is closed midway in every other round and bounded in every third.
    plain_server, plain = asyncmp.channel(max_queued=1 if number % 3 == 2 else None)
    if number % 2 == 1:
        rd.close_plain_at = rng.randrange(REQUESTS, 3 * REQUESTS)
    thread_loop, thread_handle = asyncmp.thread.spawn(
        lambda client: SoakHandler(rd, "thread-handler"), on_error=on_error
    )
    task_stops = number % 2 == 0
    spawned: queue.SimpleQueue[Any] = queue.SimpleQueue()
    clients_ready = threading.Event()

    client_workers = ["asyncio", "uvloop", "trio", "thread-1", "thread-2", "main"]

    # Bridge: consumers of r1 on asyncio, trio, a thread and the main thread; of r2 on
    # uvloop, trio and a thread. Senders on two threads, asyncio and trio.
    bridge = Bridge(consumers=Counter(r1=4, r2=3))
    rd.senders_left = 4

    # Stage.
    events: Receiver[Any] = Receiver()
    stage: SoakStage = asyncmp.Stage(events, {})
    tokens = ["asyncio", "uvloop", "trio-1", "trio-2", "thread-1", "thread-2", "main"]
    for token in tokens:
        ticket = stage.ticket(token)
        assert ticket is not None
        rd.tickets[token] = ticket
    del ticket
    source = StageEvents(rd, events, tokens)

    async def loop_main(backend: str) -> None:
        with anyio.fail_after(2 * WAIT):
            async with anyio.create_task_group() as tg:
                if backend == "uvloop":
                    client, handle = asyncmp.task.spawn(
                        lambda client: SoakHandler(rd, "task-handler"),
                        task_group=tg,
                        on_error="stop" if task_stops else on_error,
                    )
                    spawned.put(client)
                    del client
                    # Block this loop until every worker holds its clients: no request
                    # can come before, so the dispatch loop misses nothing meanwhile.
                    assert clients_ready.wait(WAIT)
                    rd.task_handle = handle
                    del handle
                tg.start_soon(async_client, rd, backend)
                tg.start_soon(async_server, rd, plain_server, f"server-{backend}")
                if backend == "asyncio":
                    tg.start_soon(async_sender, rd, bridge, "sender-asyncio")
                    tg.start_soon(async_consumer, rd, bridge, "r1", "consumer-asyncio")
                    tg.start_soon(async_participant, rd, stage, "asyncio")
                elif backend == "uvloop":
                    tg.start_soon(async_consumer, rd, bridge, "r2", "consumer-uvloop")
                    tg.start_soon(async_participant, rd, stage, "uvloop")
                else:
                    tg.start_soon(async_sender, rd, bridge, "sender-trio")
                    tg.start_soon(async_consumer, rd, bridge, "r1", "consumer-trio-1")
                    tg.start_soon(async_consumer, rd, bridge, "r2", "consumer-trio-2")
                    tg.start_soon(async_participant, rd, stage, "trio-1")
                    tg.start_soon(async_participant, rd, stage, "trio-2")

    workers.start("uvloop", lambda: uvloop.run(loop_main("uvloop")))
    task_loop = spawned.get(timeout=WAIT)
    for worker in client_workers:
        rd.clients[worker] = {
            "plain": plain.clone(),
            "thread": thread_loop.clone(),
            "task": task_loop.clone(),
        }
    for base in (plain, thread_loop, task_loop):
        base.close()
    del plain, thread_loop, task_loop
    clients_ready.set()

    workers.start("asyncio", lambda: asyncio.run(loop_main("asyncio")))
    workers.start("trio", lambda: trio.run(loop_main, "trio"))
    workers.start("deferred", lambda: deferred_replier(rd))
    for n in (1, 2):
        workers.start(f"client-{n}", lambda n=n: thread_client(rd, f"thread-{n}"))
        workers.start(f"sender-{n}", lambda n=n: thread_sender(rd, bridge, f"sender-thread-{n}"))
        workers.start(f"participant-{n}", lambda n=n: thread_participant(rd, stage, f"thread-{n}"))
    workers.start("server", lambda: thread_server(rd, plain_server, "server-thread"))
    workers.start("consumer-1", lambda: thread_consumer(rd, bridge, "r1", "consumer-thread-1"))
    workers.start("consumer-2", lambda: thread_consumer(rd, bridge, "r2", "consumer-thread-2"))

    irq = Interrupts(rd)
    failed = True
    try:
        with irq.installed():
            main_thread_work(rd, bridge, stage, source, "main", irq)
        failed = False
    finally:
        close_all(rd.clients["main"])
        if failed:  # let the others end soon
            source.send_all()
            for _ in range(8):
                bridge.stop1.send_custom("stop", None)
                bridge.stop2.send_custom("stop", None)
            plain_server.close()
        # Every client is closed now or soon: the servers drain and stop, and then nothing
        # is left for the deferred replier.
        workers.join(but="deferred")
        rd.deferred.put(None)
        workers.join()
    thread_result = thread_handle.blocking.join(timeout=WAIT)
    rd.interrupts["raised"] = irq.raised

    assert thread_result is None
    task_handle, rd.task_handle = rd.task_handle, None
    if task_stops and any(how == "noreply-raise" for how, _ in task_ends(rd)):
        with pytest.raises(HandlerError):
            task_handle.blocking.join(timeout=0)
    else:
        assert task_handle.blocking.join(timeout=0) is None
    del task_handle, thread_handle

    check_channels(rd)
    assert plain_server.statistics().in_flight == 0
    assert plain_server.statistics().clients == 0
    check_bridge(rd, bridge)
    check_stage(rd, stage, events, tokens)
    return rd


def task_ends(rd: Round) -> Iterator[tuple[str, bool | None]]:
    for rid, ends in rd.server_ends.items():
        if rd.sent[rid] == "task":
            yield from ends
