"""What the channel's source reads of the ``cython`` module, where Cython is not installed.

The channel (`asyncmp._channel_py`) is compiled by Cython for the compiled core and runs as
plain Python for the pure one. It asks ``cython`` three things: ``cython.compiled`` (``True``
while Cython compiles it; ``False`` in Cython's pure-Python shadow module), the
``@cython.locals(...)`` decorator (the C types of a function's variables for Cython; nothing
in Python) and ``cython.cast(type, value)`` (*value*, in Python). A pure-Python install has
no Cython at all, and this module stands in for those. (``cython.address`` is used only in
code that runs compiled.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

_T = TypeVar("_T")

compiled = False


def address(value: object) -> Any:
    """``cython.address(x)``: in code that only runs compiled; here for type checkers."""
    raise NotImplementedError("cython.address() runs only where Cython compiled it")


def cast(_type: object, value: _T) -> _T:
    """``cython.cast(type, value)``: *value* itself in Python."""
    return value


def locals(**types: object) -> Callable[[_F], _F]:
    """``@cython.locals(name=type, ...)``: nothing to do in Python."""

    def decorate(function: _F) -> _F:
        return function

    return decorate
