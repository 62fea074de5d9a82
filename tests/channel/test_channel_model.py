"""Property-based check of the channel lifecycle against a simple model (docs/design.md,
"What the tests guarantee").

The model is a FIFO of request ids, the set of open clients, the contexts picked up and the
fate of each request. Hypothesis drives random sequences of operations, and after every step
the real channel must agree with the model: same queue, same counts, and every request that
has ended ended exactly the way the model says.

Two machines drive it:

- `ChannelModel`, without an event loop: requests, pops, replies, fails, unanswered closes,
  cancellations, clones, client closes and a server close.
- `RunningLoopsModel`, with event loops running on their own threads (asyncio, uvloop and
  trio, each behind an anyio blocking portal) and plain threads: ``await client.send`` and
  ``await server.wait`` as tasks on those loops (the hand-inlined asyncio fast paths and
  the trio paths), servers parked in ``server.wait`` or ``server.blocking.wait`` that
  requests are handed to, ``client.blocking.send`` and ``server.blocking.wait`` from plain
  threads, with and without timeouts, answers from the requester's own loop thread or any
  other, cancellation of a waiting send (queued: withdrawn; picked up: ``reply()`` returns
  False) or of a parked server wait (nothing is lost), and a reply racing a cancellation
  (the reply wins inside a cancel scope). After each step every loop is run until all its
  tasks are blocked, so each step's outcome is settled before the model is compared.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import anyio
import anyio.from_thread
import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import asyncmp
from asyncmp import ClientsDisappeared, Closed, NoReply, ServerDisappeared
from bounds import WAIT


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


def test_channel_agrees_with_the_model() -> None:
    """Random sequences of sends, pops, replies, closes and cancellations (see
    `ChannelModel`) never leave the channel's observable state apart from the model's — on
    each core (the autouse `core` fixture)."""
    run_state_machine_as_test(
        ChannelModel,
        settings=settings(max_examples=300, stateful_step_count=40, deadline=None),
    )


# -- on running loops ---------------------------------------------------------------------

LOOPS = ("asyncio", "uvloop", "trio")
CANCELLED = "cancelled"  # the outcome of a send whose cancel scope caught the cancellation

Outcome = tuple[str, Any]  # ("reply", value) / ("error", exception) / ("item", (msg, rctx)) …


async def send_task(client: asyncmp.Client[int, Any], rid: int, scopes: list[Any]) -> Outcome:
    """``await client.send(rid)`` inside a cancel scope the model may cancel."""
    with anyio.CancelScope() as scope:
        scopes.append(scope)
        try:
            return ("reply", await client.send(rid))
        except Exception as exc:
            return ("error", exc)
    return (CANCELLED, None)


def send_thread(client: asyncmp.Client[int, Any], rid: int) -> Outcome:
    try:
        return ("reply", client.blocking.send(rid, timeout=WAIT))
    except Exception as exc:
        return ("error", exc)


async def wait_task(server: asyncmp.Server[int, Any], scopes: list[Any]) -> Outcome:
    """``await server.wait()`` inside a cancel scope the model may cancel."""
    with anyio.CancelScope() as scope:
        scopes.append(scope)
        try:
            return ("item", await server.wait())
        except Exception as exc:
            return ("error", exc)
    return (CANCELLED, None)


def wait_thread(server: asyncmp.Server[int, Any]) -> Outcome:
    try:
        return ("item", server.blocking.wait(timeout=WAIT))
    except Exception as exc:
        return ("error", exc)


class Op:
    """A send or a server wait running in the background: a task on a loop, or a thread."""

    def __init__(
        self, where: str, start: Callable[[list[Any]], concurrent.futures.Future[Outcome]]
    ):
        self.where = where
        self.scopes: list[Any] = []  # the task's cancel scope, once it runs
        self.future = start(self.scopes)

    def outcome(self) -> Outcome:
        return self.future.result(timeout=WAIT)


def answer(rctx: asyncmp.ReplyContext[Any], rid: int, how: str) -> Any:
    """Answer *rctx* as *how* says; return what the requester should get."""
    if how == "reply":
        assert rctx.reply(rid * 10) is True
        return rid * 10
    assert rctx.fail(AppError(rid)) is True
    return AppError


class RunningLoopsModel(RuleBasedStateMachine):
    """The channel model with requesters and servers on running loops and threads."""

    def __init__(
        self,
        portals: dict[str, anyio.from_thread.BlockingPortal],
        threads: concurrent.futures.Executor,
    ) -> None:
        super().__init__()
        self.portals = portals
        self.threads = threads
        self.server, first = asyncmp.channel()
        self.clients: list[asyncmp.Client[int, Any]] = [first]
        self.pendings: dict[int, asyncmp.PendingReply[Any]] = {}
        self.sends: dict[int, Op] = {}  # rid -> the task or thread waiting in send()
        self.queue: list[int] = []  # model FIFO of live request ids
        self.parked: list[Op] = []  # server waits parked, in the order they parked
        self.picked: dict[int, asyncmp.ReplyContext[Any]] = {}  # id -> unanswered context
        self.expected: dict[int, Any] = {}  # id -> expected outcome, once ended
        self.given_up: set[int] = set()
        self.server_closed = False
        self.next_id = 0

    def settle(self) -> None:
        """Run every loop until all its tasks are blocked: what a step set in motion (a
        wake-up from another thread, a hand-off, a cancellation) has happened. Twice, for a
        wake-up that one loop passes on to another."""
        for _ in range(2):
            for portal in self.portals.values():
                portal.call(anyio.wait_all_tasks_blocked)

    def new_id(self) -> int:
        rid = self.next_id
        self.next_id += 1
        return rid

    def pushed(self, rid: int) -> None:
        """Request *rid* entered the channel: handed to the oldest parked server, or queued."""
        if not self.parked:
            self.queue.append(rid)
            return
        how, item = self.parked.pop(0).outcome()
        assert how == "item", (how, item)
        msg, rctx = item
        assert msg == rid
        self.picked[rid] = rctx

    def gave_up(self, rid: int, outcome: Any) -> None:
        """The requester of *rid* gave up: withdrawn if queued, orphaned if picked up."""
        self.given_up.add(rid)
        self.expected[rid] = outcome
        if rid in self.queue:
            self.queue.remove(rid)

    def open_sends(self, *where: str) -> list[int]:
        return [r for r, op in self.sends.items() if r not in self.expected and op.where in where]

    def async_parked(self) -> list[Op]:
        return [op for op in self.parked if op.where != "thread"]

    def end_parked(self, error: type[Exception]) -> None:
        """Every parked server wait wakes and raises *error*."""
        for op in self.parked:
            how, exc = op.outcome()
            assert how == "error", (how, exc)
            assert isinstance(exc, error), exc
        self.parked.clear()

    # -- client side ------------------------------------------------------------------

    @precondition(lambda self: self.clients)
    @rule(which=st.integers(0, 1000))
    def request(self, which: int) -> None:
        client = self.clients[which % len(self.clients)]
        rid = self.new_id()
        if self.server_closed:
            with pytest.raises(ServerDisappeared):
                client.request(rid)
            return
        self.pendings[rid] = client.request(rid)
        self.pushed(rid)

    @precondition(lambda self: self.clients)
    @rule(which=st.integers(0, 1000), where=st.sampled_from(LOOPS))
    def send(self, which: int, where: str) -> None:
        """``await client.send`` on a running loop: queued, or handed to a parked server."""
        client = self.clients[which % len(self.clients)]
        rid = self.new_id()
        portal = self.portals[where]
        op = Op(where, lambda scopes: portal.start_task_soon(send_task, client, rid, scopes))
        self.sends[rid] = op
        # The task must start before the op's scopes can be read: settle first.
        self.settle()
        if self.server_closed:
            self.expected[rid] = ServerDisappeared
        else:
            self.pushed(rid)

    @precondition(lambda self: self.clients and self.parked)
    @rule(which=st.integers(0, 1000))
    def send_from_thread(self, which: int) -> None:
        """``client.blocking.send`` in a plain thread, handed to the oldest parked server
        (whose wake-up tells that the thread has sent)."""
        client = self.clients[which % len(self.clients)]
        rid = self.new_id()
        self.sends[rid] = Op("thread", lambda _: self.threads.submit(send_thread, client, rid))
        self.pushed(rid)
        self.settle()

    @precondition(lambda self: self.clients and not self.parked)
    @rule(which=st.integers(0, 1000))
    def send_blocking_times_out(self, which: int) -> None:
        """``client.blocking.send(msg, timeout=0)`` with nobody to answer: it times out and
        its request is withdrawn (the server never sees it)."""
        client = self.clients[which % len(self.clients)]
        rid = self.new_id()
        with pytest.raises(ServerDisappeared if self.server_closed else TimeoutError):
            client.blocking.send(rid, timeout=0)

    @precondition(lambda self: self.open_sends(*LOOPS))
    @rule(which=st.integers(0, 1000))
    def cancel_send(self, which: int) -> None:
        """Cancel a waiting ``client.send``: queued, it is withdrawn; picked up, it is
        orphaned (the server's ``reply()`` returns False)."""
        rids = self.open_sends(*LOOPS)
        rid = rids[which % len(rids)]
        op = self.sends[rid]
        [scope] = op.scopes
        self.portals[op.where].call(scope.cancel)
        self.settle()
        self.gave_up(rid, CANCELLED)

    @precondition(lambda self: any(r not in self.expected for r in self.pendings))
    @rule(which=st.integers(0, 1000), how=st.sampled_from(["cancel", "timeout"]))
    def give_up_pending(self, which: int, how: str) -> None:
        """``pending.cancel()``, or ``pending.blocking.wait(timeout=0)`` timing out."""
        rids = [r for r in self.pendings if r not in self.expected]
        rid = rids[which % len(rids)]
        if how == "cancel":
            assert self.pendings[rid].cancel() is True
        else:
            with pytest.raises(TimeoutError):
                self.pendings[rid].blocking.wait(timeout=0)
        self.gave_up(rid, Closed)

    @precondition(lambda self: self.clients)
    @rule(which=st.integers(0, 1000))
    def clone(self, which: int) -> None:
        self.clients.append(self.clients[which % len(self.clients)].clone())

    @precondition(lambda self: self.clients)
    @rule(which=st.integers(0, 1000))
    def close_client(self, which: int) -> None:
        """Close a client (the last one on one draw in four)."""
        if len(self.clients) == 1 and which % 4:
            return
        self.clients.pop(which % len(self.clients)).close()
        if not self.clients:
            # Parked servers wait only while the queue is empty: the last close ends them.
            self.end_parked(Closed if self.server_closed else ClientsDisappeared)

    # -- server side ------------------------------------------------------------------

    def expect_take(self) -> Outcome | None:
        """What taking a request does now, by the model: None if the taker must park."""
        if self.server_closed:
            return ("error", Closed)
        if self.queue:
            return ("item", self.queue.pop(0))
        if not self.clients:
            return ("error", ClientsDisappeared)
        return None

    def took(self, expected: Outcome, how: str, got: Any) -> None:
        if expected[0] == "error":
            assert how == "error", (how, got)
            assert isinstance(got, expected[1]), got
            return
        assert how == "item", (how, got)
        msg, rctx = got
        assert msg == expected[1]
        self.picked[msg] = rctx

    @precondition(lambda self: not any(op.where == "thread" for op in self.parked))
    @rule(where=st.sampled_from(LOOPS))
    def wait(self, where: str) -> None:
        """``await server.wait()`` on a running loop: takes the oldest request, or parks."""
        portal = self.portals[where]
        op = Op(where, lambda scopes: portal.start_task_soon(wait_task, self.server, scopes))
        self.settle()
        expected = self.expect_take()
        if expected is None:
            assert not op.future.done(), op.future.result()
            self.parked.append(op)
        else:
            self.took(expected, *op.outcome())

    @rule()
    def wait_blocking(self) -> None:
        """``server.blocking.wait(timeout=0)`` in this thread: a request, or a timeout."""
        expected = self.expect_take() or ("error", TimeoutError)
        try:
            got: Outcome = ("item", self.server.blocking.wait(timeout=0))
        except Exception as exc:
            got = ("error", exc)
        self.took(expected, *got)

    @precondition(
        lambda self: not self.parked and not self.queue and self.clients and not self.server_closed
    )
    @rule()
    def park_blocking(self) -> None:
        """``server.blocking.wait()`` parked in a plain thread; the next request is its.
        (Alone: whether the thread has parked yet is not observable, so no other wait may
        compete with it.)"""
        self.parked.append(Op("thread", lambda _: self.threads.submit(wait_thread, self.server)))

    @precondition(lambda self: self.async_parked())
    @rule(which=st.integers(0, 1000))
    def cancel_wait(self, which: int) -> None:
        """Cancel a parked ``server.wait()``: it leaves, and loses nothing."""
        parked = self.async_parked()
        op = parked[which % len(parked)]
        [scope] = op.scopes
        self.portals[op.where].call(scope.cancel)
        self.settle()
        assert op.outcome() == (CANCELLED, None)
        self.parked.remove(op)

    @rule()
    def pop(self) -> None:
        expected = self.expect_take() or ("item", None)
        if expected == ("item", None):
            assert self.server.try_pop() is None
            return
        try:
            got: Outcome = ("item", self.server.try_pop())
        except Exception as exc:
            got = ("error", exc)
        self.took(expected, *got)

    @precondition(lambda self: self.picked)
    @rule(
        which=st.integers(0, 1000),
        how=st.sampled_from(["reply", "fail", "close"]),
        where=st.sampled_from(("here", *LOOPS)),
    )
    def answer(self, which: int, how: str, where: str) -> None:
        """Answer from this thread or from a loop's thread (the requester's own: the inlined
        same-thread reply)."""
        rid = sorted(self.picked)[which % len(self.picked)]
        rctx = self.picked.pop(rid)
        alive = rid not in self.given_up
        run: Callable[..., Any] = (
            (lambda fn, *args: fn(*args)) if where == "here" else self.portals[where].call
        )
        if how == "reply":
            assert run(rctx.reply, rid * 10) is alive
            outcome: Any = rid * 10
        elif how == "fail":
            assert run(rctx.fail, AppError(rid)) is alive
            outcome = AppError
        else:
            run(rctx.close)
            outcome = NoReply
        del rctx
        self.settle()
        if alive:
            self.expected[rid] = outcome

    @precondition(
        lambda self: any(
            r in self.picked and r not in self.given_up for r in self.open_sends(*LOOPS)
        )
    )
    @rule(which=st.integers(0, 1000), how=st.sampled_from(["reply", "fail"]))
    def answer_racing_cancel(self, which: int, how: str) -> None:
        """An answer from another thread, then a cancellation of the waiting send's scope
        before its loop has run the wake-up: the answer wins (the channels page, "A
        cancellation racing a reply")."""
        rids = [r for r in self.open_sends(*LOOPS) if r in self.picked and r not in self.given_up]
        rid = rids[which % len(rids)]
        # In a list, so that the replier takes the only reference to the context.
        rctxs = [self.picked.pop(rid)]
        op = self.sends[rid]
        [scope] = op.scopes
        answered: list[Any] = []

        def race() -> None:
            # On the requester's loop thread, which runs nothing else meanwhile: the answer
            # is delivered from another thread, then the scope is cancelled.
            replier = threading.Thread(
                target=lambda: answered.append(answer(rctxs.pop(), rid, how))
            )
            replier.start()
            replier.join(WAIT)
            scope.cancel()

        self.portals[op.where].call(race)
        self.settle()
        assert len(answered) == 1
        self.expected[rid] = answered[0]

    @rule(now=st.integers(0, 3))
    def close_server(self, now: int) -> None:
        """Close the server (on one draw in four: a closed channel has little left to do)."""
        if now:
            return
        self.server.close()
        if not self.server_closed:
            for rid in self.queue:
                self.expected[rid] = ServerDisappeared
            self.queue.clear()
            self.end_parked(Closed)
        self.server_closed = True
        self.settle()

    # -- agreement with the model -----------------------------------------------------

    @invariant()
    def statistics_agree(self) -> None:
        stats = self.server.statistics()
        assert stats.queued == len(self.queue)
        assert stats.clients == len(self.clients)
        assert stats.in_flight == len(self.picked)

    @invariant()
    def parked_servers_wait(self) -> None:
        for op in self.parked:
            assert not op.future.done(), op.future.result()

    @invariant()
    def every_ended_request_ended_as_modelled(self) -> None:
        for rid, pending in self.pendings.items():
            ended = rid in self.expected
            assert pending.done() == ended
            if ended:
                check_outcome(self.expected[rid], pending.blocking.wait, 0)
        for rid, op in self.sends.items():
            if rid not in self.expected:
                assert not op.future.done(), op.future.result()
                continue
            how, got = op.outcome()
            want = self.expected[rid]
            if want == CANCELLED:
                assert how == CANCELLED, (how, got)
            elif isinstance(want, type):
                assert how == "error", (how, got)
                assert isinstance(got, want), got
            else:
                assert (how, got) == ("reply", want)

    def teardown(self) -> None:
        """End everything still waiting, so no task or thread outlives the example."""
        self.server.close()
        for rctx in self.picked.values():
            rctx.close()
        self.picked.clear()
        for client in self.clients:
            client.close()
        self.settle()
        for rid, op in self.sends.items():
            assert op.future.exception(timeout=WAIT) is None, f"send {rid} on {op.where}"
        for op in self.parked:
            assert op.future.exception(timeout=WAIT) is None, f"wait on {op.where}"


def check_outcome(want: Any, wait: Callable[[float], Any], timeout: float) -> None:
    if isinstance(want, type):
        with pytest.raises(want):
            wait(timeout)
    else:
        assert wait(timeout) == want


@pytest.fixture(scope="module")
def portals() -> Iterator[dict[str, anyio.from_thread.BlockingPortal]]:
    """An asyncio, a uvloop and a trio loop, each running on its own thread."""
    options = {
        "asyncio": ("asyncio", {}),
        "uvloop": ("asyncio", {"use_uvloop": True}),
        "trio": ("trio", {}),
    }
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(
                anyio.from_thread.start_blocking_portal(backend, backend_options=opts)
            )
            for name, (backend, opts) in options.items()
        }


def test_channel_on_running_loops_agrees_with_the_model(
    portals: dict[str, anyio.from_thread.BlockingPortal],
) -> None:
    """Random sequences of sends, waits, answers, cancellations and timeouts on running
    asyncio, uvloop and trio loops and plain threads leave the channel exactly as the model
    says after every step: same queue, same counts, every request ended as modelled."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as threads:
        run_state_machine_as_test(
            lambda: RunningLoopsModel(portals, threads),
            settings=settings(max_examples=150, stateful_step_count=30, deadline=None),
        )
