"""`_backend`: which async library runs the caller — asyncio (uvloop included), trio, or none —
answered per thread, with sniffio and without it; trio's API imported once; what cancels
the running task; whether an anyio cancel scope will cancel it again."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from types import ModuleType
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import sniffio
import trio
import uvloop

from asyncmp._lowlevel import _backend
from asyncmp._lowlevel._backend import (
    anyio_cancel_pending,
    cancelled_exception,
    current_library,
    on_trio,
    running_asyncio_loop,
    trio_api,
)
from asyncmp._lowlevel._wake import (
    TrioWaiter,
    ensure_blocking_allowed,
    new_async_waiter,
)

from ._support import WAIT


def what_runs() -> tuple[str | None, bool]:
    return current_library(), on_trio()


async def test_the_running_library_is_named(anyio_backend_name: str) -> None:
    """In a task, `current_library` names the library (uvloop is asyncio) and `on_trio`
    agrees; a worker thread of that same run runs none."""
    expected = "trio" if anyio_backend_name == "trio" else "asyncio"
    assert what_runs() == (expected, expected == "trio")
    assert await anyio.to_thread.run_sync(what_runs) == (None, False)


async def test_running_asyncio_loop_is_the_loop_only_where_asyncio_runs_the_caller() -> None:
    """On asyncio (and uvloop) `running_asyncio_loop` is the running loop; on trio and in a
    worker thread it is None (trio's guest mode: the test below)."""
    expected = None if on_trio() else asyncio.get_running_loop()
    assert running_asyncio_loop() is expected
    assert await anyio.to_thread.run_sync(running_asyncio_loop) is None


async def test_cancelled_exception_is_what_cancels_the_task() -> None:
    """`cancelled_exception` is the exception a cancellation raises in the running task:
    ``trio.Cancelled`` on trio, ``asyncio.CancelledError`` on asyncio."""
    expected = trio.Cancelled if on_trio() else asyncio.CancelledError
    assert cancelled_exception() is expected
    caught: list[BaseException] = []
    with anyio.fail_after(WAIT), anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.lowlevel.checkpoint()
        except cancelled_exception() as exc:
            caught.append(exc)
            raise
    assert len(caught) == 1
    assert type(caught[0]) is expected


async def test_anyio_cancel_pending_sees_a_cancelled_unshielded_scope() -> None:
    """`anyio_cancel_pending` is True exactly while an enclosing anyio scope is cancelled and
    not shielded (anyio will cancel the task again), and False in a plain thread."""
    assert anyio_cancel_pending() is False
    with anyio.fail_after(WAIT), anyio.CancelScope() as outer:
        outer.cancel()
        assert anyio_cancel_pending() is True
        with anyio.CancelScope(shield=True):
            assert anyio_cancel_pending() is False
            await anyio.lowlevel.checkpoint()  # shielded: not cancelled here
        assert anyio_cancel_pending() is True
        await anyio.lowlevel.checkpoint()
    assert outer.cancelled_caught
    assert anyio_cancel_pending() is False
    assert await anyio.to_thread.run_sync(anyio_cancel_pending) is False


def test_trio_api_is_imported_once() -> None:
    """`trio_api` returns one namespace of trio's functions, made on first use (not on every
    wake-up)."""
    api = trio_api()
    assert trio_api() is api
    assert api.reschedule is trio.lowlevel.reschedule
    assert api.Cancelled is trio.Cancelled


def test_trio_in_guest_mode_on_asyncio_is_trio() -> None:
    """Under trio's guest mode an asyncio loop is running too, but a trio task cannot await
    its futures: the answer is trio, the waiter a `TrioWaiter`, and there is no asyncio loop
    to use (`running_asyncio_loop`)."""

    async def in_trio() -> tuple[Any, ...]:
        return (
            current_library(),
            type(new_async_waiter()),
            _backend.get_running_loop() is not None,
            running_asyncio_loop(),
        )

    async def host() -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        trio.lowlevel.start_guest_run(
            in_trio,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=done.set_result,
        )
        return (await asyncio.wait_for(done, WAIT)).unwrap()

    assert asyncio.run(host()) == ("trio", TrioWaiter, True, None)


def test_a_library_asyncmp_does_not_support_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread that sniffio says runs another library (curio, say) is named as such: an
    async waiter is refused with a RuntimeError naming it, and so is a blocking call there."""
    monkeypatch.setattr(sniffio.thread_local, "name", "curio")
    assert what_runs() == ("curio", False)
    with pytest.raises(RuntimeError, match="not 'curio'"):
        new_async_waiter()
    with pytest.raises(RuntimeError, match="runs an event loop"):
        ensure_blocking_allowed("op()")


@pytest.fixture
def backend_without_sniffio(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh copy of `_backend`, imported where sniffio cannot be imported (and so trio
    cannot run). The package's own copy is left alone."""
    monkeypatch.setitem(sys.modules, "sniffio", None)
    spec = importlib.util.spec_from_file_location("_backend_without_sniffio", _backend.__file__)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_without_sniffio_asyncio_is_still_recognised(
    backend_without_sniffio: ModuleType, run: Any
) -> None:
    """Without sniffio (so without trio) the thread mark is a constant "none", asyncio's
    running loop is still found, and nothing is ever trio."""
    backend = backend_without_sniffio
    assert type(backend.library_mark).__name__ == "_NoTrio"

    async def inside() -> tuple[str | None, bool]:
        return backend.current_library(), backend.on_trio()

    assert run(inside()) == ("asyncio", False)
    assert (backend.current_library(), backend.on_trio()) == (None, False)
