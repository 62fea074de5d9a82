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


def test_project_addresses_agree_and_readme_links_are_absolute() -> None:
    """The package index shows the README without the repository around it: every link in
    it is absolute, and it names the same documentation, source and changelog addresses as
    pyproject.toml's [project.urls], which mkdocs.yml's site_url and repo_url match."""
    import re

    import tomllib

    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert set(urls) == {"Documentation", "Source", "Changelog", "Issues"}
    mkdocs = (ROOT / "mkdocs.yml").read_text()
    site_url = re.search(r"^site_url: (\S+)$", mkdocs, re.M)
    repo_url = re.search(r"^repo_url: (\S+)$", mkdocs, re.M)
    assert site_url is not None
    assert repo_url is not None
    assert site_url.group(1).startswith(urls["Documentation"])
    assert repo_url.group(1) == urls["Source"]
    assert urls["Changelog"].startswith(urls["Source"])
    assert urls["Issues"].startswith(urls["Source"])

    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", readme) + re.findall(r"<(https?://[^>]+)>", readme)
    assert links
    for link in links:
        assert link.startswith("https://"), f"README.md links to {link!r}, not an absolute URL"
    for url in urls.values():
        assert url in readme, f"README.md does not name {url}"
    assert site_url.group(1) in readme


def test_readme_starts_with_the_users_path() -> None:
    """The README's sections go install, a taste, where to read next; the contributors'
    commands (scripts/demo, scripts/test) are in a Contributing section at the end."""
    import re

    readme = (ROOT / "README.md").read_text()
    sections = re.findall(r"^## (.+)$", readme, re.M)

    assert sections[:2] == ["Install", "A taste"]
    assert sections[-1] == "Contributing"
    contributing = readme.split("## Contributing", 1)[1]
    assert "scripts/demo" in contributing
    assert "scripts/test" in contributing
    assert "scripts/" not in readme.split("## Contributing", 1)[0]
