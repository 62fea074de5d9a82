"""The built-in sources: ping, channel, timer and FdSource (behaviours 33-40 and 49 of
docs/design.md, "calloop")."""

from __future__ import annotations

import gc
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import sniffio

from asyncmp import Closed as ClosedError, Disconnected, WouldBlock
from asyncmp._lowlevel._wake import ThreadWaiter
from asyncmp.calloop import (
    ChannelClosed,
    EventLoop,
    FdSource,
    Interest,
    InvalidToken,
    Mode,
    Msg,
    PostAction,
    Readiness,
    RegistrationToken,
    TimeoutAction,
    Timer,
    channel,
    make_ping,
    sync_channel,
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


def append_event(event: Any, meta: Any, data: list[Any]) -> None:
    data.append(event)


# -- ping (33, 34, 40) ------------------------------------------------------------------


def test_ping_many_pings_give_one_event(loop: EventLoop[Any]) -> None:
    """Item 33: three pings before a dispatch give one callback; the next dispatch gives none."""
    ping, source = make_ping()
    loop.handle().insert_source(source, append_event)
    for _ in range(3):
        ping.ping()
    events: list[Any] = []

    loop.dispatch(0, events)
    loop.dispatch(0, events)

    assert events == [None]
    ping.close()


def test_ping_from_another_thread_wakes_a_waiting_dispatch(loop: EventLoop[Any]) -> None:
    """A Ping works from any thread and wakes dispatch(None)."""
    ping, source = make_ping()
    loop.handle().insert_source(source, append_event)
    t = threading.Thread(target=ping.ping)
    t.start()
    events: list[Any] = []

    loop.dispatch(None, events)
    t.join(5)

    assert events == [None]


def test_ping_all_closed_without_pending_ping_removes_source_silently(
    loop: EventLoop[Any],
) -> None:
    """Item 34: when every Ping is closed, the source goes without a callback and stops waking."""
    ping, source = make_ping()
    clone = ping.clone()
    token = loop.handle().insert_source(source, append_event)
    ping.close()
    del clone  # garbage collection closes the last one
    gc.collect()
    events: list[Any] = []

    loop.dispatch(0, events)

    assert events == []
    with pytest.raises(InvalidToken):
        loop.handle().enable(token)
    start = time.monotonic()
    loop.dispatch(0.1, events)  # nothing is left to wake the poll early
    assert time.monotonic() - start >= 0.09
    assert events == []


def test_ping_pending_is_delivered_before_the_source_removes_itself(
    loop: EventLoop[Any],
) -> None:
    """A ping sent before the last Ping closes is still delivered, then the source is removed."""
    ping, source = make_ping()
    token = loop.handle().insert_source(source, append_event)
    ping.ping()
    ping.close()
    events: list[Any] = []

    loop.dispatch(0, events)

    assert events == [None]
    with pytest.raises(InvalidToken):
        loop.handle().update(token)


def test_ping_closed_handle_raises_closed() -> None:
    """ping() on a closed Ping raises asyncmp.Closed; pinging a gone source does nothing."""
    ping, source = make_ping()
    other = ping.clone()
    ping.close()
    with pytest.raises(ClosedError):
        ping.ping()
    source.close()

    other.ping()  # the source is gone: a no-op, not an error
    other.close()


def test_ping_disabled_source_delivers_after_enable(loop: EventLoop[Any]) -> None:
    """Item 40: a pinged, disabled source delivers nothing until enabled; then the ping arrives."""
    ping, source = make_ping()
    h = loop.handle()
    token = h.insert_source(source, append_event)
    h.disable(token)
    ping.ping()
    events: list[Any] = []

    loop.dispatch(0, events)
    assert events == []

    h.enable(token)
    loop.dispatch(0, events)
    assert events == [None]
    ping.close()


# -- channel (35, 36) -------------------------------------------------------------------


def test_channel_delivers_at_most_1024_per_dispatch(loop: EventLoop[Any]) -> None:
    """Item 35: 1025 queued messages arrive as 1024 in one dispatch and 1 in the next."""
    sender, chan = channel()
    loop.handle().insert_source(chan, append_event)
    for i in range(1025):
        sender.send(i)
    events: list[Any] = []

    loop.dispatch(0, events)
    assert len(events) == 1024

    loop.dispatch(0, events)
    assert events == [Msg(i) for i in range(1025)]
    sender.close()


def test_sync_channel_full_then_final_message_and_close(loop: EventLoop[Any]) -> None:
    """Item 36: a full sync_channel refuses try_send; a last message and close give Msg,
    ChannelClosed."""
    sender, chan = sync_channel(2)
    token = loop.handle().insert_source(chan, append_event)
    sender.try_send("a")
    sender.try_send("b")
    with pytest.raises(WouldBlock):
        sender.try_send("c")
    events: list[Any] = []
    loop.dispatch(0, events)
    assert events == [Msg("a"), Msg("b")]

    sender.try_send("c")
    sender.close()
    loop.dispatch(0, events)

    assert events == [Msg("a"), Msg("b"), Msg("c"), ChannelClosed()]
    with pytest.raises(InvalidToken):
        loop.handle().enable(token)


def test_channel_fifo_from_threads_and_closed_once(loop: EventLoop[Any]) -> None:
    """Messages from a thread arrive in order; ChannelClosed comes once after the last sender
    closes."""
    sender, chan = channel()
    loop.handle().insert_source(chan, append_event)

    def feed() -> None:
        with sender:
            for i in range(100):
                sender.send(i)

    t = threading.Thread(target=feed)
    t.start()
    t.join(5)
    events: list[Any] = []
    loop.dispatch(0, events)
    loop.dispatch(0, events)

    assert events == [*(Msg(i) for i in range(100)), ChannelClosed()]


def test_channel_send_after_channel_closed_raises_disconnected() -> None:
    """Sending to a closed (or collected) Channel raises asyncmp.Disconnected."""
    sender, chan = channel()
    chan.close()
    with pytest.raises(Disconnected):
        sender.send(1)

    sender2, chan2 = sync_channel(1)
    del chan2
    gc.collect()
    with pytest.raises(Disconnected):
        sender2.try_send(1)


def test_channel_closed_sender_raises_closed() -> None:
    """A closed sender raises asyncmp.Closed; its clones still work."""
    sender, chan = channel()
    clone = sender.clone()
    sender.close()
    with pytest.raises(ClosedError):
        sender.send(1)

    clone.send(2)
    assert chan.try_recv() == 2


def test_channel_try_recv_without_loop() -> None:
    """try_recv reads without a loop: WouldBlock when empty, Disconnected once senders are gone."""
    sender, chan = channel()
    with pytest.raises(WouldBlock):
        chan.try_recv()
    sender.send("x")
    sender.close()

    assert chan.try_recv() == "x"
    with pytest.raises(Disconnected):
        chan.try_recv()


def test_sync_channel_bad_bound() -> None:
    """A bound must be an int >= 1."""
    with pytest.raises(ValueError):
        sync_channel(0)
    with pytest.raises(TypeError):
        sync_channel(1.5)  # type: ignore[arg-type]


def test_sync_channel_blocking_send_waits_for_room(loop: EventLoop[Any]) -> None:
    """blocking.send from a thread waits while full and completes once the loop drains."""
    sender, chan = sync_channel(1)
    loop.handle().insert_source(chan, append_event)
    sender.try_send(1)
    done = threading.Event()

    def send() -> None:
        sender.blocking.send(2, timeout=5)
        done.set()

    t = threading.Thread(target=send)
    t.start()
    events: list[Any] = []
    while not done.is_set():  # each dispatch drains what is queued and wakes the sender
        loop.dispatch(0.05, events)
    t.join(5)
    loop.dispatch(0, events)

    assert events == [Msg(1), Msg(2)]


def test_sync_channel_blocking_send_times_out_without_queueing() -> None:
    """blocking.send on a full channel raises TimeoutError and queues nothing."""
    sender, chan = sync_channel(1)
    sender.try_send(1)

    with pytest.raises(TimeoutError):
        sender.blocking.send(2, timeout=0.01)
    assert chan.try_recv() == 1
    with pytest.raises(WouldBlock):
        chan.try_recv()


async def test_sync_channel_async_send_waits_for_room() -> None:
    """await send waits while full and completes after the loop took a message."""
    sender, chan = sync_channel(1)
    with EventLoop() as ev:
        ev.handle().insert_source(chan, append_event)
        sender.try_send(1)
        with pytest.raises(RuntimeError):
            sender.blocking.send(2)  # this thread runs an event loop
        done = anyio.Event()

        async def send() -> None:
            await sender.send(2)
            done.set()

        events: list[Any] = []
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(send)
                await anyio.wait_all_tasks_blocked()
                assert not done.is_set()
                ev.dispatch(0, events)
                await done.wait()
        ev.dispatch(0, events)

    assert events == [Msg(1), Msg(2)]


async def test_sync_channel_cancelled_send_queues_nothing() -> None:
    """A cancelled await send leaves nothing queued."""
    sender, chan = sync_channel(1)
    sender.try_send(1)
    with anyio.move_on_after(0.01):
        await sender.send(2)

    assert chan.try_recv() == 1
    with pytest.raises(WouldBlock):
        chan.try_recv()


def test_channel_callback_that_raises_leaves_the_rest_deliverable(loop: EventLoop[Any]) -> None:
    """A channel callback that raises loses nothing and stalls nothing: the messages left
    arrive at the next dispatch, without another send."""
    sender, chan = channel()
    events: list[Any] = []

    def callback(event: Any, meta: Any, data: Any) -> None:
        events.append(event)
        if event == Msg(0):
            raise ValueError("boom")

    loop.handle().insert_source(chan, callback)
    for i in range(3):
        sender.send(i)

    with pytest.raises(ValueError, match="boom"):
        loop.dispatch(0, None)
    loop.dispatch(0, None)

    assert events == [Msg(0), Msg(1), Msg(2)]
    sender.close()


async def test_sync_channel_send_that_raises_queued_nothing() -> None:
    """``await send`` in an already-cancelled scope either queues the value and returns
    (asyncio: no checkpoint) or raises the cancel having queued nothing (trio: the cancel
    is checked before queuing); never both."""
    sender, chan = sync_channel(2)
    sent = False

    with anyio.CancelScope() as scope:
        scope.cancel()
        await sender.send("x")
        sent = True

    queued = []
    while True:
        try:
            queued.append(chan.try_recv())
        except WouldBlock:
            break
    assert queued == (["x"] if sent else [])
    if sniffio.current_async_library() == "trio":
        assert not sent  # trio's convention: a send is a checkpoint, even with room
    sender.close()


def _interrupt_first_wait(
    monkeypatch: pytest.MonkeyPatch, during: Any = lambda: None
) -> threading.Event:
    """Make the first ``ThreadWaiter.wait`` run *during* and raise KeyboardInterrupt (a
    Ctrl-C in the wait); later waits set the returned event and then wait normally."""
    real = ThreadWaiter.wait
    calls: list[ThreadWaiter] = []
    later_wait = threading.Event()

    def wait(self: ThreadWaiter, timeout: float | None) -> bool:
        calls.append(self)
        if len(calls) == 1:
            during()
            raise KeyboardInterrupt
        later_wait.set()
        return real(self, timeout)

    monkeypatch.setattr(ThreadWaiter, "wait", wait)
    return later_wait


class SendThread:
    """``sender.blocking.send(value)`` (no timeout) on a thread of its own; a send still
    blocked at `finish` is released by closing the channel."""

    def __init__(self, sender: Any, chan: Any, value: Any) -> None:
        self.chan = chan
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(sender, value))
        self.thread.start()

    def _run(self, sender: Any, value: Any) -> None:
        try:
            sender.blocking.send(value)
        except Disconnected:
            return  # released by finish(): the send never got its place
        self.done.set()

    def finish(self) -> bool:
        """Whether the send completed (bounded: 5 s); then the thread is ended either way."""
        completed = self.done.wait(5)
        if not completed:
            self.chan.close()  # wakes every waiting sender, to raise Disconnected
        self.thread.join(5)
        return completed


def test_sync_channel_interrupted_blocking_send_leaves_no_waiter_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A blocking send interrupted in its wait (KeyboardInterrupt) queues nothing and leaves
    as a timeout does: the next freed place goes to the sender that waits now."""
    later_wait = _interrupt_first_wait(monkeypatch)
    sender, chan = sync_channel(1)
    sender.try_send("a")

    with pytest.raises(KeyboardInterrupt):
        sender.blocking.send("interrupted", timeout=5)
    other = SendThread(sender, chan, "b")
    assert later_wait.wait(5)
    assert chan.try_recv() == "a"  # frees the one place

    assert other.finish()
    assert chan.try_recv() == "b"
    sender.close()


def test_sync_channel_send_interrupted_after_its_wake_up_passes_it_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A blocking send interrupted just after a freed place was handed to it passes the
    place on to the next waiting sender."""
    sender, chan = sync_channel(1)
    sender.try_send("a")
    others: list[SendThread] = []

    def during() -> None:
        # Another sender waits behind us, then a place is freed and handed to us (oldest).
        others.append(SendThread(sender, chan, "b"))
        assert later_wait.wait(5)
        assert chan.try_recv() == "a"

    later_wait = _interrupt_first_wait(monkeypatch, during)

    with pytest.raises(KeyboardInterrupt):
        sender.blocking.send("interrupted", timeout=5)

    assert others[0].finish()
    assert chan.try_recv() == "b"
    sender.close()


def test_sync_channel_place_for_a_task_of_a_closed_loop_goes_to_the_next_sender(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sending task whose event loop was closed (the task never cancelled) cannot take a
    freed place: it goes to the next waiting sender instead of being lost."""
    import asyncio

    sender, chan = sync_channel(1)
    sender.try_send("a")
    loop = asyncio.new_event_loop()
    task = loop.create_task(sender.send("gone"))
    loop.run_until_complete(asyncio.sleep(0))  # one step: the task runs until it parks
    assert len(chan._state.room_waiters) == 1
    loop.close()
    task._log_destroy_pending = False  # type: ignore[attr-defined]  # its loop is gone

    real = ThreadWaiter.wait
    waiting = threading.Event()

    def wait(self: ThreadWaiter, timeout: float | None) -> bool:
        waiting.set()  # the other sender is registered
        return real(self, timeout)

    monkeypatch.setattr(ThreadWaiter, "wait", wait)
    other = SendThread(sender, chan, "b")
    assert waiting.wait(5)
    assert chan.try_recv() == "a"  # frees the place, handed to the oldest: the gone task

    assert other.finish()
    assert chan.try_recv() == "b"
    sender.close()


# -- timers (37, 38, 39) ----------------------------------------------------------------


def test_timer_fires_only_when_due_with_its_scheduled_deadline(loop: EventLoop[Any]) -> None:
    """Item 37: dispatch(0) before the deadline does not fire; a longer dispatch does, with it."""
    timer = Timer.from_duration(0.5)
    deadline = timer.current_deadline()
    loop.handle().insert_source(timer, append_event)
    events: list[Any] = []

    loop.dispatch(0, events)
    assert events == []

    loop.dispatch(1.0, events)
    assert events == [deadline]


def test_timer_set_deadline_and_set_duration_take_effect_on_update(loop: EventLoop[Any]) -> None:
    """set_deadline / set_duration change when a timer fires, once the loop (re)registers it
    (update(token), or inserting it); the event is the new deadline."""
    timer = Timer.from_duration(3600)
    h = loop.handle()
    token = h.insert_source(timer, append_event)
    events: list[Any] = []
    past = time.monotonic() - 1
    timer.set_deadline(past)
    assert timer.current_deadline() == past
    h.update(token)
    loop.dispatch(0, events)
    assert events == [past]

    later = Timer.from_duration(3600)
    later.set_duration(0)  # before it is inserted: the insertion registers it
    deadline = later.current_deadline()
    assert deadline is not None
    assert deadline <= time.monotonic()
    h.insert_source(later, append_event)
    loop.dispatch(0, events)
    assert events == [past, deadline]


def test_timer_to_duration_rearms_and_drop_removes(loop: EventLoop[Any]) -> None:
    """Item 38: a timer returning to_duration(d) fires once per dispatch(d + ε); drop removes it."""
    count: list[float] = []

    def cb(deadline: float, meta: None, data: Any) -> TimeoutAction:
        count.append(deadline)
        return TimeoutAction.to_duration(0.05) if len(count) < 3 else TimeoutAction.drop()

    token = loop.handle().insert_source(Timer.immediate(), cb)
    for n in (1, 2, 3):
        loop.dispatch(0.06, None)
        assert len(count) == n

    with pytest.raises(InvalidToken):
        loop.handle().enable(token)


def test_timer_to_instant_is_drift_free(loop: EventLoop[Any]) -> None:
    """Rearming to_instant(deadline + period) keeps the schedule: events are exact multiples."""
    start = time.monotonic()
    seen: list[float] = []

    def cb(deadline: float, meta: None, data: Any) -> TimeoutAction | None:
        seen.append(deadline)
        return TimeoutAction.to_instant(deadline + 0.01) if len(seen) < 4 else None

    loop.handle().insert_source(Timer.from_deadline(start), cb)
    while len(seen) < 4:
        loop.dispatch(1, None)

    expected = [start]
    for _ in range(3):
        expected.append(expected[-1] + 0.01)
    assert seen == expected


def test_timer_infinite_never_fires_and_does_not_delay_others(loop: EventLoop[Any]) -> None:
    """Item 39: an infinite duration never fires and does not hold back another timer."""
    never = Timer.from_duration(math.inf)
    assert never.current_deadline() is None
    h = loop.handle()
    h.insert_source(never, lambda *a: a[2].append("never"))
    h.insert_source(Timer.immediate(), lambda *a: a[2].append("now"))
    events: list[str] = []

    loop.dispatch(5, events)
    loop.dispatch(0, events)

    assert events == ["now"]


def test_timer_enabled_after_its_deadline_fires_at_next_dispatch(loop: EventLoop[Any]) -> None:
    """A timer disabled until after its deadline fires at the first dispatch after enable."""
    h = loop.handle()
    token = h.insert_source(Timer.from_deadline(time.monotonic()), append_event)
    h.disable(token)
    events: list[Any] = []
    loop.dispatch(0, events)
    assert events == []

    h.enable(token)
    loop.dispatch(0, events)
    assert len(events) == 1


def test_timer_cancelled_entries_do_not_grow_the_heap(loop: EventLoop[Any]) -> None:
    """Disabling and enabling a timer many times keeps the poller's heap bounded (calloop's
    heap grew with every cancelled timer)."""
    h = loop.handle()
    token = h.insert_source(Timer.from_duration(3600), append_event)
    for _ in range(1000):
        h.disable(token)
        h.enable(token)

    assert len(loop._inner.poll._heap) <= 200


def test_timer_rearmed_every_period_keeps_its_token_and_one_heap_entry(
    loop: EventLoop[Any],
) -> None:
    """A timer re-armed by its callback (``to_duration``, ``to_instant``) or by
    ``update(token)`` while armed keeps one live entry in the heap and fires once per
    period, with events under a token equal to the one it registered with."""
    timer = Timer.immediate()
    seen: list[float] = []

    def cb(deadline: float, meta: None, data: Any) -> TimeoutAction:
        seen.append(deadline)
        if len(seen) % 2:
            return TimeoutAction.to_duration(0)
        return TimeoutAction.to_instant(time.monotonic())

    h = loop.handle()
    token = h.insert_source(timer, cb)
    registered = timer._token
    poll = loop._inner.poll
    for n in range(1, 51):
        loop.dispatch(0, None)
        assert len(seen) == n
        assert timer._token == registered
        assert len(poll._heap) == len(poll._timers) == 1
    timer.set_duration(3600)
    h.update(token)  # armed: the old entry goes, one new one comes
    assert timer._token == registered
    assert len(poll._timers) == 1
    loop.dispatch(0, None)
    assert len(seen) == 50


def test_timeout_action_validates_input() -> None:
    """TimeoutAction takes numbers; a negative duration is refused."""
    with pytest.raises(ValueError):
        TimeoutAction.to_duration(-1)
    with pytest.raises(TypeError):
        TimeoutAction.to_instant("soon")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TimeoutAction()
    assert TimeoutAction.to_duration(1) == TimeoutAction.to_duration(1.0)


# -- FdSource (49) -----------------------------------------------------------------------


def test_generic_level_fires_every_dispatch_until_drained(
    loop: EventLoop[Any], pipe: tuple[int, int]
) -> None:
    """Item 49: a LEVEL registration fires at each dispatch while data is unread."""
    r, w = pipe
    loop.handle().insert_source(FdSource(r, Interest.READ, Mode.LEVEL), append_event)
    os.write(w, b"xy")
    events: list[Readiness] = []

    loop.dispatch(0, events)
    loop.dispatch(0, events)
    assert events == [Readiness(readable=True)] * 2

    os.read(r, 2)
    loop.dispatch(0, events)
    assert len(events) == 2


def test_generic_oneshot_fires_once_until_update_or_reregister(
    loop: EventLoop[Any], pipe: tuple[int, int]
) -> None:
    """Item 49: a ONESHOT registration fires once, then again only after update/REREGISTER."""
    r, w = pipe
    h = loop.handle()
    rets: list[PostAction | None] = [None, PostAction.REREGISTER, None]

    def cb(readiness: Readiness, fd: int, data: list[int]) -> PostAction | None:
        data.append(fd)
        return rets.pop(0)

    token: RegistrationToken = h.insert_source(FdSource(r, Interest.READ, Mode.ONESHOT), cb)
    os.write(w, b"x")
    calls: list[int] = []
    loop.dispatch(0, calls)
    loop.dispatch(0, calls)
    assert calls == [r]

    h.update(token)
    loop.dispatch(0, calls)  # fires and returns REREGISTER
    loop.dispatch(0, calls)  # so it fires once more
    loop.dispatch(0, calls)
    assert calls == [r, r, r]


def test_generic_edge_fires_on_new_data_only(loop: EventLoop[Any], pipe: tuple[int, int]) -> None:
    """EDGE reports a transition once, not the data still unread."""
    r, w = pipe
    loop.handle().insert_source(FdSource(r, Interest.READ, Mode.EDGE), append_event)
    os.write(w, b"x")
    events: list[Readiness] = []
    loop.dispatch(0, events)
    loop.dispatch(0, events)
    assert len(events) == 1

    os.write(w, b"y")
    loop.dispatch(0, events)
    assert len(events) == 2


def test_generic_interest_change_takes_effect_on_update(
    loop: EventLoop[Any], pipe: tuple[int, int]
) -> None:
    """Changing .interest then update(token) switches what is reported."""
    _, w = pipe
    source = FdSource(w, Interest.EMPTY, Mode.LEVEL)
    h = loop.handle()
    token = h.insert_source(source, append_event)
    events: list[Readiness] = []
    loop.dispatch(0, events)
    assert events == []

    source.interest = Interest.WRITE
    h.update(token)
    loop.dispatch(0, events)
    assert events == [Readiness(writable=True)]
    assert source.get_ref() == w


def test_fd_source_interest_both_reports_readable_and_writable(
    loop: EventLoop[Any], pipe: tuple[int, int]
) -> None:
    """Interest.BOTH watches both directions: a socket pair end with data to read and room to
    write is reported readable and writable in one event."""
    a, b = socket.socketpair()
    with a, b:
        b.send(b"x")
        loop.handle().insert_source(FdSource(a, Interest.BOTH, Mode.LEVEL), append_event)
        events: list[Readiness] = []
        loop.dispatch(0, events)
        assert events == [Readiness(readable=True, writable=True)]


def test_generic_callback_gets_the_wrapped_object(
    loop: EventLoop[Any], pipe: tuple[int, int]
) -> None:
    """The metadata is the wrapped object (here a file object with fileno())."""
    r, w = pipe
    reader = os.fdopen(os.dup(r), "rb", buffering=0)
    source = FdSource(reader, Interest.READ, Mode.LEVEL)
    got: list[Any] = []
    token = loop.handle().insert_source(source, lambda rd, f, d: d.append(f.read(1)))
    os.write(w, b"z")

    loop.dispatch(0, got)

    assert got == [b"z"]
    with pytest.raises(RuntimeError):
        source.unwrap()
    loop.handle().remove(token)
    assert source.unwrap() is reader
    reader.close()


def test_generic_bad_input() -> None:
    """FdSource refuses bad fds, interests and modes with clear errors."""
    with pytest.raises(TypeError):
        FdSource("fd", Interest.READ, Mode.LEVEL)
    with pytest.raises(ValueError):
        FdSource(-1, Interest.READ, Mode.LEVEL)
    with pytest.raises(TypeError):
        FdSource(0, "read", Mode.LEVEL)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        FdSource(0, Interest.READ, "level")  # type: ignore[arg-type]


def test_generic_callback_bad_return_is_a_type_error(
    loop: EventLoop[Any], pipe: tuple[int, int]
) -> None:
    """A FdSource callback returning something other than a PostAction or None is refused."""
    r, w = pipe
    loop.handle().insert_source(FdSource(r, Interest.READ, Mode.LEVEL), lambda *a: "oops")
    os.write(w, b"x")

    with pytest.raises(TypeError, match="PostAction"):
        loop.dispatch(0, None)


def test_timer_to_duration_is_measured_from_the_callback(loop: EventLoop[Any]) -> None:
    """to_duration(d) rearms at (time the callback returned) + d, not at deadline + d."""
    seen: list[float] = []
    returned: list[float] = []

    def cb(deadline: float, meta: None, data: Any) -> TimeoutAction | None:
        seen.append(deadline)
        if len(seen) == 2:
            return None
        returned.append(time.monotonic())
        return TimeoutAction.to_duration(0.01)

    loop.handle().insert_source(Timer.from_deadline(time.monotonic() - 10), cb)
    while len(seen) < 2:
        loop.dispatch(1, None)

    assert seen[1] >= returned[0] + 0.01
