"""Dispatch-loop servers that run on their own thread: ump-server's ``thread::spawn``.

```python
client, handle = asyncmp.thread.spawn(lambda client: Adder(), name="adder")
```

The loop runs on a new thread, takes the requests of its channel one at a time in FIFO
order and hands each to the handler's ``proc_req`` (a plain ``def``: it may block). See
`spawn` for the whole life cycle.
"""

from __future__ import annotations

import inspect
import itertools
import threading
from collections.abc import Callable
from typing import Any, Literal, Protocol, TypeVar

from ._channel import Client, ReplyContext, WeakClient
from ._errors import ClientsDisappeared
from ._serving import Break, Continue, DispatchLoop, JoinHandle, check_flow, spawn_doc

__all__ = ("ThreadHandler", "spawn")

Req = TypeVar("Req")
Req_contra = TypeVar("Req_contra", contravariant=True)
Rep = TypeVar("Rep")
RV_co = TypeVar("RV_co", covariant=True)

_counter = itertools.count(1)


class ThreadHandler(Protocol[Req_contra, Rep, RV_co]):
    """What `spawn` needs from the object ``make_handler`` builds.

    Only ``proc_req`` is required. Two optional methods are looked up by name, and run on
    the server's thread:

    - ``init(self, weak_client) -> None`` runs once, before the first request, with a
      `WeakClient` of the server.
    - ``term(self, rv) -> object`` runs once, after the loop ended by a
      `Break` (``rv`` is its value) or because every client had gone
      (``rv`` is ``None``). What it returns is what the `JoinHandle`
      yields; without ``term`` the handle yields ``rv``.

    All three are plain ``def`` functions; an ``async def`` is refused with ``TypeError``
    (use `asyncmp.task.spawn` for those).
    """

    def proc_req(
        self, msg: Req_contra, rctx: ReplyContext[Rep], /
    ) -> Break[RV_co] | Continue | type[Continue] | None:
        """Handle one request: answer it with ``rctx.reply(value)`` / ``rctx.fail(exc)``
        (now, or later from another thread), then return ``None`` or
        `Continue` to go on, or ``Break(value)`` to end the loop.

        The next request is not taken before this call returns. If it raises, the request
        gets `NoReply` unless it was answered, and the loop ends with
        that exception (or goes on: see ``spawn``'s ``on_error``).
        """
        ...


@spawn_doc(
    ending="The thread is a daemon thread: it does not keep the process alive; join the "
    "handle to wait for the loop to end.",
    name="Name of the thread (default ``asyncmp-server-N``), also used in log messages.",
    arguments="",
    on_error_runs="on the server thread (a plain ``def``)",
    always_ends="``KeyboardInterrupt`` and ``SystemExit``",
    type_error="the handler has no plain-``def`` ``proc_req``",
    raises="",
)
def spawn(
    make_handler: Callable[[Client[Req, Rep]], ThreadHandler[Req, Rep, Any]],
    *,
    max_queued: int | None = None,
    name: str | None = None,
    watchdog: float | None = None,
    on_error: Literal["stop", "continue"] | Callable[[Exception, Req], object] = "stop",
) -> tuple[Client[Req, Rep], JoinHandle[Any]]:
    """Start a server whose dispatch loop runs on a new thread.

    Callable from anywhere (a thread or async code): it makes a channel, calls
    ``make_handler(client)`` right away, starts the thread and returns ``(client, handle)``.
    """
    limit = DispatchLoop.check_options(name, watchdog, on_error)
    thread_name = name if name is not None else f"asyncmp-server-{next(_counter)}"
    dispatch, client, weak = DispatchLoop.build(
        make_handler, max_queued, thread_name, limit, on_error, awaits=False, check=_check_sync
    )
    thread = threading.Thread(target=_serve, args=(dispatch, weak), name=thread_name, daemon=True)
    try:
        thread.start()
    except BaseException:
        dispatch.server.close()
        client.close()
        raise
    return client, dispatch.handle


def _check_sync(handler: object) -> None:
    for method in ("init", "proc_req", "term"):
        if inspect.iscoroutinefunction(getattr(handler, method, None)):
            raise TypeError(
                f"{type(handler).__qualname__}.{method} is an async def, but thread.spawn() "
                "calls it on a plain thread; make it a plain def or use asyncmp.task.spawn()"
            )


def _serve(dispatch: DispatchLoop, weak: WeakClient[Any, Any]) -> None:
    """The blocking face of `DispatchLoop`: the loop's thread. Each call of the handler's
    returns a plain value; an awaitable is refused (`_not_awaitable`)."""
    try:
        init = dispatch.starting()
        if init is not None:
            _not_awaitable(init(weak), "init")
        del weak
        proc_req = dispatch.serving()
        wait = dispatch.server.blocking.wait
        while True:
            try:
                msg, rctx = wait()
            except ClientsDisappeared:
                rv = None
                break
            try:
                # Checked here, so that a bad return is the cause of the request's NoReply.
                flow = proc_req(msg, rctx)
                stop = None if flow is None else check_flow(_not_awaitable(flow, "proc_req"))
            except BaseException as exc:
                recover = dispatch.failed(msg, rctx, exc)
                if recover is None:
                    raise
                _not_awaitable(recover(), "on_error")
                dispatch.went_on()
                stop = None  # go on, like a proc_req that returned None
            # Drop our references now: a context the handler neither answered nor kept is
            # collected here, and its requester gets NoReply at once, not at the next one.
            del msg, rctx
            if stop is not None:
                rv = stop.value
                break
        term = dispatch.ended()
        value = rv if term is None else _not_awaitable(term(rv), "term")
    except BaseException as exc:
        # Reported to whoever joins, and logged: re-raising would only reach
        # threading.excepthook.
        dispatch.raised(exc)
    else:
        dispatch.finish(value)


def _not_awaitable(result: object, method: str) -> object:
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # no "never awaited" warning on top of this error
        raise TypeError(f"{method}() returned an awaitable, but thread servers cannot await it")
    return result
