"""A periodic timer as a dispatcher event handler: dharma's Timer.

Design note. As in dharma the timer is a Linux ``timerfd`` (monotonic clock, non-blocking):
the kernel counts expirations and the fd is readable while the count is non-zero. On each
readiness the timer reads (and so resets) the count and calls the callback *once*, so
periods missed while the dispatcher was busy coalesce into one call; the number of periods
the call stands for is kept in `PeriodicTimer.expirations`. Python gained ``os.timerfd_create``
only in 3.13, so older versions reach the libc functions through ``ctypes``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, final

from .._closing import Closing
from .._errors import Closed
from .._lowlevel._finalize import finalize
from .._lowlevel._format import seconds

if TYPE_CHECKING:
    from ._dispatcher import EventHandlerId, EventKind

__all__ = ("PeriodicTimer",)

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc: Any = None


def _timerfd(interval: float) -> int:
    """A non-blocking timerfd firing every *interval* seconds, first after one interval."""
    global _libc
    os_create: Any = getattr(os, "timerfd_create", None)
    if os_create is not None:  # Python >= 3.13
        fd: int = os_create(_CLOCK_MONOTONIC, flags=_TFD_NONBLOCK | _TFD_CLOEXEC)
        os.timerfd_settime(fd, initial=interval, interval=interval)  # type: ignore[attr-defined]
        return fd
    if not sys.platform.startswith("linux"):
        raise NotImplementedError("asyncmp.dharma.PeriodicTimer needs Linux (timerfd), as dharma")
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    fd = _libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
    if fd < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    sec = int(interval)
    nsec = round((interval - sec) * 1e9)
    if nsec >= 1_000_000_000:
        sec, nsec = sec + 1, nsec - 1_000_000_000
    if sec == 0 and nsec == 0:
        nsec = 1  # an all-zero value would disarm the timer
    spec = _Itimerspec(_Timespec(sec, nsec), _Timespec(sec, nsec))
    if _libc.timerfd_settime(fd, 0, ctypes.byref(spec), None) < 0:
        errno = ctypes.get_errno()
        os.close(fd)
        raise OSError(errno, os.strerror(errno))
    return fd


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
        ValueError: *interval* is not > 0.
        OSError: the system refused to create the timer.
    """

    __slots__ = ("__weakref__", "_callback", "_fd", "expirations", "id", "interval")

    def __init__(self, interval: float, callback: Callable[[], object]) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)):
            raise TypeError(f"interval must be a number of seconds, not {interval!r}")
        if not (interval > 0 and math.isfinite(interval)):
            raise ValueError(f"interval must be a finite number > 0, not {interval!r}")
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        self._fd = -1
        self.interval = float(interval)
        """The period, in seconds."""
        self.expirations = 0
        """Periods elapsed so far, counted each time the callback runs."""
        self.id: EventHandlerId | None = None
        """The id the dispatcher gave the timer, once added."""
        self._callback = callback
        self._fd = _timerfd(self.interval)

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
