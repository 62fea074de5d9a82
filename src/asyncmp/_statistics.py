"""Statistics records: frozen snapshots of an object's state, as ``statistics()`` returns them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

__all__ = ("ChannelStatistics",)


@final
@dataclass(frozen=True)
class ChannelStatistics:
    """A snapshot of a channel, from [`Server.statistics`][asyncmp.Server.statistics]."""

    queued: int
    """Requests waiting to be picked up (at most ``max_queued`` on a bounded channel)."""
    clients: int
    """Open strong clients."""
    weak_clients: int
    """Weak clients that exist (they never keep the server alive)."""
    in_flight: int
    """Requests picked up by the server and not answered yet."""
