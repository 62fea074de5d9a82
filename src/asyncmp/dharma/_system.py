"""System signals: dharma's ``system`` module.

`SignalEventHandler` turns SIGINT and SIGTERM into a
clean shutdown: added to a dispatcher, it stops the dispatcher and terminates the signaler,
so that every event loop finalizes its modules and ends.

Design note. dharma reads a ``signalfd`` with the signals blocked in every thread. Python
runs signal handlers on the main thread only, between bytecodes, at any point of whatever
the main thread was doing, possibly while it holds a lock of the very signaler it would
terminate. So the Python-level handler does nothing but write the signal number to a pipe
(the self-pipe trick); the dispatcher sees the pipe readable and calls `process_event`,
which does the real work on the dispatching thread. The main thread must therefore leave
SIGINT and SIGTERM unblocked; the threads asyncmp starts (event loops, a dispatcher run
off the main thread) block them, so that the kernel delivers them to the main thread and
interrupts whatever it waits on.

dharma's recipe blocks the signals on the main thread first of all, so that every thread
started afterwards inherits the blocked mask. Here that would leave them blocked on every
thread: pending for ever, never handled. So a `SignalEventHandler` created while the main
thread blocks SIGINT or SIGTERM unblocks them on the main thread (after installing its
handlers, so a signal that was already pending is handled, not lost) and blocks them again
when it is closed. Threads started earlier keep the mask they inherited, which is what the
recipe wants.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import TYPE_CHECKING, Any, Protocol, final

if TYPE_CHECKING:
    from types import FrameType

    from ._dispatcher import EventKind

from .._closing import Closing
from .._lowlevel._linux import THREAD_SIGNALS, block, blocked, unblock

__all__ = ("SignalEventHandler", "block_signals", "unblock_signals")

_HANDLED = (signal.SIGINT, signal.SIGTERM)


def block_signals() -> None:
    """Block SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 on the calling thread.

    Event loop threads call this (as dharma's do). dharma's recipe also calls it on the main
    thread first of all, so that every thread started afterwards inherits the mask; that
    order works: a `SignalEventHandler` created afterwards unblocks SIGINT and SIGTERM on the
    main thread (and blocks them again when closed). Blocking them on the main thread
    *after* creating the handler leaves them pending, unhandled. A no-op where threads have
    no signal masks (Windows).
    """
    block(THREAD_SIGNALS)


def unblock_signals() -> None:
    """Unblock SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 on the calling thread."""
    unblock(THREAD_SIGNALS)


class _Stoppable(Protocol):
    def stop(self) -> None: ...


class _Terminable(Protocol):
    def terminate(self) -> None: ...


@final
class SignalEventHandler(Closing):
    """An event handler that shuts down on SIGINT or SIGTERM.

    Create it on the main thread (Python's rule for signal handlers) and add it to a
    dispatcher with ``EventKind.READ``. When SIGINT or SIGTERM arrives, the dispatcher
    thread calls ``controller.stop()`` and then ``signaler.terminate()``: the dispatcher's
    run returns and every event loop finalizes its modules and ends.

    It replaces the Python handlers of SIGINT and SIGTERM (so Ctrl-C no longer raises
    ``KeyboardInterrupt``) until `close()` restores them. If the main thread blocks SIGINT
    or SIGTERM (dharma's recipe calls `block_signals()` there first), it unblocks them on
    the main thread, the only thread where Python runs signal handlers, and `close()`
    blocks them again; a signal already pending is handled then. Blocking them on the main
    thread *after* creating the handler leaves them pending, unhandled.

    Args:
        controller (Dispatcher | DispatcherController): what to stop: anything with a
            ``stop()`` method.
        signaler (Signaler): what to terminate: anything with a ``terminate()`` method.

    Raises:
        RuntimeError: not called on the main thread.
    """

    __slots__ = (
        "__weakref__",
        "_closed",
        "_controller",
        "_previous",
        "_r",
        "_signaler",
        "_unblocked",
        "_w",
        "received",
    )

    def __init__(self, controller: _Stoppable, signaler: _Terminable) -> None:
        if not callable(getattr(controller, "stop", None)):
            raise TypeError(f"controller must have stop(), not {controller!r}")
        if not callable(getattr(signaler, "terminate", None)):
            raise TypeError(f"signaler must have terminate(), not {signaler!r}")
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("SignalEventHandler must be created on the main thread")
        self._controller = controller
        self._signaler = signaler
        self._closed = True
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._previous: dict[int, Any] = {}
        self.received: list[signal.Signals] = []
        """The signals handled so far, in order."""
        self._unblocked: frozenset[int] = frozenset()
        self._closed = False
        for signum in _HANDLED:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        # Blocked on the main thread, they would stay pending for ever (module doc):
        # unblock them, now that our handlers are in place, and block them again at close.
        self._unblocked = blocked().intersection(_HANDLED)
        unblock(self._unblocked)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs on the main thread at an arbitrary point: only hand the number over.
        try:
            os.write(self._w, bytes((signum,)))
        except OSError:
            pass  # the pipe is full (a shutdown is pending anyway) or closed

    def fileno(self) -> int:
        """The read end of the pipe the signal handlers write to."""
        return self._r

    def process_event(self, kind: EventKind) -> None:
        """Read the signals that arrived; on SIGINT or SIGTERM stop and terminate."""
        try:
            data = os.read(self._r, 64)
        except (BlockingIOError, OSError):
            return
        shutdown = False
        for signum in data:
            sig = signal.Signals(signum)
            self.received.append(sig)
            shutdown = shutdown or sig in _HANDLED
        if shutdown:
            self._controller.stop()
            self._signaler.terminate()

    def close(self) -> None:
        """Restore the previous signal handlers (and block again the signals it unblocked
        on the main thread) and close the pipe. Idempotent.

        Call it on the main thread (after removing the handler from its dispatcher).
        """
        if self._closed:
            return
        self._closed = True
        if threading.current_thread() is threading.main_thread():
            block(self._unblocked)  # first, so a signal from now on waits, as it did before
            for signum, previous in self._previous.items():
                if signal.getsignal(signum) == self._on_signal:
                    signal.signal(signum, previous)
        os.close(self._r)
        os.close(self._w)

    def __repr__(self) -> str:
        return f"<SignalEventHandler {'closed' if self._closed else 'armed'}>"
