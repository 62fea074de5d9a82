"""The registration of an event source that is one level-triggered wake-up fd.

A channel, a ping and an executor are each woken through one `WakeFd` that other threads
write to; the loop only ever watches it for READ, level-triggered. They share this base,
which keeps the poll and token it was registered with, and differ only in how they say
whether they are still open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._poll import Interest, Mode

if TYPE_CHECKING:
    from ._poll import Poll, WakeFd
    from ._token import Token, TokenFactory

__all__ = ("WakeFdSource",)


class WakeFdSource:
    """`EventSource.register` / `reregister` / `unregister` for a single wake-up fd."""

    __slots__ = ("_poll", "_token")
    # Invariant: ``_poll`` is the poll the fd is registered with, or None when it is not.
    _poll: Poll | None
    _token: Token | None

    def _wake_fd(self) -> WakeFd:
        """The fd to watch; raises the source's own ``Closed`` error once it is closed."""
        raise NotImplementedError

    def _is_open(self) -> bool:
        raise NotImplementedError

    def register(self, poll: Poll, token_factory: TokenFactory) -> None:
        fd = self._wake_fd()
        token = token_factory.token()
        poll.register(fd.fileno(), Interest.READ, Mode.LEVEL, token)
        self._poll, self._token = poll, token

    def reregister(self, poll: Poll, token_factory: TokenFactory) -> None:
        fd = self._wake_fd()
        token = token_factory.token()
        poll.reregister(fd.fileno(), Interest.READ, Mode.LEVEL, token)
        self._token = token

    def unregister(self, poll: Poll) -> None:
        # A closed source has closed its fd already, which removed it from the poll.
        if self._poll is not None and self._is_open():
            poll.unregister(self._wake_fd().fileno())
        self._poll = self._token = None
