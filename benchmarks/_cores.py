"""Both of asyncmp's cores in one run: this process measures its own, a child the other.

A process runs asyncmp on one core for good (``asyncmp.CORE``, chosen at import), so the other
core is measured by ``python -m benchmarks … --child`` in a child process whose environment
selects it (``ASYNCMP_NO_EXTENSIONS=1`` for the pure core; without it for the compiled one).
The child measures only asyncmp and the floor, with the same profile, modes and loops, and
writes its JSON; its asyncmp results join this run as the contestant ``asyncmp (<core>)``,
carrying the child's floor with them, so that each ratio is taken against the floor measured
in the same process, moments apart — as for every other contestant.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncmp

from ._harness import Core, ModeRun, Result

__all__ = ("CORES", "CorePlan", "child_name", "merge_child", "plan_cores", "run_child")

CORES: tuple[Core, ...] = ("compiled", "pure")

#: The directory that holds the ``benchmarks`` package: the child runs from there.
_ROOT = Path(__file__).resolve().parent.parent


def child_name(core: Core) -> str:
    """The contestant name of asyncmp measured on *core* in a child process."""
    return f"asyncmp ({core})"


def compiled_is_built() -> bool:
    """Whether ``asyncmp._speedups`` exists (whether or not this process uses it)."""
    return importlib.util.find_spec("asyncmp._speedups") is not None


@dataclass(frozen=True)
class CorePlan:
    """Which core this process measures, which one a child measures, and why not others."""

    here: Core | None
    child: Core | None
    #: Per wanted core: "this process", "child process", or "n/a (why)".
    where: dict[Core, str]


def plan_cores(
    wanted: Sequence[Core], *, active: Core | None = None, built: bool | None = None
) -> CorePlan:
    """Measure each wanted core: this process's own (*active*) here, the other in a child.

    The compiled core can only be measured where it is built (*built*; by default, whether
    ``asyncmp._speedups`` exists); without it, the run says so and measures the pure core.
    """
    active = asyncmp.CORE if active is None else active
    built = compiled_is_built() if built is None else built
    here: Core | None = None
    child: Core | None = None
    where: dict[Core, str] = {}
    for core in dict.fromkeys(wanted):
        if core == active:
            here = core
            where[core] = "this process"
        elif core == "compiled" and not built:
            where[core] = "n/a (the compiled core, asyncmp._speedups, is not built)"
        else:
            child = core
            where[core] = "child process"
    if here is None and child is None:
        # Only the compiled core was asked for, and it is not built: measure what there is.
        here = active
        where[active] = "this process (the only core available)"
    return CorePlan(here, child, where)


def _child_env(core: Core) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("ASYNCMP_NO_EXTENSIONS", None)
    if core == "pure":
        env["ASYNCMP_NO_EXTENSIONS"] = "1"
    # The child imports this very ``benchmarks`` package, wherever the parent was started.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(_ROOT), env.get("PYTHONPATH"))))
    return env


def run_child(
    core: Core, args: Sequence[str], progress: Callable[[str], None]
) -> dict[str, Any] | str:
    """Run ``python -m benchmarks *args --child`` on *core*; its JSON, or why there is none.

    Its progress lines are passed on to *progress*, prefixed with the core.
    """
    with tempfile.TemporaryDirectory(prefix="asyncmp-bench-") as tmp:
        out = Path(tmp) / "child.json"
        command = [sys.executable, "-m", "benchmarks", *args, "--child", "--json", str(out)]
        with subprocess.Popen(
            command,
            cwd=_ROOT,
            env=_child_env(core),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc:
            assert proc.stdout is not None
            tail: list[str] = []
            for line in proc.stdout:
                line = line.rstrip("\n")
                tail = [*tail[-4:], line]
                if line:
                    progress(f"[{core} core] {line}")
            code = proc.wait()
        if code != 0 or not out.exists():
            return f"failed: the child process exited with {code}: " + " | ".join(tail)
        doc = cast("dict[str, Any]", json.loads(out.read_text()))
    if doc["meta"]["core"] != core:
        return f"n/a (the child process ran on the {doc['meta']['core']} core, not {core})"
    return doc


def _result(name: str, entry: dict[str, Any], core: Core | None) -> Result:
    return Result(
        name=name,
        role=entry["role"],
        n=entry["n"],
        samples=list(entry["samples"]),
        skipped=entry["skipped"] or "",
        core=core,
    )


def merge_child(runs: Sequence[ModeRun], core: Core, child: dict[str, Any] | str) -> None:
    """Add the child's asyncmp to every run as ``asyncmp (<core>)``, with its own floor.

    *child* is the child's JSON document, or why it has none (then each run reports that).
    """
    name = child_name(core)
    entries = {} if isinstance(child, str) else {(m["id"], m["loop"]): m for m in child["modes"]}
    for run in runs:
        if not any(c.role == "asyncmp" for c in run.mode.contestants):
            continue
        entry = entries.get((run.mode.id, run.loop))
        if entry is None:
            why = child if isinstance(child, str) else "n/a (not measured by the child process)"
            run.results[name] = Result(name, "asyncmp", skipped=why, core=core)
            continue
        mine = entry["contestants"].get("asyncmp")
        floor = entry["contestants"].get(run.mode.floor)
        if mine is None or floor is None:
            run.results[name] = Result(
                name, "asyncmp", skipped="n/a (missing from the child's results)", core=core
            )
            continue
        result = _result(name, mine, core)
        result.own_floor = _result(run.mode.floor, floor, None)
        run.results[name] = result
    for run in runs:
        _place_after_asyncmp(run, name)


def _place_after_asyncmp(run: ModeRun, name: str) -> None:
    """Order the results so that the child's asyncmp comes next to this process's asyncmp
    (first, when this process measured none)."""
    if name not in run.results:
        return
    child = run.results.pop(name)
    ordered: dict[str, Result] = {}
    if "asyncmp" not in run.results:
        ordered[name] = child
    for key, value in run.results.items():
        ordered[key] = value
        if key == "asyncmp":
            ordered[name] = child
    run.results = ordered
