"""Property-based check of the channel lifecycle against a simple model (docs/design.md,
"What the tests guarantee").

The model is a FIFO of request ids, the set of open clients, the contexts picked up and the
fate of each request. Hypothesis drives random sequences of requests, pops, replies, fails,
unanswered closes, cancellations, clones, client closes and a server close, and after every
step the real channel must agree with the model: same queue, same counts, and every request
that has ended ended exactly the way the model says.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import asyncmp
from asyncmp import ClientsDisappeared, Closed, NoReply, ServerDisappeared


class AppError(Exception):
    pass


class ChannelModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server, first = asyncmp.channel()
        self.clients: list[asyncmp.Client[int, Any]] = [first]
        self.pendings: dict[int, asyncmp.PendingReply[Any]] = {}
        self.queue: list[int] = []  # model FIFO of live request ids
        self.picked: dict[int, asyncmp.ReplyContext[Any]] = {}  # id -> unanswered context
        self.expected: dict[int, Any] = {}  # id -> expected outcome, once ended
        self.given_up: set[int] = set()  # cancelled by the requester
        self.server_closed = False
        self.next_id = 0

    # -- client side ------------------------------------------------------------------

    @precondition(lambda self: self.clients)
    @rule(which=st.integers(0, 1000))
    def request(self, which: int) -> None:
        client = self.clients[which % len(self.clients)]
        rid = self.next_id
        self.next_id += 1
        if self.server_closed:
            with pytest.raises(ServerDisappeared):
                client.request(rid)
            return
        self.pendings[rid] = client.request(rid)
        self.queue.append(rid)

    @precondition(lambda self: self.clients)
    @rule(which=st.integers(0, 1000))
    def clone(self, which: int) -> None:
        self.clients.append(self.clients[which % len(self.clients)].clone())

    @precondition(lambda self: self.clients)
    @rule(which=st.integers(0, 1000))
    def close_client(self, which: int) -> None:
        self.clients.pop(which % len(self.clients)).close()

    @precondition(lambda self: self.clients)
    @rule(which=st.integers(0, 1000))
    def upgrade_weak(self, which: int) -> None:
        upgraded = self.clients[which % len(self.clients)].weak().upgrade()
        if self.server_closed:
            assert upgraded is None
        else:
            assert upgraded is not None
            self.clients.append(upgraded)

    @precondition(lambda self: any(r not in self.expected for r in self.pendings))
    @rule(which=st.integers(0, 1000))
    def cancel(self, which: int) -> None:
        open_ids = [r for r in self.pendings if r not in self.expected]
        rid = open_ids[which % len(open_ids)]

        assert self.pendings[rid].cancel() is True

        self.given_up.add(rid)
        self.expected[rid] = Closed
        if rid in self.queue:
            self.queue.remove(rid)

    # -- server side ------------------------------------------------------------------

    @rule()
    def pop(self) -> None:
        if self.server_closed:
            with pytest.raises(Closed):
                self.server.try_pop()
        elif not self.queue and not self.clients:
            with pytest.raises(ClientsDisappeared):
                self.server.try_pop()
        elif not self.queue:
            assert self.server.try_pop() is None
        else:
            item = self.server.try_pop()
            assert item is not None
            msg, rctx = item
            assert msg == self.queue.pop(0)
            self.picked[msg] = rctx

    @precondition(lambda self: self.picked)
    @rule(which=st.integers(0, 1000), how=st.sampled_from(["reply", "fail", "close"]))
    def answer(self, which: int, how: str) -> None:
        rid = sorted(self.picked)[which % len(self.picked)]
        rctx = self.picked.pop(rid)
        alive = rid not in self.given_up
        if how == "reply":
            assert rctx.reply(rid * 10) is alive
            outcome: Any = rid * 10
        elif how == "fail":
            assert rctx.fail(AppError(rid)) is alive
            outcome = AppError
        else:
            rctx.close()
            outcome = NoReply
        if alive:
            self.expected[rid] = outcome

    @rule()
    def close_server(self) -> None:
        self.server.close()
        if not self.server_closed:
            for rid in self.queue:
                self.expected[rid] = ServerDisappeared
            self.queue.clear()
        self.server_closed = True

    # -- agreement with the model -----------------------------------------------------

    @invariant()
    def statistics_agree(self) -> None:
        stats = self.server.statistics()
        assert stats.queued == len(self.queue)
        assert stats.clients == len(self.clients)
        assert stats.in_flight == len(self.picked)

    @invariant()
    def every_ended_request_ended_as_modelled(self) -> None:
        for rid, pending in self.pendings.items():
            ended = rid in self.expected
            assert pending.done() == ended
            if not ended:
                continue
            want = self.expected[rid]
            if isinstance(want, type):
                with pytest.raises(want):
                    pending.blocking.wait(timeout=0)
            else:
                assert pending.blocking.wait(timeout=0) == want


TestChannelModel = ChannelModel.TestCase
TestChannelModel.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
