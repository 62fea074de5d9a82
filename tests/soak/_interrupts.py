"""Ctrl-C for the main thread: real SIGINTs, raised inside a blocking call's wait."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import asyncmp

from ._round import WAIT, Round

_speedups: Any = None if asyncmp.CORE == "pure" else importlib.import_module("asyncmp._speedups")


def in_blocking_wait(frame: FrameType | None) -> bool:
    """Whether the main thread, running *frame*, is in a blocking asyncmp call's wait: on a
    pure-Python waiter's lock, or (compiled core) in a parker's wait, which has no frame."""
    if _speedups is not None and _speedups._main_thread_in_wait():
        return True
    return (
        frame is not None
        and frame.f_code.co_name == "wait"
        and "asyncmp" in frame.f_code.co_filename
        and type(frame.f_locals.get("self")).__name__ == "ThreadWaiter"
    )


class Interrupts:
    """Ctrl-C for the main thread: a thread sends real SIGINTs at random moments while the
    main thread is inside a blocking call, and the handler raises KeyboardInterrupt only when
    it runs inside the call's wait — where the docs promise that an interrupt leaves what a
    timeout leaves. (Python runs the handler there when the signal interrupts the lock
    acquire, or right after the acquire returned: "in that very instant".)"""

    def __init__(self, rd: Round) -> None:
        self.rng = rd.rng("interrupts")
        self.main = threading.main_thread().ident
        self.enabled = threading.current_thread() is threading.main_thread()
        self.blocking = threading.Event()  # set by the main thread before a blocking call
        self.done = False
        self.active = False
        self.raised = 0
        self.thread = threading.Thread(target=self.run, name="soak-interrupter", daemon=True)

    @contextmanager
    def armed(self, odds: float) -> Iterator[None]:
        """Around one blocking call: interrupt it with probability *odds*."""
        if self.rng.random() >= odds:
            yield
            return
        self.active = True
        self.blocking.set()
        try:
            yield
        finally:
            self.active = False

    def handler(self, signum: int, frame: FrameType | None) -> None:
        if self.active and in_blocking_wait(frame):
            self.raised += 1
            raise KeyboardInterrupt

    def run(self) -> None:
        while not self.done:
            if not self.blocking.wait(WAIT):
                return
            self.blocking.clear()
            if self.done:
                return
            # Aim at the wait (a best effort: the handler checks where it runs).
            frames = sys._current_frames()
            for _ in range(50):
                if in_blocking_wait(frames.get(self.main)):  # type: ignore[arg-type]
                    break
                os.sched_yield()
                frames = sys._current_frames()
            del frames
            signal.pthread_kill(self.main, signal.SIGINT)  # type: ignore[arg-type]

    @contextmanager
    def installed(self) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        old = signal.signal(signal.SIGINT, self.handler)
        self.thread.start()
        try:
            yield
        finally:
            self.done = True
            self.blocking.set()
            self.thread.join(WAIT)
            # A signal sent before the join returned has been handled by now: the join's
            # wait is interruptible and the handler runs before it returns.
            signal.signal(signal.SIGINT, old)
            assert not self.thread.is_alive()
