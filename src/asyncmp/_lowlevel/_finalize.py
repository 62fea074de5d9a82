"""`finalize`: how every ``__del__`` in asyncmp does its work — never waiting for a lock, never
losing the work.

Design note. A finalizer runs wherever a garbage collection starts: any allocation, on any
thread, possibly one that holds the very lock the finalizer's work needs (asyncmp allocates
under its locks, and a traceback or a task easily puts a handle in a reference cycle). A
plain lock cannot tell who holds it, and waiting for it there would never end. So a
finalizer never acquires: it names the locks its work takes and hands the work to `finalize`,
which looks at them (``locked()``, no acquire):

- **all free**: the work runs here and now, as before garbage collection came into it — a
  dropped client stops counting before ``del`` returns. The work then takes the locks itself;
  if another thread took one in the meantime it waits for that thread's bookkeeping, which
  never waits for a lock this thread holds as long as the names include every lock the work
  takes (nested ones too) and asyncmp's lock order holds (see docs/design.md).
- **one held** — by this thread or another, a plain lock cannot tell which: the work is
  *deferred*: put on a queue (``queue.SimpleQueue``, whose ``put`` is reentrant: safe in a
  finalizer that interrupted another ``put``) that one daemon thread, the *finalizer
  thread*, drains in order. That thread waits for the locks, and runs the work once their
  holder lets go. Nothing waits for it and nothing is lost; the work arrives a moment later.

The finalizer thread is started on first need (again in a forked child); an exception the
work raises there is reported through ``sys.unraisablehook``, as Python reports one raised by
a ``__del__``. At interpreter shutdown no thread can start any more: deferred work is
dropped then, as nobody is left to tell.

Signals: the work that runs here can be interrupted like any Python code (Python prints and
drops an exception raised in a finalizer); deferred work runs on the finalizer thread, which
Python never interrupts (signal handlers run on the main thread only).
"""

from __future__ import annotations

import _thread
import os
import queue
import sys
import types
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ("defer", "finalize", "wait_deferred")


class SupportsLocked(Protocol):
    """A lock a finalizer's work takes: ``threading.Lock`` or the compiled core's mutex."""

    def locked(self) -> bool: ...


# Work for the finalizer thread: (action, args); None never travels.
_work: queue.SimpleQueue[tuple[Callable[..., object], tuple[Any, ...]]] = queue.SimpleQueue()
# The process whose finalizer thread runs (0: none yet); a forked child starts its own.
_worker_pid = 0


def finalize(
    locks: tuple[SupportsLocked, ...], action: Callable[..., object], *args: object
) -> None:
    """Run ``action(*args)``, which takes *locks*, from a finalizer (``__del__``): here if every
    lock is free, else later on the finalizer thread (module doc). Never waits for a lock
    held by this thread, never loses the work.

    *locks* must name every lock *action* takes, nested ones included; ``()`` for work that
    takes none (it then always runs here).
    """
    for lock in locks:
        if lock.locked():
            defer(action, *args)
            return
    action(*args)


def defer(action: Callable[..., object], *args: object) -> None:
    """Have the finalizer thread run ``action(*args)``, after all the work deferred before.

    Safe in a finalizer: it takes no lock (the queue's ``put`` is reentrant)."""
    _work.put((action, args))
    if _worker_pid != os.getpid():
        _start_worker()


def _start_worker() -> None:
    global _worker_pid
    # Two finalizers racing here may start two threads: harmless, both drain one queue.
    _worker_pid = os.getpid()
    try:
        # A bare thread: starting a threading.Thread takes the threading module's locks,
        # which the collection that called us may have interrupted.
        _thread.start_new_thread(_run, ())
    except RuntimeError:  # the interpreter is shutting down: nobody is left to tell
        _worker_pid = 0


def _run() -> None:
    get = _work.get
    while True:
        action, args = get()
        try:
            action(*args)
        except BaseException as exc:  # reported, as for a __del__; the thread goes on
            _report(exc, action)
        del action, args


def _report(exc: BaseException, action: object) -> None:
    if sys.is_finalizing():
        return
    # What sys.unraisablehook takes (sys.UnraisableHookArgs has no public constructor).
    unraisable = types.SimpleNamespace(
        exc_type=type(exc),
        exc_value=exc,
        exc_traceback=exc.__traceback__,
        err_msg="Exception ignored in deferred finalizer work",
        object=action,
    )
    try:
        sys.unraisablehook(unraisable)
    except BaseException:  # a broken hook must not end the finalizer thread
        pass


def wait_deferred(timeout: float) -> bool:
    """Block until the work deferred so far has run (``True``), or *timeout* seconds pass.

    For tests and soaks that check what a finalizer did; asyncmp itself never waits for it."""
    done = _thread.allocate_lock()
    done.acquire()  # a fresh lock, held as a latch: the marker below releases it
    defer(done.release)
    return done.acquire(timeout=timeout)


def _forget_worker() -> None:
    # In a forked child the finalizer thread is gone, and work queued for it with it: a new
    # queue, and a new thread on first need.
    global _work, _worker_pid
    _work = queue.SimpleQueue()
    _worker_pid = 0


os.register_at_fork(after_in_child=_forget_worker)
