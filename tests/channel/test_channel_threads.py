"""Channels across threads and event loops: no object is bound to a loop or a thread, wake-ups
cross both, and blocking calls refuse to run on a loop thread (docs/threads.md)."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import trio
import uvloop

import asyncmp
from asyncmp import NoReply, ServerDisappeared


def run_thread(target: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def threaded_server(server: asyncmp.Server[Any, Any]) -> threading.Thread:
    def serve() -> None:
        for msg, rctx in server.blocking:
            rctx.reply(("re", msg))

    return run_thread(serve)


def test_one_client_from_asyncio_uvloop_trio_and_a_thread_at_once() -> None:
    """One client is used from an asyncio loop, a uvloop loop, a trio run and a plain thread at
    the same time, and every caller gets its own replies."""
    server, client = asyncmp.channel()
    srv = threaded_server(server)
    start = threading.Barrier(4, timeout=10)
    results: dict[str, list[Any]] = {}

    async def many(tag: str) -> None:
        start.wait()
        results[tag] = [await client.send((tag, i)) for i in range(50)]

    def in_thread() -> None:
        start.wait()
        results["thread"] = [client.blocking.send(("thread", i), timeout=10) for i in range(50)]

    threads = [
        run_thread(lambda: asyncio.run(many("asyncio"))),
        run_thread(lambda: uvloop.run(many("uvloop"))),
        run_thread(lambda: trio.run(many, "trio")),
        run_thread(in_thread),
    ]
    for t in threads:
        t.join(30)
    client.close()
    srv.join(10)

    for tag in ("asyncio", "uvloop", "trio", "thread"):
        assert results[tag] == [("re", (tag, i)) for i in range(50)]


@pytest.mark.parametrize("runner", ["asyncio", "uvloop", "trio"])
def test_server_on_one_loop_client_on_another(runner: str) -> None:
    """A server task on one event loop serves a client task on a different loop in another
    thread: wake-ups cross loops in both directions."""
    server, client = asyncmp.channel()
    ready = threading.Event()

    async def serve() -> None:
        ready.set()
        async for msg, rctx in server:
            rctx.reply(msg + 1)

    async def ask() -> list[int]:
        return [await client.send(i) for i in range(20)]

    srv = run_thread(lambda: asyncio.run(serve()))
    assert ready.wait(10)
    if runner == "asyncio":
        result = asyncio.run(ask())
    elif runner == "uvloop":
        result = uvloop.run(ask())
    else:
        result = trio.run(ask)
    client.close()
    srv.join(10)

    assert result == list(range(1, 21))
    assert not srv.is_alive()


async def test_blocking_calls_on_a_loop_thread_raise_runtime_error() -> None:
    """Every blocking call made on a thread that runs an event loop raises RuntimeError at once
    instead of deadlocking."""
    server, client = asyncmp.channel()
    pending = client.request(1)

    with pytest.raises(RuntimeError, match="event loop"):
        client.blocking.send(1)
    with pytest.raises(RuntimeError, match="event loop"):
        server.blocking.wait()
    with pytest.raises(RuntimeError, match="event loop"):
        pending.blocking.wait()
    assert not pending.done()  # the refused calls changed nothing


@pytest.mark.parametrize("bad", [-1, float("nan"), "1", True])
def test_blocking_timeout_rejects_bad_values(bad: Any) -> None:
    """Bad input: a timeout that is negative, NaN or not a number is refused."""
    server, client = asyncmp.channel()

    with pytest.raises((TypeError, ValueError)):
        client.blocking.send(1, timeout=bad)
    with pytest.raises((TypeError, ValueError)):
        server.blocking.wait(timeout=bad)


def test_blocking_send_timeout_withdraws_queued_request() -> None:
    """blocking.send(timeout=...) raises TimeoutError and withdraws a request the server has
    not picked up: the server never sees it."""
    server, client = asyncmp.channel()

    with pytest.raises(TimeoutError):
        client.blocking.send("late", timeout=0)

    assert server.try_pop() is None
    assert server.statistics().queued == 0


def test_blocking_send_timeout_after_pickup_makes_reply_false() -> None:
    """A blocking send that times out after the server picked it up makes the server's
    reply() return False (and the request is not withdrawn twice)."""
    server, client = asyncmp.channel()
    picked: list[asyncmp.ReplyContext[Any]] = []

    def serve() -> None:
        # Pick every request up at once and keep the contexts unanswered.
        for _, rctx in server.blocking:
            picked.append(rctx)

    srv = run_thread(serve)
    # The timeout must fire after the pickup; retry with a longer timeout whenever the server
    # was too slow to pick the request up first (then it was withdrawn and never seen).
    timeout = 0.01
    while not picked:
        with pytest.raises(TimeoutError):
            client.blocking.send("x", timeout=timeout)
        timeout *= 2
        assert timeout < 60
    client.close()
    srv.join(10)

    assert len(picked) == 1
    assert picked[0].reply("late") is False


def test_blocking_server_wait_times_out() -> None:
    """server.blocking.wait(timeout=...) raises TimeoutError when nothing arrives."""
    server, client = asyncmp.channel()

    with pytest.raises(TimeoutError):
        server.blocking.wait(timeout=0)
    client.close()


def test_pending_reply_blocking_wait_from_a_temporary() -> None:
    """`client.request(x).blocking.wait()` keeps the request alive while it waits."""
    server, client = asyncmp.channel()
    srv = threaded_server(server)

    result = client.request(5).blocking.wait(timeout=10)
    client.close()
    srv.join(10)

    assert result == ("re", 5)


def test_blocking_pending_wait_timeout_gives_up_the_request() -> None:
    """pending.blocking.wait(timeout) raising TimeoutError gives the request up (withdrawn)."""
    server, client = asyncmp.channel()
    pending = client.request(1)

    with pytest.raises(TimeoutError):
        pending.blocking.wait(timeout=0)

    assert pending.done()
    assert server.try_pop() is None


def test_reply_from_thread_wakes_blocked_thread() -> None:
    """A reply made on one thread wakes a requester blocked on another thread."""
    server, client = asyncmp.channel()
    srv = threaded_server(server)

    assert client.blocking.send("hi", timeout=10) == ("re", "hi")
    client.close()
    srv.join(10)


# -- garbage collection --------------------------------------------------------------------


def test_collected_client_counts_as_closed() -> None:
    """A client that is garbage-collected counts as closed: the server sees
    ClientsDisappeared."""
    server, client = asyncmp.channel()
    del client
    gc.collect()

    with pytest.raises(asyncmp.ClientsDisappeared):
        server.try_pop()


def test_collected_server_fails_queued_requests() -> None:
    """A server that is garbage-collected counts as closed: queued requests get
    ServerDisappeared."""
    server, client = asyncmp.channel()
    pending = client.request(1)
    del server
    gc.collect()

    with pytest.raises(ServerDisappeared):
        pending.blocking.wait(timeout=5)
    with pytest.raises(ServerDisappeared):
        client.request(2)


def test_collected_reply_context_gives_no_reply() -> None:
    """A reply context that is garbage-collected unanswered makes the client get NoReply."""
    server, client = asyncmp.channel()
    pending = client.request(1)
    item = server.try_pop()
    assert item is not None
    del item
    gc.collect()

    with pytest.raises(NoReply):
        pending.blocking.wait(timeout=5)
    assert server.statistics().in_flight == 0


def test_collected_pending_reply_gives_up_the_request() -> None:
    """A pending reply dropped before pickup is withdrawn; dropped after, reply() is False."""
    server, client = asyncmp.channel()
    client.request("dropped")
    kept = client.request("kept")
    gc.collect()

    item = server.try_pop()
    assert item is not None
    assert item[0] == "kept"
    del kept
    gc.collect()

    assert item[1].reply(None) is False


def test_cancelled_asyncio_server_passes_its_wakeup_on() -> None:
    """asyncio: a server task woken for a request and then cancelled passes the wake-up to the
    next parked server task, which gets the request (no lost wake-up)."""
    server, client = asyncmp.channel()

    async def main() -> Any:
        first = asyncio.create_task(server.wait())
        second = asyncio.create_task(server.wait())
        await asyncio.sleep(0)  # both park (a scheduling step, not a timing assumption)
        assert len(server._channel.server_waiters) == 2
        pending = client.request("only")
        first.cancel()  # woken (its future is resolved) and cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        msg, rctx = await asyncio.wait_for(second, 5)
        rctx.reply(msg)
        return await pending

    assert asyncio.run(main()) == "only"


def test_reply_to_a_closed_loop_is_harmless() -> None:
    """A reply for a task whose event loop has since closed returns without error."""
    server, client = asyncmp.channel()
    got: list[asyncmp.ReplyContext[Any]] = []

    async def main() -> None:
        task = asyncio.ensure_future(client.send("x"))
        await asyncio.sleep(0)
        item = server.try_pop()
        assert item is not None
        got.append(item[1])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())

    assert got[0].reply("late") is False


async def test_anyio_portal_thread_and_task_share_a_server() -> None:
    """A task server answers requests made from anyio worker threads and tasks concurrently."""
    server, client = asyncmp.channel()
    results: list[Any] = []

    async def serve() -> None:
        async for msg, rctx in server:
            rctx.reply(msg * 10)

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as inner:
                for i in range(5):
                    inner.start_soon(
                        lambda i=i: anyio.to_thread.run_sync(
                            lambda: results.append(client.blocking.send(i, timeout=10))
                        )
                    )

                    async def one(i: int = i) -> None:
                        results.append(await client.send(100 + i))

                    inner.start_soon(one)
        client.close()

    assert sorted(results) == sorted(
        [i * 10 for i in range(5)] + [(100 + i) * 10 for i in range(5)]
    )
