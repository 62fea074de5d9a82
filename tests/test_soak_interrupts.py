"""The interrupt soak: real SIGINTs at random moments to the main thread and garbage
collections everywhere, while threads, asyncio, uvloop, trio and the main thread use
asyncmp — in a child process, on the core this run uses (tests/soak_interrupts.py says what
runs and what is checked).

Each scenario runs ``ASYNCMP_SOAK_SECONDS`` seconds (default 18: the three together stay
under a minute); set it higher for a long soak. ``ASYNCMP_SOAK_SEED`` repeats the random choices.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).with_name("soak_interrupts.py")
SECONDS = float(os.environ.get("ASYNCMP_SOAK_SECONDS", "18"))


@pytest.mark.subprocess
@pytest.mark.timeout(4 * SECONDS + 180)
@pytest.mark.parametrize(
    "scenario",
    [
        # CPython 3.10 runs a due signal handler between a C __enter__ and its with block
        # (docs/design.md, "Interrupts and finalizers"): the with-lock instant that the
        # bridge and the Stage rely on is open there, and the soak finds it (a Stage ticket
        # left inside enter() by an interrupt in that instant: 1 run of 3 under a CPU hog on
        # 3.10, none of 3 on 3.11). The with-lock tests mark it as an expected failure.
        pytest.param(
            "bridge-stage",
            marks=pytest.mark.skipif(
                sys.version_info < (3, 11),
                reason="3.10: a handler runs between a C __enter__ and its with block",
            ),
        ),
        "servers",
        "channel-main",
    ],
)
def test_soak_with_real_interrupts_loses_doubles_and_hangs_nothing(scenario: str) -> None:
    """Round after round under real SIGINTs and collections on every thread: nothing
    doubled, nothing lost but what the docs allow an interrupt to drop (counted against the
    interrupts that struck there), nothing hung, the stage free, no asyncmp object left and
    memory flat (the child's checks)."""
    proc = subprocess.run(
        [sys.executable, str(CHILD), scenario, str(SECONDS)],
        capture_output=True,
        text=True,
        timeout=4 * SECONDS + 150,
    )
    print(proc.stdout[-2000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    assert proc.stdout.splitlines()[-1].startswith(f"OK {scenario}")
