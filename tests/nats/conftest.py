"""Fixtures for the asyncmp.nats tests (helpers live in nats_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from nats_helpers import NatsServer

# nats-py is asyncio-only, so asyncmp.nats.serve() and the per-loop connections of
# asyncmp.nats clients need asyncio: these tests run on asyncio and asyncio+uvloop, not on
# trio (trio callers go through the client's I/O thread, tested in test_threads.py).
BACKENDS = [
    pytest.param(("asyncio", {"debug": True}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A nats-server on a free 127.0.0.1 port, stopped after the test."""
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
