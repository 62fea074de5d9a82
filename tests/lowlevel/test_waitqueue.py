"""`WaitQueue`: parked waiters oldest first, each woken at most once; hints that are never lost
(passed on while the owner is ready); `wait_for` / `wait_for_blocking` under timeouts,
cancellation and interrupts.

The owner in these tests is a list of items under a lock: ``take()`` pops the oldest item or
returns `NOTHING`, and the owner is *ready* while the list is not empty. A waker is the test
itself: it takes a waiter out under the lock, as the protocol says, then hints it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from asyncmp._lowlevel._backend import on_trio
from asyncmp._lowlevel._waitqueue import NOTHING, WaitQueue
from asyncmp._lowlevel._wake import ThreadWaiter

from ._support import ASYNCIO_ONLY, WAIT, run_bounded


class Owner:
    """Items under a lock, and the queue of those who wait for one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[object] = []
        self.queue = WaitQueue(self.lock, lambda: self.items)
        self.looked = threading.Event()  # set when take() found nothing (the caller parks)

    def take(self) -> object:
        if self.items:
            return self.items.pop(0)
        self.looked.set()
        return NOTHING

    def put_and_hint(self, item: object) -> None:
        """A waker: add *item*, take out the oldest waiter, and hint it outside the lock."""
        with self.lock:
            self.items.append(item)
            waiter = self.queue.pop_oldest() if self.queue else None
        if waiter is not None:
            self.queue.hint(waiter)


def woken(waiter: Any) -> bool:
    """Whether a thread waiter was woken (without blocking)."""
    assert isinstance(waiter, ThreadWaiter)
    return waiter.wait(0)


# -- the queue under its lock ---------------------------------------------------------------


def test_waiters_come_out_oldest_first() -> None:
    """`oldest` shows, and `pop_oldest` and `pop_all` take out, waiters in arrival order,
    each under its key (the waiter itself by default); `oldest` leaves it in place."""
    queue = WaitQueue(threading.Lock())
    a, b, c = ThreadWaiter(), ThreadWaiter(), ThreadWaiter()
    queue.park(a)
    queue.park(b, key="b")
    queue.park(c)
    assert queue.oldest() == (a, a)
    assert queue.oldest() == (a, a)
    del queue[a]
    assert queue.oldest() == ("b", b)
    del queue["b"]
    assert queue.pop_oldest() is c
    assert not queue
    queue.park(a)
    queue.park(b)
    assert queue.pop_all() == [a, b]
    assert not queue


def test_a_waiter_that_parks_again_goes_to_the_back() -> None:
    """Fairness: a waiter that left and parks again queues behind those already waiting."""
    queue = WaitQueue(threading.Lock())
    a, b = ThreadWaiter(), ThreadWaiter()
    queue.park(a)
    queue.park(b)
    assert queue.leave(a)
    queue.park(a)
    assert queue.pop_all() == [b, a]


@pytest.mark.parametrize("pop", [WaitQueue.pop_oldest, WaitQueue.oldest])
def test_popping_an_empty_queue_raises_key_error(pop: Callable[[WaitQueue], object]) -> None:
    """Taking the oldest waiter when nobody waits is a KeyError, not a silent None."""
    with pytest.raises(KeyError, match="nobody waits"):
        pop(WaitQueue(threading.Lock()))


def test_a_waiter_taken_by_a_waker_cannot_leave() -> None:
    """`leave` (the protocol's deregister) answers True once for a waiter still parked, and
    False for a waiter a waker took out first: a wake-up is then on its way. `unpark`
    likewise returns the waiter once, then None."""
    queue = WaitQueue(threading.Lock())
    stays, taken = ThreadWaiter(), ThreadWaiter()
    queue.park(taken)
    queue.park(stays)
    assert queue.pop_oldest() is taken  # the waker, under the lock
    assert queue.leave(taken) is False
    assert queue.leave(stays) is True
    assert queue.leave(stays) is False
    assert not queue
    queue.park(stays, key="k")
    assert queue.unpark("k") is stays  # unpark: the same, under the lock, by key
    assert queue.unpark("k") is None


class CountingLock:
    """A lock that counts its acquires and knows whether it is held."""

    def __init__(self) -> None:
        self.real = threading.Lock()
        self.acquires = 0

    def acquire(self) -> bool:
        self.acquires += 1
        return self.real.acquire()

    def release(self) -> None:
        self.real.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def test_leave_and_pass_on_take_the_owners_lock() -> None:
    """`leave` and `pass_on` are called outside the lock and take it themselves (once each),
    releasing it again, also when they find nothing to do."""
    lock = CountingLock()
    queue = WaitQueue(lock)  # type: ignore[arg-type]
    waiter = ThreadWaiter()
    queue.park(waiter)
    assert queue.leave(waiter)
    assert queue.leave(waiter) is False
    queue.pass_on()
    assert lock.acquires == 3
    assert not lock.real.locked()


# -- hints ----------------------------------------------------------------------------------


def test_pass_on_hints_the_oldest_waiter_while_the_owner_is_ready() -> None:
    """`pass_on` gives a hint to the oldest waiter only while the owner has something to
    take; otherwise everyone stays parked."""
    owner = Owner()
    first, second = ThreadWaiter(), ThreadWaiter()
    owner.queue.park(first)
    owner.queue.park(second)
    owner.queue.pass_on()
    assert list(owner.queue) == [first, second]  # not ready: nobody is woken

    owner.items.append("item")
    owner.queue.pass_on()
    assert woken(first)
    assert first.value is None  # a hint carries nothing: "look again"
    assert not woken(second)
    assert list(owner.queue) == [second]


def test_a_hint_that_cannot_arrive_goes_to_the_next_waiter() -> None:
    """A hint for a waiter that can no longer receive it (its loop is closed) is passed on
    to the next waiter while the owner is ready, so no wake-up is lost."""
    owner = Owner()
    loop = asyncio.new_event_loop()
    dead = loop.create_future()
    loop.close()
    alive = ThreadWaiter()
    owner.queue.park(dead)
    owner.queue.park(alive)
    owner.put_and_hint("item")
    assert woken(alive)
    assert not owner.queue


# -- wait_for_blocking ----------------------------------------------------------------------


def test_wait_for_blocking_returns_what_is_there_without_parking() -> None:
    """Something to take: `wait_for_blocking` returns it at once, even with a zero timeout,
    and parks nobody."""
    owner = Owner()
    owner.items.append("item")
    assert owner.queue.wait_for_blocking(owner.take, 0) == "item"
    assert not owner.queue


def test_wait_for_blocking_times_out_with_nothing_and_leaves() -> None:
    """Nothing to take within the timeout: `NOTHING`, and no waiter is left parked."""
    owner = Owner()
    assert owner.queue.wait_for_blocking(owner.take, 0) is NOTHING
    assert not owner.queue


def test_wait_for_blocking_is_woken_by_a_hint_from_another_thread() -> None:
    """A parked thread woken by a hint takes what the waker made available."""
    owner = Owner()

    def wake_it() -> None:
        assert owner.looked.wait(WAIT)  # take() found nothing: it parks under this lock
        owner.put_and_hint("item")

    waker = threading.Thread(target=wake_it)
    waker.start()
    assert run_bounded(lambda: owner.queue.wait_for_blocking(owner.take, WAIT)) == "item"
    waker.join(WAIT)
    assert not owner.queue


def test_wait_for_blocking_keeps_waiting_when_another_took_the_item() -> None:
    """A hint is only "look again": if the item is gone when the thread looks, it parks
    again (at the back) and takes the next one."""
    owner = Owner()
    looks: list[int] = []
    stolen = threading.Event()

    def take() -> object:
        item = owner.take()
        looks.append(1)
        return item

    def wake_it() -> None:
        assert owner.looked.wait(WAIT)
        with owner.lock:
            owner.items.append("stolen")
            waiter = owner.queue.pop_oldest()
            owner.looked.clear()
            assert owner.take() == "stolen"  # someone else takes it before the thread looks
            stolen.set()
        owner.queue.hint(waiter)
        assert owner.looked.wait(WAIT)  # it looked, found nothing, and parked again
        owner.put_and_hint("item")

    waker = threading.Thread(target=wake_it)
    waker.start()
    assert run_bounded(lambda: owner.queue.wait_for_blocking(take, WAIT)) == "item"
    waker.join(WAIT)
    assert stolen.is_set()
    assert len(looks) == 3


def _timing_out_wait(
    monkeypatch: pytest.MonkeyPatch, during: Callable[[ThreadWaiter], object], raises: bool
) -> None:
    """The next `ThreadWaiter.wait` runs *during(waiter)* (what other threads do
    meanwhile), then times out — or, with *raises*, is interrupted (KeyboardInterrupt)."""
    real = ThreadWaiter.wait
    armed = [True]

    def wait(self: ThreadWaiter, timeout: float | None) -> bool:
        if armed:
            armed.clear()
            during(self)
            if raises:
                raise KeyboardInterrupt
            return False
        return real(self, timeout)

    monkeypatch.setattr(ThreadWaiter, "wait", wait)


def test_a_timeout_racing_a_hint_still_returns_what_is_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thread that times out just as a waker took it (with something to take) returns that
    thing: it never reports `NOTHING` while there is something."""
    owner = Owner()

    def waker(waiter: ThreadWaiter) -> None:
        with owner.lock:
            owner.items.append("item")
            assert owner.queue.pop_oldest() is waiter
        owner.queue.hint(waiter)

    _timing_out_wait(monkeypatch, waker, raises=False)
    assert owner.queue.wait_for_blocking(owner.take, WAIT) == "item"
    assert not owner.queue


def test_an_interrupted_blocking_wait_leaves_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while parked: the interrupt propagates and the waiter has left, as after a
    timeout (the next hint cannot go to a thread that is gone)."""
    owner = Owner()
    seen: list[ThreadWaiter] = []
    _timing_out_wait(monkeypatch, seen.append, raises=True)
    with pytest.raises(KeyboardInterrupt):
        owner.queue.wait_for_blocking(owner.take, WAIT)
    assert len(seen) == 1
    assert seen[0] not in owner.queue
    assert not owner.queue


@pytest.mark.parametrize("ready", [True, False])
def test_an_interrupted_wait_passes_its_hint_on(
    monkeypatch: pytest.MonkeyPatch, ready: bool
) -> None:
    """Ctrl-C after a waker took the thread's waiter: the hint it was given goes to the next
    waiter while the owner is ready (and nobody is woken for nothing when it is not)."""
    owner = Owner()
    behind = ThreadWaiter()

    def waker(waiter: ThreadWaiter) -> None:
        with owner.lock:
            owner.queue.park(behind)  # another waiter arrives behind this one
            if ready:
                owner.items.append("item")
            assert owner.queue.pop_oldest() is waiter
        owner.queue.hint(waiter)

    _timing_out_wait(monkeypatch, waker, raises=True)
    with pytest.raises(KeyboardInterrupt):
        owner.queue.wait_for_blocking(owner.take, WAIT)
    assert woken(behind) is ready
    assert (behind in owner.queue) is not ready
    assert owner.items == (["item"] if ready else [])


# -- wait_for (tasks) -----------------------------------------------------------------------


async def test_wait_for_returns_what_is_there() -> None:
    """Something to take: `wait_for` returns it and parks nobody."""
    owner = Owner()
    owner.items.append("item")
    with anyio.fail_after(WAIT):
        assert await owner.queue.wait_for(owner.take) == "item"
    assert not owner.queue


async def test_wait_for_in_a_cancelled_scope_follows_the_library() -> None:
    """Under trio `wait_for` is a checkpoint: a pending cancel is raised before ``take()``
    runs, so nothing is taken and lost. On asyncio it does not yield when it need not park,
    and returns what is there."""
    owner = Owner()
    owner.items.append("item")
    got: list[object] = []
    with anyio.fail_after(WAIT), anyio.CancelScope() as scope:
        scope.cancel()
        got.append(await owner.queue.wait_for(owner.take))
        await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    if on_trio():
        assert (got, owner.items) == ([], ["item"])
    else:
        assert (got, owner.items) == (["item"], [])


async def test_wait_for_wakes_tasks_in_arrival_order() -> None:
    """Tasks that park first are hinted first: each item goes to the oldest waiting task."""
    owner = Owner()
    served: list[tuple[int, object]] = []

    async def waiter(n: int) -> None:
        served.append((n, await owner.queue.wait_for(owner.take)))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(waiter, n)
                await anyio.wait_all_tasks_blocked()  # parked, in this order
            for item in "abc":
                owner.put_and_hint(item)
                await anyio.wait_all_tasks_blocked()
    assert served == [(0, "a"), (1, "b"), (2, "c")]


async def test_wait_for_is_woken_from_a_thread() -> None:
    """A hint from another thread reaches a parked task (a thread waker, a task waiter)."""
    owner = Owner()
    got: list[object] = []

    async def waiter() -> None:
        got.append(await owner.queue.wait_for(owner.take))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            await anyio.to_thread.run_sync(owner.put_and_hint, "item")
    assert got == ["item"]


async def test_wait_for_cancelled_while_parked_leaves() -> None:
    """A task cancelled while parked leaves the queue and takes nothing."""
    owner = Owner()
    with anyio.fail_after(WAIT), anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(owner.queue.wait_for, owner.take)
            await anyio.wait_all_tasks_blocked()
            assert len(owner.queue) == 1
            scope.cancel()
    assert scope.cancelled_caught
    assert not owner.queue


async def test_wait_for_cancelled_after_its_hint_was_sent_loses_nothing() -> None:
    """A task cancelled after a waker took its waiter: on trio the cancellation is refused
    and the task takes the item (then is cancelled at its next checkpoint); on asyncio the
    hint is passed on and the next waiting task takes it. Either way the item is taken by
    exactly one task."""
    owner = Owner()
    got: list[tuple[str, object]] = []
    first = anyio.CancelScope()

    async def waiter(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            got.append((name, await owner.queue.wait_for(owner.take)))
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, "first", first)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter, "second", anyio.CancelScope())
            await anyio.wait_all_tasks_blocked()
            with owner.lock:
                owner.items.append("item")
                taken = owner.queue.pop_oldest()  # the waker takes the first task's waiter
            first.cancel()
            owner.queue.hint(taken)
            await anyio.wait_all_tasks_blocked()
            assert owner.items == []
            tg.cancel_scope.cancel()
    assert got == ([("first", "item")] if on_trio() else [("second", "item")])
    assert first.cancelled_caught


@ASYNCIO_ONLY
@pytest.mark.parametrize("first", ["cancel", "hint"])
async def test_asyncio_task_cancelled_with_its_hint_passes_it_on(first: str) -> None:
    """asyncio: a bare ``Task.cancel()`` of a task whose waiter a waker took — before the
    hint arrives (the hint finds the future cancelled) or after (the task leaves with it) —
    passes the hint on: the next waiting task takes the item."""
    owner = Owner()
    got: list[object] = []

    async def second() -> None:
        got.append(await owner.queue.wait_for(owner.take))

    cancelled = asyncio.ensure_future(owner.queue.wait_for(owner.take))
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(second)
            await anyio.wait_all_tasks_blocked()
            with owner.lock:
                owner.items.append("item")
                taken = owner.queue.pop_oldest()
            if first == "cancel":
                cancelled.cancel()
                owner.queue.hint(taken)
            else:
                owner.queue.hint(taken)
                cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
    assert got == ["item"]
    assert not owner.queue


# -- relook: producers that add without the lock --------------------------------------------


class LockFreeOwner(Owner):
    """An owner whose producer adds without the lock, then looks for a parked waiter (as the
    bridge's receiver queue does), with a queue made with ``relook=True``. ``during_look``
    runs inside the first ``take()`` that finds nothing: the window between a waiter's look
    and its parking, which such a producer can hit."""

    def __init__(self, during_look: Callable[[], None]) -> None:
        super().__init__()
        self.queue = WaitQueue(self.lock, lambda: self.items, relook=True)
        self.during_look = during_look
        self.looks = 0

    def take(self) -> object:
        item = super().take()
        self.looks += 1
        if item is NOTHING and self.looks == 1:
            self.during_look()
        return item

    def add_lock_free(self, item: object) -> None:
        self.items.append(item)
        if self.queue:
            with self.lock:
                waiter = self.queue.pop_oldest() if self.queue else None
            if waiter is not None:
                self.queue.hint(waiter)


def test_relook_finds_what_a_lock_free_producer_added_while_it_parked() -> None:
    """``relook``: an item added (without the lock) after the waiter's look found nothing but
    before it parked — the producer saw nobody parked and woke nobody — is found by the look
    the waiter makes once parked: `wait_for_blocking` returns it without waiting, and leaves
    no waiter behind."""
    owner = LockFreeOwner(lambda: owner.add_lock_free("item"))
    # No timeout: without the second look it would wait for ever (run_bounded fails it).
    assert run_bounded(lambda: owner.queue.wait_for_blocking(owner.take, None)) == "item"
    assert owner.looks == 2
    assert not owner.queue


async def test_relook_finds_it_in_wait_for_too() -> None:
    """``relook`` in `wait_for` (tasks): the same window, the same outcome — the task returns
    the item without parking for a wake-up that nobody will send."""
    owner = LockFreeOwner(lambda: owner.add_lock_free("item"))
    with anyio.fail_after(WAIT):
        assert await owner.queue.wait_for(owner.take) == "item"
    assert owner.looks == 2
    assert not owner.queue


def test_relook_is_off_by_default() -> None:
    """An owner whose producers hold the lock pays for no second look: without ``relook`` a
    waiter looks once before it parks and once per wake-up."""
    owner = Owner()
    looks: list[int] = []

    def take() -> object:
        looks.append(1)
        return owner.take()

    def wake_it() -> None:
        assert owner.looked.wait(WAIT)  # it looked and found nothing: it parks
        owner.put_and_hint("item")

    waker = threading.Thread(target=wake_it)
    waker.start()
    assert run_bounded(lambda: owner.queue.wait_for_blocking(take, WAIT)) == "item"
    waker.join(WAIT)
    assert len(looks) == 2
