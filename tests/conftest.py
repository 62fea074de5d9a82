"""Every async test runs on asyncio, asyncio+uvloop and trio (anyio's pytest plugin, in
auto mode: see ``anyio_mode`` in pyproject.toml)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from asyncmp._cores import load_speedups

BACKENDS = [
    pytest.param(("asyncio", {"debug": True}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param(("trio", {}), id="trio"),
]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


_speedups = load_speedups()


@pytest.fixture(autouse=True)
def _parker_left_clean() -> Iterator[None]:
    """On the compiled core, a thread's blocking calls reuse one parker: after each test,
    the main thread's must be clean (held, with no wake-up left in it), or the next blocking
    call would return at once with no reply."""
    yield
    if _speedups is not None:
        assert _speedups._parker_is_clean(), "a blocking call left a wake-up in the parker"
