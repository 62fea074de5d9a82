"""The interrupt soak's child process (run by tests/test_soak_interrupts.py; ``python
tests/soak_interrupts.py SCENARIO [SECONDS]`` runs it by hand).

Real SIGINTs at random moments to the main thread, and garbage collections at any
allocation (low thresholds) and at random on every thread, while threads, asyncio, uvloop,
trio and the main thread use asyncmp together, round after round:

- ``bridge-stage``: a bridge (`Sender` fan-out and a `DirectSender`) fed by a thread, a
  uvloop task, a trio task and the main thread, consumed by a thread, asyncio and trio tasks
  and the main thread; a `Stage` whose resource is a bridge receiver of ``(token, seq)``
  events, headed and entered by a thread, asyncio and trio tasks and the main thread.
- ``servers``: an `asyncmp.thread.spawn` and an `asyncmp.task.spawn` (asyncio) echo server
  and a plain channel served by a trio and a uvloop task, sent to by two threads and
  asyncio, uvloop and trio tasks (``send``, ``blocking.send``, ``request`` and
  ``pending.blocking.wait``, ``pending.cancel``, dropped pending replies), with clients
  cloned and dropped in reference cycles; the main thread joins the loops' handles
  (interrupted) and drops clones in cycles.
- ``channel-main``: the same, with the main thread sending too (``blocking.send``,
  ``request``, ``pending.blocking.wait``), interrupted anywhere in them (the hand-off to a
  parked server completes even when the interrupt strikes in its instant).

The main thread's SIGINT handler raises ``KeyboardInterrupt`` whenever the signal finds it
inside an asyncmp call — any instant of it — except inside a finalizer (Python prints and
drops an exception raised there, with the finalizer's work: docs/threads.md); elsewhere it
does nothing (the soak's own bookkeeping is not under test). Every asyncmp object also goes
into reference cycles now and then, so finalizers run on whatever thread collects, in the
middle of whatever that thread was doing.

Checks after every round: nothing doubled (no message, event or request delivered or served
twice); nothing lost but what the docs allow an interrupt on the main thread to drop — a
value in the instant a call returns it, a message an interrupted send may or may not have
queued — counted against the interrupts that struck there; nothing hung (every wait
bounded); the stage free for a newcomer; no asyncmp object left after the round; traced
memory flat after the first round. Exit status 0 when every round passed; the last line
printed is a summary.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import signal
import sys
import threading
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import anyio
import anyio.lowlevel
import trio
import uvloop

import asyncmp
import bounds
from asyncmp._lowlevel._finalize import wait_deferred
from asyncmp.dharma import (
    TIMEOUT,
    DirectSender,
    Plain,
    Receiver,
    Sender,
    connect,
    direct_connect,
)

PACKAGE = os.path.dirname(asyncmp.__file__)
WAIT = 3 * bounds.WAIT  # the bound of every wait that must end: the soak loads every core
SHORT = (0, 0.0005, 0.002, 0.01)


class Stop(Exception):
    """A round's deadline passed where a worker loops."""


# -- interrupts ---------------------------------------------------------------------------------


class Interrupts:
    """SIGINTs sent at random moments to the main thread by a helper thread; the handler
    raises KeyboardInterrupt only inside an asyncmp call (module doc), and counts where."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.main = threading.main_thread().ident
        self.op: str | None = None  # the main thread's current kind of call
        self.raised: Counter[str] = Counter()
        self.declined = 0
        self.in_finalizer = 0
        self.while_handling = 0
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="interrupter", daemon=True)

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if sys.exc_info()[1] is not None:
            # One Ctrl-C at a time: a second one while the first is being handled (asyncmp
            # cleaning up after it, in an except or finally) can cut any Python cleanup
            # short — docs/threads.md.
            self.while_handling += 1
            return
        op = self.op
        inside = False
        f = frame
        while f is not None:
            if f.f_code.co_name == "__del__":
                self.in_finalizer += 1
                return
            if f.f_code.co_filename.startswith(PACKAGE):
                inside = True
            f = f.f_back
        if op is None or not inside:
            self.declined += 1
            return
        self.raised[op] += 1
        raise KeyboardInterrupt

    def _run(self) -> None:
        rng = random.Random(self.rng.random())
        while not self._stop.wait(rng.choice((0.0002, 0.0005, 0.001, 0.002, 0.004))):
            signal.pthread_kill(self.main, signal.SIGINT)  # type: ignore[arg-type]
            self.sent += 1

    @contextmanager
    def running(self) -> Iterator[None]:
        old = signal.signal(signal.SIGINT, self.handler)
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join(WAIT)
            # A signal sent before the join returned has been handled: the join is
            # interruptible and the handler runs before it returns.
            self.op = None
            signal.signal(signal.SIGINT, old)

    @contextmanager
    def at(self, op: str) -> Iterator[None]:
        """Around one asyncmp call of the main thread: interrupts may strike in it."""
        outer, self.op = self.op, op
        try:
            yield
        finally:
            self.op = outer


# -- what every worker shares -------------------------------------------------------------------


class Round:
    def __init__(self, seed: int, number: int, seconds: float) -> None:
        self.seed = seed
        self.number = number
        self.deadline = time.monotonic() + seconds
        self.lock = threading.Lock()
        self.errors: list[tuple[str, BaseException]] = []
        self.counts: Counter[str] = Counter()

    def rng(self, name: str) -> random.Random:
        return random.Random(f"{self.seed}/{self.number}/{name}")

    def over(self) -> bool:
        return time.monotonic() >= self.deadline

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n


def garbage(rng: random.Random, obj: object) -> None:
    """Now and then: put *obj* in a reference cycle (collected later, on whatever thread),
    and now and then collect here and now."""
    if rng.random() < 0.2:
        cycle: list[Any] = [obj]
        cycle.append(cycle)
    if rng.random() < 0.003:
        gc.collect()


class Workers:
    def __init__(self, rd: Round) -> None:
        self.rd = rd
        self.threads: list[threading.Thread] = []

    def start(self, name: str, fn: Callable[[], object]) -> None:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                self.rd.errors.append((name, exc))

        thread = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        """Join every worker within WAIT. Clients dropped in reference cycles count until
        they are collected (docs: a collected client counts as closed), and a worker's
        server waits for the last one: collect meanwhile, as time would."""
        deadline = time.monotonic() + WAIT
        for thread in self.threads:
            while thread.is_alive() and time.monotonic() < deadline:
                gc.collect()
                thread.join(0.05)
        hung = [t for t in self.threads if t.is_alive()]
        if hung:
            frames = sys._current_frames()
            stacks = "".join(
                f"--- {t.name}:\n" + "".join(traceback.format_stack(frames[t.ident]))  # type: ignore[index]
                for t in hung
            )
            raise AssertionError(f"hung: {[t.name for t in hung]}\n{stacks}")


def loop_thread(kind: str, main: Callable[[], Any]) -> Callable[[], None]:
    """A thread body that runs the coroutine function *main* on asyncio, uvloop or trio."""
    if kind == "asyncio":
        return lambda: asyncio.run(main())
    if kind == "uvloop":
        return lambda: uvloop.run(main())
    return lambda: trio.run(main)


# -- bridge and stage -----------------------------------------------------------------------------

TOKENS = ("thread", "asyncio", "trio", "main")


class BridgeStage:
    """One round of the ``bridge-stage`` scenario."""

    def __init__(self, rd: Round, irq: Interrupts) -> None:
        self.rd = rd
        self.irq = irq
        self.receiver: Receiver[Any] = Receiver()
        self.fan: Sender[Any] = Sender()
        self.direct: DirectSender[Any] = DirectSender()
        connect(self.fan, self.receiver)
        direct_connect(self.direct, self.receiver)
        self.sent: Counter[Any] = Counter()
        self.maybe: Counter[Any] = Counter()  # sends an interrupt cut short
        self.got: Counter[Any] = Counter()
        self.senders_left = 4
        # stage
        self.events: Receiver[Any] = Receiver()
        self.feed: Sender[Any] = Sender()
        connect(self.feed, self.events)
        self.stage: asyncmp.Stage[str, Receiver[Any], dict[str, list[int]]] = asyncmp.Stage(
            self.events, {}
        )
        self.fed: Counter[Any] = Counter()
        self.delivered: Counter[Any] = Counter()
        self.feeding = True
        self.tickets = {token: self.stage.ticket(token) for token in TOKENS}

    # bridge

    def send_one(self, name: str, seq: int, rng: random.Random, on_main: bool = False) -> None:
        value = (name, seq)
        sender = self.fan if rng.random() < 0.5 else self.direct
        if not on_main:
            with self.rd.lock:
                self.sent[value] += 1
            sender.send_plain(value)
            return
        try:
            with self.irq.at("bridge-send"):
                sender.send_plain(value)
        except KeyboardInterrupt:
            with self.rd.lock:
                self.maybe[value] += 1
        else:
            with self.rd.lock:
                self.sent[value] += 1

    def sender_done(self) -> None:
        with self.rd.lock:
            self.senders_left -= 1

    def drained(self) -> bool:
        return self.senders_left == 0 and len(self.receiver) == 0

    def took(self, msg: Any) -> None:
        assert isinstance(msg, Plain), msg
        with self.rd.lock:
            self.got[msg.value] += 1

    def thread_sender(self, name: str) -> None:
        rng = self.rd.rng(name)
        seq = 0
        while not self.rd.over():
            self.send_one(name, seq, rng)
            seq += 1
            garbage(rng, Receiver())
            if seq % 64 == 0:
                time.sleep(0.0005)
        self.sender_done()

    async def async_sender(self, name: str) -> None:
        rng = self.rd.rng(name)
        seq = 0
        while not self.rd.over():
            self.send_one(name, seq, rng)
            seq += 1
            await anyio.sleep(0 if seq % 16 else 0.0005)
        self.sender_done()

    def thread_consumer(self, name: str) -> None:
        rng = self.rd.rng(name)
        while True:
            msg = self.receiver.blocking.recv(timeout=rng.choice(SHORT))
            if msg is TIMEOUT:
                if self.drained():
                    return
                continue
            self.took(msg)
            garbage(rng, msg)

    async def async_consumer(self, name: str) -> None:
        rng = self.rd.rng(name)
        while True:
            msg = Plain(None)
            roll = rng.random()
            if roll < 0.5:
                msg = await self.receiver.recv(timeout=rng.choice(SHORT))
            else:
                msg = TIMEOUT
                with anyio.move_on_after(rng.choice(SHORT)):
                    msg = await self.receiver.recv()
            if msg is TIMEOUT:
                if self.drained():
                    return
                await anyio.lowlevel.checkpoint()
                continue
            self.took(msg)

    # stage

    def feeder(self) -> None:
        rng = self.rd.rng("feeder")
        seqs = dict.fromkeys(TOKENS, 0)
        while not self.rd.over():
            token = rng.choice(TOKENS)
            value = (token, seqs[token])
            seqs[token] += 1
            with self.rd.lock:
                self.fed[value] += 1
            self.feed.send_plain(value)
            if seqs[token] % 32 == 0:
                time.sleep(0.001)
        self.feeding = False

    def route(self, director: Any, msg: Any) -> int | None:
        token, seq = msg.value
        if token == director.token:
            return int(seq)
        with director.buffer() as buf:
            buf.setdefault(token, []).append(seq)
        director.notify(token)
        return None

    def blocking_head(self, director: Any) -> int | None:
        while True:
            msg = director.resource.blocking.recv(timeout=0.002)
            if msg is TIMEOUT:
                return None
            if (own := self.route(director, msg)) is not None:
                return own

    async def async_head(self, director: Any) -> int | None:
        while True:
            msg = await director.resource.recv(timeout=0.002)
            if msg is TIMEOUT:
                return None
            if (own := self.route(director, msg)) is not None:
                return own

    def collect(self, token: str, outcome: Any) -> None:
        if isinstance(outcome, asyncmp.Finished) and outcome.value is not None:
            with self.rd.lock:
                self.delivered[(token, outcome.value)] += 1
        with self.stage.buffer() as buf:
            mine = buf.pop(token, ())
        with self.rd.lock:
            for seq in mine:
                self.delivered[(token, seq)] += 1

    def stage_done(self) -> bool:
        return not self.feeding and len(self.events) == 0

    def thread_participant(self) -> None:
        rng = self.rd.rng("participant-thread")
        ticket = self.tickets["thread"]
        assert ticket is not None
        outcome = None
        while True:
            self.collect("thread", outcome)
            if self.stage_done():
                return
            outcome = self.stage.blocking.enter(
                ticket, self.blocking_head, timeout=rng.choice((*SHORT, 0.05))
            )
            garbage(rng, self.stage.ticket(f"x-{rng.random()}"))

    async def async_participant(self, token: str) -> None:
        rng = self.rd.rng(f"participant-{token}")
        ticket = self.tickets[token]
        assert ticket is not None
        outcome = None
        while True:
            self.collect(token, outcome)
            if self.stage_done():
                return
            outcome = None
            if rng.random() < 0.5:
                outcome = await self.stage.enter(ticket, self.async_head, timeout=rng.choice(SHORT))
            else:
                with anyio.move_on_after(rng.choice(SHORT)):
                    outcome = await self.stage.enter(ticket, self.async_head)
            await anyio.lowlevel.checkpoint()

    def main_head(self, director: Any) -> int | None:
        # The head's reads and routing are asyncmp calls: interrupts strike there too.
        while True:
            with self.irq.at("stage"):
                msg = director.resource.blocking.recv(timeout=0.002)
            if msg is TIMEOUT:
                return None
            with self.irq.at("stage"):
                own = self.route(director, msg)
            if own is not None:
                return own

    def main_work(self) -> None:
        rng = self.rd.rng("main")
        ticket = self.tickets["main"]
        assert ticket is not None
        seq = 0
        sending = consuming = stage_on = True
        while consuming or stage_on:
            if sending and not self.rd.over():
                self.send_one("main", seq, rng, on_main=True)
                seq += 1
            elif sending:
                sending = False
                self.sender_done()
            if consuming:
                try:
                    with self.irq.at("bridge-recv"):
                        msg = self.receiver.blocking.recv(timeout=rng.choice(SHORT))
                except KeyboardInterrupt:
                    pass
                else:
                    if msg is not TIMEOUT:
                        self.took(msg)
                    elif self.drained():
                        consuming = False
            if stage_on:
                outcome = None
                try:
                    with self.irq.at("stage"):
                        outcome = self.stage.blocking.enter(
                            ticket, self.main_head, timeout=rng.choice(SHORT)
                        )
                except KeyboardInterrupt:
                    pass
                try:
                    with self.irq.at("stage"):
                        self.collect("main", outcome)
                except KeyboardInterrupt:
                    pass
                if self.stage_done():
                    stage_on = False

    def run(self) -> None:
        rd = self.rd
        workers = Workers(rd)

        async def loop_main(kind: str) -> None:
            async with anyio.create_task_group() as tg:
                if kind == "asyncio":
                    tg.start_soon(self.async_consumer, "consumer-asyncio")
                    tg.start_soon(self.async_participant, "asyncio")
                elif kind == "uvloop":
                    tg.start_soon(self.async_sender, "sender-uvloop")
                else:
                    tg.start_soon(self.async_sender, "sender-trio")
                    tg.start_soon(self.async_consumer, "consumer-trio")
                    tg.start_soon(self.async_participant, "trio")

        for kind in ("asyncio", "uvloop", "trio"):
            workers.start(kind, loop_thread(kind, lambda kind=kind: loop_main(kind)))
        workers.start("sender-thread", lambda: self.thread_sender("sender-thread"))
        workers.start("consumer-thread", lambda: self.thread_consumer("consumer-thread"))
        workers.start("participant-thread", self.thread_participant)
        workers.start("feeder", self.feeder)
        with self.irq.running():
            self.main_work()
        workers.join()
        assert not rd.errors, rd.errors
        self.check()

    def check(self) -> None:
        irq, rd = self.irq, self.rd
        # Bridge: nothing doubled; nothing lost but sends an interrupt cut short (queued or
        # not) and messages in the instant an interrupted receive returned them.
        doubled = [v for v, n in self.got.items() if n > 1]
        assert not doubled, f"bridge: delivered twice: {doubled[:5]}"
        unknown = [v for v in self.got if v not in self.sent and v not in self.maybe]
        assert not unknown, f"bridge: never sent: {unknown[:5]}"
        missing = [v for v in self.sent if v not in self.got]
        assert len(missing) <= irq.raised["bridge-recv"], (
            f"bridge: {len(missing)} lost, {irq.raised['bridge-recv']} interrupted receives: "
            f"{missing[:5]}"
        )
        assert len(self.receiver) == 0
        # Stage: what is left in the resource and the buffer was never routed: theirs.
        leftovers: Counter[Any] = Counter()
        while (msg := self.events.try_recv()) is not asyncmp.dharma.EMPTY:
            leftovers[msg.value] += 1  # type: ignore[union-attr]
        with self.stage.buffer() as buf:
            for token, seqs in buf.items():
                for seq in seqs:
                    leftovers[(token, seq)] += 1
        seen = self.delivered + leftovers
        doubled = [v for v, n in seen.items() if n > 1]
        assert not doubled, f"stage: delivered twice: {doubled[:5]}"
        assert all(v in self.fed for v in seen), "stage: an event nobody fed"
        missing = [v for v in self.fed if v not in seen]
        assert len(missing) <= irq.raised["stage"], (
            f"stage: {len(missing)} lost, {irq.raised['stage']} interrupted stage calls: "
            f"{missing[:5]}"
        )
        for ticket in self.tickets.values():
            assert ticket is not None
            ticket.close()
        final = self.stage.ticket("final")
        assert final is not None, "a token is still held"
        with final:
            outcome = self.stage.blocking.enter(final, lambda d: "final", timeout=1.0)
        assert outcome == asyncmp.Finished("final"), "the stage is left headed by nobody"
        rd.count("bridge-sent", sum(self.sent.values()))
        rd.count("bridge-lost", len([v for v in self.sent if v not in self.got]))
        rd.count("stage-fed", sum(self.fed.values()))
        rd.count("stage-lost", len(missing))


# -- channel and servers --------------------------------------------------------------------------


class Echo:
    def __init__(self, ch: Channels, name: str) -> None:
        self.ch = ch
        self.name = name

    def proc_req(self, rid: int, rctx: asyncmp.ReplyContext[Any]) -> None:
        self.ch.served(rid, self.name, rctx.reply(rid * 2))


class Channels:
    """One round of the ``servers`` or ``channel-main`` scenario."""

    def __init__(self, rd: Round, irq: Interrupts, main_sends: bool) -> None:
        self.rd = rd
        self.irq = irq
        self.main_sends = main_sends
        self.ids = iter(range(10**9))
        self.ends: dict[int, list[tuple[str, Any]]] = {}
        self.started: dict[int, str] = {}
        self.serves: dict[int, list[tuple[str, bool]]] = {}
        self.plain_server, plain = asyncmp.channel()
        self.thread_client, self.thread_handle = asyncmp.thread.spawn(
            lambda client: Echo(self, "thread-spawn")
        )
        self.base = {"plain": plain, "thread": self.thread_client}
        self.task_handle: Any = None
        self.clients: dict[str, dict[str, asyncmp.Client[int, Any]]] = {}

    def new(self, channel: str = "?") -> int:
        with self.rd.lock:
            rid = next(self.ids)
            self.started[rid] = channel
            return rid

    def ended(self, rid: int, how: str, detail: Any = None) -> None:
        with self.rd.lock:
            self.ends.setdefault(rid, []).append((how, detail))

    def served(self, rid: int, by: str, delivered: bool) -> None:
        with self.rd.lock:
            self.serves.setdefault(rid, []).append((by, delivered))

    def client_step(self, name: str, rng: random.Random) -> None:
        clients = self.clients[name]
        which = rng.choice(list(clients))
        client = clients[which]
        rid = self.new(which)
        roll = rng.random()
        try:
            if roll < 0.5:
                value = client.blocking.send(rid, timeout=rng.choice((*SHORT, WAIT)))
            elif roll < 0.8:
                pending = client.request(rid)
                if rng.random() < 0.3 and pending.cancel():
                    self.ended(rid, "given-up")
                    return
                value = pending.blocking.wait(timeout=rng.choice((*SHORT, WAIT)))
            else:
                pending = client.request(rid)
                garbage(rng, pending)
                self.ended(rid, "dropped")
                return
        except TimeoutError:
            self.ended(rid, "given-up")
        except (asyncmp.ServerDisappeared, asyncmp.NoReply, asyncmp.Closed) as exc:
            self.ended(rid, type(exc).__name__)
        else:
            self.ended(rid, "reply", value)
        garbage(rng, client.clone())

    def thread_client_loop(self, name: str) -> None:
        rng = self.rd.rng(name)
        while not self.rd.over():
            self.client_step(name, rng)

    async def async_client(self, name: str) -> None:
        try:
            await self._async_client(name)
        finally:
            self.close_all(name)

    async def _async_client(self, name: str) -> None:
        rng = self.rd.rng(name)
        clients = self.clients[name]
        while not self.rd.over():
            which = rng.choice(list(clients))
            client = clients[which]
            rid = self.new(f"{name}:{which}")
            try:
                value: Any = None
                if rng.random() < 0.7:
                    with anyio.move_on_after(rng.choice((*SHORT, WAIT))):
                        value = await client.send(rid)
                        self.ended(rid, "reply", value)
                        continue
                    self.ended(rid, "given-up")
                else:
                    pending = client.request(rid)
                    await anyio.lowlevel.checkpoint()
                    value = await pending
                    self.ended(rid, "reply", value)
            except (asyncmp.ServerDisappeared, asyncmp.NoReply, asyncmp.Closed) as exc:
                self.ended(rid, type(exc).__name__)
            garbage(rng, client.clone())

    async def plain_server_loop(self, name: str) -> None:
        rng = self.rd.rng(name)
        while True:
            try:
                item = None
                with anyio.move_on_after(rng.choice((*SHORT, 0.05))):
                    item = await self.plain_server.wait()
                if item is None:
                    continue
            except asyncmp.ClientsDisappeared:
                return
            rid, rctx = item
            self.served(rid, name, rctx.reply(rid * 2))
            del item, rctx

    def main_work(self) -> None:
        if not self.main_sends:
            self.main_joins()
            return
        rng = self.rd.rng("main")
        clients = self.clients["main"]
        while not self.rd.over():
            which = rng.choice(list(clients))
            client = clients[which]
            rid = self.new(f"main:{which}")
            roll = rng.random()
            try:
                if roll < 0.5:
                    with self.irq.at("send"):
                        value = client.blocking.send(rid, timeout=WAIT)
                else:
                    with self.irq.at("request"):
                        pending = client.request(rid)
                    with self.irq.at("wait"):
                        value = pending.blocking.wait(timeout=WAIT)
            except KeyboardInterrupt:
                self.ended(rid, "interrupted")
                continue
            except (asyncmp.ServerDisappeared, asyncmp.NoReply, asyncmp.Closed) as exc:
                self.ended(rid, type(exc).__name__)
                continue
            self.ended(rid, "reply", value)
            if rng.random() < 0.05 and self.task_handle is not None:
                try:
                    with self.irq.at("join"):
                        self.task_handle.blocking.join(timeout=0)
                except (TimeoutError, KeyboardInterrupt):
                    pass

    def main_joins(self) -> None:
        """The main thread without sending: it joins the loops (they run on), interrupted
        anywhere in asyncmp, and clones clients that it drops in cycles (not interrupted:
        the ``channel-main`` scenario has the main thread send, interrupted)."""
        rng = self.rd.rng("main")
        clients = self.clients["main"]
        while not self.rd.over():
            handle = self.thread_handle if rng.random() < 0.5 else self.task_handle
            try:
                with self.irq.at("join"):
                    handle.blocking.join(timeout=rng.choice(SHORT))
            except (TimeoutError, KeyboardInterrupt):
                pass
            clone = clients[rng.choice(list(clients))].clone()
            garbage(rng, clone)
            del clone

    def run(self) -> None:
        rd = self.rd
        workers = Workers(rd)
        names = ["thread-1", "thread-2", "asyncio", "uvloop", "trio", "main"]
        spawned: list[Any] = []
        ready = threading.Event()
        go = threading.Event()

        async def loop_main(kind: str) -> None:
            async with anyio.create_task_group() as tg:
                if kind == "asyncio":
                    client, self.task_handle = asyncmp.task.spawn(
                        lambda client: Echo(self, "task-spawn"), task_group=tg
                    )
                    spawned.append(client)
                    del client
                    ready.set()
                    assert go.wait(WAIT)
                tg.start_soon(self.async_client, kind)
                if kind in ("trio", "uvloop"):
                    tg.start_soon(self.plain_server_loop, f"server-{kind}")

        workers.start("asyncio", loop_thread("asyncio", lambda: loop_main("asyncio")))
        assert ready.wait(WAIT)
        self.base["task"] = spawned.pop()
        for name in names:
            self.clients[name] = {k: c.clone() for k, c in self.base.items()}
        for client in self.base.values():
            client.close()
        del client
        go.set()
        for kind in ("uvloop", "trio"):
            workers.start(kind, loop_thread(kind, lambda kind=kind: loop_main(kind)))
        for name in ("thread-1", "thread-2"):
            workers.start(name, lambda name=name: self.close_after(name))
        with self.irq.running():
            try:
                self.main_work()
            finally:
                self.close_all("main")
        # Every client closes its own when its time is up; then the servers drain.
        try:
            workers.join()
        except AssertionError:
            unended = {r: c for r, c in self.started.items() if r not in self.ends}
            print("requests not ended:", {r: (c, self.serves.get(r)) for r, c in unended.items()})
            print("plain server:", self.plain_server.statistics())
            raise
        # The loops end once their last client is closed or collected: collect meanwhile
        # (a clone the main thread dropped in a cycle counts until then).
        deadline = time.monotonic() + WAIT
        for handle in (self.thread_handle, self.task_handle):
            while not handle.done() and time.monotonic() < deadline:
                gc.collect()
                wait_deferred(WAIT)
                try:
                    handle.blocking.join(timeout=0.05)
                except TimeoutError:
                    pass
            assert handle.blocking.join(timeout=0) is None
        assert not rd.errors, rd.errors
        self.check()

    def close_after(self, name: str) -> None:
        try:
            self.thread_client_loop(name)
        finally:
            self.close_all(name)

    def close_all(self, name: str) -> None:
        for client in self.clients[name].values():
            client.close()

    def check(self) -> None:
        for rid, ends in self.ends.items():
            assert len(ends) == 1, f"request {rid} ended {ends}"
        for rid, serves in self.serves.items():
            assert len(serves) == 1, f"request {rid} served twice: {serves}"
        for rid, [(how, detail)] in self.ends.items():
            serves = self.serves.get(rid)
            if how == "reply":
                assert detail == rid * 2, (rid, detail)
                assert serves is not None, (rid, serves)
                assert serves[0][1] is True, (rid, serves)
            elif how in ("ServerDisappeared", "Closed"):
                assert serves is None, (rid, how, serves)
        for rid, [(by, delivered)] in self.serves.items():
            if delivered:
                how = self.ends[rid][0][0]
                assert how in ("reply", "interrupted", "dropped"), (rid, by, how)
        assert self.plain_server.statistics().in_flight == 0
        self.plain_server.close()
        self.rd.count("requests", len(self.ends))


# -- the run --------------------------------------------------------------------------------------


def asyncmp_objects() -> Counter[str]:
    found: Counter[str] = Counter()
    for o in gc.get_objects():
        module = type(o).__dict__.get("__module__")
        if isinstance(module, str) and module.startswith("asyncmp"):
            found[type(o).__qualname__] += 1
    return found


def main() -> int:
    scenario = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    seed = int(os.environ.get("ASYNCMP_SOAK_SEED", "20261201"))
    rounds = max(3, round(seconds / 6))
    per_round = seconds / rounds
    gc.set_threshold(60, 5, 5)  # collections at allocations everywhere, under locks too
    baseline = asyncmp_objects()
    memory: list[int] = []
    totals: Counter[str] = Counter()
    interrupts: Counter[str] = Counter()
    tracemalloc.start()
    try:
        for number in range(rounds):
            rd = Round(seed, number, per_round)
            irq = Interrupts(rd.rng("interrupts"))
            if scenario == "bridge-stage":
                runner: BridgeStage | Channels = BridgeStage(rd, irq)
            else:
                runner = Channels(rd, irq, main_sends=scenario == "channel-main")
            runner.run()
            totals.update(rd.counts)
            interrupts.update(irq.raised)
            interrupts["sent"] += irq.sent
            interrupts["in-finalizer"] += irq.in_finalizer
            interrupts["while-handling"] += irq.while_handling
            del runner, rd, irq
            assert wait_deferred(WAIT), "deferred finalizer work never ran"
            gc.collect()
            assert wait_deferred(WAIT)
            gc.collect()
            left = asyncmp_objects() - baseline
            assert not left, f"round {number} left {dict(left)}"
            memory.append(tracemalloc.get_traced_memory()[0])
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: scenario {scenario}, seed {seed} (ASYNCMP_SOAK_SEED repeats it)")
        return 1
    finally:
        tracemalloc.stop()
    growth = min(memory[-2:]) - min(memory[:2])
    print(f"memory after each round: {memory}")
    assert growth <= 512 * 1024, f"memory grew by {growth} bytes"
    quiet = ("sent", "in-finalizer", "while-handling")
    assert sum(interrupts[k] for k in interrupts if k not in quiet) > 0
    print(f"OK {scenario} on {asyncmp.CORE}: {dict(totals)}; interrupts {dict(interrupts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
