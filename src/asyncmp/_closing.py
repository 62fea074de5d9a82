"""`with` / `async with` support for every handle whose exit is just its ``close()``."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

__all__ = ("AsyncClosing", "Closing")

_T = TypeVar("_T")


class Closing:
    """Leaving ``with handle:`` calls ``handle.close()``, whatever ended the block."""

    __slots__ = ()

    def close(self) -> object:
        raise NotImplementedError

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClosing(Closing):
    """`Closing`, plus ``async with handle:`` for handles that async code holds."""

    __slots__ = ()

    async def __aenter__(self: _T) -> _T:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
