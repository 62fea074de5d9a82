"""`_coalesce`: cross-thread wake-ups batched per event loop — each runs once, in post order,
however posts and drains interleave; one ``call_soon_threadsafe`` per batch; a closed loop
refuses a post as ``call_soon_threadsafe`` does; a raising callback does not stop the batch.

The post/drain races are placed, not hoped for: the batch's queue is replaced by a ``deque``
whose ``append``, ``__len__`` or ``popleft`` runs a hook at the exact point of the race (a
post between its append and its look at the flag; a drain just after it counted what to
run), and the loop is stepped by hand, so that a drain runs exactly where the test says.
A wake-up to an asyncio loop with nothing ready to run goes alone, unbatched: the tests of
the batch give the loop something to run first (`busy`).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvloop

from asyncmp._lowlevel import _coalesce
from asyncmp._lowlevel._coalesce import WakeBatch, attach, batch_of, post, resolve_soon

from ._support import WAIT

LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(uvloop.new_event_loop, id="uvloop"),
]


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh loop of each kind, not running, with a batch (on uvloop too: `attach`)."""
    made: asyncio.AbstractEventLoop = request.param()
    assert attach(made) is not None
    yield made
    made.close()


def step(loop: asyncio.AbstractEventLoop) -> None:
    """Run what the loop has ready (a scheduled drain among it), then stop."""
    loop.run_until_complete(asyncio.sleep(0))


def busy(loop: asyncio.AbstractEventLoop) -> None:
    """Give the loop a callback ready to run, as a loop at work has: the wake-ups posted to
    it now are batched (to an idle asyncio loop, the first would go alone)."""
    loop.call_soon(lambda: None)


class Hooked(deque[Any]):
    """A batch's queue with a hook before or after an ``append``, before ``__len__``
    answers, or after a ``popleft`` (each runs once, then the hook is gone)."""

    def __init__(self) -> None:
        super().__init__()
        self.before_append: Callable[[], object] | None = None
        self.after_append: Callable[[], object] | None = None
        self.before_len: Callable[[], object] | None = None
        self.after_popleft: Callable[[], object] | None = None

    def append(self, item: Any) -> None:
        hook, self.before_append = self.before_append, None
        if hook is not None:
            hook()
        super().append(item)
        hook, self.after_append = self.after_append, None
        if hook is not None:
            hook()

    def __len__(self) -> int:
        hook, self.before_len = self.before_len, None
        if hook is not None:
            hook()
        return super().__len__()

    def popleft(self) -> Any:
        item = super().popleft()
        hook, self.after_popleft = self.after_popleft, None
        if hook is not None:
            hook()
        return item


def hooked(loop: asyncio.AbstractEventLoop) -> tuple[WakeBatch, Hooked]:
    batch = batch_of(loop)
    assert batch is not None
    assert not batch.direct
    queue = batch.pending = Hooked()
    return batch, queue


class Drains:
    """Counts the drains that run, and what each ran (wraps `WakeBatch.drain`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, ran: list[object]) -> None:
        self.ran = ran
        self.batches: list[list[object]] = []
        real = WakeBatch.drain

        def drain(batch: WakeBatch) -> None:
            before = len(ran)
            real(batch)
            self.batches.append(ran[before:])

        monkeypatch.setattr(WakeBatch, "drain", drain)


# -- what a post promises -------------------------------------------------------------------


def test_posts_run_on_the_loop_once_each_in_post_order(loop: asyncio.AbstractEventLoop) -> None:
    """`post` and `resolve_soon` from another thread: each callback runs once, on the
    loop's thread, in the order they were posted; a resolved future has the value."""
    ran: list[object] = []
    threads: list[int] = []
    futures = [loop.create_future() for _ in range(3)]

    def record(n: int) -> None:
        ran.append(n)
        threads.append(threading.get_ident())

    def poster() -> None:
        for n in range(100):
            post(loop, record, n)
            if n < 3:
                resolve_soon(loop, futures[n], n * 10)

    thread = threading.Thread(target=poster)
    thread.start()
    thread.join(WAIT)
    step(loop)
    assert ran == list(range(100))
    assert set(threads) == {threading.get_ident()}
    assert [f.result() for f in futures] == [0, 10, 20]


def test_posts_before_the_loop_runs_make_one_wake_up(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Posts that come while a drain is on its way only append: a hundred posts to a loop
    at work cost one ``call_soon_threadsafe``, and one drain runs them all."""
    calls: list[object] = []
    real = loop.call_soon_threadsafe

    def counting(callback: Callable[..., object], *args: Any, context: Any = None) -> Any:
        calls.append(callback)
        return real(callback, *args, context=context)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    ran: list[object] = []
    drains = Drains(monkeypatch, ran)
    busy(loop)
    for n in range(100):
        post(loop, ran.append, n)
    step(loop)
    assert ran == list(range(100))
    assert len(calls) == 1
    assert drains.batches == [list(range(100))]


def test_a_wake_up_to_an_idle_loop_goes_alone_and_the_next_ones_are_batched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wake-up to an asyncio loop with nothing ready to run costs what
    ``call_soon_threadsafe`` costs — a handle of its own, no batch; those that follow while
    it waits are batched behind it, one drain for all, and all run in post order."""
    loop = asyncio.new_event_loop()
    try:
        ran: list[object] = []
        drains = Drains(monkeypatch, ran)
        batch = batch_of(loop)
        assert batch is not None
        post(loop, ran.append, 0)
        assert not batch.pending
        assert not batch.scheduled
        for n in range(1, 5):
            post(loop, ran.append, n)
        assert len(batch.pending) == 4
        step(loop)
        assert ran == [0, 1, 2, 3, 4]
        assert drains.batches == [[1, 2, 3, 4]]
    finally:
        loop.close()


def test_a_resolved_future_cancelled_meanwhile_passes_the_value_on(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """`resolve_soon` to a future cancelled before the drain runs calls ``undelivered``
    with the value (on the loop), instead of resolving it."""
    fut = loop.create_future()
    passed: list[object] = []
    resolve_soon(loop, fut, "value", passed.append)
    fut.cancel()
    step(loop)
    assert passed == ["value"]
    assert fut.cancelled()


# -- the post/drain races -------------------------------------------------------------------


def test_a_post_that_appends_before_the_drain_and_looks_after_it_runs_once(
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race the drain must not lose: a post appends while a drain is scheduled (the
    flag is set), then — before it looks at the flag — the drain starts, clears the flag
    and runs everything, the new entry included. The post then sees the flag clear and
    schedules another drain, which finds nothing. The entry ran once, in order."""
    batch, queue = hooked(loop)
    ran: list[object] = []
    drains = Drains(monkeypatch, ran)
    appended, drained = threading.Event(), threading.Event()
    busy(loop)
    post(loop, ran.append, "first")  # schedules the drain; the loop does not run yet

    def between_append_and_look() -> None:
        appended.set()
        assert drained.wait(WAIT)  # the loop runs the drain now

    queue.after_append = between_append_and_look
    thread = threading.Thread(target=post, args=(loop, ran.append, "second"))
    thread.start()
    assert appended.wait(WAIT)
    step(loop)  # the drain: clears the flag, runs both
    assert drains.batches == [["first", "second"]]
    drained.set()
    thread.join(WAIT)
    assert batch.scheduled  # the post saw the flag clear and scheduled a drain
    step(loop)
    assert drains.batches == [["first", "second"], []]
    assert ran == ["first", "second"]
    assert not batch.scheduled


def test_a_post_whose_append_comes_just_after_a_drain_schedules_the_next(
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A post that starts while a drain is scheduled, but appends only after that drain
    has run and found its batch: it looks at the flag after appending, finds it clear and
    schedules a drain of its own (a post that looked before appending would trust the
    drain that has gone, and its entry would wait for ever)."""
    batch, queue = hooked(loop)
    ran: list[object] = []
    drains = Drains(monkeypatch, ran)
    busy(loop)
    post(loop, ran.append, 1)
    queue.before_append = lambda: step(loop)  # the scheduled drain runs first
    post(loop, ran.append, 2)
    assert drains.batches == [[1]]
    assert batch.scheduled
    step(loop)
    assert drains.batches == [[1], [2]]
    assert ran == [1, 2]


def test_a_post_between_the_drains_count_and_its_end_gets_a_drain_of_its_own(
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A post that lands after a drain counted what to run (the drain runs only that) sees
    the flag clear — the drain cleared it before counting — and schedules the next drain,
    which runs it: nothing is left behind, and a stream of posts cannot hold the loop."""
    _, queue = hooked(loop)
    ran: list[object] = []
    drains = Drains(monkeypatch, ran)
    busy(loop)
    post(loop, ran.append, 1)
    post(loop, ran.append, 2)
    queue.after_popleft = lambda: (busy(loop), post(loop, ran.append, 3))  # mid-drain
    step(loop)
    assert drains.batches[0] == [1, 2]
    if len(drains.batches) == 1:
        step(loop)
    assert drains.batches == [[1, 2], [3]]
    assert ran == [1, 2, 3]


def test_a_post_just_before_the_drain_counts_is_run_by_that_drain(
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A post that lands after the drain cleared the flag but before it counted: that
    drain runs it, and the drain the post scheduled finds nothing left."""
    _, queue = hooked(loop)
    ran: list[object] = []
    drains = Drains(monkeypatch, ran)
    busy(loop)
    post(loop, ran.append, 1)
    queue.before_len = lambda: (busy(loop), post(loop, ran.append, 2))
    step(loop)
    if len(drains.batches) == 1:
        step(loop)
    assert drains.batches == [[1, 2], []]
    assert ran == [1, 2]


def test_a_post_interrupted_as_its_append_returns_still_gets_a_drain(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the instant a post's append returns (a signal handler may run there): the
    interrupt propagates, and the entry queued before it still gets a drain, so nothing is
    left in the batch with no drain coming."""
    _, queue = hooked(loop)
    ran: list[object] = []
    drains = Drains(monkeypatch, ran)

    def interrupt() -> None:
        raise KeyboardInterrupt

    busy(loop)
    queue.after_append = interrupt
    with pytest.raises(KeyboardInterrupt):
        post(loop, ran.append, "queued")
    step(loop)
    assert ran == ["queued"]
    assert drains.batches == [["queued"]]


def test_many_threads_posting_to_a_running_loop_lose_nothing(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Four threads post 2,000 wake-ups each to a running loop, racing its drains: every
    one runs once, and each thread's run in the order it posted them."""
    per_thread = 2000
    ran: list[tuple[int, int]] = []
    all_ran = asyncio.Event()

    def record(entry: tuple[int, int]) -> None:
        ran.append(entry)
        if len(ran) == 4 * per_thread:
            all_ran.set()

    def poster(t: int) -> None:
        for n in range(per_thread):
            post(loop, record, (t, n))

    async def main() -> None:
        threads = [threading.Thread(target=poster, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        await all_ran.wait()
        for thread in threads:
            thread.join(WAIT)

    loop.run_until_complete(asyncio.wait_for(main(), WAIT * 4))
    assert len(ran) == 4 * per_thread
    for t in range(4):
        assert [n for who, n in ran if who == t] == list(range(per_thread))


# -- closed loops, errors -------------------------------------------------------------------


@pytest.mark.parametrize("new_loop", LOOPS)
def test_a_post_to_a_closed_loop_raises_as_call_soon_threadsafe_does(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """After ``close()`` a post raises RuntimeError and queues nothing — with a drain
    scheduled before the close (the flag stays set) as well as without; so `deliver`
    passes the value on."""
    for batched in (True, False):
        loop = new_loop()
        if batched:
            attach(loop)
        post(loop, lambda: None)  # a drain (or a handle) that close() drops
        loop.close()
        batch = batch_of(loop)
        assert batch is not None
        queued = len(batch.pending)
        with pytest.raises(RuntimeError, match="closed"):
            post(loop, lambda: None)
        with pytest.raises(RuntimeError, match="closed"):
            resolve_soon(loop, loop.create_future(), 1)
        assert len(batch.pending) == queued


def test_deliver_to_a_task_of_a_closed_loop_passes_the_value_on() -> None:
    """`deliver` from another thread to a future of a closed loop (batched: asyncio's own
    loop) calls ``undelivered`` at once, as it did with ``call_soon_threadsafe``."""
    from asyncmp._lowlevel._wake import deliver

    loop = asyncio.new_event_loop()
    fut = loop.create_future()
    loop.close()
    passed: list[object] = []
    thread = threading.Thread(target=deliver, args=(fut, "value", passed.append))
    thread.start()
    thread.join(WAIT)
    assert passed == ["value"]


def test_a_raising_callback_is_reported_and_the_batch_goes_on(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """A callback that raises goes to the loop's exception handler, as asyncio reports a
    callback's exception; the rest of its batch still runs."""
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    ran: list[object] = []

    def boom() -> None:
        raise ValueError("boom")

    busy(loop)
    post(loop, ran.append, 1)
    post(loop, boom)
    post(loop, ran.append, 2)
    step(loop)
    assert ran == [1, 2]
    assert [type(c["exception"]) for c in reported] == [ValueError]


def test_a_keyboard_interrupt_in_a_callback_leaves_the_rest_for_the_next_run(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """A KeyboardInterrupt from a callback propagates out of the loop (as asyncio lets it
    out of a callback); the callbacks after it in the batch run when the loop runs again."""
    ran: list[object] = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    busy(loop)
    post(loop, ran.append, 1)
    post(loop, interrupt)
    post(loop, ran.append, 2)
    with pytest.raises(KeyboardInterrupt):
        step(loop)
    assert ran[0] == 1  # uvloop may run what is ready before it lets the interrupt out
    step(loop)
    assert ran == [1, 2]


# -- which loops, and their lifetime ----------------------------------------------------------


def test_asyncio_loops_are_batched_and_uvloop_loops_go_direct() -> None:
    """`batch_of` batches asyncio's own loops; a uvloop loop goes straight to its
    ``call_soon_threadsafe`` (in C, and it coalesces its wake-up writes itself), and posts
    to it still run, in order."""
    plain = asyncio.new_event_loop()
    fast = uvloop.new_event_loop()
    try:
        asyncio_batch, uvloop_batch = batch_of(plain), batch_of(fast)
        assert asyncio_batch is not None
        assert not asyncio_batch.direct
        assert uvloop_batch is not None
        assert uvloop_batch.direct
        ran: list[int] = []
        for n in range(3):
            post(fast, ran.append, n)
        assert not uvloop_batch.pending
        step(fast)
        assert ran == [0, 1, 2]
    finally:
        plain.close()
        fast.close()


def test_a_loop_closed_with_wake_ups_still_batched_is_not_kept_alive_by_them() -> None:
    """Wake-ups posted to a loop that is closed before it runs their drain are dropped with
    the loop (close() drops the drain's handle, and the batch its entries): the futures
    they would have resolved, and the loop, are collected, and the batch is forgotten."""
    loop = asyncio.new_event_loop()
    fut = loop.create_future()
    busy(loop)
    resolve_soon(loop, fut, 1)
    batch = batch_of(loop)
    assert batch is not None
    assert len(batch.pending) == 1
    loop.close()
    assert not batch.pending
    gone = weakref.ref(fut)
    key = id(loop)
    del fut, loop, batch
    gc.collect()
    assert gone() is None
    assert key not in _coalesce._batches


def test_a_batch_adds_nothing_to_the_loop_and_keeps_no_loop_alive() -> None:
    """The batch lives beside the loop, not on it: the loop's attributes are unchanged
    (an added one would slow every attribute read of asyncio's loop code), and once the
    loop is collected its batch is forgotten."""
    loop = asyncio.new_event_loop()
    before = set(vars(loop))
    busy(loop)
    post(loop, lambda: None)
    step(loop)
    assert set(vars(loop)) == before
    key = id(loop)
    assert key in _coalesce._batches
    loop.close()
    del loop
    gc.collect()
    assert key not in _coalesce._batches
