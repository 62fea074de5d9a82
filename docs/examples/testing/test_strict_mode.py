# asyncio_mode = strict (pytest-asyncio's default): mark the tests and use
# pytest_asyncio.fixture for async fixtures. This module runs in auto mode too.
from collections.abc import AsyncIterator

import anyio.to_thread
import pytest
import pytest_asyncio
from adder import Adder

from asyncmp import Client, task


@pytest_asyncio.fixture
async def adder() -> AsyncIterator[Client[tuple[int, int], int]]:
    client, handle = task.spawn(lambda client: Adder())
    async with client:
        yield client
    await handle


@pytest.mark.asyncio
async def test_adds(adder: Client[tuple[int, int], int]) -> None:
    assert await adder.send((1, 2)) == 3


@pytest.mark.asyncio
async def test_a_thread_can_call_too(adder: Client[tuple[int, int], int]) -> None:
    # A blocking call on the loop's thread would raise RuntimeError; a worker thread may block.
    result = await anyio.to_thread.run_sync(lambda: adder.blocking.send((2, 3), timeout=5))
    assert result == 5
