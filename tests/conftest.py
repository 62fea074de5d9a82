"""Every async test runs on asyncio, asyncio+uvloop and trio (anyio's pytest plugin)."""

from __future__ import annotations

import inspect
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Mark every coroutine test for anyio, so no test can silently run on one backend only.
    for item in items:
        function = getattr(item, "function", None)
        if function is not None and inspect.iscoroutinefunction(function):
            item.add_marker(pytest.mark.anyio)
