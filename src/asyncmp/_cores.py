"""Which core runs the channel: the compiled one, or pure Python.

asyncmp's channel is one Python source, `asyncmp._channel_py`. Where a C compiler was at hand
when asyncmp was built, that source is also compiled by Cython, as ``asyncmp._channel_c``, on
the primitives of ``asyncmp._speedups``. The compiled core is used when it can be imported,
unless the environment variable ``ASYNCMP_NO_EXTENSIONS`` is set to a non-empty value (the
convention of aiohttp, yarl and multidict). Both cores are one library: they run the same
code and show the same face (documentation, signatures, errors). `CORE` says which one runs:
``asyncmp.CORE``.

*Core* names this choice and nothing else in asyncmp. The state that handles share (a
channel's, a dispatcher's, a calloop ping's or executor's, a bridge receiver's) is a
``…State`` class, as trio and anyio name theirs.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Final, Literal

__all__ = ("CORE", "CoreName", "channel_module", "cores")

CoreName = Literal["compiled", "pure"]


def _compiled() -> ModuleType | None:
    """The compiled channel, or ``None`` when it was not built."""
    try:
        from . import _channel_c
    except ImportError:
        return None
    return _channel_c


def cores() -> dict[CoreName, ModuleType]:
    """Every core this install has, by name — whatever ``ASYNCMP_NO_EXTENSIONS`` says (the
    tests run both in one process)."""
    from . import _channel_py

    found: dict[CoreName, ModuleType] = {"pure": _channel_py}
    compiled = _compiled()
    if compiled is not None:
        found["compiled"] = compiled
    return found


def channel_module() -> ModuleType:
    """The channel module the library runs on (see the module doc)."""
    if not os.environ.get("ASYNCMP_NO_EXTENSIONS"):
        compiled = _compiled()
        if compiled is not None:
            return compiled
    from . import _channel_py

    return _channel_py


CORE: Final[CoreName] = "compiled" if channel_module().__name__.endswith("_c") else "pure"
"""``"compiled"`` when the channel runs on its compiled core, ``"pure"`` otherwise."""
