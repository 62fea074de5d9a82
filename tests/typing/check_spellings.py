"""The spellings the README and the docs use keep their real types.

Not run by pytest: `scripts/test` type-checks this file with ``mypy --strict`` and pyright.
Each ``assert_type`` fails the check if an inferred type changes (to ``Any``, say), and each
``# type: ignore[...]`` marks a call that *must* be rejected: both checkers are configured to
report an ignore comment that suppresses nothing, so a check that stopped catching the error
fails too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from typing_extensions import assert_type

import asyncmp
import asyncmp.dharma
import asyncmp.nats


@dataclass(frozen=True)
class Get:
    key: str


@dataclass(frozen=True)
class Put:
    key: str
    value: int


class Store:
    """A task handler (async proc_req), as on the servers page."""

    def __init__(self, weak: asyncmp.WeakClient[Get | Put, int | None]) -> None:
        self.weak = weak
        self.data: dict[str, int] = {}

    async def proc_req(
        self, msg: Get | Put, rctx: asyncmp.ReplyContext[int | None]
    ) -> asyncmp.Break[str] | None:
        rctx.reply(self.data.get(msg.key))
        return None


class ThreadStore:
    """A thread handler (plain def proc_req)."""

    def proc_req(self, msg: Get | Put, rctx: asyncmp.ReplyContext[int | None]) -> None:
        rctx.reply(None)


async def readme_spellings() -> None:
    # `import asyncmp` alone, then the submodules as attributes (the README's spelling).
    client, handle = asyncmp.task.spawn(lambda client: Store(client.weak()))
    assert_type(client, asyncmp.Client[Get | Put, int | None])
    assert_type(handle, asyncmp.JoinHandle[Any])
    assert_type(await client.send(Get("a")), int | None)
    assert_type(client.blocking.send(Put("a", 1), timeout=5), int | None)
    assert_type(await client.request(Get("a")), int | None)
    assert_type(client.request(Get("a")).blocking.wait(1.0), int | None)
    await client.send("not a request")  # type: ignore[arg-type]

    tclient, thandle = asyncmp.thread.spawn(lambda client: ThreadStore(), name="store")
    assert_type(tclient, asyncmp.Client[Get | Put, int | None])
    assert_type(thandle, asyncmp.JoinHandle[Any])
    assert_type(await thandle.join(), Any)

    # An async handler is refused by thread.spawn's types as well as at run time.
    asyncmp.thread.spawn(lambda client: Store(client.weak()))  # type: ignore[arg-type,return-value]


def channel_spellings() -> None:
    server: asyncmp.Server[Get, int]
    client: asyncmp.Client[Get, int]
    server, client = asyncmp.channel()
    assert_type(client.blocking.send(Get("k")), int)
    item = server.try_pop()
    if item is not None:
        msg, rctx = item
        assert_type(msg, Get)
        assert_type(rctx, asyncmp.ReplyContext[int])
        rctx.reply("no")  # type: ignore[arg-type]
    weak = client.weak()
    assert_type(weak.upgrade(), asyncmp.Client[Get, int] | None)
    assert_type(server.statistics().queued, int)


def stage_spellings() -> None:
    stage: asyncmp.Stage[str, None, dict[str, int]] = asyncmp.Stage(None, {})
    stats = stage.statistics()
    assert_type(stats, asyncmp.StageStatistics)
    assert_type(stats.parked, int)
    assert_type(stats.headed, bool)


def nats_spellings() -> None:
    remote = asyncmp.nats.connect("kv", "nats://127.0.0.1:4222", timeout=5)
    assert_type(remote, asyncmp.nats.Client[Any, Any])
    typed: asyncmp.nats.Client[Get, int] = asyncmp.nats.connect("kv")
    assert_type(typed.blocking.send(Get("k"), timeout=1), int)
    assert_type(typed.request(Get("k")), asyncmp.PendingReply[int])


async def takes_any_client(client: asyncmp.AnyClient[Get, int]) -> int:
    """Code written once for "a client": local and NATS clients both fit."""
    pending = client.request(Get("k"))
    assert_type(pending, asyncmp.AnyPendingReply[int])
    assert_type(client.blocking.send(Get("k")), int)
    async with client.clone() as other:
        assert_type(await other.send(Get("k")), int)
    return await client.send(Get("k"))


async def any_client_accepts_both() -> None:
    _, local = asyncmp.channel()
    local_client: asyncmp.Client[Get, int] = local
    remote: asyncmp.nats.Client[Get, int] = asyncmp.nats.connect("kv")
    await takes_any_client(local_client)
    await takes_any_client(remote)
    # The message and reply types are still checked through the protocol.
    wrong: asyncmp.Client[Put, int] = local
    await takes_any_client(wrong)  # type: ignore[arg-type]
    wrong_reply: asyncmp.nats.Client[Get, str] = asyncmp.nats.connect("kv")
    await takes_any_client(wrong_reply)  # type: ignore[arg-type]


def dharma_spellings() -> None:
    sender: asyncmp.dharma.Sender[int] = asyncmp.dharma.Sender()
    receiver: asyncmp.dharma.Receiver[int] = asyncmp.dharma.Receiver()
    asyncmp.dharma.connect(sender, receiver)
    assert_type(
        receiver.try_recv(),
        asyncmp.dharma.ReceiveResult[int] | Literal[asyncmp.dharma.NoMessage.EMPTY],
    )
    signaler: asyncmp.dharma.Signaler[str] = asyncmp.dharma.Signaler()
    signaler.emit(1, "payload")
    signaler.emit(1, 2)  # type: ignore[arg-type]


def nats_service_spellings(local: asyncmp.Client[Get, int]) -> None:
    endpoint = asyncmp.nats.Endpoint("kv.get", local, name="get")
    assert_type(endpoint.subject, str)
    error = asyncmp.nats.ServiceError(404, "no such key")
    assert_type(error, asyncmp.nats.ServiceError)
    asyncmp.nats.Endpoint("kv.get", "not a client")  # type: ignore[arg-type]
