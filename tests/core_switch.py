"""Both of the channel's cores in one test process: which this run tests, and the switch
that serves one of them (`use_core`; the `core` fixture in conftest.py uses it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import asyncmp
from asyncmp import _channel
from asyncmp._cores import cores

# The cores a run tests: both where the compiled one is built, unless ASYNCMP_NO_EXTENSIONS
# asks for pure Python (scripts/test's second run, which runs the whole suite on it).
CORES: dict[str, ModuleType] = (
    {"pure": cores()["pure"]} if os.environ.get("ASYNCMP_NO_EXTENSIONS") else dict(cores())
)


@contextmanager
def use_core(core: ModuleType) -> Iterator[ModuleType]:
    """Run the library on *core*'s channel for a while: the facade (`asyncmp._channel`, which
    the dispatch loops use) and the public names in `asyncmp` serve it."""
    public = [name for name in core._PUBLIC if hasattr(asyncmp, name)]
    before = {name: getattr(_channel, name) for name in _channel.__all__}
    before_public = {name: getattr(asyncmp, name) for name in public}
    _channel._select(core)
    for name in public:
        setattr(asyncmp, name, getattr(core, name))
    try:
        yield core
    finally:
        for name, value in before.items():
            setattr(_channel, name, value)
        for name, value in before_public.items():
            setattr(asyncmp, name, value)
