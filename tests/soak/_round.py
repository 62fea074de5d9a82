"""The soak's size and bounds, and the round: what its threads and loops share, and the
ledgers in which each side writes what it saw (see the package's docstring)."""

from __future__ import annotations

import itertools
import os
import queue
import random
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncmp
import bounds
from asyncmp import (
    Closed,
    NoReply,
    ServerDisappeared,
    WouldBlock,
)

# -- size ----------------------------------------------------------------------------------

ROUNDS = 8  # the first is the warm-up round of the memory check (at least 7: see `growth`)
REQUESTS = 600  # requests per channel client worker (6 workers) per round
MESSAGES = 600  # bridge messages per sender (4 senders) per round
EVENTS = 60  # Stage events per token (7 tokens) per round
SEED = int(os.environ.get("ASYNCMP_SOAK_SEED", "20260917"))

# The bound of every wait that should end (a hang fails the round): the soak loads every
# core at once, so twice the suite's.
WAIT = 2 * bounds.WAIT
SHORT = (0, 0.0001, 0.001, 0.003)  # timeouts and cancel delays that make the mix
MAIN_WAITS = (0, 0.001, 0.01, 0.05)  # the main thread's bridge and Stage timeouts
HEAD_POLL = 0.005  # how long a Stage head reads the resource before it gives way
# Growth after the warm-up round is the median growth of one round times the rounds (see
# `growth`): a leak raises every reading, while memory a container keeps after it grew once
# (a dict never gives its table back) is one step, in whichever round the peak came. A
# round makes about 3,600 requests and 4,500 deliveries: leaking one object per hundred
# requests, or a few bytes per request, exceeds a bound. (What grows without a leak — thread
# bookkeeping, library caches — stays near 3 KiB and a few objects a round.)
MEMORY = 64 * 1024  # bytes of traced memory
OBJECTS = 100  # objects the garbage collector tracks


class AppError(Exception):
    """What servers pass to ``rctx.fail()``."""


class HandlerError(Exception):
    """What servers and handlers raise to leave a request unanswered."""


MISSING: Any = object()

# How a request ended on its client's side (the first item of its ledger record).
GIVEN_UP_STRICT = {"scope", "timeout", "cancel", "interrupt-pending"}
# Given up in a way the docs allow to race a reply that `reply()` reports delivered: a bare
# asyncio Task.cancel, a Ctrl-C in `blocking.send` in the instant of the reply, a dropped
# PendingReply (its requester never looks).
GIVEN_UP_LAX = {"bare-cancel", "interrupt-send", "drop"}
NEVER_SEEN = {"server-gone", "would-block", "closed"}


# -- the round ----------------------------------------------------------------------------


@dataclass
class Round:
    """Everything one round shares between its threads and loops, and what each side saw."""

    seed: int
    number: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Iterator[int] = field(default_factory=itertools.count)
    # worker name -> its own strong client of each channel (by channel name)
    clients: dict[str, dict[str, asyncmp.Client[int, Any]]] = field(default_factory=dict)
    sent: dict[int, str] = field(default_factory=dict)  # rid -> channel
    client_ends: dict[int, list[tuple[str, Any]]] = field(default_factory=dict)
    server_ends: dict[int, list[tuple[str, bool | None]]] = field(default_factory=dict)
    deferred: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    plain_handled: int = 0
    close_plain_at: int | None = None
    handler_failures: int = 0
    # bridge
    received: dict[str, list[Any]] = field(default_factory=lambda: {"r1": [], "r2": []})
    bridge_sent: dict[str, list[Any]] = field(default_factory=lambda: {"r1": [], "r2": []})
    senders_left: int = 0
    # stage
    stage_got: dict[str, list[int]] = field(default_factory=dict)
    interrupts: Counter[str] = field(default_factory=Counter)
    task_handle: Any = None  # the task.spawn loop's JoinHandle, from the uvloop thread
    # Stage tickets, all taken before any event is sent; each participant takes its own.
    tickets: dict[str, asyncmp.Ticket[str]] = field(default_factory=dict)

    def rng(self, name: str) -> random.Random:
        return random.Random(f"{self.seed}/{self.number}/{name}")

    # channel ledger

    def new_request(self, channel: str) -> int:
        rid = next(self.ids)
        with self.lock:
            self.sent[rid] = channel
        return rid

    def ended(self, rid: int, how: str, detail: Any = None) -> None:
        with self.lock:
            self.client_ends.setdefault(rid, []).append((how, detail))

    def ended_by(self, rid: int, exc: BaseException) -> None:
        """Record the documented error *exc* that ended request *rid*; re-raise any other."""
        if isinstance(exc, AppError):
            self.ended(rid, "fail", exc.args[0])
        elif isinstance(exc, NoReply):
            cause = exc.__cause__
            self.ended(rid, "noreply", cause.args[0] if isinstance(cause, HandlerError) else None)
        elif isinstance(exc, ServerDisappeared):
            self.ended(rid, "server-gone")
        elif isinstance(exc, WouldBlock):
            self.ended(rid, "would-block")
        elif isinstance(exc, Closed):
            self.ended(rid, "closed")
        else:
            raise exc

    def answered(self, rid: int, how: str, delivered: bool | None) -> None:
        with self.lock:
            self.server_ends.setdefault(rid, []).append((how, delivered))

    def answer(self, server: asyncmp.Server[int, Any], item: Any, rng: random.Random) -> None:
        """Answer a request of the ``plain`` channel in one of the ways a server may.

        Takes the ``(rid, rctx)`` item itself, so that dropping the context drops it."""
        rid, rctx = item
        del item
        roll = rng.random()
        if roll < 0.5:
            self.answered(rid, "reply", rctx.reply(rid * 2))
        elif roll < 0.6:
            self.answered(rid, "fail", rctx.fail(AppError(rid)))
        elif roll < 0.68:
            self.answered(rid, "noreply", None)
            rctx.close()
        elif roll < 0.76:
            self.answered(rid, "noreply-raise", None)
            try:
                with rctx:
                    raise HandlerError(rid)
            except HandlerError:
                pass
        elif roll < 0.84:
            self.answered(rid, "noreply", None)
            del rctx  # collected: NoReply
        else:
            self.deferred.put((rid, rctx))
            del rctx
        with self.lock:
            self.plain_handled += 1
            close = self.plain_handled == self.close_plain_at
        if close:
            server.close()

    # bridge ledger

    def got(self, receiver: str, value: Any) -> None:
        with self.lock:
            self.received[receiver].append(value)


def close_all(clients: dict[str, asyncmp.Client[int, Any]]) -> None:
    for client in clients.values():
        client.close()
