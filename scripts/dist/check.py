"""Test asyncmp as users get it: build the sdist and the wheel, install the wheel into fresh
virtual environments — with no extra, then with each extra alone — and run what a user would.

Run by scripts/test (from the project's venv). Exits non-zero, naming the failure, if:
- the wheel lacks ``py.typed`` or a module of ``src/asyncmp``, or ships tests;
- a bare ``pip install`` cannot import a public module (an undeclared runtime dependency);
- a module that needs an extra fails without naming the extra to install;
- the README example, or an extra's own smoke check (``smoke.py``), fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMOKE = Path(__file__).with_name("smoke.py")
EXTRAS = ("", "uvloop", "trio", "nats", "msgpack")


def run(cmd: list[str], **kwargs: object) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        sys.exit(
            f"dist check: {' '.join(map(str, cmd))} failed ({result.returncode})\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )


def build(out: Path) -> tuple[Path, Path]:
    # The wheel is built from the sdist (build's default), so an sdist that misses a file
    # fails here too.
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)])
    (sdist,) = out.glob("asyncmp-*.tar.gz")
    (wheel,) = out.glob("asyncmp-*.whl")
    return sdist, wheel


def check_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    problems = []
    if "asyncmp/py.typed" not in names:
        problems.append("asyncmp/py.typed is missing (type checkers would ignore the types)")
    for source in (ROOT / "src").rglob("*.py"):
        rel = source.relative_to(ROOT / "src").as_posix()
        if rel not in names:
            problems.append(f"{rel} is missing")
    shipped_tests = sorted(n for n in names if n.startswith("tests/") or "/tests/" in n)
    if shipped_tests:
        problems.append(f"tests are shipped: {shipped_tests[:3]}")
    if problems:
        sys.exit("dist check: the wheel is wrong:\n- " + "\n- ".join(problems))


def check_extra(wheel: Path, extra: str, workdir: Path) -> None:
    label = f"[{extra}]" if extra else "(no extra)"
    venv = workdir / f"venv-{extra or 'bare'}"
    started = time.monotonic()
    # A venv without pip; the project venv's pip installs into it (`pip --python`).
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    requirement = f"asyncmp{label if extra else ''} @ {wheel.as_uri()}"
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
         "--disable-pip-version-check", requirement]
    )  # fmt: skip
    nats_server = Path(sys.executable).with_name("nats-server")
    run(
        [str(python), "-I", str(SMOKE), extra or "bare", str(ROOT / "README.md"), str(nats_server)],
        cwd=workdir,  # not the checkout: `import asyncmp` must find the installed wheel
        timeout=120,
    )
    print(f"  {label:<12} installed and ran in {time.monotonic() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--extras", nargs="*", default=EXTRAS, help="'' is the bare install")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asyncmp-dist-") as tmp:
        work = Path(tmp)
        sdist, wheel = build(work / "dist")
        check_wheel_contents(wheel)
        print(f"  built {sdist.name} and {wheel.name}")
        for extra in args.extras:
            check_extra(wheel, extra, work)


if __name__ == "__main__":
    main()
