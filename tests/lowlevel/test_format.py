"""`seconds`: numbers of seconds in messages read as people write them, not as floats print."""

from __future__ import annotations

import math

import pytest

from asyncmp._lowlevel._format import seconds


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (4.9999948430000245, "5"),  # a deadline minus the time spent: the raw float before
        (30.0, "30"),
        (0.25, "0.25"),
        (0.0001, "0.0001"),
        (1.5e-05, "1.5e-05"),
        (12.345, "12.3"),
        (99.95, "100"),
        (3600.4, "3600"),
        (0, "0"),
        (math.inf, "inf"),
        (None, "None"),
    ],
)
def test_seconds_reads_as_people_write_it(value: float | None, text: str) -> None:
    """Three significant digits at most, no trailing zeros, whole from 100 on."""
    assert seconds(value) == text
