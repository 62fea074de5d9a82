"""A dharma-style application: a signaler, two event loops, a dispatcher with a timer,
and a clean shutdown on SIGTERM.

The main thread builds everything, runs the dispatcher, and joins the loops once a SIGTERM
(sent by the example to itself after five ticks) has stopped the dispatcher and terminated
the loops.
"""

from __future__ import annotations

import enum
import os
import signal
from typing import Any

from asyncmp.dharma import (
    Dispatcher,
    EventKind,
    EventLoopInfo,
    Module,
    PeriodicTimer,
    Signaler,
    SignalEventHandler,
)


class Sig(enum.IntEnum):
    """The application's signals."""

    TICK = 1  # emitted by the timer every 100 ms
    COUNT = 2  # emitted by the counter module with the number of ticks so far


class TickCounter(Module):
    """Counts ticks and tells everyone the count."""

    def __init__(self, context: dict[str, Any]) -> None:
        self.signaler: Signaler[int] = context["signaler"]
        self.results: dict[str, Any] = context["results"]
        self.count = 0

    def get_signals(self) -> list[int]:
        return [Sig.TICK]

    def execute(self, signal_id: int, payload: Any) -> None:
        self.count += 1
        self.signaler.emit(Sig.COUNT, self.count)

    def finalize(self) -> None:
        self.results["counted"] = self.count


class Display(Module):
    """Shows each count."""

    def __init__(self, context: dict[str, Any]) -> None:
        self.results: dict[str, Any] = context["results"]
        self.shown: list[int] = []

    def get_signals(self) -> list[int]:
        return [Sig.COUNT]

    def execute(self, signal_id: int, payload: Any) -> None:
        print(f"  display: count = {payload}")
        self.shown.append(payload)

    def finalize(self) -> None:
        self.results["shown"] = self.shown


def main() -> None:
    signaler: Signaler[int] = Signaler()
    results: dict[str, Any] = {}
    context = {"signaler": signaler, "results": results}

    # Two event loops, each on its own thread; start() returns once each has subscribed.
    logic = EventLoopInfo("logic", signaler, context)
    logic.add_module(TickCounter)
    display = EventLoopInfo("display", signaler, context)
    display.add_module(Display)
    threads = [logic.start(), display.start()]

    # The dispatcher runs on the main thread: a timer and the SIGINT/SIGTERM handler.
    dispatcher = Dispatcher()
    ticks = 0

    def on_timer() -> None:
        nonlocal ticks
        ticks += 1
        signaler.emit(Sig.TICK, ticks)
        if ticks == 5:
            print("  main: five ticks, sending myself SIGTERM")
            os.kill(os.getpid(), signal.SIGTERM)

    with (
        PeriodicTimer(0.1, on_timer) as timer,
        SignalEventHandler(dispatcher, signaler) as on_signal,
    ):
        dispatcher.add_source(timer, EventKind.READ)
        dispatcher.add_source(on_signal, EventKind.READ)
        print("main: dispatching (a tick every 100 ms)")
        dispatcher.run()  # returns once SIGTERM has stopped it
        print(f"main: dispatcher stopped by {[s.name for s in on_signal.received]}")
    dispatcher.close()

    for thread in threads:
        thread.join(timeout=5)
        assert not thread.is_alive(), f"event loop {thread.name} did not end"

    # Every tick emitted before terminate() was executed before the counter finalized.
    assert results["counted"] == ticks >= 5, (results, ticks)
    # COUNT signals are emitted by a module in response to TICK, so the last ones may be
    # emitted after terminate() reached the display: it shows a prefix, in order.
    shown = results["shown"]
    assert shown == list(range(1, len(shown) + 1)), shown
    print(f"main: counted {results['counted']} ticks, displayed {len(shown)}; clean shutdown")


if __name__ == "__main__":
    main()
