# One server for the whole module, on its own thread: it needs no event loop, so tests on
# any loop (a new one per test here) can use it.
from collections.abc import Iterator

import pytest
from adder import ThreadAdder

from asyncmp import Client, thread


@pytest.fixture(scope="module")
def adder() -> Iterator[Client[tuple[int, int], int]]:
    client, handle = thread.spawn(lambda client: ThreadAdder(), name="adder")
    with client:
        yield client
    handle.blocking.join(timeout=5)


@pytest.mark.asyncio
async def test_adds(adder: Client[tuple[int, int], int]) -> None:
    assert await adder.send((1, 2)) == 3


@pytest.mark.asyncio
async def test_the_same_server_serves_the_next_loop(adder: Client[tuple[int, int], int]) -> None:
    assert await adder.send((3, 4)) == 7


def test_and_plain_tests(adder: Client[tuple[int, int], int]) -> None:
    assert adder.blocking.send((5, 6), timeout=5) == 11
