"""Errors and warnings that say what to do where users stumble on the channel itself.

Each of these is the channel's own (``asyncmp/_channel_py.py``), on the core the run uses.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest

import asyncmp
from asyncmp import ReplyContext, task


def test_iterating_a_server_with_for_says_what_to_write() -> None:
    """``for msg, rctx in server`` (instead of ``async for``) raises a TypeError naming the
    two spellings that work."""
    server, client = asyncmp.channel()
    with server, client, pytest.raises(TypeError) as info:
        for _ in server:  # type: ignore[attr-defined]
            pass

    assert "async for msg, rctx in server" in str(info.value)
    assert "for msg, rctx in server.blocking" in str(info.value)


def test_client_collected_unclosed_warns_resource_warning() -> None:
    """A strong client collected without close() still counts as closed, and warns with
    ResourceWarning (shown in Python's development mode and by pytest), as an unclosed file
    does."""
    server, client = asyncmp.channel()
    gc.collect()  # earlier tests' garbage (their clients) is collected first, not below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()

    assert [w.category for w in caught] == [ResourceWarning]
    assert "close" in str(caught[0].message)
    assert server.statistics().clients == 0
    server.close()


class Echo:
    async def proc_req(self, msg: object, rctx: ReplyContext[object]) -> None:
        rctx.reply(msg)


def test_send_to_a_server_parked_on_a_stopped_loop_warns_at_once() -> None:
    """The pytest-asyncio module-fixture mistake, caught at the send: the server's task is
    parked on a loop that is not running, so the request cannot be served while this loop
    waits; the send warns RuntimeWarning at once, naming the problem and the fix."""
    server_loop = asyncio.new_event_loop()
    test_loop = asyncio.new_event_loop()

    async def start() -> tuple[asyncmp.Client[Any, Any], asyncmp.JoinHandle[Any]]:
        return task.spawn(lambda client: Echo(), name="stuck")

    client, handle = server_loop.run_until_complete(start())
    server_loop.run_until_complete(asyncio.sleep(0))  # the loop's task parks in wait()

    async def send() -> asyncio.Future[Any]:
        pending = asyncio.ensure_future(client.send("hello"))
        await asyncio.sleep(0)  # the send's first step pushes the request
        return pending

    try:
        with pytest.warns(RuntimeWarning, match="not running") as record:
            pending = test_loop.run_until_complete(send())
        assert "thread.spawn" in str(record[0].message)
        pending.cancel()
        test_loop.run_until_complete(asyncio.gather(pending, return_exceptions=True))
    finally:
        client.close()
        server_loop.run_until_complete(asyncio.wait_for(handle.join(), 10))
        server_loop.close()
        test_loop.close()
