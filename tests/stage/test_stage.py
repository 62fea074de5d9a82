"""asyncmp.Stage: exit-left's enter state machine, with the port's fixes, on every backend.

Numbers in docstrings are the Stage behaviours of docs/design.md. Tests that
need to know a waiter is parked poll the stage's private line (``stage._parked``) with a
bounded loop: it is the only observable that covers tasks and threads alike.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import trio
import trio.testing

import asyncmp
from asyncmp import Closed, Director, Finished, Notified, Stage, Ticket, TimedOut
from asyncmp._lowlevel._wake import ThreadWaiter, wake
from asyncmp._stage import IDLE
from bounds import WAIT

Outcome = Finished[Any] | Notified | TimedOut
AnyStage = Stage[Any, Any, Any]


@asynccontextmanager
async def bounded_group() -> AsyncIterator[anyio.abc.TaskGroup]:
    """A task group that must finish within `WAIT` (nothing in these tests may hang)."""
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            yield tg


def parked(stage: AnyStage) -> list[Any]:
    """The tokens parked on *stage*, oldest first (white-box)."""
    with stage._lock:
        return [entry.token for entry in stage._parked]


async def wait_parked(stage: AnyStage, *tokens: Any) -> None:
    """Wait (bounded) until exactly *tokens* are parked, in this order."""
    with anyio.fail_after(WAIT):
        # Polled: threads and other loops park here too, and they signal no event.
        while parked(stage) != list(tokens):  # noqa: ASYNC110
            await anyio.sleep(0.001)


def wait_parked_blocking(stage: AnyStage, *tokens: Any) -> None:
    deadline = time.monotonic() + WAIT
    while parked(stage) != list(tokens):
        assert time.monotonic() < deadline, f"parked: {parked(stage)}, wanted {tokens}"
        time.sleep(0.001)


def ticket(stage: AnyStage, token: Any) -> Ticket[Any]:
    t = stage.ticket(token)
    assert t is not None
    return t


async def must_not_head(director: Director[Any, Any, Any]) -> None:
    raise AssertionError(f"{director.token!r} was not supposed to head the stage")


def returns(value: Any) -> Callable[[Director[Any, Any, Any]], Any]:
    async def head(director: Director[Any, Any, Any]) -> Any:
        return value

    return head


def _nothing(director: Director[Any, Any, Any]) -> None:
    pass


class Holder:
    """An async head that holds the stage until released, then runs *then* and returns."""

    def __init__(
        self, value: Any = "held", then: Callable[[Director[Any, Any, Any]], object] = _nothing
    ):
        self.value = value
        self.then = then
        self.started = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self, director: Director[Any, Any, Any]) -> Any:
        self.started.set()
        await self.release.wait()
        self.then(director)
        return self.value


async def run_into(
    results: dict[str, Outcome],
    key: str,
    stage: AnyStage,
    t: Ticket[Any],
    head: Any,
    timeout: float | None = None,  # noqa: ASYNC109 (passed on to enter())
) -> None:
    results[key] = await stage.enter(t, head, timeout=timeout)


# -- tickets -------------------------------------------------------------------------------


async def test_ticket_refuses_a_token_that_is_held() -> None:
    """1: a second ticket for a held token is None, across enter(); closing frees it."""
    stage: AnyStage = Stage(None, None)
    a = ticket(stage, 1)
    assert stage.ticket(1) is None
    assert await stage.enter(a, returns("x")) == Finished("x")
    # The port keeps the token for the next enter() until the ticket is closed.
    assert stage.ticket(1) is None
    a.close()
    assert a.closed
    b = stage.ticket(1)
    assert b is not None
    assert b.token == 1
    b.close()
    with ticket(stage, 1):
        assert stage.ticket(1) is None
    assert stage.ticket(1) is not None


def test_ticket_dropped_unused_frees_its_token() -> None:
    """10: a ticket that is garbage-collected frees its token; notifying it is a no-op."""
    stage: AnyStage = Stage(None, None)
    t = ticket(stage, "x")
    del t
    gc.collect()
    notified: list[bool] = []

    def head(director: Director[Any, Any, Any]) -> None:
        notified.append(director.notify("x"))

    assert stage.blocking.enter(ticket(stage, "h"), head) == Finished(None)
    assert notified == [False]
    again = stage.ticket("x")
    assert again is not None
    assert stage.blocking.enter(again, lambda d: "headed", timeout=0) == Finished("headed")


async def test_closed_ticket_raises_closed() -> None:
    """Entering with a closed ticket raises Closed; close() is idempotent."""
    stage: AnyStage = Stage(None, None)
    t = ticket(stage, "a")
    t.close()
    t.close()
    with pytest.raises(Closed):
        await stage.enter(t, must_not_head)


async def test_ticket_cannot_close_or_reenter_while_inside_enter() -> None:
    """A ticket inside enter() can neither be closed nor entered a second time."""
    stage: AnyStage = Stage(None, None)
    holder = Holder()
    h, a = ticket(stage, "h"), ticket(stage, "a")
    results: dict[str, Outcome] = {}
    async with bounded_group() as tg:
        tg.start_soon(run_into, results, "h", stage, h, holder)
        await holder.started.wait()
        with pytest.raises(RuntimeError):
            h.close()
        tg.start_soon(run_into, results, "a", stage, a, must_not_head)
        await wait_parked(stage, "a")
        with pytest.raises(RuntimeError):
            a.close()
        with pytest.raises(RuntimeError):
            await stage.enter(a, must_not_head)
        holder.release.set()
        holder.then = lambda d: d.notify("a")
    assert results == {"h": Finished("held"), "a": Notified()}
    a.close()
    h.close()


def test_handles_cannot_be_constructed_directly() -> None:
    """Ticket and Director are made by the stage, never by hand."""
    with pytest.raises(TypeError):
        Ticket()
    with pytest.raises(TypeError):
        Director()


async def test_enter_rejects_bad_input() -> None:
    """Foreign tickets, non-tickets, non-callables and bad timeouts get clear errors."""
    stage: AnyStage = Stage(None, None)
    other: AnyStage = Stage(None, None)
    foreign = ticket(other, "a")
    with pytest.raises(ValueError, match="another stage"):
        await stage.enter(foreign, must_not_head)
    with pytest.raises(TypeError):
        await stage.enter("a", must_not_head)  # type: ignore[arg-type]
    t = ticket(stage, "a")
    with pytest.raises(TypeError):
        await stage.enter(t, 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await stage.enter(t, must_not_head, timeout=-1)
    with pytest.raises(TypeError):
        await stage.enter(t, must_not_head, timeout="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        stage.ticket([1, 2])
    # None of that left the ticket or the stage in a bad state.
    assert await stage.enter(t, returns(1), timeout=0) == Finished(1)


# -- heading and parking -------------------------------------------------------------------


async def test_enter_heads_at_once_when_nobody_heads() -> None:
    """2: with nobody heading, enter(timeout=0) heads at once and returns Finished."""
    buf: dict[str, list[int]] = {}
    stage: Stage[str, str, dict[str, list[int]]] = Stage("the resource", buf)
    seen: list[Any] = []

    async def head(director: Director[str, str, dict[str, list[int]]]) -> int:
        seen.append((director.token, director.resource))
        with director.buffer() as b:
            seen.append(b is buf)
        return 7

    with ticket(stage, "a") as a:
        result = await stage.enter(a, head, timeout=0)
    assert result == Finished(7)
    assert seen == [("a", "the resource"), True]
    match result:
        case Finished(value):
            assert value == 7
        case _:
            pytest.fail(f"unexpected {result!r}")


async def test_enter_times_out_while_another_heads() -> None:
    """3: while another heads, enter(timeout) returns TimedOut after the timeout, and the
    timed-out waiter is not promoted later."""
    stage: AnyStage = Stage(None, None)
    holder = Holder()
    h, a, c = ticket(stage, "h"), ticket(stage, "a"), ticket(stage, "c")
    results: dict[str, Outcome] = {}
    async with bounded_group() as tg:
        tg.start_soon(run_into, results, "h", stage, h, holder)
        await holder.started.wait()
        start = anyio.current_time()
        assert await stage.enter(a, must_not_head, timeout=0.05) == TimedOut()
        assert anyio.current_time() - start >= 0.05 - 0.002
        assert await stage.enter(a, must_not_head, timeout=0) == TimedOut()
        assert parked(stage) == []
        holder.release.set()
    # Nobody heads now and nobody was left parked: the next entrant takes the fast path.
    assert await stage.enter(c, returns("c"), timeout=0) == Finished("c")
    assert results == {"h": Finished("held")}
    a.close()
    assert stage.ticket("a") is not None


async def test_enter_parks_while_someone_heads() -> None:
    """12: an entrant parks while another heads (no fast path), and heads once it leaves."""
    stage: AnyStage = Stage(None, None)
    holder = Holder()
    ran: list[str] = []

    async def head_d(director: Director[Any, Any, Any]) -> str:
        ran.append("d")
        return "d"

    h, d = ticket(stage, "h"), ticket(stage, "d")
    results: dict[str, Outcome] = {}
    async with bounded_group() as tg:
        tg.start_soon(run_into, results, "h", stage, h, holder)
        await holder.started.wait()
        tg.start_soon(run_into, results, "d", stage, d, head_d)
        await wait_parked(stage, "d")
        assert ran == []
        assert "d" not in results
        holder.release.set()
    assert results == {"h": Finished("held"), "d": Finished("d")}
    assert ran == ["d"]


async def test_notify_wakes_a_parked_waiter_that_finds_its_data() -> None:
    """4: a head buffers data then notifies a parked token; its enter returns Notified and
    the data is in the buffer."""
    stage: Stage[str, None, dict[str, list[bytes]]] = Stage(None, {})
    notified: list[bool] = []

    def route(director: Director[str, None, dict[str, list[bytes]]]) -> None:
        with director.buffer() as buf:
            buf.setdefault("a", []).append(b"for a")
        notified.append(director.notify("a"))

    holder = Holder(then=route)
    h, a = ticket(stage, "h"), ticket(stage, "a")
    results: dict[str, Outcome] = {}
    async with bounded_group() as tg:
        tg.start_soon(run_into, results, "h", stage, h, holder)
        await holder.started.wait()
        tg.start_soon(run_into, results, "a", stage, a, must_not_head)
        await wait_parked(stage, "a")
        holder.release.set()
    assert results == {"h": Finished("held"), "a": Notified()}
    assert notified == [True]
    with stage.buffer() as buf:
        assert buf == {"a": [b"for a"]}


async def test_notify_before_enter_returns_notified_at_once() -> None:
    """5: a token notified between ticket() and enter() gets Notified at once, without
    heading; notifying twice is one notification."""
    stage: AnyStage = Stage(None, None)
    a = ticket(stage, "a")

    async def head(director: Director[Any, Any, Any]) -> None:
        assert director.notify("a")
        assert director.notify("a")

    assert await stage.enter(ticket(stage, "h"), head) == Finished(None)
    assert await stage.enter(a, must_not_head, timeout=0) == Notified()
    match await stage.enter(a, returns("second"), timeout=0):
        case Notified():
            pytest.fail("a double notify was delivered twice")
        case Finished(value):
            assert value == "second"
        case TimedOut():
            pytest.fail("nobody heads, so enter should have headed")


async def test_notify_unknown_token_is_lost() -> None:
    """6: notifying a token nobody holds does nothing; a later ticket is not woken by it."""
    stage: AnyStage = Stage(None, None)

    async def head(director: Director[Any, Any, Any]) -> bool:
        return director.notify("x")

    assert await stage.enter(ticket(stage, "h"), head) == Finished(False)
    with ticket(stage, "x") as x:
        assert await stage.enter(x, returns("x headed"), timeout=0) == Finished("x headed")


async def test_promotion_is_fifo_and_one_at_a_time() -> None:
    """7: when the head leaves, exactly one waiter heads — the oldest — the other stays
    parked until that one leaves."""
    stage: AnyStage = Stage(None, None)
    holder_h, holder_b = Holder("h"), Holder("b")
    h, b, c = ticket(stage, "h"), ticket(stage, "b"), ticket(stage, "c")
    results: dict[str, Outcome] = {}
    async with bounded_group() as tg:
        tg.start_soon(run_into, results, "h", stage, h, holder_h)
        await holder_h.started.wait()
        tg.start_soon(run_into, results, "b", stage, b, holder_b)
        await wait_parked(stage, "b")
        tg.start_soon(run_into, results, "c", stage, c, returns("c"))
        await wait_parked(stage, "b", "c")
        holder_h.release.set()
        with anyio.fail_after(5):
            await holder_b.started.wait()
        assert parked(stage) == ["c"]
        assert "c" not in results
        holder_b.release.set()
    assert results == {"h": Finished("h"), "b": Finished("b"), "c": Finished("c")}


async def test_raising_head_releases_the_stage_and_promotes_the_next() -> None:
    """9: a head's exception propagates from its enter(), after the stage is released and
    the next waiter promoted."""
    stage: AnyStage = Stage(None, None)

    def boom(director: Director[Any, Any, Any]) -> None:
        raise KeyError("boom")

    holder = Holder(then=boom)
    h, b = ticket(stage, "h"), ticket(stage, "b")
    results: dict[str, Outcome] = {}
    raised: list[BaseException] = []

    async def run_h() -> None:
        try:
            await stage.enter(h, holder)
        except KeyError as exc:
            raised.append(exc)

    async with bounded_group() as tg:
        tg.start_soon(run_h)
        await holder.started.wait()
        tg.start_soon(run_into, results, "b", stage, b, returns("b"))
        await wait_parked(stage, "b")
        holder.release.set()
    assert [type(e) for e in raised] == [KeyError]
    assert results == {"b": Finished("b")}
    # The raising head's ticket is still usable.
    assert await stage.enter(h, returns("again"), timeout=0) == Finished("again")


async def test_cancelled_head_releases_the_stage() -> None:
    """A head cancelled from outside releases the stage and promotes the next waiter."""
    stage: AnyStage = Stage(None, None)
    holder = Holder()
    h, b = ticket(stage, "h"), ticket(stage, "b")
    results: dict[str, Outcome] = {}
    async with bounded_group() as tg:
        scope = anyio.CancelScope()

        async def run_h() -> None:
            with scope:
                await stage.enter(h, holder)

        tg.start_soon(run_h)
        await holder.started.wait()
        tg.start_soon(run_into, results, "b", stage, b, returns("b"))
        await wait_parked(stage, "b")
        scope.cancel()
    assert results == {"b": Finished("b")}


async def test_notify_own_token_raises_value_error() -> None:
    """A head notifying its own token gets ValueError (exit-left corrupted its state)."""
    stage: AnyStage = Stage(None, None)
    errors: list[BaseException] = []

    async def head(director: Director[Any, Any, Any]) -> str:
        try:
            director.notify("h")
        except ValueError as exc:
            errors.append(exc)
        return "ok"

    h = ticket(stage, "h")
    assert await stage.enter(h, head) == Finished("ok")
    assert len(errors) == 1
    # And the stage is intact: the next enter heads at once.
    assert await stage.enter(ticket(stage, "x"), returns("x"), timeout=0) == Finished("x")


async def test_director_is_closed_after_the_head_returns() -> None:
    """A Director kept past its head function raises Closed."""
    stage: AnyStage = Stage("res", [])
    kept: list[Director[Any, Any, Any]] = []

    async def head(director: Director[Any, Any, Any]) -> None:
        kept.append(director)

    await stage.enter(ticket(stage, "h"), head)
    (director,) = kept
    with pytest.raises(Closed):
        director.notify("x")
    with pytest.raises(Closed):
        _ = director.resource
    with pytest.raises(Closed):
        director.buffer()
    assert "left" in repr(director)


async def test_async_enter_rejects_a_plain_head() -> None:
    """A plain-def head passed to await enter() raises TypeError and releases the stage."""
    stage: AnyStage = Stage(None, None)
    with pytest.raises(TypeError, match="async head"):
        await stage.enter(ticket(stage, "a"), lambda d: 1)  # type: ignore[arg-type, return-value]
    assert await stage.enter(ticket(stage, "b"), returns(2), timeout=0) == Finished(2)


# -- cancellation, timeouts and spurious wake-ups -------------------------------------------


async def test_cancelled_parked_waiter_leaves_the_line() -> None:
    """A parked waiter that is cancelled is never promoted; the next one is."""
    stage: AnyStage = Stage(None, None)
    holder = Holder()
    h, a, b = ticket(stage, "h"), ticket(stage, "a"), ticket(stage, "b")
    results: dict[str, Outcome] = {}
    a_scope = anyio.CancelScope()

    async def run_a() -> None:
        with a_scope:
            results["a"] = await stage.enter(a, must_not_head)

    async with bounded_group() as tg:
        tg.start_soon(run_into, results, "h", stage, h, holder)
        await holder.started.wait()
        tg.start_soon(run_a)
        await wait_parked(stage, "a")
        tg.start_soon(run_into, results, "b", stage, b, returns("b"))
        await wait_parked(stage, "a", "b")
        a_scope.cancel()
        await wait_parked(stage, "b")
        holder.release.set()
    assert results == {"h": Finished("held"), "b": Finished("b")}


async def test_waiter_cancelled_as_it_is_promoted_hands_the_head_on() -> None:
    """A waiter cancelled in the same step as its promotion hands the head to the next
    waiter instead of leaving the line stranded."""
    stage: AnyStage = Stage(None, None)
    a_scope = anyio.CancelScope()
    # The head cancels A and leaves in one step, with no checkpoint in between.
    holder = Holder(then=lambda d: a_scope.cancel())
    h, a, b = ticket(stage, "h"), ticket(stage, "a"), ticket(stage, "b")
    results: dict[str, Outcome] = {}

    async def run_a() -> None:
        with a_scope:
            results["a"] = await stage.enter(a, must_not_head)

    async with bounded_group() as tg:
        tg.start_soon(run_into, results, "h", stage, h, holder)
        await holder.started.wait()
        tg.start_soon(run_a)
        await wait_parked(stage, "a")
        tg.start_soon(run_into, results, "b", stage, b, returns("b"))
        await wait_parked(stage, "a", "b")
        holder.release.set()
    assert results == {"h": Finished("held"), "b": Finished("b")}
    assert parked(stage) == []
    assert await stage.enter(a, returns("a"), timeout=0) == Finished("a")


async def test_cancelled_notified_waiter_keeps_the_notification() -> None:
    """A waiter cancelled in the same step as its notification finds it marked on its
    ticket at the next enter()."""
    stage: AnyStage = Stage(None, None)
    a_scope = anyio.CancelScope()

    def notify_and_cancel(director: Director[Any, Any, Any]) -> None:
        director.notify("a")
        a_scope.cancel()

    holder = Holder(then=notify_and_cancel)
    h, a = ticket(stage, "h"), ticket(stage, "a")
    results: dict[str, Outcome] = {}

    async def run_a() -> None:
        with a_scope:
            results["a"] = await stage.enter(a, must_not_head)

    async with bounded_group() as tg:
        tg.start_soon(run_into, results, "h", stage, h, holder)
        await holder.started.wait()
        tg.start_soon(run_a)
        await wait_parked(stage, "a")
        holder.release.set()
    # Either the notification won the race (asyncio may deliver both) or it is kept.
    if "a" not in results:
        assert await stage.enter(a, must_not_head, timeout=0) == Notified()
    else:
        assert results["a"] == Notified()


async def test_spurious_wakeup_keeps_waiting() -> None:
    """11: a parked waiter woken without being notified or promoted keeps its place."""
    stage: AnyStage = Stage(None, None)
    holder = Holder(then=lambda d: d.notify("a"))
    h, a, b = ticket(stage, "h"), ticket(stage, "a"), ticket(stage, "b")
    results: dict[str, Outcome] = {}
    async with bounded_group() as tg:
        tg.start_soon(run_into, results, "h", stage, h, holder)
        await holder.started.wait()
        tg.start_soon(run_into, results, "a", stage, a, must_not_head)
        await wait_parked(stage, "a")
        tg.start_soon(run_into, results, "b", stage, b, returns("b"))
        await wait_parked(stage, "a", "b")
        old = stage._entries["a"].waiter
        assert old is not None
        wake(old)  # outside the protocol: the entry stays in line
        with anyio.fail_after(5):
            while stage._entries["a"].waiter is old:  # noqa: ASYNC110
                await anyio.sleep(0.001)
        assert parked(stage) == ["a", "b"]
        assert results == {}
        holder.release.set()
    assert results == {"h": Finished("held"), "a": Notified(), "b": Finished("b")}


def test_spurious_wakeup_of_a_thread_keeps_waiting() -> None:
    """11 (threads): a parked thread woken spuriously keeps waiting, in its place."""
    stage: AnyStage = Stage(None, None)
    release = threading.Event()
    h, a = ticket(stage, "h"), ticket(stage, "a")
    results: dict[str, Outcome] = {}

    def hold(director: Director[Any, Any, Any]) -> None:
        assert release.wait(5)
        director.notify("a")

    def run_a() -> None:
        results["a"] = stage.blocking.enter(a, lambda d: "headed")

    holder_thread = threading.Thread(target=lambda: stage.blocking.enter(h, hold))
    holder_thread.start()
    thread = threading.Thread(target=run_a)
    try:
        deadline = time.monotonic() + 5
        while stage._head is None:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        thread.start()
        wait_parked_blocking(stage, "a")
        old = stage._entries["a"].waiter
        assert old is not None
        wake(old)
        while stage._entries["a"].waiter is old:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert results == {}
    finally:
        release.set()
        holder_thread.join(5)
        thread.join(5)
    assert results == {"a": Notified()}


def test_promotion_of_a_task_whose_loop_was_closed_is_handed_on() -> None:
    """A task parked on a stage whose event loop was then closed (the task never cancelled)
    cannot take a promotion: the head passes to the next waiter, or the stage is left free,
    instead of being headed for ever by nobody."""
    import asyncio

    stage: AnyStage = Stage(None, None)
    h, gone, nxt = ticket(stage, "h"), ticket(stage, "gone"), ticket(stage, "next")
    results: dict[str, Outcome] = {}
    kept: list[Any] = []

    def run_next() -> None:
        results["next"] = stage.blocking.enter(nxt, lambda d: "next headed", timeout=5)

    def hold(director: Director[Any, Any, Any]) -> str:
        # A task of another loop parks behind us, then its loop is closed under it.
        loop = asyncio.new_event_loop()
        kept.append(loop.create_task(stage.enter(gone, must_not_head)))
        loop.run_until_complete(asyncio.sleep(0))  # one step: the task runs until it parks
        assert parked(stage) == ["gone"]
        loop.close()
        thread.start()
        wait_parked_blocking(stage, "gone", "next")
        return "h"

    thread = threading.Thread(target=run_next)
    try:
        assert stage.blocking.enter(h, hold) == Finished("h")
    finally:
        thread.join(5)
    assert results == {"next": Finished("next headed")}
    assert stage._head is None
    assert stage.blocking.enter(h, lambda d: "free", timeout=0) == Finished("free")
    assert gone._entry.state == IDLE  # the dead waiter holds nothing
    kept[0]._log_destroy_pending = False  # its loop is gone: nothing can finish it


def test_interrupted_blocking_enter_leaves_the_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread interrupted (KeyboardInterrupt) while parked leaves the line as a timeout
    would: a later promotion goes to the next waiter, not the gone one."""
    stage: AnyStage = Stage(None, None)
    h, a = ticket(stage, "h"), ticket(stage, "a")

    def interrupted(self: ThreadWaiter, timeout: float | None) -> bool:
        raise KeyboardInterrupt

    def hold(director: Director[Any, Any, Any]) -> str:
        with monkeypatch.context() as patch:
            patch.setattr(ThreadWaiter, "wait", interrupted)
            with pytest.raises(KeyboardInterrupt):
                stage.blocking.enter(a, lambda d: "a", timeout=5)
        assert parked(stage) == []
        return "h"

    assert stage.blocking.enter(h, hold) == Finished("h")
    assert stage._head is None
    assert stage.blocking.enter(a, lambda d: "a", timeout=0) == Finished("a")


def _trio_with_mock_clock(main: Callable[[trio.testing.MockClock], Any]) -> None:
    clock = trio.testing.MockClock()
    trio.run(main, clock, clock=clock)


def test_timeout_wins_over_a_coinciding_notify() -> None:
    """8: a waiter notified as its deadline passes returns TimedOut, and the notification
    stays marked on its ticket for the next enter()."""

    async def main(clock: trio.testing.MockClock) -> None:
        stage: AnyStage = Stage(None, None)
        go = trio.Event()

        async def head(director: Director[Any, Any, Any]) -> str:
            await go.wait()
            clock.jump(10)  # a's deadline passes ...
            assert director.notify("a")  # ... as it is notified
            return "h"

        h, a = ticket(stage, "h"), ticket(stage, "a")
        results: dict[str, Outcome] = {}
        with trio.fail_after(100):  # mock time: a hang autojumps here (see go.set())
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_into, results, "h", stage, h, head)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(run_into, results, "a", stage, a, must_not_head, 1.0)
                await trio.testing.wait_all_tasks_blocked()
                assert parked(stage) == ["a"]
                go.set()
                clock.autojump_threshold = 0.5  # from here on, no time should pass
        assert results == {"h": Finished("h"), "a": TimedOut()}
        assert await stage.enter(a, must_not_head, timeout=0) == Notified()

    _trio_with_mock_clock(main)


def test_promotion_coinciding_with_the_deadline_is_handed_on() -> None:
    """A waiter promoted as its deadline passes returns TimedOut and hands the head to the
    next waiter, so nobody is left parked while nobody heads."""

    async def main(clock: trio.testing.MockClock) -> None:
        stage: AnyStage = Stage(None, None)
        go = trio.Event()

        async def head(director: Director[Any, Any, Any]) -> str:
            await go.wait()
            clock.jump(10)  # a's deadline passes as the head leaves and promotes a
            return "h"

        h, a, b = ticket(stage, "h"), ticket(stage, "a"), ticket(stage, "b")
        results: dict[str, Outcome] = {}
        with trio.fail_after(100):  # mock time: a hang autojumps here (see go.set())
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_into, results, "h", stage, h, head)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(run_into, results, "a", stage, a, must_not_head, 1.0)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(run_into, results, "b", stage, b, returns("b"))
                await trio.testing.wait_all_tasks_blocked()
                assert parked(stage) == ["a", "b"]
                go.set()
                clock.autojump_threshold = 0.5  # from here on, no time should pass
        assert results == {"h": Finished("h"), "a": TimedOut(), "b": Finished("b")}
        assert stage._head is None

    _trio_with_mock_clock(main)


# -- buffer ---------------------------------------------------------------------------------


async def test_buffer_nested_raises_instead_of_deadlocking() -> None:
    """stage.buffer() inside director.buffer() raises RuntimeError (exit-left deadlocked),
    and a head may notify while it holds the buffer."""
    stage: Stage[str, None, dict[str, int]] = Stage(None, {})
    a = ticket(stage, "a")

    async def head(director: Director[str, None, dict[str, int]]) -> str:
        with director.buffer() as buf:
            buf["a"] = 1
            with pytest.raises(RuntimeError), stage.buffer():
                pass
            assert director.notify("a")
        return "h"

    assert await stage.enter(ticket(stage, "h"), head) == Finished("h")
    assert await stage.enter(a, must_not_head) == Notified()
    with stage.buffer() as buf:
        assert buf == {"a": 1}
    with stage.buffer() as buf:  # released after each block
        assert buf["a"] == 1


def test_results_are_frozen_values() -> None:
    """What `enter` returns compares by value, is immutable and matches positionally."""
    assert Finished(1) == Finished(1)
    assert Finished(1) != Finished(2)
    assert Notified() == Notified()
    assert TimedOut() != Notified()  # type: ignore[comparison-overlap]
    with pytest.raises(AttributeError):
        Finished(1).value = 2  # type: ignore[misc]
    assert asyncmp.Finished is Finished
    assert Finished.__module__ == "asyncmp"


# -- threads, and threads with tasks -------------------------------------------------------


async def test_blocking_enter_on_a_loop_thread_raises_runtime_error() -> None:
    """blocking.enter() on a thread that runs an event loop raises RuntimeError at once."""
    stage: AnyStage = Stage(None, None)
    with ticket(stage, "a") as a, pytest.raises(RuntimeError, match="event loop"):
        stage.blocking.enter(a, lambda d: None)
    assert stage._head is None


def test_blocking_enter_rejects_bad_input() -> None:
    """The blocking form checks its ticket, head and timeout, and refuses async heads."""
    stage: AnyStage = Stage(None, None)
    a = ticket(stage, "a")
    with pytest.raises(ValueError):
        stage.blocking.enter(a, lambda d: None, timeout=-1)
    with pytest.raises(TypeError):
        stage.blocking.enter(a, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="plain head"):
        stage.blocking.enter(a, must_not_head)
    # The coroutine was closed (no "never awaited" warning) and the stage released.
    assert stage.blocking.enter(a, lambda d: "ok", timeout=0) == Finished("ok")
    a.close()
    with pytest.raises(Closed):
        stage.blocking.enter(a, lambda d: None)


def test_threads_time_out_get_notified_and_are_promoted() -> None:
    """Threads: a parked thread times out, another is notified, a third is promoted."""
    stage: Stage[str, None, dict[str, str]] = Stage(None, {})
    release = threading.Event()
    results: dict[str, Outcome] = {}

    def hold(director: Director[str, None, dict[str, str]]) -> str:
        assert release.wait(5)
        with director.buffer() as buf:
            buf["n"] = "data for n"
        director.notify("n")
        return "h"

    def run(key: str, head: Callable[[Any], Any], timeout: float | None = None) -> None:
        with ticket(stage, key) as t:
            results[key] = stage.blocking.enter(t, head, timeout=timeout)

    threads = [threading.Thread(target=run, args=("h", hold))]
    threads[0].start()
    try:
        deadline = time.monotonic() + 5
        while stage._head is None:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        run("t", lambda d: "t", 0.02)
        assert results["t"] == TimedOut()
        for key in ("n", "p"):
            threads.append(threading.Thread(target=run, args=(key, lambda d, k=key: k)))
            threads[-1].start()
            wait_parked_blocking(stage, *[t for t in ("n", "p") if t <= key])
    finally:
        release.set()
        for thread in threads:
            thread.join(5)
    assert results == {"h": Finished("h"), "t": TimedOut(), "n": Notified(), "p": Finished("p")}
    with stage.buffer() as buf:
        assert buf == {"n": "data for n"}


async def test_threads_and_tasks_wait_on_one_stage() -> None:
    """Tasks and threads park on one stage: a task head notifies threads and tasks, and
    promotion passes from a task to a thread to a task in FIFO order."""
    stage: Stage[str, None, dict[str, str]] = Stage(None, {})
    results: dict[str, Outcome] = {}

    def route(director: Director[str, None, dict[str, str]]) -> None:
        for key in ("thread1", "task1", "thread2"):
            with director.buffer() as buf:
                buf[key] = f"data for {key}"
            assert director.notify(key)

    def run_thread(key: str, head: Callable[[Any], Any]) -> None:
        with ticket(stage, key) as t:
            results[key] = stage.blocking.enter(t, head, timeout=5)

    async def run_task(key: str, head: Any) -> None:
        with ticket(stage, key) as t:
            results[key] = await stage.enter(t, head, timeout=5)

    # Round 1: one task heads and routes to two threads and a task.
    holder = Holder(then=route)
    async with bounded_group() as tg:
        tg.start_soon(run_task, "head", holder)
        await holder.started.wait()
        tg.start_soon(anyio.to_thread.run_sync, run_thread, "thread1", lambda d: "bad")
        await wait_parked(stage, "thread1")
        tg.start_soon(run_task, "task1", must_not_head)
        await wait_parked(stage, "thread1", "task1")
        tg.start_soon(anyio.to_thread.run_sync, run_thread, "thread2", lambda d: "bad")
        await wait_parked(stage, "thread1", "task1", "thread2")
        holder.release.set()
    assert results == {
        "head": Finished("held"),
        "thread1": Notified(),
        "task1": Notified(),
        "thread2": Notified(),
    }
    with stage.buffer() as buf:
        assert sorted(buf) == ["task1", "thread1", "thread2"]

    # Round 2: promotion in FIFO order across tasks and threads.
    results.clear()
    order: list[str] = []

    def thread_head(director: Director[str, None, dict[str, str]]) -> str:
        order.append(director.token)
        return director.token

    async def task_head(director: Director[str, None, dict[str, str]]) -> str:
        order.append(director.token)
        return director.token

    holder = Holder()
    async with bounded_group() as tg:
        tg.start_soon(run_task, "head", holder)
        await holder.started.wait()
        tg.start_soon(anyio.to_thread.run_sync, run_thread, "thread3", thread_head)
        await wait_parked(stage, "thread3")
        tg.start_soon(run_task, "task2", task_head)
        await wait_parked(stage, "thread3", "task2")
        tg.start_soon(anyio.to_thread.run_sync, run_thread, "thread4", thread_head)
        await wait_parked(stage, "thread3", "task2", "thread4")
        holder.release.set()
    assert order == ["thread3", "task2", "thread4"]
    assert results == {
        "head": Finished("held"),
        "thread3": Finished("thread3"),
        "task2": Finished("task2"),
        "thread4": Finished("thread4"),
    }


def test_stage_is_shared_by_asyncio_trio_and_a_thread_at_once() -> None:
    """A thread heads while an asyncio task, a trio task (each in its own thread's loop) and
    a plain thread wait; then the head is passed between the two loops."""
    stage: AnyStage = Stage(None, None)
    results: dict[str, Outcome] = {}
    release = threading.Event()
    order: list[str] = []

    async def loop_head(director: Director[Any, Any, Any]) -> str:
        await anyio.lowlevel.checkpoint()  # a real await on the promoted task's own loop
        order.append(director.token)
        return str(director.token)

    def on_loop(backend: str, key: str) -> None:
        async def main() -> None:
            with ticket(stage, key) as t:
                results[key] = await stage.enter(t, loop_head, timeout=5)

        anyio.run(main, backend=backend)

    def plain(key: str) -> None:
        with ticket(stage, key) as t:
            results[key] = stage.blocking.enter(t, lambda d: "bad", timeout=5)

    def route(director: Director[Any, Any, Any]) -> str:
        assert release.wait(5)
        for key in ("asyncio", "trio", "plain"):
            director.notify(key)
        return "main"

    def hold(director: Director[Any, Any, Any]) -> str:
        assert release.wait(5)
        return "main"

    def start(target: Callable[..., None], *args: str) -> threading.Thread:
        thread = threading.Thread(target=target, args=args)
        thread.start()
        return thread

    for head, expected in (
        (route, {"asyncio": Notified(), "trio": Notified(), "plain": Notified()}),
        (hold, {"asyncio": Finished("asyncio"), "trio": Finished("trio")}),
    ):
        results.clear()
        release.clear()
        threads: list[threading.Thread] = []
        with ticket(stage, "main") as m:
            main_thread = start(
                lambda h=head: results.__setitem__("main", stage.blocking.enter(m, h))
            )
            try:
                deadline = time.monotonic() + 5
                while stage._head is None:
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
                threads.append(start(on_loop, "asyncio", "asyncio"))
                wait_parked_blocking(stage, "asyncio")
                threads.append(start(on_loop, "trio", "trio"))
                wait_parked_blocking(stage, "asyncio", "trio")
                if "plain" in expected:
                    threads.append(start(plain, "plain"))
                    wait_parked_blocking(stage, "asyncio", "trio", "plain")
            finally:
                release.set()
                main_thread.join(5)
                for thread in threads:
                    thread.join(5)
        assert results == {"main": Finished("main"), **expected}
    assert order == ["asyncio", "trio"]


# -- statistics and repr --------------------------------------------------------------------


async def test_statistics_count_tickets_head_parked_waiters_and_pending_notifications() -> None:
    """statistics() reports what trio's channel statistics report of a channel: the tickets
    held, whether someone heads, the waiters parked — a thread and a task alike — and the
    notifications no enter has returned yet."""
    stage: AnyStage = Stage(None, {})
    idle = ticket(stage, "idle")
    results: dict[str, Outcome] = {}
    assert stage.statistics() == asyncmp.StageStatistics(
        tickets=1, headed=False, parked=0, notified=0
    )

    def run_thread(key: str) -> None:
        with ticket(stage, key) as t:
            results[key] = stage.blocking.enter(t, lambda d: key, timeout=WAIT)

    holder = Holder(then=lambda director: director.notify("idle"))
    async with bounded_group() as tg:
        tg.start_soon(run_into, results, "head", stage, ticket(stage, "head"), holder)
        await holder.started.wait()
        tg.start_soon(anyio.to_thread.run_sync, run_thread, "thread")
        await wait_parked(stage, "thread")
        tg.start_soon(run_into, results, "task", stage, ticket(stage, "task"), returns("task"))
        await wait_parked(stage, "thread", "task")

        assert stage.statistics() == asyncmp.StageStatistics(
            tickets=4, headed=True, parked=2, notified=0
        )
        holder.release.set()  # the head notifies "idle", then each waiter heads in turn

    assert results == {
        "head": Finished("held"),
        "thread": Finished("thread"),
        "task": Finished("task"),
    }
    # The thread closed its ticket; the tasks' tickets are held until collected or closed.
    stats = stage.statistics()
    assert (stats.headed, stats.parked, stats.notified) == (False, 0, 1)
    assert await stage.enter(idle, must_not_head) == Notified()
    assert stage.statistics().notified == 0


def test_repr_of_a_stage_takes_no_lock() -> None:
    """repr(stage) reads the stage without its lock: it returns while another thread holds
    the lock (a debugger, a log line, a deadlock report)."""
    stage: AnyStage = Stage(None, {})
    held = ticket(stage, "a")
    shown: list[str] = []
    worker = threading.Thread(target=lambda: shown.append(repr(stage)), daemon=True)
    assert stage._lock.acquire(timeout=WAIT)
    try:
        worker.start()
        worker.join(WAIT)  # bounded: a repr that waited for the lock would still be waiting
    finally:
        stage._lock.release()

    assert shown == ["<Stage free [tickets: 1, parked: 0]>"]
    held.close()
    assert repr(stage) == "<Stage free [tickets: 0, parked: 0]>"
