"""`finalize`: a finalizer's work that needs locks runs at once when they are free, and on
another thread when one is held — never deadlocking the thread a collection interrupted,
never lost."""

from __future__ import annotations

import threading

from asyncmp._lowlevel._finalize import finalize

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
    not run here (it would deadlock) but on a new thread, once the lock is released."""
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


def test_a_lock_taken_while_trying_is_released_again() -> None:
    """The first locks are taken only to try them: when a later one is held, they are
    released before the action is sent to another thread."""
    free, held = threading.Lock(), threading.Lock()
    done = threading.Event()
    with held:
        finalize((free, held), done.set)
        assert not free.locked()
    assert done.wait(WAIT)
