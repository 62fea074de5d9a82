"""Signals source, each test in a child process (signal masks are process-wide state)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signalfd is Linux-only"),
]


def run_child(code: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr


def test_signals_delivers_signal_with_sender_pid() -> None:
    """A signal sent to the process arrives as one event naming the signal and the sender."""
    run_child(
        """
        import os, signal
        from asyncmp.calloop import EventLoop, Signals

        with EventLoop() as ev:
            source = Signals([signal.SIGUSR1])
            assert signal.SIGUSR1 in signal.pthread_sigmask(signal.SIG_BLOCK, [])
            ev.handle().insert_source(source, lambda e, m, d: d.append(e))
            os.kill(os.getpid(), signal.SIGUSR1)
            events = []
            ev.dispatch(5, events)
            assert len(events) == 1, events
            assert events[0].signal() == signal.SIGUSR1
            assert events[0].pid() == os.getpid()
            assert events[0].uid() == os.getuid()
            ev.dispatch(0, events)
            assert len(events) == 1
        print("ok")
        """
    )


def test_signals_drains_every_pending_signal_in_one_readiness() -> None:
    """Two different pending signals both arrive in one dispatch, one event each."""
    run_child(
        """
        import os, signal
        from asyncmp.calloop import EventLoop, Signals

        with EventLoop() as ev:
            ev.handle().insert_source(
                Signals([signal.SIGUSR1, signal.SIGUSR2]), lambda e, m, d: d.append(e.signal())
            )
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGUSR2)
            events = []
            ev.dispatch(5, events)
            assert sorted(events) == [signal.SIGUSR1, signal.SIGUSR2], events
        print("ok")
        """
    )


def test_signals_add_remove_and_close_restore_the_mask() -> None:
    """add_signals blocks and watches more; remove_signals and close unblock them."""
    run_child(
        """
        import os, signal
        from asyncmp.calloop import EventLoop, Signals

        def blocked():
            return signal.pthread_sigmask(signal.SIG_BLOCK, [])

        with EventLoop() as ev:
            source = Signals([signal.SIGUSR1])
            h = ev.handle()
            token = h.insert_source(source, lambda e, m, d: d.append(e.signal()))
            source.add_signals([signal.SIGUSR2])
            assert signal.SIGUSR2 in blocked()
            os.kill(os.getpid(), signal.SIGUSR2)
            events = []
            ev.dispatch(5, events)
            assert events == [signal.SIGUSR2], events

            source.remove_signals([signal.SIGUSR2])
            assert signal.SIGUSR2 not in blocked()
            h.remove(token)
            source.close()
            assert signal.SIGUSR1 not in blocked()
        print("ok")
        """
    )


def test_signals_bad_input_is_refused() -> None:
    """Non-signal values are refused with TypeError/ValueError."""
    run_child(
        """
        from asyncmp.calloop import Signals
        for bad, exc in (("USR1", TypeError), (99999, ValueError)):
            try:
                Signals([bad])
            except exc:
                pass
            else:
                raise AssertionError(bad)
        print("ok")
        """
    )
