"""`PendingReply`: a request queued now whose reply is collected later (ump's `WaitReply`).

A pending reply is a handle on an `OutcomeCell` — the channel's (a request whose requester
is this handle) or another transport's (a request travelling over NATS) — so one class
serves every kind of client. It is not on a per-request hot path, and is the same on both
of the channel's cores.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any, Generic, TypeVar, final

from ._lowlevel._check import check_timeout
from ._lowlevel._finalize import finalize
from ._lowlevel._format import seconds
from ._lowlevel._outcome import DONE, GIVEN_UP, PENDING, OutcomeCell
from ._lowlevel._public import NoPublicConstructor
from ._lowlevel._wake import ensure_blocking_allowed

__all__ = ("PendingReply",)

Rep = TypeVar("Rep")


@final
class PendingReply(Generic[Rep], metaclass=NoPublicConstructor, made_by="Client.request()"):
    """A request that has been queued and whose reply will be collected later.

    Returned by [`Client.request`][asyncmp.Client.request] (ump's `req_async` /
    `WaitReply`). Collect the reply once: `await pending` in a task or
    `pending.blocking.wait(timeout=None)` in a thread.

    Giving up — `pending.cancel()`, cancelling the task that awaits it, a blocking wait
    timing out, or dropping the object — withdraws the request if the server has not picked
    it up yet, and otherwise makes the server's `reply()` return `False`.
    """

    __slots__ = ("__weakref__", "_cell")
    _cell: OutcomeCell  # the channel's request cell, or a request of another transport

    @classmethod
    def _create(cls, cell: OutcomeCell) -> PendingReply[Any]:
        self: PendingReply[Any] = object.__new__(cls)
        self._cell = cell
        return self

    def __await__(self) -> Generator[Any, None, Rep]:
        cell = self._cell
        yield from cell.wait(give_up=True).__await__()
        result: Rep = cell.result()
        return result

    def done(self) -> bool:
        """Whether the outcome has arrived (or the request was given up)."""
        return self._cell.state != PENDING

    def cancel(self) -> bool:
        """Give up on the reply. Returns ``True`` if the request had not been answered."""
        return self._cell.give_up()

    @property
    def blocking(self) -> _BlockingPendingReply[Rep]:
        """The blocking face, for plain threads."""
        # The view holds the PendingReply itself, so that
        # `client.request(x).blocking.wait()` keeps the request alive while it waits.
        return _BlockingPendingReply(self)

    def __del__(self) -> None:
        cell = self._cell
        if cell.state == PENDING and not sys.is_finalizing():
            finalize((cell.lock,), cell.give_up)

    def __repr__(self) -> str:
        state = {PENDING: "waiting", DONE: "done", GIVEN_UP: "given up"}[self._cell.state]
        return f"<PendingReply {state}>"


@final
class _BlockingPendingReply(Generic[Rep]):
    """``pending.blocking``: wait for the reply from a plain thread."""

    __slots__ = ("_pending",)

    def __init__(self, pending: PendingReply[Rep]) -> None:
        self._pending = pending

    def wait(self, timeout: float | None = None) -> Rep:
        """Block until the reply arrives and return it (or raise the error).

        Raises:
            TimeoutError: no reply within *timeout* seconds; the request is given up.
            RuntimeError: called on a thread that runs an event loop.
        """
        timeout = check_timeout(timeout)
        ensure_blocking_allowed("waiting for a reply")
        cell = self._pending._cell
        if not cell.wait_blocking(timeout, give_up=True):
            raise TimeoutError(f"no reply within {seconds(timeout)} seconds")
        result: Rep = cell.result()
        return result
