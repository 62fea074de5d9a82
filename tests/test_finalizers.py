"""Garbage collection while the collecting thread holds the lock the finalizer's work needs.

A finalizer runs wherever a collection starts: any allocation, also one made under a lock
(asyncmp allocates under its locks), and a reference cycle (a traceback, a task) makes
collection common. Each test puts a handle in a reference cycle and collects it on a thread
that holds the lock its finalizer needs: the collection must finish (before, the finalizer
waited for that very lock for ever), and the work must arrive once the lock is let go
(`finalize` defers it to the finalizer thread; `wait_deferred` waits for that).
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

import asyncmp
from asyncmp._lowlevel._finalize import wait_deferred
from asyncmp._lowlevel._poller import Poller
from asyncmp.dharma import Dispatcher, PeriodicTimer, Receiver, Sender, connect
from bounds import WAIT


def in_a_cycle(obj: object) -> None:
    """Make *obj* reachable only through a reference cycle, which only `gc` frees."""
    cycle: list[Any] = [obj]
    cycle.append(cycle)


def collect_holding(
    lock: Any, build: Callable[[], None], during: Callable[[], None] | None = None
) -> None:
    """On a thread holding *lock*: ``build()`` (which leaves a handle in a cycle), then
    ``gc.collect()`` — the handle's finalizer runs there — then ``during()``, still holding
    the lock. Fails if that thread does not finish: the finalizer waited for the lock its
    own thread holds."""
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with lock:
                build()
                gc.collect()
                if during is not None:
                    during()
        except BaseException as exc:
            errors.append(exc)
        done.set()

    gc.collect()  # nothing of an earlier test's is collected in the window
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert done.wait(WAIT), "the finalizer waited for a lock its own thread holds"
    thread.join(WAIT)
    if errors:
        raise errors[0]
    assert wait_deferred(WAIT)


def test_a_ticket_collected_while_its_thread_holds_the_stage_lock_frees_its_token() -> None:
    """A `Ticket` in a cycle, collected while its thread holds the stage's lock: no
    deadlock, and the token is free once the lock is let go (Stage 10)."""
    stage: asyncmp.Stage[str, None, None] = asyncmp.Stage(None, None)
    ticket = stage.ticket("t")
    assert ticket is not None

    def take() -> None:
        nonlocal ticket
        in_a_cycle(ticket)
        del ticket

    collect_holding(stage._lock, take)
    assert stage._entries == {}
    again = stage.ticket("t")
    assert again is not None
    again.close()


def test_a_receiver_collected_while_its_thread_holds_its_queue_lock_is_dropped() -> None:
    """A bridge `Receiver` in a cycle, collected while its thread holds the receiver's queue
    lock: no deadlock, and its queue is marked dead once the lock is let go (senders drop
    it)."""
    sender: Sender[int] = Sender()
    receiver: Receiver[int] = Receiver()
    connect(sender, receiver)
    state = receiver._state
    sender.send_plain(1)

    def build() -> None:
        nonlocal receiver
        in_a_cycle(receiver)
        del receiver

    collect_holding(state.lock, build)
    assert not state.alive
    assert len(state.items) == 0
    sender.send_plain(2)
    assert sender.receivers == 0


def test_a_dispatcher_collected_while_its_thread_holds_the_poller_lock_is_closed() -> None:
    """A `Dispatcher` in a cycle, collected while its thread holds its poller's lock: no
    deadlock, and its epoll set is released once the lock is let go."""
    dispatcher = Dispatcher()
    poller = dispatcher._state.poller

    def build() -> None:
        nonlocal dispatcher
        in_a_cycle(dispatcher)
        del dispatcher

    collect_holding(poller._lock, build)
    assert poller.closed


def test_a_poller_collected_while_its_thread_holds_its_lock_is_closed() -> None:
    """A `Poller` in a cycle, collected while its thread holds its lock: no deadlock, and its
    wake-up fd is closed once the lock is let go."""
    poller: Poller[int] = Poller()
    wake, lock = poller._wake, poller._lock

    def build() -> None:
        nonlocal poller
        in_a_cycle(poller)
        del poller

    collect_holding(lock, build)
    assert wake.closed


def test_a_periodic_timer_collected_in_a_cycle_closes_its_fd() -> None:
    """A `PeriodicTimer` (no lock involved) in a cycle closes its timerfd when collected."""
    timer = PeriodicTimer(3600, lambda: None)
    fd = timer.fileno()
    in_a_cycle(timer)
    del timer
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_calloop_senders_and_pings_collected_while_their_lock_is_held_close() -> None:
    """calloop channel senders and pings in cycles, collected while their thread holds
    the channel's or the ping's lock: no deadlock (their locks were RLocks, so the finalizer
    ran in the middle of the holder's critical section instead), and they count as closed
    once the lock is let go."""
    from asyncmp import calloop

    sender, channel = calloop.channel()
    state = sender._state

    def drop_sender() -> None:
        nonlocal sender
        in_a_cycle(sender)
        del sender

    def untouched() -> None:
        # Not in the middle of the critical section the collection interrupted: later.
        assert state.senders == 1

    collect_holding(state.lock, drop_sender, untouched)
    assert state.senders == 0
    with pytest.raises(asyncmp.Disconnected):
        channel.try_recv()
    channel.close()

    ping, source = calloop.make_ping()
    ping_state = ping._state

    def drop_ping() -> None:
        nonlocal ping
        in_a_cycle(ping)
        del ping

    def ping_untouched() -> None:
        assert ping_state.pings == 1

    collect_holding(ping_state.lock, drop_ping, ping_untouched)
    assert ping_state.pings == 0
    source.close()


def test_a_calloop_executor_collected_while_its_lock_is_held_closes_its_coroutines() -> None:
    """A calloop `Executor` in a cycle, collected while its thread holds the executor's
    lock: no deadlock, and its unfinished coroutines are closed once the lock is let go."""
    from asyncmp import calloop

    executor, scheduler = calloop.executor()

    async def never_run() -> None:
        pass

    state = executor._state
    scheduler.schedule(never_run())  # never stepped: no loop runs the executor

    def build() -> None:
        nonlocal executor
        in_a_cycle(executor)
        del executor

    def untouched() -> None:
        assert state.alive

    collect_holding(state.lock, build, untouched)
    assert not state.alive
    assert not state.tasks


def test_a_nats_client_collected_while_its_thread_holds_the_hub_lock_counts_out() -> None:
    """An `asyncmp.nats` client in a cycle, collected while its thread holds the hub's lock:
    no deadlock, and it counts as closed once the lock is let go (the hub closes; nothing
    waits for an I/O thread)."""
    nats = pytest.importorskip("asyncmp.nats")
    client = nats.connect("nobody", "nats://127.0.0.1:1")
    hub = client._hub

    def build() -> None:
        nonlocal client
        in_a_cycle(client)
        del client

    collect_holding(hub.lock, build)
    assert hub.clients == 0
    assert hub.closed
