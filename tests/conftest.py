"""Every async test runs on asyncio, asyncio+uvloop and trio (anyio's pytest plugin, in
auto mode: see ``anyio_mode`` in pyproject.toml); the channel and server tests run on both of
the channel's cores, in this one process (the `core` fixture)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from core_switch import CORES, use_core

BACKENDS = [
    pytest.param(("asyncio", {"debug": True}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param(("trio", {}), id="trio"),
]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


try:
    _speedups: Any = importlib.import_module("asyncmp._speedups")
except ImportError:
    _speedups = None


@pytest.fixture(params=list(CORES))
def core(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """The channel module of one core (`asyncmp._channel_py` or `asyncmp._channel_c`), in use
    for the test: ``asyncmp.channel()`` makes its channels."""
    with use_core(CORES[request.param]) as module:
        yield module


@pytest.fixture(autouse=True)
def _parker_left_clean() -> Iterator[None]:
    """On the compiled core, a thread's blocking calls reuse one parker: after each test,
    the main thread's must be clean (held, with no wake-up left in it), or the next blocking
    call would return at once with no reply."""
    yield
    if _speedups is not None:
        assert _speedups._parker_is_clean(), "a blocking call left a wake-up in the parker"
