"""`finalize`: a finalizer's work that needs locks runs at once when they are free, and on
the finalizer thread when one is held — never deadlocking the thread a collection
interrupted, never lost, in order, its errors reported."""

from __future__ import annotations

import sys
import threading

from asyncmp._lowlevel._finalize import defer, finalize, wait_deferred

from ._support import WAIT


def test_with_every_lock_free_the_action_runs_here_and_now() -> None:
    """All locks free: the action runs in this thread before `finalize` returns, able to take
    the locks itself (they were only tried, and released again)."""
    locks = (threading.Lock(), threading.Lock())
    ran: list[tuple[int, int]] = []

    def action(tag: int) -> None:
        assert all(lock.acquire(timeout=WAIT) for lock in locks)
        ran.append((tag, threading.get_ident()))
        for lock in locks:
            lock.release()

    finalize(locks, action, 7)
    assert ran == [(7, threading.get_ident())]
    assert not any(lock.locked() for lock in locks)


def test_with_a_lock_held_here_the_action_runs_on_another_thread_later() -> None:
    """A lock this very thread holds (a collection inside a locked section): the action does
    not run here (it would deadlock) but on the finalizer thread, once the lock is
    released."""
    lock = threading.Lock()
    done = threading.Event()
    ran: list[int] = []

    def action(tag: int) -> None:
        assert lock.acquire(timeout=WAIT)
        try:
            ran.append(tag)
            ran.append(threading.get_ident())
        finally:
            lock.release()
        done.set()

    with lock:
        finalize((lock,), action, 7)
        assert ran == []
    assert done.wait(WAIT)
    assert ran[0] == 7
    assert ran[1] != threading.get_ident()


def test_locks_are_only_looked_at() -> None:
    """`finalize` never takes a lock (it asks ``locked()``): when a later one is held, the
    earlier free ones stay free, and the work goes to the finalizer thread."""
    free, held = threading.Lock(), threading.Lock()
    done = threading.Event()
    with held:
        finalize((free, held), done.set)
        assert not free.locked()
    assert done.wait(WAIT)


def test_deferred_work_runs_in_order_on_one_thread() -> None:
    """Deferred work runs in the order it was deferred, on the finalizer thread, and
    `wait_deferred` returns once all of it has run."""
    lock = threading.Lock()
    ran: list[tuple[int, int]] = []
    with lock:
        for n in range(5):
            finalize((lock,), lambda n=n: ran.append((n, threading.get_ident())))
    assert wait_deferred(WAIT)
    assert [n for n, _ in ran] == list(range(5))
    assert len({ident for _, ident in ran}) == 1
    assert ran[0][1] != threading.get_ident()


def test_an_error_in_deferred_work_is_reported_and_the_thread_goes_on() -> None:
    """An exception from deferred work goes to ``sys.unraisablehook`` (as one from a
    ``__del__`` does), and the finalizer thread goes on with the next work."""
    reported: list[BaseException] = []
    hook = sys.unraisablehook

    def boom() -> None:
        raise LookupError("in deferred work")

    sys.unraisablehook = lambda args: reported.append(args.exc_value)  # type: ignore[assignment, union-attr]
    try:
        defer(boom)
        done = threading.Event()
        defer(done.set)
        assert done.wait(WAIT)
    finally:
        sys.unraisablehook = hook
    assert [type(e) for e in reported] == [LookupError]
