"""asyncmp: message passing between asyncio tasks, trio tasks and plain threads.

This module only re-exports; the implementation lives in private modules.
"""

from __future__ import annotations

from ._channel import (
    ChannelStatistics as ChannelStatistics,
    Client as Client,
    Server as Server,
    WeakClient as WeakClient,
    channel as channel,
)
from ._errors import (
    AlreadyReplied as AlreadyReplied,
    ClientsDisappeared as ClientsDisappeared,
    Closed as Closed,
    Disconnected as Disconnected,
    Error as Error,
    NoReply as NoReply,
    ServerDisappeared as ServerDisappeared,
    WouldBlock as WouldBlock,
)
from ._reply import PendingReply as PendingReply, ReplyContext as ReplyContext

__all__ = (
    "AlreadyReplied",
    "ChannelStatistics",
    "Client",
    "ClientsDisappeared",
    "Closed",
    "Disconnected",
    "Error",
    "NoReply",
    "PendingReply",
    "ReplyContext",
    "Server",
    "ServerDisappeared",
    "WeakClient",
    "WouldBlock",
    "channel",
)

# Tracebacks and docs name the public path (asyncmp.Client), not the private module.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("asyncmp._"):
        _obj.__module__ = __name__
del _name, _obj
