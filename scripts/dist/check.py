"""Test asyncmp as users get it: build the sdist and the wheels, install them into fresh
virtual environments — with no extra, then with each extra alone — and run what a user would.

Run by scripts/test (from the project's venv). Three builds, three kinds of user:
- the platform wheel (built from the sdist, with the compiled core) — must run on it;
- the pure-Python wheel (``ASYNCMP_NO_EXTENSIONS=1``, ``py3-none-any``) — must run on pure
  Python;
- the sdist on a machine without a C compiler (``CC=false``) — must install and run on pure
  Python with no error.

Exits non-zero, naming the failure, if:
- ``twine check --strict`` finds the sdist or a wheel unfit for the package index (its
  metadata, or a README that the index would not render);
- the sdist ships tests (they need the whole repository) or lacks a file the build needs;
- a wheel lacks ``py.typed`` or a module of ``src/asyncmp``, ships tests or sources of the
  extension, or the platform wheel lacks the compiled core (the pure one has it);
- a bare ``pip install`` cannot import a public module (an undeclared runtime dependency);
- a module that needs an extra fails without naming the extra to install;
- the README example, or an extra's own smoke check (``smoke.py``), fails, or asyncmp runs
  on another core than the build should give.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMOKE = Path(__file__).with_name("smoke.py")
EXTRAS = ("", "uvloop", "trio", "nats", "msgpack")


def run(cmd: list[str], env: dict[str, str] | None = None, **kwargs: object) -> None:
    full_env = None if env is None else {**os.environ, **env}
    result = subprocess.run(cmd, capture_output=True, text=True, env=full_env, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        sys.exit(
            f"dist check: {' '.join(map(str, cmd))} failed ({result.returncode})\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )


def build(out: Path) -> tuple[Path, Path, Path]:
    """The sdist, the platform wheel (built from the sdist, so an sdist that misses a file
    fails here too) and the pure-Python wheel."""
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)])
    (sdist,) = out.glob("asyncmp-*.tar.gz")
    (wheel,) = out.glob("asyncmp-*.whl")
    pure_out = out / "pure"
    run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(pure_out), str(ROOT)],
        env={"ASYNCMP_NO_EXTENSIONS": "1"},
    )
    (pure,) = pure_out.glob("asyncmp-*.whl")
    return sdist, wheel, pure


def check_wheel_contents(wheel: Path, compiled: bool) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    problems = []
    extensions = [n for n in names if n.endswith((".so", ".pyd"))]
    for module in ("_speedups", "_channel_c"):
        if compiled and not any(n.startswith(f"asyncmp/{module}.") for n in extensions):
            problems.append(f"the compiled core (asyncmp/{module}.*.so) is missing")
    if not compiled and (extensions or not wheel.name.endswith("-py3-none-any.whl")):
        problems.append("the pure-Python wheel is not pure (py3-none-any, no extension)")
    if "asyncmp/_speedups.pyi" not in names:
        problems.append("asyncmp/_speedups.pyi is missing (type checkers read the primitives there)")
    sources = sorted(n for n in names if n.endswith((".pyx", ".pxd", ".c")))
    if sources:
        problems.append(f"the extension's sources are shipped: {sources}")
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
        sys.exit(f"dist check: {wheel.name} is wrong:\n- " + "\n- ".join(problems))


def check_sdist_contents(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    problems = []
    for needed in ("README.md", "pyproject.toml", "setup.py", "src/asyncmp/_speedups.pyx"):
        if needed not in names:
            problems.append(f"{needed} is missing")
    for source in (ROOT / "src").rglob("*.py"):
        rel = source.relative_to(ROOT).as_posix()
        if rel not in names:
            problems.append(f"{rel} is missing")
    shipped_tests = sorted(n for n in names if n.startswith("tests/"))
    if shipped_tests:
        problems.append(f"tests are shipped (they cannot run without the repository): "
                        f"{shipped_tests[:3]}")  # fmt: skip
    if problems:
        sys.exit(f"dist check: {sdist.name} is wrong:\n- " + "\n- ".join(problems))


def twine_check(*dists: Path) -> None:
    """What the package index checks on upload, warnings included: the metadata (twine
    renders only reStructuredText descriptions; `check_readme` renders the Markdown)."""
    run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dists)])


def check_readme(html_out: Path | None = None) -> None:
    """Render README.md as the package index does (readme_renderer, GitHub-flavoured
    Markdown): it must render, with no Markdown left raw and only absolute links."""
    import re

    import readme_renderer.markdown

    html = readme_renderer.markdown.render((ROOT / "README.md").read_text(), variant="GFM")
    if html is None:
        sys.exit("dist check: README.md does not render (is readme_renderer[md] installed?)")
    problems = [f"raw Markdown left: {raw!r}" for raw in ("```", "](", "**") if raw in html]
    problems += [
        f"relative link: {href}"
        for href in re.findall(r'href="([^"]+)"', html)
        if not href.startswith(("https://", "#"))
    ]
    if problems:
        sys.exit("dist check: README.md as the package index renders it:\n- " + "\n- ".join(problems))
    if html_out is not None:
        html_out.write_text(html)


def check_install(
    dist: Path, extra: str, core: str, workdir: Path, name: str, env: dict[str, str] | None = None
) -> None:
    """Install *dist* (a wheel or the sdist) with *extra* into a fresh venv and run the smoke
    checks there, expecting asyncmp to run on *core*."""
    label = f"[{extra}]" if extra else "(no extra)"
    venv = workdir / f"venv-{name}"
    started = time.monotonic()
    # A venv without pip; the project venv's pip installs into it (`pip --python`).
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    requirement = f"asyncmp{label if extra else ''} @ {dist.as_uri()}"
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
         "--disable-pip-version-check", "--no-cache-dir", requirement],
        env=env,
    )  # fmt: skip
    nats_server = Path(sys.executable).with_name("nats-server")
    run(
        [str(python), "-I", str(SMOKE), extra or "bare", str(ROOT / "README.md"),
         str(nats_server), core],
        cwd=workdir,  # not the checkout: `import asyncmp` must find the installed package
        timeout=120,
    )  # fmt: skip
    print(f"  {name:<22} {label:<12} {core} core, in {time.monotonic() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--extras", nargs="*", default=EXTRAS, help="'' is the bare install")
    parser.add_argument("--readme-html", type=Path, help="also write the rendered README here")
    args = parser.parse_args()
    check_readme(args.readme_html)
    with tempfile.TemporaryDirectory(prefix="asyncmp-dist-") as tmp:
        work = Path(tmp)
        sdist, wheel, pure = build(work / "dist")
        twine_check(sdist, wheel, pure)
        check_sdist_contents(sdist)
        check_wheel_contents(wheel, compiled=True)
        check_wheel_contents(pure, compiled=False)
        print(f"  built {sdist.name}, {wheel.name} and {pure.name}")
        for extra in args.extras:
            check_install(wheel, extra, "compiled", work, f"wheel-{extra or 'bare'}")
        check_install(pure, "", "pure", work, "pure-wheel")
        # A machine without a C compiler: the extension fails to build, and is skipped.
        check_install(sdist, "", "pure", work, "sdist-no-compiler", env={"CC": "false"})


if __name__ == "__main__":
    main()
