"""The channels' workers: clients on every loop, threads and the main thread; the plain
channel's servers; the dispatch loops' handler."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncmp
from asyncmp import (
    ClientsDisappeared,
    Closed,
)

from ._interrupts import Interrupts
from ._round import MISSING, REQUESTS, SHORT, WAIT, AppError, HandlerError, Round, close_all

# -- channel clients ----------------------------------------------------------------------


async def async_client(rd: Round, name: str) -> None:
    """Requests from a task: sends, scoped cancellations and timeouts, sibling cancels, bare
    asyncio cancels, pending replies cancelled, dropped or outliving their client."""
    rng = rd.rng(name)
    clients = rd.clients[name]
    on_asyncio = sniffio_name() == "asyncio"
    try:
        for _ in range(REQUESTS):
            channel = rng.choice(list(clients))
            client = clients[channel]
            rid = rd.new_request(channel)
            roll = rng.random()
            try:
                if roll < 0.35:
                    with anyio.fail_after(WAIT):
                        value = await client.send(rid)
                elif roll < 0.5:
                    value = MISSING
                    with anyio.move_on_after(rng.choice(SHORT)):
                        value = await client.send(rid)
                    if value is MISSING:
                        rd.ended(rid, "scope")
                        continue
                elif roll < 0.6:
                    value = await sibling_cancel(client, rid, rng)
                    if value is MISSING:
                        rd.ended(rid, "scope")
                        continue
                elif roll < 0.7 and on_asyncio:
                    value = await bare_cancel(client, rid, rng)
                    if value is MISSING:
                        rd.ended(rid, "bare-cancel")
                        continue
                elif roll < 0.8:
                    pending = client.request(rid)
                    for _ in range(rng.randrange(3)):
                        await anyio.lowlevel.checkpoint()
                    if rng.random() < 0.5 and pending.cancel():
                        rd.ended(rid, "cancel")
                        continue
                    with anyio.fail_after(WAIT):
                        value = await pending
                elif roll < 0.85:
                    client.request(rid)  # dropped at once: given up by its finalizer
                    rd.ended(rid, "drop")
                    continue
                elif roll < 0.95:
                    # A request outlives the client that sent it: its reply still arrives.
                    with client.clone() as clone:
                        pending = clone.request(rid)
                    with anyio.fail_after(WAIT):
                        value = await pending
                else:
                    with client.clone() as clone:
                        pass
                    value = await clone.send(rid)  # Closed
            except Exception as exc:
                rd.ended_by(rid, exc)
            else:
                rd.ended(rid, "reply", value)
    finally:
        close_all(clients)


async def sibling_cancel(client: asyncmp.Client[int, Any], rid: int, rng: random.Random) -> Any:
    """``client.send`` in a task that a sibling cancels after a few checkpoints."""
    result: list[Any] = [MISSING]
    error: list[Exception] = []

    async def send() -> None:
        try:
            result[0] = await client.send(rid)
        except Exception as exc:  # raised below, not as an exception group
            error.append(exc)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            for _ in range(rng.randrange(4)):
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
    if error:
        raise error.pop()  # popped: the list must not keep the exception (and its frames)
    return result[0]


async def bare_cancel(client: asyncmp.Client[int, Any], rid: int, rng: random.Random) -> Any:
    """``client.send`` in an asyncio task cancelled by a bare ``Task.cancel()``."""
    task = asyncio.ensure_future(client.send(rid))
    for _ in range(rng.randrange(4)):
        await anyio.lowlevel.checkpoint()
    task.cancel()
    with anyio.fail_after(WAIT):
        await asyncio.wait({task})
    return MISSING if task.cancelled() else task.result()


def thread_client(rd: Round, name: str) -> None:
    """Requests from a plain thread: blocking sends and waits with and without timeouts,
    pending replies cancelled."""
    rng = rd.rng(name)
    clients = rd.clients[name]
    try:
        for _ in range(REQUESTS):
            channel = rng.choice(list(clients))
            client = clients[channel]
            rid = rd.new_request(channel)
            roll = rng.random()
            try:
                if roll < 0.4:
                    value = client.blocking.send(rid, timeout=WAIT)
                elif roll < 0.65:
                    try:
                        value = client.blocking.send(rid, timeout=rng.choice(SHORT))
                    except TimeoutError:
                        rd.ended(rid, "timeout")
                        continue
                elif roll < 0.85:
                    pending = client.request(rid)
                    try:
                        value = pending.blocking.wait(timeout=rng.choice(SHORT))
                    except TimeoutError:
                        # Given up, exactly as documented: waiting again raises Closed.
                        with pytest.raises(Closed):
                            pending.blocking.wait(timeout=0)
                        rd.ended(rid, "timeout")
                        continue
                else:
                    pending = client.request(rid)
                    if pending.cancel():
                        rd.ended(rid, "cancel")
                        continue
                    value = pending.blocking.wait(timeout=WAIT)
            except Exception as exc:
                rd.ended_by(rid, exc)
            else:
                rd.ended(rid, "reply", value)
    finally:
        close_all(clients)


def main_client_step(
    rd: Round, rng: random.Random, clients: dict[str, Any], irq: Interrupts
) -> None:
    """One request from the main thread, where a real SIGINT may interrupt the wait."""
    channel = rng.choice(list(clients))
    client = clients[channel]
    rid = rd.new_request(channel)
    try:
        if rng.random() < 0.5:
            with irq.armed(0.3):
                value = client.blocking.send(rid, timeout=WAIT)
        else:
            pending = client.request(rid)
            try:
                with irq.armed(0.3):
                    value = pending.blocking.wait(timeout=WAIT)
            except KeyboardInterrupt:
                rd.interrupts["pending.blocking.wait"] += 1
                # Given up, as by a timeout — unless the reply arrived in that very instant,
                # in which case waiting again returns it.
                try:
                    value = pending.blocking.wait(timeout=0)
                except Closed:
                    rd.ended(rid, "interrupt-pending")
                    return
    except KeyboardInterrupt:
        rd.interrupts["client.blocking.send"] += 1
        rd.ended(rid, "interrupt-send")
    except Exception as exc:
        rd.ended_by(rid, exc)
    else:
        rd.ended(rid, "reply", value)


# -- channel servers ----------------------------------------------------------------------


async def async_server(rd: Round, server: asyncmp.Server[int, Any], name: str) -> None:
    """Serve the ``plain`` channel from a task; some waits are cancelled (nothing is lost)."""
    rng = rd.rng(name)
    while True:
        try:
            if rng.random() < 0.2:
                item = None
                with anyio.move_on_after(rng.choice(SHORT)):
                    item = await server.wait()
                if item is None:
                    continue
            else:
                with anyio.fail_after(WAIT):
                    item = await server.wait()
        except (ClientsDisappeared, Closed):
            return
        rd.answer(server, item, rng)
        del item


def thread_server(rd: Round, server: asyncmp.Server[int, Any], name: str) -> None:
    """Serve the ``plain`` channel from a thread: ``try_pop`` and timed blocking waits."""
    rng = rd.rng(name)
    while True:
        try:
            item = server.try_pop() if rng.random() < 0.2 else None
            if item is None:
                try:
                    item = server.blocking.wait(timeout=rng.choice((*SHORT, WAIT)))
                except TimeoutError:
                    continue
        except (ClientsDisappeared, Closed):
            return
        rd.answer(server, item, rng)
        del item


def deferred_replier(rd: Round) -> None:
    """Answer the contexts servers handed over, later and from another thread."""
    while (item := rd.deferred.get(timeout=WAIT)) is not None:
        rid, rctx = item
        del item
        rd.answered(rid, "reply", rctx.reply(rid * 2))
        del rctx


class SoakHandler:
    """The handler of both dispatch loops: reply, fail or raise (the loop sends NoReply)."""

    def __init__(self, rd: Round, name: str) -> None:
        self.rd = rd
        self.rng = rd.rng(name)

    def proc_req(self, rid: int, rctx: asyncmp.ReplyContext[Any]) -> None:
        roll = self.rng.random()
        if roll < 0.04:
            self.rd.answered(rid, "noreply-raise", None)
            raise HandlerError(rid)
        if roll < 0.8:
            self.rd.answered(rid, "reply", rctx.reply(rid * 2))
        else:
            self.rd.answered(rid, "fail", rctx.fail(AppError(rid)))


def sniffio_name() -> str:
    import sniffio

    return sniffio.current_async_library()
