"""Dispatch-loop servers that run as a task: ump-server's ``task::spawn``.

```python
client, handle = asyncmp.task.spawn(lambda client: Adder())
```

The loop runs on the event loop that called `spawn` (asyncio, uvloop or trio), takes the
requests of its channel one at a time in FIFO order and hands each to the handler's
``proc_req``. See `spawn` for the whole life cycle.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import types
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, Protocol, TypeVar, final

from ._channel import Client, ReplyContext, WeakClient
from ._errors import ClientsDisappeared
from ._loopwatch import forget, watch
from ._lowlevel._backend import cancelled_exception, current_library
from ._lowlevel._finalize import finalize
from ._serving import Break, Continue, DispatchLoop, JoinHandle, check_flow, spawn_doc

__all__ = ("TaskHandler", "TaskSpawner", "spawn")

Req = TypeVar("Req")
Req_contra = TypeVar("Req_contra", contravariant=True)
Rep = TypeVar("Rep")
RV_co = TypeVar("RV_co", covariant=True)

# On asyncio a request that is already queued is taken without yielding to the loop; yield
# once every this many requests, so that a queue kept full by other threads cannot starve
# the loop. (On trio every `server.wait()` is a checkpoint already.)
_YIELD_EVERY = 64

_Coroutine = types.CoroutineType


class TaskHandler(Protocol[Req_contra, Rep, RV_co]):
    """What `spawn` needs from the object ``make_handler`` builds.

    Only ``proc_req`` is required. Two optional methods are looked up by name:

    - ``init(self, weak_client) -> None`` runs on the loop once, before the first request,
      with a `WeakClient` of the server.
    - ``term(self, rv) -> object`` runs on the loop once, after the loop ended by a
      `Break` (``rv`` is its value) or because every client had gone
      (``rv`` is ``None``). What it returns is what the `JoinHandle`
      yields; without ``term`` the handle yields ``rv``.

    In a task server each of the three may be an ``async def`` or a plain ``def``.
    """

    def proc_req(
        self, msg: Req_contra, rctx: ReplyContext[Rep], /
    ) -> (
        Awaitable[Break[RV_co] | Continue | type[Continue] | None]
        | Break[RV_co]
        | Continue
        | type[Continue]
        | None
    ):
        """Handle one request: answer it with ``rctx.reply(value)`` / ``rctx.fail(exc)``
        (now, or later from elsewhere), then return ``None`` or
        `Continue` to go on, or ``Break(value)`` to end the loop.

        The next request is not taken before this call (and, for ``async def``, its
        coroutine) has finished. If it raises, the request gets
        `NoReply` unless it was answered, and the loop ends with that
        exception (or goes on: see ``spawn``'s ``on_error``).
        """
        ...


class TaskSpawner(Protocol):
    """Anything with trio's ``start_soon``: an anyio ``TaskGroup`` or a trio ``Nursery``."""

    def start_soon(
        self, func: Callable[..., Coroutine[Any, Any, Any]], /, *args: Any, name: Any = None
    ) -> object: ...


@spawn_doc(
    ending="The exception does not propagate into the task group. If the loop's task is "
    "cancelled, the request in hand gets ``NoReply``, the server is closed and joining "
    "raises ``RuntimeError``.",
    name="Name of the task, and of the loop in log messages.",
    arguments="""
    task_group: An anyio ``TaskGroup`` or trio nursery to run the loop in. Required under
        trio. Under asyncio, without one the loop runs as a new asyncio task that the
        handle keeps a reference to.""",
    on_error_runs="on the loop (a plain ``def`` or an ``async def``)",
    always_ends="cancellation, ``KeyboardInterrupt`` and ``SystemExit``",
    type_error="no ``task_group`` under trio; the handler has no ``proc_req``",
    raises="""
    RuntimeError: not called from a running asyncio or trio event loop.""",
)
def spawn(
    make_handler: Callable[[Client[Req, Rep]], TaskHandler[Req, Rep, Any]],
    *,
    max_queued: int | None = None,
    name: str | None = None,
    watchdog: float | None = None,
    task_group: TaskSpawner | None = None,
    on_error: Literal["stop", "continue"] | Callable[[Exception, Req], object] = "stop",
) -> tuple[Client[Req, Rep], JoinHandle[Any]]:
    """Start a server whose dispatch loop runs as a task on the running event loop.

    A plain function, called from async code: it makes a channel, calls
    ``make_handler(client)`` right away, starts the loop and returns ``(client, handle)``.
    """
    limit = DispatchLoop.check_options(name, watchdog, on_error)
    library = _running_library()
    if task_group is None:
        if library == "trio":
            raise TypeError(
                "task.spawn() needs task_group= under trio: pass a nursery or an anyio TaskGroup"
            )
    elif not callable(getattr(task_group, "start_soon", None)):
        raise TypeError(f"task_group must have a start_soon() method, not {task_group!r}")

    dispatch, client, weak = DispatchLoop.build(
        make_handler, max_queued, name, limit, on_error, awaits=True
    )
    server, handle = dispatch.server, dispatch.handle
    guard = _Guard(dispatch)
    args = (guard, weak, library == "asyncio")
    try:
        if task_group is None:
            task = asyncio.get_running_loop().create_task(_serve(*args), name=name)
            task.add_done_callback(guard.fire)
            handle._task = task
        else:
            task_group.start_soon(_serve, *args, name=name)
    except BaseException:
        guard.disarm()
        server.close()
        client.close()
        raise
    if library == "asyncio":
        # A task lives only while its event loop runs; warn whoever waits for a stopped one.
        watch(handle, server, asyncio.get_running_loop())
    return client, handle


def _running_library() -> str:
    library = current_library()
    if library is None:
        raise RuntimeError(
            "task.spawn() must be called from async code on a running asyncio or trio loop; "
            "from a plain thread use asyncmp.thread.spawn()"
        )
    if library not in ("asyncio", "trio"):
        raise RuntimeError(f"asyncmp supports asyncio and trio, not {library!r}")
    return library


@final
class _Guard:
    """Ends the loop's affairs if its task is discarded before it ever ran.

    On asyncio a task cancelled before its first step never executes a line of its
    coroutine, so no ``finally`` could close the server or finish the handle. The guard
    does both if it is still armed when the task is done (a done callback on the tasks
    `spawn` creates; anyio task groups and trio nurseries always start their tasks) or when
    it is collected, so joiners never hang.
    """

    __slots__ = ("armed", "dispatch")

    def __init__(self, dispatch: DispatchLoop) -> None:
        self.dispatch = dispatch
        self.armed = True

    def disarm(self) -> None:
        self.armed = False

    def fire(self, _: object = None) -> None:
        if self.armed:
            self.armed = False
            self.dispatch.server.close()
            handle = self.dispatch.handle
            error = RuntimeError(f"dispatch loop {handle._name!r} never started")
            handle._finish(None, error, quiet=True)
            forget(handle)

    def __del__(self) -> None:
        if self.armed and not sys.is_finalizing():
            dispatch = self.dispatch
            finalize((dispatch.server._channel.lock, dispatch.handle._cell.lock), self.fire)


async def _serve(guard: _Guard, weak: WeakClient[Any, Any], on_asyncio: bool) -> None:
    """The async face of `DispatchLoop`: the loop's task."""
    guard.disarm()
    dispatch = guard.dispatch
    try:
        init = dispatch.starting()
        if init is not None:
            await _maybe_await(init(weak))
        del weak
        rv = await _serve_requests(dispatch, on_asyncio)
        term = dispatch.ended()
        value = rv if term is None else await _maybe_await(term(rv))
    except BaseException as exc:
        # Kept for whoever joins; only what belongs to the event loop (a cancellation,
        # KeyboardInterrupt, SystemExit) goes on into it: the task group is not torn down
        # by a handler's failure.
        if dispatch.raised(exc, isinstance(exc, cancelled_exception())):
            raise
    else:
        dispatch.finish(value)
    finally:
        forget(dispatch.handle)  # nothing waits for this loop any more


async def _serve_requests(dispatch: DispatchLoop, on_asyncio: bool) -> Any:
    """The loop proper: returns the `Break` value, or None once every client has gone. Per
    request it calls nothing of *dispatch*'s: this is the hot path."""
    proc_req = dispatch.serving()
    server = dispatch.server
    # This task serves on one loop all its life: on asyncio, tell `wait` which, once.
    wait = server._serving(asyncio.get_running_loop()).wait if on_asyncio else server.wait
    taken = 0
    while True:
        try:
            msg, rctx = await wait()
        except ClientsDisappeared:
            return None
        try:
            flow = proc_req(msg, rctx)
            if flow is not None:
                # A coroutine (an async proc_req) is the usual case: no isawaitable() for it.
                if type(flow) is _Coroutine or inspect.isawaitable(flow):
                    flow = await flow
                # Here, so that a bad return is the request's NoReply cause.
                stop = None if flow is None else check_flow(flow)
            else:
                stop = None
        except BaseException as exc:
            recover = dispatch.failed(msg, rctx, exc)
            if recover is None:
                raise
            await _maybe_await(recover())
            dispatch.went_on()
            stop = None  # go on, like a proc_req that returned None
        # Drop our references now: a context the handler neither answered nor kept is
        # collected here, and its requester gets NoReply at once, not at the next request.
        del msg, rctx
        if stop is not None:
            return stop.value
        if on_asyncio:
            taken += 1
            if taken == _YIELD_EVERY:
                taken = 0
                await asyncio.sleep(0)


async def _maybe_await(result: object) -> object:
    if inspect.isawaitable(result):
        return await result
    return result
