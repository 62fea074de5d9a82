"""Dispatch loops fail loudly and never hang silently (docs/servers.md, "When the handler
raises"; docs/testing.md, the stopped-loop warning and the debug aids).

- A loop that ends by an exception logs it at ERROR, with its traceback, when it happens —
  not when (or if) somebody joins — and its later callers are told why.
- A `task.spawn` server whose event loop is not running, while requests or joins wait for
  it, is reported by the monitor thread with the problem and the fix.
- In Python's development mode a join that waits long says what the loop waits for.
- `spawn(Handler)` (the class, not a factory) is refused with what to write instead.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest

import asyncmp
from asyncmp import (
    JoinHandle,
    NoReply,
    ReplyContext,
    ServerDisappeared,
    _loopwatch,
    _serving,
    task,
    thread,
)
from bounds import WAIT


@contextmanager
def asyncmp_log(
    level: int = logging.WARNING, on_record: Callable[[], object] = lambda: None
) -> Iterator[tuple[list[logging.LogRecord], threading.Event]]:
    """Capture the "asyncmp" logger's records from *level* up; the event is set on the first,
    and *on_record* is called, in the logging thread, on each."""
    records: list[logging.LogRecord] = []
    seen = threading.Event()

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            seen.set()
            on_record()

    capture = Capture(level)
    logger = logging.getLogger("asyncmp")
    logger.addHandler(capture)
    try:
        yield records, seen
    finally:
        logger.removeHandler(capture)


class KV:
    """A key-value handler with a bug: a missing key raises instead of failing the request."""

    def __init__(self) -> None:
        self.store = {"a": 1}

    async def proc_req(self, msg: str, rctx: ReplyContext[int]) -> None:
        rctx.reply(self.store[msg])


class SyncKV:
    def __init__(self) -> None:
        self.store = {"a": 1}

    def proc_req(self, msg: str, rctx: ReplyContext[int]) -> None:
        rctx.reply(self.store[msg])


# -- loud failure ----------------------------------------------------------------------


async def test_task_loop_failure_is_logged_when_it_happens() -> None:
    """A proc_req that raises ends the loop and is logged at ERROR at once, with the
    exception (and so its traceback), naming the loop and what failed — nobody joined."""
    with asyncmp_log() as (records, _), anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            client, handle = task.spawn(lambda client: KV(), name="kv", task_group=tg)
            with pytest.raises(NoReply) as info:
                await client.send("x")
            await anyio.wait_all_tasks_blocked()  # the loop's task has ended

            assert handle.done()
            (record,) = records
            assert record.levelno == logging.ERROR
            assert record.exc_info is not None
            assert record.exc_info[1] is info.value.__cause__
            assert isinstance(record.exc_info[1], KeyError)
            message = record.getMessage()
            assert "dispatch loop 'kv' stopped: KeyError('x')" in message
            assert "proc_req(str)" in message
            with pytest.raises(KeyError):
                await handle


def test_thread_loop_failure_is_logged_when_it_happens() -> None:
    """The same for a thread server: logged at ERROR on the server thread as it stops."""
    with asyncmp_log() as (records, seen):
        client, handle = thread.spawn(lambda client: SyncKV(), name="kv")
        with pytest.raises(NoReply):
            client.blocking.send("x", timeout=WAIT)
        assert seen.wait(WAIT)

        (record,) = records
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], KeyError)
        assert "dispatch loop 'kv' stopped: KeyError('x')" in record.getMessage()
        with pytest.raises(KeyError):
            handle.blocking.join(timeout=WAIT)


def test_failure_logged_once_even_if_never_joined() -> None:
    """The failure is logged when it happens, so the unjoined handle adds no second record
    when it is collected."""
    with asyncmp_log() as (records, _seen):
        client, handle = thread.spawn(lambda client: SyncKV(), name="kv-unjoined")
        (server_thread,) = [t for t in threading.enumerate() if t.name == "kv-unjoined"]
        with pytest.raises(NoReply):
            client.blocking.send("x", timeout=WAIT)
        # Wait for the loop's end without joining: its thread ends after the handle is done.
        server_thread.join(WAIT)
        assert handle.done()
        del handle
        gc.collect()

    assert len(records) == 1


def test_term_failure_is_logged() -> None:
    """An exception from term is logged at ERROR too, and joining raises it."""

    class BadTerm:
        def proc_req(self, msg: object, rctx: ReplyContext[object]) -> None:
            rctx.reply(msg)

        def term(self, rv: object) -> object:
            raise ValueError("term failed")

    with asyncmp_log() as (records, seen):
        client, handle = thread.spawn(lambda client: BadTerm(), name="bad-term")
        client.close()
        with pytest.raises(ValueError, match="term failed"):
            handle.blocking.join(timeout=WAIT)

    assert seen.is_set()
    (record,) = records
    assert record.levelno == logging.ERROR
    assert "term() raised ValueError('term failed')" in record.getMessage()


async def test_later_callers_of_a_failed_task_loop_are_told_why() -> None:
    """After a handler bug stops the loop, a later send raises ServerDisappeared saying which
    loop stopped and why, with the handler's exception as its __cause__."""
    with asyncmp_log(), anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            client, handle = task.spawn(lambda client: KV(), name="kv", task_group=tg)
            with pytest.raises(NoReply) as first:
                await client.send("x")
            await anyio.wait_all_tasks_blocked()

            with pytest.raises(ServerDisappeared) as later:
                await client.send("a")
            assert str(later.value) == "dispatch loop 'kv' stopped: KeyError('x')"
            assert later.value.__cause__ is first.value.__cause__
            with pytest.raises(ServerDisappeared) as pending:
                client.request("a")
            assert pending.value.__cause__ is first.value.__cause__
            with pytest.raises(KeyError):
                await handle


def test_queued_requests_of_a_failed_thread_loop_are_told_why() -> None:
    """A request still queued when the loop stops gets ServerDisappeared with the reason."""
    entered = threading.Event()
    release = threading.Event()

    class Blocking:
        def proc_req(self, msg: str, rctx: ReplyContext[str]) -> None:
            entered.set()
            assert release.wait(WAIT)
            raise KeyError(msg)

    with asyncmp_log():
        client, handle = thread.spawn(lambda client: Blocking(), name="kv")
        first = client.request("x")
        assert entered.wait(WAIT)
        queued = client.request("y")  # behind the request in hand
        release.set()
        with pytest.raises(NoReply):
            first.blocking.wait(WAIT)
        with pytest.raises(ServerDisappeared) as info:
            queued.blocking.wait(WAIT)
        assert str(info.value) == "dispatch loop 'kv' stopped: KeyError('x')"
        assert isinstance(info.value.__cause__, KeyError)
        with pytest.raises(KeyError):
            handle.blocking.join(timeout=WAIT)


def test_server_of_an_ended_asyncio_run_says_it_was_cancelled() -> None:
    """A task server spawned in one asyncio.run() and called in a later one fails at once,
    saying that its loop was cancelled and what to use instead."""

    async def start() -> asyncmp.Client[Any, Any]:
        client, _ = task.spawn(lambda client: KV(), name="kv")
        return client

    client = asyncio.run(start())

    async def call() -> None:
        with pytest.raises(ServerDisappeared) as info:
            await client.send("a")
        assert "dispatch loop 'kv' was cancelled" in str(info.value)
        assert "thread.spawn" in str(info.value)

    asyncio.run(call())


# -- a task server whose event loop is not running ---------------------------------------


def loop_factories() -> list[Any]:
    factories = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - the dev extra has it
        return factories
    return [*factories, pytest.param(uvloop.new_event_loop, id="uvloop")]


class Echo:
    async def proc_req(self, msg: object, rctx: ReplyContext[object]) -> None:
        rctx.reply(msg)


@pytest.fixture
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stall is reported at the first look (the real grace is a second)."""
    monkeypatch.setattr(_loopwatch, "GRACE", 0.0)


@pytest.fixture
def stopped_server(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[asyncio.AbstractEventLoop, asyncmp.Client[Any, Any], JoinHandle[Any]]]:
    """An Echo server spawned in one run_until_complete of a loop that then stops (the
    pytest-asyncio module-fixture mistake); at the end the loop runs it to its end."""
    loop: asyncio.AbstractEventLoop = request.param()

    async def start() -> tuple[asyncmp.Client[Any, Any], JoinHandle[Any]]:
        return task.spawn(lambda client: Echo(), name="stuck")

    client, handle = loop.run_until_complete(start())
    try:
        yield loop, client, handle
    finally:
        client.close()
        loop.run_until_complete(asyncio.wait_for(handle.join(), WAIT))
        loop.close()


@pytest.mark.usefixtures("no_grace")
@pytest.mark.parametrize("stopped_server", loop_factories(), indirect=True)
def test_request_to_server_on_stopped_loop_is_reported(stopped_server: Any) -> None:
    """A request waiting for a task server whose event loop is not running is reported:
    the loop's name, the problem and both fixes."""
    loop, client, _ = stopped_server
    with asyncmp_log() as (records, _):
        # The send itself warns at once (tests/test_hints.py); the monitor reports too.
        with pytest.warns(RuntimeWarning, match="not running"):
            pending = client.request("hello")
        _loopwatch.check()

        (record,) = records
        message = record.getMessage()
        assert record.levelno == logging.WARNING
        assert "dispatch loop 'stuck' cannot run: 1 request wait" in message
        assert "event loop it runs on is not running" in message
        assert "loop scope" in message
        assert "asyncmp.thread.spawn" in message
        # Reported once per stall, not at every look.
        _loopwatch.check()
        assert len(records) == 1

        # The loop runs again: the request is served (the report was only a warning).
        async def collect() -> object:
            return await pending

        assert loop.run_until_complete(asyncio.wait_for(collect(), WAIT)) == "hello"


@pytest.mark.usefixtures("no_grace")
@pytest.mark.parametrize("stopped_server", loop_factories(), indirect=True)
def test_join_on_server_whose_loop_is_not_running_is_reported(stopped_server: Any) -> None:
    """A join waiting (from another event loop) for a task server whose loop is not
    running is reported the same way."""
    _, _client, handle = stopped_server
    other = asyncio.new_event_loop()
    try:
        with asyncmp_log() as (records, _):
            joining = other.create_task(handle.join())
            other.run_until_complete(asyncio.sleep(0))  # the join parks in its first step
            _loopwatch.check()

            (record,) = records
            assert "dispatch loop 'stuck' cannot run: 1 join wait" in record.getMessage()
            joining.cancel()
            with pytest.raises(asyncio.CancelledError):
                other.run_until_complete(joining)
    finally:
        other.close()


@pytest.mark.parametrize("stopped_server", loop_factories(), indirect=True)
def test_monitor_thread_reports_within_a_bound(
    stopped_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The monitor thread makes the report by itself (no explicit look), within a bound."""
    monkeypatch.setattr(_loopwatch, "GRACE", 0.0)
    monkeypatch.setattr(_loopwatch, "TICK", 0.01)
    _, client, _ = stopped_server
    with asyncmp_log() as (records, seen):
        with pytest.warns(RuntimeWarning, match="not running"):  # the send's own warning
            pending = client.request("hello")
        assert seen.wait(WAIT)
    pending.cancel()

    assert "dispatch loop 'stuck' cannot run" in records[0].getMessage()


@pytest.mark.usefixtures("no_grace")
async def test_no_report_while_the_loop_runs() -> None:
    """Requests waiting for a busy server on a running loop are not a stall."""
    if asyncmp._lowlevel._backend.current_library() != "asyncio":
        return  # the monitor watches asyncio servers only (trio tasks die with their run)
    release = anyio.Event()

    class Busy:
        async def proc_req(self, msg: object, rctx: ReplyContext[object]) -> None:
            await release.wait()
            rctx.reply(msg)

    with asyncmp_log() as (records, _), anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            client, handle = task.spawn(lambda client: Busy(), task_group=tg)
            tg.start_soon(client.send, 1)
            tg.start_soon(client.send, 2)
            await anyio.wait_all_tasks_blocked()
            _loopwatch.check()  # the loop is running: this very look runs on it
            release.set()
            client.close()
            await handle

    assert records == []


@pytest.mark.usefixtures("no_grace")
@pytest.mark.parametrize("stopped_server", loop_factories(), indirect=True)
def test_no_report_when_nobody_waits(stopped_server: Any) -> None:
    """A stopped loop whose server nobody waits for is not reported."""
    with asyncmp_log() as (records, _):
        _loopwatch.check()

    assert records == []


# -- the debug aids ----------------------------------------------------------------------


@pytest.fixture
def dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's development mode, with a join hint at once (it waits 10 s otherwise)."""
    monkeypatch.setattr(_serving, "_dev_mode", lambda: True)
    monkeypatch.setattr(_serving, "JOIN_HINT_AFTER", 0.0)


@pytest.mark.usefixtures("dev_mode")
async def test_dev_mode_join_says_what_the_loop_waits_for() -> None:
    """In development mode, a join that waits (the client was never closed) logs what ends
    the loop, then keeps waiting and returns normally once the client is closed."""
    hinted = anyio.Event()  # set by the joining task itself, as it logs the hint
    with asyncmp_log(on_record=hinted.set) as (records, _), anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            client, handle = task.spawn(lambda client: Echo(), name="open", task_group=tg)
            joined: list[object] = []

            async def join() -> None:
                joined.append(await handle)

            tg.start_soon(join)
            await hinted.wait()

            (record,) = records
            message = record.getMessage()
            assert "dispatch loop 'open': a join has waited" in message
            assert "with 1 client open" in message
            assert "async with client:" in message
            assert "Break(value)" in message
            assert not joined
            client.close()

    assert joined == [None]


@pytest.mark.usefixtures("dev_mode")
def test_dev_mode_blocking_join_says_what_the_loop_waits_for() -> None:
    """The same for handle.blocking.join(): the hint, then the join completes."""
    client, handle = thread.spawn(lambda client: SyncKV(), name="open")
    with asyncmp_log() as (records, seen):
        closer = threading.Thread(target=lambda: seen.wait(WAIT) and client.close())
        closer.start()
        assert handle.blocking.join(timeout=WAIT) is None
        closer.join(WAIT)

    assert "dispatch loop 'open': a join has waited" in records[0].getMessage()


def test_join_handle_repr_shows_what_the_loop_waits_for() -> None:
    """repr(handle) of a running loop shows its open clients, queued and in-flight requests."""
    client, handle = thread.spawn(lambda client: SyncKV(), name="kv")

    assert repr(handle) == "<JoinHandle 'kv' running [clients: 1, queued: 0, in flight: 0]>"
    client.close()
    handle.blocking.join(timeout=WAIT)
    assert repr(handle) == "<JoinHandle 'kv' done>"


# -- spawn(Handler) instead of a factory -------------------------------------------------


class NoArgs:
    def proc_req(self, msg: object, rctx: ReplyContext[object]) -> None:
        rctx.reply(msg)


@pytest.mark.parametrize("spawn", [thread.spawn, task.spawn], ids=["thread", "task"])
async def test_spawn_of_a_handler_class_says_to_pass_a_factory(
    spawn: Callable[..., Any],
) -> None:
    """spawn(NoArgs) — the class, whose constructor takes no client — is refused with a
    TypeError that says to pass a factory, and shows one."""
    if spawn is task.spawn and asyncmp._lowlevel._backend.current_library() == "trio":
        return  # (task.spawn needs a task group there; the check comes first anyway)
    with pytest.raises(TypeError) as info:
        spawn(NoArgs)

    assert "the class NoArgs, whose constructor does not take the client" in str(info.value)
    assert "lambda client: NoArgs()" in str(info.value)


def test_spawn_of_a_factory_without_parameter_says_so() -> None:
    """A factory that takes no argument gets the same hint."""
    with pytest.raises(TypeError, match=r"does not take the client.*pass a factory"):
        thread.spawn(lambda: NoArgs())  # type: ignore[arg-type, misc]


def test_type_error_inside_a_good_factory_comes_out_as_it_is() -> None:
    """Only the signature is checked: a TypeError raised by a factory that takes the client
    propagates unchanged."""
    error = TypeError("my own bug")

    def make_handler(client: asyncmp.Client[Any, Any]) -> NoArgs:
        raise error

    with pytest.raises(TypeError) as info:
        thread.spawn(make_handler)
    assert info.value is error
