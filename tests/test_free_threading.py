"""What free-threaded CPython (3.13t, 3.14t) gets, as docs/install.md ("Free-threaded
CPython") states it:

- the compiled core does not declare that it runs without the GIL (its primitives rely on
  it), so where it is built, importing asyncmp turns the GIL on, with CPython's
  RuntimeWarning naming the module; ``ASYNCMP_NO_EXTENSIONS=1`` keeps the GIL off, on the
  pure core;
- no free-threaded wheel is published (tests/test_packaging.py checks the build plan), so pip
  installs the pure-Python wheel there, and asyncmp runs with the GIL off.

The declaration is checked everywhere; what the interpreter does needs a free-threaded one:
those tests are skipped elsewhere, and noxfile.py runs them on 3.13t and 3.14t where the
machine has them.
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import asyncmp

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(asyncmp.__path__, "asyncmp.")
    if not any(part.startswith("_") for part in m.name.split("."))
)
needs_free_threading = pytest.mark.skipif(
    not sysconfig.get_config_var("Py_GIL_DISABLED"),
    reason=f"needs a free-threaded CPython (3.13t, 3.14t); this {sys.version.split()[0]} has "
    "a GIL (noxfile.py runs these tests where one is installed)",
)


def _child(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter whose GIL is as the build sets it (no PYTHON_GIL:
    the suite's own run may force it on); it must succeed."""
    unset = ("PYTHON_GIL", "ASYNCMP_NO_EXTENSIONS")
    base = {k: v for k, v in os.environ.items() if k not in unset}
    out = subprocess.run(
        [sys.executable, "-c", code], env={**base, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out


def test_the_compiled_core_does_not_declare_free_threading_support() -> None:
    """Neither the build nor a source declares the compiled core free-threading compatible
    (Cython's ``freethreading_compatible`` directive, or the macro it sets): it leaves the
    GIL in charge. Declaring it is a choice to make with docs/install.md and these tests."""
    sources = [ROOT / "setup.py"] + [
        ROOT / "src" / "asyncmp" / name
        for name in ("_speedups.pyx", "_speedups.pxd", "_channel_py.py", "_channel_c.pxd")
    ]
    for source in sources:
        text = source.read_text()
        assert not re.search(r"freethreading_compatible|FREETHREADING_COMPATIBLE", text), source


@pytest.mark.subprocess
@needs_free_threading
def test_the_pure_core_keeps_the_gil_off() -> None:
    """On the pure core (the pure wheel, or ASYNCMP_NO_EXTENSIONS=1), importing every public
    module of asyncmp leaves the GIL off: no module asks for it (CPython would warn)."""
    code = (
        "import importlib, sys, warnings\n"
        "warnings.simplefilter('error', RuntimeWarning)\n"
        f"for name in {PUBLIC_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "import asyncmp\n"
        "print(asyncmp.CORE, sys._is_gil_enabled())\n"
    )
    assert _child(code, ASYNCMP_NO_EXTENSIONS="1").stdout.split() == ["pure", "False"]


@pytest.mark.subprocess
@needs_free_threading
def test_the_compiled_core_turns_the_gil_on_with_a_warning() -> None:
    """Where the compiled core is built, importing asyncmp runs on it and turns the GIL on,
    and CPython says so with a RuntimeWarning naming asyncmp's extension module."""
    if importlib.util.find_spec("asyncmp._channel_c") is None:  # (finds it without loading it)
        pytest.skip("the compiled core is not built here (the pure wheel is installed)")
    out = _child("import sys, asyncmp; print(asyncmp.CORE, sys._is_gil_enabled())")

    assert out.stdout.split() == ["compiled", "True"]
    assert re.search(
        r"RuntimeWarning: The global interpreter lock \(GIL\) has been enabled to load "
        r"module 'asyncmp\._(channel_c|speedups)'",
        out.stderr,
    ), out.stderr
