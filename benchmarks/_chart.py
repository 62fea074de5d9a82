"""A PNG chart of a run's JSON: asyncmp's two cores, the hand-written variants and the peers,
side by side per mode and loop, as ratios to the floor, with each core's target line.

The rate modes share one axis (throughput ÷ the floor of the same process, log scale); the
memory mode has its own (bytes per queued request). A target line marks a core's least ratio
(or most bytes) on its mode's rows, in that core's colour; targets relative to peers or to
another mode are not drawn (the table and the JSON give every verdict).

Needs matplotlib (the ``bench`` extra); without it the chart is skipped with a message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ("draw",)

_CORE_COLOURS = {"compiled": "#08519c", "pure": "#6baed6"}
_COLOURS = {
    "floor": "#7f7f7f",
    "SimpleQueue reply": "#bcbd22",
    "anyio streams": "#2ca02c",
    "janus": "#d62728",
    "culsans": "#9467bd",
    "aiologic": "#8c564b",
    "BlockingPortal": "#e377c2",
    "anyio to_thread": "#17becf",
    "pykka": "#ff7f0e",
}


def _label(name: str, entry: dict[str, Any]) -> str:
    if entry["role"] == "asyncmp" and entry.get("core") and name == "asyncmp":
        return f"asyncmp ({entry['core']})"
    return str(name)


def _colour(name: str, entry: dict[str, Any]) -> str:
    if entry["role"] == "asyncmp" and entry.get("core") in _CORE_COLOURS:
        return _CORE_COLOURS[entry["core"]]
    return _COLOURS.get(name, "#333333")


def _rows(modes: list[dict[str, Any]], key: str) -> tuple[list[Any], list[float], float]:
    """Lay out *modes* top to bottom: per mode and loop, one bar per measured contestant."""
    plan: list[Any] = []
    centres: list[float] = []
    y = 0.0
    for m in modes:
        present = [
            (name, c, c[key]) for name, c in m["contestants"].items() if c.get(key) is not None
        ]
        bars = [(y + k, name, c, v) for k, (name, c, v) in enumerate(present)]
        centres.append(y + (len(present) - 1) / 2 if present else y)
        plan.append((m, bars, y - 0.45, y + max(1, len(present)) - 0.55))
        y += max(1, len(present)) + 0.9
    return plan, centres, y


def _panel(ax: Any, modes: list[dict[str, Any]], key: str, limit: str, seen: set[str]) -> None:
    plan, centres, height = _rows(modes, key)
    for m, bars, top, bottom in plan:
        for pos, name, entry, value in bars:
            shown = _label(name, entry)
            ax.barh(
                pos,
                value,
                height=0.85,
                color=_colour(name, entry),
                label=None if shown in seen else shown,
            )
            seen.add(shown)
            if entry["role"] == "asyncmp":
                text = f" {value:.2f}" if key == "ratio" else f" {value:.0f} B"
                ax.text(
                    value,
                    pos,
                    text,
                    va="center",
                    fontsize=7,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.3, "alpha": 0.8},
                )
        for core, target in (m.get("targets") or {}).items():
            line = target.get(limit)
            if line is None:
                continue
            name = f"{core} core target"
            ax.vlines(
                line,
                top,
                bottom,
                colors=_CORE_COLOURS.get(core, "black"),
                linestyles=(0, (2, 1)),
                linewidth=2.0,
                label=None if name in seen else name,
            )
            seen.add(name)
    ax.set_yticks(centres, [f"{m['title']} · {m['loop']}" for m in modes], fontsize=8)
    ax.set_ylim(height - 0.7, -0.7)  # top to bottom, without empty margins
    ax.grid(axis="x", alpha=0.3, which="both")


def draw(doc: dict[str, Any], path: Path) -> None:
    """Draw *doc* (as written by ``--json``) into the PNG file *path*."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [m for m in doc["modes"] if m["kind"] == "rate"]
    memory = [m for m in doc["modes"] if m["kind"] == "memory"]
    heights = [_rows(rates, "ratio")[2] or 1.0]
    if memory:
        heights.append(_rows(memory, "value")[2] + 1.0)
    fig, axes = plt.subplots(
        len(heights),
        1,
        figsize=(11, 1.4 + 0.12 * sum(heights)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    seen: set[str] = set()
    ax = axes[0][0]
    _panel(ax, rates, "ratio", "min_ratio", seen)
    ax.axvline(1.0, color="black", linewidth=0.6)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(
        "throughput ÷ the floor measured in the same process (log scale; 1.0 = the floor)"
    )
    if memory:
        mem = axes[1][0]
        _panel(mem, memory, "value", "max_bytes", seen)
        mem.set_xlabel("bytes per queued request, payload excluded (fewer is better)")
    meta = doc["meta"]
    cores = ", ".join(f"{core}: {where}" for core, where in meta.get("cores", {}).items())
    ax.set_title(
        f"asyncmp benchmarks — {meta['profile']} run, median of {meta['rounds']} round(s), "
        f"Python {meta['python']}, {meta['cpus']} CPUs\n{cores}",
        fontsize=10,
    )
    handles, labels = [], []
    for a in axes[:, 0]:
        h, lab = a.get_legend_handles_labels()
        handles += h
        labels += lab
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
