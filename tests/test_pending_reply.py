"""`await pending` when the reply is in: the delivered reply wins over a cancelled scope, on
every backend (docs/channels.md, "A cancellation racing a reply")."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

import asyncmp


async def test_a_delivered_reply_wins_in_a_cancelled_scope() -> None:
    """`reply()` returned True, then `await pending` in a cancelled scope returns the reply;
    the cancellation takes effect at the next checkpoint inside the scope. Under trio it
    raised Cancelled (the outcome-is-there path was a full checkpoint); asyncio returned it."""
    server, client = asyncmp.channel()
    with server, client:
        pending = client.request(1)
        item = server.try_pop()
        assert item is not None
        msg, rctx = item
        assert rctx.reply(msg + 1) is True
        got = None
        with anyio.CancelScope() as scope:
            scope.cancel()
            got = await pending
            await anyio.lowlevel.checkpoint()
            pytest.fail("the cancellation did not take effect at the next checkpoint")
        assert scope.cancelled_caught
        assert got == 2


async def test_a_pending_reply_not_yet_answered_is_given_up_in_a_cancelled_scope() -> None:
    """Without a reply, `await pending` in a cancelled scope gives the request up (the server
    never sees it): the fix above is for delivered replies only."""
    server, client = asyncmp.channel()
    with server, client:
        pending = client.request(1)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await pending
        assert scope.cancelled_caught
        assert server.try_pop() is None
        assert pending.done()
