"""Statistics records: frozen snapshots of an object's state, as ``statistics()`` returns them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

__all__ = ("ChannelStatistics", "StageStatistics")


@final
@dataclass(frozen=True)
class ChannelStatistics:
    """A snapshot of a channel, from `Server.statistics` or `Client.statistics` (the
    counterpart of trio's ``MemoryChannelStatistics``)."""

    queued: int
    """Requests waiting to be picked up (at most ``max_queued`` on a bounded channel)."""
    max_queued: int | None
    """The channel's bound: `None` for an unbounded one."""
    clients: int
    """Open strong clients."""
    weak_clients: int
    """Weak clients that exist (they never keep the server alive)."""
    in_flight: int
    """Requests picked up by the server and not answered yet."""
    servers_waiting: int
    """Server waits (tasks or threads) parked for a request."""
    closed: bool
    """Whether the server is closed."""


@final
@dataclass(frozen=True)
class StageStatistics:
    """A snapshot of a stage, from `Stage.statistics` (the counterpart of trio's
    ``MemoryChannelStatistics``: who holds what, and who waits)."""

    tickets: int
    """Tickets held: tokens whose notifications are recorded."""
    headed: bool
    """Whether a caller of ``enter`` heads the stage (its head function runs)."""
    parked: int
    """Waiters parked in ``enter`` — tasks and threads alike — until they are notified,
    promoted to head, or time out."""
    notified: int
    """Tickets with a notification pending: the next ``enter`` of each returns
    `Notified()` at once."""
