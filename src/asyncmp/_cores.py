"""Which core runs the channel: the compiled one, or pure Python.

asyncmp ships its hot paths twice: in pure Python (``_channel_core.py``, ``_reply.py``,
``_channel.py`` — the reference, always there) and compiled with Cython
(``asyncmp._speedups``, built where a C compiler is available). The compiled core is used
when it can be imported, unless the environment variable ``ASYNCMP_NO_EXTENSIONS`` is set to
a non-empty value (the convention of aiohttp, yarl and multidict); both pass the same tests.
`CORE` says which one runs: ``asyncmp.CORE``.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Final, Literal

__all__ = ("CORE", "load_speedups")


def load_speedups() -> ModuleType | None:
    """The compiled core, or ``None`` (not built, or ``ASYNCMP_NO_EXTENSIONS`` set)."""
    if os.environ.get("ASYNCMP_NO_EXTENSIONS"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    return _speedups


CORE: Final[Literal["compiled", "pure"]] = "pure" if load_speedups() is None else "compiled"
"""``"compiled"`` when the channel runs on ``asyncmp._speedups``, ``"pure"`` otherwise."""
