"""``statistics()`` on the objects tasks and threads wait on beyond the channel and the Stage
(the bridge `Receiver`, the `Signaler`, a calloop `Channel`): frozen records that say what is
queued and who is parked, read without the object's lock — so they (and the reprs built on
them) answer while another thread holds it. The channel's and the Stage's are tested with
them (tests/channel, tests/stage)."""

from __future__ import annotations

import dataclasses
import gc
import threading
from collections.abc import Callable
from typing import Any

import pytest

from asyncmp import calloop
from asyncmp.dharma import Receiver, Sender, Signaler, connect
from bounds import WAIT
from interrupting import wait_until


def answers_while_locked(lock: Any, call: Callable[[], object]) -> object:
    """*call*'s result, made on another thread while this one holds *lock*: a call that
    took the lock would not return (bounded by WAIT)."""
    out: list[object] = []
    with lock:
        thread = threading.Thread(target=lambda: out.append(call()))
        thread.start()
        thread.join(WAIT)
        assert not thread.is_alive(), "statistics() waited for the lock"
    return out[0]


def test_receiver_statistics_count_the_queue_and_the_parked_receives() -> None:
    """Queued messages and parked receives are counted; the record is frozen."""
    receiver: Receiver[int] = Receiver()
    sender: Sender[int] = Sender()
    connect(sender, receiver)
    sender.send_plain(1)
    sender.send_plain(2)
    stats = receiver.statistics()
    assert (stats.queued, stats.receives_waiting) == (2, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.queued = 0  # type: ignore[misc]
    receiver.try_recv()
    receiver.try_recv()
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(receiver.blocking.recv(timeout=WAIT)))
    thread.start()
    wait_until(lambda: receiver.statistics().receives_waiting == 1, "the receive parks")
    assert repr(receiver) == "<Receiver queued=0 waiting=1>"
    sender.send_plain(3)
    thread.join(WAIT)
    assert len(got) == 1
    assert receiver.statistics() == type(stats)(queued=0, receives_waiting=0)


def test_receiver_statistics_and_repr_take_no_lock() -> None:
    receiver: Receiver[int] = Receiver()
    stats: Any = answers_while_locked(receiver._state.lock, receiver.statistics)
    assert stats.queued == 0
    assert answers_while_locked(receiver._state.lock, lambda: repr(receiver))


def test_signaler_statistics_count_live_subscriptions_and_registrations() -> None:
    """Signal ids with a subscription, the subscriptions of live receivers (twice counts
    twice) and the live registrations; a collected receiver stops counting."""
    signaler: Signaler[str] = Signaler()
    one: Receiver[str] = Receiver()
    two: Receiver[str] = Receiver()
    signaler.subscribe(1, one)
    signaler.subscribe(1, two)
    signaler.subscribe(2, one)
    signaler.subscribe(2, one)
    signaler.register(two)
    stats = signaler.statistics()
    assert (stats.signals, stats.subscriptions, stats.registered) == (2, 4, 1)
    del two
    gc.collect()
    stats = signaler.statistics()
    assert (stats.signals, stats.subscriptions, stats.registered) == (2, 3, 0)
    del one
    gc.collect()
    assert signaler.statistics().signals == 0
    assert repr(signaler) == "<Signaler signals=0 registered=0>"


def test_signaler_statistics_and_repr_take_no_lock() -> None:
    signaler: Signaler[str] = Signaler()
    stats: Any = answers_while_locked(signaler._lock, signaler.statistics)
    assert stats.signals == 0
    assert answers_while_locked(signaler._lock, lambda: repr(signaler))


def test_calloop_channel_statistics_count_messages_senders_and_parked_sends() -> None:
    """A sync channel's queue, bound, open senders and the sends parked for room; closing
    the channel shows."""
    sender, channel = calloop.sync_channel(1)
    other = sender.clone()
    sender.try_send(1)
    stats = channel.statistics()
    assert (stats.queued, stats.max_queued, stats.senders, stats.senders_waiting) == (1, 1, 2, 0)
    assert not stats.closed
    errors: list[BaseException] = []

    def send_when_room() -> None:
        try:
            other.blocking.send(2, timeout=WAIT)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=send_when_room)
    thread.start()
    wait_until(lambda: channel.statistics().senders_waiting == 1, "the send parks")
    assert channel.try_recv() == 1
    thread.join(WAIT)
    assert errors == []
    assert channel.statistics().queued == 1
    other.close()
    assert channel.statistics().senders == 1
    channel.close()
    assert channel.statistics().closed
    assert repr(channel) == "<calloop Channel closed>"
    _unbounded, plain = calloop.channel()
    assert plain.statistics().max_queued is None
    plain.close()


def test_calloop_channel_statistics_take_no_lock() -> None:
    sender, channel = calloop.channel()
    sender.send("x")
    stats: Any = answers_while_locked(channel._state.lock, channel.statistics)
    assert stats.queued == 1
    channel.close()
