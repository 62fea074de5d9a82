# WRONG: the fixture's server task lives on the module's loop, but each test runs on a
# loop of its own. The module's loop does not run during the test, so send() waits for
# ever; after a second asyncmp logs a warning that says so.
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from adder import Adder

from asyncmp import Client, task


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def adder() -> AsyncIterator[Client[tuple[int, int], int]]:
    client, handle = task.spawn(lambda client: Adder())
    async with client:
        yield client
    await handle


@pytest.mark.asyncio  # loop_scope="function": a new loop for this test
async def test_adds(adder: Client[tuple[int, int], int]) -> None:
    assert await adder.send((1, 2)) == 3  # hangs
