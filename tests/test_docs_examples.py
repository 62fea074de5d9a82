"""Every example under docs/examples/ runs, as a user would run it, and succeeds.

The examples check their own results (they assert what they print), so running them to a
zero exit status is the guarantee that the documented code works.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "docs" / "examples").glob("*.py"))


@pytest.mark.subprocess
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_docs_example_runs_to_success(path: Path) -> None:
    """The documented example exits with status 0 within its time bound."""
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=50, check=False
    )

    assert proc.returncode == 0, f"{path.name} failed:\n{proc.stdout}\n{proc.stderr}"
