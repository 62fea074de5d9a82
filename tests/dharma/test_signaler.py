"""asyncmp.dharma.Signaler: application signals routed to subscribers (dharma's Signaler)."""

from __future__ import annotations

import threading

import anyio
import pytest

from asyncmp.dharma import EMPTY, Defined, Receiver, Signaler, Special, SpecialCommand

TERMINATE = Special(SpecialCommand.TERMINATE)


def drain(receiver: Receiver[object]) -> list[object]:
    out = []
    while (msg := receiver.try_recv()) is not EMPTY:
        out.append(msg)
    return out


def test_signaler_delivers_only_subscribed_signals() -> None:
    """A receiver subscribed to 0 and 1 gets those emits as Defined, and nothing for 2."""
    signaler: Signaler[str] = Signaler()
    receiver: Receiver[str] = Receiver()
    signaler.subscribe(0, receiver)
    signaler.subscribe(1, receiver)

    signaler.emit(0, "zero")
    signaler.emit(1, "one")
    signaler.emit(2, "two")

    assert drain(receiver) == [Defined(0, "zero"), Defined(1, "one")]


def test_signaler_emit_without_subscribers_is_dropped() -> None:
    """Emitting a signal nobody subscribed to is not an error and reaches nobody."""
    signaler: Signaler[int] = Signaler()
    receiver: Receiver[int] = Receiver()
    signaler.emit(9, 1)
    signaler.subscribe(9, receiver)

    assert receiver.try_recv() is EMPTY


def test_signaler_double_subscription_delivers_twice() -> None:
    """A receiver subscribed twice to 5 receives each emit of 5 twice."""
    signaler: Signaler[str] = Signaler()
    receiver: Receiver[str] = Receiver()
    signaler.subscribe(5, receiver)
    signaler.subscribe(5, receiver)
    signaler.emit(5, "x")

    assert drain(receiver) == [Defined(5, "x"), Defined(5, "x")]


def test_signaler_terminate_reaches_registered_receivers_only() -> None:
    """terminate() sends TERMINATE to registered receivers; subscribed-only ones get nothing."""
    signaler: Signaler[str] = Signaler()
    subscribed: Receiver[str] = Receiver()
    registered: Receiver[str] = Receiver()
    signaler.subscribe(1, subscribed)
    signaler.register(registered)

    signaler.terminate()

    assert subscribed.try_recv() is EMPTY
    assert drain(registered) == [TERMINATE]


def test_signaler_one_global_order_across_receivers() -> None:
    """Emits from many threads reach all receivers in the same order, then TERMINATE."""
    signaler: Signaler[tuple[int, int]] = Signaler()
    receivers: list[Receiver[tuple[int, int]]] = [Receiver() for _ in range(3)]
    for receiver in receivers:
        signaler.register(receiver)
        for signal_id in (1, 2):
            signaler.subscribe(signal_id, receiver)
    start = threading.Barrier(4)

    def emit(thread_no: int) -> None:
        start.wait(5)
        for i in range(300):
            signaler.emit(1 + i % 2, (thread_no, i))

    threads = [threading.Thread(target=emit, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    signaler.terminate()

    seen = [drain(r) for r in receivers]
    assert len(seen[0]) == 4 * 300 + 1
    assert seen[0][-1] == TERMINATE
    assert seen[1] == seen[0]
    assert seen[2] == seen[0]


async def test_signaler_emit_from_a_thread_wakes_an_async_receiver() -> None:
    """An emit from a plain thread wakes a task awaiting its subscribed receiver."""
    signaler: Signaler[str] = Signaler()
    receiver: Receiver[str] = Receiver()
    signaler.subscribe(4, receiver)
    signaler.register(receiver)
    got: list[object] = []

    async def listen() -> None:
        while True:
            msg = await receiver.recv()
            got.append(msg)
            if msg == TERMINATE:
                return

    def emit_then_terminate() -> None:
        signaler.emit(4, "ping")
        signaler.terminate()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            await anyio.wait_all_tasks_blocked()
            await anyio.to_thread.run_sync(emit_then_terminate)

    assert got == [Defined(4, "ping"), TERMINATE]


def test_signaler_accepts_int_enum_ids() -> None:
    """IntEnum members are signal ids; they reach subscribers of the equal int."""
    import enum

    class Sig(enum.IntEnum):
        TICK = 3

    signaler: Signaler[None] = Signaler()
    receiver: Receiver[None] = Receiver()
    signaler.subscribe(Sig.TICK, receiver)
    signaler.emit(3, None)

    assert drain(receiver) == [Defined(Sig.TICK, None)]


def test_signaler_rejects_bad_input() -> None:
    """Bad ids and receivers raise TypeError/ValueError with a message."""
    signaler: Signaler[int] = Signaler()
    receiver: Receiver[int] = Receiver()
    with pytest.raises(TypeError, match="signal id"):
        signaler.emit("1", 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="signal id"):
        signaler.subscribe(-2, receiver)
    with pytest.raises(TypeError, match="Receiver"):
        signaler.subscribe(1, object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Receiver"):
        signaler.register(None)  # type: ignore[arg-type]
