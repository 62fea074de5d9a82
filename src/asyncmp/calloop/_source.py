"""The `EventSource` protocol that custom sources implement, and `PostAction`.

A source owns fds and/or timers. The loop calls ``register`` when it is inserted or enabled,
``reregister`` for ``update``/``PostAction.REREGISTER``, ``unregister`` when it is disabled
or removed, and ``process_events`` with each event whose token it registered.

Two optional hooks (calloop's ``NEEDS_EXTRA_LIFECYCLE_EVENTS``) are called when the source
defines them: ``before_sleep()`` before each poll and ``before_handle_events(events)`` after
it, in the order the sources were inserted.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from ._poll import Poll, Readiness
    from ._token import Token, TokenFactory

__all__ = ("EventSource", "PostAction", "callback_action")

E_co = TypeVar("E_co", covariant=True)
M_co = TypeVar("M_co", covariant=True)
R_contra = TypeVar("R_contra", contravariant=True)


class PostAction(enum.Enum):
    """What the loop does with a source after its ``process_events`` (or callback) returns.

    A callback returning ``None`` means ``CONTINUE``.
    """

    CONTINUE = "continue"
    """Leave the source as it is."""
    REREGISTER = "reregister"
    """Call the source's ``reregister`` (re-arms a ``ONESHOT`` fd, applies new settings)."""
    DISABLE = "disable"
    """Unregister the source; its token stays valid and ``LoopHandle.enable`` resumes it."""
    REMOVE = "remove"
    """Unregister the source and free its token."""

    def __or__(self, other: PostAction) -> PostAction:
        """Combine two actions as calloop does: the action if equal, else ``REREGISTER``."""
        if not isinstance(other, PostAction):
            return NotImplemented
        return self if self is other else PostAction.REREGISTER


def callback_action(ret: object, source: str) -> PostAction:
    """What a callback of a built-in *source* returned, as a `PostAction` (``None`` is
    ``CONTINUE``); anything else is refused rather than ignored.

    Raises:
        TypeError: *ret* is neither ``None`` nor a `PostAction`.
    """
    if ret is None:
        return PostAction.CONTINUE
    if not isinstance(ret, PostAction):
        raise TypeError(f"a {source} callback must return a PostAction or None, not {ret!r}")
    return ret


class EventSource(Protocol[E_co, M_co, R_contra]):
    """What a custom source implements to be inserted with `LoopHandle.insert_source`.

    ``process_events`` gets the readiness and token of one event and a ``callback(event,
    metadata) -> ret`` bound to the user's callback and the loop's data; it calls it zero
    or more times and returns a `PostAction` (``None`` = ``CONTINUE``). An exception it
    raises aborts the dispatch and propagates from ``dispatch``.
    """

    def register(self, poll: Poll, token_factory: TokenFactory) -> None:
        """Register the source's fds and timers with *poll*, with tokens from the factory."""

    def reregister(self, poll: Poll, token_factory: TokenFactory) -> None:
        """Update the registration (new interest, re-armed oneshot, new deadline)."""

    def unregister(self, poll: Poll) -> None:
        """Remove every fd and timer of this source from *poll*."""

    def process_events(
        self,
        readiness: Readiness,
        token: Token,
        callback: Callable[[E_co, M_co], R_contra],
    ) -> PostAction | None:
        """Handle one event of this source, calling *callback* for what it produced."""
