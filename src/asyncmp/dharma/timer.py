"""A periodic timer for the dispatcher: dharma's Timer (Linux: timerfd).

The implementation lives in `asyncmp.dharma._timer`; everything here is also re-exported by
`asyncmp.dharma`.
"""

from __future__ import annotations

from ._timer import (
    PeriodicTimer as PeriodicTimer,
)

__all__ = ("PeriodicTimer",)
