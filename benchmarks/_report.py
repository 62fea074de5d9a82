"""The final table and the JSON document of a run."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import asyncmp

from ._cores import CORES
from ._harness import Core, ModeRun, Result, Settings
from ._modes import TARGETS, evaluate, rate, ratio, target_of

__all__ = ("SCHEMA", "label", "table", "to_json")

#: Bumped when the JSON layout changes (2: both cores, targets per core).
SCHEMA = 2

_VERSIONED = ("asyncmp", "anyio", "uvloop", "janus", "culsans", "aiologic", "pykka")


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def label(name: str, result: Result) -> str:
    """The name a contestant is shown with: asyncmp's always says its core."""
    if result.role == "asyncmp" and result.core is not None and name == "asyncmp":
        return f"asyncmp ({result.core})"
    return name


def _floor_json(result: Result | None, kind: str) -> dict[str, Any] | None:
    if result is None:
        return None
    median = result.median
    value = None if median is None else (median if kind == "memory" else result.n / median)
    return {"n": result.n, "samples": result.samples, "median": median, "value": value}


def _targets_json(run: ModeRun) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for core, target in TARGETS.get(run.mode.id, {}).items():
        out[core] = {
            "text": target.describe(run.loop),
            "min_ratio": None if target.min_ratio is None else target.min_ratio[run.loop],
            "max_bytes": target.max_bytes,
        }
    return out


def to_json(
    runs: Sequence[ModeRun],
    settings: Settings,
    profile: str,
    seconds: float,
    cores: dict[Core, str],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole run as a JSON-ready dict (see benchmarks/README.md for the layout)."""
    entries = []
    for run in runs:
        mode = run.mode
        contestants = {}
        for name, result in run.results.items():
            target = target_of(run, name)
            verdict = evaluate(run, runs, name)
            contestants[name] = {
                "role": result.role,
                "core": result.core,
                "n": result.n,
                "samples": result.samples,
                "median": result.median,
                "value": rate(run, name),
                "ratio": ratio(run, name),
                "own_floor": _floor_json(result.own_floor, mode.kind),
                "skipped": result.skipped or None,
                "target": None if target is None else target.describe(run.loop),
                "target_met": None if verdict is None else verdict.met,
                "target_detail": None if verdict is None else verdict.detail,
            }
        entries.append(
            {
                "id": mode.id,
                "title": mode.title,
                "loop": run.loop,
                "kind": mode.kind,
                "unit": mode.unit,
                "clients": mode.clients,
                "floor": mode.floor,
                "floor_desc": mode.floor_desc,
                "targets": _targets_json(run),
                "contestants": contestants,
            }
        )
    return {
        "schema": SCHEMA,
        "meta": {
            "profile": profile,
            "rounds": settings.rounds,
            "budget_s": settings.budget,
            "loops": list(settings.loops),
            "core": asyncmp.CORE,
            "cores": dict(cores),
            "seconds": round(seconds, 1),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": sys.version.split()[0],
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "versions": _versions(),
        },
        "modes": entries,
        **(extra or {}),
    }


def _fmt_value(kind: str, value: float | None) -> str:
    if value is None:
        return "—"
    if kind == "memory":
        return f"{value:,.0f} B"
    return f"{value:,.0f}/s"


def table(runs: Sequence[ModeRun]) -> str:
    """A plain-text table: one block per mode and loop, one line per contestant, and each
    asyncmp core's verdict on its target; then the count of targets met per core."""
    lines = []
    header = f"{'mode':<40} {'loop':<8} {'contestant':<20} {'value':>14} {'× floor':>8}  target"
    lines.append(header)
    lines.append("-" * len(header))
    met: dict[str, list[bool | None]] = {core: [] for core in CORES}
    for run in runs:
        mode = run.mode
        first = True
        for name, result in run.results.items():
            shown = label(name, result)
            if result.skipped:
                value, rel = result.skipped, ""
            else:
                value = _fmt_value(mode.kind, rate(run, name))
                r = ratio(run, name)
                rel = "—" if r is None else f"{r:.2f}"
            mark = ""
            verdict = evaluate(run, runs, name)
            if verdict is not None and result.core is not None:
                met[result.core].append(verdict.met)
                word = {True: "MET", False: "SHORT", None: "UNDECIDED"}[verdict.met]
                mark = f"{word} {verdict.detail}"
            title = f"{mode.title} ({mode.unit})" if first else ""
            loop = run.loop if first else ""
            if result.skipped:
                lines.append(f"{title:<40} {loop:<8} {shown:<20} {value}")
            else:
                lines.append(f"{title:<40} {loop:<8} {shown:<20} {value:>14} {rel:>8}  {mark}")
            first = False
        lines.append("")
    for core, verdicts in met.items():
        if verdicts:
            lines.append(
                f"{core} core: {verdicts.count(True)} of {len(verdicts)} targets met"
                + (f", {verdicts.count(None)} undecided" if None in verdicts else "")
            )
    return "\n".join(lines)
