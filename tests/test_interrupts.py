"""Ctrl-C in the instant a lock is taken, everywhere outside the channel's hot path: a real
signal, made deterministic by `interrupting.interrupt_as_acquired` (its module doc says how).

Each test interrupts one public blocking call (or a non-blocking one the main thread may
make) exactly as its lock acquire returns — where ``lock.acquire()`` followed by ``try:`` used
to leave the lock held for ever — and checks what docs/threads.md ("Interrupts") promises:
``KeyboardInterrupt`` propagates, no lock stays held, nothing stays parked, and the object
goes on working (a blocking call leaves what its timeout leaves).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest

import asyncmp
from asyncmp import Closed, Finished, Notified
from asyncmp._lowlevel._outcome import OutcomeCell
from asyncmp._lowlevel._waitqueue import WaitQueue
from asyncmp._lowlevel._wake import ThreadWaiter
from asyncmp.dharma import EMPTY, Plain, Receiver, Sender, connect
from interrupting import (
    WAIT,
    WITH_PROTECTS,
    ctrl_c,
    interrupt_as_acquired,
    interrupt_on_call,
    interrupt_on_return,
    wait_until,
)


def release_if_stuck(lock: Any) -> bool:
    """After a failed check: free a lock the interrupt left held, so that no other thread of
    the test session hangs on it. True if it was stuck."""
    if lock.locked():
        lock.release()
        return True
    return False


# -- the outcome cell: pending.blocking.wait, handle.blocking.join --------------------------


@WITH_PROTECTS
def test_pending_blocking_wait_interrupted_as_it_takes_the_lock_gives_up_as_a_timeout() -> None:
    """`pending.blocking.wait()` interrupted as it takes the channel's lock: the interrupt
    propagates, the lock is free, the request is given up as by a timeout (waiting again
    raises Closed, the server never sees it) and the channel serves the next request."""
    server, client = asyncmp.channel()
    with server, client:
        pending = client.request("first")
        lock = pending._cell.lock
        with (
            ctrl_c(),
            interrupt_as_acquired(lock, OutcomeCell.wait_blocking) as window,
            pytest.raises(KeyboardInterrupt),
        ):
            pending.blocking.wait(timeout=WAIT)
        assert window.tripped
        assert not release_if_stuck(lock), "the interrupt left the channel's lock held"
        with pytest.raises(Closed):
            pending.blocking.wait(timeout=0)
        assert server.try_pop() is None  # withdrawn
        again = client.request("second")
        msg, rctx = server.try_pop()  # type: ignore[misc]
        assert msg == "second"
        assert rctx.reply("ok") is True
        assert again.blocking.wait(timeout=WAIT) == "ok"


class Echo:
    def proc_req(self, msg: object, rctx: asyncmp.ReplyContext[object]) -> None:
        rctx.reply(msg)


@WITH_PROTECTS
def test_handle_blocking_join_interrupted_as_it_takes_the_lock_can_join_again() -> None:
    """`handle.blocking.join()` interrupted as it takes the handle's lock: the interrupt
    propagates, the loop runs on, ends when its client closes, and joining again returns its
    result ("join again at will"); before, the loop could never publish its end."""
    client, handle = asyncmp.thread.spawn(lambda client: Echo())
    lock = handle._cell.lock
    try:
        with (
            ctrl_c(),
            interrupt_as_acquired(lock, OutcomeCell.wait_blocking) as window,
            pytest.raises(KeyboardInterrupt),
        ):
            handle.blocking.join(timeout=WAIT)
        assert window.tripped
        assert not lock.locked(), "the interrupt left the handle's lock held"
        assert client.blocking.send("still serving", timeout=WAIT) == "still serving"
        client.close()
        assert handle.blocking.join(timeout=WAIT) is None
    finally:
        client.close()
        release_if_stuck(lock)


# -- the wait queue: receiver.blocking.recv, a bridge send -----------------------------------


@WITH_PROTECTS
def test_receiver_blocking_recv_interrupted_as_it_takes_the_lock_leaves_nothing_parked() -> None:
    """`receiver.blocking.recv()` interrupted as it takes the queue's lock: the interrupt
    propagates, the lock is free, no receive stays parked, and the next message is there
    for the next receive."""
    receiver: Receiver[str] = Receiver()
    sender: Sender[str] = Sender()
    connect(sender, receiver)
    state = receiver._state
    with (
        ctrl_c(),
        interrupt_as_acquired(state.lock, WaitQueue.wait_for_blocking) as window,
        pytest.raises(KeyboardInterrupt),
    ):
        receiver.blocking.recv(timeout=WAIT)
    assert window.tripped
    assert not release_if_stuck(state.lock), "the interrupt left the receiver's lock held"
    assert not state.waiters
    sender.send_plain("next")
    assert receiver.blocking.recv(timeout=WAIT) == Plain("next")


@WITH_PROTECTS
def test_a_send_interrupted_as_it_takes_the_lock_queues_or_not_and_wakes_the_receive() -> None:
    """A bridge send on the main thread interrupted as it takes the receiver's lock (which
    it takes only to wake a parked receive, the message queued already): the lock is free,
    and a receive parked on another thread is never left waiting beside a queued message
    (it gets this message if it was queued, else the next)."""
    receiver: Receiver[str] = Receiver()
    sender: Sender[str] = Sender()
    connect(sender, receiver)
    state = receiver._state
    got: list[object] = []

    def receive() -> None:
        while True:
            msg = receiver.blocking.recv(timeout=WAIT)
            got.append(msg)
            if msg == Plain("last"):
                return

    worker = threading.Thread(target=receive, daemon=True)
    worker.start()
    wait_until(lambda: state.waiters, "the receive parked")
    with ctrl_c(), interrupt_as_acquired(state.lock, type(state).wake_one) as window:
        try:
            sender.send_plain("interrupted")
        except KeyboardInterrupt:
            pass
    assert window.tripped
    assert not release_if_stuck(state.lock), "the interrupt left the receiver's lock held"
    sender.send_plain("last")
    worker.join(WAIT)
    assert not worker.is_alive()
    assert got[-1] == Plain("last")
    assert got[:-1] in ([], [Plain("interrupted")])


# -- the Stage: stage.blocking.enter, the buffer, notify --------------------------------------


def headed_stage() -> tuple[asyncmp.Stage[str, None, dict[str, int]], threading.Event, Any]:
    """A stage headed by another thread until the returned event is set (and that thread)."""
    stage: asyncmp.Stage[str, None, dict[str, int]] = asyncmp.Stage(None, {})
    heading, leave = threading.Event(), threading.Event()
    ticket = stage.ticket("head")
    assert ticket is not None

    def head(director: object) -> str:
        heading.set()
        assert leave.wait(WAIT)
        return "head"

    def run() -> None:
        with ticket:
            assert stage.blocking.enter(ticket, head, timeout=WAIT) == Finished("head")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert heading.wait(WAIT)
    return stage, leave, thread


@WITH_PROTECTS
def test_stage_blocking_enter_interrupted_as_it_takes_the_lock_leaves_the_ticket_usable() -> None:
    """`stage.blocking.enter()` interrupted as it takes the stage's lock: the interrupt
    propagates, the lock is free, and the ticket heads the free stage next."""
    stage: asyncmp.Stage[str, None, dict[str, int]] = asyncmp.Stage(None, {})
    ticket = stage.ticket("a")
    assert ticket is not None
    with (
        ctrl_c(),
        interrupt_as_acquired(stage._lock, type(stage.blocking).enter) as window,
        pytest.raises(KeyboardInterrupt),
    ):
        stage.blocking.enter(ticket, lambda director: "headed", timeout=WAIT)
    assert window.tripped
    assert not release_if_stuck(stage._lock), "the interrupt left the stage's lock held"
    assert stage.blocking.enter(ticket, lambda director: "headed", timeout=WAIT) == Finished(
        "headed"
    )
    ticket.close()


def test_stage_blocking_enter_interrupted_as_it_parks_leaves_nothing_in_line() -> None:
    """`stage.blocking.enter()` interrupted in the instant after it parked behind a head:
    the ticket is out of line (not left inside enter()), and when the head leaves, nobody
    is promoted in its stead — the next enter heads the free stage (before, the stage stayed
    headed by the interrupted waiter for ever)."""
    stage, leave, head_thread = headed_stage()
    ticket = stage.ticket("a")
    assert ticket is not None
    with (
        ctrl_c(),
        interrupt_on_return(asyncmp.Stage._begin) as window,
        pytest.raises(KeyboardInterrupt),
    ):
        stage.blocking.enter(ticket, lambda director: "a", timeout=WAIT)
    assert window.tripped
    assert not stage._parked
    leave.set()
    head_thread.join(WAIT)
    assert stage._head is None, "the stage is left headed by a waiter that is gone"
    assert stage.blocking.enter(ticket, lambda director: "a", timeout=WAIT) == Finished("a")
    ticket.close()


def test_an_enter_promoted_as_it_times_out_hands_the_head_on_when_interrupted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`stage.blocking.enter()` promoted in the instant its timeout ran out hands the head
    on ("timeout wins"), and an interrupt as it starts handing on (a function's first
    instruction) does not stop it: the stage is free afterwards (before, the stage stayed
    headed by the interrupted waiter for ever). The promotion and the timeout are placed by
    a patched wait."""
    stage, leave, head_thread = headed_stage()
    ticket = stage.ticket("a")
    assert ticket is not None

    def wait(self: ThreadWaiter, timeout: float | None) -> bool:
        leave.set()  # the head leaves: the oldest waiter, this one, is promoted ...
        head_thread.join(WAIT)
        return False  # ... in the instant its own timeout runs out

    monkeypatch.setattr(ThreadWaiter, "wait", wait)
    with (
        interrupt_on_call(asyncmp.Stage._abandon) as window,
        pytest.raises(KeyboardInterrupt),
    ):
        stage.blocking.enter(ticket, lambda director: "a", timeout=1e-6)
    monkeypatch.undo()
    assert window.tripped
    assert stage._head is None, "the stage is left headed by a waiter that is gone"
    assert stage.blocking.enter(ticket, lambda director: "a", timeout=WAIT) == Finished("a")
    ticket.close()


def test_a_head_interrupted_as_it_wakes_the_waiter_it_promoted_still_wakes_it() -> None:
    """A head on the main thread whose head function returned, interrupted as it starts
    waking the waiter it promoted (a function's first instruction): the waiter is woken
    all the same and heads (before, it stayed promoted and asleep: an untimed enter hung)."""
    stage: asyncmp.Stage[str, None, dict[str, int]] = asyncmp.Stage(None, {})
    head_ticket, waiter_ticket = stage.ticket("head"), stage.ticket("waiter")
    assert head_ticket is not None
    assert waiter_ticket is not None
    heading = threading.Event()
    outcome: list[object] = []

    def head(director: object) -> str:
        heading.set()
        wait_until(lambda: stage._parked, "the waiter parked behind the head")
        return "head"

    def wait() -> None:
        assert heading.wait(WAIT)
        outcome.append(stage.blocking.enter(waiter_ticket, lambda d: "promoted"))

    worker = threading.Thread(target=wait, daemon=True)
    worker.start()
    with (
        interrupt_on_call(asyncmp.Stage._promote) as window,
        pytest.raises(KeyboardInterrupt),
    ):
        stage.blocking.enter(head_ticket, head, timeout=WAIT)
    assert window.tripped
    worker.join(WAIT)
    assert not worker.is_alive(), "the promoted waiter was never woken"
    assert outcome == [Finished("promoted")]


def test_stage_buffer_interrupted_as_it_takes_the_lock_is_not_left_held() -> None:
    """``with stage.buffer():`` interrupted as it takes the buffer's lock: the interrupt
    propagates and the buffer is free for the next block, on any thread."""
    stage: asyncmp.Stage[str, None, dict[str, int]] = asyncmp.Stage(None, {})
    buffer_lock = stage._buffer_lock
    enter = type(stage.buffer()).__enter__
    with (
        ctrl_c(),
        interrupt_as_acquired(buffer_lock, enter) as window,
        pytest.raises(KeyboardInterrupt),
        stage.buffer() as buf,
    ):
        buf["x"] = 1
    assert window.tripped
    got: list[bool] = []

    def take_and_let_go() -> None:
        got.append(buffer_lock.acquire(timeout=WAIT))
        if got[0]:
            buffer_lock.release()

    worker = threading.Thread(target=take_and_let_go)
    worker.start()
    worker.join(WAIT)
    assert got == [True], "the interrupt left the buffer's lock held"
    with stage.buffer() as buf:
        buf["y"] = 2


def test_a_notify_interrupted_as_it_unparks_the_waiter_still_wakes_it() -> None:
    """A head on the main thread whose ``notify`` is interrupted in the instant after it
    took the waiter out of line and let the stage's lock go: the waiter is woken all the
    same (before, it was left out of line and never woken: an untimed enter hung)."""
    stage: asyncmp.Stage[str, None, dict[str, int]] = asyncmp.Stage(None, {})
    head_ticket, waiter_ticket = stage.ticket("head"), stage.ticket("waiter")
    assert head_ticket is not None
    assert waiter_ticket is not None
    outcome: list[object] = []
    heading = threading.Event()

    def head(director: asyncmp.Director[str, None, dict[str, int]]) -> str:
        heading.set()
        wait_until(lambda: stage._parked, "the waiter parked behind the head")
        with (
            ctrl_c(),
            interrupt_on_return("__exit__", inside=asyncmp.Director.notify) as window,
            pytest.raises(KeyboardInterrupt),
        ):
            director.notify("waiter")
        assert window.tripped
        return "head"

    def wait() -> None:
        assert heading.wait(WAIT)
        outcome.append(stage.blocking.enter(waiter_ticket, lambda d: "never"))

    worker = threading.Thread(target=wait, daemon=True)
    worker.start()
    assert stage.blocking.enter(head_ticket, head, timeout=WAIT) == Finished("head")
    worker.join(WAIT)
    assert not worker.is_alive(), "the notified waiter was never woken"
    assert outcome == [Notified()]


# -- a try_recv on the main thread -----------------------------------------------------------


def test_try_recv_takes_no_lock_so_no_interrupt_can_leave_one_held() -> None:
    """`receiver.try_recv()` takes no lock (the receiver's messages are a lock-free FIFO):
    it answers while another thread holds the receiver's lock, so there is no acquire for
    an interrupt to strike after, and nothing it could leave held."""
    receiver: Receiver[str] = Receiver()
    sender: Sender[str] = Sender()
    connect(sender, receiver)
    sender.send_plain("x")
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with receiver._state.lock:
            held.set()
            release.wait(WAIT)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(WAIT)
        assert receiver.try_recv() == Plain("x")
        assert receiver.try_recv() is EMPTY
    finally:
        release.set()
        holder.join(WAIT)


# -- what the channel still owes ---------------------------------------------------------------

# Run in a child process: with the fault, a trio server thread waits for ever.
HANDOFF_TO_PARKED_TRIO_SERVER = """
import sys, threading, trio, asyncmp
from asyncmp._lowlevel import _wake

server, client = asyncmp.channel()
parked, done = threading.Event(), threading.Event()

async def serve():
    async def watch():
        while not server._channel.server_waiters:
            await trio.sleep(0.001)
        parked.set()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        with trio.move_on_after(3):
            await server.wait()
    done.set()

threading.Thread(target=lambda: trio.run(serve), daemon=True).start()
assert parked.wait(5)
if asyncmp.CORE == "pure":
    from asyncmp._channel_py import ChannelState
    # Ctrl-C as push let the lock go, having taken the parked server's waiter.
    where, event, name = ChannelState.push.__code__, "c_return", "release"
else:
    # Ctrl-C as the compiled push calls the Python wake-up (a function's first check).
    where, event, name = _wake.deliver.__code__, "call", None
armed = [True]

def profile(frame, ev, arg):
    if armed and ev == event and (
        (name is None and frame.f_code is where)
        or (name is not None and frame.f_code is where and getattr(arg, "__name__", "") == name)
    ):
        armed.clear()
        sys.setprofile(None)
        raise KeyboardInterrupt

sys.setprofile(profile)
try:
    client.blocking.send("x", timeout=5)
except KeyboardInterrupt:
    pass
sys.setprofile(None)
if armed:
    print("no such instant on this core: the hand-off never reaches this Python code")
    sys.exit(0)
if not done.wait(6):
    print("hung: the trio server's wait never returned, even past its 3 s timeout")
    sys.exit(1)
"""


@pytest.mark.subprocess
def test_a_send_interrupted_as_it_hands_off_to_a_parked_trio_server_still_wakes_it() -> None:
    """`client.blocking.send` on the main thread, interrupted in the instant after it took
    a parked trio server's waiter (pure core: as it let the channel's lock go; compiled
    core: as it calls the Python wake-up): the server must be woken (with the request or to
    look again) and its timeout must end its wait. A profile hook places the interrupt."""
    proc = subprocess.run(
        [sys.executable, "-c", HANDOFF_TO_PARKED_TRIO_SERVER],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
