"""The Stage's workers: participants that head in turn and route each other's events, and
the events' source."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel

import asyncmp
from asyncmp import (
    Finished,
    Notified,
    TimedOut,
)
from asyncmp.dharma import (
    TIMEOUT,
    Receiver,
    Sender,
    connect,
)

from ._round import EVENTS, HEAD_POLL, REQUESTS, SHORT, WAIT, Round

# -- stage --------------------------------------------------------------------------------

SoakStage = asyncmp.Stage[str, Receiver[Any], dict[str, list[int]]]


def route(director: asyncmp.Director[str, Any, dict[str, list[int]]], msg: Any) -> int | None:
    """Head's work for one event: return it if it is the head's own, else buffer and notify."""
    token, seq = msg.value
    if token == director.token:
        return int(seq)
    with director.buffer() as buf:
        buf.setdefault(token, []).append(seq)
    assert director.notify(token), f"no ticket holds {token!r}"
    return None


async def async_head(director: asyncmp.Director[str, Receiver[Any], Any]) -> int | None:
    while True:
        msg = await director.resource.recv(timeout=HEAD_POLL)
        if msg is TIMEOUT:
            return None
        if (own := route(director, msg)) is not None:
            return own


def blocking_head(director: asyncmp.Director[str, Receiver[Any], Any]) -> int | None:
    while True:
        msg = director.resource.blocking.recv(timeout=HEAD_POLL)
        if msg is TIMEOUT:
            return None
        if (own := route(director, msg)) is not None:
            return own


def collect(stage: SoakStage, token: str, got: list[int], outcome: Any) -> None:
    """Take what the buffer holds for *token*, and the head's own event."""
    if isinstance(outcome, Finished) and outcome.value is not None:
        got.append(outcome.value)
    else:
        # None: nothing returned (the first look, a cancelled or interrupted enter).
        assert outcome is None or isinstance(outcome, Notified | TimedOut | Finished), outcome
    with stage.buffer() as buf:
        got.extend(buf.pop(token, ()))


async def async_participant(rd: Round, stage: SoakStage, token: str) -> None:
    rng = rd.rng(f"stage-{token}")
    ticket = rd.tickets.pop(token)
    got: list[int] = []
    outcome: Any = None
    with ticket:
        while True:
            collect(stage, token, got, outcome)
            if len(got) >= EVENTS:
                break
            roll = rng.random()
            if roll < 0.4:
                # Untimed: a lost notification or promotion would hang here.
                with anyio.fail_after(WAIT):
                    outcome = await stage.enter(ticket, async_head)
            elif roll < 0.7:
                outcome = await stage.enter(ticket, async_head, timeout=rng.choice(SHORT))
            else:
                outcome = None
                with anyio.move_on_after(rng.choice(SHORT)):
                    outcome = await stage.enter(ticket, async_head)
    rd.stage_got[token] = got


def thread_participant(rd: Round, stage: SoakStage, token: str) -> None:
    rng = rd.rng(f"stage-{token}")
    ticket = rd.tickets.pop(token)
    got: list[int] = []
    outcome: Any = None
    with ticket:
        while True:
            collect(stage, token, got, outcome)
            if len(got) >= EVENTS:
                break
            if rng.random() < 0.5:
                outcome = stage.blocking.enter(ticket, blocking_head, timeout=WAIT)
                assert not isinstance(outcome, TimedOut), "an untimed enter hung"
            else:
                outcome = stage.blocking.enter(ticket, blocking_head, timeout=rng.choice(SHORT))
    rd.stage_got[token] = got


class StageEvents:
    """The Stage's events, ``(token, seq)`` for every token, in a seeded random order (each
    token's own in sequence), sent a few at a time by the main thread as it goes: so the
    participants wait for their events all round long, not only at its start."""

    def __init__(self, rd: Round, events: Receiver[Any], tokens: list[str]) -> None:
        rng = rd.rng("events")
        self.sender: Sender[Any] = Sender()
        connect(self.sender, events)
        order = [token for token in tokens for _ in range(EVENTS)]
        rng.shuffle(order)
        seqs = dict.fromkeys(tokens, 0)
        self.left: list[tuple[str, int]] = []
        for token in order:
            self.left.append((token, seqs[token]))
            seqs[token] += 1
        self.left.reverse()
        self.step = -(-len(self.left) // REQUESTS)  # all sent by the main's last request

    def send_some(self) -> None:
        for _ in range(min(self.step, len(self.left))):
            self.sender.send_plain(self.left.pop())

    def send_all(self) -> None:
        while self.left:
            self.send_some()
