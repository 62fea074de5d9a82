"""A tour of asyncmp.calloop: a timer, a channel fed by a thread, a pipe and an idle callback.

The same setup runs twice: first standalone on this thread (``loop.run``), then nested in
a running asyncio loop (``await loop.run_async``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass, field

from asyncmp import calloop
from asyncmp.calloop import Interest, Mode, PostAction, TimeoutAction


@dataclass
class State:
    """The shared data: every callback gets it as its last argument."""

    ticks: int = 0
    messages: list[str] = field(default_factory=list[str])
    pipe_data: bytes = b""
    idle_ran: bool = False
    channel_closed: bool = False


def build(loop: calloop.EventLoop[State]) -> tuple[threading.Thread, int]:
    """Insert the four sources; return the (unstarted) feeding thread and the pipe's reader."""
    handle = loop.handle()
    signal = loop.get_signal()

    # A periodic timer: its event is the scheduled deadline, so rearming at
    # deadline + period keeps it drift-free. It stops the loop once all else is done.
    def on_tick(deadline: float, _: None, state: State) -> TimeoutAction:
        state.ticks += 1
        if state.channel_closed and state.pipe_data and state.idle_ran:
            signal.stop()
            return TimeoutAction.drop()
        return TimeoutAction.to_instant(deadline + 0.01)

    handle.insert_source(calloop.Timer.immediate(), on_tick)

    # A channel: the sender works from any thread; the loop gets Msg(...) then Closed().
    sender, chan = calloop.channel()

    def on_message(event: calloop.Msg[str] | calloop.ChannelClosed, _: None, state: State) -> None:
        match event:
            case calloop.Msg(text):
                state.messages.append(text)
            case calloop.ChannelClosed():
                state.channel_closed = True

    handle.insert_source(chan, on_message)

    # A pipe watched by Generic: level-triggered, so read what is there each time.
    r, w = os.pipe()

    def on_pipe(readiness: calloop.Readiness, fd: int, state: State) -> PostAction:
        state.pipe_data += os.read(fd, 1024)
        if state.pipe_data.endswith(b"!"):
            return PostAction.REMOVE  # unregister it (the loop never closes the fd itself)
        return PostAction.CONTINUE

    handle.insert_source(calloop.FdSource(r, Interest.READ, Mode.LEVEL), on_pipe)

    # An idle callback: runs once, after the events of the next dispatch.
    handle.insert_idle(lambda state: setattr(state, "idle_ran", True))

    def feed() -> None:
        with sender:  # closing the last sender makes the loop see Closed()
            for word in ("hello", "from", "a", "thread"):
                sender.send(word)
        os.write(w, b"pipe says hi!")
        os.close(w)

    return threading.Thread(target=feed), r


def check(state: State, how: str) -> None:
    assert state.messages == ["hello", "from", "a", "thread"], state.messages
    assert state.channel_closed
    assert state.pipe_data == b"pipe says hi!", state.pipe_data
    assert state.idle_ran
    assert state.ticks >= 1
    print(f"{how}: messages={' '.join(state.messages)!r}, pipe={state.pipe_data.decode()!r},")
    print(f"{' ' * len(how)}  idle ran, channel closed, timer ticked {state.ticks} time(s)")


def standalone() -> None:
    with calloop.EventLoop[State]() as loop:
        state = State()
        feeder, reader = build(loop)
        feeder.start()
        loop.run(1.0, state)  # dispatch (waiting at most 1 s each time) until stopped
        feeder.join()
    os.close(reader)
    check(state, "standalone")


async def nested() -> None:
    with calloop.EventLoop[State]() as loop:
        state = State()
        feeder, reader = build(loop)
        feeder.start()
        # The calloop loop runs inside asyncio: other tasks keep running meanwhile.
        other = asyncio.create_task(asyncio.sleep(0, result="asyncio kept running"))
        await asyncio.wait_for(loop.run_async(state), timeout=10)
        feeder.join()
        assert await other == "asyncio kept running"
    os.close(reader)
    check(state, "nested in asyncio")


if __name__ == "__main__":
    standalone()
    asyncio.run(nested())
