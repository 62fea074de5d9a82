"""The server under test: a dispatch-loop handler that adds two numbers."""

from __future__ import annotations

from asyncmp import ReplyContext


class Adder:
    """For `asyncmp.task.spawn`: ``proc_req`` runs on the event loop that spawned it."""

    async def proc_req(self, msg: tuple[int, int], rctx: ReplyContext[int]) -> None:
        rctx.reply(msg[0] + msg[1])


class ThreadAdder:
    """For `asyncmp.thread.spawn`: ``proc_req`` runs on the server's own thread."""

    def proc_req(self, msg: tuple[int, int], rctx: ReplyContext[int]) -> None:
        rctx.reply(msg[0] + msg[1])
