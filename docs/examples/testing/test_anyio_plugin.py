# anyio's pytest plugin: each test runs once per backend. Fixtures and tests of one backend
# share one event loop, so a module-scoped task.spawn server works as long as its scope is
# not wider than anyio_backend's (module by default).
from collections.abc import AsyncIterator

import anyio
import pytest
from adder import Adder

from asyncmp import Client, task

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
async def adder() -> AsyncIterator[Client[tuple[int, int], int]]:
    # trio needs a nursery for every task: give task.spawn a task group (fine on asyncio too).
    async with anyio.create_task_group() as tg:
        client, handle = task.spawn(lambda client: Adder(), task_group=tg)
        async with client:
            yield client
        await handle


async def test_adds(adder: Client[tuple[int, int], int]) -> None:
    assert await adder.send((1, 2)) == 3


async def test_the_same_server_serves_the_next_test(adder: Client[tuple[int, int], int]) -> None:
    assert await adder.send((3, 4)) == 7
