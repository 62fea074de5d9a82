"""The executor source: coroutines on a calloop loop, TimeoutFuture and adapted fds."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from asyncmp import Closed as ClosedError
from asyncmp.calloop import EventLoop, ExecutorDestroyed, TimeoutFuture, executor


@pytest.fixture
def loop() -> Iterator[EventLoop[Any]]:
    with EventLoop() as ev:
        yield ev


def append_event(event: Any, meta: Any, data: list[Any]) -> None:
    data.append(event)


def dispatch_until(loop: EventLoop[Any], data: list[Any], n: int) -> None:
    deadline = time.monotonic() + 5
    while len(data) < n and time.monotonic() < deadline:
        loop.dispatch(0.5, data)


def test_executor_result_is_the_callback_event(loop: EventLoop[Any]) -> None:
    """A scheduled coroutine runs inside dispatch and its return value is the event."""
    ex, sched = executor()
    loop.handle().insert_source(ex, append_event)

    async def answer() -> int:
        return 42

    sched.schedule(answer())
    results: list[Any] = []
    loop.dispatch(0, results)

    assert results == [42]


def test_executor_timeout_future_resumes_after_its_deadline(loop: EventLoop[Any]) -> None:
    """A coroutine awaiting TimeoutFuture resumes only once the timer fired."""
    h = loop.handle()
    ex, sched = executor()
    h.insert_source(ex, append_event)

    async def wait() -> str:
        fut = TimeoutFuture.from_duration(h, 0.01)
        await fut
        assert fut.done()
        return "woke"

    sched.schedule(wait())
    results: list[Any] = []
    loop.dispatch(0, results)
    assert results == []

    dispatch_until(loop, results, 1)
    assert results == ["woke"]


def test_executor_adapted_fd_readable(loop: EventLoop[Any]) -> None:
    """await a.readable() resumes when the loop sees data on the fd."""
    h = loop.handle()
    ex, sched = executor()
    h.insert_source(ex, append_event)
    r, w = os.pipe()
    io = h.adapt_io(r)

    async def read() -> bytes:
        await io.readable()
        return os.read(r, 10)

    sched.schedule(read())
    results: list[Any] = []
    loop.dispatch(0, results)
    loop.dispatch(0, results)
    assert results == []  # nothing to read yet, and the read never blocked

    os.write(w, b"data")
    dispatch_until(loop, results, 1)
    assert results == [b"data"]
    io.close()
    assert os.get_blocking(r)
    os.close(r)
    os.close(w)


def test_executor_adapted_fd_writable(loop: EventLoop[Any]) -> None:
    """await a.writable() resumes when the fd accepts data."""
    h = loop.handle()
    ex, sched = executor()
    h.insert_source(ex, append_event)
    r, w = os.pipe()
    io = h.adapt_io(w)

    async def write() -> int:
        await io.writable()
        return os.write(w, b"x")

    sched.schedule(write())
    results: list[Any] = []
    dispatch_until(loop, results, 1)

    assert results == [1]
    io.close()
    with pytest.raises(ClosedError):
        io.readable()
    os.close(r)
    os.close(w)


def test_executor_foreign_awaitable_raises_type_error_inside(loop: EventLoop[Any]) -> None:
    """Awaiting a non-calloop awaitable raises TypeError inside the coroutine."""
    ex, sched = executor()
    loop.handle().insert_source(ex, append_event)

    async def bad() -> str:
        try:
            await asyncio.sleep(0)  # yields a bare None to its runner
        except TypeError as exc:
            return f"refused: {'calloop awaitables' in str(exc)}"
        return "accepted"

    sched.schedule(bad())
    results: list[Any] = []
    dispatch_until(loop, results, 1)

    assert results == ["refused: True"]


def test_executor_exception_propagates_from_dispatch(loop: EventLoop[Any]) -> None:
    """An exception escaping a coroutine propagates from dispatch."""
    ex, sched = executor()
    loop.handle().insert_source(ex, append_event)

    async def fail() -> None:
        raise KeyError("lost")

    sched.schedule(fail())

    with pytest.raises(KeyError, match="lost"):
        loop.dispatch(0, [])


def test_executor_runs_at_most_1024_per_dispatch(loop: EventLoop[Any]) -> None:
    """1025 ready coroutines complete as 1024 in one dispatch and 1 in the next."""
    ex, sched = executor()
    loop.handle().insert_source(ex, append_event)

    async def one(i: int) -> int:
        return i

    for i in range(1025):
        sched.schedule(one(i))
    results: list[Any] = []
    loop.dispatch(0, results)
    assert len(results) == 1024

    loop.dispatch(0, results)
    assert sorted(results) == list(range(1025))


def test_executor_closed_closes_pending_and_refuses_schedule(loop: EventLoop[Any]) -> None:
    """Closing the executor closes unfinished coroutines; schedule then raises ExecutorDestroyed."""
    h = loop.handle()
    ex, sched = executor()
    h.insert_source(ex, append_event)
    finalized: list[str] = []

    async def forever() -> None:
        try:
            await TimeoutFuture.from_duration(h, 3600)
        finally:
            finalized.append("closed")

    sched.schedule(forever())
    loop.dispatch(0, [])
    ex.close()

    assert finalized == ["closed"]

    async def later() -> None:
        pass

    coro = later()
    with pytest.raises(ExecutorDestroyed):
        sched.schedule(coro)


def test_executor_schedule_rejects_non_coroutines() -> None:
    """schedule() takes a coroutine object."""
    ex, sched = executor()
    with pytest.raises(TypeError, match="coroutine"):
        sched.schedule(lambda: None)  # type: ignore[arg-type]
    ex.close()


def test_timeout_future_close_removes_its_timer(loop: EventLoop[Any]) -> None:
    """A closed TimeoutFuture never fires and its timer leaves the loop."""
    fut = TimeoutFuture.from_deadline(loop.handle(), time.monotonic())
    fut.close()
    loop.dispatch(0, None)

    assert not fut.done()
    assert all(s is None for s in loop._inner.slots)
