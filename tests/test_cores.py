"""The two cores: the compiled one (asyncmp._speedups) and pure Python run the same suite.

`scripts/test` runs the whole suite twice and names the core each run must be on
(``ASYNCMP_EXPECT_CORE``); these tests check that, how ``ASYNCMP_NO_EXTENSIONS`` selects the
pure core, and the idioms users rely on with ``client.send(msg)`` — which the compiled core
answers with an awaitable object rather than a Python coroutine.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import weakref
from typing import Any

import anyio
import pytest

import asyncmp
from asyncmp._cores import load_speedups


def test_the_run_uses_the_core_it_names() -> None:
    """A run of the suite that names its core (scripts/test names one per run) is on it."""
    expected = os.environ.get("ASYNCMP_EXPECT_CORE")
    if expected is None:
        pytest.skip("this run names no core (scripts/test runs the suite once per core)")
    assert expected == asyncmp.CORE


@pytest.mark.subprocess
@pytest.mark.parametrize("value", ["1", "yes"])
def test_no_extensions_selects_the_pure_core(value: str) -> None:
    """ASYNCMP_NO_EXTENSIONS (any non-empty value) makes asyncmp run on pure Python."""
    env = {**os.environ, "ASYNCMP_NO_EXTENSIONS": value}
    out = subprocess.run(
        [sys.executable, "-c", "import asyncmp; print(asyncmp.CORE)"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.split() == ["pure"]


def test_the_compiled_core_is_the_one_in_use_when_built() -> None:
    """When asyncmp._speedups is importable (and not switched off), asyncmp runs on it: the
    request objects and the hot methods are the compiled ones."""
    speedups = load_speedups()
    if speedups is None:
        assert asyncmp.CORE == "pure"
        pytest.skip("the compiled core is not built or is switched off")
    assert asyncmp.CORE == "compiled"
    assert asyncmp.ReplyContext is speedups.ReplyContext
    assert asyncmp.ReplyContext.__module__ == "asyncmp"
    assert asyncmp.Client.send is speedups.client_send
    assert asyncmp.Server.wait is speedups.server_wait


async def echo(server: asyncmp.Server[Any, Any]) -> None:
    async for msg, rctx in server:
        rctx.reply(msg)


async def test_send_works_with_the_idioms_users_rely_on(anyio_backend_name: str) -> None:
    """client.send(m) is what every scheduler expects of a coroutine: asyncio.create_task and
    gather take it, and anyio's and trio's start_soon(client.send, m) run it."""
    server, client = asyncmp.channel()
    got: list[Any] = []

    async def collect(value: int) -> None:
        got.append(await client.send(value))

    async with anyio.create_task_group() as tg:
        tg.start_soon(echo, server)
        with anyio.fail_after(10):
            tg.start_soon(client.send, 0)  # the result is dropped, the round trip happens
            async with anyio.create_task_group() as inner:
                inner.start_soon(collect, 1)
            if anyio_backend_name == "asyncio":
                assert await asyncio.create_task(client.send(2)) == 2
                assert await asyncio.gather(client.send(3), client.send(4)) == [3, 4]
                assert await asyncio.ensure_future(client.send(5)) == 5
        client.close()
    assert got == [1]


async def test_send_never_awaited_warns_like_a_coroutine() -> None:
    """A send that is made and dropped without being awaited warns, as a coroutine does,
    and sends nothing."""
    server, client = asyncmp.channel()
    with pytest.warns(RuntimeWarning, match="never awaited"):
        client.send(1)  # dropped at once: CPython finalizes it on this line
    assert server.try_pop() is None


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_a_closed_loop_is_not_kept_alive(runner: str) -> None:
    """Looking up the running loop (per request, on either core) keeps no reference to it:
    once a loop that ran asyncmp requests is closed and dropped, it is freed."""
    import uvloop

    server, client = asyncmp.channel()

    async def main() -> weakref.ref[asyncio.AbstractEventLoop]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(echo, server)
            assert await client.send(1) == 1
            assert await client.request(2) == 2
            tg.cancel_scope.cancel()
        return weakref.ref(asyncio.get_running_loop())

    ref = asyncio.run(main()) if runner == "asyncio" else uvloop.run(main())
    gc.collect()
    assert ref() is None, "the closed loop is still referenced"
