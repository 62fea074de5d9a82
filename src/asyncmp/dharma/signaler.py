"""Application-defined signals routed to subscribed receivers: dharma's Signaler.

The implementation lives in `asyncmp.dharma._signaler`; everything here is also re-exported by
`asyncmp.dharma`.
"""

from __future__ import annotations

from ._signaler import (
    Signaler as Signaler,
)

__all__ = ("Signaler",)
