"""Argument checks: the one place that says what an int, a number of seconds and a timeout are.

Every public entry point checks its arguments with these, so that one kind of bad input gets
one kind of error everywhere: a `TypeError` for the wrong type, a `ValueError` for a value out
of range, each naming the argument and repeating the value it got.

- An *int* is an ``int`` that is not a ``bool`` (``True`` is an ``int`` to Python, but never
  a meaningful count, id or file descriptor here).
- A *number of seconds* is an ``int`` or a ``float``, not a ``bool`` and not NaN; it is
  returned as a ``float``.
- A *timeout* (every ``timeout=`` argument) is ``None`` — wait without limit — or a number of
  seconds ≥ 0. It is returned as ``None`` or as a float capped at ``threading.TIMEOUT_MAX``
  (about 292 years), the longest wait a lock accepts: ``math.inf`` and any larger number are
  that cap, which waits, in practice, without limit too. Every waiting primitive accepts the
  result as it is: a lock's ``acquire``, the compiled core's parker, and an epoll wait (the
  pollers cut a long wait into waits epoll can express, `_poller.MAX_WAIT`).
"""

from __future__ import annotations

import math
import threading
from typing import TypeGuard

__all__ = ("check_int", "check_period", "check_seconds", "check_timeout", "is_int")

_TIMEOUT_MAX = threading.TIMEOUT_MAX


def is_int(value: object) -> TypeGuard[int]:
    """Whether *value* is an ``int`` and not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(value: object, what: str, *, minimum: int | None = None) -> int:
    """*value* if it is an int (not a bool) ≥ *minimum*.

    Raises:
        TypeError: "{what} must be an int, not …".
        ValueError: "{what} must be >= {minimum}, not …".
    """
    if not is_int(value):
        raise TypeError(f"{what} must be an int, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, not {value!r}")
    return value


def check_seconds(value: object, what: str) -> float:
    """*value* as a float, if it is a number of seconds: an int or a float, not a bool, not NaN.

    Negative numbers and infinities pass: the caller says what they mean (a deadline in the
    past, a timer that never fires).

    Raises:
        TypeError: "{what} must be a number of seconds, not …".
        ValueError: "{what} must not be NaN".
    """
    if type(value) is float:  # the common cases first, without isinstance calls
        if value != value:  # NaN
            raise ValueError(f"{what} must not be NaN")
        return value
    if type(value) is int:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {value!r}")
    if math.isnan(value):
        raise ValueError(f"{what} must not be NaN")
    return float(value)


def check_period(value: object, what: str) -> float:
    """*value* as a float, if it is a finite number of seconds > 0 (a period, a limit).

    Raises:
        TypeError: "{what} must be a number of seconds, not …".
        ValueError: "{what} must be a finite number of seconds > 0, not …".
    """
    seconds = check_seconds(value, what)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"{what} must be a finite number of seconds > 0, not {value!r}")
    return seconds


def check_timeout(timeout: float | None) -> float | None:
    """A ``timeout=`` argument: ``None`` (no limit), or a number ≥ 0 as a float capped at
    ``threading.TIMEOUT_MAX`` (so ``math.inf`` waits without limit too; module doc).

    Raises:
        TypeError: "timeout must be a number of seconds or None, not …".
        ValueError: "timeout must be >= 0, not …" (NaN too).
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    if not timeout >= 0:  # also rejects NaN
        raise ValueError(f"timeout must be >= 0, not {timeout!r}")
    return float(min(timeout, _TIMEOUT_MAX))
