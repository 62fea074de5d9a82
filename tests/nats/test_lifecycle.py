"""Timeouts, cancellation, closing, threads, trio callers and loop shutdown."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import anyio
import pytest
from nats_helpers import NatsServer, serving

import asyncmp
import asyncmp.nats

pytestmark = pytest.mark.anyio


async def _wait_until(predicate: Any) -> None:
    # The state that changes (a local server's statistics, a handler's log) is updated by a
    # message that crossed NATS; there is no event to wait on, so poll. Bounded by the
    # caller's fail_after.
    while not predicate():  # noqa: ASYNC110
        await anyio.sleep(0.01)


async def test_nats_timeout_raises_and_the_server_withdraws_the_queued_request(
    nats_server: NatsServer,
) -> None:
    """A request that times out raises TimeoutError, and the server withdraws it from its
    local queue so the handler never sees it."""
    release = anyio.Event()
    seen: list[Any] = []

    async def slow(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        seen.append(msg)
        if msg == "hold":
            await release.wait()
        rctx.reply(msg)

    with anyio.fail_after(20):
        async with (
            serving(nats_server.url, "slow", slow) as local,
            asyncmp.nats.connect("slow", nats_server.url, timeout=None) as patient,
            asyncmp.nats.connect("slow", nats_server.url, timeout=0.3) as hasty,
        ):
            async with anyio.create_task_group() as tg:
                hold = tg.start_soon(patient.send, "hold")
                del hold
                await _wait_until(lambda: seen == ["hold"])
                with pytest.raises(TimeoutError):
                    await hasty.send("withdrawn")  # queued behind "hold", then given up
                await _wait_until(lambda: local.statistics().queued == 0)
                release.set()
            assert await patient.send("after") == "after"
    assert seen == ["hold", "after"]


async def test_nats_cancelled_send_withdraws_the_request(nats_server: NatsServer) -> None:
    """Cancelling a send withdraws the request from the server's queue."""
    release = anyio.Event()
    seen: list[Any] = []

    async def slow(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        seen.append(msg)
        if msg == "hold":
            await release.wait()
        rctx.reply(msg)

    with anyio.fail_after(20):
        async with (
            serving(nats_server.url, "slow", slow) as local,
            asyncmp.nats.connect("slow", nats_server.url) as client,
        ):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.send, "hold")
                await _wait_until(lambda: seen == ["hold"])
                with anyio.CancelScope() as scope:
                    tg.start_soon(_cancel_when_queued, local, scope)
                    await client.send("cancelled")
                assert scope.cancelled_caught
                await _wait_until(lambda: local.statistics().queued == 0)
                release.set()
            pending = client.request("after")
            assert await pending == "after"
            assert pending.done()
    assert seen == ["hold", "after"]


async def _cancel_when_queued(local: asyncmp.Server[Any, Any], scope: anyio.CancelScope) -> None:
    await _wait_until(lambda: local.statistics().queued == 1)
    scope.cancel()


async def test_nats_pending_reply_cancel_and_blocking_timeout(nats_server: NatsServer) -> None:
    """pending.cancel() gives up (a later await raises Closed) and a blocking wait that
    times out raises TimeoutError."""
    release = anyio.Event()

    async def slow(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        await release.wait()
        rctx.reply(msg)

    with anyio.fail_after(20):
        async with (
            serving(nats_server.url, "slow", slow),
            asyncmp.nats.connect("slow", nats_server.url) as client,
        ):
            pending = client.request(1)
            assert not pending.done()
            assert pending.cancel()
            assert not pending.cancel()
            with pytest.raises(asyncmp.Closed):
                await pending
            waited = client.request(2)
            with pytest.raises(TimeoutError):
                await anyio.to_thread.run_sync(waited.blocking.wait, 0.2)
            with pytest.raises(TimeoutError):
                await anyio.to_thread.run_sync(client.blocking.send, 3, 0.2)
            release.set()


async def test_nats_blocking_calls_on_a_loop_thread_raise_runtime_error(
    nats_server: NatsServer,
) -> None:
    """Blocking forms called on an event loop thread raise RuntimeError instead of hanging."""
    async with asyncmp.nats.connect("x", nats_server.url) as client:
        with pytest.raises(RuntimeError, match="event loop"):
            client.blocking.send(1)
        pending = client.request(1)
        with pytest.raises(RuntimeError, match="event loop"):
            pending.blocking.wait(1)
        pending.cancel()


async def test_nats_closed_client_raises_closed_and_clones_are_independent(
    nats_server: NatsServer,
) -> None:
    """A closed client raises Closed; a clone keeps working until it is closed too; close
    is idempotent; clients cannot be constructed directly."""
    with pytest.raises(TypeError):
        asyncmp.nats.Client()
    with anyio.fail_after(20):
        async with serving(nats_server.url, "e"):
            client = asyncmp.nats.connect("e", nats_server.url)
            assert await client.send(1) == 1
            clone = client.clone()
            client.close()
            client.close()
            assert client.closed
            with pytest.raises(asyncmp.Closed):
                await client.send(1)
            with pytest.raises(asyncmp.Closed):
                client.request(1)
            with pytest.raises(asyncmp.Closed):
                await anyio.to_thread.run_sync(client.blocking.send, 1)
            with pytest.raises(asyncmp.Closed):
                client.clone()
            assert await clone.send(2) == 2
            assert await anyio.to_thread.run_sync(clone.blocking.send, 3) == 3
            async with clone:
                pass
            with pytest.raises(asyncmp.Closed):
                await clone.send(1)


async def test_nats_closing_the_client_fails_waiting_requests_with_closed(
    nats_server: NatsServer,
) -> None:
    """A request still waiting when the last client closes raises Closed, not a hang."""
    release = anyio.Event()

    async def slow(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
        await release.wait()
        rctx.reply(msg)

    with anyio.fail_after(20):
        async with serving(nats_server.url, "slow", slow) as local:
            client = asyncmp.nats.connect("slow", nats_server.url)
            pending = client.request(1)
            await _wait_until(lambda: local.statistics().in_flight == 1)
            client.close()
            with pytest.raises(asyncmp.Closed):
                await pending
            release.set()


def test_nats_plain_threads_share_one_client(nats_server: NatsServer) -> None:
    """Several plain threads use one client at once (blocking sends, and requests collected
    with blocking waits), with no event loop of their own."""

    async def main() -> None:
        with anyio.fail_after(30):
            await threads_main()

    async def threads_main() -> None:
        async with serving(nats_server.url, "t"):
            with asyncmp.nats.connect("t", nats_server.url) as client:
                results: list[Any] = []

                def worker(base: int) -> None:
                    results.extend(client.blocking.send(base + i, timeout=10) for i in range(10))
                    pending = [client.request(base + i) for i in range(10, 20)]
                    results.extend(p.blocking.wait(10) for p in pending)

                async with anyio.create_task_group() as tg:
                    for base in (0, 100, 200, 300):
                        tg.start_soon(anyio.to_thread.run_sync, worker, base)
                assert sorted(results) == sorted(
                    b + i for b in (0, 100, 200, 300) for i in range(20)
                )

    anyio.run(main, backend="asyncio")


def test_nats_trio_tasks_use_the_client_through_its_io_thread(nats_server: NatsServer) -> None:
    """A trio task can send, request and await over NATS (the client's I/O thread carries
    the traffic); serve() refuses to run under trio."""
    started = anyio.Event()
    client = asyncmp.nats.connect("trio", nats_server.url, errors=[ValueError])

    async def server_side() -> None:
        async def handler(msg: Any, rctx: asyncmp.ReplyContext[Any]) -> None:
            if msg == "bad":
                rctx.fail(ValueError("bad"))
            else:
                rctx.reply(msg)

        async with serving(nats_server.url, "trio", handler):
            started.set()
            await anyio.sleep_forever()

    async def trio_side() -> list[Any]:
        out = [await client.send(1), await client.request(2)]
        try:
            await client.send("bad")
        except ValueError as exc:
            out.append(str(exc))
        with pytest.raises(RuntimeError, match="asyncio"):
            await asyncmp.nats.serve(asyncmp.channel()[1], "x", nats_server.url)
        return out

    async def main() -> None:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(server_side)
                await started.wait()
                run_trio = lambda: anyio.run(trio_side, backend="trio")  # noqa: E731
                assert await anyio.to_thread.run_sync(run_trio) == [1, 2, "bad"]
                tg.cancel_scope.cancel()

    try:
        anyio.run(main, backend="asyncio")
    finally:
        client.close()


@pytest.mark.subprocess
def test_nats_loop_shutdown_closes_a_client_left_open(nats_server: NatsServer) -> None:
    """A client never closed does not leak its connection when asyncio.run() ends: no
    ResourceWarning, clean exit."""
    code = textwrap.dedent(f"""
        import asyncio, gc, warnings
        warnings.simplefilter("error")
        import asyncmp.nats

        client = asyncmp.nats.connect("nobody", {nats_server.url!r})

        async def main():
            try:
                await client.send(1)
            except asyncmp.ServerDisappeared:
                pass

        asyncio.run(main())
        gc.collect()
        print("ok")
    """)
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert "Warning" not in proc.stderr, proc.stderr
