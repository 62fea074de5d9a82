"""`_wake`: the wake protocol's three kinds of waiter, `deliver`/`wake`, `park`, and the check
every blocking operation makes first (the argument checks are `_check`'s: test_check.py).

Races are placed, not hoped for: a waker "takes" a waiter by a ``deregister`` that answers
False, a cancellation lands before or after a wake-up in a fixed order, and a scripted lock
puts an interrupt or a wake-up inside a thread's blocked acquire.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import trio
import trio.testing
import uvloop

from asyncmp._lowlevel._backend import on_trio
from asyncmp._lowlevel._wake import (
    ThreadWaiter,
    TrioWaiter,
    deliver,
    ensure_blocking_allowed,
    new_async_waiter,
    park,
    trio_checkpoint,
    wake,
)

from ._support import ASYNCIO_ONLY, TRIO_ONLY, WAIT, ScriptedLock, interrupt, run_bounded

NEW_LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(uvloop.new_event_loop, id="uvloop"),
]


def never_left() -> bool:
    raise AssertionError("deregister() called, but nothing cancelled the wait")


# -- async waiters --------------------------------------------------------------------------


async def test_new_async_waiter_fits_the_library_that_runs_the_task() -> None:
    """`new_async_waiter` makes a ``Future`` of the running loop on asyncio, a `TrioWaiter`
    on trio."""
    waiter = new_async_waiter()
    if on_trio():
        assert isinstance(waiter, TrioWaiter)
    else:
        assert isinstance(waiter, asyncio.Future)
        assert waiter.get_loop() is asyncio.get_running_loop()


def test_new_async_waiter_outside_an_event_loop_raises() -> None:
    """A plain thread cannot make an async waiter: RuntimeError, not a waiter nobody wakes."""
    with pytest.raises(RuntimeError, match="asyncio and trio"):
        new_async_waiter()


@pytest.mark.parametrize("waker", ["same loop", "another thread"])
async def test_park_returns_the_value_the_waker_delivers(waker: str) -> None:
    """A parked task is woken from its own loop or from any thread, and `park` returns the
    delivered value (deregister is never called)."""
    waiters: list[Any] = []
    got: list[object] = []

    async def parker() -> None:
        waiters.append(new_async_waiter())  # made by the task that parks (trio: its task)
        got.append(await park(waiters[0], never_left))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(parker)
            await anyio.wait_all_tasks_blocked()
            if waker == "same loop":
                wake(waiters[0], "value")
            else:
                await anyio.to_thread.run_sync(wake, waiters[0], "value")
    assert got == ["value"]


async def test_park_cancelled_while_still_parked_deregisters_and_is_cancelled() -> None:
    """A cancellation of a task still parked calls ``deregister()`` once; it answers True
    (abandoned), so ``on_lost`` is not called and the cancellation goes through."""
    calls: list[str] = []

    def deregister() -> bool:
        calls.append("deregister")
        return True

    async def parker() -> None:
        await park(new_async_waiter(), deregister, lambda: calls.append("on_lost"))

    with anyio.fail_after(WAIT):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(parker)
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
    assert scope.cancelled_caught
    assert calls == ["deregister"]


@ASYNCIO_ONLY
@pytest.mark.parametrize("first", ["cancel", "wake"])
async def test_asyncio_cancel_after_a_waker_took_the_waiter_calls_on_lost(first: str) -> None:
    """asyncio cannot refuse a cancellation: a task cancelled once a waker has taken its
    waiter (``deregister()`` answers False) calls ``on_lost`` so the owner passes the wake-up
    on — whether the cancel or the wake-up lands first. A value that finds the future
    cancelled is handed back to ``undelivered``."""
    waiter = new_async_waiter()
    assert isinstance(waiter, asyncio.Future)
    calls: list[str] = []
    handed_back: list[object] = []

    def deregister() -> bool:
        calls.append("deregister")
        return False

    task = asyncio.ensure_future(park(waiter, deregister, lambda: calls.append("on_lost")))
    with anyio.fail_after(WAIT):
        await anyio.wait_all_tasks_blocked()
        if first == "cancel":
            task.cancel()
            deliver(waiter, "value", handed_back.append)
        else:
            deliver(waiter, "value", handed_back.append)
            task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert calls == ["deregister", "on_lost"]
    assert handed_back == (["value"] if first == "cancel" else [])


@TRIO_ONLY
async def test_trio_refuses_a_cancel_once_a_waker_took_the_waiter() -> None:
    """trio refuses a cancellation that finds the waiter taken (``deregister()`` False): the
    task receives the wake-up, and the cancellation arrives at its next checkpoint;
    ``on_lost`` is never needed."""
    waiters: list[Any] = []
    calls: list[str] = []
    got: list[object] = []

    def deregister() -> bool:
        calls.append("deregister")
        return False

    async def parker(scope: trio.CancelScope) -> None:
        waiters.append(new_async_waiter())
        with scope:
            got.append(await park(waiters[0], deregister, lambda: calls.append("on_lost")))
            await trio.lowlevel.checkpoint()
            calls.append("not cancelled at the next checkpoint")

    scope = trio.CancelScope()
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(parker, scope)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()  # the abort is tried now, and refused
            assert calls == ["deregister"]
            wake(waiters[0], "value")
    assert got == ["value"]
    assert calls == ["deregister"]
    assert scope.cancelled_caught


@ASYNCIO_ONLY
@pytest.mark.parametrize("waker", ["same loop", "another thread"])
async def test_deliver_to_a_cancelled_future_hands_the_value_back(waker: str) -> None:
    """A value for an asyncio waiter that was cancelled is handed to ``undelivered``, on the
    waiter's loop: directly from the loop's thread, through the loop from any other."""
    loop_thread = threading.get_ident()
    waiter = new_async_waiter()
    assert isinstance(waiter, asyncio.Future)
    waiter.cancel()
    handed_back: list[tuple[object, int]] = []

    def undelivered(value: object) -> None:
        handed_back.append((value, threading.get_ident()))

    if waker == "same loop":
        deliver(waiter, "value", undelivered)
    else:
        # The thread's result comes back through the loop after the hand-back it queued.
        await anyio.to_thread.run_sync(deliver, waiter, "value", undelivered)
    assert handed_back == [("value", loop_thread)]


@pytest.mark.parametrize("new_loop", NEW_LOOPS)
def test_deliver_to_a_closed_loop_hands_the_value_back(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """A waiter whose loop is closed cannot be woken: `deliver` hands the value back at once
    and `wake` drops it quietly."""
    loop = new_loop()
    waiter = loop.create_future()
    loop.close()
    handed_back: list[object] = []
    deliver(waiter, "value", handed_back.append)
    wake(waiter, "dropped")
    assert handed_back == ["value"]


def test_deliver_to_a_trio_waiter_whose_run_ended_hands_the_value_back() -> None:
    """A trio waiter whose run has ended is told so by its token: `TrioWaiter.wake` answers
    False, `deliver` hands the value back and `wake` drops it quietly."""

    async def make() -> TrioWaiter:
        return TrioWaiter()

    waiter = trio.run(make)
    handed_back: list[object] = []

    def from_another_thread() -> bool:
        deliver(waiter, "value", handed_back.append)
        wake(waiter, "dropped")
        return waiter.wake("again")

    assert run_bounded(from_another_thread) is False
    assert handed_back == ["value"]


def test_waking_a_trio_waiter_on_its_own_thread_after_its_run_ended_answers_false() -> None:
    """The same, from the thread that ran the trio run: no trio code runs there any more,
    so `TrioWaiter.wake` answers False (not an error) and `deliver` hands the value back."""

    async def make() -> TrioWaiter:
        return TrioWaiter()

    waiter = trio.run(make)
    handed_back: list[object] = []
    deliver(waiter, "value", handed_back.append)
    assert handed_back == ["value"]
    assert waiter.wake("again") is False


# -- thread waiters -------------------------------------------------------------------------


def test_thread_waiter_times_out_until_woken_then_holds_the_value() -> None:
    """`ThreadWaiter.wait` answers False while nobody woke it, True once woken from another
    thread, with the delivered ``value`` and ``woken`` set."""
    waiter = ThreadWaiter()
    assert waiter.wait(0) is False
    assert waiter.woken is False
    waker = threading.Thread(target=waiter.wake, args=("value",))
    waker.start()
    assert waiter.wait(WAIT) is True
    waker.join(WAIT)
    assert (waiter.value, waiter.woken) == ("value", True)


def test_thread_waiter_sets_value_and_woken_before_it_releases() -> None:
    """``value`` and ``woken`` are set before the lock is released, so a thread that sees
    the release (or whose acquire's result an interrupt lost) sees both."""
    waiter = ThreadWaiter()
    seen: list[tuple[object, bool]] = []
    real = waiter._lock

    class Recording(ScriptedLock):
        def release(self) -> None:
            seen.append((waiter.value, waiter.woken))
            super().release()

    waiter._lock = Recording(real, [])  # type: ignore[assignment]
    waiter.wake("value")
    assert seen == [("value", True)]
    assert waiter.wait(0) is True


def test_wait_delivered_returns_at_once_when_the_wakeup_was_delivered() -> None:
    """A wake-up delivered to a wait whose result an interrupt then lost (the lock is taken,
    ``woken`` is set) is not waited for again: `wait_delivered` returns at once."""
    waiter = ThreadWaiter()
    waiter.wake("value")
    assert waiter.wait(0) is True  # ... and Ctrl-C lands before the caller sees True
    run_bounded(waiter.wait_delivered)
    assert waiter.value == "value"


def test_wait_delivered_waits_for_a_wakeup_on_its_way() -> None:
    """A waker took the waiter but has not released it yet: `wait_delivered` blocks until the
    wake-up arrives."""
    waiter = ThreadWaiter()
    lock = ScriptedLock(waiter._lock, [lambda: waiter.wake("value")])
    waiter._lock = lock  # type: ignore[assignment]
    run_bounded(waiter.wait_delivered)
    assert lock.acquires == 1
    assert waiter.value == "value"


def test_wait_delivered_holds_back_a_second_interrupt_until_the_wakeup_arrives() -> None:
    """Ctrl-C again while `wait_delivered` waits is held back: it keeps waiting until the
    wake-up is in (so the delivered thing can be passed on), then raises the interrupt."""
    waiter = ThreadWaiter()
    lock = ScriptedLock(waiter._lock, [interrupt, lambda: waiter.wake("value")])
    waiter._lock = lock  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        run_bounded(waiter.wait_delivered)
    assert lock.acquires == 2
    assert (waiter.value, waiter.woken) == ("value", True)


# -- checks ---------------------------------------------------------------------------------


async def test_ensure_blocking_allowed_refuses_a_thread_that_runs_an_event_loop() -> None:
    """A blocking call on a thread that runs asyncio or trio raises RuntimeError naming the
    operation (it would freeze the loop that must wake it); a worker thread may block."""
    with pytest.raises(RuntimeError, match=r"thing\.blocking\.op\(\) blocks"):
        ensure_blocking_allowed("thing.blocking.op()")
    await anyio.to_thread.run_sync(ensure_blocking_allowed, "thing.blocking.op()")


async def test_trio_checkpoint_is_a_cancel_point_on_trio_only() -> None:
    """`trio_checkpoint` follows each library's convention: a cancel point on trio, nothing
    at all on asyncio (the task does not even yield)."""
    reached: list[str] = []
    with anyio.fail_after(WAIT), anyio.CancelScope() as scope:
        scope.cancel()
        await trio_checkpoint()
        reached.append("after trio_checkpoint")
        await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert reached == ([] if on_trio() else ["after trio_checkpoint"])
