"""`OutcomeCell`: PENDING → DONE or GIVEN_UP exactly once; the outcome stored before anyone
is woken; every waiter (task on asyncio or trio, thread) woken; a requester's cancellation,
timeout or interrupt gives the cell up unless a waker took it first; a joiner's leaves it as
it is.

Races are placed: a thread waiter is parked before its thread starts (``_park``), and a
patched `ThreadWaiter.wait` sets or gives up the cell while the thread "waits".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from asyncmp._lowlevel._outcome import DONE, GIVEN_UP, PENDING, Failure, OutcomeCell
from asyncmp._lowlevel._wake import ThreadWaiter

from ._support import ASYNCIO_ONLY, WAIT, run_bounded


class Watched(OutcomeCell):
    """A cell whose give-up hooks are recorded (as a NATS request tells its server)."""

    __slots__ = ("gave_up",)

    def __init__(self) -> None:
        super().__init__()
        self.gave_up = 0

    def _given_up_value(self) -> object:
        return Failure(LookupError("given up"))

    def _gave_up(self) -> None:
        assert self.state == GIVEN_UP  # called once the transition is made
        self.gave_up += 1


def parked_thread_waiter(cell: OutcomeCell, give_up: bool) -> ThreadWaiter:
    """Park a thread waiter now, as `wait_blocking` would, for a thread started later."""
    waiter = ThreadWaiter()
    with cell.lock:
        assert cell.state == PENDING
        assert not (give_up and cell.waiters)
        cell._park(waiter)
    return waiter


def patch_wait(monkeypatch: pytest.MonkeyPatch, during: Callable[[], object], raises: bool) -> None:
    """The next `ThreadWaiter.wait` runs *during()*, then times out (or, with *raises*, is
    interrupted by KeyboardInterrupt)."""
    real = ThreadWaiter.wait
    armed = [True]

    def wait(self: ThreadWaiter, timeout: float | None) -> bool:
        if armed:
            armed.clear()
            during()
            if raises:
                raise KeyboardInterrupt
            return False
        return real(self, timeout)

    monkeypatch.setattr(ThreadWaiter, "wait", wait)


# -- the state machine ----------------------------------------------------------------------


def test_a_cell_is_set_once() -> None:
    """`set` stores the value and answers True once; later sets and give-ups answer False and
    change nothing (the give-up hook is not called)."""
    cell = Watched()
    assert (cell.state, cell.done()) == (PENDING, False)
    assert cell.set("first") is True
    assert cell.set("second") is False
    assert cell.give_up() is False
    assert (cell.state, cell.done(), cell.result()) == (DONE, True, "first")
    assert cell.gave_up == 0


def test_a_cell_is_given_up_once() -> None:
    """`give_up` stores `_given_up_value()`, calls the `_gave_up` hook once, and answers
    True once; a later set answers False and changes nothing."""
    cell = Watched()
    assert cell.give_up() is True
    assert cell.give_up() is False
    assert cell.set("late") is False
    assert (cell.state, cell.done()) == (GIVEN_UP, True)
    assert cell.gave_up == 1
    with pytest.raises(LookupError, match="given up"):
        cell.result()


def test_result_raises_a_failure_and_returns_anything_else() -> None:
    """A `Failure`'s error is raised by `result`; any other value, an exception object
    included, is returned as it is."""
    failed = OutcomeCell()
    failed.set(Failure(KeyError("boom")))
    with pytest.raises(KeyError, match="boom"):
        failed.result()

    error = ValueError("a reply, not an error")
    returned = OutcomeCell()
    returned.set(error)
    assert returned.result() is error


def test_the_queue_is_made_when_the_first_waiter_parks() -> None:
    """A cell nobody waits for never makes a `WaitQueue` (a queued request stays small):
    neither while pending nor when set; the first waiter makes it."""
    cell = OutcomeCell()
    assert cell.waiters is None
    cell.set(1)
    assert cell.waiters is None
    assert cell.wait_blocking(0, give_up=True) is True  # done already: nobody parks
    assert cell.waiters is None

    waited = OutcomeCell()
    parked_thread_waiter(waited, give_up=False)
    assert waited.waiters is not None
    assert len(waited.waiters) == 1


def test_the_outcome_is_stored_before_a_waiter_is_woken(monkeypatch: pytest.MonkeyPatch) -> None:
    """A woken waiter reads the outcome without the lock: it is stored before the wake-up."""
    cell = OutcomeCell()
    waiter = parked_thread_waiter(cell, give_up=False)
    seen: list[tuple[int, object]] = []
    real_wake = ThreadWaiter.wake

    def wake(self: ThreadWaiter, value: object = None) -> bool:
        seen.append((cell.state, cell.value))
        return real_wake(self, value)

    monkeypatch.setattr(ThreadWaiter, "wake", wake)
    cell.set("value")
    assert seen == [(DONE, "value")]
    assert waiter.wait(0)


# -- waiting --------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["set", "give_up"])
async def test_every_waiter_is_woken(how: str) -> None:
    """Tasks and threads waiting for one cell (joiners) are all woken, whether the cell is
    set or given up, and from another thread."""
    cell = OutcomeCell()
    threads = [parked_thread_waiter(cell, give_up=False) for _ in range(2)]
    woke: list[str] = []

    async def task_waiter() -> None:
        await cell.wait(give_up=False)
        woke.append("task")

    def thread_waiter(waiter: ThreadWaiter) -> None:
        assert cell.park_blocking(waiter, WAIT, give_up=False)
        woke.append("thread")

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(task_waiter)
            for waiter in threads:
                tg.start_soon(anyio.to_thread.run_sync, thread_waiter, waiter)
            await anyio.wait_all_tasks_blocked()
            assert cell.waiters is not None
            assert len(cell.waiters) == 4
            settle = cell.set if how == "set" else lambda _: cell.give_up()
            await anyio.to_thread.run_sync(settle, "value")
    assert sorted(woke) == ["task", "task", "thread", "thread"]
    assert cell.state == (DONE if how == "set" else GIVEN_UP)


async def test_wait_on_a_settled_cell_returns_at_once() -> None:
    """Waiting for a cell that is done parks nobody and returns at once; a later reader sees
    the outcome."""
    cell = OutcomeCell()
    cell.set(Failure(RuntimeError("failed")))
    with anyio.fail_after(WAIT):
        await cell.wait(give_up=True)
    assert cell.waiters is None
    with pytest.raises(RuntimeError, match="failed"):
        cell.result()


def test_a_requester_waits_alone() -> None:
    """With ``give_up=True`` one waiter at a time: a second requester gets a RuntimeError
    rather than a silent share of the outcome."""
    cell = OutcomeCell()
    parked_thread_waiter(cell, give_up=True)
    with pytest.raises(RuntimeError, match="already waiting"):
        cell.wait_blocking(WAIT, give_up=True)


# -- giving up: timeouts, interrupts, cancellation ------------------------------------------


def test_a_requester_that_times_out_gives_the_cell_up() -> None:
    """A blocking requester's timeout answers False and gives the cell up (the hook runs)."""
    cell = Watched()
    assert cell.wait_blocking(0, give_up=True) is False
    assert cell.state == GIVEN_UP
    assert cell.gave_up == 1
    assert not cell.waiters


def test_a_joiner_that_times_out_leaves_the_cell_pending() -> None:
    """A blocking joiner's timeout answers False, leaves the queue, and leaves the cell as it
    is: it can still be set."""
    cell = Watched()
    assert cell.wait_blocking(0, give_up=False) is False
    assert cell.state == PENDING
    assert not cell.waiters
    assert cell.set("value")


@pytest.mark.parametrize("give_up", [True, False])
def test_a_timeout_that_races_the_outcome_takes_it(
    monkeypatch: pytest.MonkeyPatch, give_up: bool
) -> None:
    """A thread whose wait times out just as the cell is set (the waker took its waiter)
    answers True: the outcome is in, and the cell is not given up."""
    cell = Watched()
    patch_wait(monkeypatch, lambda: cell.set("value"), raises=False)
    assert cell.wait_blocking(WAIT, give_up=give_up) is True
    assert (cell.state, cell.result(), cell.gave_up) == (DONE, "value", 0)


@pytest.mark.parametrize("give_up", [True, False])
def test_an_interrupt_leaves_what_a_timeout_leaves(
    monkeypatch: pytest.MonkeyPatch, give_up: bool
) -> None:
    """Ctrl-C in a blocking wait propagates and leaves the state a timeout would: a requester
    gives the cell up, a joiner leaves it pending; nobody stays parked."""
    cell = Watched()
    patch_wait(monkeypatch, lambda: None, raises=True)
    with pytest.raises(KeyboardInterrupt):
        cell.wait_blocking(WAIT, give_up=give_up)
    assert cell.state == (GIVEN_UP if give_up else PENDING)
    assert cell.gave_up == (1 if give_up else 0)
    assert not cell.waiters


def test_an_interrupt_as_the_outcome_arrives_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in the instant the cell is set: the interrupt propagates, the outcome is kept
    (not given up), and waiting again returns it."""
    cell = Watched()
    patch_wait(monkeypatch, lambda: cell.set("value"), raises=True)
    with pytest.raises(KeyboardInterrupt):
        cell.wait_blocking(WAIT, give_up=True)
    assert (cell.state, cell.gave_up) == (DONE, 0)
    assert run_bounded(lambda: cell.wait_blocking(WAIT, give_up=True)) is True
    assert cell.result() == "value"


def test_a_requester_giving_up_wakes_the_joiners() -> None:
    """A requester that leaves (times out) gives the cell up, and whoever else waits is woken
    to see it."""
    cell = Watched()
    requester = parked_thread_waiter(cell, give_up=True)
    joiner = parked_thread_waiter(cell, give_up=False)
    assert cell.park_blocking(requester, 0, give_up=True) is False
    assert joiner.wait(0)
    assert (cell.state, cell.gave_up) == (GIVEN_UP, 1)


def test_leaving_after_the_waker_took_the_waiter_changes_nothing() -> None:
    """`leave` answers False for a waiter that the settling took out, whatever *give_up*
    says: a DONE cell is never turned into GIVEN_UP."""
    cell = Watched()
    waiter = parked_thread_waiter(cell, give_up=True)
    cell.set("value")
    assert cell.leave(waiter, give_up=True) is False
    assert (cell.state, cell.result(), cell.gave_up) == (DONE, "value", 0)


@pytest.mark.parametrize("give_up", [True, False])
async def test_a_cancelled_task_gives_up_or_leaves(give_up: bool) -> None:
    """A task cancelled while it waits: as a requester it gives the cell up (the hook runs);
    as a joiner it leaves, and the others go on waiting."""
    cell = Watched()
    other = parked_thread_waiter(cell, give_up=False) if not give_up else None
    with anyio.fail_after(WAIT), anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: cell.wait(give_up=give_up))
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught
    if give_up:
        assert (cell.state, cell.gave_up) == (GIVEN_UP, 1)
        assert not cell.waiters
    else:
        assert (cell.state, cell.gave_up) == (PENDING, 0)
        assert cell.waiters is not None
        assert list(cell.waiters) == [other]


async def test_an_outcome_that_arrives_with_a_scope_cancel_is_returned() -> None:
    """A requester's outcome set just before its cancel scope is cancelled (before the task
    runs again) is returned, and the cancellation comes at the next checkpoint: neither is
    lost."""
    cell = Watched()
    scope = anyio.CancelScope()
    got: list[object] = []

    async def requester() -> None:
        with scope:
            await cell.wait(give_up=True)
            got.append(cell.result())
            await anyio.lowlevel.checkpoint()
            got.append("not cancelled")

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(requester)
            await anyio.wait_all_tasks_blocked()
            cell.set("value")  # the waker takes the waiter ...
            scope.cancel()  # ... and the cancellation lands before the task runs
    assert got == ["value"]
    assert scope.cancelled_caught
    assert (cell.state, cell.gave_up) == (DONE, 0)


@ASYNCIO_ONLY
async def test_asyncio_outcome_taken_after_a_scope_cancel_landed_is_returned() -> None:
    """asyncio: the scope's cancellation lands first (the task is cancelled but has not run),
    then the waker takes the waiter and sets the cell. The task finds it cannot leave: the
    outcome is returned — inside a cancelled anyio scope the cancellation comes again at the
    next ``await`` — and the cell is not given up."""
    cell = Watched()
    scope = anyio.CancelScope()
    got: list[object] = []

    async def requester() -> None:
        with scope:
            await cell.wait(give_up=True)
            got.append(cell.result())
            await anyio.lowlevel.checkpoint()
            got.append("not cancelled")

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(requester)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()  # cancels the task (its future) now; it runs later
            assert cell.set("value")  # the waker takes the waiter before the task can leave
    assert got == ["value"]
    assert scope.cancelled_caught
    assert (cell.state, cell.gave_up) == (DONE, 0)


@ASYNCIO_ONLY
async def test_a_bare_task_cancel_wins_over_an_outcome_on_its_way() -> None:
    """On asyncio a bare ``Task.cancel()`` (no anyio scope) cannot be refused: the waiting
    task is cancelled although the outcome is in; the cell stays DONE for any later reader.
    (On trio, the only cancellation is a scope's: see the test above.)"""
    cell = Watched()
    task = asyncio.ensure_future(cell.wait(give_up=True))
    with anyio.fail_after(WAIT):
        await anyio.wait_all_tasks_blocked()
        cell.set("value")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (cell.state, cell.result(), cell.gave_up) == (DONE, "value", 0)


def test_a_cell_made_with_a_waiter_parks_it_at_once() -> None:
    """``OutcomeCell(waiter=...)`` parks the waiter before the cell is shared; a thread then
    waits with `park_blocking` and is woken by the set."""
    waiter = ThreadWaiter()
    cell = OutcomeCell(waiter=waiter)
    assert cell.waiters is not None
    assert list(cell.waiters) == [waiter]
    cell.set("value")
    assert cell.park_blocking(waiter, 0, give_up=True) is True
    assert cell.result() == "value"
