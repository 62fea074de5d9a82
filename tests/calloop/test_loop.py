"""EventLoop, LoopHandle, LoopSignal, idles and tokens: the dispatch steps and behaviours
31-50 of docs/design.md ("calloop")."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from asyncmp import Closed as ClosedError
from asyncmp.calloop import (
    EventLoop,
    FdSource,
    InsertError,
    Interest,
    InvalidToken,
    LoopHandle,
    Mode,
    Poll,
    PostAction,
    Readiness,
    RegistrationToken,
    Timer,
    Token,
    TokenFactory,
    make_ping,
)


@pytest.fixture
def loop() -> Iterator[EventLoop[Any]]:
    with EventLoop() as ev:
        yield ev


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def readable_pipe() -> tuple[int, int]:
    r, w = os.pipe()
    os.write(w, b"x")
    return r, w


def recorder(name: str, ret: PostAction | None = None) -> Callable[..., PostAction | None]:
    def cb(event: Any, meta: Any, data: list[Any]) -> PostAction | None:
        data.append(name)
        return ret

    return cb


# -- idles (31, 32) ---------------------------------------------------------------------


def test_idle_runs_once_cancelled_never_dropped_still_runs(loop: EventLoop[Any]) -> None:
    """Item 31: an idle runs once; a cancelled one never; dropping the Idle does not cancel."""
    h = loop.handle()
    data: list[str] = []
    h.insert_idle(lambda d: d.append("kept"))  # the Idle object is dropped at once
    h.insert_idle(lambda d: d.append("cancelled")).cancel()

    loop.dispatch(0, data)
    loop.dispatch(0, data)

    assert data == ["kept"]


def test_idle_inserted_by_an_idle_runs_at_the_next_dispatch(loop: EventLoop[Any]) -> None:
    """Item 32: an idle inserted while idles run waits for the next dispatch."""
    h = loop.handle()
    data: list[str] = []
    h.insert_idle(lambda d: (d.append("first"), h.insert_idle(lambda d2: d2.append("second"))))

    loop.dispatch(0, data)
    assert data == ["first"]

    loop.dispatch(0, data)
    assert data == ["first", "second"]


def test_idle_that_raises_keeps_the_rest_for_the_next_dispatch(loop: EventLoop[Any]) -> None:
    """An exception from an idle propagates and the idles after it still run later."""
    h = loop.handle()
    data: list[str] = []

    def boom(d: list[str]) -> None:
        raise ValueError("boom")

    h.insert_idle(boom)
    h.insert_idle(lambda d: d.append("after"))

    with pytest.raises(ValueError, match="boom"):
        loop.dispatch(0, data)
    assert data == []
    loop.dispatch(0, data)
    assert data == ["after"]


# -- dispatch order (the dispatch steps) -------------------------------------------------


def test_dispatch_order_fd_events_then_timers_then_idles(
    loop: EventLoop[Any], pipe: tuple[int, int]
) -> None:
    """Dispatch steps 2 and 5: polled fd events come before due timers, and idles run after
    every event."""
    r, w = pipe
    h = loop.handle()
    data: list[str] = []
    h.insert_idle(lambda d: d.append("idle"))
    h.insert_source(Timer.immediate(), recorder("timer"))
    h.insert_source(FdSource(r, Interest.READ, Mode.ONESHOT), recorder("fd"))
    os.write(w, b"x")

    loop.dispatch(0, data)

    assert data == ["fd", "timer", "idle"]


# -- tokens (41) ------------------------------------------------------------------------


def test_token_stale_after_remove_and_reused_slot_gets_new_token(loop: EventLoop[Any]) -> None:
    """Item 41: a stale token raises InvalidToken, remove is a no-op, a reused slot differs."""
    h = loop.handle()
    ping, src = make_ping()
    token = h.insert_source(src, recorder("a"))
    h.remove(token)

    for op in (h.enable, h.disable, h.update):
        with pytest.raises(InvalidToken):
            op(token)
    h.remove(token)  # no-op
    ping2, src2 = make_ping()
    token2 = h.insert_source(src2, recorder("b"))

    assert token2 != token
    assert token2._slot == token._slot
    data: list[str] = []
    ping.ping()  # the removed source must not be reached through the reused slot
    ping2.ping()
    loop.dispatch(0, data)
    assert data == ["b"]
    ping.close()
    ping2.close()


def test_token_is_hashable_and_not_constructible() -> None:
    """Tokens are dict keys, and users cannot forge one."""
    with pytest.raises(TypeError):
        RegistrationToken(0, 0)
    t = RegistrationToken._create(1, 2)

    assert {t: 1}[RegistrationToken._create(1, 2)] == 1


def test_token_wrong_type_is_a_type_error(loop: EventLoop[Any]) -> None:
    """A non-token passed to enable is refused with TypeError."""
    with pytest.raises(TypeError):
        loop.handle().enable(3)  # type: ignore[arg-type]


# -- removal and disabling from callbacks (42, 43, 44) ----------------------------------


def test_remove_own_token_in_callback_stops_calls_and_unregisters(
    loop: EventLoop[Any], pipe: tuple[int, int]
) -> None:
    """Item 42: a callback removing its own source is never called again; its fd is freed after."""
    r, w = pipe
    h = loop.handle()
    os.write(w, b"x")
    calls: list[str] = []
    token: RegistrationToken | None = None

    def cb(readiness: Readiness, fd: int, data: list[str]) -> None:
        data.append("called")
        assert token is not None
        h.remove(token)

    token = h.insert_source(FdSource(r, Interest.READ, Mode.LEVEL), cb)
    loop.dispatch(0, calls)
    loop.dispatch(0, calls)  # the pipe is still readable (level mode)

    assert calls == ["called"]
    # The fd is unregistered: inserting it again succeeds.
    h.insert_source(FdSource(r, Interest.READ, Mode.LEVEL), recorder("again"))
    loop.dispatch(0, calls)
    assert calls == ["called", "again"]


def test_disable_own_token_in_callback_applies_after_continue(
    loop: EventLoop[Any], pipe: tuple[int, int]
) -> None:
    """Item 43: disable(own) + CONTINUE leaves the source disabled; enable resumes it."""
    r, w = pipe
    h = loop.handle()
    os.write(w, b"x")
    token: RegistrationToken | None = None

    def cb(readiness: Readiness, fd: int, data: list[str]) -> PostAction:
        data.append("called")
        assert token is not None
        h.disable(token)
        return PostAction.CONTINUE

    token = h.insert_source(FdSource(r, Interest.READ, Mode.LEVEL), cb)
    calls: list[str] = []
    loop.dispatch(0, calls)
    loop.dispatch(0, calls)
    assert calls == ["called"]

    h.enable(token)
    loop.dispatch(0, calls)
    assert calls == ["called", "called"]


def test_disable_own_token_but_returned_remove_wins(
    loop: EventLoop[Any], pipe: tuple[int, int]
) -> None:
    """Item 43: a returned REMOVE beats a pending disable: the token is gone."""
    r, w = pipe
    h = loop.handle()
    os.write(w, b"x")
    token: RegistrationToken | None = None

    def cb(readiness: Readiness, fd: int, data: list[str]) -> PostAction:
        assert token is not None
        h.disable(token)
        return PostAction.REMOVE

    token = h.insert_source(FdSource(r, Interest.READ, Mode.LEVEL), cb)
    loop.dispatch(0, [])

    with pytest.raises(InvalidToken):
        h.enable(token)


def test_enable_own_source_from_its_callback_is_refused(loop: EventLoop[Any]) -> None:
    """enable() of the running source raises RuntimeError (calloop forbids it)."""
    h = loop.handle()
    tokens: list[RegistrationToken] = []

    def cb(deadline: float, meta: None, data: Any) -> None:
        h.enable(tokens[0])

    tokens.append(h.insert_source(Timer.immediate(), cb))

    with pytest.raises(RuntimeError, match="enable itself"):
        loop.dispatch(0, None)


def test_callback_removing_another_ready_source_prevents_its_call(loop: EventLoop[Any]) -> None:
    """Item 44: of two sources ready in one poll, the one removed by the other is not called."""
    h = loop.handle()
    pipes = [readable_pipe(), readable_pipe()]
    tokens: list[RegistrationToken] = []

    def make_cb(other: int) -> Callable[..., None]:
        def cb(readiness: Readiness, fd: int, data: list[int]) -> None:
            data.append(fd)
            h.remove(tokens[other])

        return cb

    for i, (r, _) in enumerate(pipes):
        tokens.append(h.insert_source(FdSource(r, Interest.READ, Mode.LEVEL), make_cb(1 - i)))
    calls: list[int] = []
    loop.dispatch(0, calls)

    assert len(calls) == 1  # whichever ran first removed the other before its turn
    for r, w in pipes:
        os.close(r)
        os.close(w)


def test_callback_disabling_another_ready_source_drops_its_polled_event(
    loop: EventLoop[Any],
) -> None:
    """Dispatch step 4: disabling another source in a callback drops its event already polled."""
    h = loop.handle()
    pipes = [readable_pipe(), readable_pipe()]
    tokens: list[RegistrationToken] = []

    def make_cb(other: int) -> Callable[..., None]:
        def cb(readiness: Readiness, fd: int, data: list[int]) -> None:
            data.append(fd)
            h.disable(tokens[other])

        return cb

    for i, (r, _) in enumerate(pipes):
        tokens.append(h.insert_source(FdSource(r, Interest.READ, Mode.LEVEL), make_cb(1 - i)))
    calls: list[int] = []
    loop.dispatch(0, calls)

    assert len(calls) == 1
    for r, w in pipes:
        os.close(r)
        os.close(w)


# -- errors (45) ------------------------------------------------------------------------


def test_callback_exception_aborts_dispatch_and_skips_idles(loop: EventLoop[Any]) -> None:
    """Item 45: a raising callback propagates from dispatch; later events and idles wait."""
    h = loop.handle()
    pipes = [readable_pipe(), readable_pipe()]

    def cb(readiness: Readiness, fd: int, data: list[Any]) -> None:
        data.append(fd)
        os.read(fd, 1)
        raise OSError(f"failed on {fd}")

    for r, _ in pipes:
        h.insert_source(FdSource(r, Interest.READ, Mode.LEVEL), cb)
    h.insert_idle(lambda d: d.append("idle"))
    calls: list[Any] = []

    with pytest.raises(OSError, match="failed on"):
        loop.dispatch(0, calls)
    assert len(calls) == 1  # the second ready source was skipped, no idle ran

    with pytest.raises(OSError, match="failed on"):
        loop.dispatch(0, calls)
    assert len(calls) == 2
    assert calls[0] != calls[1]
    loop.dispatch(0, calls)
    assert calls[2] == "idle"
    for r, w in pipes:
        os.close(r)
        os.close(w)


def test_insert_source_failure_returns_the_source(loop: EventLoop[Any]) -> None:
    """InsertError carries the rejected source, with the OS error as its cause."""
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    source = FdSource(r, Interest.READ, Mode.LEVEL)

    with pytest.raises(InsertError) as info:
        loop.handle().insert_source(source, recorder("never"))
    assert info.value.source is source
    assert isinstance(info.value.__cause__, OSError)


def test_insert_source_rejects_non_sources_and_non_callables(loop: EventLoop[Any]) -> None:
    """Bad input to insert_source is a TypeError with a message."""
    h = loop.handle()
    with pytest.raises(TypeError, match="not an EventSource"):
        h.insert_source(object(), recorder("x"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        h.insert_source(Timer.immediate(), 3)  # type: ignore[arg-type]


def test_dispatch_from_a_callback_is_refused(loop: EventLoop[Any]) -> None:
    """Dispatching from inside a callback raises RuntimeError instead of re-entering."""
    loop.handle().insert_idle(lambda d: loop.dispatch(0, d))

    with pytest.raises(RuntimeError, match="already dispatching"):
        loop.dispatch(0, None)


def test_dispatch_bad_timeout_is_refused(loop: EventLoop[Any]) -> None:
    """A negative or non-numeric timeout is a clear error."""
    with pytest.raises(ValueError):
        loop.dispatch(-1, None)
    with pytest.raises(TypeError):
        loop.dispatch("1", None)  # type: ignore[arg-type]


def test_closed_loop_raises_closed() -> None:
    """A closed loop refuses dispatch and inserts with asyncmp.Closed; close is idempotent."""
    ev: EventLoop[Any] = EventLoop()
    h = ev.handle()
    ev.close()
    ev.close()

    with pytest.raises(ClosedError):
        ev.dispatch(0, None)
    with pytest.raises(ClosedError):
        h.insert_source(Timer.immediate(), recorder("x"))
    assert "closed" in repr(ev)


# -- run, stop, wakeup (46, 47) ---------------------------------------------------------


def test_run_returns_after_stop_and_wakeup_from_another_thread(loop: EventLoop[Any]) -> None:
    """Item 46: stop()+wakeup() from a thread ends run(None); cb runs after the last dispatch."""
    signal = loop.get_signal()
    first = threading.Event()
    stopped = threading.Event()
    seen: list[bool] = []

    def cb(data: Any) -> None:
        seen.append(stopped.is_set())
        first.set()

    def stopper() -> None:
        first.wait(5)
        stopped.set()
        signal.stop()
        signal.wakeup()

    loop.handle().insert_idle(lambda d: None)  # the first dispatch returns at once
    signal.wakeup()
    t = threading.Thread(target=stopper)
    t.start()
    loop.run(None, None, cb)
    t.join(5)

    assert seen[0] is False
    assert seen[-1] is True  # cb ran after the dispatch in which stop() took effect


def test_stop_before_run_is_discarded(loop: EventLoop[Any]) -> None:
    """Item 47: a stop() issued before run() is ignored."""
    signal = loop.get_signal()
    signal.stop()
    count: list[int] = []

    def cb(data: Any) -> None:
        count.append(1)
        if len(count) == 3:
            signal.stop()

    loop.run(0, None, cb)

    assert len(count) == 3


def test_wakeup_makes_a_dispatch_without_timeout_return(loop: EventLoop[Any]) -> None:
    """wakeup() from another thread makes dispatch(None) return (also if sent before it polls)."""
    t = threading.Thread(target=loop.get_signal().wakeup)
    t.start()
    t.join(5)

    loop.dispatch(None, None)  # would hang without the wake-up


@pytest.mark.parametrize("timeout", [math.inf, 1e12])
def test_an_infinite_or_huge_timeout_waits_like_none(loop: EventLoop[Any], timeout: float) -> None:
    """``inf`` and numbers past what epoll can take are timeouts like any other (no
    OverflowError): the dispatch waits until something happens, here a wake-up."""
    loop.get_signal().wakeup()
    loop.dispatch(timeout, None)


# -- sources inserted in callbacks (48) -------------------------------------------------


def test_source_inserted_in_callback_fires_at_next_dispatch(
    loop: EventLoop[Any], pipe: tuple[int, int]
) -> None:
    """Item 48: a source inserted in a callback with its event pending fires next dispatch."""
    r, w = pipe
    os.write(w, b"x")
    h = loop.handle()

    def cb(deadline: float, meta: None, data: list[str]) -> None:
        data.append("timer")
        h.insert_source(FdSource(r, Interest.READ, Mode.ONESHOT), recorder("fd"))

    h.insert_source(Timer.immediate(), cb)
    data: list[str] = []
    loop.dispatch(0, data)
    assert data == ["timer"]

    loop.dispatch(0, data)
    assert data == ["timer", "fd"]


# -- lifecycle hooks (50) ---------------------------------------------------------------


class _Lifecycle:
    """A custom source with a pipe and both optional hooks; it records what it sees."""

    def __init__(self, fd: int, log: list[Any]) -> None:
        self.fd = fd
        self.log = log
        self.token: Token | None = None
        self.synthetic: Token | None = None
        self.want_synthetic = True

    def register(self, poll: Poll, token_factory: TokenFactory) -> None:
        self.token = token_factory.token()
        self.synthetic = token_factory.token()
        poll.register(self.fd, Interest.READ, Mode.LEVEL, self.token)

    def reregister(self, poll: Poll, token_factory: TokenFactory) -> None:
        self.unregister(poll)
        self.register(poll, token_factory)

    def unregister(self, poll: Poll) -> None:
        poll.unregister(self.fd)

    def before_sleep(self) -> tuple[Readiness, Token] | None:
        self.log.append("before_sleep")
        if self.want_synthetic:
            self.want_synthetic = False
            assert self.synthetic is not None
            return Readiness(readable=True), self.synthetic
        return None

    def before_handle_events(self, events: list[tuple[Readiness, Token]]) -> None:
        self.log.append(("before_handle_events", len(events)))

    def process_events(
        self, readiness: Readiness, token: Token, callback: Callable[[str, None], object]
    ) -> PostAction:
        callback("synthetic" if token == self.synthetic else "real", None)
        return PostAction.CONTINUE


def test_before_sleep_synthetic_event_skips_the_wait_and_comes_first(
    loop: EventLoop[Any], pipe: tuple[int, int]
) -> None:
    """Item 50: a before_sleep event makes dispatch(None) not block, and is handled first."""
    r, w = pipe
    log: list[Any] = []
    h = loop.handle()
    h.insert_source(_Lifecycle(r, log), lambda ev, meta, data: data.append(ev))
    watchdog = threading.Timer(5, loop.get_signal().wakeup)
    watchdog.start()

    loop.dispatch(None, log)  # returns at once: the synthetic event sets the timeout to 0
    watchdog.cancel()

    assert log == ["before_sleep", ("before_handle_events", 0), "synthetic"]
    os.write(w, b"x")
    log.clear()
    loop.dispatch(0, log)
    assert log == ["before_sleep", ("before_handle_events", 1), "real"]


def test_synthetic_event_is_handled_before_polled_events(
    loop: EventLoop[Any], pipe: tuple[int, int]
) -> None:
    """Dispatch step 4: a before_sleep event comes before the events polled in the same dispatch."""
    r, w = pipe
    log: list[Any] = []
    loop.handle().insert_source(_Lifecycle(r, log), lambda ev, meta, data: data.append(ev))
    os.write(w, b"x")

    loop.dispatch(0, log)

    assert log == ["before_sleep", ("before_handle_events", 1), "synthetic", "real"]


class _Removing(_Lifecycle):
    """A lifecycle source that removes itself at its first event (returns REMOVE)."""

    def __init__(self, fd: int, log: list[Any]) -> None:
        super().__init__(fd, log)
        self.want_synthetic = False

    def process_events(
        self, readiness: Readiness, token: Token, callback: Callable[[str, None], object]
    ) -> PostAction:
        return PostAction.REMOVE


def test_lifecycle_hooks_run_whichever_lifecycle_sources_come_and_go(
    loop: EventLoop[Any],
) -> None:
    """Dispatch steps 1 and 3 run the hooks of every lifecycle source present, and are
    skipped only while there is none: sources with hooks removed by ``remove``, by a
    returned ``REMOVE`` and by closing the loop leave the others' hooks running, and a
    new one inserted later gets its hooks at once."""
    pipes = [os.pipe() for _ in range(3)]
    try:
        first: list[Any] = []
        second: list[Any] = []
        h = loop.handle()
        quiet = _Lifecycle(pipes[0][0], first)
        quiet.want_synthetic = False
        tok1 = h.insert_source(quiet, lambda ev, meta, data: None)
        h.insert_source(_Removing(pipes[1][0], second), lambda ev, meta, data: None)
        h.insert_source(Timer.immediate(), lambda *a: None)  # no hooks: counts for nothing
        loop.dispatch(0, None)
        assert first == second == ["before_sleep", ("before_handle_events", 0)]
        h.remove(tok1)
        first.clear()
        second.clear()
        os.write(pipes[1][1], b"x")
        loop.dispatch(0, None)  # the second's event: it returns REMOVE
        assert first == []
        assert second == ["before_sleep", ("before_handle_events", 1)]
        second.clear()
        loop.dispatch(0, None)
        assert second == []
        assert loop._inner.lifecycles == 0
        third: list[Any] = []
        h.insert_source(_Lifecycle(pipes[2][0], third), lambda ev, meta, data: None)
        loop.dispatch(0, None)
        assert third == ["before_sleep", ("before_handle_events", 0)]  # and its synthetic
        loop.close()
        assert loop._inner.lifecycles == 0
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)


def test_post_action_or_combines_like_calloop() -> None:
    """PostAction a | b is a when equal, REREGISTER otherwise."""
    assert PostAction.DISABLE | PostAction.DISABLE is PostAction.DISABLE
    assert PostAction.CONTINUE | PostAction.REMOVE is PostAction.REREGISTER


def test_handles_are_not_constructible() -> None:
    """Loop-made handles cannot be built directly."""
    for cls in (LoopHandle, Poll, TokenFactory, Token):
        with pytest.raises(TypeError):
            cls()


class _StickyToken:
    """A custom source that, unlike the built-ins, keeps its token when unregistered."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.token: Token | None = None

    def register(self, poll: Poll, token_factory: TokenFactory) -> None:
        self.token = token_factory.token()
        poll.register(self.fd, Interest.READ, Mode.LEVEL, self.token)

    def reregister(self, poll: Poll, token_factory: TokenFactory) -> None:
        self.token = token_factory.token()
        poll.reregister(self.fd, Interest.READ, Mode.LEVEL, self.token)

    def unregister(self, poll: Poll) -> None:
        poll.unregister(self.fd)

    def process_events(
        self, readiness: Readiness, token: Token, callback: Callable[[int, None], object]
    ) -> None:
        callback(self.fd, None)


def test_disabled_custom_source_gets_no_already_polled_event(loop: EventLoop[Any]) -> None:
    """The loop itself drops events of a source disabled earlier in the same dispatch."""
    h = loop.handle()
    pipes = [readable_pipe(), readable_pipe()]
    tokens: list[RegistrationToken] = []

    def make_cb(other: int) -> Callable[..., None]:
        def cb(fd: int, meta: None, data: list[int]) -> None:
            data.append(fd)
            h.disable(tokens[other])

        return cb

    for i, (r, _) in enumerate(pipes):
        tokens.append(h.insert_source(_StickyToken(r), make_cb(1 - i)))
    calls: list[int] = []
    loop.dispatch(0, calls)

    assert len(calls) == 1
    for r, w in pipes:
        os.close(r)
        os.close(w)
