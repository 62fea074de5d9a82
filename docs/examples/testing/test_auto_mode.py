# asyncio_mode = auto: every async test and async fixture runs on pytest-asyncio's loop,
# with no marker and a plain @pytest.fixture.
from collections.abc import AsyncIterator

import pytest
from adder import Adder

from asyncmp import Client, task


@pytest.fixture
async def adder() -> AsyncIterator[Client[tuple[int, int], int]]:
    client, handle = task.spawn(lambda client: Adder())
    async with client:
        yield client
    await handle  # closing the last client ended the loop


async def test_adds(adder: Client[tuple[int, int], int]) -> None:
    assert await adder.send((1, 2)) == 3


async def test_requests_wait_in_order(adder: Client[tuple[int, int], int]) -> None:
    pending = [adder.request((n, n)) for n in range(5)]
    assert [await p for p in pending] == [0, 2, 4, 6, 8]
