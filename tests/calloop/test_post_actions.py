"""Every callback's returned PostAction is applied, whatever the source (or clearly refused).

Each source kind gets the same three checks: ``DISABLE`` stops its events until ``enable``
(and loses none), ``REMOVE`` removes it (its token is invalid afterwards), and a value that
is neither a PostAction nor None raises TypeError instead of being ignored. A timer's
callback returns a TimeoutAction instead; a PostAction there is refused with a hint.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from asyncmp.calloop import (
    EventLoop,
    Executor,
    FdSource,
    Interest,
    InvalidToken,
    Mode,
    Msg,
    PostAction,
    Timer,
    channel,
    executor,
    make_ping,
)


@pytest.fixture
def loop() -> Iterator[EventLoop[Any]]:
    with EventLoop() as ev:
        yield ev


def returning(action: object, events: list[Any]) -> Callable[[Any, Any, Any], object]:
    """A callback that records each event and returns *action*."""

    def callback(event: Any, meta: Any, data: Any) -> object:
        events.append(event)
        return action

    return callback


def invalid(loop: EventLoop[Any], token: Any) -> bool:
    try:
        loop.handle().enable(token)
    except InvalidToken:
        return True
    return False


# -- ping ------------------------------------------------------------------------------------


def test_ping_callback_returning_remove_removes_the_source(loop: EventLoop[Any]) -> None:
    """A ping callback returning REMOVE is never called again: the source leaves the loop."""
    ping, source = make_ping()
    events: list[Any] = []
    token = loop.handle().insert_source(source, returning(PostAction.REMOVE, events))

    ping.ping()
    loop.dispatch(0, None)
    ping.ping()
    loop.dispatch(0, None)

    assert events == [None]
    assert invalid(loop, token)
    ping.close()


def test_ping_callback_returning_disable_pauses_until_enabled(loop: EventLoop[Any]) -> None:
    """A ping callback returning DISABLE gets nothing more until enable(); a ping made while
    disabled arrives then."""
    ping, source = make_ping()
    events: list[Any] = []
    actions = [PostAction.DISABLE, None]
    token = loop.handle().insert_source(
        source, lambda e, m, d: (events.append(e), actions.pop(0))[1]
    )

    ping.ping()
    loop.dispatch(0, None)
    ping.ping()
    loop.dispatch(0, None)
    assert events == [None]

    loop.handle().enable(token)
    loop.dispatch(0, None)
    assert events == [None, None]
    ping.close()


def test_ping_callback_returning_garbage_is_a_type_error(loop: EventLoop[Any]) -> None:
    """A ping callback returning something that is not a PostAction raises TypeError."""
    ping, source = make_ping()
    loop.handle().insert_source(source, returning("remove", []))
    ping.ping()

    with pytest.raises(TypeError, match="PingSource callback must return a PostAction"):
        loop.dispatch(0, None)
    ping.close()


# -- channel ---------------------------------------------------------------------------------


def test_channel_callback_returning_disable_keeps_the_rest_queued(loop: EventLoop[Any]) -> None:
    """A channel callback returning DISABLE stops the deliveries; the messages left arrive,
    in order, once the channel is enabled again."""
    sender, chan = channel()
    events: list[Any] = []
    actions: list[PostAction | None] = [PostAction.DISABLE]
    token = loop.handle().insert_source(
        chan, lambda e, m, d: (events.append(e), actions.pop(0) if actions else None)[1]
    )
    for i in range(3):
        sender.send(i)

    loop.dispatch(0, None)
    loop.dispatch(0, None)
    assert events == [Msg(0)]

    loop.handle().enable(token)
    loop.dispatch(0, None)
    assert events == [Msg(0), Msg(1), Msg(2)]
    sender.close()


def test_channel_callback_returning_remove_removes_it(loop: EventLoop[Any]) -> None:
    """A channel callback returning REMOVE removes the channel; the messages left stay in it
    (``try_recv`` gets them) and are delivered if it is inserted again."""
    sender, chan = channel()
    events: list[Any] = []
    token = loop.handle().insert_source(chan, returning(PostAction.REMOVE, events))
    for i in range(3):
        sender.send(i)

    loop.dispatch(0, None)
    loop.dispatch(0, None)
    assert events == [Msg(0)]
    assert invalid(loop, token)

    loop.handle().insert_source(chan, returning(None, events))
    loop.dispatch(0, None)
    assert events == [Msg(0), Msg(1), Msg(2)]
    sender.close()


def test_channel_callback_returning_garbage_is_a_type_error(loop: EventLoop[Any]) -> None:
    """A channel callback returning something that is not a PostAction raises TypeError."""
    sender, chan = channel()
    loop.handle().insert_source(chan, returning(True, []))
    sender.send(1)

    with pytest.raises(TypeError, match="Channel callback must return a PostAction"):
        loop.dispatch(0, None)
    sender.close()


# -- executor --------------------------------------------------------------------------------


async def result(value: int) -> int:
    return value


def test_executor_callback_returning_disable_pauses_the_rest(loop: EventLoop[Any]) -> None:
    """An executor callback returning DISABLE stops stepping coroutines; those left run once
    the executor is enabled again."""
    ex: Executor[int]
    ex, scheduler = executor()
    events: list[Any] = []
    actions: list[PostAction | None] = [PostAction.DISABLE]
    token = loop.handle().insert_source(
        ex, lambda e, m, d: (events.append(e), actions.pop(0) if actions else None)[1]
    )
    scheduler.schedule(result(1))
    scheduler.schedule(result(2))

    loop.dispatch(0, None)
    loop.dispatch(0, None)
    assert events == [1]

    loop.handle().enable(token)
    loop.dispatch(0, None)
    assert events == [1, 2]
    ex.close()


def test_executor_callback_returning_remove_removes_it(loop: EventLoop[Any]) -> None:
    """An executor callback returning REMOVE removes the executor from the loop."""
    ex, scheduler = executor()
    events: list[Any] = []
    token = loop.handle().insert_source(ex, returning(PostAction.REMOVE, events))
    scheduler.schedule(result(1))
    scheduler.schedule(result(2))

    loop.dispatch(0, None)
    loop.dispatch(0, None)

    assert events == [1]
    assert invalid(loop, token)
    ex.close()


def test_executor_callback_returning_garbage_is_a_type_error(loop: EventLoop[Any]) -> None:
    """An executor callback returning something that is not a PostAction raises TypeError."""
    ex, scheduler = executor()
    loop.handle().insert_source(ex, returning(1, []))
    scheduler.schedule(result(1))

    with pytest.raises(TypeError, match="Executor callback must return a PostAction"):
        loop.dispatch(0, None)
    ex.close()


# -- FdSource ---------------------------------------------------------------------------------


def test_generic_callback_returning_remove_or_disable_is_applied(loop: EventLoop[Any]) -> None:
    """A FdSource callback's DISABLE pauses it until enable(), and its REMOVE removes it."""
    r, w = os.pipe()
    try:
        os.write(w, b"x")  # stays readable: level-triggered, never drained
        events: list[Any] = []
        actions = [PostAction.DISABLE, PostAction.REMOVE]
        token = loop.handle().insert_source(
            FdSource(r, Interest.READ, Mode.LEVEL),
            lambda e, m, d: (events.append(e.readable), actions.pop(0))[1],
        )

        loop.dispatch(0, None)
        loop.dispatch(0, None)
        assert events == [True]
        loop.handle().enable(token)
        loop.dispatch(0, None)
        loop.dispatch(0, None)
        assert events == [True, True]
        assert invalid(loop, token)
    finally:
        os.close(r)
        os.close(w)


# -- timer -----------------------------------------------------------------------------------


def test_timer_callback_returning_a_post_action_is_refused(loop: EventLoop[Any]) -> None:
    """A timer callback says what to do with a TimeoutAction; a PostAction is refused with
    a TypeError that names TimeoutAction.drop()."""
    loop.handle().insert_source(Timer.immediate(), returning(PostAction.REMOVE, []))

    with pytest.raises(TypeError, match=r"TimeoutAction\.drop\(\)"):
        loop.dispatch(0, None)


# -- signals (a child process: signal masks are process-wide) --------------------------------


@pytest.mark.subprocess
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signalfd is Linux-only")
def test_signals_callback_returning_disable_or_remove_is_applied() -> None:
    """A Signals callback's DISABLE pauses it (the second pending signal waits in the
    kernel until enable()), its REMOVE removes it, and garbage is a TypeError."""
    code = """
        import os, signal
        from asyncmp.calloop import EventLoop, InvalidToken, PostAction, Signals

        with EventLoop() as ev:
            events, actions = [], [PostAction.DISABLE, PostAction.REMOVE]
            def callback(event, meta, data):
                events.append(event.signal())
                return actions.pop(0)
            source = Signals([signal.SIGUSR1, signal.SIGUSR2])
            token = ev.handle().insert_source(source, callback)
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGUSR2)
            ev.dispatch(5, None)
            ev.dispatch(0, None)
            assert len(events) == 1, events
            ev.handle().enable(token)
            ev.dispatch(5, None)
            assert sorted(events) == [signal.SIGUSR1, signal.SIGUSR2], events
            try:
                ev.handle().enable(token)
            except InvalidToken:
                pass
            else:
                raise AssertionError("REMOVE did not remove the Signals source")
            source.close()

            source = Signals([signal.SIGUSR1])
            ev.handle().insert_source(source, lambda e, m, d: "garbage")
            os.kill(os.getpid(), signal.SIGUSR1)
            try:
                ev.dispatch(5, None)
            except TypeError as exc:
                assert "Signals callback must return a PostAction" in str(exc), exc
            else:
                raise AssertionError("a garbage return value was ignored")
            source.close()
        print("ok")
        """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr
