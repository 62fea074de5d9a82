"""Application-defined signals routed to subscribed receivers: dharma's Signaler.

The implementation lives in `asyncmp.dharma._signaler`; everything here is also re-exported by
`asyncmp.dharma`.
"""

from __future__ import annotations

from ._signaler import *  # noqa: F403 (the module's public names, as listed in its __all__)
from ._signaler import __all__ as __all__
