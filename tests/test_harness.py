"""The test harness itself: a hung test ends the run quickly, whatever backend hangs.

Under uvloop, pytest-timeout's default (signal) method raises inside the loop, which swallows
the exception, so a hung test would run until CI's own limit. The project's configuration
(``timeout_method = "thread"`` in pyproject.toml) dumps every thread's stack and ends the run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

HANGING_TEST = """
import anyio
import pytest

@pytest.fixture
def anyio_backend():
    return ("asyncio", {"use_uvloop": True})

async def test_hangs_on_uvloop():
    await anyio.sleep_forever()
"""


@pytest.mark.subprocess
def test_a_test_hung_on_uvloop_is_ended_by_the_timeout(tmp_path: Path) -> None:
    """With the project's pytest configuration, `sleep_forever()` on uvloop is ended by a
    2 s timeout (with the stack of every thread) instead of hanging the run."""
    (tmp_path / "test_hang.py").write_text(HANGING_TEST)
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"),
            "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "--timeout", "2",
            str(tmp_path / "test_hang.py"),
        ],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr

    assert result.returncode != 0, output
    assert "Timeout" in output, output
    assert "test_hang.py" in output, output
