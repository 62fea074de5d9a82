"""Operating-system signals (SIGINT, SIGTERM) turned into a clean shutdown: dharma's system.

The implementation lives in `asyncmp.dharma._system`; everything here is also re-exported by
`asyncmp.dharma`.
"""

from __future__ import annotations

from ._system import *  # noqa: F403 (the module's public names, as listed in its __all__)
from ._system import __all__ as __all__
