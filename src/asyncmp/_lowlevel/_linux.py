"""The Linux system interfaces asyncmp uses beyond the standard library's: libc through
``ctypes`` (one loader), ``timerfd``, ``signalfd``, and per-thread signal masks.

Design note. Python gained ``os.timerfd_create`` only in 3.13 and has no ``signalfd`` at all,
so those come from libc through ``ctypes``; libc is loaded once, on first use, from the running
process (``dlopen(NULL)``: the interpreter is linked against it, and no ``find_library``
subprocess is started). Each function raises `NotImplementedError` naming what needs Linux
where the call does not exist, and `OSError` with the C ``errno`` where it fails.

Signal masks: the threads asyncmp starts for dharma's event loops and a dispatcher run off the
main thread block `THREAD_SIGNALS`, so that the kernel delivers those signals to the main
thread, the only one where Python runs signal handlers (``dharma/_system.py`` says why). The
mask functions are no-ops where threads have no signal masks (Windows).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from typing import Any, Final

__all__ = (
    "HAVE_SIGNAL_MASKS",
    "THREAD_SIGNALS",
    "block",
    "blocked",
    "blocking",
    "libc",
    "signalfd",
    "timerfd",
    "unblock",
)

HAVE_SIGNAL_MASKS: Final = hasattr(signal, "pthread_sigmask")
"""Whether threads have signal masks here (POSIX; not Windows)."""

THREAD_SIGNALS: Final = frozenset(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)
"""What asyncmp's own threads block (dharma's set): SIGINT, SIGTERM, SIGUSR1 and SIGUSR2."""

_libc: Any = None


def libc() -> Any:
    """The C library of this process (``ctypes.CDLL``, with ``use_errno``), loaded once."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _function(name: str, needed_by: str) -> Any:
    """libc's *name*, or `NotImplementedError` saying that *needed_by* needs Linux."""
    function = getattr(libc(), name, None) if sys.platform.startswith("linux") else None
    if function is None:
        raise NotImplementedError(f"{needed_by} needs Linux ({name})")
    return function


def _errno_error() -> OSError:
    errno = ctypes.get_errno()
    return OSError(errno, os.strerror(errno))


# -- timerfd --------------------------------------------------------------------------------

_CLOCK_MONOTONIC = 1
_TFD_FLAGS = os.O_NONBLOCK | os.O_CLOEXEC  # TFD_NONBLOCK and TFD_CLOEXEC have these values


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def timerfd(interval: float, needed_by: str) -> int:
    """A non-blocking timerfd on the monotonic clock, firing every *interval* seconds (> 0),
    first after one interval. *needed_by* names the caller in the error off Linux."""
    os_create: Any = getattr(os, "timerfd_create", None)
    if os_create is not None:  # Python >= 3.13
        fd: int = os_create(_CLOCK_MONOTONIC, flags=_TFD_FLAGS)
        os.timerfd_settime(fd, initial=interval, interval=interval)  # type: ignore[attr-defined]
        return fd
    create = _function("timerfd_create", needed_by)
    fd = create(_CLOCK_MONOTONIC, _TFD_FLAGS)
    if fd < 0:
        raise _errno_error()
    sec = int(interval)
    nsec = round((interval - sec) * 1e9)
    if nsec >= 1_000_000_000:
        sec, nsec = sec + 1, nsec - 1_000_000_000
    if sec == 0 and nsec == 0:
        nsec = 1  # an all-zero value would disarm the timer
    spec = _Itimerspec(_Timespec(sec, nsec), _Timespec(sec, nsec))
    if libc().timerfd_settime(fd, 0, ctypes.byref(spec), None) < 0:
        error = _errno_error()
        os.close(fd)
        raise error
    return fd


# -- signalfd -------------------------------------------------------------------------------


class _SigSet(ctypes.Structure):
    # glibc's sigset_t: 1024 bits.
    _fields_ = [("val", ctypes.c_ulong * (1024 // (8 * ctypes.sizeof(ctypes.c_ulong))))]


def signalfd(fd: int, signals: Iterable[int], needed_by: str) -> int:
    """A non-blocking signalfd reading *signals* (``fd=-1``: a new one; otherwise *fd* is set
    to watch exactly *signals*). The signals must also be blocked (`block`), or they are
    handled before the signalfd can read them."""
    call = _function("signalfd", needed_by)
    c = libc()
    sigset = _SigSet()
    c.sigemptyset(ctypes.byref(sigset))
    for signum in signals:
        c.sigaddset(ctypes.byref(sigset), int(signum))
    result: int = call(fd, ctypes.byref(sigset), os.O_NONBLOCK | os.O_CLOEXEC)
    if result < 0:
        raise _errno_error()
    return result


# -- signal masks ---------------------------------------------------------------------------


def block(signals: Iterable[int]) -> None:
    """Block *signals* on the calling thread."""
    if HAVE_SIGNAL_MASKS:
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)


def unblock(signals: Iterable[int]) -> None:
    """Unblock *signals* on the calling thread."""
    if HAVE_SIGNAL_MASKS:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


def blocked() -> frozenset[int]:
    """The signals the calling thread blocks (none where threads have no masks)."""
    if not HAVE_SIGNAL_MASKS:
        return frozenset()
    return frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, ()))


@contextlib.contextmanager
def blocking(signals: Iterable[int], enabled: bool = True) -> Iterator[None]:
    """Block *signals* on this thread for the block's duration (if *enabled*), then restore
    the thread's mask as it was."""
    if not (enabled and HAVE_SIGNAL_MASKS):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
