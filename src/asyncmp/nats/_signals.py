"""A Signaler bridge: emits on one process's `asyncmp.dharma.Signaler` reach the
subscribers of a Signaler in other processes, through NATS subjects."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio

from ..dharma._bridge import Defined, Receiver, _check_signal_id
from ..dharma._signaler import Signaler
from ._codec import Codec, resolve_codec
from ._link import connect_nats, settle
from ._serve import check_asyncio

if TYPE_CHECKING:
    from nats.aio.msg import Msg

__all__ = ("bridge_signaler",)

logger = logging.getLogger("asyncmp")


async def bridge_signaler(
    signaler: Signaler[Any],
    servers: str | list[str] = "nats://127.0.0.1:4222",
    *,
    publish: Iterable[int] = (),
    receive: Iterable[int] = (),
    prefix: str = "asyncmp.signal",
    codec: Codec | str = "json",
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    **nats_options: Any,
) -> None:
    """Connect *signaler* to NATS until cancelled: local emits of the ids in *publish* are
    published on ``<prefix>.<signal_id>``, and messages arriving there for the ids in
    *receive* are emitted on *signaler*, reaching its local subscribers.

    A process may publish and receive the same id: what it receives is not published
    again, and its own publications do not come back to it (the connection uses
    ``no_echo``). Payloads go through *codec* (JSON by default). Delivery is NATS core
    pub/sub: at most once, in order per publisher, only to processes bridged at the time.

    Runs on an asyncio event loop. Start it with ``await task_group.start(bridge_signaler,
    …)`` to continue once its subscriptions are active.

    Args:
        signaler: the local Signaler.
        servers: NATS server URL(s).
        publish: signal ids whose local emits are sent out.
        receive: signal ids whose remote emits are emitted locally.
        prefix: the subject prefix (one subject per signal id).
        codec: ``"json"``, ``"msgpack"`` or a `Codec`.
        task_status: for `TaskGroup.start`: reported once subscribed.
        **nats_options: passed to `nats.connect`.

    Raises:
        RuntimeError: not called on an asyncio event loop (trio's guest mode on one
            included): nats-py is asyncio-only.
        ServerDisappeared: the NATS server cannot be reached, or nats-py closed the
            connection for good (reconnection attempts exhausted): the bridge stops rather
            than run on with neither direction working.
    """
    check_asyncio("bridge_signaler")
    if not isinstance(signaler, Signaler):
        raise TypeError(f"bridge_signaler() takes a Signaler, not {signaler!r}")
    outgoing = sorted({_check_signal_id(i) for i in publish})
    incoming = sorted({_check_signal_id(i) for i in receive})
    resolved = resolve_codec(codec)
    # Lost for good: the error to raise, and the scope of the bridge's work to cancel.
    lost: list[BaseException] = []
    work = anyio.CancelScope()

    async def on_lost(error: Callable[[], BaseException]) -> None:
        lost.append(error())
        work.cancel()

    nc = await connect_nats({**nats_options, "servers": servers, "no_echo": True}, on_lost=on_lost)
    # Payloads this bridge emitted locally, per signal id, until the outgoing receiver sees
    # them: those came from NATS and are not published again. A local emit of an equal
    # payload could be taken for the echo, which publishes the same message either way.
    echoes: dict[int, list[Any]] = {}

    def is_echo(signal_id: int, value: Any) -> bool:
        pending = echoes.get(signal_id)
        if pending:
            for i, seen in enumerate(pending):
                if seen is value or (type(seen) is type(value) and seen == value):
                    del pending[i]
                    return True
        return False

    async def on_message(msg: Msg) -> None:
        signal_id = int(msg.subject.rsplit(".", 1)[1])
        try:
            payload = resolved.decode(msg.data)
        except Exception as exc:
            logger.warning("asyncmp.nats: dropped an undecodable signal %d: %r", signal_id, exc)
            return
        if signal_id in outgoing:
            echoes.setdefault(signal_id, []).append(payload)
        signaler.emit(signal_id, payload)

    receiver: Receiver[Any] = Receiver()
    for signal_id in outgoing:
        signaler.subscribe(signal_id, receiver)

    async def publish_forever() -> None:
        while True:
            item = await receiver.recv()
            if not isinstance(item, Defined):
                continue
            if is_echo(item.signal_id, item.value):
                continue
            try:
                data = resolved.encode(item.value)
            except Exception as exc:
                logger.warning(
                    "asyncmp.nats: signal %d not published, its payload cannot be encoded: %r",
                    item.signal_id,
                    exc,
                )
                continue
            await nc.publish(f"{prefix}.{item.signal_id}", data)

    try:
        with work:
            for signal_id in incoming:
                await nc.subscribe(f"{prefix}.{signal_id}", cb=on_message)
            await settle(nc)
            task_status.started()
            await publish_forever()
        # Only `on_lost` cancels `work`: the connection is gone for good.
        raise lost[0]
    finally:
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(5),
            contextlib.suppress(Exception),
        ):
            await nc.drain()
