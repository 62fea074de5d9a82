"""asyncmp.dharma.Dispatcher: file-descriptor events dispatched to handlers (dharma's
Dispatcher)."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from asyncmp import Closed
from asyncmp.dharma import (
    Dispatcher,
    DispatcherController,
    EventHandler,
    EventKind,
    LocalDispatcher,
)


class PipeHandler:
    """Watches the read end of a pipe; logs each event; reads *chunk* bytes per READ."""

    def __init__(self, chunk: int = 1024, on_event: Callable[[EventKind], None] | None = None):
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        self.chunk = chunk
        self.events: list[EventKind] = []
        self.data = b""
        self.ids: list[int] = []
        self.on_event = on_event

    def fileno(self) -> int:
        return self.r

    def set_id(self, handler_id: int) -> None:
        self.ids.append(handler_id)

    def process_event(self, kind: EventKind) -> None:
        self.events.append(kind)
        if kind & EventKind.READ:
            self.data += os.read(self.r, self.chunk)
        if self.on_event is not None:
            self.on_event(kind)

    def close(self) -> None:
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def pipes() -> Iterator[Callable[..., PipeHandler]]:
    made: list[PipeHandler] = []

    def make(*args: object, **kwargs: object) -> PipeHandler:
        handler = PipeHandler(*args, **kwargs)  # type: ignore[arg-type]
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close()


@pytest.fixture
def dispatcher() -> Iterator[Dispatcher]:
    with Dispatcher() as d:
        yield d


def run_in_thread(dispatcher: Dispatcher) -> threading.Thread:
    thread = threading.Thread(target=dispatcher.run)
    thread.start()
    return thread


def test_dispatcher_ids_count_up_and_are_never_reused(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """Ids are 1, 2, … in add order, set_id gets them first, and deleted ids are not reused."""
    a, b, c = pipes(), pipes(), pipes()

    assert dispatcher.add_source(a, EventKind.READ) == 1
    assert dispatcher.add_source(b, EventKind.READ) == 2
    assert dispatcher.delete_source(2) is b
    assert dispatcher.add_source(c, EventKind.READ) == 3
    assert dispatcher.delete_source(99) is None
    assert dispatcher.delete_source(2) is None
    assert (a.ids, b.ids, c.ids) == ([1], [2], [3])


def test_dispatcher_reports_read_and_calls_the_handler(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """A readable fd makes the dispatcher call process_event(READ); nothing ready, no call."""
    handler = pipes()
    dispatcher.add_source(handler, EventKind.READ)

    assert dispatcher.wait_and_process(0) == 0
    os.write(handler.w, b"hello")
    assert dispatcher.wait_and_process(5) == 1
    assert handler.events == [EventKind.READ]
    assert handler.data == b"hello"


def test_dispatcher_is_level_triggered(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """A handler that leaves data unread is called again on the next wait."""
    handler = pipes(chunk=1)
    dispatcher.add_source(handler, EventKind.READ)
    os.write(handler.w, b"ab")

    assert dispatcher.wait_and_process(5) == 1
    assert dispatcher.wait_and_process(5) == 1
    assert dispatcher.wait_and_process(0) == 0
    assert handler.data == b"ab"


def test_dispatcher_removes_a_handler_after_a_pure_hangup(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """READ|HANGUP keeps the handler; a lone HANGUP is delivered once and removes it."""
    handler = pipes(chunk=1)
    handler_id = dispatcher.add_source(handler, EventKind.READ)
    os.write(handler.w, b"xy")
    os.close(handler.w)

    dispatcher.wait_and_process(5)
    assert handler.events == [EventKind.READ | EventKind.HANGUP]
    dispatcher.wait_and_process(5)
    assert handler.events[-1] == EventKind.READ | EventKind.HANGUP
    dispatcher.wait_and_process(5)  # drained: only the hang-up is left
    assert handler.events[-1] == EventKind.HANGUP
    assert dispatcher.wait_and_process(0) == 0
    assert len(handler.events) == 3
    assert dispatcher.delete_source(handler_id) is None


def test_dispatcher_stop_from_another_thread_takes_effect_at_once(
    dispatcher: Dispatcher,
) -> None:
    """stop() from another thread ends an idle run() without any fd event."""
    thread = run_in_thread(dispatcher)
    dispatcher.get_controller().stop()
    thread.join(5)

    assert not thread.is_alive()


def test_dispatcher_stop_before_run_makes_run_return(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """A stop() made before run() makes that run return at once (dharma overwrote it)."""
    handler = pipes(on_event=lambda kind: dispatcher.stop())
    dispatcher.add_source(handler, EventKind.READ)
    os.write(handler.w, b"x")
    dispatcher.stop()
    dispatcher.run()
    assert handler.events == []  # returned before dispatching anything

    # The stop was consumed: the next run dispatches until stopped again.
    dispatcher.run()
    assert handler.data == b"x"


def test_dispatcher_handlers_may_add_and_delete_sources(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """A handler that adds a new source and deletes itself does not deadlock; the new
    source is then dispatched, and a handler can stop the run."""
    second = pipes(on_event=lambda kind: dispatcher.stop())
    first_ids: list[int] = []

    def on_first(kind: EventKind) -> None:
        dispatcher.add_source(second, EventKind.READ)
        os.write(second.w, b"2")
        assert dispatcher.delete_source(first_ids[0]) is first

    first = pipes(on_event=on_first)
    first_ids.append(dispatcher.add_source(first, EventKind.READ))
    os.write(first.w, b"1")
    thread = run_in_thread(dispatcher)
    thread.join(5)

    assert not thread.is_alive()
    assert (first.data, second.data) == (b"1", b"2")


def test_dispatcher_skips_a_handler_deleted_by_an_earlier_one(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """When two fds are ready at once and the first handler deletes the second, the
    second is not called."""
    ids: dict[str, int] = {}
    a = pipes(on_event=lambda kind: dispatcher.delete_source(ids["b"]))
    b = pipes(on_event=lambda kind: dispatcher.delete_source(ids["a"]))
    ids["a"] = dispatcher.add_source(a, EventKind.READ)
    ids["b"] = dispatcher.add_source(b, EventKind.READ)
    os.write(a.w, b"a")
    os.write(b.w, b"b")

    assert dispatcher.wait_and_process(5) == 1
    assert len(a.events) + len(b.events) == 1


class HookedEpoll:
    """An epoll set whose ``poll`` runs *after_poll* between the kernel's answer and the
    dispatcher's look at it: the window in which another thread may change the sources."""

    def __init__(self, epoll: Any, after_poll: Callable[[], None]) -> None:
        self._epoll = epoll
        self._after_poll: Callable[[], None] | None = after_poll

    def poll(self, timeout: float = -1) -> list[tuple[int, int]]:
        events: list[tuple[int, int]] = self._epoll.poll(timeout)
        hook, self._after_poll = self._after_poll, None  # once
        if hook is not None:
            hook()
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._epoll, name)


class ReusedFd:
    """A handler on a fresh pipe whose read end takes the number *fd* (``dup2``)."""

    def __init__(self, fd: int) -> None:
        r, w = os.pipe()
        if w == fd:  # keep the write end off the number we want
            w, old_w = os.dup(w), w
            os.close(old_w)
        if r != fd:  # the lowest free number is usually *fd* already
            os.dup2(r, fd)
            os.close(r)
        self.w = w
        os.set_blocking(fd, False)
        self.r = fd
        self.events: list[EventKind] = []

    def fileno(self) -> int:
        return self.r

    def process_event(self, kind: EventKind) -> None:
        self.events.append(kind)
        if kind & EventKind.READ:
            os.read(self.r, 1024)  # blocking in a real handler: here it would raise instead

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


@pytest.mark.parametrize("new_fd_ready", [False, True], ids=["idle", "ready"])
def test_dispatcher_stale_readiness_never_reaches_a_handler_that_reused_the_fd(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler], new_fd_ready: bool
) -> None:
    """An event polled for a deleted source never reaches a source added afterwards on the
    same fd number, even when the swap happens between the poll and its dispatch; the new
    source still gets its own readiness in that same dispatch."""
    old = pipes()
    old_id = dispatcher.add_source(old, EventKind.READ)
    os.write(old.w, b"for the old handler")
    fd = old.r
    new: list[ReusedFd] = []

    def swap() -> None:
        # Another thread's work, between epoll_wait and the dispatch of its events.
        dispatcher.delete_source(old_id)
        os.close(old.r)
        new.append(ReusedFd(fd))
        if new_fd_ready:
            os.write(new[0].w, b"for the new handler")
        dispatcher.add_source(new[0], EventKind.READ)

    poller = dispatcher._state.poller
    poller._epoll = HookedEpoll(poller._epoll, swap)  # type: ignore[assignment]
    try:
        called = dispatcher.wait_and_process(5)

        assert new[0].fileno() == fd  # the number was reused: the race really happened
        assert old.events == []
        assert new[0].events == ([EventKind.READ] if new_fd_ready else [])
        assert called == len(new[0].events)
    finally:
        for handler in new:
            handler.close()
        old.r = os.open(os.devnull, os.O_RDONLY)  # the fixture closes it again


def test_dispatcher_delete_of_a_handler_whose_fd_was_reused_leaves_the_new_one(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """A handler whose fd was closed without delete_source, its number reused by a new
    handler: deleting the old one later neither unregisters nor unmaps the new one."""
    old = pipes()
    old_id = dispatcher.add_source(old, EventKind.READ)
    fd = old.r
    os.close(old.r)
    new = ReusedFd(fd)
    try:
        dispatcher.add_source(new, EventKind.READ)
        assert dispatcher.delete_source(old_id) is old
        os.write(new.w, b"x")

        assert dispatcher.wait_and_process(5) == 1
        assert new.events == [EventKind.READ]
    finally:
        new.close()
        old.r = os.open(os.devnull, os.O_RDONLY)  # the fixture closes it again


def test_dispatcher_sources_added_from_another_thread_are_watched_at_once(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """A source added through the controller while run() waits is dispatched."""
    controller = dispatcher.get_controller()
    handler = pipes(on_event=lambda kind: controller.stop())
    thread = run_in_thread(dispatcher)
    try:
        controller.add_source(handler, EventKind.READ)
        os.write(handler.w, b"!")
        thread.join(5)
    finally:
        controller.stop()
        thread.join(5)

    assert handler.data == b"!"


def test_dispatcher_watches_writability(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """A handler added for WRITE on a writable fd gets WRITE."""
    pipe = pipes()

    class Writer:
        def __init__(self) -> None:
            self.events: list[EventKind] = []

        def fileno(self) -> int:
            return pipe.w

        def process_event(self, kind: EventKind) -> None:
            self.events.append(kind)

    writer = Writer()
    assert isinstance(writer, EventHandler)
    dispatcher.add_source(writer, EventKind.WRITE)
    dispatcher.wait_and_process(5)

    assert writer.events == [EventKind.WRITE]


def test_dispatcher_exception_in_handler_ends_run(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """An exception from process_event propagates out of run(); the dispatcher can run again."""

    def fail(kind: EventKind) -> None:
        raise KeyError("handler failed")

    handler = pipes(on_event=fail)
    dispatcher.add_source(handler, EventKind.READ)
    os.write(handler.w, b"x")
    with pytest.raises(KeyError, match="handler failed"):
        dispatcher.run()
    dispatcher.stop()
    dispatcher.run()  # not stuck in "already running"


def test_dispatcher_rejects_bad_input(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """Non-handlers, bad kinds, duplicate or closed fds raise clear errors."""
    handler = pipes()
    dispatcher.add_source(handler, EventKind.READ)
    with pytest.raises(TypeError, match="fileno"):
        dispatcher.add_source(object(), EventKind.READ)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="EventKind"):
        dispatcher.add_source(pipes(), "read")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown bits"):
        dispatcher.add_source(pipes(), 8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already watched"):
        dispatcher.add_source(handler, EventKind.READ)
    closed = pipes()
    closed.close()
    with pytest.raises(ValueError, match="cannot watch"):
        dispatcher.add_source(closed, EventKind.READ)
    with pytest.raises(TypeError, match="get_controller"):
        DispatcherController()
    with pytest.raises(ValueError, match=r"timeout must be >= 0, not -1"):
        dispatcher.wait_and_process(-1)
    with pytest.raises(TypeError, match=r"timeout must be a number of seconds or None"):
        dispatcher.wait_and_process("1")  # type: ignore[arg-type]


class BoolFd(PipeHandler):
    def fileno(self) -> int:
        return True


def test_a_handler_whose_fileno_is_a_bool_is_refused(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """``True`` is no fd (it would watch fd 1): a TypeError names the handler's fileno()."""
    handler = BoolFd()
    try:
        with pytest.raises(TypeError, match=r"fileno\(\) of .* must be an int, not True"):
            dispatcher.add_source(handler, EventKind.READ)
    finally:
        handler.close()


@pytest.mark.parametrize("timeout", [math.inf, 1e12])
def test_an_infinite_or_huge_timeout_is_a_timeout_like_any_other(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler], timeout: float
) -> None:
    """``inf`` and numbers past what epoll can take wait until something happens (no
    OverflowError)."""
    handler = pipes()
    dispatcher.add_source(handler, EventKind.READ)
    os.write(handler.w, b"x")
    assert dispatcher.wait_and_process(timeout) == 1


def test_dispatcher_closed_refuses_use(pipes: Callable[..., PipeHandler]) -> None:
    """A closed dispatcher raises Closed on add_source, run and wait_and_process."""
    dispatcher = Dispatcher()
    controller = dispatcher.get_controller()
    dispatcher.close()
    dispatcher.close()

    assert dispatcher.closed
    with pytest.raises(Closed):
        controller.add_source(pipes(), EventKind.READ)
    with pytest.raises(Closed):
        dispatcher.run()
    with pytest.raises(Closed):
        dispatcher.wait_and_process(0)


def test_dispatcher_refuses_a_second_concurrent_run(dispatcher: Dispatcher) -> None:
    """run() while another thread runs the dispatcher raises RuntimeError; so does close()."""
    started = threading.Event()

    class Marker:
        def __init__(self) -> None:
            self.r, self.w = os.pipe()
            os.write(self.w, b"x")

        def fileno(self) -> int:
            return self.r

        def process_event(self, kind: EventKind) -> None:
            os.read(self.r, 1)
            started.set()

    marker = Marker()
    dispatcher.add_source(marker, EventKind.READ)
    thread = run_in_thread(dispatcher)
    try:
        assert started.wait(5)
        with pytest.raises(RuntimeError, match="already running"):
            dispatcher.run()
        with pytest.raises(RuntimeError, match="running"):
            dispatcher.close()
    finally:
        dispatcher.stop()
        thread.join(5)
        os.close(marker.r)
        os.close(marker.w)


def test_local_dispatcher_is_the_same_class() -> None:
    """LocalDispatcher is Dispatcher under dharma's other name (Python has no Send bound)."""
    assert LocalDispatcher is Dispatcher


async def test_dispatcher_run_async_dispatches_on_the_running_loop(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """run_async() calls handlers on the loop's thread for writes made by another thread,
    and returns once a handler calls stop()."""
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def on_event(kind: EventKind) -> None:
        threads.append(threading.get_ident())
        if len(handler.data) >= 2:
            dispatcher.stop()

    handler = pipes(chunk=1, on_event=on_event)
    dispatcher.add_source(handler, EventKind.READ)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(dispatcher.run_async)
            await anyio.wait_all_tasks_blocked()
            await anyio.to_thread.run_sync(os.write, handler.w, b"ab")

    assert handler.data == b"ab"
    assert threads
    assert set(threads) == {loop_thread}


async def test_dispatcher_run_async_stops_at_once(dispatcher: Dispatcher) -> None:
    """stop() before run_async() makes it return at once; stop() from a thread ends it."""
    dispatcher.stop()
    with anyio.fail_after(5):
        await dispatcher.run_async()
        async with anyio.create_task_group() as tg:
            tg.start_soon(dispatcher.run_async)
            await anyio.wait_all_tasks_blocked()
            await anyio.to_thread.run_sync(dispatcher.stop)


async def test_dispatcher_run_async_is_cancellable(
    dispatcher: Dispatcher, pipes: Callable[..., PipeHandler]
) -> None:
    """Cancelling run_async() ends it; the dispatcher can then run again."""
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(dispatcher.run_async)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    handler = pipes(on_event=lambda kind: dispatcher.stop())
    dispatcher.add_source(handler, EventKind.READ)
    os.write(handler.w, b"again")
    with anyio.fail_after(5):
        await dispatcher.run_async()
    assert handler.data == b"again"
