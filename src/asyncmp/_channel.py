"""The request/reply channel (ump's Client/Server pair): its names, from the core that runs.

The channel is written once, in `asyncmp._channel_py`, and runs either as that Python module
or compiled by Cython (see `asyncmp._cores`); this facade is where the rest of the package
and the users take it from. Type checkers read the Python source.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._cores import channel_module

__all__ = (
    "ChannelState",
    "Client",
    "ReplyContext",
    "Server",
    "WeakClient",
    "channel",
)

if TYPE_CHECKING:
    from ._channel_py import (
        ChannelState as ChannelState,
        Client as Client,
        ReplyContext as ReplyContext,
        Server as Server,
        WeakClient as WeakClient,
        channel as channel,
    )


def new_channel(max_queued: int | None) -> tuple[Server[Any, Any], Client[Any, Any]]:
    """`channel()` of the core this facade serves when called (the dispatch loops' way)."""
    return channel(max_queued=max_queued)


def _select(core: ModuleType) -> None:
    """Serve *core*'s channel from here (at import; the tests switch cores in one process)."""
    namespace = globals()
    for name in __all__:
        namespace[name] = getattr(core, name)


_select(channel_module())
