"""The Testing page (docs/testing.md) says how to test asyncmp code with pytest-asyncio and
with anyio's plugin; these tests run its examples, exactly the files the page includes, in a
child pytest with the configuration the page shows, and check that each does what the page
says: the right ways pass, in auto and in strict mode, with function- and module-scoped
loops; the wrong way (a module-loop ``task.spawn`` fixture used from a function-loop test)
hangs until pytest-timeout ends it.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "testing.md"
EXAMPLES = ROOT / "docs" / "examples" / "testing"

PYTEST_ASYNCIO = ("-p", "asyncio", "-p", "no:anyio")
ANYIO = ("-p", "anyio", "-p", "no:asyncio")

# (example module, ini file, plugins): every combination the page promises works.
PASSING = [
    ("test_auto_mode.py", "auto.ini", PYTEST_ASYNCIO),
    ("test_strict_mode.py", "strict.ini", PYTEST_ASYNCIO),
    ("test_strict_mode.py", "auto.ini", PYTEST_ASYNCIO),
    ("test_module_loop.py", "strict.ini", PYTEST_ASYNCIO),
    ("test_module_loop.py", "auto.ini", PYTEST_ASYNCIO),
    ("test_thread_server.py", "strict.ini", PYTEST_ASYNCIO),
    ("test_thread_server.py", "auto.ini", PYTEST_ASYNCIO),
    ("test_anyio_plugin.py", "anyio.ini", ANYIO),
]
# The combination the page warns about: it must hang (and pytest-timeout end it).
HANGING = [
    ("test_wrong_loop.py", "strict.ini", PYTEST_ASYNCIO),
    ("test_wrong_loop.py", "auto.ini", PYTEST_ASYNCIO),
]
SHARED = ("adder.py",)


@dataclass
class Outcome:
    """What one test case of the child run did."""

    name: str
    result: str  # "passed", "failed", "error" or "skipped"
    message: str


def run_example(
    tmp_path: Path, module: str, ini: str, plugins: tuple[str, ...]
) -> tuple[list[Outcome], str]:
    """Run *module* (with the shared files) in a child pytest configured by *ini*: the
    outcome of each test, and what the child printed."""
    for name in (module, *SHARED):
        shutil.copyfile(EXAMPLES / name, tmp_path / name)
    shutil.copyfile(EXAMPLES / ini, tmp_path / "pytest.ini")
    report = tmp_path / "report.xml"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *plugins,
            "-p",
            "no:cacheprovider",
            "-q",
            "-W",
            "error",  # the examples are warning-free
            f"--junitxml={report}",
            module,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert report.exists(), f"the child pytest wrote no report:\n{proc.stdout}\n{proc.stderr}"
    outcomes = []
    for case in ET.parse(report).getroot().iter("testcase"):
        result, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                result = {"failure": "failed"}.get(child.tag, child.tag)
                message = child.get("message", "")
        outcomes.append(Outcome(case.get("name", ""), result, message))
    assert outcomes, f"the child pytest ran nothing:\n{proc.stdout}\n{proc.stderr}"
    return outcomes, proc.stdout


def defined_tests(module: str) -> set[str]:
    """The names of the test functions *module* defines."""
    tree = ast.parse((EXAMPLES / module).read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def base_name(case: str) -> str:
    """``test_adds[asyncio]`` -> ``test_adds``."""
    return case.split("[", 1)[0]


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("module", "ini", "plugins"), PASSING, ids=[f"{m}-{i}" for m, i, _ in PASSING]
)
def test_page_example_passes(
    tmp_path: Path, module: str, ini: str, plugins: tuple[str, ...]
) -> None:
    """Each example the page calls right passes, every test in it, under that configuration."""
    outcomes, _ = run_example(tmp_path, module, ini, plugins)

    assert [o for o in outcomes if o.result != "passed"] == []
    assert {base_name(o.name) for o in outcomes} == defined_tests(module)


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("module", "ini", "plugins"), HANGING, ids=[f"{m}-{i}" for m, i, _ in HANGING]
)
def test_page_wrong_example_fails_at_once(
    tmp_path: Path, module: str, ini: str, plugins: tuple[str, ...]
) -> None:
    """A module-loop task.spawn fixture used from a function-loop test never gets a reply
    (the server's loop does not run during the test): the send says so at once with a
    RuntimeWarning naming the problem and the fix, which the examples' configuration
    (``-W error``, as warning-free suites run) turns into the test's failure."""
    outcomes, printed = run_example(tmp_path, module, ini, plugins)

    assert {base_name(o.name) for o in outcomes} == defined_tests(module)
    for o in outcomes:
        assert o.result == "failed"
        assert "RuntimeWarning" in o.message, o.message
        assert "event loop is not running" in o.message, o.message
    assert "same loop scope" in printed, printed


def test_page_includes_exactly_the_examples_that_run() -> None:
    """Every file the page includes from docs/examples/testing/ is one these tests run, and
    every example they run is on the page, so the page cannot drift from what is checked."""
    included = set(re.findall(r'--8<-- "docs/examples/testing/([^"]+)"', PAGE.read_text()))
    run = {name for cases in (PASSING, HANGING) for m, i, _ in cases for name in (m, i)}

    assert included == run | set(SHARED)
    on_disk = {p.name for p in EXAMPLES.iterdir() if p.is_file()}
    assert on_disk == included
