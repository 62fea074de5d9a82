"""A periodic timer as a dispatcher event handler: dharma's Timer.

Design note. As in dharma the timer is a Linux ``timerfd`` (monotonic clock, non-blocking):
the kernel counts expirations and the fd is readable while the count is non-zero. On each
readiness the timer reads (and so resets) the count and calls the callback *once*, so
periods missed while the dispatcher was busy coalesce into one call; the number of periods
the call stands for is kept in `PeriodicTimer.expirations`. The timerfd is made by
`asyncmp._lowlevel._linux.timerfd`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, final

from .._closing import Closing
from .._errors import Closed
from .._lowlevel._check import check_period
from .._lowlevel._finalize import finalize
from .._lowlevel._format import seconds
from .._lowlevel._linux import timerfd

if TYPE_CHECKING:
    from ._dispatcher import EventHandlerId, EventKind

__all__ = ("PeriodicTimer",)


@final
class PeriodicTimer(Closing):
    """Calls *callback* every *interval* seconds while added to a running dispatcher.

    The first call comes one interval after the timer is created, then one per interval.
    Add it with ``dispatcher.add_source(timer, EventKind.READ)``. If the dispatcher is
    busy for several intervals, the callback runs once, not once per missed interval.
    An exception from *callback* propagates out of the dispatcher's run.

    Args:
        interval: the period in seconds, > 0.
        callback: called with no arguments on the dispatcher's thread.

    Raises:
        TypeError: *interval* is not a number or *callback* not callable.
        ValueError: *interval* is not a finite number > 0.
        OSError: the system refused to create the timer.
        NotImplementedError: not on Linux (timerfd), as dharma.
    """

    __slots__ = ("__weakref__", "_callback", "_fd", "expirations", "id", "interval")

    def __init__(self, interval: float, callback: Callable[[], object]) -> None:
        period = check_period(interval, "interval")
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        self._fd = -1
        self.interval = period
        """The period, in seconds."""
        self.expirations = 0
        """Periods elapsed so far, counted each time the callback runs."""
        self.id: EventHandlerId | None = None
        """The id the dispatcher gave the timer, once added."""
        self._callback = callback
        self._fd = timerfd(self.interval, "asyncmp.dharma.PeriodicTimer")

    def fileno(self) -> int:
        """The timerfd.

        Raises:
            Closed: the timer is closed.
        """
        if self._fd < 0:
            raise Closed("this timer is closed")
        return self._fd

    def set_id(self, handler_id: EventHandlerId) -> None:
        """Called by the dispatcher with the timer's id."""
        self.id = handler_id

    def process_event(self, kind: EventKind) -> None:
        """Consume the expirations and call the callback once (nothing if none expired)."""
        try:
            data = os.read(self.fileno(), 8)
        except BlockingIOError:
            return  # readiness already consumed
        self.expirations += int.from_bytes(data, sys.byteorder)
        self._callback()

    def close(self) -> None:
        """Close the timerfd; delete the timer from its dispatcher first. Idempotent."""
        fd = getattr(self, "_fd", -1)  # __init__ may have failed early
        self._fd = -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        # No lock involved: the work runs here (`finalize` says why every __del__ asks it).
        finalize((), self.close)

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"every {seconds(self.interval)}s"
        return f"<PeriodicTimer {state}>"
