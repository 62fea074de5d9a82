"""asyncmp over NATS: the same Client/Server API between processes and hosts.

`serve` puts a local asyncmp server (a `task.spawn` / `thread.spawn` dispatch loop, or
any `asyncmp.Server`) behind a NATS subject; `serve_service` puts one or more of them behind
the endpoints of a service of the NATS Services framework (discoverable, with statistics);
`connect` returns a client with the API of `asyncmp.Client` whose requests travel over NATS,
to an asyncmp server or to any service of the framework. Needs nats-py (``asyncmp[nats]``).
"""

from __future__ import annotations

from .._lowlevel._public import publish
from ._client import Client as Client, connect as connect
from ._codec import (
    BytesCodec as BytesCodec,
    Codec as Codec,
    JsonCodec as JsonCodec,
    MsgpackCodec as MsgpackCodec,
    PickleCodec as PickleCodec,
)
from ._errors import (
    MalformedMessage as MalformedMessage,
    PayloadTooLarge as PayloadTooLarge,
    RemoteError as RemoteError,
    ServiceError as ServiceError,
)
from ._serve import serve as serve
from ._service import (
    Endpoint as Endpoint,
    Service as Service,
    serve_service as serve_service,
)
from ._signals import bridge_signaler as bridge_signaler

__all__ = (
    "BytesCodec",
    "Client",
    "Codec",
    "Endpoint",
    "JsonCodec",
    "MalformedMessage",
    "MsgpackCodec",
    "PayloadTooLarge",
    "PickleCodec",
    "RemoteError",
    "Service",
    "ServiceError",
    "bridge_signaler",
    "connect",
    "serve",
    "serve_service",
)

# Tracebacks and docs name the public path (asyncmp.nats.Client), not the private module.
publish(globals(), __all__)
del publish
