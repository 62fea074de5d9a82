"""The exceptions of ``asyncmp.calloop``; all derive from ``asyncmp.Error``.

calloop's ``Error::{InvalidToken, IoError, OtherError}`` map to Python as: `InvalidToken`
here, ``OSError`` as raised by the OS, and the very exception a callback or a source raised
(a Python callback does not return ``Err``: it raises, and ``dispatch`` re-raises it).
"""

from __future__ import annotations

from typing import Any

from .._errors import Disconnected, Error

__all__ = ("ExecutorDestroyed", "InsertError", "InvalidToken")


class InvalidToken(Error, LookupError):
    """A `RegistrationToken` names no source of this loop any more.

    The source was removed (by `LoopHandle.remove`, by returning ``PostAction.REMOVE`` or by
    removing itself), so its slot is free or reused by a newer source with a newer token.
    Raised by ``enable``, ``disable`` and ``update``; ``remove`` of a stale token is a no-op.
    """


class InsertError(Error):
    """`LoopHandle.insert_source` could not register the source with the poller.

    The rejected source is given back in `source`
    (calloop's ``InsertError::inserted``) and the OS error that caused the failure is the
    ``__cause__``.
    """

    source: Any
    """The source that was not inserted."""

    def __init__(self, source: Any, message: str) -> None:
        super().__init__(message)
        self.source = source


class ExecutorDestroyed(Disconnected):
    """`Scheduler.schedule` was called after its `Executor` was closed or collected.

    Unlike ``asyncmp.Closed``, the scheduler itself was not closed: the other end went away.
    """
