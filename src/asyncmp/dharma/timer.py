"""A periodic timer for the dispatcher: dharma's Timer (Linux: timerfd).

The implementation lives in `asyncmp.dharma._timer`; everything here is also re-exported by
`asyncmp.dharma`.
"""

from __future__ import annotations

from ._timer import *  # noqa: F403 (the module's public names, as listed in its __all__)
from ._timer import __all__ as __all__
