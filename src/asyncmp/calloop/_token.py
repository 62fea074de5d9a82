"""Registration tokens: a slot id plus a version, so a stale token never names a new source.

Invariant: a slot's version grows by one each time the slot is freed, so a token whose
version differs from its slot's current version names a source that is gone.
"""

from __future__ import annotations

from typing import final

from .._lowlevel._public import NoPublicConstructor

__all__ = ("RegistrationToken", "Token", "TokenFactory")


@final
class RegistrationToken(metaclass=NoPublicConstructor, made_by="LoopHandle.insert_source()"):
    """Names one source inserted in an `EventLoop`; returned by `LoopHandle.insert_source`.

    Tokens are hashable and compare equal when they name the same slot and version. Once
    the source is removed the token is stale: ``enable``/``disable``/``update`` raise
    `InvalidToken`, and a new source reusing the slot gets a different token.
    """

    __slots__ = ("_slot", "_version")
    _slot: int
    _version: int

    @classmethod
    def _create(cls, slot: int, version: int) -> RegistrationToken:
        self = object.__new__(cls)
        self._slot = slot
        self._version = version
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RegistrationToken):
            return NotImplemented
        return self._slot == other._slot and self._version == other._version

    def __hash__(self) -> int:
        return hash((self._slot, self._version))

    def __repr__(self) -> str:
        return f"<RegistrationToken slot={self._slot} version={self._version}>"


@final
class Token(metaclass=NoPublicConstructor, made_by="TokenFactory.token()"):
    """What a source gives the poller when it registers an fd or a timer.

    Events come back to the source's ``process_events`` with the token they were
    registered with; a source with several fds tells them apart by token.
    """

    __slots__ = ("_slot", "_sub", "_version")
    _slot: int
    _version: int
    _sub: int

    @classmethod
    def _create(cls, slot: int, version: int, sub: int) -> Token:
        self = object.__new__(cls)
        self._slot = slot
        self._version = version
        self._sub = sub
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Token):
            return NotImplemented
        return (self._slot, self._version, self._sub) == (other._slot, other._version, other._sub)

    def __hash__(self) -> int:
        return hash((self._slot, self._version, self._sub))

    def __repr__(self) -> str:
        return f"<Token slot={self._slot} version={self._version} sub={self._sub}>"


@final
class TokenFactory(metaclass=NoPublicConstructor, made_by="the event loop"):
    """Makes the `Token`s of one source, one per fd or timer it registers.

    A fresh factory is passed to each ``register``/``reregister`` call.
    """

    __slots__ = ("_next", "_slot", "_version")
    _slot: int
    _version: int
    _next: int

    @classmethod
    def _create(cls, slot: int, version: int) -> TokenFactory:
        self = object.__new__(cls)
        self._slot = slot
        self._version = version
        self._next = 0
        return self

    def token(self) -> Token:
        """A new token, distinct from every other token this factory made."""
        sub = self._next
        self._next += 1
        return Token._create(self._slot, self._version, sub)
