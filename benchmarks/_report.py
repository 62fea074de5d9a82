"""The final table and the JSON document of a run."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from ._harness import ModeRun, Settings
from ._modes import evaluate, rate, ratio

__all__ = ("SCHEMA", "table", "to_json")

#: Bumped when the JSON layout changes.
SCHEMA = 1

_VERSIONED = ("asyncmp", "anyio", "uvloop", "janus", "culsans", "aiologic", "pykka")


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def to_json(
    runs: Sequence[ModeRun],
    settings: Settings,
    profile: str,
    seconds: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole run as a JSON-ready dict (see benchmarks/README.md for the layout)."""
    entries = []
    for run in runs:
        mode = run.mode
        verdict = evaluate(run, runs)
        contestants = {}
        for name, result in run.results.items():
            contestants[name] = {
                "role": result.role,
                "n": result.n,
                "samples": result.samples,
                "median": result.median,
                "value": rate(run, name),
                "ratio": ratio(run, name),
                "skipped": result.skipped or None,
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
                "target": mode.target or None,
                "target_met": verdict.met,
                "target_detail": verdict.detail or None,
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
    """A plain-text table: one block per mode and loop, one line per contestant."""
    lines = []
    header = f"{'mode':<46} {'loop':<8} {'contestant':<18} {'value':>14} {'× floor':>8}  target"
    lines.append(header)
    lines.append("-" * len(header))
    for run in runs:
        mode = run.mode
        verdict = evaluate(run, runs)
        first = True
        for name, result in run.results.items():
            if result.skipped:
                value, rel = result.skipped, ""
            else:
                value = _fmt_value(mode.kind, rate(run, name))
                r = ratio(run, name)
                rel = "—" if r is None else f"{r:.2f}"
            mark = ""
            if name == "asyncmp" and verdict.met is not None:
                mark = ("MET " if verdict.met else "SHORT ") + verdict.detail
            title = f"{mode.title} ({mode.unit})" if first else ""
            loop = run.loop if first else ""
            if result.skipped:
                lines.append(f"{title:<46} {loop:<8} {name:<18} {value}")
            else:
                lines.append(f"{title:<46} {loop:<8} {name:<18} {value:>14} {rel:>8}  {mark}")
            first = False
        lines.append("")
    return "\n".join(lines)
