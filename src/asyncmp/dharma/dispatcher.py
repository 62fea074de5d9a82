"""File-descriptor events dispatched to handlers: dharma's Dispatcher (Linux: epoll).

The implementation lives in `asyncmp.dharma._dispatcher`; everything here is also re-exported by
`asyncmp.dharma`.
"""

from __future__ import annotations

from ._dispatcher import *  # noqa: F403 (the module's public names, as listed in its __all__)
from ._dispatcher import __all__ as __all__
