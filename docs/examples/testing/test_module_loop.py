# One server for the whole module: the fixture and every test share the module's loop,
# so the server's task runs whenever a test awaits it.
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from adder import Adder

from asyncmp import Client, task

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def adder() -> AsyncIterator[Client[tuple[int, int], int]]:
    client, handle = task.spawn(lambda client: Adder())
    async with client:
        yield client
    await handle


async def test_adds(adder: Client[tuple[int, int], int]) -> None:
    assert await adder.send((1, 2)) == 3


async def test_the_same_server_serves_the_next_test(adder: Client[tuple[int, int], int]) -> None:
    assert await adder.send((3, 4)) == 7
