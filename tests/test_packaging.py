"""The wheel builds configured for PyPI stay valid (they cannot run here: cibuildwheel
needs Docker, macOS and Windows runners; scripts/dist/check.py builds and tests the wheels
of this machine)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHONS = ("cp310", "cp311", "cp312", "cp313", "cp314")


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("platform", "tags"),
    [
        ("linux", ("manylinux_x86_64", "manylinux_aarch64", "musllinux_x86_64")),
        ("macos", ("macosx_x86_64", "macosx_arm64")),
        ("windows", ("win_amd64",)),
    ],
)
def test_cibuildwheel_builds_every_python_on_every_platform(
    platform: str, tags: tuple[str, ...]
) -> None:
    """cibuildwheel reads pyproject.toml's configuration and plans a compiled wheel for
    CPython 3.10–3.14 on each platform."""
    cibuildwheel = shutil.which("cibuildwheel")
    if cibuildwheel is None:
        pytest.skip("cibuildwheel is not installed (the dev extra has it)")
    out = subprocess.run(
        [cibuildwheel, "--print-build-identifiers", "--platform", platform, str(ROOT)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    planned = set(out.stdout.split())
    for python in PYTHONS:
        for tag in tags:
            assert f"{python}-{tag}" in planned, (python, tag, sorted(planned))


def test_the_workflow_builds_compiled_and_pure_wheels() -> None:
    """The release workflow runs cibuildwheel and builds the pure-Python wheel and the sdist."""
    workflow = (ROOT / ".github" / "workflows" / "wheels.yml").read_text()
    assert "pypa/cibuildwheel@" in workflow
    assert "ASYNCMP_NO_EXTENSIONS=1 python -m build --wheel" in workflow
    assert "python -m build --sdist" in workflow
