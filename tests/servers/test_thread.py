"""asyncmp.thread.spawn: a dispatch loop on its own thread.

Behaviours B26 and B29–B39 of docs/design.md, and docs/servers.md. Synchronous tests
drive the server from the test's thread; async tests (asyncio, uvloop, trio) use it from
tasks.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import pytest

import asyncmp
from asyncmp import (
    AlreadyReplied,
    Break,
    Client,
    Closed,
    Continue,
    NoReply,
    ReplyContext,
    ServerDisappeared,
    WeakClient,
    thread,
)
from bounds import WAIT


class Adder:
    """The seed's adder, with a stop message and a record of its life."""

    def __init__(self, weak: WeakClient[Any, Any]) -> None:
        self.weak = weak
        self.record: list[object] = []

    def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> Break[int] | None:
        self.record.append(msg)
        if msg == "croak":
            rctx.reply("ok, I will croak")
            return Break(42)
        rctx.reply(msg[0] + msg[1])
        return None

    def term(self, rv: int | None) -> int | None:
        self.record.append(("term", rv, threading.current_thread().name))
        return rv


class Gated:
    """proc_req announces each start and waits on a per-message gate."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.record: list[tuple[str, object]] = []
        self.gates: dict[object, threading.Event] = {}
        self.started: dict[object, threading.Event] = {}

    def _event(self, table: dict[object, threading.Event], msg: object) -> threading.Event:
        with self.lock:
            return table.setdefault(msg, threading.Event())

    def gate(self, msg: object) -> threading.Event:
        return self._event(self.gates, msg)

    def wait_started(self, msg: object) -> None:
        assert self._event(self.started, msg).wait(WAIT), f"proc_req({msg!r}) never started"

    def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> Break[str] | None:
        self.record.append(("start", msg))
        self._event(self.started, msg).set()
        assert self.gate(msg).wait(WAIT)
        self.record.append(("end", msg))
        if msg == "boom":
            raise ValueError("boom")
        if msg == "stop":
            rctx.reply("stopping")
            return Break("stopped")
        rctx.reply(msg)
        return None


@contextmanager
def asyncmp_log() -> Iterator[tuple[list[logging.LogRecord], threading.Event]]:
    """Capture warnings of the "asyncmp" logger; the event is set on the first one."""
    records: list[logging.LogRecord] = []
    seen = threading.Event()

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            seen.set()

    capture = Capture(logging.WARNING)
    logger = logging.getLogger("asyncmp")
    logger.addHandler(capture)
    try:
        yield records, seen
    finally:
        logger.removeHandler(capture)


def thread_names() -> set[str]:
    return {t.name for t in threading.enumerate()}


def test_spawn_round_trip_and_clients_gone_ends_loop() -> None:
    """A spawned adder answers a thread's requests; closing the only client ends the loop
    with None."""
    client, handle = thread.spawn(lambda client: Adder(client.weak()))

    assert client.blocking.send((3, 7), timeout=WAIT) == 10
    assert not handle.done()
    client.close()
    assert handle.blocking.join(timeout=WAIT) is None
    assert handle.done()


def test_spawn_make_handler_error_is_raised_and_no_thread_starts() -> None:
    """B29: an exception from make_handler comes out of spawn; no thread starts and the
    channel is closed."""
    error = ValueError("no handler today")
    seen: list[Client[Any, Any]] = []

    def make_handler(client: Client[Any, Any]) -> Adder:
        seen.append(client)
        raise error

    before = threading.active_count()
    with pytest.raises(ValueError) as info:
        thread.spawn(make_handler, name="never-started")

    assert info.value is error
    assert threading.active_count() == before
    assert "never-started" not in thread_names()
    assert seen[0].closed
    with pytest.raises(Closed):
        seen[0].blocking.send((1, 2), timeout=WAIT)


def test_spawn_rejects_bad_arguments_and_async_handlers() -> None:
    """Bad arguments and async-def handler methods get a clear TypeError/ValueError."""
    with pytest.raises(TypeError, match="name"):
        thread.spawn(lambda client: Adder(client.weak()), name=b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="watchdog"):
        thread.spawn(lambda client: Adder(client.weak()), watchdog=-1)
    with pytest.raises(TypeError, match="watchdog"):
        thread.spawn(lambda client: Adder(client.weak()), watchdog=True)
    with pytest.raises(ValueError, match="max_queued"):
        thread.spawn(lambda client: Adder(client.weak()), max_queued=0)
    with pytest.raises(TypeError, match="proc_req"):
        thread.spawn(lambda client: object())  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="on_error"):
        thread.spawn(lambda client: Adder(client.weak()), on_error="log")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_error"):
        thread.spawn(lambda client: Adder(client.weak()), on_error=1)  # type: ignore[arg-type]

    class AsyncProc:
        async def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> None:
            rctx.reply(msg)

    class AsyncInit(Adder):
        async def init(self, weak_client: WeakClient[Any, Any]) -> None:
            pass

    seen: list[Client[Any, Any]] = []

    def make_proc(client: Client[Any, Any]) -> Any:
        seen.append(client)
        return AsyncProc()

    def make_init(client: Client[Any, Any]) -> Any:
        seen.append(client)
        return AsyncInit(client.weak())

    for make_handler in (make_proc, make_init):
        with pytest.raises(TypeError, match="async def"):
            thread.spawn(make_handler)
        assert seen.pop().closed


def test_spawn_clients_gone_calls_term_none_once_on_server_thread() -> None:
    """B30: with only a weak client in the handler, closing the caller's client ends the
    loop; term(None) runs once on the server thread and the handle yields None."""
    adders: list[Adder] = []

    def make_handler(client: Client[Any, Any]) -> Adder:
        adders.append(Adder(client.weak()))
        return adders[0]

    client, handle = thread.spawn(make_handler, name="adder")
    assert client.blocking.send((2, 4), timeout=WAIT) == 6
    client.close()

    assert handle.blocking.join(timeout=WAIT) is None
    assert adders[0].record == [(2, 4), ("term", None, "adder")]


def test_spawn_break_ends_loop_after_delivering_reply() -> None:
    """B31: Break(42) ends the loop, term(42) runs, the handle yields 42 and the reply sent
    before the Break reaches its client."""
    client, handle = thread.spawn(lambda client: Adder(client.weak()))

    assert client.blocking.send((2, 4), timeout=WAIT) == 6
    assert client.blocking.send("croak", timeout=WAIT) == "ok, I will croak"
    assert handle.blocking.join(timeout=WAIT) == 42


def test_spawn_strong_client_in_handler_keeps_loop_running() -> None:
    """B32: a handler holding a strong clone keeps the loop alive after the caller's client
    closes (the documented hazard)."""

    class Keeper(Adder):
        def __init__(self, client: Client[Any, Any]) -> None:
            super().__init__(client.weak())
            self.client = client.clone()

    keepers: list[Keeper] = []

    def make_handler(client: Client[Any, Any]) -> Keeper:
        keepers.append(Keeper(client))
        return keepers[0]

    client, handle = thread.spawn(make_handler)
    client.close()

    with pytest.raises(TimeoutError):
        handle.blocking.join(timeout=0.05)
    assert keepers[0].client.blocking.send((1, 1), timeout=WAIT) == 2
    assert keepers[0].client.blocking.send("croak", timeout=WAIT) == "ok, I will croak"
    assert handle.blocking.join(timeout=WAIT) == 42


def test_spawn_init_runs_once_on_server_thread_before_first_request() -> None:
    """B33: init runs once, on the server thread, before the first proc_req, with a weak
    client that upgrades to a working client."""
    record: list[tuple[str, str]] = []
    upgraded: list[Client[Any, Any] | None] = []

    class WithInit(Adder):
        def init(self, weak_client: WeakClient[Any, Any]) -> None:
            record.append(("init", threading.current_thread().name))
            upgraded.append(weak_client.upgrade())

        def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> Break[int] | None:
            record.append(("proc_req", threading.current_thread().name))
            return super().proc_req(msg, rctx)

    client, handle = thread.spawn(lambda client: WithInit(client.weak()), name="init-test")
    assert client.blocking.send((1, 2), timeout=WAIT) == 3
    strong = upgraded[0]
    assert isinstance(strong, asyncmp.Client)
    assert strong.blocking.send((5, 6), timeout=WAIT) == 11
    strong.close()
    client.close()
    handle.blocking.join(timeout=WAIT)

    assert record == [("init", "init-test"), ("proc_req", "init-test"), ("proc_req", "init-test")]


def test_spawn_term_return_value_is_join_result() -> None:
    """B34: what term returns, not the Break value, is what the handle yields."""

    class Renamer(Adder):
        def term(self, rv: int | None) -> int | None:
            return -1 if rv is None else rv + 1000

    client, handle = thread.spawn(lambda client: Renamer(client.weak()))
    client.blocking.send("croak", timeout=WAIT)
    assert handle.blocking.join(timeout=WAIT) == 1042

    client, handle = thread.spawn(lambda client: Renamer(client.weak()))
    client.close()
    assert handle.blocking.join(timeout=WAIT) == -1


def test_spawn_queued_requests_fail_after_break() -> None:
    """B35: requests queued when the handler breaks get ServerDisappeared; later ones fail
    at once."""
    gated = Gated()
    client, handle = thread.spawn(lambda client: gated)
    first = client.request("stop")
    gated.wait_started("stop")
    queued = [client.request(n) for n in range(3)]
    gated.gate("stop").set()

    assert handle.blocking.join(timeout=WAIT) == "stopped"
    assert first.blocking.wait(timeout=WAIT) == "stopping"
    for pending in queued:
        with pytest.raises(ServerDisappeared):
            pending.blocking.wait(timeout=WAIT)
    with pytest.raises(ServerDisappeared):
        client.blocking.send(99, timeout=WAIT)
    assert gated.record == [("start", "stop"), ("end", "stop")]


def test_spawn_raising_handler_fails_request_queue_and_join() -> None:
    """B36: proc_req raising gives its request NoReply (cause: the exception), queued ones
    ServerDisappeared, joining raises that exception, and the thread ends."""
    terms: list[object] = []

    class Raising(Gated):
        def term(self, rv: object) -> object:
            terms.append(rv)
            return rv

    gated = Raising()
    client, handle = thread.spawn(lambda client: gated, name="raiser")
    in_hand = client.request("boom")
    gated.wait_started("boom")
    queued = [client.request(n) for n in range(3)]
    gated.gate("boom").set()

    with pytest.raises(ValueError, match="boom") as info:
        handle.blocking.join(timeout=WAIT)
    with pytest.raises(NoReply) as no_reply:
        in_hand.blocking.wait(timeout=WAIT)
    for pending in queued:
        with pytest.raises(ServerDisappeared):
            pending.blocking.wait(timeout=WAIT)
    with pytest.raises(ValueError) as again:
        handle.blocking.join(timeout=WAIT)

    assert no_reply.value.__cause__ is info.value
    assert again.value is info.value
    assert terms == []


def test_spawn_dispatches_serially_in_fifo_order() -> None:
    """B37: proc_req of B does not start before proc_req of A has returned, and requests
    from several clients are handled in the order they were sent."""
    gated = Gated()
    client, handle = thread.spawn(lambda client: gated)
    other = client.clone()
    pendings = [client.request("a"), other.request("b"), client.request("c")]

    gated.wait_started("a")
    assert gated.record == [("start", "a")]
    gated.gate("a").set()
    gated.wait_started("b")
    assert gated.record == [("start", "a"), ("end", "a"), ("start", "b")]
    gated.gate("b").set()
    gated.gate("c").set()

    assert [p.blocking.wait(timeout=WAIT) for p in pendings] == ["a", "b", "c"]
    other.close()
    client.close()
    handle.blocking.join(timeout=WAIT)
    assert [msg for what, msg in gated.record if what == "start"] == ["a", "b", "c"]
    assert gated.record[-1] == ("end", "c")


def test_spawn_withdrawn_requests_never_reach_handler() -> None:
    """B26: requests withdrawn while queued (cancelled pending reply, timed-out blocking
    send) never reach proc_req, and the loop goes on serving."""
    gated = Gated()
    client, handle = thread.spawn(lambda client: gated)
    first = client.request("first")
    gated.wait_started("first")

    assert client.request("cancelled").cancel()
    with pytest.raises(TimeoutError):
        client.blocking.send("timed out", timeout=0.01)
    gated.gate("first").set()
    gated.gate("last").set()

    assert first.blocking.wait(timeout=WAIT) == "first"
    assert client.blocking.send("last", timeout=WAIT) == "last"
    client.close()
    handle.blocking.join(timeout=WAIT)
    assert [msg for what, msg in gated.record if what == "start"] == ["first", "last"]


def test_spawn_clones_closed_one_by_one_end_loop_only_after_last() -> None:
    """B39: with N clones, the loop ends only when the last one is closed."""
    client, handle = thread.spawn(lambda client: Adder(client.weak()))
    clones = [client.clone() for _ in range(3)]
    client.close()
    for clone in clones:
        assert clone.blocking.send((1, 1), timeout=WAIT) == 2
        assert not handle.done()
        clone.close()

    assert handle.blocking.join(timeout=WAIT) is None


def test_spawn_continue_forms_go_on_and_bad_return_stops_loop() -> None:
    """None, Continue and Continue() keep the loop going; any other value ends it with
    TypeError."""

    class Flows:
        def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> Any:
            rctx.reply(msg)
            return {"none": None, "class": Continue, "instance": Continue()}.get(msg, msg)

    client, handle = thread.spawn(lambda client: Flows())
    for msg in ("none", "class", "instance"):
        assert client.blocking.send(msg, timeout=WAIT) == msg
    assert client.blocking.send(5, timeout=WAIT) == 5

    with pytest.raises(TypeError, match="proc_req must return"):
        handle.blocking.join(timeout=WAIT)


def test_spawn_return_value_instead_of_reply_is_the_no_reply_cause() -> None:
    """A proc_req that returns a value instead of replying gives its request NoReply whose
    __cause__ is the TypeError that ends the loop."""

    class Returns:
        def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> Any:
            return msg * 2

    client, handle = thread.spawn(lambda client: Returns())
    with pytest.raises(NoReply) as no_reply:
        client.blocking.send(21, timeout=WAIT)
    with pytest.raises(TypeError, match="proc_req must return") as info:
        handle.blocking.join(timeout=WAIT)

    assert no_reply.value.__cause__ is info.value


class Faulty:
    """A handler with every kind of per-request bug, chosen by the message."""

    def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> Any:
        if msg in ("raise", "fatal"):
            raise KeyError(msg)
        if msg == "interrupt":
            raise KeyboardInterrupt
        if msg == "twice":
            rctx.reply("first")
            rctx.reply("second")  # AlreadyReplied
        if msg == "fail-text":
            rctx.fail("text")  # type: ignore[arg-type]  # TypeError
        if msg == "return":
            return "value"  # TypeError: not a flow value
        rctx.reply(msg)
        return None


def test_spawn_on_error_continue_fails_only_the_request_in_hand() -> None:
    """on_error="continue": a raise, a second reply, fail("text") and `return value` each
    fail only their own request (NoReply caused by the exception, or the reply already
    given), are logged on the asyncmp logger, and the loop goes on."""
    with asyncmp_log() as (records, _):
        client, handle = thread.spawn(lambda client: Faulty(), on_error="continue")
        with pytest.raises(NoReply) as raised:
            client.blocking.send("raise", timeout=WAIT)
        assert client.blocking.send("twice", timeout=WAIT) == "first"
        with pytest.raises(NoReply) as failed:
            client.blocking.send("fail-text", timeout=WAIT)
        with pytest.raises(NoReply) as returned:
            client.blocking.send("return", timeout=WAIT)
        assert client.blocking.send("ok", timeout=WAIT) == "ok"
        assert not handle.done()
        client.close()
        assert handle.blocking.join(timeout=WAIT) is None

    assert isinstance(raised.value.__cause__, KeyError)
    assert isinstance(failed.value.__cause__, TypeError)
    assert isinstance(returned.value.__cause__, TypeError)
    assert [type(r.exc_info[1]) for r in records if r.exc_info] == [
        KeyError,
        AlreadyReplied,
        TypeError,
        TypeError,
    ]
    assert all(r.levelno == logging.ERROR and "goes on" in r.getMessage() for r in records)


def test_spawn_on_error_callable_sees_each_failure_and_may_end_the_loop() -> None:
    """on_error=callable is called on the server thread with the exception and the
    message after the request got NoReply; the loop goes on, unless the callable raises:
    then the loop ends with what it raised."""
    seen: list[tuple[type[BaseException], object, str]] = []

    def on_error(exc: Exception, msg: Any) -> None:
        seen.append((type(exc), msg, threading.current_thread().name))
        if msg == "fatal":
            raise RuntimeError("stop now") from exc

    client, handle = thread.spawn(lambda client: Faulty(), name="faulty", on_error=on_error)
    with pytest.raises(NoReply):
        client.blocking.send("raise", timeout=WAIT)
    assert client.blocking.send("ok", timeout=WAIT) == "ok"
    with pytest.raises(NoReply):
        client.blocking.send("fatal", timeout=WAIT)
    with pytest.raises(RuntimeError, match="stop now"):
        handle.blocking.join(timeout=WAIT)
    with pytest.raises(ServerDisappeared):
        client.blocking.send("ok", timeout=WAIT)

    assert seen == [(KeyError, "raise", "faulty"), (KeyError, "fatal", "faulty")]


def test_spawn_on_error_continue_never_swallows_keyboard_interrupt() -> None:
    """on_error="continue" handles handler errors (Exception) only: a KeyboardInterrupt
    raised in proc_req still ends the loop, and joining raises it."""
    client, handle = thread.spawn(lambda client: Faulty(), on_error="continue")
    with pytest.raises(NoReply) as info:
        client.blocking.send("interrupt", timeout=WAIT)
    with pytest.raises(KeyboardInterrupt):
        handle.blocking.join(timeout=WAIT)

    assert isinstance(info.value.__cause__, KeyboardInterrupt)


def test_spawn_proc_req_returning_awaitable_is_an_error() -> None:
    """A thread handler whose proc_req returns a coroutine ends the loop with TypeError
    (and no "never awaited" warning)."""

    async def later() -> None:
        pass

    class Sneaky:
        def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> Any:
            rctx.reply(msg)
            return later()

    client, handle = thread.spawn(lambda client: Sneaky())
    assert client.blocking.send(1, timeout=WAIT) == 1

    with pytest.raises(TypeError, match="awaitable"):
        handle.blocking.join(timeout=WAIT)


def test_spawn_names_the_thread() -> None:
    """name= names the server thread; without it the thread is asyncmp-server-N."""
    names: list[str] = []

    class Namer:
        def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> None:
            names.append(threading.current_thread().name)
            rctx.reply(None)

    for name in ("adder", None):
        client, handle = thread.spawn(lambda client: Namer(), name=name)
        client.blocking.send(1, timeout=WAIT)
        client.close()
        handle.blocking.join(timeout=WAIT)

    assert names[0] == "adder"
    assert re.fullmatch(r"asyncmp-server-\d+", names[1])
    assert repr(handle).startswith("<JoinHandle 'asyncmp-server-")


def test_spawn_watchdog_warns_on_slow_request_which_still_completes() -> None:
    """B38: a proc_req running past the watchdog limit logs a warning on logger "asyncmp"
    while it runs, and its reply is still delivered."""
    with asyncmp_log() as (records, seen):

        class Slow:
            def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> None:
                # Finish only once the watchdog has spoken: no timing assumption.
                rctx.reply(seen.wait(WAIT))

        client, handle = thread.spawn(lambda client: Slow(), name="slowpoke", watchdog=0.01)
        assert client.blocking.send(1, timeout=WAIT) is True
        client.close()
        handle.blocking.join(timeout=WAIT)

    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert "slowpoke" in records[0].getMessage()
    assert "int" in records[0].getMessage()
    for watchdog in threading.enumerate():
        if watchdog.name == "slowpoke-watchdog":
            watchdog.join(WAIT)  # the monitor thread ends with the loop
            assert not watchdog.is_alive()


def test_spawn_watchdog_silent_for_fast_requests() -> None:
    """B38: requests that finish within the watchdog limit log nothing."""
    with asyncmp_log() as (records, _):
        client, handle = thread.spawn(lambda client: Adder(client.weak()), watchdog=30)
        for n in range(20):
            assert client.blocking.send((n, n), timeout=WAIT) == 2 * n
        client.close()
        handle.blocking.join(timeout=WAIT)

    assert records == []


async def test_thread_server_serves_tasks_and_is_joined_by_await() -> None:
    """A thread server serves async clients on any event loop, and the loop awaits its
    handle."""
    client, handle = thread.spawn(lambda client: Adder(client.weak()))
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            results: dict[int, int] = {}

            async def ask(n: int) -> None:
                results[n] = await client.send((n, 1))

            for n in range(10):
                tg.start_soon(ask, n)

        assert results == {n: n + 1 for n in range(10)}
        with pytest.raises(RuntimeError, match="event loop"):
            handle.blocking.join(timeout=WAIT)
        assert await client.send("croak") == "ok, I will croak"
        assert await handle == 42
        assert await handle.join() == 42


def test_join_blocking_times_out_while_running() -> None:
    """handle.blocking.join raises TimeoutError while the loop runs; the loop is unharmed."""
    client, handle = thread.spawn(lambda client: Adder(client.weak()))

    with pytest.raises(TimeoutError):
        handle.blocking.join(timeout=0)
    with pytest.raises(ValueError):
        handle.blocking.join(timeout=-1)
    assert client.blocking.send((1, 1), timeout=WAIT) == 2
    client.close()
    assert handle.blocking.join(timeout=WAIT) is None


def test_join_from_many_threads_at_once() -> None:
    """Several threads joining one handle all get its result."""
    client, handle = thread.spawn(lambda client: Adder(client.weak()))
    results: list[object] = []
    lock = threading.Lock()

    def join() -> None:
        value = handle.blocking.join(timeout=WAIT)
        with lock:
            results.append(value)

    joiners = [threading.Thread(target=join) for _ in range(4)]
    for joiner in joiners:
        joiner.start()
    client.blocking.send("croak", timeout=WAIT)
    for joiner in joiners:
        joiner.join(WAIT)

    assert results == [42, 42, 42, 42]
