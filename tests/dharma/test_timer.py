"""asyncmp.dharma.PeriodicTimer: a periodic timer as a dispatcher event handler (dharma's Timer)."""

from __future__ import annotations

import time

import anyio
import pytest

from asyncmp import Closed
from asyncmp.dharma import Dispatcher, EventKind, PeriodicTimer


def test_timer_coalesces_missed_periods_into_one_call() -> None:
    """A 100 ms timer whose dispatcher was busy for 350 ms calls back once, not three times."""
    calls: list[int] = []
    with Dispatcher() as dispatcher, PeriodicTimer(0.1, lambda: calls.append(1)) as timer:
        dispatcher.add_source(timer, EventKind.READ)
        time.sleep(0.35)  # the dispatcher is "blocked": at least three periods pass

        assert dispatcher.wait_and_process(0) == 1
        assert calls == [1]
        assert timer.expirations >= 3
        assert dispatcher.wait_and_process(0) == 0  # the expirations were consumed


def test_timer_fires_periodically_under_run() -> None:
    """Under run() the callback runs once per period until the dispatcher is stopped."""
    with Dispatcher() as dispatcher:
        ticks: list[float] = []

        def tick() -> None:
            ticks.append(time.monotonic())
            if len(ticks) == 3:
                dispatcher.stop()

        with PeriodicTimer(0.01, tick) as timer:
            timer_id = dispatcher.add_source(timer, EventKind.READ)
            dispatcher.run()

    assert len(ticks) == 3
    assert timer.id == timer_id
    assert ticks == sorted(ticks)


async def test_timer_fires_under_run_async() -> None:
    """A timer added to a dispatcher running as a task calls back on the loop."""
    with Dispatcher() as dispatcher:
        ticks: list[int] = []

        def tick() -> None:
            ticks.append(1)
            if len(ticks) == 2:
                dispatcher.stop()

        with PeriodicTimer(0.01, tick) as timer, anyio.fail_after(5):
            dispatcher.add_source(timer, EventKind.READ)
            await dispatcher.run_async()

    assert ticks == [1, 1]


def test_timer_rejects_bad_input() -> None:
    """Non-positive, infinite or non-numeric intervals and non-callables are refused."""
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="interval"):
            PeriodicTimer(bad, lambda: None)
    with pytest.raises(TypeError, match="interval"):
        PeriodicTimer("1", lambda: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        PeriodicTimer(1, None)  # type: ignore[arg-type]


def test_timer_closed_has_no_fd() -> None:
    """After close(), fileno() raises Closed; close() is idempotent."""
    timer = PeriodicTimer(1, lambda: None)
    assert timer.fileno() >= 0
    timer.close()
    timer.close()
    with pytest.raises(Closed):
        timer.fileno()
