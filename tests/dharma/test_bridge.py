"""asyncmp.dharma's bridge: senders and receivers connected freely (dharma's bridge)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator

import anyio
import pytest
import sniffio

from asyncmp._lowlevel._waitqueue import NOTHING
from asyncmp._lowlevel._wake import ThreadWaiter
from asyncmp.dharma import (
    EMPTY,
    TIMEOUT,
    Custom,
    Defined,
    DirectSender,
    Plain,
    Receiver,
    Sender,
    Special,
    SpecialCommand,
    connect,
    direct_connect,
)
from asyncmp.dharma._bridge import _ReceiverState


def drain(receiver: Receiver[object]) -> list[object]:
    out = []
    while (msg := receiver.try_recv()) is not EMPTY:
        out.append(msg)
    return out


def test_bridge_fan_out_and_fan_in_keep_fifo_order() -> None:
    """s1→r1, s1→r2, s2→r2: r1 gets s1's messages, r2 gets both senders' in send order."""
    s1: Sender[str] = Sender()
    s2: Sender[str] = Sender()
    r1: Receiver[str] = Receiver()
    r2: Receiver[str] = Receiver()
    connect(s1, r1)
    connect(s1, r2)
    connect(s2, r2)

    s1.send_plain("A")
    s1.send_defined(7, "B")
    s2.send_custom("c", "C")
    s2.send_plain("D")

    assert drain(r1) == [Plain("A"), Defined(7, "B")]
    assert r1.try_recv() is EMPTY
    assert drain(r2) == [Plain("A"), Defined(7, "B"), Custom("c", "C"), Plain("D")]


def test_bridge_sender_without_receivers_drops_silently() -> None:
    """Sending with nobody connected raises nothing and delivers nothing."""
    sender: Sender[int] = Sender()
    direct: DirectSender[int] = DirectSender()
    sender.send_plain(1)
    direct.send_special(SpecialCommand.TERMINATE)
    receiver: Receiver[int] = Receiver()
    connect(sender, receiver)

    assert receiver.try_recv() is EMPTY


def test_bridge_connecting_twice_delivers_twice() -> None:
    """A receiver connected twice to one sender gets each message twice."""
    sender: Sender[int] = Sender()
    receiver: Receiver[int] = Receiver()
    connect(sender, receiver)
    connect(sender, receiver)
    sender.send_plain(5)

    assert drain(receiver) == [Plain(5), Plain(5)]


def test_bridge_direct_connect_replaces_the_target() -> None:
    """Reconnecting a DirectSender moves later messages only; queued ones stay put."""
    direct: DirectSender[str] = DirectSender()
    r1: Receiver[str] = Receiver()
    r2: Receiver[str] = Receiver()
    direct_connect(direct, r1)
    direct.send_plain("old")
    direct_connect(direct, r2)
    direct.send_plain("X")

    assert drain(r1) == [Plain("old")]
    assert drain(r2) == [Plain("X")]


def test_bridge_direct_sender_clone_is_independent() -> None:
    """A clone shares the target; reconnecting the original leaves the clone's target."""
    direct: DirectSender[int] = DirectSender()
    r1: Receiver[int] = Receiver()
    r2: Receiver[int] = Receiver()
    direct_connect(direct, r1)
    clone = direct.clone()
    direct_connect(direct, r2)
    clone.send_plain(1)
    direct.send_special(SpecialCommand.TERMINATE)

    assert drain(r1) == [Plain(1)]
    assert drain(r2) == [Special(SpecialCommand.TERMINATE)]


def test_bridge_empty_receiver_reports_empty_and_timeout() -> None:
    """An empty receiver: try_recv gives EMPTY, a blocking recv with a tiny timeout TIMEOUT."""
    receiver: Receiver[int] = Receiver()

    assert receiver.try_recv() is EMPTY
    assert receiver.blocking.recv(timeout=1e-9) is TIMEOUT
    assert receiver.blocking.recv(timeout=0) is TIMEOUT


async def test_bridge_async_recv_times_out_with_timeout_value() -> None:
    """``await recv(timeout)`` on an empty receiver returns TIMEOUT, not an exception."""
    receiver: Receiver[int] = Receiver()

    assert await receiver.recv(timeout=1e-9) is TIMEOUT
    assert await receiver.recv(timeout=0) is TIMEOUT


async def test_bridge_recv_with_timeout_prefers_a_queued_message() -> None:
    """A queued message is returned even with ``timeout=0``: no spurious TIMEOUT."""
    sender: Sender[int] = Sender()
    receiver: Receiver[int] = Receiver()
    connect(sender, receiver)
    sender.send_plain(1)
    sender.send_plain(2)

    assert await receiver.recv(timeout=0) == Plain(1)
    assert receiver.blocking.recv  # the view exists on an event loop thread too
    assert await receiver.recv(timeout=0) == Plain(2)
    assert await receiver.recv(timeout=0) is TIMEOUT


async def test_bridge_async_recv_is_woken_by_a_send_from_another_thread() -> None:
    """A task parked in ``recv()`` gets the message a plain thread sends."""
    sender: Sender[str] = Sender()
    receiver: Receiver[str] = Receiver()
    connect(sender, receiver)
    got: list[object] = []

    async def receive() -> None:
        got.append(await receiver.recv())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            await anyio.wait_all_tasks_blocked()
            await anyio.to_thread.run_sync(sender.send_plain, "hi")

    assert got == [Plain("hi")]


async def test_bridge_blocking_recv_is_woken_by_a_send_from_a_task() -> None:
    """A thread blocked in ``blocking.recv()`` gets the message a task sends."""
    direct: DirectSender[int] = DirectSender()
    receiver: Receiver[int] = Receiver()
    direct_connect(direct, receiver)
    parked = threading.Event()

    def receive() -> object:
        parked.set()
        return receiver.blocking.recv(timeout=5)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            result: list[object] = []

            async def run() -> None:
                result.append(await anyio.to_thread.run_sync(receive))

            tg.start_soon(run)
            await anyio.to_thread.run_sync(parked.wait, 5)
            direct.send_defined(3, 42)

    assert result == [Defined(3, 42)]


def test_bridge_blocking_recv_refuses_to_run_on_an_event_loop_thread() -> None:
    """``blocking.recv()`` on a thread running an event loop raises RuntimeError at once."""
    receiver: Receiver[int] = Receiver()

    async def main() -> None:
        with pytest.raises(RuntimeError, match="event loop"):
            receiver.blocking.recv(timeout=5)

    anyio.run(main)


async def test_bridge_many_receivers_never_get_spurious_results() -> None:
    """With tasks and threads racing on one receiver, every message is received exactly
    once and no ``recv()`` without a timeout returns anything but a message."""
    sender: Sender[int] = Sender()
    receiver: Receiver[int] = Receiver()
    connect(sender, receiver)
    n_threads, per_thread = 3, 300
    total = n_threads * per_thread
    got: list[object] = []
    lock = threading.Lock()

    async def task_receiver(count: int) -> None:
        for _ in range(count):
            msg = await receiver.recv()
            with lock:
                got.append(msg)

    def thread_receiver(count: int) -> None:
        for _ in range(count):
            msg = receiver.blocking.recv(timeout=10)
            with lock:
                got.append(msg)

    def produce(base: int) -> None:
        for i in range(per_thread):
            sender.send_plain(base + i)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(task_receiver, total // 4)
            for _ in range(2):
                tg.start_soon(anyio.to_thread.run_sync, thread_receiver, total // 4)
            for t in range(n_threads):
                tg.start_soon(anyio.to_thread.run_sync, produce, t * per_thread)

    assert all(type(m) is Plain for m in got)
    assert sorted(m.value for m in got if type(m) is Plain) == list(range(total))
    assert receiver.try_recv() is EMPTY


async def test_bridge_cancelled_recv_loses_no_message() -> None:
    """A receive cancelled just as a message arrives either returns it or leaves it queued."""
    sender: Sender[str] = Sender()
    receiver: Receiver[str] = Receiver()
    connect(sender, receiver)
    got: list[object] = []

    async def receive(scope_box: list[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            scope_box.append(scope)
            got.append(await receiver.recv())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            box: list[anyio.CancelScope] = []
            tg.start_soon(receive, box)
            await anyio.wait_all_tasks_blocked()
            sender.send_plain("x")  # wakes the parked receive …
            box[0].cancel()  # … which is cancelled before it runs again

    assert got + drain(receiver) == [Plain("x")]


async def test_bridge_cancelling_the_woken_receiver_still_delivers_once() -> None:
    """When the woken one of two parked receives is cancelled by its cancel scope, exactly
    one of them returns the message."""
    sender: Sender[str] = Sender()
    receiver: Receiver[str] = Receiver()
    connect(sender, receiver)
    got: list[object] = []
    scopes: list[anyio.CancelScope] = []

    async def receive() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            got.append(await receiver.recv())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(receive)
            await anyio.wait_all_tasks_blocked()
            sender.send_plain("x")  # wakes the first receiver …
            scopes[0].cancel()  # … which is cancelled before it runs again
            await anyio.wait_all_tasks_blocked()
            # trio refuses the cancel (Abort.FAILED) and anyio's asyncio scopes do not
            # cancel a task whose wake-up has arrived: either way one receive returns it.
            assert got == [Plain("x")]
            scopes[1].cancel()  # release whichever one is still parked


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_bridge_asyncio_task_cancelled_after_its_wake_up_passes_it_on(use_uvloop: bool) -> None:
    """asyncio cannot refuse a cancel: a receive task woken and then cancelled (raw
    ``Task.cancel``) hands the wake-up to the next parked receive, which gets the message."""
    import asyncio

    sender: Sender[str] = Sender()
    receiver: Receiver[str] = Receiver()
    connect(sender, receiver)
    waiters = receiver._state.waiters

    async def main() -> object:
        first = asyncio.create_task(receiver.recv())
        await asyncio.sleep(0)  # one scheduling step: the new task runs until it parks
        assert len(waiters) == 1
        second = asyncio.create_task(receiver.recv())
        await asyncio.sleep(0)
        assert len(waiters) == 2
        sender.send_plain("x")  # resolves the first task's future …
        first.cancel()  # … and the cancel wins: the task sees CancelledError
        with pytest.raises(asyncio.CancelledError):
            await first
        return await asyncio.wait_for(second, 5)

    if use_uvloop:
        import uvloop

        assert uvloop.run(main()) == Plain("x")
    else:
        assert asyncio.run(main()) == Plain("x")


async def test_bridge_recv_cancelled_before_it_runs_leaves_the_message_queued() -> None:
    """A receive whose cancel scope is already cancelled, with a message queued, either
    returns the message (asyncio: no checkpoint) or raises the cancel with the message
    still queued (trio: checkpoint before taking, shielded after); it is never lost."""
    sender: Sender[str] = Sender()
    receiver: Receiver[str] = Receiver()
    connect(sender, receiver)
    sender.send_plain("x")
    got: list[object] = []

    with anyio.CancelScope() as scope:
        scope.cancel()
        got.append(await receiver.recv())

    assert got + drain(receiver) == [Plain("x")]
    if sniffio.current_async_library() == "trio":
        assert got == []  # trio's convention: a receive is a checkpoint, even when ready


def _interrupt_first_wait(
    monkeypatch: pytest.MonkeyPatch, during: Callable[[], None] = lambda: None
) -> threading.Event:
    """Make the first ``ThreadWaiter.wait`` run *during* and raise KeyboardInterrupt (as a
    Ctrl-C in the wait would); later waits run normally and set the returned event first."""
    real = ThreadWaiter.wait
    calls: list[ThreadWaiter] = []
    later_wait = threading.Event()

    def wait(self: ThreadWaiter, timeout: float | None) -> bool:
        calls.append(self)
        if len(calls) == 1:
            during()
            raise KeyboardInterrupt
        later_wait.set()
        return real(self, timeout)

    monkeypatch.setattr(ThreadWaiter, "wait", wait)
    return later_wait


class ReceiveThread:
    """``receiver.blocking.recv()`` (no timeout) on a thread of its own."""

    def __init__(self, receiver: Receiver[str]) -> None:
        self.receiver = receiver
        self.result: list[object] = []
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        self.result.append(self.receiver.blocking.recv())

    def join(self) -> list[object]:
        """What the receive returned, once it returned (bounded: 5 s)."""
        self.thread.join(5)
        return self.result


@pytest.fixture
def receive_in_thread() -> Iterator[Callable[[Receiver[str]], ReceiveThread]]:
    """Starts `ReceiveThread`s; one still blocked at teardown is released with a message."""
    started: list[ReceiveThread] = []

    def start(receiver: Receiver[str]) -> ReceiveThread:
        started.append(ReceiveThread(receiver))
        return started[-1]

    yield start
    for receive in started:
        if receive.thread.is_alive():
            sender: DirectSender[str] = DirectSender()
            direct_connect(sender, receive.receiver)
            sender.send_plain("release")
        receive.thread.join(5)


def test_bridge_interrupted_blocking_recv_leaves_no_waiter_behind(
    monkeypatch: pytest.MonkeyPatch,
    receive_in_thread: Callable[[Receiver[str]], ReceiveThread],
) -> None:
    """A blocking receive interrupted in its wait (KeyboardInterrupt) leaves the line as a
    timeout does: the next message wakes the thread that waits now, not the gone one."""
    later_wait = _interrupt_first_wait(monkeypatch)
    sender: Sender[str] = Sender()
    receiver: Receiver[str] = Receiver()
    connect(sender, receiver)

    with pytest.raises(KeyboardInterrupt):
        receiver.blocking.recv(timeout=5)
    receive = receive_in_thread(receiver)
    assert later_wait.wait(5)
    sender.send_plain("x")

    assert receive.join() == [Plain("x")]


def test_bridge_recv_interrupted_after_its_wake_up_passes_it_on(
    monkeypatch: pytest.MonkeyPatch,
    receive_in_thread: Callable[[Receiver[str]], ReceiveThread],
) -> None:
    """A blocking receive interrupted just after a send took it from the line hands that
    wake-up to the next parked receive, which gets the message."""
    sender: Sender[str] = Sender()
    receiver: Receiver[str] = Receiver()
    connect(sender, receiver)
    receives: list[ReceiveThread] = []

    def during() -> None:
        # Another thread parks behind us, then a send wakes us (the oldest waiter).
        receives.append(receive_in_thread(receiver))
        assert later_wait.wait(5)
        sender.send_plain("x")

    later_wait = _interrupt_first_wait(monkeypatch, during)

    with pytest.raises(KeyboardInterrupt):
        receiver.blocking.recv(timeout=5)

    assert receives[0].join() == [Plain("x")]


def _announce_waits(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Make every ``ThreadWaiter.wait`` set the returned event before it waits: a thread
    that set it is registered as a waiter."""
    real = ThreadWaiter.wait
    waiting = threading.Event()

    def wait(self: ThreadWaiter, timeout: float | None) -> bool:
        waiting.set()
        return real(self, timeout)

    monkeypatch.setattr(ThreadWaiter, "wait", wait)
    return waiting


def test_bridge_wake_up_for_a_task_of_a_closed_loop_goes_to_the_next_receive(
    monkeypatch: pytest.MonkeyPatch,
    receive_in_thread: Callable[[Receiver[str]], ReceiveThread],
) -> None:
    """A receive task whose event loop was closed (the task never cancelled) cannot take a
    wake-up: a send hands it to the next parked receive instead of losing it."""
    import asyncio

    receiver: Receiver[str] = Receiver()
    sender: Sender[str] = Sender()
    connect(sender, receiver)
    loop = asyncio.new_event_loop()
    task = loop.create_task(receiver.recv())
    loop.run_until_complete(asyncio.sleep(0))  # one step: the task runs until it parks
    assert len(receiver._state.waiters) == 1
    loop.close()
    task._log_destroy_pending = False  # type: ignore[attr-defined]  # its loop is gone

    waiting = _announce_waits(monkeypatch)
    receive = receive_in_thread(receiver)
    assert waiting.wait(5)
    sender.send_plain("x")  # wakes the oldest waiter: the task that can never run

    assert receive.join() == [Plain("x")]


# -- the lock-free FIFO: pushes and receives take no lock (the bridge's design note) ------------


def _push_during_first_empty_look(
    monkeypatch: pytest.MonkeyPatch, sender: Sender[str], msg: str
) -> list[int]:
    """Make the first receive look that finds nothing send *msg* right then, before the
    receive parks: the window a lock-free push can hit. Returns the count of looks."""
    real = _ReceiverState.take
    looks: list[int] = []

    def take(self: _ReceiverState) -> object:
        item = real(self)
        looks.append(1)
        if item is NOTHING and len(looks) == 1:
            sender.send_plain(msg)  # sees nobody parked yet: wakes nobody
        return item

    monkeypatch.setattr(_ReceiverState, "take", take)
    return looks


async def test_bridge_send_between_a_receives_look_and_its_parking_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A send landing after a receive found the queue empty but before it parked (no lock
    keeps it out) wakes nobody; the receive looks once more after parking and returns it."""
    sender: Sender[str] = Sender()
    receiver: Receiver[str] = Receiver()
    connect(sender, receiver)
    looks = _push_during_first_empty_look(monkeypatch, sender, "x")

    with anyio.fail_after(5):
        assert await receiver.recv() == Plain("x")
    assert len(looks) == 2
    assert not receiver._state.waiters


def test_bridge_blocking_send_between_look_and_parking_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
    receive_in_thread: Callable[[Receiver[str]], ReceiveThread],
) -> None:
    """The same window for ``blocking.recv()``: it returns the message without waiting for a
    wake-up that nobody sends (a lost one would hold it for the whole timeout)."""
    sender: Sender[str] = Sender()
    receiver: Receiver[str] = Receiver()
    connect(sender, receiver)
    looks = _push_during_first_empty_look(monkeypatch, sender, "x")

    receive = receive_in_thread(receiver)
    assert receive.join() == [Plain("x")]
    assert len(looks) == 2
    assert not receiver._state.waiters


async def test_bridge_send_that_saw_a_receive_parked_which_then_took_it_wakes_nobody(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A send from another thread that finds a receive parked goes for the lock to wake it;
    meanwhile the receive's second look takes the message and leaves. The send then finds
    nobody to wake: the message is received once, and no waiter is left behind."""
    sender: Sender[str] = Sender()
    receiver: Receiver[str] = Receiver()
    connect(sender, receiver)
    real_take, real_wake_one = _ReceiverState.take, _ReceiverState.wake_one
    waking = threading.Event()
    looks: list[int] = []
    senders: list[threading.Thread] = []

    def wake_one(self: _ReceiverState) -> None:
        waking.set()  # appended, saw the receive parked; now waits for the lock it holds
        real_wake_one(self)

    def take(self: _ReceiverState) -> object:
        looks.append(1)
        if len(looks) == 2:  # the look once parked, under the queue's lock
            senders.append(threading.Thread(target=sender.send_plain, args=("x",)))
            senders[0].start()
            assert waking.wait(5)
        return real_take(self)

    monkeypatch.setattr(_ReceiverState, "take", take)
    monkeypatch.setattr(_ReceiverState, "wake_one", wake_one)
    with anyio.fail_after(5):
        assert await receiver.recv() == Plain("x")
    senders[0].join(5)
    assert not senders[0].is_alive()
    assert len(looks) == 2
    assert not receiver._state.waiters
    assert receiver.try_recv() is EMPTY


def test_bridge_nothing_sent_to_a_collected_receiver_is_kept() -> None:
    """A push to a receiver that is gone leaves nothing in its queue (the push looks at
    ``alive`` after appending, so a receiver collected during the push keeps nothing)."""
    sender: Sender[list[int]] = Sender()
    direct: DirectSender[list[int]] = DirectSender()
    receiver: Receiver[list[int]] = Receiver()
    connect(sender, receiver)
    direct_connect(direct, receiver)
    state = receiver._state
    del receiver
    gc.collect()
    sender.send_plain([1])
    direct.send_plain([2])
    assert not state.items
    assert sender.receivers == 0
    assert not direct.connected


def test_bridge_try_recv_that_loses_the_last_message_returns_empty() -> None:
    """Receives take no lock: a ``try_recv`` that saw a message but lost it to another
    receive of the same receiver (its ``popleft`` finds the queue empty) returns EMPTY."""

    class Raced:
        def __bool__(self) -> bool:
            return True  # looked non-empty …

        def popleft(self) -> object:
            raise IndexError("pop from an empty deque")  # … but another receive took it

    receiver: Receiver[int] = Receiver()
    receiver._items = Raced()  # type: ignore[assignment]
    assert receiver.try_recv() is EMPTY


def test_bridge_results_support_pattern_matching() -> None:
    """Results are frozen dataclasses usable with ``match``."""
    msg: object = Defined(3, "payload")
    match msg:
        case Defined(signal_id, value):
            assert (signal_id, value) == (3, "payload")
        case _:
            pytest.fail("Defined did not match")
    with pytest.raises(AttributeError):
        msg.value = "other"  # type: ignore[attr-defined]


def test_bridge_collected_receiver_is_dropped_by_its_senders() -> None:
    """Once a receiver is garbage-collected, senders stop queueing for it."""
    sender: Sender[int] = Sender()
    direct: DirectSender[int] = DirectSender()
    kept: Receiver[int] = Receiver()
    gone: Receiver[int] = Receiver()
    connect(sender, kept)
    connect(sender, gone)
    direct_connect(direct, gone)
    assert sender.receivers == 2
    del gone
    gc.collect()
    sender.send_plain(1)
    direct.send_plain(2)

    assert sender.receivers == 1
    assert not direct.connected
    assert drain(kept) == [Plain(1)]


def test_bridge_rejects_bad_input() -> None:
    """Wrong types and values raise TypeError/ValueError with a message."""
    sender: Sender[int] = Sender()
    direct: DirectSender[int] = DirectSender()
    receiver: Receiver[int] = Receiver()
    with pytest.raises(TypeError, match="signal id"):
        sender.send_defined("1", 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="signal id"):
        sender.send_defined(True, 0)
    with pytest.raises(ValueError, match="signal id"):
        direct.send_defined(-1, 0)
    with pytest.raises(TypeError, match="name"):
        sender.send_custom(3, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SpecialCommand"):
        direct.send_special("terminate")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Sender"):
        connect(direct, receiver)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Receiver"):
        direct_connect(direct, sender)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        receiver.blocking.recv(timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        receiver.blocking.recv(timeout="1")  # type: ignore[arg-type]
