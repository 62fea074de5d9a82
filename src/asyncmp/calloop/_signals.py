"""Signals: POSIX signals as events, through a Linux signalfd (calloop's ``signals``).

Creating a `Signals` blocks its signals on the calling thread and opens a signalfd for
them; closing it unblocks them. As in calloop, every other thread must block the signals
too (create the source before starting threads), or the kernel may deliver a signal to a
thread that does not block it. Linux only.
"""

from __future__ import annotations

import os
import signal as _signal
import struct
from collections.abc import Callable, Iterable
from typing import final

from .._errors import Closed
from .._lowlevel._check import check_int
from .._lowlevel._finalize import finalize
from .._lowlevel._linux import block, signalfd, unblock
from .._lowlevel._public import NoPublicConstructor
from ._poll import Interest, Mode, Poll, Readiness
from ._source import PostAction, callback_action
from ._token import Token, TokenFactory

__all__ = ("SignalEvent", "Signals")

_SIGINFO_SIZE = 128  # sizeof(struct signalfd_siginfo)
_SIGINFO = struct.Struct("=IiiIIiIIIIii")  # ssi_signo, errno, code, pid, uid, fd, tid, ...
_NEEDED_BY = "asyncmp.calloop.Signals"


@final
class SignalEvent(metaclass=NoPublicConstructor, made_by="the Signals source"):
    """One received signal: ``event.signal()``, ``event.pid()``, ``event.uid()``."""

    __slots__ = ("_pid", "_signo", "_uid")
    _signo: int
    _pid: int
    _uid: int

    @classmethod
    def _create(cls, signo: int, pid: int, uid: int) -> SignalEvent:
        self = object.__new__(cls)
        self._signo, self._pid, self._uid = signo, pid, uid
        return self

    def signal(self) -> _signal.Signals:
        """Which signal arrived."""
        return _signal.Signals(self._signo)

    def pid(self) -> int:
        """The process that sent it."""
        return self._pid

    def uid(self) -> int:
        """The real user id of the process that sent it."""
        return self._uid

    def __repr__(self) -> str:
        return f"<SignalEvent {self.signal().name} from pid {self._pid}>"


def _check(signals: Iterable[int]) -> set[_signal.Signals]:
    return {_signal.Signals(check_int(s, "a signal number")) for s in signals}


@final
class Signals:
    """An event source of POSIX signals; its callback gets ``(SignalEvent, None, data)``.

    Blocks *signals* on the calling thread (closing the source unblocks them). Every
    pending signal is delivered, one event each, at each readiness. The callback returns a
    `PostAction` (``None`` is ``CONTINUE``); one other than ``CONTINUE`` ends this
    dispatch's deliveries and is applied, and the signals still pending wait in the kernel
    for the next dispatch in which the source is registered.

    Raises:
        TypeError: a signal is not an int.
        ValueError: an int that is no signal number.
        NotImplementedError: not on Linux (signalfd).
    """

    __slots__ = ("__weakref__", "_fd", "_poll", "_signals", "_token")

    def __init__(self, signals: Iterable[int]) -> None:
        self._signals = _check(signals)
        self._fd = -1
        self._fd = signalfd(-1, self._signals, _NEEDED_BY)
        block(self._signals)
        self._poll: Poll | None = None
        self._token: Token | None = None

    def _update(self, signals: set[_signal.Signals]) -> None:
        if self._fd < 0:
            raise Closed("this Signals source is closed")
        added, removed = signals - self._signals, self._signals - signals
        if added:
            block(added)
        signalfd(self._fd, signals, _NEEDED_BY)
        if removed:
            unblock(removed)
        self._signals = signals

    def add_signals(self, signals: Iterable[int]) -> None:
        """Also watch (and block on this thread) *signals*."""
        self._update(self._signals | _check(signals))

    def remove_signals(self, signals: Iterable[int]) -> None:
        """Stop watching *signals* and unblock them on this thread."""
        self._update(self._signals - _check(signals))

    def set_signals(self, signals: Iterable[int]) -> None:
        """Watch exactly *signals*."""
        self._update(_check(signals))

    def register(self, poll: Poll, token_factory: TokenFactory) -> None:
        if self._fd < 0:
            raise Closed("this Signals source is closed")
        token = token_factory.token()
        poll.register(self._fd, Interest.READ, Mode.LEVEL, token)
        self._poll, self._token = poll, token

    def reregister(self, poll: Poll, token_factory: TokenFactory) -> None:
        token = token_factory.token()
        poll.reregister(self._fd, Interest.READ, Mode.LEVEL, token)
        self._token = token

    def unregister(self, poll: Poll) -> None:
        if self._fd >= 0:
            poll.unregister(self._fd)
        self._poll = self._token = None

    def process_events(
        self,
        readiness: Readiness,
        token: Token,
        callback: Callable[[SignalEvent, None], object],
    ) -> PostAction:
        if token != self._token:
            return PostAction.CONTINUE
        # One signal per read: a signal still in the kernel's queue is never lost when a
        # callback raises or returns an action that ends this dispatch's deliveries (it stays
        # pending, so the signalfd stays readable). Signals are rare: a read each is cheap.
        while True:
            try:
                buf = os.read(self._fd, _SIGINFO_SIZE)
            except BlockingIOError:
                return PostAction.CONTINUE
            signo, _errno, _code, pid, uid, *_ = _SIGINFO.unpack_from(buf)
            event = SignalEvent._create(signo, pid, uid)
            action = callback_action(callback(event, None), "Signals")
            if action is not PostAction.CONTINUE:
                return action

    def close(self) -> None:
        """Unregister, close the signalfd and unblock the signals (idempotent)."""
        if self._fd < 0:
            return
        if self._poll is not None:
            self.unregister(self._poll)
        os.close(self._fd)
        self._fd = -1
        unblock(self._signals)

    def __del__(self) -> None:
        # `finalize` defers the close while this thread holds the poller's lock.
        if getattr(self, "_fd", -1) >= 0:
            poll = self._poll
            finalize(() if poll is None else (poll._lock,), self.close)
