"""The bridge's workers: a fan-out and a direct sender, consumers on every loop and threads."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel

from asyncmp.dharma import (
    EMPTY,
    TIMEOUT,
    Custom,
    DirectSender,
    Plain,
    Receiver,
    Sender,
    connect,
    direct_connect,
)

from ._round import MESSAGES, MISSING, SHORT, WAIT, Round

# -- bridge -------------------------------------------------------------------------------


@dataclass
class Bridge:
    r1: Receiver[Any] = field(default_factory=Receiver)
    r2: Receiver[Any] = field(default_factory=Receiver)
    fan: Sender[Any] = field(default_factory=Sender)  # to r1 and r2
    direct: DirectSender[Any] = field(default_factory=DirectSender)  # to r1
    stop1: DirectSender[Any] = field(default_factory=DirectSender)
    stop2: DirectSender[Any] = field(default_factory=DirectSender)
    consumers: Counter[str] = field(default_factory=Counter)  # receiver -> consumer count

    def __post_init__(self) -> None:
        connect(self.fan, self.r1)
        connect(self.fan, self.r2)
        direct_connect(self.direct, self.r1)
        direct_connect(self.stop1, self.r1)
        direct_connect(self.stop2, self.r2)

    def receiver(self, name: str) -> Receiver[Any]:
        return self.r1 if name == "r1" else self.r2


def send_one(rd: Round, bridge: Bridge, name: str, seq: int, rng: random.Random) -> None:
    value = (name, seq)
    if rng.random() < 0.5:
        with rd.lock:
            rd.bridge_sent["r1"].append(value)
            rd.bridge_sent["r2"].append(value)
        bridge.fan.send_plain(value)
    else:
        with rd.lock:
            rd.bridge_sent["r1"].append(value)
        bridge.direct.send_plain(value)


def sender_done(rd: Round, bridge: Bridge) -> None:
    """The last sender to finish tells every consumer to stop (after all the data: FIFO)."""
    with rd.lock:
        rd.senders_left -= 1
        last = rd.senders_left == 0
    if last:
        for _ in range(bridge.consumers["r1"]):
            bridge.stop1.send_custom("stop", None)
        for _ in range(bridge.consumers["r2"]):
            bridge.stop2.send_custom("stop", None)


def thread_sender(rd: Round, bridge: Bridge, name: str) -> None:
    rng = rd.rng(name)
    for seq in range(MESSAGES):
        send_one(rd, bridge, name, seq, rng)
    sender_done(rd, bridge)


async def async_sender(rd: Round, bridge: Bridge, name: str) -> None:
    rng = rd.rng(name)
    for seq in range(MESSAGES):
        send_one(rd, bridge, name, seq, rng)
        if rng.random() < 0.3:
            await anyio.lowlevel.checkpoint()
    sender_done(rd, bridge)


def take(rd: Round, receiver: str, msg: Any) -> bool:
    """Record a received message; False once it is the consumer's stop."""
    if isinstance(msg, Custom):
        return False
    assert isinstance(msg, Plain), msg
    rd.got(receiver, msg.value)
    return True


async def async_consumer(rd: Round, bridge: Bridge, receiver: str, name: str) -> None:
    rng = rd.rng(name)
    source = bridge.receiver(receiver)
    while True:
        roll = rng.random()
        if roll < 0.4:
            with anyio.fail_after(WAIT):
                msg = await source.recv()
        elif roll < 0.7:
            msg = await source.recv(timeout=rng.choice(SHORT))
        elif roll < 0.9:
            msg = MISSING
            with anyio.move_on_after(rng.choice(SHORT)):
                msg = await source.recv()
        else:
            msg = source.try_recv()
            if msg is EMPTY:
                await anyio.lowlevel.checkpoint()
        if msg is MISSING or msg is TIMEOUT or msg is EMPTY:
            continue
        if not take(rd, receiver, msg):
            return


def thread_consumer(rd: Round, bridge: Bridge, receiver: str, name: str) -> None:
    rng = rd.rng(name)
    source = bridge.receiver(receiver)
    while True:
        msg = source.blocking.recv(timeout=rng.choice((*SHORT, WAIT)))
        if msg is not TIMEOUT and not take(rd, receiver, msg):
            return
