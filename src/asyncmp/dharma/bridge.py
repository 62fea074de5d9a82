"""Senders and receivers connected freely: dharma's bridge.

The implementation lives in `asyncmp.dharma._bridge`; everything here is also re-exported by
`asyncmp.dharma`.
"""

from __future__ import annotations

from ._bridge import *  # noqa: F403 (the module's public names, as listed in its __all__)
from ._bridge import __all__ as __all__
