"""run_async: a calloop loop nested in the running asyncio (or uvloop, or trio) loop."""

from __future__ import annotations

import os
import threading
from typing import Any

import anyio

from asyncmp.calloop import (
    ChannelClosed,
    EventLoop,
    FdSource,
    Interest,
    Mode,
    Msg,
    TimeoutAction,
    Timer,
    channel,
)


async def test_run_async_timer_fires_without_fd_activity() -> None:
    """run_async wakes for the next timer deadline, not only for fd readiness."""
    with EventLoop() as ev:
        signal = ev.get_signal()
        fired: list[float] = []

        def cb(deadline: float, meta: None, data: list[float]) -> TimeoutAction:
            data.append(deadline)
            if len(data) == 3:
                signal.stop()
                return TimeoutAction.drop()
            return TimeoutAction.to_duration(0.01)

        ev.handle().insert_source(Timer.from_duration(0.01), cb)
        with anyio.fail_after(5):
            await ev.run_async(fired)

    assert len(fired) == 3


async def test_run_async_channel_from_thread_and_pipe() -> None:
    """Channel messages from a thread and pipe data reach callbacks while the host loop runs."""
    r, w = os.pipe()
    sender, chan = channel()
    got: list[Any] = []
    other_task_ran = anyio.Event()
    with EventLoop() as ev:
        h = ev.handle()
        signal = ev.get_signal()

        def on_msg(event: Msg[int] | ChannelClosed, meta: None, data: list[Any]) -> None:
            data.append(event)
            if isinstance(event, ChannelClosed):
                signal.stop()

        def on_pipe(readiness: Any, fd: int, data: list[Any]) -> None:
            data.append(os.read(fd, 10))

        h.insert_source(chan, on_msg)
        h.insert_source(FdSource(r, Interest.READ, Mode.LEVEL), on_pipe)

        def feed() -> None:
            os.write(w, b"pipe")
            with sender:
                for i in range(3):
                    sender.send(i)

        async def other() -> None:
            other_task_ran.set()  # the host loop keeps running other tasks

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(other)
                thread = threading.Thread(target=feed)
                thread.start()
                await ev.run_async(got)
        thread.join(5)
    os.close(r)
    os.close(w)

    assert other_task_ran.is_set()
    assert b"pipe" in got
    assert [e for e in got if not isinstance(e, bytes)] == [Msg(0), Msg(1), Msg(2), ChannelClosed()]


async def test_run_async_stopped_from_another_thread() -> None:
    """stop()+wakeup() from a thread ends run_async; cb ran after each dispatch."""
    with EventLoop() as ev:
        signal = ev.get_signal()
        started = threading.Event()
        calls: list[int] = []

        def stopper() -> None:
            started.wait(5)
            signal.stop()
            signal.wakeup()

        ev.handle().insert_idle(lambda d: started.set())
        thread = threading.Thread(target=stopper)
        thread.start()
        with anyio.fail_after(5):
            await ev.run_async(None, lambda d: calls.append(1))
        thread.join(5)

    assert started.is_set()
    assert calls


async def test_run_async_cancellation_ends_it() -> None:
    """Cancelling the task that awaits run_async ends it; the loop stays usable."""
    with EventLoop() as ev:
        with anyio.move_on_after(0.01):
            await ev.run_async(None)
        ev.handle().insert_idle(lambda d: d.append("after"))
        out: list[str] = []
        ev.dispatch(0, out)

    assert out == ["after"]
