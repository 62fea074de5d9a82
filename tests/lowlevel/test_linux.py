"""`_linux`: one libc, a timerfd that fires (through ``os`` on 3.13+ and through libc on any
version), a signalfd that reads a signal blocked on its thread, signal masks changed and
restored, and a clear `NotImplementedError` off Linux.

Masks are per thread: every test that changes one runs in a helper thread of its own
(`run_bounded`), so the test runner's threads keep theirs.
"""

from __future__ import annotations

import os
import select
import signal
import struct
import sys
import threading

import pytest

from asyncmp._lowlevel._linux import (
    THREAD_SIGNALS,
    block,
    blocked,
    blocking,
    libc,
    signalfd,
    timerfd,
    unblock,
)

from ._support import WAIT, run_bounded

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def test_libc_is_loaded_once() -> None:
    """Every caller gets the same library object (one loader for the package)."""
    assert libc() is libc()


@pytest.mark.parametrize("through", ["os", "libc"])
def test_timerfd_fires_after_its_interval(through: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A timerfd becomes readable once its interval has passed and reads its expirations;
    made by ``os.timerfd_create`` where Python has it, and by libc through ctypes otherwise."""
    if through == "libc":
        monkeypatch.delattr(os, "timerfd_create", raising=False)
    elif not hasattr(os, "timerfd_create"):
        pytest.skip("os.timerfd_create is Python 3.13+")
    fd = timerfd(0.001, "the test")
    try:
        readable, _, _ = select.select([fd], [], [], WAIT)
        assert readable == [fd]
        assert int.from_bytes(os.read(fd, 8), sys.byteorder) >= 1
        assert not os.get_blocking(fd)
    finally:
        os.close(fd)


def test_signalfd_reads_a_signal_blocked_on_its_thread() -> None:
    """A signal sent to a thread that blocks it stays pending, and the thread's signalfd
    reads it (the signal number comes first in the siginfo)."""

    def run() -> int:
        block({signal.SIGUSR2})
        fd = signalfd(-1, {signal.SIGUSR2}, "the test")
        try:
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
            readable, _, _ = select.select([fd], [], [], WAIT)
            assert readable == [fd]
            (signo,) = struct.unpack_from("=I", os.read(fd, 128))
            return int(signo)
        finally:
            os.close(fd)

    assert run_bounded(run) == signal.SIGUSR2


def test_block_unblock_and_blocking_change_the_thread_mask_and_restore_it() -> None:
    """`block` and `unblock` change the calling thread's mask; `blocking` blocks for its
    block and then restores the mask as it was (not merely unblocks), and does nothing when
    not enabled."""

    def run() -> list[frozenset[int]]:
        seen = [blocked()]
        block({signal.SIGUSR1})
        seen.append(blocked())
        with blocking(THREAD_SIGNALS):
            seen.append(blocked())
        seen.append(blocked())
        with blocking(THREAD_SIGNALS, enabled=False):
            seen.append(blocked())
        unblock({signal.SIGUSR1})
        seen.append(blocked())
        return seen

    start, usr1, inside, after, disabled, end = run_bounded(run)
    assert signal.SIGUSR1 not in start
    assert usr1 == start | {signal.SIGUSR1}
    assert inside == usr1 | THREAD_SIGNALS
    assert after == disabled == usr1
    assert end == start


def test_thread_signals_are_dharmas_four() -> None:
    """The threads asyncmp starts block what dharma's block: SIGINT, SIGTERM, SIGUSR1/2."""
    assert {signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2} == THREAD_SIGNALS


def test_off_linux_the_libc_calls_say_who_needs_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the call does not exist, `NotImplementedError` names the caller and the call."""
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.delattr(os, "timerfd_create", raising=False)
    with pytest.raises(NotImplementedError, match=r"^asyncmp\.x needs Linux \(signalfd\)$"):
        signalfd(-1, {signal.SIGUSR1}, "asyncmp.x")
    with pytest.raises(NotImplementedError, match=r"^asyncmp\.y needs Linux \(timerfd_create\)$"):
        timerfd(1.0, "asyncmp.y")
