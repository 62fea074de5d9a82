"""The channel's lock (``state.lock``): on the pure core a `Mutex` whose ``acquire()`` an
interrupt cannot leave holding it (``asyncmp._lowlevel._primitives.Mutex``), on the compiled
core the `Mutex` of ``asyncmp._speedups`` (a flag guarded by the GIL, with a real lock only to
wait on). Each test runs on both cores and checks the same guarantees on whichever lock each
uses; the last ones interrupt the channel's calls as they take it (a real signal, made
deterministic by `interrupting.interrupt_as_acquired`).
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import asyncmp
from asyncmp._lowlevel._primitives import Mutex
from bounds import WAIT
from interrupting import ctrl_c, interrupt_as_acquired


def channel_lock() -> Any:
    _server, client = asyncmp.channel()
    return client._channel.lock


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Threads switch as often as CPython allows, so a critical section is interrupted."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def hold_in_thread(lock: Any) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """A thread that takes *lock*, reports it, and releases it when told."""
    held, release = threading.Event(), threading.Event()

    def run() -> None:
        lock.acquire()
        held.set()
        assert release.wait(WAIT)
        lock.release()

    thread = threading.Thread(target=run)
    thread.start()
    assert held.wait(WAIT)
    return thread, held, release


@pytest.mark.usefixtures("fast_switching")
def test_the_lock_lets_one_thread_at_a_time_in_under_contention() -> None:
    """Threads that take the lock in turn, each interrupted inside by thread switches and
    blocking, never overlap, and every increment made under it counts."""
    lock = channel_lock()
    inside = 0
    overlaps = 0
    total = 0
    rounds, threads = 2000, 4

    def work() -> None:
        nonlocal inside, overlaps, total
        for n in range(rounds):
            if n % 2:
                lock.acquire()
            else:
                assert lock.acquire(timeout=WAIT)
            try:
                inside += 1
                if inside != 1:
                    overlaps += 1
                seen = total
                if n % 50 == 0:
                    threading.Event().wait(0)  # let the others run and find it held
                total = seen + 1
                inside -= 1
            finally:
                lock.release()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(WAIT * 6)
    assert not any(w.is_alive() for w in workers)
    assert overlaps == 0
    assert total == rounds * threads
    assert not lock.locked()


def test_a_lock_held_elsewhere_refuses_a_try_and_a_timed_wait() -> None:
    """acquire(blocking=False) and acquire(timeout=…) answer False while another thread
    holds the lock, and the lock is free again once that thread releases it."""
    lock = channel_lock()
    thread, _held, release = hold_in_thread(lock)
    try:
        assert lock.locked()
        assert lock.acquire(blocking=False) is False
        assert lock.acquire(timeout=0.01) is False
    finally:
        release.set()
        thread.join(WAIT)
    assert not lock.locked()
    assert lock.acquire(blocking=False) is True
    lock.release()


def test_a_timed_out_waiter_is_not_handed_the_lock_later() -> None:
    """A wait that ran out leaves the line: the holder's release frees the lock instead of
    handing it to a thread that is no longer waiting (which would keep it held for ever)."""
    lock = channel_lock()
    thread, _held, release = hold_in_thread(lock)
    assert lock.acquire(timeout=0.01) is False
    release.set()
    thread.join(WAIT)
    assert not lock.locked()


def test_a_blocked_waiter_gets_the_lock_when_the_holder_releases() -> None:
    """A thread blocked in acquire() owns the lock once the holder releases it."""
    lock = channel_lock()
    thread, _held, release = hold_in_thread(lock)
    got, done = threading.Event(), threading.Event()

    def waiter() -> None:
        lock.acquire()
        got.set()
        assert done.wait(WAIT)
        lock.release()

    w = threading.Thread(target=waiter)
    w.start()
    release.set()
    thread.join(WAIT)
    assert got.wait(WAIT)
    assert lock.locked()  # the waiter owns it
    assert lock.acquire(blocking=False) is False
    done.set()
    w.join(WAIT)
    assert not lock.locked()


def test_releasing_a_free_lock_is_an_error() -> None:
    """release() of a lock nobody holds raises RuntimeError, as threading.Lock does."""
    lock = channel_lock()
    with pytest.raises(RuntimeError):
        lock.release()


def test_a_hand_off_made_as_a_timed_wait_runs_out_is_taken(core: ModuleType) -> None:
    """Compiled core: the holder releases in the instant after a waiter's timed wait ran out
    (before the waiter has the GIL back). The waiter was still counted, so the lock was
    handed to it: it takes it (acquire answers True) instead of leaving it held by nobody."""
    if core.__name__ != "asyncmp._channel_c":
        pytest.skip("the compiled core's Mutex only (the pure core's has no hand-off)")
    speedups: Any = importlib.import_module("asyncmp._speedups")
    lock = channel_lock()
    assert type(lock) is speedups.Mutex
    thread, _held, release = hold_in_thread(lock)
    released = threading.Event()

    def hand_off_now() -> None:
        # The holder releases while this waiter is between its wait and its last look.
        release.set()
        thread.join(WAIT)
        released.set()

    speedups._set_mutex_hook(hand_off_now)
    try:
        assert lock.acquire(timeout=0.01) is True
    finally:
        speedups._set_mutex_hook(None)
        release.set()
        thread.join(WAIT)
    assert released.is_set()
    assert lock.locked()
    lock.release()
    assert not lock.locked()
    assert lock.acquire(blocking=False) is True
    lock.release()


# -- Ctrl-C as the lock is taken -----------------------------------------------------------------


def pure_only(core: ModuleType) -> None:
    if core.__name__ == "asyncmp._channel_c":
        pytest.skip(
            "the compiled core's lock wait runs no signal handler, and its callers run no"
            " Python code before their try: there is no instant to interrupt"
        )


def test_the_lock_is_let_go_when_a_signal_handler_raises_as_it_is_acquired(
    core: ModuleType,
) -> None:
    """Pure core: a handler that raises as ``lock.acquire()`` returns (the instant in which
    ``threading.Lock`` would stay held, as tests/test_interrupt_rules.py shows) raises out of
    the acquire with the lock free; taken again, it works."""
    pure_only(core)
    lock = channel_lock()
    assert type(lock) is Mutex
    with (
        ctrl_c(),
        interrupt_as_acquired(lock, Mutex.acquire) as window,
        pytest.raises(KeyboardInterrupt),
    ):
        lock.acquire()
    assert window.tripped
    assert not lock.locked()
    assert lock.acquire(blocking=False) is True
    assert lock.locked()
    lock.release()


def test_blocking_send_interrupted_as_it_takes_the_lock_queues_nothing(core: ModuleType) -> None:
    """Pure core: ``client.blocking.send`` interrupted as it takes the channel's lock to queue
    its request raises ``KeyboardInterrupt`` having queued nothing; the lock is free and the
    channel serves the next request."""
    pure_only(core)
    server, client = asyncmp.channel()
    with server, client:
        lock = client._channel.lock
        with (
            ctrl_c(),
            interrupt_as_acquired(lock, Mutex.acquire) as window,
            pytest.raises(KeyboardInterrupt),
        ):
            client.blocking.send("lost", timeout=WAIT)
        assert window.tripped
        assert not lock.locked(), "the interrupt left the channel's lock held"
        assert server.try_pop() is None
        pending = client.request("next")
        msg, rctx = server.try_pop()  # type: ignore[misc]
        assert msg == "next"
        assert rctx.reply("ok") is True
        assert pending.blocking.wait(timeout=WAIT) == "ok"


def test_blocking_wait_interrupted_as_it_takes_the_lock_leaves_the_request_queued(
    core: ModuleType,
) -> None:
    """Pure core: ``server.blocking.wait`` interrupted as it takes the channel's lock to take
    a queued request raises ``KeyboardInterrupt`` with the request still queued (nothing
    taken, nothing dropped) and the lock free."""
    pure_only(core)
    server, client = asyncmp.channel()
    with server, client:
        pending = client.request("kept")
        lock = client._channel.lock
        with (
            ctrl_c(),
            interrupt_as_acquired(lock, Mutex.acquire) as window,
            pytest.raises(KeyboardInterrupt),
        ):
            server.blocking.wait(timeout=WAIT)
        assert window.tripped
        assert not lock.locked(), "the interrupt left the channel's lock held"
        assert server.statistics().in_flight == 0
        msg, rctx = server.blocking.wait(timeout=WAIT)
        assert msg == "kept"
        assert rctx.reply("ok") is True
        assert pending.blocking.wait(timeout=WAIT) == "ok"
