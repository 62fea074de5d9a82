"""The request/reply channel: behaviours B1–B28 of docs/design.md and the API of
docs/channels.md, on asyncio, asyncio+uvloop and trio."""

from __future__ import annotations

import gc
import threading
import types
from types import ModuleType
from typing import Any

import anyio
import pytest

import asyncmp
from asyncmp import (
    AlreadyReplied,
    ClientsDisappeared,
    Closed,
    NoReply,
    ReplyContext,
    ServerDisappeared,
    WouldBlock,
)
from bounds import WAIT


async def serve_forever(server: asyncmp.Server[Any, Any], fn: Any = lambda m: m * 2) -> None:
    async for msg, rctx in server:
        rctx.reply(fn(msg))


# -- B1–B3: the three outcomes -------------------------------------------------------------


async def test_send_returns_the_servers_reply() -> None:
    """B1: send(x) returns what the server replied for x."""
    server, client = asyncmp.channel()
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_forever, server)
        with anyio.fail_after(5):
            result = await client.send(21)
        client.close()

    assert result == 42


async def test_fail_raises_the_very_exception_object_at_the_client() -> None:
    """B2: rctx.fail(exc) makes send raise that same object, so `except ValueError` works."""
    server, client = asyncmp.channel()
    sent = ValueError("bad input")

    async def fail_it() -> None:
        _, rctx = await server.wait()
        assert rctx.fail(sent) is True

    async with anyio.create_task_group() as tg:
        tg.start_soon(fail_it)
        with anyio.fail_after(5), pytest.raises(ValueError) as info:
            await client.send("x")

    assert info.value is sent


async def test_closing_reply_context_unanswered_gives_no_reply() -> None:
    """B3: a reply context closed without an answer makes send raise NoReply."""
    server, client = asyncmp.channel()

    async def drop_it() -> None:
        _, rctx = await server.wait()
        rctx.close()
        rctx.close()  # idempotent

    async with anyio.create_task_group() as tg:
        tg.start_soon(drop_it)
        with anyio.fail_after(5), pytest.raises(NoReply):
            await client.send("x")


async def test_with_block_left_by_exception_gives_no_reply_caused_by_it() -> None:
    """Leaving `with rctx:` through an exception gives NoReply whose __cause__ is that exception."""
    server, client = asyncmp.channel()
    boom = KeyError("boom")

    async def crash() -> None:
        _, rctx = await server.wait()
        with pytest.raises(KeyError), rctx:
            raise boom

    async with anyio.create_task_group() as tg:
        tg.start_soon(crash)
        with anyio.fail_after(5), pytest.raises(NoReply) as info:
            await client.send("x")

    assert info.value.__cause__ is boom


async def test_with_block_left_normally_unanswered_gives_no_reply() -> None:
    """Leaving `with rctx:` normally without answering gives NoReply with no cause."""
    server, client = asyncmp.channel()

    async def forget() -> None:
        _, rctx = await server.wait()
        with rctx:
            pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(forget)
        with anyio.fail_after(5), pytest.raises(NoReply) as info:
            await client.send("x")

    assert info.value.__cause__ is None


# -- B4, B5: reply contexts are independent of the server ---------------------------------


async def test_reply_from_another_thread_later_reaches_the_task() -> None:
    """B4: a reply context moved to a plain thread and answered there wakes the waiting task."""
    server, client = asyncmp.channel()
    result: list[int] = []

    async def requester() -> None:
        result.append(await client.send(5))

    async with anyio.create_task_group() as tg:
        tg.start_soon(requester)
        msg, rctx = await server.wait()
        with anyio.fail_after(5):
            await anyio.to_thread.run_sync(rctx.reply, msg + 1)

    assert result == [6]


async def test_reply_after_server_closed_is_delivered() -> None:
    """B5: closing the server does not affect reply contexts already picked up."""
    server, client = asyncmp.channel()
    result: list[str] = []

    async def requester() -> None:
        result.append(await client.send("ping"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(requester)
        _, rctx = await server.wait()
        server.close()
        assert rctx.reply("pong") is True

    assert result == ["pong"]


# -- B6–B8, B20: the server goes away ------------------------------------------------------


async def test_queued_request_gets_server_disappeared_when_server_closes() -> None:
    """B6/B8: every request still queued when the server closes fails with ServerDisappeared."""
    server, client = asyncmp.channel()
    errors: list[BaseException] = []

    async def requester(i: int) -> None:
        try:
            await client.send(i)
        except ServerDisappeared as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(requester, i)
        await anyio.wait_all_tasks_blocked()
        assert server.statistics().queued == 3
        server.close()

    assert len(errors) == 3
    assert len({id(e) for e in errors}) == 3  # one fresh exception per request


async def test_send_after_server_closed_fails_at_once() -> None:
    """B7: send, request and blocking.send on a closed server raise ServerDisappeared at once."""
    server, client = asyncmp.channel()
    server.close()

    with anyio.fail_after(5), pytest.raises(ServerDisappeared):
        await client.send(1)
    with pytest.raises(ServerDisappeared):
        client.request(1)
    with pytest.raises(ServerDisappeared):
        await anyio.to_thread.run_sync(client.blocking.send, 1)


async def test_pending_reply_gets_server_disappeared_when_server_closes() -> None:
    """B20: a request() whose server closes while it is queued raises ServerDisappeared."""
    server, client = asyncmp.channel()
    pending = client.request("x")
    server.close()

    assert pending.done()
    with anyio.fail_after(5), pytest.raises(ServerDisappeared):
        await pending


# -- B9–B12, B15, B39: the clients go away -------------------------------------------------


async def test_server_sees_clients_disappeared_when_last_client_closes() -> None:
    """B9: with every strong client closed and nothing queued, wait and try_pop raise
    ClientsDisappeared."""
    server, client = asyncmp.channel()
    client.close()

    with anyio.fail_after(5), pytest.raises(ClientsDisappeared):
        await server.wait()
    with pytest.raises(ClientsDisappeared):
        server.try_pop()


async def test_server_drains_queue_in_fifo_order_before_clients_disappeared() -> None:
    """B10: requests queued before the last client closed all reach the server, in order."""
    server, client = asyncmp.channel()
    pendings = [client.request(i) for i in range(5)]
    client.close()
    seen = []

    with anyio.fail_after(5):
        async for msg, rctx in server:
            seen.append(msg)
            rctx.reply(msg)
    results = [await p for p in pendings]

    assert seen == [0, 1, 2, 3, 4]
    assert results == [0, 1, 2, 3, 4]


async def test_parked_server_wakes_with_clients_disappeared() -> None:
    """B11: a server parked in wait() wakes and raises ClientsDisappeared when the last client
    closes."""
    server, client = asyncmp.channel()
    raised: list[BaseException] = []

    async def wait_it() -> None:
        try:
            await server.wait()
        except ClientsDisappeared as exc:
            raised.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_it)
            await anyio.wait_all_tasks_blocked()
            client.close()

    assert len(raised) == 1


async def test_weak_client_does_not_keep_server_alive() -> None:
    """B12: a server whose only remaining client is weak sees ClientsDisappeared."""
    server, client = asyncmp.channel()
    weak = client.weak()
    client.close()

    with anyio.fail_after(5), pytest.raises(ClientsDisappeared):
        await server.wait()
    assert weak.upgrade() is None


async def test_closing_original_client_leaves_clone_working() -> None:
    """B15: a clone keeps working, and keeps the server alive, after the original closes."""
    server, client = asyncmp.channel()
    clone = client.clone()
    client.close()

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_forever, server)
        with anyio.fail_after(5):
            assert await clone.send(2) == 4
        assert server.statistics().clients == 1
        clone.close()


def test_clients_disappeared_only_after_last_of_many_clones() -> None:
    """B39: with N clones closed one by one, ClientsDisappeared appears only after the last."""
    server, client = asyncmp.channel()
    clones = [client.clone() for _ in range(4)]
    client.close()
    for c in clones[:-1]:
        c.close()

        assert server.try_pop() is None
    clones[-1].close()

    with pytest.raises(ClientsDisappeared):
        server.try_pop()


# -- B13, B14: weak clients ----------------------------------------------------------------


async def test_weak_client_upgrades_to_a_working_client() -> None:
    """B13: while a strong client exists, upgrade() returns a client that can send."""
    server, client = asyncmp.channel()
    upgraded = client.weak().upgrade()
    assert upgraded is not None

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_forever, server)
        with anyio.fail_after(5):
            assert await upgraded.send(3) == 6
        assert server.statistics().clients == 2
        upgraded.close()
        client.close()


def test_weak_client_upgrade_returns_none_without_strong_clients() -> None:
    """B14: upgrade() returns None once every strong client is closed, server alive or not."""
    server, client = asyncmp.channel()
    weak = client.weak()
    client.close()

    assert weak.upgrade() is None
    assert not server.closed


def test_weak_client_upgrade_returns_none_after_server_closed() -> None:
    """B14, asyncmp's addition: upgrade() returns None once the server is closed, even with
    clients left."""
    server, client = asyncmp.channel()
    weak = client.weak()
    server.close()

    assert weak.upgrade() is None
    client.close()


# -- B16–B19: ordering, no cross-talk, try_pop, early replies ------------------------------


async def test_requests_from_two_clients_arrive_in_push_order() -> None:
    """B16: one FIFO for all clients: A pushed before B is seen before B."""
    server, client = asyncmp.channel()
    other = client.clone()
    a = client.request("A")
    b = other.request("B")

    first = server.try_pop()
    second = server.try_pop()

    assert first is not None
    assert second is not None
    assert (first[0], second[0]) == ("A", "B")
    first[1].reply(1)
    second[1].reply(2)
    with anyio.fail_after(5):
        assert (await a, await b) == (1, 2)


async def test_out_of_order_replies_reach_their_own_requesters() -> None:
    """B17: a server answering the second request first causes no cross-talk."""
    server, client = asyncmp.channel()
    results: dict[str, str] = {}

    async def requester(name: str) -> None:
        results[name] = await client.send(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(requester, "first")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(requester, "second")
        await anyio.wait_all_tasks_blocked()
        m1, r1 = await server.wait()
        m2, r2 = await server.wait()
        r2.reply(f"re:{m2}")
        r1.reply(f"re:{m1}")

    assert results == {"first": "re:first", "second": "re:second"}


def test_try_pop_returns_none_when_empty_and_the_message_when_queued() -> None:
    """B18: try_pop gives None on an empty queue with clients alive, else the message."""
    server, client = asyncmp.channel()
    assert server.try_pop() is None
    pending = client.request("hello")

    item = server.try_pop()

    assert item is not None
    assert item[0] == "hello"
    item[1].reply("hi")
    assert pending.blocking.wait(timeout=5) == "hi"


async def test_reply_before_wait_is_returned_at_once() -> None:
    """B19: a request() answered before anyone waits returns the reply straight away."""
    server, client = asyncmp.channel()
    pending = client.request(1)
    item = server.try_pop()
    assert item is not None
    item[1].reply(100)

    assert pending.done()
    with anyio.fail_after(5):
        assert await pending == 100


# -- B21: answer once ----------------------------------------------------------------------


def test_second_reply_or_fail_raises_already_replied() -> None:
    """B21: a reply context answers once; a second reply/fail raises AlreadyReplied."""
    server, client = asyncmp.channel()
    pending = client.request(1)
    item = server.try_pop()
    assert item is not None
    rctx = item[1]
    assert not rctx.answered

    rctx.reply(1)

    assert rctx.answered
    assert pending.done()
    with pytest.raises(AlreadyReplied):
        rctx.reply(2)
    with pytest.raises(AlreadyReplied):
        rctx.fail(ValueError())
    assert isinstance(AlreadyReplied(), RuntimeError)


def test_fail_rejects_non_exceptions() -> None:
    """Bad input: rctx.fail() with something that is not an exception raises TypeError and
    leaves the context usable."""
    server, client = asyncmp.channel()
    pending = client.request(1)
    item = server.try_pop()
    assert item is not None

    with pytest.raises(TypeError):
        item[1].fail("not an exception")  # type: ignore[arg-type]

    assert item[1].reply(5) is True
    assert pending.blocking.wait(timeout=5) == 5


# -- B22–B26: the requester goes away ------------------------------------------------------


async def test_cancel_while_queued_withdraws_the_request() -> None:
    """B23/B25: a send cancelled while queued is withdrawn; the server never sees it and the
    next request is served normally."""
    server, client = asyncmp.channel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(client.send, "withdrawn")
        await anyio.wait_all_tasks_blocked()
        assert server.statistics().queued == 1
        tg.cancel_scope.cancel()

    assert server.statistics().queued == 0
    pending = client.request("kept")
    item = server.try_pop()
    assert item is not None
    assert item[0] == "kept"
    item[1].reply(None)
    with anyio.fail_after(5):
        await pending


async def test_cancel_after_pickup_makes_reply_return_false() -> None:
    """B22/B24: once the requester has gone after pickup, reply() returns False and nothing
    else is affected."""
    server, client = asyncmp.channel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(client.send, "x")
        _, rctx = await server.wait()
        assert server.statistics().in_flight == 1
        tg.cancel_scope.cancel()

    assert rctx.reply("late") is False
    assert server.statistics().in_flight == 0


async def test_pending_cancel_withdraws_or_orphans() -> None:
    """pending.cancel() withdraws a queued request and orphans a picked-up one (fail -> False)."""
    server, client = asyncmp.channel()
    queued = client.request("q")
    picked = client.request("p")
    assert queued.cancel() is True
    item = server.try_pop()
    assert item is not None
    assert item[0] == "p"
    assert picked.cancel() is True
    assert picked.cancel() is False  # already given up

    assert item[1].fail(RuntimeError()) is False
    assert queued.done()
    assert server.try_pop() is None
    with pytest.raises(Closed):
        await queued


async def test_timed_out_send_lets_the_server_continue() -> None:
    """B26: a client that gives up (timeout) does not disturb the server's next request."""
    server, client = asyncmp.channel()
    with anyio.move_on_after(0):
        await client.send("gives up")

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_forever, server)
        with anyio.fail_after(5):
            assert await client.send(10) == 20
        client.close()


# -- B27, B28: combinations and sharing ---------------------------------------------------


async def test_sync_server_async_client() -> None:
    """B27: a server in a plain thread answers an async client."""
    server, client = asyncmp.channel()

    def thread_server() -> None:
        for msg, rctx in server.blocking:
            rctx.reply(msg + 1)

    thread = threading.Thread(target=thread_server)
    thread.start()
    with anyio.fail_after(5):
        assert await client.send(1) == 2
    client.close()
    await anyio.to_thread.run_sync(thread.join, 5)
    assert not thread.is_alive()


async def test_async_server_sync_client() -> None:
    """B27: an async server answers a client blocking in a plain thread."""
    server, client = asyncmp.channel()
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_forever, server)
        with anyio.fail_after(5):
            result = await anyio.to_thread.run_sync(client.blocking.send, 7, 5)
        client.close()

    assert result == 14


def test_sync_server_sync_client() -> None:
    """B27: plain threads on both ends."""
    server, client = asyncmp.channel()

    def thread_server() -> None:
        for msg, rctx in server.blocking:
            rctx.reply(msg * 3)

    thread = threading.Thread(target=thread_server)
    thread.start()

    assert client.blocking.send(3, timeout=5) == 9
    client.close()
    thread.join(5)
    assert not thread.is_alive()


def test_many_threads_share_one_client() -> None:
    """B28: concurrent sends from many threads on one client each get their own reply."""
    server, client = asyncmp.channel()

    def thread_server() -> None:
        for msg, rctx in server.blocking:
            rctx.reply(msg * msg)

    srv = threading.Thread(target=thread_server)
    srv.start()
    results: dict[int, int] = {}

    def worker(base: int) -> None:
        for i in range(base, base + 50):
            results[i] = client.blocking.send(i, timeout=10)

    workers = [threading.Thread(target=worker, args=(k * 50,)) for k in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    client.close()
    srv.join(10)

    assert results == {i: i * i for i in range(400)}


# -- bounded channels, statistics, bad input ---------------------------------------------


async def test_bounded_request_raises_would_block_when_full() -> None:
    """A bounded channel refuses request() with WouldBlock once max_queued are queued."""
    server, client = asyncmp.channel(max_queued=2)
    kept = [client.request(1), client.request(2)]

    with pytest.raises(WouldBlock):
        client.request(3)
    assert server.statistics().queued == 2
    item = server.try_pop()
    assert item is not None
    kept.append(client.request(3))  # room again
    assert len(kept) == 3


async def test_bounded_send_waits_for_room_and_is_served_in_order() -> None:
    """A send on a full bounded channel waits (it is not refused) and is served after the
    earlier requests; statistics never show more than max_queued."""
    server, client = asyncmp.channel(max_queued=1)
    first = client.request("first")
    results: list[str] = []

    async def late() -> None:
        results.append(await client.send("second"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(late)
        await anyio.wait_all_tasks_blocked()
        assert server.statistics().queued == 1
        with pytest.raises(WouldBlock):
            client.request("third")
        seen = []
        for _ in range(2):
            msg, rctx = await server.wait()
            seen.append(msg)
            rctx.reply(msg.upper())

    assert seen == ["first", "second"]
    assert results == ["SECOND"]
    assert await first == "FIRST"


async def test_bounded_send_waiting_for_room_is_cancellable() -> None:
    """Cancelling a send that waits for room withdraws it: the server never sees it."""
    server, client = asyncmp.channel(max_queued=1)
    first = client.request("first")
    with anyio.move_on_after(0):
        await client.send("cancelled")

    item = server.try_pop()
    assert item is not None
    assert item[0] == "first"
    assert server.try_pop() is None
    assert not first.done()


@pytest.mark.parametrize("bad", [0, -1])
def test_channel_rejects_nonpositive_bound(bad: int) -> None:
    """Bad input: max_queued below 1 raises ValueError."""
    with pytest.raises(ValueError):
        asyncmp.channel(max_queued=bad)


@pytest.mark.parametrize("bad", [1.5, "3", True])
def test_channel_rejects_non_int_bound(bad: Any) -> None:
    """Bad input: a max_queued that is not an int raises TypeError."""
    with pytest.raises(TypeError):
        asyncmp.channel(max_queued=bad)


def test_statistics_count_clients_weak_clients_queue_and_in_flight() -> None:
    """statistics() reports queued, strong and weak clients and in-flight requests."""
    server, client = asyncmp.channel()
    clone = client.clone()
    weak = client.weak()
    pendings = [client.request(1), client.request(2)]
    item = server.try_pop()
    assert item is not None

    stats = server.statistics()

    assert stats == asyncmp.ChannelStatistics(
        queued=1,
        max_queued=None,
        clients=2,
        weak_clients=1,
        in_flight=1,
        servers_waiting=0,
        closed=False,
    )
    assert client.statistics() == stats
    assert "queued: 1" in repr(server)
    del weak
    gc.collect()
    assert server.statistics().weak_clients == 0
    assert not any(p.done() for p in pendings)
    clone.close()


async def test_use_after_close_raises_closed() -> None:
    """Bad input: a closed client refuses send/request/clone/weak with Closed; a closed server
    refuses wait with Closed."""
    server, client = asyncmp.channel()
    client.clone()  # keep the server's clients > 0
    client.close()
    client.close()  # idempotent

    with pytest.raises(Closed):
        await client.send(1)
    with pytest.raises(Closed):
        client.request(1)
    with pytest.raises(Closed):
        await anyio.to_thread.run_sync(client.blocking.send, 1)
    with pytest.raises(Closed):
        client.clone()
    with pytest.raises(Closed):
        client.weak()
    server.close()
    with pytest.raises(Closed):
        await server.wait()
    with pytest.raises(Closed):
        server.try_pop()


def test_handles_cannot_be_constructed_directly() -> None:
    """Bad input: Client, Server, WeakClient, ReplyContext and PendingReply come only from the
    library."""
    for cls in (
        asyncmp.Client,
        asyncmp.Server,
        asyncmp.WeakClient,
        asyncmp.ReplyContext,
        asyncmp.PendingReply,
    ):
        with pytest.raises(TypeError):
            cls()


async def test_context_managers_close_the_ends() -> None:
    """`with`/`async with` close clients and servers on exit."""
    server, client = asyncmp.channel()
    other = client.clone()
    async with client:
        pass
    with other:
        pass
    async with server:
        pass

    assert client.closed
    assert other.closed
    assert server.closed


async def test_server_close_wakes_a_parked_wait_with_closed() -> None:
    """Closing the server wakes a task parked in wait(), which raises Closed."""
    server, client = asyncmp.channel()
    raised: list[BaseException] = []

    async def wait_it() -> None:
        try:
            await server.wait()
        except Closed as exc:
            raised.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_it)
            await anyio.wait_all_tasks_blocked()
            server.close()

    assert len(raised) == 1
    client.close()


async def test_cancelled_server_wait_loses_no_request() -> None:
    """A server wait cancelled just as a request arrives either returns the request or leaves
    it queued for the next wait: it is never lost."""
    server, client = asyncmp.channel()
    got: list[tuple[Any, ReplyContext[Any]]] = []

    async def wait_it() -> None:
        got.append(await server.wait())

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_it)
        await anyio.wait_all_tasks_blocked()
        pending = client.request("kept")
        tg.cancel_scope.cancel()
    if not got:
        with anyio.fail_after(5):
            got.append(await server.wait())
    msg, rctx = got[0]
    rctx.reply(msg)

    assert await pending == "kept"
    assert server.try_pop() is None


async def test_two_parked_servers_both_end_when_last_client_closes() -> None:
    """Several tasks parked in wait() all wake when the last client closes, after draining."""
    server, client = asyncmp.channel()
    ends: list[str] = []

    async def consumer() -> None:
        try:
            while True:
                msg, rctx = await server.wait()
                rctx.reply(msg)
        except ClientsDisappeared:
            ends.append("done")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            tg.start_soon(consumer)
            await anyio.wait_all_tasks_blocked()
            pending = client.request(1)
            client.close()
        assert await pending == 1

    assert ends == ["done", "done"]


async def test_pending_reply_awaited_twice_at_once_is_refused() -> None:
    """A pending reply has one collector: a second concurrent wait raises RuntimeError."""
    server, client = asyncmp.channel()
    pending = client.request(1)
    results: list[int] = []

    async def collect() -> None:
        results.append(await pending)

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError):
            await pending
        item = server.try_pop()
        assert item is not None
        item[1].reply(2)

    assert results == [2]


async def test_reply_context_dropped_by_server_task_gives_no_reply() -> None:
    """A server task that drops a reply context unanswered makes the waiting `send` raise
    NoReply: the requester itself holds nothing that keeps the context alive."""
    server, client = asyncmp.channel()

    async def forget() -> None:
        msg, rctx = await server.wait()
        del msg, rctx
        gc.collect()

    async with anyio.create_task_group() as tg:
        tg.start_soon(forget)
        with anyio.fail_after(5), pytest.raises(NoReply):
            await client.send("x")


async def test_cancelled_wait_on_a_queued_request_leaves_it_queued() -> None:
    """A server wait() that is already cancelled when it starts takes nothing: the queued
    request stays for the next wait (trio's "a cancelled call does nothing")."""
    server, client = asyncmp.channel()
    pending = client.request("kept")

    with anyio.CancelScope() as scope:
        scope.cancel()
        got = await server.wait()
    if not scope.cancelled_caught:  # asyncio may return a ready request without yielding
        got[1].reply("served")
    else:
        with anyio.fail_after(5):
            msg, rctx = await server.wait()
        rctx.reply(msg)

    with anyio.fail_after(5):
        assert await pending in ("kept", "served")
    assert server.statistics().in_flight == 0


def test_statistics_show_the_bound_and_the_parked_servers(core: ModuleType) -> None:
    """statistics() reports the channel's bound, the server waits parked for a request (as
    trio's channel statistics report waiting tasks) and whether the server is closed."""
    server, client = asyncmp.channel(max_queued=3)
    parked = threading.Event()
    done: list[object] = []
    # The channel's hook runs once the wait is parked, right before its thread blocks.
    core._set_hooks(types.SimpleNamespace(before_push=id, before_wait=parked.set))
    thread = threading.Thread(target=lambda: done.append(server.blocking.wait(timeout=WAIT)))
    try:
        thread.start()
        assert parked.wait(WAIT)
        stats = server.statistics()
        assert (stats.max_queued, stats.servers_waiting, stats.closed) == (3, 1, False)
        pending = client.request("x")
        thread.join(WAIT)
    finally:
        core._set_hooks(None)
    assert done
    assert done[0][0] == "x"  # type: ignore[index]
    assert server.statistics().servers_waiting == 0
    assert not pending.done()
    server.close()
    assert server.statistics().closed


def test_repr_of_a_server_takes_no_lock() -> None:
    """repr(server) reads the channel without its lock: it returns even while another
    thread holds the lock (a debugger, a log line, a deadlock report)."""
    server, client = asyncmp.channel()
    pending = client.request(1)
    lock = server._channel.lock
    assert lock.acquire(timeout=WAIT)
    try:
        assert repr(server) == "<Server open [queued: 1, in flight: 0 | clients: 1, weak: 0]>"
    finally:
        lock.release()
    assert not pending.done()
