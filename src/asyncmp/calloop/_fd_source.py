"""FdSource (calloop's ``FdSource``): an fd (or any object with ``fileno()``) as an event source.

The callback gets ``(Readiness, obj, data)`` where *obj* is the wrapped object, and returns
a `PostAction` (``None`` = ``CONTINUE``); an exception it raises propagates from ``dispatch``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar, final

from ._poll import Interest, Mode, Poll, Readiness, fd_of
from ._source import PostAction, callback_action
from ._token import Token, TokenFactory

__all__ = ("FdSource",)

F = TypeVar("F")


@final
class FdSource(Generic[F]):
    """Watch *obj* (an fd number or an object with ``fileno()``) for *interest* in *mode*.

    Change `interest` or
    `mode`, then call ``LoopHandle.update(token)`` for it
    to take effect. ``Interest.EMPTY`` is allowed. The object is not closed by the loop:
    get it back with `unwrap` or
    `get_ref`.
    """

    __slots__ = ("_fd", "_obj", "_poll", "_token", "interest", "mode")

    interest: Interest
    """The readiness to wait for."""
    mode: Mode
    """How readiness is reported."""

    def __init__(self, obj: F, interest: Interest, mode: Mode) -> None:
        if not isinstance(interest, Interest):
            raise TypeError(f"interest must be an Interest, not {interest!r}")
        if not isinstance(mode, Mode):
            raise TypeError(f"mode must be a Mode, not {mode!r}")
        self._fd = fd_of(obj)  # type: ignore[arg-type]
        self._obj = obj
        self.interest = interest
        self.mode = mode
        self._poll: Poll | None = None
        self._token: Token | None = None

    def get_ref(self) -> F:
        """The wrapped object."""
        return self._obj

    def unwrap(self) -> F:
        """The wrapped object (the source must not be inserted in a loop any more)."""
        if self._poll is not None:
            raise RuntimeError("remove this FdSource from its loop before unwrapping it")
        return self._obj

    def register(self, poll: Poll, token_factory: TokenFactory) -> None:
        token = token_factory.token()
        poll.register(self._fd, self.interest, self.mode, token)
        self._poll, self._token = poll, token

    def reregister(self, poll: Poll, token_factory: TokenFactory) -> None:
        token = token_factory.token()
        poll.reregister(self._fd, self.interest, self.mode, token)
        self._token = token

    def unregister(self, poll: Poll) -> None:
        poll.unregister(self._fd)
        # Clearing the token drops an event already polled for this source.
        self._poll = self._token = None

    def process_events(
        self,
        readiness: Readiness,
        token: Token,
        callback: Callable[[Readiness, F], PostAction | None],
    ) -> PostAction:
        if token is not self._token and token != self._token:  # `is`: no __eq__ call
            return PostAction.CONTINUE
        return callback_action(callback(readiness, self._obj), "FdSource")

    def __repr__(self) -> str:
        return f"<calloop.FdSource fd={self._fd} {self.interest} {self.mode}>"
