"""The wheel builds configured for PyPI stay valid, and every Python the package claims is
the one built, tested by nox and by the workflow (the builds cannot run here: cibuildwheel
needs Docker, macOS and Windows runners; scripts/dist/check.py builds and tests the wheels
of this machine)."""

from __future__ import annotations

import ast
import functools
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs its backport there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
WORKFLOW: dict[str, Any] = yaml.safe_load(
    (ROOT / ".github" / "workflows" / "wheels.yml").read_text()
)
PYTHONS = ("cp310", "cp311", "cp312", "cp313", "cp314")
# The wheels of each platform, by the tag that follows the Python in cibuildwheel's identifiers.
TAGS = {
    "linux": (
        "manylinux_x86_64", "manylinux_aarch64", "musllinux_x86_64", "musllinux_aarch64",
    ),
    "macos": ("macosx_x86_64", "macosx_arm64"),
    "windows": ("win_amd64",),
}  # fmt: skip
# GitHub-hosted runner labels in service (macos-13 was retired in December 2025), with the
# platform and architecture that cibuildwheel builds on each (CIBW_ARCHS: auto64).
RUNNERS = {
    "ubuntu-24.04": ("linux", "x86_64"),
    "ubuntu-24.04-arm": ("linux", "aarch64"),
    "macos-15-intel": ("macos", "x86_64"),
    "macos-14": ("macos", "arm64"),
    "macos-15": ("macos", "arm64"),
    "windows-2022": ("windows", "AMD64"),
    "windows-2025": ("windows", "AMD64"),
}


@functools.cache
def build_plan(platform: str) -> frozenset[str]:
    """The identifiers cibuildwheel plans for *platform* from pyproject.toml."""
    # This environment's first (the dev extra's), then any on PATH.
    scripts = sysconfig.get_path("scripts")
    cibuildwheel = shutil.which("cibuildwheel", path=scripts) or shutil.which("cibuildwheel")
    if cibuildwheel is None:
        pytest.skip("cibuildwheel is not installed (the dev extra has it)")
    out = subprocess.run(
        [cibuildwheel, "--print-build-identifiers", "--platform", platform, str(ROOT)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return frozenset(out.stdout.split())


def noxfile_list(name: str) -> list[str]:
    """A list that noxfile.py assigns to *name* (read, not imported: nox need not be here)."""
    for node in ast.parse((ROOT / "noxfile.py").read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [
            name
        ]:
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return value
    raise AssertionError(f"noxfile.py assigns no {name}")


@pytest.mark.subprocess
@pytest.mark.parametrize("platform", sorted(TAGS))
def test_cibuildwheel_builds_every_python_on_every_platform(platform: str) -> None:
    """cibuildwheel reads pyproject.toml's configuration and plans a compiled wheel for
    CPython 3.10–3.14 on each platform and architecture, and nothing else: no 32-bit wheel,
    and no free-threaded one (pip takes the pure wheel there: docs/install.md)."""
    expected = {f"{python}-{tag}" for python in PYTHONS for tag in TAGS[platform]}

    assert build_plan(platform) == expected


def test_the_pythons_claimed_are_built_and_tested() -> None:
    """The Pythons the package claims (requires-python and its classifiers) are the ones
    cibuildwheel builds, the workflow's wheel matrix lists, nox tests (with the free-threaded
    builds of 3.13 and later) and the workflow's test job installs for nox."""
    project = PYPROJECT["project"]
    claimed = [
        c.rsplit(" :: ", 1)[1]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert project["requires-python"] == f">={claimed[0]}"
    assert [f"cp{v.replace('.', '')}" for v in claimed] == list(PYTHONS)
    assert PYPROJECT["tool"]["cibuildwheel"]["build"] == [f"{p}-*" for p in PYTHONS]
    assert WORKFLOW["jobs"]["compiled"]["strategy"]["matrix"]["python"] == list(PYTHONS)
    free_threaded = [f"{v}t" for v in claimed if tuple(map(int, v.split("."))) >= (3, 13)]
    assert noxfile_list("PYTHONS") == claimed
    assert noxfile_list("FREE_THREADED") == free_threaded
    setup_python = next(
        step for step in WORKFLOW["jobs"]["test"]["steps"]
        if step.get("uses", "").startswith("actions/setup-python@")
    )  # fmt: skip
    installed = setup_python["with"]["python-version"].split()
    assert sorted(installed) == sorted(claimed + free_threaded)


def test_the_wheel_matrix_runs_on_runners_that_build_every_architecture() -> None:
    """Each runner of the wheel matrix is a GitHub-hosted label in service, the runners
    cover every platform and architecture of [tool.cibuildwheel], each job builds its own
    Python, and the cibuildwheel action is the version the dev extra installs (so that the
    plan printed here is the one built there)."""
    job = WORKFLOW["jobs"]["compiled"]
    runners = job["strategy"]["matrix"]["os"]
    unknown = [label for label in runners if label not in RUNNERS]
    assert unknown == [], f"runner labels not known to be in service: {unknown}"
    covered = {RUNNERS[label] for label in runners}
    config = PYPROJECT["tool"]["cibuildwheel"]
    for platform in TAGS:
        for arch in config[platform]["archs"]:
            assert (platform, arch) in covered, f"no runner builds {platform} {arch}"
    (action,) = [s for s in job["steps"] if s.get("uses", "").startswith("pypa/cibuildwheel@")]
    assert action["env"]["CIBW_BUILD"] == "${{ matrix.python }}-*"
    assert action["env"]["CIBW_ARCHS"] == "auto64"
    (pin,) = [
        r
        for r in PYPROJECT["project"]["optional-dependencies"]["dev"]
        if r.startswith("cibuildwheel")
    ]
    assert action["uses"] == f"pypa/cibuildwheel@v{pin.split('==')[1]}"


def test_each_linux_wheel_runs_the_whole_suite_on_both_cores() -> None:
    """cibuildwheel installs each wheel with the test extra and runs the whole suite against
    it, from the checkout: once on the wheel's compiled core, once on the pure core. (On
    macOS and Windows, where the suite is not yet made to run, the wheel is imported and
    smoke-tested on its compiled core.)"""
    config = PYPROJECT["tool"]["cibuildwheel"]
    assert config["test-extras"] == ["test"]
    assert config["test-command"] == [
        "cd {project} && ASYNCMP_EXPECT_CORE=compiled python -m pytest",
        "cd {project} && ASYNCMP_NO_EXTENSIONS=1 ASYNCMP_EXPECT_CORE=pure python -m pytest",
    ]
    for platform in ("macos", "windows"):
        commands = config[platform]["test-command"]
        assert any("asyncmp.CORE == 'compiled'" in c for c in commands), platform
        assert any("scripts/dist/smoke.py bare" in c for c in commands), platform


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
