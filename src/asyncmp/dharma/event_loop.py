"""Event loops that host modules, and services: dharma's EventLoop and Service.

The implementation lives in `asyncmp.dharma._event_loop`; everything here is also re-exported by
`asyncmp.dharma`.
"""

from __future__ import annotations

from ._event_loop import *  # noqa: F403 (the module's public names, as listed in its __all__)
from ._event_loop import __all__ as __all__
