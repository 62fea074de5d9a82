"""`seconds`: how a number of seconds reads in an error or log message."""

from __future__ import annotations

import math

__all__ = ("seconds",)


def seconds(value: float | None) -> str:
    """*value* for a message: three significant digits at most, no trailing zeros, whole
    numbers from 100 on — ``5`` for 4.9999948430000245 (a deadline minus the time spent),
    ``0.25``, ``0.0001``, ``1.5e-05``, ``3600``. The exact value stays where a program reads
    it (an attribute, an argument); a message is for people."""
    if value is None or not math.isfinite(value):
        return str(value)
    if abs(value) >= 99.5:
        return str(round(value))
    return f"{value:.3g}"
