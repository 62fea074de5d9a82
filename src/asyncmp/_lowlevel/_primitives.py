"""The primitives the channel protocol is written against, in pure Python.

Design note. The channel (`asyncmp._channel_py`) is one Python source that runs as it is (the
pure core) or compiled by Cython (the compiled core, ``asyncmp._channel_c``). What pure Python
cannot do well — look up the running loop without a system call, a lock that costs a flag
test, a per-thread parker reused call after call — the compiled build takes from the
hand-written ``asyncmp._speedups`` (declared in ``_speedups.pxd``, typed for checkers in
``_speedups.pyi``). This module is the same interface in pure Python, and the protocol code
calls exactly these names:

- ``running_loop()``: the running asyncio loop of this thread, or ``None``;
- ``trio_may_run()``: whether this thread may be running trio (or another library sniffio
  knows): then asyncio's futures are not the way to wait;
- ``is_running_here(loop)``: whether *loop* is the asyncio loop running this thread now;
- ``thread_ident()``: the calling thread's identifier;
- ``Mutex()``: the channel's lock, with ``acquire()`` / ``release()``, which an interrupt
  cannot leave held as it is taken (see its doc);
- ``Parker``: what a plain thread blocks on in a blocking call (see its doc);
- ``checkout()`` / ``checkin(parker)``: a parker for this call, and its return once it is
  clean (the compiled build reuses one per thread; here each call makes its own);
- ``check_signals()``: run the handlers of signals that arrived (the main thread only): a
  blocking call asks first, so that a Ctrl-C that came before it raises before it changes
  anything, and asks again before it returns what it took;
- ``fut_done(fut)``, ``fut_get_loop(fut)``, ``fut_set_result(fut, value)``,
  ``deque_append(queue, item)``, ``deque_popleft(queue)``: those methods of an asyncio future
  and a deque, as functions (compiled: their C functions, called without the descriptor);
- ``Counter()``: a count that any thread may ``add()`` to without a lock; ``value()`` reads it;
- ``Delegate(awaitable)`` and ``LOST``: what the steps of an async operation return to hand it
  to another awaitable, and to say "nothing instead" (see ``asyncmp._speedups.StepOp``, in
  which the compiled core runs those steps; the pure core runs them in an ``async def``).
"""

from __future__ import annotations

import _thread
import asyncio
import collections
import itertools
import threading
import time
from typing import Any, final

from ._backend import library_mark

__all__ = (
    "LOST",
    "Counter",
    "Delegate",
    "Mutex",
    "Parker",
    "check_signals",
    "checkin",
    "checkout",
    "deque_append",
    "deque_popleft",
    "fut_done",
    "fut_get_loop",
    "fut_set_result",
    "is_running_here",
    "running_loop",
    "thread_ident",
    "trio_may_run",
)

running_loop = asyncio._get_running_loop
thread_ident = threading.get_ident
# A future's and a deque's methods, called as functions (the compiled build calls their C
# functions directly when the object is exactly of that type).
fut_done = asyncio.Future.done
fut_get_loop = asyncio.Future.get_loop
fut_set_result = asyncio.Future.set_result
deque_append = collections.deque.append
deque_popleft = collections.deque.popleft


_BaseEventLoop = asyncio.BaseEventLoop
_MAIN_IDENT = threading.main_thread().ident
SLICE = 0.02
"""How long the main thread blocks in a `Parker` before it looks for a signal that came just
before it blocked: the most a Ctrl-C can wait in that case."""


def is_running_here(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether *loop* is the loop running this thread now.

    asyncio's own loops record the thread that runs them, which is cheaper to compare than
    ``running_loop()`` — a ``getpid()`` system call on CPython 3.11 — is to call; for other
    loops (uvloop) it takes the look-up."""
    if isinstance(loop, _BaseEventLoop):
        return loop._thread_id == thread_ident()  # type: ignore[attr-defined,no-any-return]
    return loop is running_loop()


@final
class Mutex(_thread.RLock):  # type: ignore[misc]  # (typeshed: final; CPython: not)
    """The channel's lock in pure Python, taken as ``lock.acquire()`` then ``try:``, which an
    interrupt cannot leave held.

    Python runs a signal handler at the first check of its eval loop after a C call returns,
    so ``threading.Lock().acquire()`` followed by ``try:`` leaves an instant in which a
    handler's exception (Ctrl-C's ``KeyboardInterrupt``) strikes with the lock held and no
    ``finally`` to let it go. Here `acquire` is a Python function around an owner-aware C
    lock (an ``RLock``, whose ``_is_owned()`` a plain lock lacks):

    - a handler that raises in it as the C acquire returns finds this thread the owner and
      lets the lock go before the exception leaves; one that raises while it blocks (the C
      acquire then fails) finds it not the owner and lets nothing go;
    - from CPython 3.11 a Python function's return is not such a check, nor is anything up
      to the first call inside the caller's ``try``: the lock is inside the ``try`` the
      moment `acquire` returns. (CPython 3.10 checks after every call, a Python function's
      too: there the instant remains, as it does for ``with lock:``.)

    ``release``, ``__enter__`` and ``__exit__`` are the ``RLock``'s own, in C: ``with lock:``
    (the outcome cell of a trio requester takes it so) is protected as for any C lock. The
    protocol never takes the lock twice on one thread, so its count is 0 or 1. The compiled
    core's mutex (``asyncmp._speedups.Mutex``) needs none of this: its wait runs no signal
    handler, and the compiled code that calls it runs no Python code before its ``try``.
    """

    __slots__ = ()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, as ``threading.Lock.acquire``; an exception raised meanwhile (a
        signal handler's) leaves it as it was."""
        try:
            if blocking is True and timeout == -1:
                # The channel's call: the C acquire with no argument to parse (half the
                # cost of passing them).
                return _RLock.__enter__(self)
            return _RLock.acquire(self, blocking, timeout)
        except BaseException:
            if self._is_owned():  # type: ignore[attr-defined]
                self.release()
            raise

    def locked(self) -> bool:
        """Whether any thread holds the lock: a look, for finalizers (`_finalize`). An
        ``RLock`` before CPython 3.14 tells only in its repr ("<locked …" or "<unlocked …"),
        which reads its count without taking anything."""
        return repr(self).startswith("<locked")


_RLock = _thread.RLock


def check_signals() -> None:
    """Run pending signal handlers: Python runs them as this call begins (a handler's
    exception is raised here)."""


def trio_may_run() -> bool:
    """Whether trio (or another library sniffio knows) may run this thread."""
    return library_mark.name is not None


@final
class Parker:
    """A plain thread blocked in a blocking call: a lock held while nobody has woken it.

    The protocol: a waker takes the parker out of where it was parked (under the owner's
    lock, so at most one waker takes it) and calls `wake` once. The thread's `wait` returns
    ``True`` once woken. A thread that stops waiting (timeout, interrupt) first tries to
    deregister; if a waker took the parker already, the wake-up is on its way and the thread
    takes it with `consume` — so a parker never ends with a wake-up nobody took.

    ``woken`` is set (after ``value``) *before* the lock is released, so a thread whose wait
    was interrupted after its acquire succeeded — Python runs a signal handler at the first
    check after a C call returns — can tell that the wake-up was taken already.
    """

    __slots__ = ("_lock", "value", "woken")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.value: Any = None
        """What the waker delivered (a server's request), read after a wait."""
        self.woken = False

    def wake(self, value: object = None) -> bool:
        """Wake the thread with *value* (by the waker that took it; a second call, where an
        interrupt made the waker deliver again, does nothing)."""
        if not self.woken:
            self.value = value
            self.woken = True
            self._lock.release()
        return True

    def wait(self, timeout: float) -> bool:
        """Block until woken (``True``) or for *timeout* seconds (``False``; no limit if
        negative). An exception raised while blocked (a signal handler's) propagates.

        The main thread (where signal handlers run) waits in slices of `SLICE` seconds: a
        signal that arrives just before it blocks does not interrupt the block, and Python
        runs its handler as each slice's acquire returns."""
        acquire = self._lock.acquire
        if thread_ident() != _MAIN_IDENT:
            return acquire(True, timeout)
        deadline = None if timeout < 0 else time.monotonic() + timeout
        while True:
            if deadline is None:
                if acquire(True, SLICE):
                    return True
            else:
                left = deadline - time.monotonic()
                if acquire(True, min(SLICE, max(0.0, left))):
                    return True
                if left <= SLICE:
                    return False

    def consume(self) -> None:
        """A waker took this parker: take its wake-up, which is a few instructions away,
        unless a wait cut short by an interrupt took it already. A second interrupt is held
        back until the wake-up is in, then raised."""
        interrupt: BaseException | None = None
        while not self.woken:
            try:
                self._lock.acquire()
            except BaseException as exc:
                interrupt = exc
        if interrupt is not None:
            raise interrupt


def checkout() -> Parker:
    """A parker for one blocking call."""
    return Parker()


def checkin(parker: Parker) -> None:
    """Give back a parker that is clean (each call has its own here: nothing to do)."""


@final
class Counter:
    """A count that any thread may increment without a lock: ``next()`` on an
    ``itertools.count`` is one C call, atomic under the GIL (``+= 1`` on an attribute is not)."""

    __slots__ = ("_count", "add")

    def __init__(self) -> None:
        self._count = itertools.count()
        self.add = self._count.__next__
        """Count one (what it returns is meaningless)."""

    def value(self) -> int:
        """How many were counted."""
        # itertools.count exposes its next value only through repr: "count(42)".
        return int(repr(self._count)[6:-1])


LOST: Any = object()
"""What an abort step returns when its operation leaves by its exception."""


@final
class Delegate:
    """What a first step returns to hand its operation to another awaitable."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Any) -> None:
        self.awaitable = awaitable
