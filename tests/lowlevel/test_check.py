"""`_check`: the one meaning of an int, a number of seconds, a period and a timeout, and the
errors bad values get (a TypeError for the type, a ValueError for the range, each naming the
argument and the value)."""

from __future__ import annotations

import math
import re
import threading
from typing import Any

import pytest

from asyncmp._lowlevel._check import (
    check_int,
    check_period,
    check_seconds,
    check_timeout,
    is_int,
)


class IntSubclass(int):
    pass


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, True), (-3, True), (IntSubclass(2), True), (True, False), (1.0, False), ("1", False)],
)
def test_is_int_is_an_int_that_is_not_a_bool(value: object, expected: bool) -> None:
    """``True`` is an int to Python but never a count, an id or an fd here."""
    assert is_int(value) is expected


def test_check_int_returns_the_int_or_names_the_argument_and_the_value() -> None:
    """An int ≥ minimum comes back as it is; a bool or non-int is a TypeError and one below
    the minimum a ValueError, both naming the argument and the value."""
    assert check_int(5, "bound", minimum=1) == 5
    assert check_int(-5, "offset") == -5
    with pytest.raises(TypeError, match=r"^bound must be an int, not True$"):
        check_int(True, "bound", minimum=1)
    with pytest.raises(TypeError, match=r"^bound must be an int, not 1\.5$"):
        check_int(1.5, "bound")
    with pytest.raises(ValueError, match=r"^bound must be >= 1, not 0$"):
        check_int(0, "bound", minimum=1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0.0), (2, 2.0), (0.5, 0.5), (-1.5, -1.5), (math.inf, math.inf), (-math.inf, -math.inf)],
)
def test_check_seconds_takes_any_number_but_nan_as_a_float(value: float, expected: float) -> None:
    """Negative numbers and infinities pass (the caller gives them meaning); the result is a
    float."""
    checked = check_seconds(value, "duration")
    assert checked == expected
    assert type(checked) is float


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (math.nan, ValueError, "duration must not be NaN"),
        (True, TypeError, "duration must be a number of seconds, not True"),
        ("1", TypeError, "duration must be a number of seconds, not '1'"),
        (None, TypeError, "duration must be a number of seconds, not None"),
    ],
)
def test_check_seconds_rejects_nan_bools_and_non_numbers(
    value: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        check_seconds(value, "duration")


def test_check_period_is_a_finite_number_of_seconds_above_zero() -> None:
    """A period (a timer's interval, a watchdog) must be finite and > 0."""
    assert check_period(3, "interval") == 3.0
    for bad in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match=r"^interval must "):
            check_period(bad, "interval")
    with pytest.raises(TypeError, match=r"^interval must be a number of seconds, not False$"):
        check_period(False, "interval")


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (None, None),
        (0, 0.0),
        (3, 3.0),
        (0.25, 0.25),
        (math.inf, threading.TIMEOUT_MAX),
        (1e300, threading.TIMEOUT_MAX),
    ],
)
def test_check_timeout_accepts_none_and_non_negative_numbers(
    timeout: float | None, expected: float | None
) -> None:
    """``None`` waits without limit; a number ≥ 0 becomes a float every waiting primitive
    accepts (capped at ``threading.TIMEOUT_MAX``, so ``inf`` waits without limit too)."""
    checked = check_timeout(timeout)
    assert checked == expected
    assert checked is None or type(checked) is float


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (-1, ValueError),
        (-math.inf, ValueError),
        (math.nan, ValueError),
        (True, TypeError),
        ("1", TypeError),
    ],
)
def test_check_timeout_rejects_anything_else(timeout: Any, error: type[Exception]) -> None:
    """A negative or NaN timeout is a ValueError; a bool or non-number is a TypeError; both
    name the value."""
    with pytest.raises(error, match=re.escape(repr(timeout))):
        check_timeout(timeout)


def test_the_capped_timeout_is_one_a_lock_accepts() -> None:
    """What `check_timeout` returns for ``inf`` is a timeout ``Lock.acquire`` takes (a larger
    one raises OverflowError there): the cap is what lets every waiter use it as it is."""
    lock = threading.Lock()
    capped = check_timeout(math.inf)
    assert capped is not None
    assert lock.acquire(timeout=capped)
    lock.release()
