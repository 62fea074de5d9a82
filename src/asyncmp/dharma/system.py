"""Operating-system signals (SIGINT, SIGTERM) turned into a clean shutdown: dharma's system.

The implementation lives in `asyncmp.dharma._system`; everything here is also re-exported by
`asyncmp.dharma`.
"""

from __future__ import annotations

from ._system import (
    SignalEventHandler as SignalEventHandler,
    block_signals as block_signals,
    unblock_signals as unblock_signals,
)

__all__ = (
    "SignalEventHandler",
    "block_signals",
    "unblock_signals",
)
