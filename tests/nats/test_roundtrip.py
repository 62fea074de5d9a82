"""Round trips through asyncmp.nats in every sync/async combination, and the error mapping."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from nats_helpers import NatsServer, free_port, serving

import asyncmp
import asyncmp.nats

# Marked here, at collection, so that the anyio_backend fixture of conftest.py (asyncio and
# uvloop) parametrizes these tests together with their own parameters.
pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("server_kind", ["task", "thread"])
@pytest.mark.parametrize("client_kind", ["send", "blocking", "request", "request-blocking"])
async def test_nats_roundtrip_every_sync_async_combination(
    nats_server: NatsServer, server_kind: str, client_kind: str
) -> None:
    """A request reaches a task or thread handler and its reply comes back to an async
    caller, a blocking caller, or a pending reply awaited or waited on from a thread."""
    local_server, local_client = asyncmp.channel()

    async def task_handler() -> None:
        async for msg, rctx in local_server:
            rctx.reply(["task", msg])

    def thread_handler() -> None:
        for msg, rctx in local_server.blocking:
            rctx.reply(["thread", msg])

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            if server_kind == "task":
                tg.start_soon(task_handler)
            else:
                tg.start_soon(anyio.to_thread.run_sync, thread_handler)
            await tg.start(_serve, local_client, nats_server.url)
            async with asyncmp.nats.connect("calc", nats_server.url, timeout=10) as client:
                for value in ({"a": 1}, [1, 2], "x", 3.5, None):
                    if client_kind == "send":
                        reply = await client.send(value)
                    elif client_kind == "blocking":
                        reply = await anyio.to_thread.run_sync(client.blocking.send, value, 10)
                    elif client_kind == "request":
                        reply = await client.request(value)
                    else:
                        pending = client.request(value)
                        reply = await anyio.to_thread.run_sync(pending.blocking.wait, 10)
                    assert reply == [server_kind, value]
            local_client.close()  # the handlers end at ClientsDisappeared, serve at cancel
            tg.cancel_scope.cancel()


async def _serve(
    client: asyncmp.Client[Any, Any], url: str, *, task_status: anyio.abc.TaskStatus[None]
) -> None:
    await asyncmp.nats.serve(client, "calc", url, task_status=task_status)


async def test_nats_many_concurrent_requests_each_get_their_own_reply(
    nats_server: NatsServer,
) -> None:
    """Concurrent requests from one client are matched to their own replies."""

    async def double(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        rctx.reply(msg * 2)

    results: dict[int, int] = {}
    with anyio.fail_after(20):
        async with (
            serving(nats_server.url, "dbl", double),
            asyncmp.nats.connect("dbl", nats_server.url) as client,
        ):

            async def one(i: int) -> None:
                results[i] = await client.send(i)

            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(one, i)
    assert results == {i: 2 * i for i in range(200)}


class AppError(Exception):
    pass


async def test_nats_fail_reraises_registered_types_and_wraps_others(
    nats_server: NatsServer,
) -> None:
    """rctx.fail(exc) re-raises registered types as themselves (with their args) and any
    other type as RemoteError carrying the type name and message."""

    async def failing(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        if msg == "app":
            rctx.fail(AppError("app broke", 7))
        else:
            rctx.fail(KeyError("missing"))

    with anyio.fail_after(20):
        async with (
            serving(nats_server.url, "f", failing),
            asyncmp.nats.connect("f", nats_server.url, errors=[AppError]) as client,
        ):
            with pytest.raises(AppError) as app:
                await client.send("app")
            assert app.value.args == ("app broke", 7)
            with pytest.raises(asyncmp.nats.RemoteError) as remote:
                await client.send("other")
            assert remote.value.type_name == "KeyError"
            assert remote.value.message == "'missing'"
            assert isinstance(remote.value, asyncmp.Error)
            with pytest.raises(asyncmp.nats.RemoteError) as remote:
                await anyio.to_thread.run_sync(client.blocking.send, "other")
            assert remote.value.type_name == "KeyError"


async def test_nats_reply_context_closed_unanswered_raises_noreply(
    nats_server: NatsServer,
) -> None:
    """A reply context closed without an answer makes the remote caller's send raise NoReply."""

    async def silent(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        rctx.close()

    with anyio.fail_after(20):
        async with (
            serving(nats_server.url, "s", silent),
            asyncmp.nats.connect("s", nats_server.url) as client,
        ):
            with pytest.raises(asyncmp.NoReply):
                await client.send(1)
            with pytest.raises(asyncmp.NoReply):
                await anyio.to_thread.run_sync(client.blocking.send, 1)


async def test_nats_no_responders_raises_server_disappeared(nats_server: NatsServer) -> None:
    """A request on a subject nobody serves raises ServerDisappeared at once, not a timeout."""
    with anyio.fail_after(10):
        async with asyncmp.nats.connect("nobody", nats_server.url, timeout=None) as client:
            with pytest.raises(asyncmp.ServerDisappeared):
                await client.send(1)
            with pytest.raises(asyncmp.ServerDisappeared):
                await anyio.to_thread.run_sync(client.blocking.send, 1)
            with pytest.raises(asyncmp.ServerDisappeared):
                await client.request(1)


async def test_nats_closed_local_server_raises_server_disappeared(
    nats_server: NatsServer,
) -> None:
    """When the local server behind serve() is closed, the caller gets ServerDisappeared
    and serve() returns."""
    local_server, local_client = asyncmp.channel()
    local_server.close()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await tg.start(_serve, local_client, nats_server.url)
            async with asyncmp.nats.connect("calc", nats_server.url) as client:
                with pytest.raises(asyncmp.ServerDisappeared):
                    await client.send(1)
        # The task group exits by itself: serve() returned once its server had gone.


async def test_nats_unreachable_nats_server_raises_server_disappeared() -> None:
    """A client whose NATS server cannot be reached raises ServerDisappeared."""

    url = f"nats://127.0.0.1:{free_port()}"
    with anyio.fail_after(20):
        async with asyncmp.nats.connect(
            "x", url, connect_timeout=1, max_reconnect_attempts=1, reconnect_time_wait=0.05
        ) as client:
            with pytest.raises(asyncmp.ServerDisappeared):
                await client.send(1)


async def test_nats_stopping_serve_answers_requests_in_hand_with_noreply(
    nats_server: NatsServer,
) -> None:
    """When serve() is cancelled while its handler holds a request, the remote caller gets
    NoReply at once rather than waiting for its timeout."""
    held: list[asyncmp.ReplyContext[Any]] = []
    holding = anyio.Event()

    async def hold(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        held.append(rctx)
        holding.set()

    outcome: list[BaseException] = []
    with anyio.fail_after(20):
        async with asyncmp.nats.connect("h", nats_server.url, timeout=None) as client:

            async def call() -> None:
                try:
                    await client.send(1)
                except asyncmp.NoReply as exc:
                    outcome.append(exc)

            async with (
                anyio.create_task_group() as tg,
                serving(nats_server.url, "h", hold),
            ):
                tg.start_soon(call)
                await holding.wait()
            # Leaving serving() cancelled serve(); the task group then waited for the caller.
    assert len(outcome) == 1
    assert held[0].reply("too late") is False


async def test_nats_unencodable_reply_reaches_the_client_as_an_error(
    nats_server: NatsServer,
) -> None:
    """A reply the codec cannot encode becomes a TypeError failure (RemoteError on the
    client), and the server keeps serving."""

    async def odd(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        rctx.reply(object() if msg == "odd" else msg)

    with anyio.fail_after(20):
        async with (
            serving(nats_server.url, "o", odd),
            asyncmp.nats.connect("o", nats_server.url) as client,
        ):
            with pytest.raises(asyncmp.nats.RemoteError) as info:
                await client.send("odd")
            assert info.value.type_name == "TypeError"
            assert await client.send("even") == "even"
