"""asyncmp over NATS: the same Client/Server API between processes and hosts.

`serve` puts a local asyncmp server (a `task.spawn` / `thread.spawn` dispatch loop, or
any `asyncmp.Server`) behind a NATS subject; `connect` returns a client with the API of
`asyncmp.Client` whose requests travel over NATS. Needs nats-py (``asyncmp[nats]``).
"""

from __future__ import annotations

from .._lowlevel._public import publish
from ._client import Client as Client, PendingReply as PendingReply, connect as connect
from ._codec import (
    Codec as Codec,
    JsonCodec as JsonCodec,
    MsgpackCodec as MsgpackCodec,
    PickleCodec as PickleCodec,
)
from ._errors import (
    MalformedMessage as MalformedMessage,
    PayloadTooLarge as PayloadTooLarge,
    RemoteError as RemoteError,
)
from ._serve import serve as serve
from ._signals import bridge_signals as bridge_signals

__all__ = (
    "Client",
    "Codec",
    "JsonCodec",
    "MalformedMessage",
    "MsgpackCodec",
    "PayloadTooLarge",
    "PendingReply",
    "PickleCodec",
    "RemoteError",
    "bridge_signals",
    "connect",
    "serve",
)

# Tracebacks and docs name the public path (asyncmp.nats.Client), not the private module.
publish(globals(), __all__)
del publish
