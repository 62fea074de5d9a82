"""The channel's lock (``state.lock``): a ``threading.Lock`` on the pure core, the compiled
core's `Mutex` (a flag guarded by the GIL, with a real lock only to wait on) on the other.
Each test runs on both cores and checks the same guarantees on whichever lock each uses.
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
from bounds import WAIT


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
    got = threading.Event()

    def waiter() -> None:
        lock.acquire()
        got.set()

    w = threading.Thread(target=waiter)
    w.start()
    release.set()
    thread.join(WAIT)
    assert got.wait(WAIT)
    w.join(WAIT)
    assert lock.locked()  # the waiter owns it (and never released it)
    lock.release()
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
        pytest.skip("the compiled core's Mutex only (the pure core uses threading.Lock)")
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
