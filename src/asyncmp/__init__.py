"""asyncmp: message passing between asyncio tasks, trio tasks and plain threads.

This module only re-exports; the implementation lives in private modules.

Documentation: https://asyncmp.readthedocs.io/
"""

# No `from __future__ import annotations` here: it would show as `asyncmp.annotations`.
from typing import TYPE_CHECKING

from ._channel import (
    Client as Client,
    ReplyContext as ReplyContext,
    Server as Server,
    WeakClient as WeakClient,
    channel as channel,
)
from ._cores import CORE as CORE
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
from ._lowlevel._public import publish
from ._pending import PendingReply as PendingReply
from ._protocols import (
    AnyBlockingClient as AnyBlockingClient,
    AnyBlockingPendingReply as AnyBlockingPendingReply,
    AnyClient as AnyClient,
    AnyPendingReply as AnyPendingReply,
)
from ._serving import Break as Break, Continue as Continue, JoinHandle as JoinHandle
from ._stage import (
    Director as Director,
    Finished as Finished,
    Notified as Notified,
    Stage as Stage,
    Ticket as Ticket,
    TimedOut as TimedOut,
)
from ._statistics import (
    ChannelStatistics as ChannelStatistics,
    StageStatistics as StageStatistics,
)

__all__ = (
    "CORE",
    "AlreadyReplied",
    "AnyBlockingClient",
    "AnyBlockingPendingReply",
    "AnyClient",
    "AnyPendingReply",
    "Break",
    "ChannelStatistics",
    "Client",
    "ClientsDisappeared",
    "Closed",
    "Continue",
    "Director",
    "Disconnected",
    "Error",
    "Finished",
    "JoinHandle",
    "NoReply",
    "Notified",
    "PendingReply",
    "ReplyContext",
    "Server",
    "ServerDisappeared",
    "Stage",
    "StageStatistics",
    "Ticket",
    "TimedOut",
    "WeakClient",
    "WouldBlock",
    "channel",
)

# The public submodules load on first use, so `import asyncmp` stays cheap and needs no
# optional extra, yet `asyncmp.task.spawn(...)` works after a plain `import asyncmp`.
_SUBMODULES = frozenset({"calloop", "dharma", "nats", "task", "thread"})


if TYPE_CHECKING:
    # For type checkers, which do not run `__getattr__`: `asyncmp.task.spawn(...)` after a
    # plain `import asyncmp` has the types of `from asyncmp import task`.
    from . import (
        calloop as calloop,
        dharma as dharma,
        nats as nats,
        task as task,
        thread as thread,
    )

    __version__: str


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    if name == "__version__":
        # From the installed package's metadata (a wheel or an editable install), read on
        # first use: importlib.metadata is not cheap to import.
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(__name__)
        except PackageNotFoundError:  # run from a source tree that was never installed
            return "0+unknown"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # What `dir(asyncmp)` and tab completion show: the public names, the lazy submodules
    # and the version, not the module's own helpers.
    return sorted([*__all__, *_SUBMODULES, "__version__"])


# Tracebacks and docs name the public path (asyncmp.Client), not the private module.
publish(globals(), __all__)
del TYPE_CHECKING, publish
