"""The test suite on every CPython asyncmp claims: 3.10 to 3.14 and the free-threaded builds
3.13t and 3.14t, each on both cores. An interpreter this machine lacks is skipped, not failed,
and nox's closing summary names each session run or skipped.

``nox`` runs them all. ``scripts/test`` runs the suite on its own interpreter first (the
project's ``.venv``), then calls ``nox`` with ``ASYNCMP_NOX_SKIP_OWN=1``: the session of that
interpreter is then skipped ("ran above") rather than run a second time for nothing.

Each session installs asyncmp as a user gets it, from an sdist of this checkout (not in
editable mode), with the test extra:

- on a GIL build, with its compiled core; the suite runs once on the compiled core (where the
  channel and server tests also run the pure core, in one process), and with
  ``ASYNCMP_NOX_PURE=1`` (the wheels workflow's test job sets it) once more with
  ``ASYNCMP_NO_EXTENSIONS=1`` on the pure core, as scripts/test does on its own interpreter.
  Without it the second run is left out: what a user of that Python runs is the compiled
  wheel, the channel's protocol is one source checked on both cores there already, and each
  extra run costs minutes of every local ``scripts/test``;
- on a free-threaded build (docs/install.md, "Free-threaded CPython"), first with its
  compiled core, and the suite runs with the GIL on (``PYTHON_GIL=1``: importing the
  compiled core turns it on anyway, with a warning); then the pure wheel that PyPI gives
  these interpreters (``ASYNCMP_NO_EXTENSIONS=1`` at build time) replaces it, and the suite
  runs with the GIL off.

``nox -s tests -- ARGS`` passes ARGS to pytest (``nox -s tests-3.10 -- tests/channel``).
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13", "3.14"]
FREE_THREADED = ["3.13t", "3.14t"]

nox.options.sessions = ["tests"]
# Missing interpreters are skipped, also where CI is set (nox's default there is to fail):
# scripts/test passes --error-on-missing-interpreters where every one must be there.
nox.options.error_on_missing_interpreters = False


def _own_python() -> str:
    """The version of the interpreter nox runs on, as the sessions name it ("3.11", "3.13t")."""
    free_threaded = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    return f"{sys.version_info.major}.{sys.version_info.minor}{free_threaded}"


@nox.session(python=PYTHONS + FREE_THREADED, venv_backend="venv", reuse_venv=True)
def tests(session: nox.Session) -> None:
    """The whole test suite, on both cores, against asyncmp installed from this checkout."""
    python = str(session.python)
    if os.environ.get("ASYNCMP_NOX_SKIP_OWN") and python == _own_python():
        session.skip(f"ran above: scripts/test ran the suite on {python} in .venv")
    free_threaded = python.endswith("t")
    # From an sdist of this checkout, as pip installs the one on PyPI: built in a clean
    # directory, where a build of the checkout itself would pick up whatever an earlier build
    # left in build/ (a module since removed, say).
    tmp = Path(session.create_tmp())
    for old in tmp.glob("asyncmp-*.tar.gz"):
        old.unlink()
    session.install("build")
    session.run("python", "-m", "build", "--sdist", "--outdir", str(tmp), silent=True)
    (sdist,) = tmp.glob("asyncmp-*.tar.gz")
    session.install(f"{sdist}[test]")
    options: list[str] = []
    compiled = {"ASYNCMP_EXPECT_CORE": "compiled"}
    pure = {"ASYNCMP_NO_EXTENSIONS": "1", "ASYNCMP_EXPECT_CORE": "pure"}
    if free_threaded:
        compiled["PYTHON_GIL"] = "1"
    session.run("python", "-m", "pytest", *session.posargs, env=compiled)
    if not free_threaded and not os.environ.get("ASYNCMP_NOX_PURE"):
        return  # (module doc: the pure core's whole-suite run only where asked for)
    if free_threaded:
        # The pure wheel (not pip's cached build of the compiled one): it runs on its pure
        # core with nothing switched off, which tests/test_cores.py checks.
        no_extensions = {"ASYNCMP_NO_EXTENSIONS": "1"}
        session.install(
            "--force-reinstall", "--no-deps", "--no-cache-dir", str(sdist), env=no_extensions
        )
        pure = {"ASYNCMP_EXPECT_CORE": "pure"}
        # With the GIL off, a dependency's extension module (uvloop's, say) may turn it on,
        # and CPython warns: no failure of asyncmp's (tests/test_free_threading.py checks
        # asyncmp's own modules, in child processes).
        warning = "ignore:The global interpreter lock (GIL) has been enabled:RuntimeWarning"
        options = ["-W", warning]
    session.run("python", "-m", "pytest", *options, *session.posargs, env=pure)
