"""The final table and the JSON document of a run."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncmp

from ._cores import CORES
from ._harness import Core, ModeRun, Result, Settings
from ._modes import TARGETS, evaluate, rate, ratio, target_of

__all__ = ("SCHEMA", "label", "markdown", "markdown_problem", "table", "to_json", "write_markdown")

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
    header = f"{'mode':<46} {'loop':<8} {'contestant':<20} {'value':>14} {'× floor':>8}  target"
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
                lines.append(f"{title:<46} {loop:<8} {shown:<20} {value}")
            else:
                lines.append(f"{title:<46} {loop:<8} {shown:<20} {value:>14} {rel:>8}  {mark}")
            first = False
        lines.append("")
    for core, verdicts in met.items():
        if verdicts:
            lines.append(
                f"{core} core: {verdicts.count(True)} of {len(verdicts)} targets met"
                + (f", {verdicts.count(None)} undecided" if None in verdicts else "")
            )
    return "\n".join(lines)


# -- the docs' results table --------------------------------------------------------------------

#: The performance page's results table lies between these two lines; ``--markdown PATH``
#: rewrites what is between them (or writes the table alone to a new file).
BEGIN = "<!-- results table: generated by python -m benchmarks --markdown; do not edit -->"
END = "<!-- end of results table -->"

_ICONS = {
    True: ":material-check-circle:{ .target-met } met",
    False: ":material-close-circle:{ .target-short } short",
    None: "undecided",
}


def _doc_label(name: str, entry: dict[str, Any]) -> str:
    if entry["role"] == "asyncmp" and entry.get("core") and name == "asyncmp":
        return f"asyncmp ({entry['core']})"
    return name


def markdown(doc: dict[str, Any]) -> str:
    """The results table of *doc* (as written by ``--json``) in Markdown: one row per mode and
    loop, each core of asyncmp as its ratio to the floor of its own process (bytes for
    memory) and its verdict, the peers and variants as ratios."""
    meta = doc["meta"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v and k != "asyncmp")
    lines = [
        f"Generated from a **{meta['profile']} run** ({meta['rounds']} counted round(s), "
        f"{meta['date'][:10]}): {meta['implementation']} {meta['python']}, {meta['cpus']} CPUs, "
        f"{versions}; this process on the {meta['core']} core.",
        "",
        "| mode | loop | floor | compiled | pure | peers and variants (÷ floor) "
        "| compiled target | pure target |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for m in doc["modes"]:
        memory = m["kind"] == "memory"
        contestants: dict[str, dict[str, Any]] = m["contestants"]
        floor = contestants.get(m["floor"], {})
        cores: dict[str, tuple[str, str]] = {}
        others = []
        for name, c in contestants.items():
            if c["role"] == "asyncmp" and c.get("core"):
                if c["skipped"]:
                    cores[c["core"]] = ("n/a", c["skipped"])
                    continue
                shown = _fmt_value(m["kind"], c["value"]) if memory else _fmt_ratio(c["ratio"])
                verdict = ""
                if c["target"] is not None:
                    verdict = f"{_ICONS[c['target_met']]}: {c['target_detail']}"
                cores[c["core"]] = (f"**{shown}**", verdict)
            elif c["role"] != "floor" and c["ratio"] is not None:
                others.append(f"{_doc_label(name, c)} {c['ratio']:.2f}")
            elif c["role"] != "floor" and c["skipped"]:
                others.append(f"{name} {c['skipped']}")
        compiled = cores.get("compiled", ("—", ""))
        pure = cores.get("pure", ("—", ""))
        lines.append(
            f"| {m['title']} | {m['loop']} | {_fmt_value(m['kind'], floor.get('value'))} "
            f"| {compiled[0]} | {pure[0]} | {', '.join(others) or '—'} "
            f"| {compiled[1] or '—'} | {pure[1] or '—'} |"
        )
    return "\n".join(lines)


def _fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def markdown_problem(path: Path) -> str:
    """Why ``--markdown`` cannot write into *path*, or "" (checked before measuring)."""
    if not path.exists():
        return ""
    text = path.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return f"{path} has no results table markers:\n{BEGIN}\n{END}"
    return ""


def write_markdown(doc: dict[str, Any], path: Path) -> None:
    """Put the results table of *doc* between the markers in *path* (a new file: the table)."""
    problem = markdown_problem(path)
    if problem:
        raise ValueError(problem)
    table_md = markdown(doc)
    if not path.exists():
        path.write_text(f"{BEGIN}\n{table_md}\n{END}\n")
        return
    text = path.read_text()
    start, end = text.find(BEGIN) + len(BEGIN), text.find(END)
    path.write_text(text[:start] + "\n" + table_md + "\n" + text[end:])
