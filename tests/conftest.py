"""Every async test runs on asyncio, asyncio+uvloop and trio (anyio's pytest plugin, in
auto mode: see ``anyio_mode`` in pyproject.toml)."""

from __future__ import annotations

from typing import Any

import pytest

BACKENDS = [
    pytest.param(("asyncio", {"debug": True}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param(("trio", {}), id="trio"),
]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param
