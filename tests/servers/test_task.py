"""asyncmp.task.spawn: a dispatch loop run as a task, on asyncio, uvloop and trio.

Behaviours B26 and B29–B39 of docs/design.md, and docs/servers.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import pytest
import sniffio

import asyncmp
from asyncmp import (
    Break,
    Client,
    Closed,
    Continue,
    JoinHandle,
    NoReply,
    ReplyContext,
    ServerDisappeared,
    WeakClient,
    task,
)


class Adder:
    """The seed's adder, with a stop message and a record of its life."""

    def __init__(self, weak: WeakClient[Any, Any]) -> None:
        self.weak = weak
        self.record: list[object] = []

    async def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> Break[int] | None:
        self.record.append(msg)
        if msg == "croak":
            rctx.reply("ok, I will croak")
            return Break(42)
        rctx.reply(msg[0] + msg[1])
        return None

    def term(self, rv: int | None) -> int | None:
        self.record.append(("term", rv))
        return rv


class Gated:
    """proc_req waits on a per-message gate: a test decides when each request finishes."""

    def __init__(self) -> None:
        self.record: list[tuple[str, object]] = []
        self.gates: dict[object, anyio.Event] = {}

    def gate(self, msg: object) -> anyio.Event:
        return self.gates.setdefault(msg, anyio.Event())

    async def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> Break[str] | None:
        self.record.append(("start", msg))
        await self.gate(msg).wait()
        self.record.append(("end", msg))
        if msg == "boom":
            raise ValueError("boom")
        if msg == "stop":
            rctx.reply("stopping")
            return Break("stopped")
        rctx.reply(msg)
        return None


@asynccontextmanager
async def serving(
    make_handler: Callable[[Client[Any, Any]], Any], **kwargs: Any
) -> AsyncIterator[tuple[Client[Any, Any], JoinHandle[Any]]]:
    """Spawn in a fresh task group and bound the whole test body."""
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            yield task.spawn(make_handler, task_group=tg, **kwargs)


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


async def test_spawn_round_trip_and_clients_gone_ends_loop() -> None:
    """A spawned adder answers requests; closing the only client ends the loop with None."""
    async with serving(lambda client: Adder(client.weak())) as (client, handle):
        assert await client.send((3, 7)) == 10
        assert not handle.done()
        client.close()

        assert await handle is None
        assert handle.done()


async def test_spawn_make_handler_error_is_raised_and_no_loop_runs() -> None:
    """B29: an exception from make_handler comes out of spawn; no task starts and the
    channel is closed."""
    error = ValueError("no handler today")
    seen: list[Client[Any, Any]] = []

    def make_handler(client: Client[Any, Any]) -> Adder:
        seen.append(client)
        raise error

    async with anyio.create_task_group() as tg:
        before = len(anyio.get_running_tasks())
        with pytest.raises(ValueError) as info:
            task.spawn(make_handler, task_group=tg)
        after = len(anyio.get_running_tasks())

    assert info.value is error
    assert before == after
    assert seen[0].closed
    with pytest.raises(Closed):
        await seen[0].send((1, 2))


async def test_spawn_rejects_bad_arguments() -> None:
    """Bad arguments get a clear TypeError/ValueError before make_handler is called."""
    calls: list[object] = []

    def make_handler(client: Client[Any, Any]) -> Adder:
        calls.append(client)
        return Adder(client.weak())

    async with anyio.create_task_group() as tg:
        with pytest.raises(TypeError, match="name"):
            task.spawn(make_handler, task_group=tg, name=7)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="watchdog"):
            task.spawn(make_handler, task_group=tg, watchdog="1")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="watchdog"):
            task.spawn(make_handler, task_group=tg, watchdog=0)
        with pytest.raises(TypeError, match="start_soon"):
            task.spawn(make_handler, task_group=object())  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_queued"):
            task.spawn(make_handler, task_group=tg, max_queued=0)
        with pytest.raises(TypeError, match="callable"):
            task.spawn(42, task_group=tg)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="on_error"):
            task.spawn(make_handler, task_group=tg, on_error="ignore")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="on_error"):
            task.spawn(make_handler, task_group=tg, on_error=None)  # type: ignore[arg-type]

    assert calls == []


async def test_spawn_refuses_handler_without_proc_req() -> None:
    """A handler with no proc_req is refused by spawn with TypeError, channel closed."""
    seen: list[Client[Any, Any]] = []

    def make_handler(client: Client[Any, Any]) -> object:
        seen.append(client)
        return object()

    async with anyio.create_task_group() as tg:
        with pytest.raises(TypeError, match="proc_req"):
            task.spawn(make_handler, task_group=tg)  # type: ignore[arg-type]

    assert seen[0].closed


async def test_spawn_without_task_group() -> None:
    """Without task_group, asyncio gets a task the handle keeps; trio refuses with TypeError."""
    calls: list[object] = []

    def make_handler(client: Client[Any, Any]) -> Adder:
        calls.append(client)
        return Adder(client.weak())

    if sniffio.current_async_library() == "trio":
        with pytest.raises(TypeError, match="task_group"):
            task.spawn(make_handler)

        assert calls == []
        return
    with anyio.fail_after(5):
        client, handle = task.spawn(make_handler, name="adder-task")
        assert await client.send((1, 2)) == 3
        client.close()

        assert await handle is None
        assert handle._task is not None
        assert handle._task.get_name() == "adder-task"  # type: ignore[attr-defined]


def test_spawn_outside_event_loop_raises_runtime_error() -> None:
    """task.spawn from a plain thread raises RuntimeError and builds no handler."""
    calls: list[object] = []

    with pytest.raises(RuntimeError, match="async code"):
        task.spawn(calls.append)  # type: ignore[arg-type]

    assert calls == []


async def test_spawn_clients_gone_calls_term_none_once() -> None:
    """B30: a handler that keeps only a weak client ends when the caller's client closes;
    term(None) runs once and the handle yields None."""
    adders: list[Adder] = []

    def make_handler(client: Client[Any, Any]) -> Adder:
        adders.append(Adder(client.weak()))
        return adders[0]

    async with serving(make_handler) as (client, handle):
        assert await client.send((2, 4)) == 6
        client.close()

        assert await handle is None
    assert adders[0].record == [(2, 4), ("term", None)]


async def test_spawn_break_ends_loop_after_delivering_reply() -> None:
    """B31: Break(42) ends the loop, term(42) runs, the handle yields 42 and the reply sent
    before the Break reaches its client."""
    adders: list[Adder] = []

    def make_handler(client: Client[Any, Any]) -> Adder:
        adders.append(Adder(client.weak()))
        return adders[0]

    async with serving(make_handler) as (client, handle):
        assert await client.send((2, 4)) == 6
        assert await client.send("croak") == "ok, I will croak"

        assert await handle == 42
    assert adders[0].record == [(2, 4), "croak", ("term", 42)]


async def test_spawn_strong_client_in_handler_keeps_loop_running() -> None:
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

    async with serving(make_handler) as (client, handle):
        client.close()
        await anyio.wait_all_tasks_blocked()

        assert not handle.done()
        assert await keepers[0].client.send((1, 1)) == 2
        assert await keepers[0].client.send("croak") == "ok, I will croak"
        assert await handle == 42


async def test_spawn_init_runs_once_on_loop_before_first_request() -> None:
    """B33: init runs once, in the loop's task, before the first proc_req, with a weak
    client that upgrades to a working client."""
    record: list[tuple[str, int]] = []
    upgraded: list[Client[Any, Any] | None] = []

    class WithInit(Adder):
        def init(self, weak_client: WeakClient[Any, Any]) -> None:
            record.append(("init", anyio.get_current_task().id))
            upgraded.append(weak_client.upgrade())

        async def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> Break[int] | None:
            record.append(("proc_req", anyio.get_current_task().id))
            return await super().proc_req(msg, rctx)

    async with serving(lambda client: WithInit(client.weak())) as (client, handle):
        assert await client.send((1, 2)) == 3
        assert await client.send((3, 4)) == 7
        strong = upgraded[0]
        assert isinstance(strong, asyncmp.Client)
        assert await strong.send((5, 6)) == 11
        strong.close()
        client.close()
        await handle

    me = anyio.get_current_task().id
    loop_task = record[0][1]
    assert [what for what, _ in record] == ["init", "proc_req", "proc_req", "proc_req"]
    assert {task_id for _, task_id in record} == {loop_task}
    assert loop_task != me


async def test_spawn_term_return_value_is_join_result() -> None:
    """B34: what term returns, not the Break value, is what the handle yields."""

    class Renamer(Adder):
        def term(self, rv: int | None) -> int | None:
            return -1 if rv is None else rv + 1000

    async with serving(lambda client: Renamer(client.weak())) as (client, handle):
        await client.send("croak")
        assert await handle == 1042

    async with serving(lambda client: Renamer(client.weak())) as (client, handle):
        client.close()
        assert await handle == -1


async def test_spawn_queued_requests_fail_after_break() -> None:
    """B35: requests queued when the handler breaks get ServerDisappeared; later ones fail
    at once."""
    gated = Gated()
    async with serving(lambda client: gated) as (client, handle):
        first = client.request("stop")
        await anyio.wait_all_tasks_blocked()
        queued = [client.request(n) for n in range(3)]
        gated.gate("stop").set()

        assert await handle == "stopped"
        assert await first == "stopping"
        for pending in queued:
            with pytest.raises(ServerDisappeared):
                await pending
        with pytest.raises(ServerDisappeared):
            await client.send(99)
    assert gated.record == [("start", "stop"), ("end", "stop")]


async def test_spawn_raising_handler_fails_request_queue_and_join() -> None:
    """B36: proc_req raising gives its request NoReply (cause: the exception), queued ones
    ServerDisappeared, and joining raises that exception; term is not called."""
    terms: list[object] = []

    class Raising(Gated):
        def term(self, rv: object) -> object:
            terms.append(rv)
            return rv

    gated = Raising()
    async with serving(lambda client: gated) as (client, handle):
        in_hand = client.request("boom")
        await anyio.wait_all_tasks_blocked()
        queued = [client.request(n) for n in range(3)]
        gated.gate("boom").set()

        with pytest.raises(ValueError, match="boom") as info:
            await handle
        with pytest.raises(NoReply) as no_reply:
            await in_hand
        for pending in queued:
            with pytest.raises(ServerDisappeared):
                await pending
        with pytest.raises(ValueError) as again:
            await handle.join()

    assert no_reply.value.__cause__ is info.value
    assert again.value is info.value
    assert handle.done()
    assert terms == []
    assert "failed" in repr(handle)


async def test_spawn_raising_after_reply_keeps_the_reply() -> None:
    """A request answered before proc_req raised gets its reply, not NoReply."""

    class ReplyThenRaise:
        async def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> None:
            rctx.reply(msg * 2)
            raise KeyError(msg)

    async with serving(lambda client: ReplyThenRaise()) as (client, handle):
        assert await client.send(21) == 42
        with pytest.raises(KeyError):
            await handle


async def test_spawn_return_value_instead_of_reply_is_the_no_reply_cause() -> None:
    """A proc_req that returns a value instead of replying gives its request NoReply whose
    __cause__ is the TypeError that ends the loop."""

    class Returns:
        async def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> Any:
            return msg * 2

    async with serving(lambda client: Returns()) as (client, handle):
        with pytest.raises(NoReply) as no_reply:
            await client.send(21)
        with pytest.raises(TypeError, match="proc_req must return") as info:
            await handle

    assert no_reply.value.__cause__ is info.value


class Faulty:
    """A handler with every kind of per-request bug, chosen by the message."""

    async def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> Any:
        if msg in ("raise", "fatal"):
            raise KeyError(msg)
        if msg == "twice":
            rctx.reply("first")
            rctx.reply("second")  # AlreadyReplied
        if msg == "fail-text":
            rctx.fail("text")  # type: ignore[arg-type]  # TypeError
        if msg == "return":
            return "value"  # TypeError: not a flow value
        rctx.reply(msg)
        return None


async def test_spawn_on_error_continue_fails_only_the_request_in_hand() -> None:
    """on_error="continue": a raise, a second reply, fail("text") and `return value` each
    fail only their own request (NoReply caused by the exception, or the reply already
    given), are logged on the asyncmp logger, and the loop goes on."""
    with asyncmp_log() as (records, _):
        async with serving(lambda client: Faulty(), on_error="continue") as (client, handle):
            with pytest.raises(NoReply) as raised:
                await client.send("raise")
            assert await client.send("twice") == "first"
            with pytest.raises(NoReply) as failed:
                await client.send("fail-text")
            with pytest.raises(NoReply) as returned:
                await client.send("return")
            assert await client.send("ok") == "ok"
            assert not handle.done()
            client.close()
            assert await handle is None

    assert isinstance(raised.value.__cause__, KeyError)
    assert isinstance(failed.value.__cause__, TypeError)
    assert isinstance(returned.value.__cause__, TypeError)
    assert [type(r.exc_info[1]) for r in records if r.exc_info] == [
        KeyError,
        asyncmp.AlreadyReplied,
        TypeError,
        TypeError,
    ]
    assert all(r.levelno == logging.ERROR and "goes on" in r.getMessage() for r in records)


async def test_spawn_on_error_callable_sees_each_failure_and_may_end_the_loop() -> None:
    """on_error=callable (here an async def) is called with the exception and the message
    after the request got NoReply; the loop goes on, unless the callable raises: then the
    loop ends with what it raised."""
    seen: list[tuple[type[BaseException], object]] = []

    async def on_error(exc: Exception, msg: Any) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append((type(exc), msg))
        if msg == "fatal":
            raise RuntimeError("stop now") from exc

    async with serving(lambda client: Faulty(), on_error=on_error) as (client, handle):
        with pytest.raises(NoReply):
            await client.send("raise")
        assert await client.send("ok") == "ok"
        with pytest.raises(NoReply):
            await client.send("fatal")
        with pytest.raises(RuntimeError, match="stop now"):
            await handle
        with pytest.raises(ServerDisappeared):
            await client.send("ok")

    assert seen == [(KeyError, "raise"), (KeyError, "fatal")]


async def test_spawn_on_error_continue_still_ends_on_cancellation() -> None:
    """on_error="continue" does not catch cancellation: a cancelled task group still ends
    the loop (the request in hand gets NoReply, joining raises RuntimeError)."""
    gated = Gated()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            client, handle = task.spawn(lambda client: gated, task_group=tg, on_error="continue")
            in_hand = client.request("never")
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()

        with pytest.raises(NoReply):
            await in_hand
        with pytest.raises(RuntimeError, match="cancelled"):
            await handle


async def test_spawn_dispatches_serially_in_fifo_order() -> None:
    """B37: proc_req of B does not start before proc_req of A has finished, and requests
    from several clients are handled in the order they were sent."""
    gated = Gated()
    async with serving(lambda client: gated) as (client, handle):
        other = client.clone()
        pendings = [client.request("a"), other.request("b"), client.request("c")]
        await anyio.wait_all_tasks_blocked()
        assert gated.record == [("start", "a")]

        gated.gate("a").set()
        await anyio.wait_all_tasks_blocked()
        assert gated.record == [("start", "a"), ("end", "a"), ("start", "b")]

        gated.gate("b").set()
        gated.gate("c").set()
        assert [await p for p in pendings] == ["a", "b", "c"]
        other.close()
        client.close()
        await handle
    assert gated.record == [
        ("start", "a"),
        ("end", "a"),
        ("start", "b"),
        ("end", "b"),
        ("start", "c"),
        ("end", "c"),
    ]


async def test_spawn_withdrawn_requests_never_reach_handler() -> None:
    """B26: requests withdrawn while queued (cancelled send, cancelled pending reply, timed
    out blocking send) never reach proc_req, and the loop goes on serving."""
    gated = Gated()
    async with serving(lambda client: gated) as (client, handle):
        first = client.request("first")
        await anyio.wait_all_tasks_blocked()

        client.request("dropped").cancel()
        with anyio.move_on_after(5) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.send, "cancelled")
                await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught
        with pytest.raises(TimeoutError):
            await anyio.to_thread.run_sync(lambda: client.blocking.send("timed out", 0.01))

        gated.gate("first").set()
        gated.gate("last").set()
        assert await first == "first"
        assert await client.send("last") == "last"
        client.close()
        await handle
    assert [msg for what, msg in gated.record if what == "start"] == ["first", "last"]


async def test_spawn_clones_closed_one_by_one_end_loop_only_after_last() -> None:
    """B39: with N clones, the loop ends only when the last one is closed."""
    async with serving(lambda client: Adder(client.weak())) as (client, handle):
        clones = [client.clone() for _ in range(3)]
        client.close()
        for clone in clones:
            await anyio.wait_all_tasks_blocked()
            assert not handle.done()
            assert await clone.send((1, 1)) == 2
            clone.close()

        assert await handle is None


async def test_spawn_continue_forms_go_on_and_bad_return_stops_loop() -> None:
    """None, Continue and Continue() keep the loop going; any other return value ends it
    with TypeError."""

    class Flows:
        async def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> Any:
            rctx.reply(msg)
            return {"none": None, "class": Continue, "instance": Continue()}.get(msg, msg)

    async with serving(lambda client: Flows()) as (client, handle):
        for msg in ("none", "class", "instance"):
            assert await client.send(msg) == msg
        assert not handle.done()
        assert await client.send(5) == 5
        with pytest.raises(TypeError, match="proc_req must return"):
            await handle
        with pytest.raises(ServerDisappeared):
            await client.send("none")
    assert Continue() is Continue()


async def test_spawn_accepts_plain_def_and_async_hooks() -> None:
    """A task handler may use a plain-def proc_req and async-def init and term."""
    record: list[str] = []

    class Mixed:
        async def init(self, weak_client: WeakClient[Any, Any]) -> None:
            await anyio.lowlevel.checkpoint()
            record.append("init")

        def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> Break[str] | None:
            rctx.reply(msg + 1)
            return Break("done") if msg == 0 else None

        async def term(self, rv: str | None) -> str:
            await anyio.lowlevel.checkpoint()
            return f"term:{rv}"

    async with serving(lambda client: Mixed()) as (client, handle):
        assert await client.send(1) == 2
        assert await client.send(0) == 1

        assert await handle == "term:done"
    assert record == ["init"]


async def test_spawn_unanswered_dropped_reply_context_gives_no_reply_at_once() -> None:
    """A proc_req that neither answers nor keeps its reply context makes the requester get
    NoReply before any further request arrives."""

    class Forgetful:
        async def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> None:
            pass

    async with serving(lambda client: Forgetful()) as (client, handle):
        with pytest.raises(NoReply):
            await client.send(1)
        client.close()
        await handle


async def test_spawn_handler_may_answer_later_from_elsewhere() -> None:
    """A handler that hands rctx to another task returns at once; the reply arrives later
    and the loop is free for the next request meanwhile."""
    async with anyio.create_task_group() as workers:

        class Delegating:
            async def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> None:
                if msg == "slow":
                    workers.start_soon(self.answer_later, rctx)
                else:
                    rctx.reply("fast")

            async def answer_later(self, rctx: ReplyContext[Any]) -> None:
                await release.wait()
                rctx.reply("slow")

        release = anyio.Event()
        async with serving(lambda client: Delegating()) as (client, handle):
            slow = client.request("slow")
            assert await client.send("fast") == "fast"
            assert not slow.done()
            release.set()
            assert await slow == "slow"
            client.close()
            await handle


async def test_spawn_name_names_the_task() -> None:
    """name= is the name of the loop's task."""
    names: list[str | None] = []

    class Namer:
        async def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> None:
            names.append(anyio.get_current_task().name)
            rctx.reply(None)

    async with serving(lambda client: Namer(), name="kv-server") as (client, handle):
        await client.send(1)
        client.close()
        await handle

    assert names == ["kv-server"]
    assert "kv-server" in repr(handle)


async def test_spawn_watchdog_warns_on_slow_request_which_still_completes() -> None:
    """B38: a proc_req running past the watchdog limit logs a warning on logger "asyncmp"
    while it runs, and its reply is still delivered."""
    with asyncmp_log() as (records, seen):

        class Slow:
            async def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> None:
                # Finish only once the watchdog has spoken: no timing assumption.
                warned = await anyio.to_thread.run_sync(seen.wait, 5)
                rctx.reply(warned)

        async with serving(lambda client: Slow(), name="slowpoke", watchdog=0.01) as (
            client,
            handle,
        ):
            assert await client.send("x") is True
            client.close()
            await handle

    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert "slowpoke" in records[0].getMessage()
    assert "str" in records[0].getMessage()


async def test_spawn_watchdog_silent_for_fast_requests() -> None:
    """B38: requests that finish within the watchdog limit log nothing."""
    with asyncmp_log() as (records, _):
        async with serving(lambda client: Adder(client.weak()), watchdog=30) as (client, handle):
            for n in range(20):
                assert await client.send((n, n)) == 2 * n
            client.close()
            await handle

    assert records == []


async def test_spawn_cancelled_task_group_fails_requests_and_join() -> None:
    """Cancelling the loop's task group gives the request in hand NoReply, queued ones
    ServerDisappeared, and joining raises RuntimeError."""
    gated = Gated()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            client, handle = task.spawn(lambda client: gated, task_group=tg)
            in_hand = client.request("never")
            await anyio.wait_all_tasks_blocked()
            queued = client.request("queued")
            tg.cancel_scope.cancel()

        with pytest.raises(NoReply):
            await in_hand
        with pytest.raises(ServerDisappeared):
            await queued
        with pytest.raises(RuntimeError, match="cancelled"):
            await handle
    assert gated.record == [("start", "never")]


async def test_join_from_thread_and_from_another_event_loop() -> None:
    """A handle can be joined from a plain thread and from a task on another event loop in
    another thread, while the loop runs here."""

    def join_on(backend: str) -> object:
        async def join() -> object:
            return await handle

        return anyio.run(join, backend=backend)

    results: list[object] = []
    async with (
        serving(lambda client: Adder(client.weak())) as (client, handle),
        anyio.create_task_group() as tg,
    ):

        async def in_thread(fn: Callable[..., object], *args: object) -> None:
            results.append(await anyio.to_thread.run_sync(fn, *args))

        tg.start_soon(in_thread, handle.blocking.join, 5)
        tg.start_soon(in_thread, join_on, "asyncio")
        tg.start_soon(in_thread, join_on, "trio")
        assert await client.send((1, 2)) == 3
        assert await client.send("croak") == "ok, I will croak"

    assert results == [42, 42, 42]


async def test_join_blocking_times_out_and_refuses_loop_thread() -> None:
    """handle.blocking.join raises TimeoutError while the loop runs, and RuntimeError when
    called on an event-loop thread."""
    async with serving(lambda client: Adder(client.weak())) as (client, handle):
        with pytest.raises(RuntimeError, match="event loop"):
            handle.blocking.join(timeout=5)
        with pytest.raises(TimeoutError):
            await anyio.to_thread.run_sync(handle.blocking.join, 0.01)
        client.close()
        assert await anyio.to_thread.run_sync(handle.blocking.join, 5) is None
        assert await anyio.to_thread.run_sync(handle.blocking.join, 0) is None


async def test_join_cancelled_leaves_loop_running() -> None:
    """Cancelling a join only stops that wait: the loop keeps serving."""
    async with serving(lambda client: Adder(client.weak())) as (client, handle):
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle.join)
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()

        assert not handle.done()
        assert await client.send((2, 2)) == 4
        client.close()
        assert await handle is None


def test_join_handle_and_flow_values_are_not_built_by_users() -> None:
    """JoinHandle has no public constructor; Break carries its value; Continue is one."""
    with pytest.raises(TypeError):
        JoinHandle()
    assert Break(3).value == 3
    assert Break(3) == Break(3)
    assert repr(Continue()) == "Continue()"
    assert asyncmp.Break is Break


def test_unjoined_failed_handle_is_logged_when_collected() -> None:
    """A loop that died of an exception nobody joined logs an error when its handle goes."""
    handle: JoinHandle[Any] | None = JoinHandle._create("lost")
    assert handle is not None
    handle._finish(None, ValueError("lost error"))
    with asyncmp_log() as (records, _):
        del handle

    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert "lost" in records[0].getMessage()


def test_unjoined_cancelled_handle_is_not_logged() -> None:
    """A loop that was cancelled (not the handler's failure) logs nothing if nobody joins."""
    handle: JoinHandle[Any] | None = JoinHandle._create("cancelled")
    assert handle is not None
    handle._finish(None, RuntimeError("cancelled"), quiet=True)
    with asyncmp_log() as (records, _):
        del handle

    assert records == []


async def test_spawn_task_cancelled_before_it_started_still_finishes() -> None:
    """A loop task cancelled before its first step (asyncio only) still closes the server
    and finishes the handle, so no joiner or requester hangs."""
    if sniffio.current_async_library() == "trio":
        return  # trio always starts a task; spawn without task_group is refused there
    with anyio.fail_after(5):
        client, handle = task.spawn(lambda client: Adder(client.weak()))
        pending = client.request((1, 2))
        handle._task.cancel()  # type: ignore[attr-defined]

        with pytest.raises(RuntimeError, match="never started"):
            await handle
        with pytest.raises(ServerDisappeared):
            await pending


async def test_spawn_long_queue_does_not_starve_other_tasks() -> None:
    """A loop draining a long queue lets other tasks of its event loop run now and then."""
    record: list[str] = []

    class Recorder:
        async def proc_req(self, msg: Any, rctx: ReplyContext[Any]) -> None:
            record.append("req")  # never awaits: only the loop itself can yield
            rctx.reply(msg)

    async def observer() -> None:
        while True:
            record.append("tick")
            await anyio.lowlevel.checkpoint()

    async with serving(lambda client: Recorder()) as (client, handle):
        async with anyio.create_task_group() as tg:
            pendings = [client.request(n) for n in range(1000)]
            tg.start_soon(observer)
            assert [await p for p in pendings] == list(range(1000))
            tg.cancel_scope.cancel()
        client.close()
        await handle

    longest_run = max(
        len(run) for run in "".join("r" if what == "req" else " " for what in record).split()
    )
    assert longest_run <= 128
